"""Cohort join: every subject's interval endpoints with the participants sheet.

The result, ``endpoints.tsv``, is the one table the statistics and the report read: one row per
participant x interval, the endpoint columns written by the longitudinal stage
(:data:`pipeline.contract.ENDPOINT_COLUMNS`) followed by every column of ``participants.tsv``
except its ``participant_id`` (arm, washout_days, next_dmt, relapse counts, ... whatever the study
has).

A participant whose endpoints exist but who has no ``participants.tsv`` row, or whose arm is missing
or not one of the configured labels, is refused rather than silently dropped: an unassigned subject
in a two-arm comparison is a data error, and dropping it would bias the trial statistics.

The columns the analysis uses (arm, covariates, relapse counts) are read by a schema, not by
pandas' type guessing (:mod:`pipeline.participants`): one blank or text cell in a numeric covariate
no longer turns it into a categorical one. :func:`check_participants` applies every check to the
sheet alone, cheaply, so a workflow can call it before any imaging work; the other columns are
carried into ``endpoints.tsv`` as read.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipeline.contract import ENDPOINT_COLUMNS
from pipeline.provenance import dataset_description
from pipeline.errors import InputError
from pipeline.cli import run_command
from pipeline.io import read_tsv, write_json, write_tsv
from pipeline.participants import (
    ColumnType,
    column_types,
    parse_covariate_types,
    read_sidecar,
    type_columns,
)


def normalise_participant_id(value: object) -> str:
    """``"001"``, ``"sub-001"`` -> ``"sub-001"`` (BIDS participant_id always carries the prefix)."""
    text = str(value).strip()
    return text if text.startswith("sub-") else f"sub-{text}"


def read_participants(path: str | Path, arm_column: str,
                      types: Mapping[str, ColumnType] | None = None) -> pd.DataFrame:
    """Read a BIDS ``participants.tsv`` keeping identifiers and arm labels as text.

    Parameters
    ----------
    path : participants.tsv
    arm_column : name of the treatment-arm column (must exist)
    types : column -> :class:`~pipeline.participants.ColumnType` (from
        :func:`~pipeline.participants.column_types`); these columns, where present, are read by
        the schema (cells of the wrong kind refused, naming participant, column and cell)

    Returns
    -------
    DataFrame with ``participant_id`` normalised to ``sub-<label>``; ``participant_id`` and
    ``arm_column`` are strings (so arm labels such as ``1``/``2`` compare as written); the columns
    of ``types`` as the schema reads them; any other column as pandas reads it (numbers numeric).
    """
    path = Path(path)
    header = read_tsv(path, nrows=0).columns
    for column in ("participant_id", arm_column):
        if column not in header:
            raise InputError(f"{path}: no column {column!r} (columns: {list(header)}); add it "
                             "or set the config's arm column to the name used in this file")
    types = {arm_column: ColumnType("arm", "arm"), **(types or {})}
    typed = [c for c in types if c in header]
    table = read_tsv(path, dtype={"participant_id": str, **{c: str for c in typed}})
    table["participant_id"] = [normalise_participant_id(v) for v in table["participant_id"]]
    dup = table["participant_id"][table["participant_id"].duplicated()].unique().tolist()
    if dup:
        raise InputError(f"{path}: participant(s) {dup} listed more than once; keep one row each")
    return type_columns(table, {c: types[c] for c in typed}, path)


def check_participants(path: str | Path, arm_column: str, arms: Sequence[str],
                       covariates: Sequence[str] = (),
                       covariate_types: Mapping[str, str] | None = None,
                       relapse_columns: Iterable[str] = (),
                       sidecar_path: str | Path | None = None,
                       subjects: Iterable[str] | None = None) -> pd.DataFrame:
    """Check a participants.tsv against the analysis before any imaging work, and read it typed.

    Parameters
    ----------
    path : participants.tsv
    arm_column, arms : config ``arm.column`` and ``arm.labels``
    covariates : config ``covariates`` (absent columns are allowed: the statistics skip them
        with a note)
    covariate_types : config ``covariate_types`` (column -> ``numeric`` | ``categorical``);
        undeclared covariates follow participants.json, else are numeric
    relapse_columns : config ``relapse_columns`` (its keys; absent columns are allowed)
    sidecar_path : participants.json; default: the one beside ``path``, if there is one
    subjects : participants whose row must exist with an arm among ``arms`` (labels with or
        without ``sub-``); default: every row of the file

    Returns
    -------
    DataFrame as :func:`read_participants`, the analysis columns typed.

    Raises
    ------
    InputError
        no ``participant_id`` or arm column; a participant listed twice; a column named like an
        endpoint column; a cell of the wrong kind (text in a numeric covariate, 1.5 or -1
        relapses); a participant of ``subjects`` without a row, with a missing arm or one not in
        ``arms``; fewer than two ``arms``.
    """
    path = Path(path)
    if sidecar_path is None and path.with_suffix(".json").exists():
        sidecar_path = path.with_suffix(".json")
    sidecar = read_sidecar(sidecar_path) if sidecar_path is not None else None
    # The schema's notes (config and sidecar disagreeing) go to the statistics' notes table,
    # which resolves the same schema; here only the refusals matter.
    types, _ = column_types(arm_column, covariates, covariate_types or {}, relapse_columns,
                            sidecar)
    table = read_participants(path, arm_column, types)
    ids = table["participant_id"].tolist() if subjects is None else \
        [normalise_participant_id(s) for s in subjects]
    _check_clash(table.columns.drop("participant_id"), path)
    _check_arms(table, ids, arm_column, arms, path, "it is to be analysed")
    return table


def _check_clash(columns: Iterable[str], participants_path: str | Path) -> None:
    clash = sorted(set(columns) & set(ENDPOINT_COLUMNS))
    if clash:
        raise InputError(f"{participants_path}: column(s) {clash} clash with endpoint columns; "
                         "rename them in participants.tsv")


def _check_arms(participants: pd.DataFrame, ids: Iterable[str], arm_column: str,
                arms: Sequence[str], participants_path: str | Path, why: str) -> None:
    """Refuse fewer than two ``arms``, and a participant of ``ids`` (``why``: the reason it must
    have a row) without a row of ``participants`` or with an arm that is missing or not one of
    ``arms`` (compared as text)."""
    if len(arms) < 2:
        raise InputError(f"arms={list(arms)}: need at least two arm labels to compare")
    by_id = participants.set_index("participant_id")
    arm_labels = [str(a) for a in arms]
    for pid in sorted(set(ids)):
        if pid not in by_id.index:
            raise InputError(f"{participants_path}: no row for {pid} ({why}); add the row with "
                             f"its {arm_column!r}, or exclude the subject in the config")
        arm = by_id.at[pid, arm_column]
        if pd.isna(arm) or str(arm) not in arm_labels:
            raise InputError(f"{participants_path}: {pid} has {arm_column}={arm!r}, not one of "
                             f"{arm_labels}; correct the arm in participants.tsv or the config's "
                             "arm labels")


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
    _check_clash(extra, participants_path)
    _check_arms(participants, endpoints["participant_id"], arm_column, arms, participants_path,
                "it has endpoints")

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


def cohort_files(participants_path: str | Path, endpoint_paths: Sequence[str | Path],
                 out_path: str | Path, arm_column: str, arms: Sequence[str],
                 interval_order: Sequence[str] | None = None,
                 dataset_description_path: str | Path | None = None,
                 covariates: Sequence[str] = (),
                 covariate_types: Mapping[str, str] | None = None,
                 relapse_columns: Iterable[str] = (),
                 sidecar_path: str | Path | None = None) -> Path:
    """Read subject endpoint tables and participants.tsv, write the joined ``endpoints.tsv``.

    participants.tsv is read by :func:`check_participants` (``covariates``, ``covariate_types``,
    ``relapse_columns``, ``sidecar_path`` as there; the participants checked are those with
    endpoints). Also writes ``dataset_description.json`` when ``dataset_description_path`` is
    given. Returns the path written.
    """
    endpoints = read_subject_endpoints(endpoint_paths)
    participants = check_participants(participants_path, arm_column, arms, covariates,
                                      covariate_types, relapse_columns, sidecar_path,
                                      subjects=endpoints["participant_id"])
    joined = join_cohort(endpoints, participants, arm_column, arms, participants_path,
                         interval_order)
    write_tsv(out_path, joined)
    if dataset_description_path is not None:
        write_json(dataset_description_path,
                   dataset_description(Path(participants_path).parent))
    return Path(out_path)


def _column_names(items: Sequence[str]) -> list[str]:
    """``["relapses_0_3m=3", "x"]`` -> ``["relapses_0_3m", "x"]`` (stats' COLUMN=MONTHS form)."""
    return [item.partition("=")[0] for item in items]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline cohort",
        description="Join subject endpoints with participants.tsv.",
        epilog="Options taking several values (--arms, --covariates, --covariate-types, "
               "--relapse-columns) must not come just before the endpoint tables: put an option "
               "with one value (--out) in between.")
    ap.add_argument("endpoints", nargs="+", type=Path, help="OUT/sub-*/anat/sub-*_endpoints.tsv")
    ap.add_argument("--participants", required=True, type=Path, help="BIDS participants.tsv")
    ap.add_argument("--arm-column", default="arm", help="treatment-arm column (default: arm)")
    ap.add_argument("--arms", nargs="+", required=True, help="arm labels, e.g. IDG TG")
    ap.add_argument("--intervals", nargs="+", default=None,
                    help="interval order within a participant (default: as in the inputs)")
    ap.add_argument("--out", required=True, type=Path, help="output endpoints.tsv")
    ap.add_argument("--dataset-description", type=Path, default=None,
                    help="also write the derivative's dataset_description.json here")
    ap.add_argument("--covariates", nargs="*", default=[],
                    help="covariate columns to check, e.g. washout_days next_dmt")
    ap.add_argument("--covariate-types", nargs="*", default=[], metavar="COLUMN=TYPE",
                    help="numeric or categorical, e.g. washout_days=numeric next_dmt=categorical "
                         "(undeclared covariates: participants.json Levels/Units, else numeric)")
    ap.add_argument("--relapse-columns", nargs="*", default=[], metavar="COLUMN[=MONTHS]",
                    help="relapse-count columns to check (non-negative integers)")
    ap.add_argument("--participants-json", type=Path, default=None,
                    help="BIDS sidecar declaring column types (default: participants.json beside "
                         "--participants, if present)")
    args = ap.parse_args(argv)
    def work() -> None:
        cohort_files(args.participants, args.endpoints, args.out, args.arm_column, args.arms,
                     args.intervals, args.dataset_description, args.covariates,
                     parse_covariate_types(args.covariate_types),
                     _column_names(args.relapse_columns), args.participants_json)

    return run_command("cohort", work)
