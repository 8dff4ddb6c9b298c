"""The participants.tsv columns the analysis uses, typed by a schema instead of by guessing.

Kinds of column (:data:`KINDS`):

============  ===========================================================================
kind          cells
============  ===========================================================================
arm           the treatment arm (config ``arm.column``): text as written, so labels such as
              ``1``/``2`` compare as written; which labels are accepted is the caller's check
categorical   text as written (leading and trailing blanks removed), treatment-coded in models
numeric       a finite number in Python syntax (``30``, ``4.5``, ``1e3``)
count         a non-negative whole number (``0``, ``2``; ``2.0`` is read as 2): relapse counts
============  ===========================================================================

Which kind: the arm column is ``arm``, the relapse columns (config ``relapse_columns``) are
``count``, and each covariate (config ``covariates``) is **numeric unless declared
categorical**. Two sources declare a covariate, as BIDS allows: the config's ``covariate_types``
(column -> ``numeric`` | ``categorical``) and the dataset's ``participants.json`` sidecar, where a
column with ``"Levels"`` is categorical and one with ``"Units"`` numeric. The config wins: it is
what the user decided for this analysis, while the sidecar describes the dataset (``Levels`` may
document the codes of a score the analysis treats as a number). When the two disagree the config
is followed and a note says so; a sidecar entry with both ``Levels`` and ``Units`` declares
nothing, with a note.

Missing cells: blank and ``n/a`` (the BIDS marker) are missing in every kind. Other spellings of
"missing" (``NA``, ``NaN``, ``N/A``, ``null``, any case) are refused in numeric, count and
categorical columns: BIDS writes ``n/a``, ``NaN`` would otherwise parse as a number, and in a
categorical column an accepted ``NA`` would become a level of its own. Every refusal is an
:class:`~pipeline.errors.InputError` naming the file, the participant, the column, the cell as
written and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import InputError

#: Column kinds, see the module docstring.
KINDS: tuple[str, ...] = ("arm", "categorical", "numeric", "count")
#: Kinds a covariate may be declared as (config ``covariate_types``).
COVARIATE_KINDS: tuple[str, ...] = ("numeric", "categorical")
#: The BIDS missing-value marker; a blank cell counts as missing too.
MISSING = "n/a"
#: Other spellings of "missing" (compared in lower case), refused with "write n/a".
OTHER_MISSING_MARKERS: frozenset[str] = frozenset({"na", "nan", "n/a", "null", "n.a."})
#: Unit words recognised at the end of a column name (``washout_days``) for the fix in messages.
_NAME_UNITS: dict[str, str] = {"days": "days", "weeks": "weeks", "months": "months",
                               "years": "years", "ml": "mL", "mm3": "mm³", "kg": "kg"}


@dataclass(frozen=True)
class ColumnType:
    """How one participants column is read: its kind, who declared it, its unit if known."""

    kind: str
    source: str  # arm, relapse_columns, covariate_types, participants.json, default (or dtype)
    units: str | None = None  # participants.json "Units", named in refusals

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ColumnType kind {self.kind!r}: expected one of {list(KINDS)}")


def read_sidecar(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a BIDS ``participants.json`` (column -> description object).

    Raises :class:`InputError` naming the file when it is missing, not JSON, or not an object of
    objects.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; give the dataset's participants.json or leave "
                         "the option out")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); fix the file (BIDS sidecars are "
                         "JSON objects)") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{path}: expected an object of column descriptions "
                         '({"washout_days": {"Units": "day"}, ...}); fix the file')
    return data


def parse_covariate_types(items: Sequence[str]) -> dict[str, str]:
    """``["washout_days=numeric", "next_dmt=categorical"]`` -> a covariate_types mapping."""
    out: dict[str, str] = {}
    for item in items:
        column, sep, kind = item.partition("=")
        if not sep or not column or kind not in COVARIATE_KINDS:
            raise InputError(f"{item!r}: expected COLUMN=TYPE with TYPE one of "
                             f"{list(COVARIATE_KINDS)} (e.g. next_dmt=categorical)")
        out[column] = kind
    return out


def column_types(arm_column: str, covariates: Sequence[str] = (),
                 covariate_types: Mapping[str, str] | None = None,
                 relapse_columns: Iterable[str] = (),
                 sidecar: Mapping[str, Mapping[str, Any]] | None = None,
                 ) -> tuple[dict[str, ColumnType], list[tuple[str, str]]]:
    """The schema: how each column the analysis uses is read (rules in the module docstring).

    Parameters
    ----------
    arm_column : treatment-arm column
    covariates : covariate columns (config ``covariates``)
    covariate_types : column -> ``numeric`` | ``categorical`` (config ``covariate_types``); keys
        that are not covariates are ignored
    relapse_columns : relapse-count columns (a mapping such as config ``relapse_columns`` gives
        its keys)
    sidecar : parsed participants.json (:func:`read_sidecar`), or None

    Returns
    -------
    types : column -> :class:`ColumnType`, the arm first, then covariates, then relapse columns
    notes : (column, text) pairs: conflicts between config and sidecar, ambiguous sidecar entries
    """
    declared = dict(covariate_types or {})
    bad = {k: v for k, v in declared.items() if v not in COVARIATE_KINDS}
    if bad:
        raise InputError(f"covariate_types {bad}: each type must be one of "
                         f"{list(COVARIATE_KINDS)}")
    sidecar = sidecar or {}
    types: dict[str, ColumnType] = {arm_column: ColumnType("arm", "arm")}
    notes: list[tuple[str, str]] = []
    for column in covariates:
        if column == arm_column:
            raise InputError(f"covariates: {column!r} is the arm column; remove it from the "
                             "covariates")
        entry = sidecar.get(column, {})
        units = entry.get("Units") if isinstance(entry.get("Units"), str) else None
        said = [kind for key, kind in (("Levels", "categorical"), ("Units", "numeric"))
                if key in entry]
        if len(said) == 2:
            notes.append((column, "participants.json gives both Levels and Units: it declares "
                                  "no type"))
            said = []
        if column in declared:
            kind = declared[column]
            if said and said[0] != kind:
                key = "Levels" if said[0] == "categorical" else "Units"
                notes.append((column, f"config covariate_types says {kind}, participants.json "
                                      f"says {said[0]} (it gives {key}): read as {kind}, the "
                                      "config wins"))
            types[column] = ColumnType(kind, "covariate_types", units)
        elif said:
            types[column] = ColumnType(said[0], "participants.json", units)
        else:
            types[column] = ColumnType("numeric", "default", units)
    for column in relapse_columns:
        if column in types:
            raise InputError(f"relapse_columns: {column!r} is also the arm column or a "
                             "covariate; a column has one role")
        entry = sidecar.get(column, {})
        units = entry.get("Units") if isinstance(entry.get("Units"), str) else None
        types[column] = ColumnType("count", "relapse_columns", units)
    return types, notes


def type_columns(table: pd.DataFrame, types: Mapping[str, ColumnType],
                 source: str | Path) -> pd.DataFrame:
    """A copy of ``table`` with each column of ``types`` that it has read by the schema.

    Parameters
    ----------
    table : rows with ``participant_id`` (named in refusals) and the columns as read, text or
        already numbers
    types : from :func:`column_types`; columns absent from ``table`` are left to the caller
    source : the file named in refusals

    Returns
    -------
    DataFrame: numeric columns float64 (missing: NaN), count columns Int64 (missing: NA), arm and
    categorical columns Python strings in an object column (missing: None).

    Raises
    ------
    InputError
        a cell that is not of its column's kind (see the module docstring)
    """
    out = table.copy()
    ids = table["participant_id"].tolist() if "participant_id" in table.columns \
        else [f"row {i}" for i in table.index]
    for column, ctype in types.items():
        if column in out.columns:
            out[column] = _typed(out[column], column, ctype, ids, source)
    return out


def _typed(values: pd.Series, column: str, ctype: ColumnType, ids: Sequence[Any],
           source: str | Path) -> pd.Series:
    if ctype.kind in ("arm", "categorical"):
        cells = [_text(v, column, ctype, pid, source) for v, pid in zip(values, ids)]
        return pd.Series(cells, index=values.index, dtype=object)  # str, None when missing
    numbers = [_number(v, column, ctype, pid, source) for v, pid in zip(values, ids)]
    if ctype.kind == "numeric":
        return pd.Series(numbers, index=values.index, dtype="float64")
    return pd.Series([pd.NA if math.isnan(x) else int(x) for x in numbers], index=values.index,
                     dtype="Int64")


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", MISSING)


def _refuse_marker(text: str, column: str, pid: Any, source: str | Path) -> None:
    if text.lower() in OTHER_MISSING_MARKERS:
        raise InputError(f"{source}: {pid} has {column}={text!r}; BIDS marks a missing value "
                         f"{MISSING}: write {MISSING}")


def _text(value: Any, column: str, ctype: ColumnType, pid: Any, source: str | Path) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if ctype.kind == "categorical":
            _refuse_marker(text, column, pid, source)
        return text
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a label 2 read as a number by someone else: "2", not "2.0"
    return str(value)


def _number(value: Any, column: str, ctype: ColumnType, pid: Any, source: str | Path) -> float:
    if _is_missing(value):
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        _refuse_marker(text, column, pid, source)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    elif isinstance(value, (bool, int, float)) or hasattr(value, "__float__"):
        text, number = str(value), float(value)
    else:
        text, number = str(value), math.nan
    if ctype.kind == "count":
        if not (math.isfinite(number) and number >= 0 and number.is_integer()):
            raise InputError(f"{source}: {pid} has {column}={text!r}, not a count; write a "
                             f"non-negative whole number (0, 1, 2, ...) or {MISSING} if it is "
                             "not known")
    elif not math.isfinite(number):
        raise InputError(f"{source}: {pid} has {column}={text!r}, not a number; write the number"
                         f"{_unit_hint(column, ctype)} or {MISSING} if it is not known (if "
                         f"{column} holds categories, declare it categorical in the config's "
                         "covariate_types)")
    return number


def _unit_hint(column: str, ctype: ColumnType) -> str:
    if ctype.units:
        return f" (in {ctype.units})"
    unit = _NAME_UNITS.get(column.rsplit("_", 1)[-1].lower())
    return f" of {unit}" if unit else ""
