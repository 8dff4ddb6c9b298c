"""BIDS discovery: which subjects and sessions a dataset holds, which files are their T1w and
FLAIR, when each visit happened, and which intervals can run.

Only file names and ``sessions.tsv`` are read here (it runs when the workflow starts, for every
subject: 1000 subjects x 3 sessions take well under 2 s); image contents are checked per session
by :mod:`pipeline.checks`.

File names are parsed by BIDS entities (:func:`parse_name`): ``sub``, ``ses``, then optional
entities in the order the BIDS specification allows (``task``, ``acq``, ``ce``, ``rec``, ``dir``,
``run``, ``echo``, ``flip``, ``inv``, ``mt``, ``part``, ``chunk``), the suffix (``T1w``,
``FLAIR``) and ``.nii.gz`` or ``.nii``. Names that do not parse are not inputs (they are named in
the message when nothing else is found). Per session and role:

1. candidates: the session's ``anat/`` files with the role's suffix and a NIfTI extension;
2. filters (config ``inputs``): entity -> required label, ``None`` meaning "entity absent"; the
   default leaves out contrast-enhanced T1w (``T1w: {ce: None}``);
3. several left that differ only by ``run``: ``multiple_runs`` decides (``last``, the default,
   takes the highest run number, since a repeated acquisition normally replaces a failed one; a
   name without ``run`` counts as run 0; ``first``; ``refuse``); several that differ by another
   entity: the session is refused with the files and the filter that would choose.

The sessions table records every candidate and the choice made. A session lacking its T1w or
FLAIR, or refused, is reported, and an interval that needs it is skipped with the reason, so the
other subjects go on.

Visit times (config ``visit_times``): from ``sub-<label>/sub-<label>_sessions.tsv`` where it
gives every present configured session a time, either an ISO 8601 date/datetime column
(``acq_time``; months = days / 30.4375) or a numeric months column; months are counted from the
subject's first timed session, placed at its nominal months (0 for baseline). Otherwise the
nominal months of config ``sessions``; the ``months_source`` column says which.

No folder name stops discovery. Subject and session folders are ``sub-<label>`` and
``ses-<label>`` with a label of letters and digits only (the workflow's wildcard constraints):
anything else named like one (``sub-001_old``, ``sub-a b``, ``sub-``, ``ses-m06 (copy)``, a
hidden ``.sub-03``, a file ``sub-02``, undecodable bytes) is skipped and noted, and the other
subjects go on. The notes table (:data:`NOTE_COLUMNS`, kinds :data:`NOTE_KINDS`) also names
participants of ``participants.tsv`` without images, subjects with images but no
``participants.tsv`` row, and session folders not in config ``sessions``. Only a dataset that
cannot be read at all (no root folder, an unreadable root or ``participants.tsv``) raises.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import pandas as pd

from pipeline.cli import run_command
from pipeline.contract import interval_label, split_interval_label
from pipeline.errors import InputError
from pipeline.io import read_tsv, write_tsv
from pipeline.paths import raw_image

#: Entities of an anatomical file name, in the order the BIDS specification requires.
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "flip", "inv",
                "mt", "part", "chunk")
#: Entities whose value is an index (digits); the others are alphanumeric labels.
INDEX_ENTITIES = frozenset({"run", "echo", "flip", "inv", "chunk"})
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
ROLES = ("T1w", "FLAIR")
#: Config ``inputs`` defaults (also the schema's): contrast-enhanced T1w left out.
DEFAULT_FILTERS: dict[str, dict[str, str | None]] = {"T1w": {"ce": None}, "FLAIR": {}}
MULTIPLE_RUNS = ("last", "first", "refuse")
#: Mean month (365.25 / 12 days).
DAYS_PER_MONTH = 30.4375

SESSION_COLUMNS = ["participant_id", "session", "months", "months_source", "status", "reason",
                   "t1w", "flair", "t1w_candidates", "flair_candidates", "choice"]
INTERVAL_COLUMNS = ["participant_id", "interval", "ses_start", "ses_end", "months", "status",
                    "reason"]
#: Discovery notes: what in the dataset was skipped or does not match the config or the
#: participants sheet. ``participant_id`` and ``session`` are None (``n/a``) where they do not
#: apply; ``path`` is the folder or file the note is about.
NOTE_COLUMNS = ["participant_id", "session", "path", "kind", "reason"]
#: ``kind`` of a note: a folder named like a subject or session folder whose name is not
#: ``sub-<label>``/``ses-<label>`` (letters and digits only), or hidden; a file where such a
#: folder is expected; a session folder not in config ``sessions``; a participants.tsv row with
#: no subject folder; a subject folder with no participants.tsv row.
NOTE_KINDS = ("skipped_folder", "not_a_folder", "session_not_configured",
              "participant_without_images", "subject_not_in_participants")

_ORDER = {e: i for i, e in enumerate(ENTITY_ORDER)}
_LABEL = re.compile(r"[A-Za-z0-9]+")
_INDEX = re.compile(r"[0-9]+")
#: Folder names read as meant for a subject or session: any case, ``-`` or ``_``, hidden or not.
_FOLDER_LIKE = {"sub": re.compile(r"\.*sub[-_]", re.IGNORECASE),
                "ses": re.compile(r"\.*ses[-_]", re.IGNORECASE)}
_FOLDER_OF = {"sub": "subject", "ses": "session"}


class BidsName(NamedTuple):
    """A parsed BIDS file name: entities (in name order), suffix, extension (with the dot)."""

    entities: dict[str, str]
    suffix: str
    extension: str

    def without(self, *keys: str) -> tuple:
        """Entities other than ``keys``, for comparing candidates."""
        return tuple((k, v) for k, v in self.entities.items() if k not in keys)


def parse_name(name: str) -> BidsName | None:
    """Parse ``sub-01_ses-m06_acq-3D_run-2_FLAIR.nii.gz``; None when it is not a BIDS name.

    The name must start with ``sub-<label>``, carry each entity at most once in the order of
    :data:`ENTITY_ORDER`, end in ``_<suffix>.<extension>``, and have alphanumeric labels (digits
    for index entities such as ``run``). Any extension is returned (callers keep
    :data:`NIFTI_EXTENSIONS`), so near misses such as ``.mgz`` can be named.
    """
    stem, dot, ext = name.partition(".")
    if not dot or not stem.startswith("sub-"):
        return None
    parts = stem.split("_")
    suffix = parts.pop()
    if not _LABEL.fullmatch(suffix):
        return None
    entities: dict[str, str] = {}
    last = -1
    for part in parts:
        key, sep, value = part.partition("-")
        rank = _ORDER.get(key, -1)
        if not sep or rank <= last:
            return None
        if not (_INDEX if key in INDEX_ENTITIES else _LABEL).fullmatch(value):
            return None
        entities[key] = value
        last = rank
    return BidsName(entities, suffix, "." + ext)


def _run_number(name: BidsName) -> int:
    return int(name.entities.get("run", 0))


def _same(key: str, have: str | None, want: Any) -> bool:
    if have is None or want is None:
        return have is None and want is None
    if key in INDEX_ENTITIES:  # run: 2 in the config chooses run-02
        return str(want).isdigit() and int(have) == int(want)
    return have == str(want)


def _passes(name: BidsName, wanted: Mapping[str, Any]) -> bool:
    return all(_same(k, name.entities.get(k), v) for k, v in wanted.items())


def _filter_text(wanted: Mapping[str, str | None]) -> str:
    return "{" + ", ".join(f"{k}: {'null' if v is None else v}" for k, v in wanted.items()) + "}"


class Choice(NamedTuple):
    """One role's file in one session: the chosen name (or None), all candidates, and why."""

    chosen: str | None
    candidates: list[str]
    why: str
    refused: bool = False


