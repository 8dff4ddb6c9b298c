"""Cohort join: every subject's interval endpoints with the participants sheet.

The result, ``endpoints.tsv``, is the one table the statistics and the report read: one row per
participant x interval, the eleven endpoint columns written by the longitudinal stage
(:data:`ENDPOINT_COLUMNS`) followed by every column of ``participants.tsv`` except its
``participant_id`` (arm, washout_days, next_dmt, relapse counts, ... whatever the study has).

A participant whose endpoints exist but who has no ``participants.tsv`` row, or whose arm is missing
or not one of the configured labels, is refused rather than silently dropped: an unassigned subject
in a two-arm comparison is a data error, and dropping it would bias the trial statistics.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline import __version__
from pipeline.errors import InputError
from pipeline.io import read_tsv, write_json, write_tsv

#: Columns of a subject endpoints table, in order (the longitudinal stage's output contract).
ENDPOINT_COLUMNS: tuple[str, ...] = (
    "participant_id", "interval", "ses_start", "ses_end", "months", "new_t2", "enlarging_t2",
    "new_t1hypo", "t2lv_start_ml", "t2lv_end_ml", "t2lv_change_ml", "t2lv_change_pct",
)

#: BIDS version the derivative's dataset_description.json declares.
BIDS_VERSION = "1.9.0"


def normalise_participant_id(value: object) -> str:
    """``"001"``, ``"sub-001"`` -> ``"sub-001"`` (BIDS participant_id always carries the prefix)."""
    text = str(value).strip()
    return text if text.startswith("sub-") else f"sub-{text}"


def read_participants(path: str | Path, arm_column: str) -> pd.DataFrame:
    """Read a BIDS ``participants.tsv`` keeping identifiers and arm labels as text.

    Parameters
    ----------
    path : participants.tsv
    arm_column : name of the treatment-arm column (must exist)

    Returns
    -------
    DataFrame with ``participant_id`` normalised to ``sub-<label>``; numeric columns stay numeric,
    ``participant_id`` and ``arm_column`` are strings (so arm labels such as ``1``/``2`` compare as
    written).
    """
    path = Path(path)
    header = read_tsv(path, nrows=0).columns
    for column in ("participant_id", arm_column):
        if column not in header:
            raise InputError(f"{path}: no column {column!r} (columns: {list(header)}); add it "
                             "or set the config's arm column to the name used in this file")
    table = read_tsv(path, dtype={"participant_id": str, arm_column: str})
    table["participant_id"] = [normalise_participant_id(v) for v in table["participant_id"]]
    dup = table["participant_id"][table["participant_id"].duplicated()].unique().tolist()
    if dup:
        raise InputError(f"{path}: participant(s) {dup} listed more than once; keep one row each")
    return table


def read_subject_endpoints(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate per-subject endpoint tables, checking each has exactly :data:`ENDPOINT_COLUMNS`.

    Rows keep the order of ``paths`` and, within a file, the file's order.
    """
    if not paths:
        raise InputError("no subject endpoint tables given; pass "
                         "OUT/sub-*/anat/sub-*_endpoints.tsv")
    tables = []
    for path in paths:
        table = read_tsv(path, dtype={"participant_id": str, "interval": str, "ses_start": str,
                                      "ses_end": str})
        if tuple(table.columns) != ENDPOINT_COLUMNS:
            raise InputError(f"{path}: columns {list(table.columns)} differ from the endpoints "
                             f"contract {list(ENDPOINT_COLUMNS)}; re-run the longitudinal stage")
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def join_cohort(endpoints: pd.DataFrame, participants: pd.DataFrame, arm_column: str,
                arms: Sequence[str], participants_path: str | Path = "participants.tsv",
                interval_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Join interval endpoints with the participants sheet.

    Parameters
    ----------
    endpoints : table with :data:`ENDPOINT_COLUMNS` (one row per participant x interval)
    participants : participants sheet (``participant_id`` plus any columns, ``arm_column`` among
        them)
    arm_column : treatment-arm column of ``participants``
    arms : accepted arm labels (e.g. ``["IDG", "TG"]``)
    participants_path : named in error messages
    interval_order : order of intervals within a participant; default: first appearance in
        ``endpoints``

    Returns
    -------
    DataFrame: :data:`ENDPOINT_COLUMNS`, then every participants column except ``participant_id``;
    rows sorted by participant_id, then interval in ``interval_order``.

    Raises
    ------
    InputError
        a participant without a participants row, with a missing arm or an arm not in ``arms``;
        a duplicated participant x interval; a participants column clashing with an endpoint column.
    """
    if len(arms) < 2:
        raise InputError(f"arms={list(arms)}: need at least two arm labels to compare")
    endpoints = endpoints.copy()
    endpoints["participant_id"] = [normalise_participant_id(v) for v in endpoints["participant_id"]]
    dup = endpoints[endpoints.duplicated(["participant_id", "interval"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        times = int(((dup.participant_id == first.participant_id)
                     & (dup.interval == first.interval)).sum())
        raise InputError(f"endpoints: {first.participant_id} interval {first.interval} appears "
                         f"{times} times; pass each subject's endpoints table once")
    extra = [c for c in participants.columns if c != "participant_id"]
    clash = sorted(set(extra) & set(ENDPOINT_COLUMNS))
    if clash:
        raise InputError(f"{participants_path}: column(s) {clash} clash with endpoint columns; "
                         "rename them in participants.tsv")

    by_id = participants.set_index("participant_id")
    arm_labels = [str(a) for a in arms]
    for pid in sorted(endpoints["participant_id"].unique()):
        if pid not in by_id.index:
            raise InputError(f"{participants_path}: no row for {pid} (it has endpoints); add the "
                             f"row with its {arm_column!r}, or exclude the subject in the config")
        arm = by_id.at[pid, arm_column]
        if pd.isna(arm) or str(arm) not in arm_labels:
            raise InputError(f"{participants_path}: {pid} has {arm_column}={arm!r}, not one of "
                             f"{arm_labels}; correct the arm in participants.tsv or the config's "
                             "arm labels")

    order = list(interval_order) if interval_order is not None else \
        list(dict.fromkeys(endpoints["interval"]))
    unknown = sorted(set(endpoints["interval"]) - set(order))
    if unknown:
        raise InputError(f"endpoints: interval(s) {unknown} not in the interval order {order}")
    rank = {name: i for i, name in enumerate(order)}
    joined = endpoints.merge(participants, on="participant_id", how="left", validate="many_to_one")
    joined["_rank"] = joined["interval"].map(rank)
    joined = joined.sort_values(["participant_id", "_rank"], kind="mergesort")
    return joined.drop(columns="_rank").reset_index(drop=True)[list(ENDPOINT_COLUMNS) + extra]


def dataset_description(name: str = "rebound-mri derivatives") -> dict:
    """The BIDS-Derivatives ``dataset_description.json`` content (no time stamps)."""
    return {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "rebound-mri",
            "Version": __version__,
            "Description": "MRI lesion activity endpoints (new/enlarging T2, new T1-hypointense, "
                           "T2 lesion volume) per participant and interval",
        }],
    }


def cohort_files(participants_path: str | Path, endpoint_paths: Sequence[str | Path],
                 out_path: str | Path, arm_column: str, arms: Sequence[str],
                 interval_order: Sequence[str] | None = None,
                 dataset_description_path: str | Path | None = None) -> Path:
    """Read subject endpoint tables and participants.tsv, write the joined ``endpoints.tsv``.

    Also writes ``dataset_description.json`` when ``dataset_description_path`` is given.
    Returns the path written.
    """
    participants = read_participants(participants_path, arm_column)
    endpoints = read_subject_endpoints(endpoint_paths)
    joined = join_cohort(endpoints, participants, arm_column, arms, participants_path,
                         interval_order)
    write_tsv(out_path, joined)
    if dataset_description_path is not None:
        write_json(dataset_description_path, dataset_description())
    return Path(out_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline cohort",
                                 description="Join subject endpoints with participants.tsv.")
    ap.add_argument("endpoints", nargs="+", type=Path, help="OUT/sub-*/anat/sub-*_endpoints.tsv")
    ap.add_argument("--participants", required=True, type=Path, help="BIDS participants.tsv")
    ap.add_argument("--arm-column", default="arm", help="treatment-arm column (default: arm)")
    ap.add_argument("--arms", nargs="+", required=True, help="arm labels, e.g. IDG TG")
    ap.add_argument("--intervals", nargs="+", default=None,
                    help="interval order within a participant (default: as in the inputs)")
    ap.add_argument("--out", required=True, type=Path, help="output endpoints.tsv")
    ap.add_argument("--dataset-description", type=Path, default=None,
                    help="also write the derivative's dataset_description.json here")
    args = ap.parse_args(argv)
    try:
        cohort_files(args.participants, args.endpoints, args.out, args.arm_column, args.arms,
                     args.intervals, args.dataset_description)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
