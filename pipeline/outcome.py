"""Refusals as outcomes: what a step could not measure, recorded so the cohort can list it.

The policy (README, "When a scan is refused"):

* A step that refuses its input (a scan failing a check at validation, a registration judged
  implausible, a segmentation outside physiology) ends that job with :data:`REFUSED_EXIT` and a
  *refusal record*, ``<out>/logs/refusals/sub-<s>[_ses-<t>]_<step>.json``: the step, the
  message (file, check, what was found, the fix), and the fingerprint of what was refused - the
  sha256 of the raw BIDS files the step's work derives from, of the resolved parameters, and the
  pipeline version. The workflow keeps going for every other subject (its default profile sets
  ``keep-going``), so the plain ``snakemake`` command and the profiles behave the same.
* A run that ends with a failed job moves the cohort tables it did not rebuild into
  ``<out>/stale/``: an older cohort table is never left looking current.
* The next run reads the records. A record whose fingerprint still matches (same files, same
  parameters, same version) is the subject's outcome: a refused session is treated like a
  missing one (its intervals are skipped), a subject-level refusal leaves the subject out, and
  both are listed in ``excluded.tsv`` and in the report's banner - never silently dropped. A
  record that no longer matches (the scan was replaced, a parameter changed) is retried.
* ``strict: true`` makes any refusal fatal: the workflow stops at start while a record matches.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.cli import run_command
from pipeline.errors import InputError, RegistrationError
from pipeline.io import read_tsv, write_json, write_tsv

if TYPE_CHECKING:
    import pandas as pd

#: Exit code of a step that refused its input: a failed job to the scheduler; the refusal
#: record, not the code, is what tells a refusal from a crash.
REFUSED_EXIT = 1

#: Steps that may refuse one session, and those that refuse the subject as a whole.
SESSION_STEPS = ("preprocess",)
SUBJECT_STEPS = ("register", "segment", "longitudinal")

#: Columns of ``excluded.tsv``: who is missing from the cohort tables, where and why.
EXCLUDED_COLUMNS = ("participant_id", "session", "step", "file", "reason", "fix")

#: Cohort-level products (relative to out_dir) that a failed run must not leave looking current.
COHORT_PRODUCTS = ("endpoints.tsv", "excluded.tsv", "group_stats.tsv", "group_stats_notes.tsv",
                   "report.html", "provenance.json", "evaluation/scores.tsv",
                   "evaluation/errors.tsv")

_PATH = re.compile(r"(?:^|\s)(/?[^\s:;,()]+\.(?:nii\.gz|nii|tsv|json|txt))")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refusal_path(out: str | Path, step: str, subject: str, session: str | None = None) -> Path:
    name = f"sub-{subject}" + (f"_ses-{session}" if session else "") + f"_{step}.json"
    return Path(out) / "logs" / "refusals" / name


def split_message(message: str) -> tuple[str, str, str]:
    """``(file, reason, fix)`` of a refusal message written as the project writes them:
    ``"<file>: <what was found>; <what to do>"`` (the file and the fix may be absent)."""
    match = _PATH.search(message)
    file = match.group(1) if match else ""
    body = message
    if file and message.startswith(file):
        # "<file> (FLAIR): found ..." -> "FLAIR: found ..."
        body = re.sub(r"^\s*\((\w+)\):\s*", r"\1: ", message[len(file):]).lstrip(": ")
    reason, sep, fix = body.rpartition("; ")
    return (file, reason, fix) if sep else (file, body, "")


@dataclass(frozen=True)
class Refusal:
    """One refusal record (see the module docstring)."""

    step: str
    subject: str
    session: str | None
    message: str
    sources: Mapping[str, str]  # raw BIDS file -> sha256
    params_sha256: str
    version: str

    def row(self) -> list[str]:
        file, reason, fix = split_message(self.message)
        return [f"sub-{self.subject}", self.session or "n/a", self.step, file or "n/a",
                reason, fix or "n/a"]

    def still_holds(self, params_sha256: str, version: str = __version__) -> bool:
        """True while the refused inputs, parameters and code are the ones refused."""
        if (not self.sources or self.params_sha256 != params_sha256
                or self.version != version):
            return False  # a record that cannot be checked is retried, never trusted
        try:
            return all(sha256_file(p) == h for p, h in self.sources.items())
        except OSError:
            return False


def write_refusal(out: str | Path, step: str, subject: str, session: str | None, message: str,
                  sources: Sequence[str | Path], params_path: str | Path | None) -> Path:
    params_sha = sha256_file(params_path) if params_path else ""
    record = {"step": step, "subject": subject, "session": session, "message": message,
              "sources": {str(p): sha256_file(p) for p in sources if Path(p).is_file()},
              "params_sha256": params_sha, "version": __version__}
    return write_json(refusal_path(out, step, subject, session), record)


def read_refusals(out: str | Path) -> list[Refusal]:
    """Every refusal record under ``out`` (sorted by file name, so deterministic)."""
    folder = Path(out) / "logs" / "refusals"
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(read_refusal(path))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a record damaged by a kill: the step is simply retried
    return records


def read_refusal(path: str | Path) -> Refusal:
    """One refusal record."""
    data = json.loads(Path(path).read_text())
    return Refusal(**{k: data[k] for k in Refusal.__dataclass_fields__})


def standing_refusals(out: str | Path, params_sha256: str,
                      version: str = __version__) -> list[Refusal]:
    """The records that still describe the current inputs, parameters and code."""
    return [r for r in read_refusals(out) if r.still_holds(params_sha256, version)]


def add_sources_argument(parser: Any) -> None:
    """``--sources``: the raw BIDS files a subject step's work derives from (the fingerprint of
    a refusal, and the ``Sources`` of the derivatives' sidecars)."""
    parser.add_argument("--sources", nargs="*", default=[], metavar="FILE",
                        help="raw BIDS files this subject's derivatives derive from")