def choose_file(names: Iterable[str], sub: str, ses: str, role: str,
                wanted: Mapping[str, str | None], multiple_runs: str = "last") -> Choice:
    """Choose a session's ``role`` image among the file names of its ``anat/`` folder.

    Parameters
    ----------
    names : file names (not paths) in ``sub-<sub>/ses-<ses>/anat/``
    sub, ses : labels without prefixes; a name of another subject or session is ignored
    role : suffix, ``T1w`` or ``FLAIR``
    wanted : entity -> required label, None meaning the entity must be absent
    multiple_runs : ``last``, ``first`` or ``refuse`` (candidates differing only by run)

    Returns
    -------
    Choice
        ``chosen`` None with ``refused`` False: nothing found (``why`` names what was looked for
        and the closest names seen); ``refused`` True: several candidates and no rule to choose.
    """
    if multiple_runs not in MULTIPLE_RUNS:
        raise InputError(f"config 'inputs.multiple_runs': {multiple_runs!r} must be one of "
                         f"{list(MULTIPLE_RUNS)}")
    candidates, left_out, near = _candidates(names, sub, ses, role, wanted)
    every = [f for f, _ in candidates]
    kept = [(f, p) for f, p in candidates if f not in left_out]
    filt = f"inputs.{role} {_filter_text(wanted)}"
    if not kept:
        return _nothing_found(sub, ses, role, every, left_out, near, filt)
    note = f"; left out by {filt}: {', '.join(left_out)}" if left_out else ""
    if len(kept) == 1:
        return Choice(kept[0][0], every, f"{role}: {kept[0][0]}" + note)
    if len({p.without("run") + (("ext", p.extension),) for _, p in kept}) > 1:
        return _refuse_ambiguous(kept, every, role, note)
    return _choose_run(kept, every, role, multiple_runs, note)


