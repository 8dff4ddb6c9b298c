"""Provenance: what produced a derivative dataset, so a trial's numbers can be traced and redone.

``provenance.json`` in ``out_dir`` (written when a run succeeds) holds the resolved
configuration, the pipeline version and git commit, the versions of the scientific
dependencies, the sha256 of every input file used, the command line, start and end times and
the host. ``dataset_description.json`` carries ``GeneratedBy`` (version and commit) and
``SourceDatasets``; the main image derivatives carry JSON sidecars with ``Sources`` (BIDS URIs
of the raw files they derive from, ``bids:raw:<path>``).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.io import read_tsv, write_json, write_tsv
from pipeline.outcome import sha256_file
from pipeline.paths import sidecar_path

#: The dependencies whose versions can change a number (listed in provenance and the report).
SOFTWARE = ("numpy", "scipy", "pandas", "statsmodels", "matplotlib", "nibabel", "SimpleITK",
            "scikit-image", "snakemake")

#: BIDS version the derivative's dataset_description.json declares.
BIDS_VERSION = "1.9.0"

_REPO = Path(__file__).resolve().parent.parent


def software_versions() -> dict[str, str]:
    """Python, rebound-mri and the scientific packages' versions."""
    versions = {"python": platform.python_version(), "rebound-mri": __version__}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the code in use (``+dirty`` when it has uncommitted changes), or None
    outside a git checkout (an installed wheel)."""
    try:
        head = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def raw_uri(path: str | Path) -> str:
    """``bids:raw:sub-<s>/...`` for a file of the raw dataset (a BIDS URI into the
    ``DatasetLinks`` entry ``raw``); a file outside any ``sub-<s>`` folder gets a file URI."""
    parts = Path(path).resolve().parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith("sub-") and i < len(parts) - 1:
            return "bids:raw:" + "/".join(parts[i:])
    return Path(path).resolve().as_uri()


def raw_version(bids_dir: str | Path) -> str:
    """The raw dataset's version as its dataset_description.json gives it (``DatasetDOI``,
    else ``BIDSVersion``), or ``unknown``."""
    try:
        raw = json.loads((Path(bids_dir) / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return str(raw.get("DatasetDOI") or raw.get("BIDSVersion") or "unknown")


def dataset_description(bids_dir: str | Path | None = None,
                        name: str = "rebound-mri derivatives") -> dict:
    """The BIDS-Derivatives ``dataset_description.json`` content (no time stamps)."""
    generated = {"Name": "rebound-mri", "Version": __version__,
                 "Description": "MRI lesion activity endpoints (new/enlarging T2, new "
                                "T1-hypointense, T2 lesion volume) per participant and interval"}
    commit = code_commit()
    if commit:  # a local version label, as setuptools-scm writes it: 0.1.0+g1a2b3c4d5e6f
        generated["Version"] = f"{__version__}+g{commit[:12]}" + (
            ".dirty" if commit.endswith("+dirty") else "")
    description: dict[str, Any] = {"Name": name, "BIDSVersion": BIDS_VERSION,
                                   "DatasetType": "derivative", "GeneratedBy": [generated]}
    if bids_dir is not None:
        uri = Path(bids_dir).resolve().as_uri()
        description["SourceDatasets"] = [{"URL": uri, "Version": raw_version(bids_dir)}]
        description["DatasetLinks"] = {"raw": uri}
    return description


def write_sidecars(images: Iterable[str | Path], sources: Iterable[str | Path],
                   session: str | None = None) -> list[Path]:
    """Write ``<image>.json`` beside each derivative NIfTI with its ``Sources``: the raw files
    it derives from (those of ``session`` when given, found by their ``ses-<label>`` folder)."""
    sources = [Path(s) for s in sources]
    if session is not None:
        sources = [s for s in sources if f"ses-{session}" in s.parts]
    uris = sorted({raw_uri(s) for s in sources})
    return [write_json(sidecar_path(p), {"Sources": uris}) for p in images
            if str(p).endswith((".nii", ".nii.gz"))]


def checksums(paths: Iterable[str | Path], cache_path: str | Path) -> dict[str, str]:
    """sha256 of each file, reusing ``cache_path`` (path, size, mtime_ns, sha256) for files
    unchanged since they were hashed, so a rerun over thousands of scans costs seconds."""
    cache_path = Path(cache_path)
    cache: dict[str, tuple[int, int, str]] = {}
    if cache_path.is_file():
        for row in read_tsv(cache_path, dtype={"path": str, "sha256": str}).itertuples():
            cache[row.path] = (int(row.size), int(row.mtime_ns), row.sha256)
    out, rows = {}, []
    for path in sorted({str(p) for p in paths}):
        try:
            st = os.stat(path)
        except OSError:
            continue
        known = cache.get(path)
        digest = (known[2] if known and known[:2] == (st.st_size, st.st_mtime_ns)
                  else sha256_file(path))
        out[path] = digest
        rows.append([path, st.st_size, st.st_mtime_ns, digest])
    import pandas as pd

    write_tsv(cache_path, pd.DataFrame(rows, columns=["path", "size", "mtime_ns", "sha256"]))
    return out


def write_provenance(out_dir: str | Path, config: Mapping[str, Any], inputs: Iterable[str | Path],
                     command: list[str], start: float, end: float | None = None) -> Path:
    """Write ``<out_dir>/provenance.json`` for the run that just produced the outputs."""
    out_dir = Path(out_dir)
    end = time.time() if end is None else end
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))  # noqa: E731
    record = {
        "pipeline": {"name": "rebound-mri", "version": __version__, "git_commit": code_commit()},
        "software": software_versions(),
        "config": dict(config),
        "command": list(command),
        "started": stamp(start),
        "finished": stamp(end),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "inputs_sha256": checksums(inputs, out_dir / "logs" / "provenance" / "sha256.tsv"),
    }
    return write_json(out_dir / "provenance.json", record)