def run_step(step: str, out: str | Path, subject: str, session: str | None,
             sources: Sequence[str | Path], params_path: str | Path | None,
             work: Callable[[dict[str, Any]], Any]) -> tuple[int, Any]:
    """Run one step's ``work(params)`` for one subject (or session) with the outcome rules.

    ``params`` are the parameter objects of ``params_path`` by class name. Returns
    ``(exit code, work's result)``: 0 when it ran; :data:`REFUSED_EXIT` when it refused its
    input (the message goes to stderr and into the refusal record); 1 when the parameter file
    itself is unusable (a configuration error, not the subject's outcome: no record). A record
    of an earlier refusal of the same step is removed first: a record describes the last try.
    """
    from pipeline.settings import load_params

    try:
        params = load_params(params_path)
    except InputError as exc:
        print(f"{step}: {exc}", file=sys.stderr, flush=True)
        return 1, None
    record = refusal_path(out, step, subject, session)
    record.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        result = work(params)
    except (InputError, RegistrationError) as exc:
        where = f"sub-{subject}" + (f" ses-{session}" if session else "")
        message = str(exc)
        if not any(Path(s).name in message for s in sources):
            # a check on derived data (a brain mask, a segmentation): name the scans it came from
            message = f"{where} ({', '.join(Path(s).name for s in sources)}): {message}"
        print(f"{step} {where}: refused: {message}", file=sys.stderr, flush=True)
        write_refusal(out, step, subject, session, message, sources, params_path)
        return REFUSED_EXIT, None
    print(f"{step}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 0, result


# ------------------------------------------------------------------ what a record means for a run

def without_refused(discovery: Any, refusals: Iterable[Refusal]) -> Any:
    """The discovery with standing refusals applied: a refused session is unusable like a
    missing one (its intervals skipped, the reason given); a subject-level refusal skips every
    interval of the subject. Returns a new :class:`pipeline.bids.Discovery`."""
    sessions = discovery.sessions.copy()
    intervals = discovery.intervals.copy()
    for r in refusals:
        pid = f"sub-{r.subject}"
        why = f"refused at {r.step}: {r.message}"
        if r.session is not None:
            hit = (sessions.participant_id == pid) & (sessions.session == r.session)
            sessions.loc[hit, ["status", "reason"]] = ["refused", why]
            rows = (intervals.participant_id == pid) & (
                (intervals.ses_start == r.session) | (intervals.ses_end == r.session))
        else:
            rows = intervals.participant_id == pid
        rows &= intervals.status == "run"
        intervals.loc[rows, ["status", "reason"]] = ["skipped", f"ses-{r.session}: {why}"
                                                     if r.session else why]
    return replace(discovery, sessions=sessions, intervals=intervals, _index={})


def excluded_table(discovery_sessions: pd.DataFrame, refusals: Iterable[Refusal],
                   notes: pd.DataFrame | None = None) -> pd.DataFrame:
    """``excluded.tsv``: every session or subject missing from the cohort tables, and why.

    Rows come from the discovery (sessions not usable: missing, incomplete, ambiguous, excluded
    in the config), from the standing refusals, and from discovery notes about participants
    with no images. Sorted by participant, session and step.
    """
    rows = []
    for r in discovery_sessions.itertuples(index=False):
        if r.status == "ok":
            continue
        step = "config" if r.status == "excluded" else "discovery"
        file, reason, fix = split_message(str(r.reason))
        rows.append([r.participant_id, r.session, step, file or "n/a", reason, fix or "n/a"])
    rows += [r.row() for r in refusals]
    if notes is not None and len(notes):
        for n in notes[notes.kind == "participant_without_images"].itertuples(index=False):
            rows.append([n.participant_id, "n/a", "discovery", n.path or "n/a", n.reason,
                         "add the participant's images or remove the row"])
    import pandas as pd  # here, not at the top: image-only steps start faster without it

    table = pd.DataFrame(rows, columns=list(EXCLUDED_COLUMNS))
    return table.sort_values(["participant_id", "session", "step"], kind="mergesort",
                             ignore_index=True)


def excluded_files(out_path: str | Path, discovery_sessions: str | Path,
                   refusal_paths: Sequence[str | Path] = (),
                   discovery_notes: str | Path | None = None) -> pd.DataFrame:
    """Write ``excluded.tsv`` from the discovery tables and the standing refusal records."""
    sessions = read_tsv(discovery_sessions, dtype=str).fillna("")
    notes = (read_tsv(discovery_notes, dtype=str).fillna("")
             if discovery_notes and Path(discovery_notes).is_file() else None)
    table = excluded_table(sessions, [read_refusal(p) for p in refusal_paths], notes)
    write_tsv(out_path, table)
    return table


def move_stale_products(out: str | Path, run_start: float) -> list[Path]:
    """Move the cohort products the failed run did not rebuild into ``<out>/stale/``.

    Called when a run fails: whatever the run did not rebuild (older than ``run_start``; every
    cohort product when ``endpoints.tsv`` itself was not rebuilt) no longer describes the
    dataset. Returns the new paths.
    """
    out = Path(out)
    endpoints = out / COHORT_PRODUCTS[0]
    # Without a cohort table of this run, even tables this run wrote (excluded.tsv) describe a
    # cohort that does not exist.
    rebuilt = endpoints.is_file() and endpoints.stat().st_mtime >= run_start
    moved = []
    for name in COHORT_PRODUCTS:
        path = out / name
        if path.is_file() and (not rebuilt or path.stat().st_mtime < run_start):
            target = out / "stale" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            moved.append(target)
    if moved:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run_start))
        (out / "stale" / "STALE.txt").write_text(
            f"The run started {stamp} failed before rebuilding these cohort tables, so they "
            "describe an older state of the dataset (see the run's log and "
            "logs/refusals/). Run the workflow again to rebuild them.\n")
    return moved