def _candidates(names: Iterable[str], sub: str, ses: str, role: str,
                wanted: Mapping[str, str | None]
                ) -> tuple[list[tuple[str, BidsName]], list[str], list[str]]:
    """Candidates: the session's NIfTI files of suffix ``role`` (sorted, with their parsed
    names), those of them the filter ``wanted`` leaves out, and near misses (with why)."""
    near: list[str] = []
    candidates: list[tuple[str, BidsName]] = []
    left_out: list[str] = []
    for fname in sorted(names):
        parsed = parse_name(fname)
        if parsed is None:
            if role.lower() in fname.lower():
                near.append(f"{fname} (not a BIDS name: entities out of order or unknown)")
            continue
        if parsed.entities.get("sub") != sub or parsed.entities.get("ses") != ses:
            if parsed.suffix == role:
                near.append(f"{fname} (names another subject or session)")
            continue
        if parsed.suffix != role:
            if parsed.suffix.lower() == role.lower():
                near.append(f"{fname} (suffix {parsed.suffix}, BIDS spells it {role})")
            continue
        if parsed.extension not in NIFTI_EXTENSIONS:
            near.append(f"{fname} (extension {parsed.extension}; convert to .nii.gz)")
            continue
        candidates.append((fname, parsed))
        if not _passes(parsed, wanted):
            left_out.append(fname)
    return candidates, left_out, near


def _nothing_found(sub: str, ses: str, role: str, every: list[str], left_out: list[str],
                   near: list[str], filt: str) -> Choice:
    """No candidate kept: what was looked for and the closest names seen."""
    pattern = (f"sub-{sub}_ses-{ses}_{role}.nii.gz (or .nii, or with entities: "
               f"sub-{sub}_ses-{ses}_<acq-/ce-/rec-/run-/part-...>_{role}.nii.gz)")
    seen = [f"{f} (left out by {filt})" for f in left_out] + near
    return Choice(None, every, f"no {role}: looked for {pattern}"
                  + (f"; closest seen: {', '.join(seen[:6])}" if seen else
                     "; no file of that kind in the folder"))


def _refuse_ambiguous(kept: list[tuple[str, BidsName]], every: list[str], role: str,
                      note: str) -> Choice:
    """Several candidates differing by more than ``run``: refused, naming the entities that
    differ and the filter values that would choose."""
    differ = sorted({k for _, p in kept for k, v in p.entities.items()
                     if any(q.entities.get(k) != v for _, q in kept)}
                    | ({"extension"} if len({p.extension for _, p in kept}) > 1 else set()))
    hints = []
    for d in (d for d in differ if d != "run"):
        if d == "extension":
            hints.append("keep one of the .nii.gz/.nii copies")
            continue
        values = sorted({p.entities[d] for _, p in kept if d in p.entities})
        absent = any(d not in p.entities for _, p in kept)
        hints.append(f"set inputs.{role}.{d} to one of {', '.join(values)}"
                     + (f" or null ({d} absent)" if absent else ""))
    return Choice(None, every, f"{role}: {len(kept)} candidates and nothing to choose "
                  f"between them: {', '.join(f for f, _ in kept)}; {'; '.join(hints)}{note}",
                  refused=True)


def _choose_run(kept: list[tuple[str, BidsName]], every: list[str], role: str,
                multiple_runs: str, note: str) -> Choice:
    """Several candidates differing only by ``run``: the rule ``multiple_runs`` decides."""
    runs = sorted(kept, key=lambda fp: _run_number(fp[1]))
    labels = ", ".join(f"run-{p.entities.get('run', '(none)')}" for _, p in runs)
    if multiple_runs == "refuse":
        return Choice(None, every, f"{role}: {len(kept)} runs ({labels}) and "
                      "inputs.multiple_runs is refuse: set it to last or first, or choose the run "
                      f"with inputs.{role} (run: <index>){note}", refused=True)
    pick = runs[-1] if multiple_runs == "last" else runs[0]
    return Choice(pick[0], every, f"{role}: {pick[0]} ({multiple_runs} of {labels}, "
                  f"inputs.multiple_runs: {multiple_runs}){note}")


# ----------------------------------------------------------------------------- visit times

