"""BIDS discovery: which subjects and sessions a dataset holds, and which intervals can run.

Only file names are read here (it runs when the workflow starts, for every subject); image
contents are checked per session by :mod:`pipeline.checks`. A session lacking its T1w or FLAIR is
reported, and an interval that needs it is skipped with the reason, so the other subjects go on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import InputError
from pipeline.io import write_tsv
from pipeline.paths import raw_image

SESSION_COLUMNS = ["participant_id", "session", "months", "status", "reason", "t1w", "flair"]
INTERVAL_COLUMNS = ["participant_id", "interval", "ses_start", "ses_end", "months", "status",
                    "reason"]


@dataclass(frozen=True)
class Discovery:
    """What a BIDS dataset holds.

    Attributes
    ----------
    sessions : DataFrame, one row per subject x configured session, columns ``SESSION_COLUMNS``;
        ``status`` is ``ok``, ``missing``, ``incomplete`` or ``excluded``.
    intervals : DataFrame, one row per subject x configured interval, ``INTERVAL_COLUMNS``;
        ``status`` is ``run`` or ``skipped``.
    """

    sessions: pd.DataFrame
    intervals: pd.DataFrame

    def subjects(self) -> list[str]:
        """Labels (without ``sub-``) of subjects with at least one runnable interval."""
        run = self.intervals[self.intervals.status == "run"]
        return sorted({pid.removeprefix("sub-") for pid in run.participant_id})

    def sessions_of(self, subject: str) -> list[str]:
        """Sessions of ``subject`` needed by its runnable intervals, in config order."""
        run = self.intervals[(self.intervals.participant_id == f"sub-{subject}")
                             & (self.intervals.status == "run")]
        needed = set(run.ses_start) | set(run.ses_end)
        order = list(dict.fromkeys(self.sessions.session))
        return [s for s in order if s in needed]

    def intervals_of(self, subject: str) -> list[str]:
        """Runnable interval labels of ``subject``, in config order."""
        run = self.intervals[(self.intervals.participant_id == f"sub-{subject}")
                             & (self.intervals.status == "run")]
        return list(run.interval)


def parse_intervals(intervals: list[str], sessions_months: dict[str, float]) -> list[tuple[str, str]]:
    """Split ``"baseline-m06"`` labels into session pairs, checking them against the config.

    Raises :class:`InputError` naming the bad interval when a session is unknown or the interval
    does not go forward in time.
    """
    pairs = []
    for label in intervals:
        parts = label.split("-")
        if len(parts) != 2:
            raise InputError(f"config 'intervals': {label!r} must be '<ses_start>-<ses_end>', "
                             "e.g. 'baseline-m06'")
        a, b = parts
        for ses in (a, b):
            if ses not in sessions_months:
                raise InputError(f"config 'intervals': {label!r} names session {ses!r}, which is "
                                 f"not in config 'sessions' {sorted(sessions_months)}")
        if not sessions_months[b] > sessions_months[a]:
            raise InputError(f"config 'intervals': {label!r} must go forward in time "
                             f"({a}={sessions_months[a]} months, {b}={sessions_months[b]} months)")
        pairs.append((a, b))
    return pairs


def discover(bids_dir: str | Path, sessions_months: dict[str, float], intervals: list[str],
             subjects: list[str] | None = None,
             exclude: dict[str, str] | None = None) -> Discovery:
    """List subjects, sessions and runnable intervals of a BIDS dataset.

    Parameters
    ----------
    bids_dir : BIDS raw dataset root
    sessions_months : session label -> time since baseline in months (config ``sessions``)
    intervals : interval labels ``"<a>-<b>"`` (config ``intervals``)
    subjects : restrict to these labels (with or without ``sub-``); None: every ``sub-*`` folder
    exclude : participant_id or label -> reason; such subjects are listed, not processed
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError(f"{bids_dir}: BIDS directory not found; set config 'bids_dir' to the "
                         "dataset root (the folder holding dataset_description.json)")
    pairs = parse_intervals(intervals, sessions_months)
    exclude = {k if k.startswith("sub-") else f"sub-{k}": v for k, v in (exclude or {}).items()}
    found = sorted(p.name.removeprefix("sub-") for p in bids_dir.glob("sub-*") if p.is_dir())
    if subjects:
        wanted = [s.removeprefix("sub-") for s in subjects]
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise InputError(f"{bids_dir}: config 'subjects' lists {missing}, which have no "
                             "sub-<label> folder; fix the list or the dataset")
        found = [s for s in found if s in wanted]
    if not found:
        raise InputError(f"{bids_dir}: no sub-<label> folders found; is this a BIDS dataset root?")

    ses_rows, int_rows = [], []
    for sub in found:
        pid = f"sub-{sub}"
        usable = {}
        for ses, months in sessions_months.items():
            t1, flair = raw_image(bids_dir, sub, ses, "T1w"), raw_image(bids_dir, sub, ses, "FLAIR")
            if pid in exclude:
                status, reason = "excluded", f"excluded in config: {exclude[pid]}"
            elif not t1.parent.parent.is_dir():
                status, reason = "missing", f"no ses-{ses} folder"
            elif not (t1.exists() and flair.exists()):
                absent = [p.name for p in (t1, flair) if not p.exists()]
                status, reason = "incomplete", f"{', '.join(absent)} not found in {t1.parent}"
            else:
                status, reason = "ok", ""
            usable[ses] = (status, reason)
            ses_rows.append([pid, ses, months, status, reason, str(t1), str(flair)])
        for a, b in pairs:
            bad = [f"ses-{s}: {usable[s][1]}" for s in (a, b) if usable[s][0] != "ok"]
            int_rows.append([pid, f"{a}-{b}", a, b, sessions_months[b] - sessions_months[a],
                             "skipped" if bad else "run", "; ".join(bad)])
    return Discovery(pd.DataFrame(ses_rows, columns=SESSION_COLUMNS),
                     pd.DataFrame(int_rows, columns=INTERVAL_COLUMNS))


def _key_value(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--sessions: {item!r} must be label=months, e.g. m06=6")
        out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline discover", description=__doc__)
    ap.add_argument("--bids", required=True, type=Path)
    ap.add_argument("--sessions", nargs="+", required=True, metavar="LABEL=MONTHS")
    ap.add_argument("--intervals", nargs="+", required=True, metavar="A-B")
    ap.add_argument("--subjects", nargs="*", default=None)
    ap.add_argument("--exclude", nargs="*", default=[], metavar="SUBJECT=REASON")
    ap.add_argument("--sessions-out", required=True, type=Path)
    ap.add_argument("--intervals-out", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        exclude = dict(item.partition("=")[::2] for item in args.exclude)
        found = discover(args.bids, _key_value(args.sessions), args.intervals, args.subjects,
                         exclude)
    except InputError as exc:
        ap.exit(1, f"error: {exc}\n")
    write_tsv(args.sessions_out, found.sessions)
    write_tsv(args.intervals_out, found.intervals)
    skipped = found.intervals[found.intervals.status == "skipped"]
    for row in skipped.itertuples():
        print(f"{row.participant_id} {row.interval}: skipped ({row.reason})")
    return 0