def refusal_summary(refusals: Sequence[Refusal]) -> str:
    """One line per refusal, for the end-of-run message."""
    return "\n".join(f"  sub-{r.subject}" + (f" ses-{r.session}" if r.session else "")
                     + f" [{r.step}]: {r.message}" for r in refusals)


def params_fingerprint(resolved_json_text: str) -> str:
    """sha256 of the resolved parameter file, as the settings step writes it."""
    return sha256_text(resolved_json_text)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline excluded --sessions DISCOVERY_SESSIONS --out excluded.tsv
    [--notes NOTES] [--refusals RECORD ...]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pipeline excluded",
                                 description="List every session or subject missing from the "
                                             "cohort tables, and why (excluded.tsv).")
    ap.add_argument("--sessions", required=True, help="discovery sessions table")
    ap.add_argument("--notes", default=None, help="discovery notes table")
    ap.add_argument("--refusals", nargs="*", default=[], help="standing refusal records")
    ap.add_argument("--out", required=True, help="excluded.tsv to write")
    args = ap.parse_args(argv)

    def work() -> None:
        table = excluded_files(args.out, args.sessions, args.refusals, args.notes)
        print(f"excluded: {len(table)} row(s) -> {args.out}")

    return run_command("excluded", work, errors=(InputError, OSError, ValueError, KeyError))