def _read_sessions_tsv(path: Path) -> list[dict[str, str]] | None:
    """Rows of a BIDS sessions.tsv as dicts of text (a plain reader: pandas costs ~1 ms per file,
    a second over 1000 subjects); None when absent."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); save it as UTF-8 tab-separated text "
                         "or move it out of the dataset") from None
    rows = [line.split("\t") for line in lines if line.strip()]
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, (v.strip() for v in row))) for row in rows[1:]]


def _parse_time(text: str, fmt: str) -> float:
    """A months column -> months; an ISO 8601 date or datetime (``acq_time``) -> days since
    0001-01-01 (time zone dropped: visits are months apart)."""
    if fmt == "months":
        return float(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    return dt.toordinal() + (dt.hour * 3600 + dt.minute * 60 + dt.second) / 86400.0


def visit_months(bids_dir: str | Path, sub: str, sessions_months: Mapping[str, float],
                 present: Iterable[str], visit_times: Mapping[str, Any] | None
                 ) -> tuple[dict[str, float], str]:
    """Months of each configured session of one subject, and where they came from.

    Parameters
    ----------
    bids_dir : dataset root; reads ``sub-<sub>/sub-<sub>_sessions.tsv`` when present
    sub : label without ``sub-``
    sessions_months : nominal months per configured session (config ``sessions``)
    present : sessions the subject has (only these need a time)
    visit_times : ``{"column": name or None, "format": "datetime" or "months"}``

    Returns
    -------
    months : session -> months (nominal for sessions without a time)
    source : e.g. ``"sessions.tsv acq_time"`` or ``"nominal (...why...)"``
    """
    visit_times = visit_times or {}
    column = visit_times.get("column")
    fmt = visit_times.get("format", "datetime")
    nominal = {s: float(m) for s, m in sessions_months.items()}
    if not column:
        return nominal, "nominal (config visit_times.column is null)"
    path = Path(bids_dir) / f"sub-{sub}" / f"sub-{sub}_sessions.tsv"
    rows = _read_sessions_tsv(path)
    if rows is None:
        return nominal, "nominal (no sessions.tsv)"
    if rows and column not in rows[0]:
        return nominal, f"nominal ({path.name} has no column {column})"
    times = {row.get("session_id", "").removeprefix("ses-"): row.get(column, "") for row in rows}
    wanted = [s for s in sessions_months if s in set(present)]
    parsed: dict[str, float] = {}
    for ses in wanted:
        text = times.get(ses, "")
        if text in ("", "n/a"):
            return nominal, f"nominal ({path.name} gives no {column} for ses-{ses})"
        try:
            parsed[ses] = _parse_time(text, fmt)
        except ValueError:
            kind = "a number of months" if fmt == "months" else "an ISO 8601 date or datetime"
            raise InputError(f"{path}: {column} of ses-{ses} is {text!r}, not {kind}; fix the "
                             "value or set config visit_times (column, format)") from None
    if not parsed:
        return nominal, "nominal (no present session)"
    first = wanted[0]
    scale = 1.0 if fmt == "months" else 1.0 / DAYS_PER_MONTH
    months = dict(nominal)
    for ses, value in parsed.items():
        months[ses] = nominal[first] + (value - parsed[first]) * scale
    return months, f"sessions.tsv {column}"


# ----------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class Discovery:
    """What a BIDS dataset holds.

    Attributes
    ----------
    sessions : DataFrame, one row per subject x configured session, columns ``SESSION_COLUMNS``;
        ``status`` is ``ok``, ``missing``, ``incomplete``, ``refused`` or ``excluded``; ``t1w``
        and ``flair`` are the chosen files, ``*_candidates`` every file of that suffix seen and
        ``choice`` how the files were chosen; ``months`` the visit time.
    intervals : DataFrame, one row per subject x configured interval, ``INTERVAL_COLUMNS``;
        ``status`` is ``run`` or ``skipped``; ``months`` the interval's real length.
    notes : DataFrame, ``NOTE_COLUMNS``, one row per thing skipped or not matching (``kind`` one
        of :data:`NOTE_KINDS`), sorted; None where a column does not apply (``n/a`` in the
        file); empty for a clean dataset and for the planned phantom.
    """

    sessions: pd.DataFrame
    intervals: pd.DataFrame
    notes: pd.DataFrame = field(default_factory=lambda: _note_table([]))
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def _lookup(self) -> dict:
        # Input functions ask once per job (thousands at 1000 subjects): index the tables once
        # instead of filtering a DataFrame per call.
        if not self._index:
            files = {(row.participant_id.removeprefix("sub-"), row.session):
                     (row.t1w, row.flair, float(row.months))
                     for row in self.sessions.itertuples(index=False)}
            order = list(dict.fromkeys(self.sessions.session))
            runnable: dict[str, list[tuple[str, str, str]]] = {}
            for row in self.intervals[self.intervals.status == "run"].itertuples(index=False):
                runnable.setdefault(row.participant_id.removeprefix("sub-"), []).append(
                    (row.interval, row.ses_start, row.ses_end))
            needed = {sub: [s for s in order if any(s in (a, b) for _, a, b in rows)]
                      for sub, rows in runnable.items()}
            self._index.update(files=files, runnable=runnable, needed=needed)
        return self._index

    def subjects(self) -> list[str]:
        """Labels (without ``sub-``) of subjects with at least one runnable interval."""
        return sorted(self._lookup()["runnable"])

    def sessions_of(self, subject: str) -> list[str]:
        """Sessions of ``subject`` needed by its runnable intervals, in config order."""
        return list(self._lookup()["needed"].get(subject, []))

    def intervals_of(self, subject: str) -> list[str]:
        """Runnable interval labels of ``subject``, in config order."""
        return [label for label, _, _ in self._lookup()["runnable"].get(subject, [])]

    def interval_sessions_of(self, subject: str) -> list[tuple[str, str]]:
        """(start, end) sessions of each runnable interval of ``subject``, in config order."""
        return [(a, b) for _, a, b in self._lookup()["runnable"].get(subject, [])]

    def files_of(self, subject: str, session: str) -> tuple[str, str]:
        """The chosen (T1w, FLAIR) paths of one session."""
        t1w, flair, _ = self._lookup()["files"][(subject, session)]
        return t1w, flair

    def months_of(self, subject: str) -> dict[str, float]:
        """Visit months of ``subject``'s needed sessions (real where sessions.tsv gives them)."""
        files = self._lookup()["files"]
        return {s: files[(subject, s)][2] for s in self.sessions_of(subject)}

    def layouts(self) -> dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], list[str]]:
        """Subjects grouped by the files their subject-level steps write: (needed sessions,
        (start, end) of the runnable intervals) -> subject labels, the most common first (ties:
        more sessions first, then by the labels), subjects sorted."""
        groups: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], list[str]] = {}
        for subject in self.subjects():
            key = (tuple(self.sessions_of(subject)), tuple(self.interval_sessions_of(subject)))
            groups.setdefault(key, []).append(subject)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), -len(kv[0][0]), kv[0])))

    def note_lines(self) -> list[str]:
        """One line per note, ``<kind> <path>: <reason>``, in the notes' order (for logs)."""
        return [f"{n.kind} {n.path}: {n.reason}" for n in self.notes.itertuples(index=False)]


