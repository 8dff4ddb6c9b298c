"""Phantom generation speed and memory per subject (3 sessions, T1w + FLAIR, truth maps).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_speed.py [--subjects 3] [--out TSV]

Each configuration runs in its own process (one core, single-threaded numpy) so that its peak
resident memory is its own; results go to benchmarks/phantom_speed.tsv with the command in the
header. Seconds are wall-clock per subject as reported by ``generate_cohort`` (generation and
writing; the preview is not included); CPU seconds per subject (user + system of the whole
process, including imports, divided by the subject count) are less sensitive to a busy host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.io import atomic_path  # noqa: E402

#: (preset, T1 voxel mm, FLAIR thick-slice fraction, non-RAS fraction)
CONFIGS = (
    ("ci", 2.0, 0.0, 0.25),
    ("demo", 1.5, 0.34, 0.34),
    ("trial", 1.0, 0.0, 0.0),
    ("trial", 1.0, 1.0, 1.0),
)

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from pipeline.phantom import generate_cohort
preset, voxel, thick, nonras, n, out = sys.argv[1:7]
s = generate_cohort(out, preset=preset, n_subjects=int(n), seed=20160601,
                    voxel_mm=float(voxel), thick_flair_fraction=float(thick),
                    non_ras_fraction=float(nonras))
size = sum(p.stat().st_size for p in Path(out).rglob("*.nii.gz"))
size += sum(p.stat().st_size for p in Path(out + "-truth").rglob("*.nii.gz"))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": s["seconds_per_subject"], "n_lesions": s["n_lesions"],
                  "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "mismatches": s["kind_class_mismatches"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "mb_per_subject": size / 1e6 / int(n)}))
"""


def run(preset: str, voxel: float, thick: float, nonras: float, n: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, "-c", _CHILD, preset, str(voxel), str(thick),
                              str(nonras), str(n), str(Path(tmp) / "bids")], env=env,
                             check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "phantom_speed.tsv"))
    args = ap.parse_args(argv)
    cols = ["preset", "t1_voxel_mm", "thick_flair_fraction", "non_ras_fraction", "n_subjects",
            "seconds_per_subject_mean", "seconds_per_subject_max", "cpu_seconds_per_subject",
            "peak_rss_mb",
            "mb_per_subject", "lesions_per_subject_mean", "kind_class_mismatches"]
    lines = [
        "# Phantom generation per subject (3 sessions, T1w + FLAIR, truth maps), one core.",
        "# command: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_speed.py"
        + (f" --subjects {args.subjects}" if args.subjects != 3 else ""),
        f"# machine: {platform.machine()} {platform.processor() or ''} python "
        f"{platform.python_version()}; shared host, timings vary with load "
        f"(1-min load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
        "\t".join(cols),
    ]
    for preset, voxel, thick, nonras in CONFIGS:
        r = run(preset, voxel, thick, nonras, args.subjects)
        secs = r["seconds"]
        row = [preset, f"{voxel:g}", f"{thick:g}", f"{nonras:g}", str(args.subjects),
               f"{sum(secs) / len(secs):.2f}", f"{max(secs):.2f}",
               f"{r['cpu_seconds'] / len(secs):.2f}", f"{r['peak_rss_mb']:.0f}",
               f"{r['mb_per_subject']:.1f}", f"{sum(r['n_lesions']) / len(secs):.1f}",
               str(r["mismatches"])]
        print("\t".join(row), flush=True)
        lines.append("\t".join(row))
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