def parse_intervals(intervals: list[str], sessions_months: dict[str, float]) -> list[tuple[str, str]]:
    """Split ``"baseline-m06"`` labels into session pairs, checking them against the config.

    Raises :class:`InputError` naming the bad interval when a session is unknown or the interval
    does not go forward in time.
    """
    pairs = []
    for label in intervals:
        parts = split_interval_label(label)
        if parts is None:
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


def _interval_rows(pid: str, pairs: list[tuple[str, str]], usable: dict[str, tuple[str, str]],
                   months: Mapping[str, float]) -> list[list[Any]]:
    rows = []
    for a, b in pairs:
        bad = [f"ses-{s}: {usable[s][1]}" for s in (a, b) if usable[s][0] != "ok"]
        length = months[b] - months[a]
        if not bad and not length > 0:
            bad = [f"ses-{b} is not after ses-{a} in the visit times ({months[a]:.2f} and "
                   f"{months[b]:.2f} months); fix sessions.tsv or the session labels"]
        rows.append([pid, interval_label(a, b), a, b, length, "skipped" if bad else "run",
                     "; ".join(bad)])
    return rows


def planned_discovery(bids_dir: str | Path, layout: Iterable[tuple[str, list[str]]],
                      sessions_months: dict[str, float], intervals: list[str]) -> Discovery:
    """The discovery of a dataset not written yet (the phantom), from its known layout
    ``[(subject, [sessions]), ...]``: plain ``sub-X_ses-Y_{T1w,FLAIR}.nii.gz`` names, nominal
    months."""
    pairs = parse_intervals(intervals, sessions_months)
    ses_rows, int_rows = [], []
    for sub, sessions in layout:
        pid, usable = f"sub-{sub}", {}
        for ses, months in sessions_months.items():
            ok = ses in sessions
            usable[ses] = ("ok", "") if ok else ("missing", f"no ses-{ses} folder")
            t1w, flair = (str(raw_image(bids_dir, sub, ses, r)) for r in ROLES)
            ses_rows.append([pid, ses, months, "nominal (generated dataset)", *usable[ses],
                             t1w, flair, Path(t1w).name if ok else "",
                             Path(flair).name if ok else "", "generated" if ok else ""])
        int_rows += _interval_rows(pid, pairs, usable, sessions_months)
    return Discovery(pd.DataFrame(ses_rows, columns=SESSION_COLUMNS),
                     pd.DataFrame(int_rows, columns=INTERVAL_COLUMNS))


def _printable(name: str) -> str:
    r"""A file name as text that can be written to a table and a log line: undecodable bytes as
    ``\xNN``, control characters (a tab or newline would split a TSV row) as escapes."""
    if name.isprintable():
        return name
    try:  # os.scandir hands undecodable bytes over as lone surrogates
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _listdir(folder: Path) -> list[tuple[str, str]]:
    """``(printable name, "dir" | "file" | "other")`` of each entry of ``folder``, sorted.

    Raises OSError (FileNotFoundError, NotADirectoryError, PermissionError) when ``folder``
    cannot be listed; an entry that cannot be examined (a broken link) is ``"other"``.
    """
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            try:
                kind = "dir" if entry.is_dir() else "file" if entry.is_file() else "other"
            except OSError:
                kind = "other"
            entries.append((_printable(entry.name), kind))
    return sorted(entries)


def _contents(folder: Path) -> str:
    """The first names in ``folder``, for a message."""
    try:
        names = [name for name, _ in _listdir(folder)]
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    return ", ".join(names[:6]) or "nothing"


def _folder_labels(entries: Iterable[tuple[str, str]], entity: str
                   ) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The labels of the ``<entity>-<label>`` folders among ``entries`` (from :func:`_listdir`),
    and ``(name, kind, reason)`` of every entry named like such a folder that is not one.

    ``entity`` is ``sub`` or ``ses``. Other names (``derivatives``, ``participants.tsv``,
    ``sub-01_sessions.tsv``) are neither.
    """
    what = _FOLDER_OF[entity]
    labels, odd = [], []
    for name, kind in entries:
        if kind != "dir":
            if name.startswith(f"{entity}-"):
                found = "a file" if kind == "file" else "not a folder (a broken link?)"
                odd.append((name, "not_a_folder",
                            f"{found} where a {what} folder {entity}-<label>/ is expected; "
                            "move it out of the dataset"))
            continue
        if not _FOLDER_LIKE[entity].match(name):
            continue
        if name.startswith("."):
            why = ("hidden folder (its name starts with a dot), not read; rename it without the "
                   "dot to process it, or move it out of the dataset")
        elif not name.startswith(f"{entity}-"):
            why = (f"not a BIDS name: a {what} folder is named {entity}-<label>, lower case "
                   "with a hyphen; rename the folder or move it out of the dataset")
        elif not _LABEL.fullmatch(name[len(entity) + 1:]):
            why = (f"not a BIDS label: only letters and digits may follow {entity}-; rename the "
                   "folder or move it out of the dataset")
        else:
            labels.append(name[len(entity) + 1:])
            continue
        odd.append((name, "skipped_folder", why))
    return labels, odd


def _participant_ids(path: Path) -> list[str] | None:
    """``participant_id`` values of a participants.tsv (``sub-`` added where left out, blanks
    dropped); None when the file is absent.

    Raises :class:`InputError` naming the file when it cannot be read or has no
    ``participant_id`` column.
    """
    if not path.exists():
        return None
    try:
        table = read_tsv(path, dtype=str)
    except (OSError, ValueError) as exc:  # unreadable, undecodable, not a table
        raise InputError(f"{path}: cannot be read as a tab-separated table ({exc}); save it as "
                         "UTF-8 text, tab-separated, with a header row") from None
    if "participant_id" not in table.columns:
        raise InputError(f"{path}: no column 'participant_id' (columns: {list(table.columns)}); "
                         "BIDS names the subjects in a first column participant_id")
    ids = (str(v).strip() for v in table["participant_id"].dropna())
    return [v if v.startswith("sub-") else f"sub-{v}" for v in ids if v]


def _note_table(rows: list[list[str | None]]) -> pd.DataFrame:
    """The notes, sorted; text columns of Python objects so that a value that does not apply
    stays None (pandas' string type would make it NaN, which is truthy)."""
    rows = sorted(rows, key=lambda row: tuple(v or "" for v in row))
    return pd.DataFrame(rows, columns=NOTE_COLUMNS, dtype=object)


def _participant_notes(bids_dir: Path, participants: list[str], subjects: Iterable[str],
                       exclude: Mapping[str, str], every_subject: bool) -> list[list[str | None]]:
    """Notes comparing participants.tsv with the subject folders ``subjects`` (labels);
    participants without a folder only when ``every_subject`` was asked for."""
    notes: list[list[str | None]] = []
    listed = set(participants)
    have = {f"sub-{s}" for s in subjects}
    without_folder = sorted(listed - have) if every_subject else []
    for pid in without_folder:
        shown = _printable(pid)
        why = (f"listed in participants.tsv but the dataset has no {shown}/ folder"
               if _LABEL.fullmatch(pid.removeprefix("sub-")) else
               f"listed in participants.tsv, but {shown} is not a BIDS label (only letters and "
               "digits may follow sub-), so no folder of it is read")
        notes.append([shown, None, str(bids_dir / shown), "participant_without_images",
                      f"{why}; not processed"])
    for pid in sorted(have - listed - set(exclude)):
        notes.append([pid, None, str(bids_dir / pid), "subject_not_in_participants",
                      f"has a folder but no row in {bids_dir / 'participants.tsv'}, so the "
                      "cohort step will refuse it; add its row (participant_id and arm) or "
                      "exclude it (config exclude_subjects)"])
    return notes


def discover(bids_dir: str | Path, sessions_months: dict[str, float], intervals: list[str],
             subjects: list[str] | None = None, exclude: dict[str, str] | None = None,
             filters: Mapping[str, Mapping[str, str | None]] | None = None,
             multiple_runs: str = "last",
             visit_times: Mapping[str, Any] | None = None) -> Discovery:
    """List subjects, sessions (with their chosen files and visit times) and runnable intervals.

    Parameters
    ----------
    bids_dir : BIDS raw dataset root
    sessions_months : session label -> nominal months since baseline (config ``sessions``)
    intervals : interval labels ``"<a>-<b>"`` (config ``intervals``)
    subjects : restrict to these labels (with or without ``sub-``); None: every ``sub-*`` folder
    exclude : participant_id or label -> reason; such subjects are listed, not processed
    filters : role (``T1w``, ``FLAIR``) -> {entity: label or None}; default
        :data:`DEFAULT_FILTERS` (config ``inputs``); a role not given takes its default
    multiple_runs : ``last``, ``first`` or ``refuse`` (config ``inputs.multiple_runs``)
    visit_times : ``{"column": ..., "format": ...}`` (config ``visit_times``); None: nominal

    Returns
    -------
    Discovery
        Its ``notes`` name every folder skipped for its name, every session folder not in
        ``sessions_months`` (of the subjects read), and, where ``participants.tsv`` exists,
        subjects without a row and (when ``subjects`` is None) rows without a subject folder.

    Raises
    ------
    InputError
        The dataset root is missing or unreadable, or holds no usable ``sub-<label>`` folder;
        ``participants.tsv`` or a ``sessions.tsv`` cannot be read; the config names unknown
        subjects, sessions, intervals or entities. Never for the name of a folder or file.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError(f"{bids_dir}: BIDS directory not found; set config 'bids_dir' to the "
                         "dataset root (the folder holding dataset_description.json)")
    pairs = parse_intervals(intervals, sessions_months)
    wanted = _wanted_filters(filters)
    exclude = {k if k.startswith("sub-") else f"sub-{k}": v for k, v in (exclude or {}).items()}
    found, notes = _subject_folders(bids_dir, subjects)
    participants = _participant_ids(bids_dir / "participants.tsv")
    if participants is not None:
        notes += _participant_notes(bids_dir, participants, found, exclude, not subjects)

    ses_rows, int_rows = [], []
    for sub in found:
        sub_ses, sub_int, sub_notes = _subject_rows(bids_dir, sub, sessions_months, pairs,
                                                    wanted, multiple_runs, exclude, visit_times)
        ses_rows += sub_ses
        int_rows += sub_int
        notes += sub_notes
    return Discovery(pd.DataFrame(ses_rows, columns=SESSION_COLUMNS),
                     pd.DataFrame(int_rows, columns=INTERVAL_COLUMNS), _note_table(notes))


def _wanted_filters(filters: Mapping[str, Mapping[str, str | None]] | None
                    ) -> dict[str, dict[str, str | None]]:
    """Filters per role (config ``inputs``; a role not given takes :data:`DEFAULT_FILTERS`),
    refusing entities BIDS does not define."""
    wanted = {role: dict((filters or {}).get(role, DEFAULT_FILTERS[role])) for role in ROLES}
    for role, entities in wanted.items():
        unknown = sorted(set(entities) - set(ENTITY_ORDER[2:]))
        if unknown:
            raise InputError(f"config 'inputs.{role}': unknown BIDS entities {unknown}; use "
                             f"{list(ENTITY_ORDER[2:])}")
    return wanted


def _subject_folders(bids_dir: Path, subjects: list[str] | None
                     ) -> tuple[list[str], list[list[str | None]]]:
    """Subject folders: the labels of the root's ``sub-<label>`` folders, restricted to
    ``subjects`` when given, and notes on the folders skipped for their name.

    Raises :class:`InputError` when the root cannot be listed, ``subjects`` names a bad label
    or a subject without a folder, or no subject folder is left.
    """
    try:
        root = _listdir(bids_dir)
    except OSError as exc:
        raise InputError(f"{bids_dir}: the BIDS directory cannot be listed ({exc.strerror}); "
                         "check its permissions") from None
    found, odd = _folder_labels(root, "sub")
    notes: list[list[str | None]] = [[None, None, str(bids_dir / name), kind, why]
                                     for name, kind, why in odd]
    if subjects:
        asked = [s.removeprefix("sub-") for s in subjects]
        bad = [s for s in asked if not _LABEL.fullmatch(s)]
        if bad:
            raise InputError(f"config 'subjects': {bad} are not BIDS labels (only letters and "
                             "digits follow sub-); fix the list")
        missing = sorted(set(asked) - set(found))
        if missing:
            raise InputError(f"{bids_dir}: config 'subjects' lists {missing}, which have no "
                             "sub-<label> folder; fix the list or the dataset")
        found = [s for s in found if s in asked]
    if not found:
        skipped = f" (skipped: {', '.join(n for n, _, _ in odd[:6])})" if odd else ""
        raise InputError(f"{bids_dir}: no sub-<label> folders found{skipped}; is this a BIDS "
                         "dataset root?")
    return found, notes


def _subject_rows(bids_dir: Path, sub: str, sessions_months: Mapping[str, float],
                  pairs: list[tuple[str, str]], wanted: Mapping[str, Mapping[str, str | None]],
                  multiple_runs: str, exclude: Mapping[str, str],
                  visit_times: Mapping[str, Any] | None
                  ) -> tuple[list[list[Any]], list[list[Any]], list[list[str | None]]]:
    """One subject: its sessions-table rows (status, chosen files, visit months), its
    interval rows and its notes on session folders."""
    pid = f"sub-{sub}"
    sub_dir = bids_dir / pid
    present, unreadable, notes = _session_folders(sub_dir, pid, sessions_months)
    usable: dict[str, tuple[str, str]] = {}
    rows: dict[str, list[Any]] = {}
    for ses in sessions_months:
        rows[ses] = _session_row(sub_dir, sub, ses, present, unreadable, wanted, multiple_runs,
                                 exclude)
        usable[ses] = (rows[ses][4], rows[ses][5])
    timed = [s for s, (status, _) in usable.items() if status == "ok"]
    months, source = visit_months(bids_dir, sub, sessions_months, timed, visit_times)
    for ses, row in rows.items():
        row[2], row[3] = months[ses], source if ses in timed else "nominal"
    return list(rows.values()), _interval_rows(pid, pairs, usable, months), notes


def _session_folders(sub_dir: Path, pid: str, sessions_months: Mapping[str, float]
                     ) -> tuple[list[str], str, list[list[str | None]]]:
    """Session folders of one subject: the ``ses-<label>`` labels present, why the subject
    folder could not be read (``""`` when it could), and notes on session folders skipped for
    their name or not in config ``sessions``."""
    try:
        entries, unreadable = _listdir(sub_dir), ""
    except OSError as exc:
        entries, unreadable = [], f"{sub_dir} cannot be read ({exc.strerror})"
    present, odd = _folder_labels(entries, "ses")
    notes = [[pid, None, str(sub_dir / name), kind, why] for name, kind, why in odd]
    notes += [[pid, ses, str(sub_dir / f"ses-{ses}"), "session_not_configured",
               f"ses-{ses} is not in config sessions ({', '.join(sessions_months)}), so "
               f"not processed; to use it, add it to config sessions ({ses}: <months>) "
               "and to an interval"]
              for ses in present if ses not in sessions_months]
    return present, unreadable, notes


def _session_row(sub_dir: Path, sub: str, ses: str, present: list[str], unreadable: str,
                 wanted: Mapping[str, Mapping[str, str | None]], multiple_runs: str,
                 exclude: Mapping[str, str]) -> list[Any]:
    """One session's status and chosen files: its sessions-table row (:data:`SESSION_COLUMNS`),
    months and months_source left None for :func:`visit_months`."""
    pid = f"sub-{sub}"
    ses_dir = sub_dir / f"ses-{ses}"
    anat = ses_dir / "anat"
    names, why_none = None, unreadable or f"no ses-{ses} folder"
    if ses in present:
        try:
            names = [name for name, kind in _listdir(anat) if kind == "file"]
        except (FileNotFoundError, NotADirectoryError):
            why_none = f"no anat/ folder in {ses_dir} (found: {_contents(ses_dir)})"
        except OSError as exc:
            why_none = f"{anat} cannot be read ({exc.strerror})"
    choices = [choose_file(names or [], sub, ses, role, wanted[role], multiple_runs)
               for role in ROLES]
    t1w, flair = (str(anat / c.chosen) if c.chosen else "" for c in choices)
    if pid in exclude:
        status, reason = "excluded", f"excluded in config: {exclude[pid]}"
    elif names is None:
        status, reason = "missing", why_none
    elif any(c.refused for c in choices):
        status = "refused"
        reason = "; ".join(c.why for c in choices if c.refused) + f" (in {anat})"
    elif not all(c.chosen for c in choices):
        status = "incomplete"
        reason = "; ".join(c.why for c in choices if not c.chosen) + f" (in {anat})"
    else:
        status, reason = "ok", ""
    choice = "; ".join(c.why for c in choices if c.chosen) if status == "ok" else ""
    return [pid, ses, None, None, status, reason, t1w, flair,
            ", ".join(choices[0].candidates), ", ".join(choices[1].candidates), choice]


def _key_value(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--sessions: {item!r} must be label=months, e.g. m06=6")
        out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline discover", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bids", required=True, type=Path)
    ap.add_argument("--sessions", nargs="+", required=True, metavar="LABEL=MONTHS")
    ap.add_argument("--intervals", nargs="+", required=True, metavar="A-B")
    ap.add_argument("--subjects", nargs="*", default=None)
    ap.add_argument("--exclude", nargs="*", default=[], metavar="SUBJECT=REASON")
    ap.add_argument("--inputs", default=None, metavar="JSON",
                    help='config inputs, e.g. {"T1w": {"acq": "mprage", "ce": null}, '
                         '"FLAIR": {}, "multiple_runs": "last"}')
    ap.add_argument("--visit-times", default=None, metavar="JSON",
                    help='config visit_times, e.g. {"column": "acq_time", "format": "datetime"}')
    ap.add_argument("--sessions-out", required=True, type=Path)
    ap.add_argument("--intervals-out", required=True, type=Path)
    ap.add_argument("--notes-out", default=None, type=Path,
                    help="discovery notes (folders skipped for their name, participants without "
                         "images, sessions not configured, ...); columns: "
                         + ", ".join(NOTE_COLUMNS))
    args = ap.parse_args(argv)
    return run_command("discover", lambda: _discover_files(args),
                       errors=(InputError, json.JSONDecodeError))


def _discover_files(args: argparse.Namespace) -> None:
    """The discover command: the three discovery tables written, one line per session."""
    exclude = dict(item.partition("=")[::2] for item in args.exclude)
    inputs = json.loads(args.inputs) if args.inputs else {}
    found = discover(args.bids, _key_value(args.sessions), args.intervals, args.subjects,
                     exclude, filters={r: inputs[r] for r in ROLES if r in inputs},
                     multiple_runs=inputs.get("multiple_runs", "last"),
                     visit_times=json.loads(args.visit_times) if args.visit_times else None)
    write_tsv(args.sessions_out, found.sessions)
    write_tsv(args.intervals_out, found.intervals)
    if args.notes_out is not None:
        write_tsv(args.notes_out, found.notes)
    for row in found.sessions[found.sessions.status == "ok"].itertuples():
        print(f"{row.participant_id} ses-{row.session}: {row.choice}; {row.months:.2f} months, "
              f"{row.months_source}")
    skipped = found.intervals[found.intervals.status == "skipped"]
    for row in skipped.itertuples():
        print(f"{row.participant_id} {row.interval}: skipped ({row.reason})")
    for line in found.note_lines():
        print(line)
