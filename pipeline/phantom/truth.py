"""Ground truth from the rasterised lesions: per-lesion classes and per-interval endpoints.

Truth classes use the pipeline's own rule (:mod:`pipeline.contract`'s rule functions with the
thresholds of :class:`pipeline.params.LesionParams`), applied to voxel-counted volumes of the
truth label maps, so truth and pipeline count by one rule. In an
interval (a, b), with V the labelled volume (mm^3) in each session's native T1w grid:

- ``new``: V_a == 0 and V_b >= ``min_new_lesion_volume_mm3``;
- ``enlarging``: V_a > 0 and V_b - V_a >= ``enlarging_min_increase_mm3`` and
  >= ``enlarging_min_increase_pct`` % of V_a;
- ``resolved``: V_a > 0 and V_b == 0;
- ``enlarging`` with ``enlarging_rule = "annualised"``: growth >= ``enlarging_min_pct_per_year``
  % of V_a per year and >= ``enlarging_min_voxels`` voxels of the truth grid;
- ``shrinking``: V_a - V_b >= ``shrinking_min_decrease_mm3`` and >= ``shrinking_min_decrease_pct``
  % of V_a (the mirror of enlarging);
- ``stable``: present in both otherwise; ``absent``: V_a == 0 and V_b below the new-lesion minimum
  (never present, or too small to count);
- ``new_t1hypo`` (0/1): T1-hypointense at b, not at a, and V_b >= ``min_t1hypo_volume_mm3``.

T2 lesion volume (mL) = labelled voxel count x voxel volume / 1000; its change is end - start
and the percent change is 100 x change / start (NaN when start is 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract import (
    ABSENT,
    ENDPOINT_COLUMNS,
    ENLARGING,
    NEW,
    RESOLVED,
    SHRINKING,
    STABLE,
    interval_label,
    is_enlarging,
    is_large_enough_black_hole,
    is_large_enough_new,
    is_shrinking,
)
from pipeline.errors import InputError
from pipeline.params import LesionParams
from pipeline.phantom.config import INTERVALS, SESSION_MONTHS, SESSIONS


def classify_change(volume_a_mm3: np.ndarray, volume_b_mm3: np.ndarray,
                    params: LesionParams | None = None, dt_months: float | None = None,
                    voxel_mm3: float | None = None) -> np.ndarray:
    """Truth class of each lesion in an interval from its volumes at a and b.

    The enlarging and shrinking tests are :func:`pipeline.contract.is_enlarging` and
    :func:`pipeline.contract.is_shrinking`, which :mod:`pipeline.longitudinal` applies too,
    including ``enlarging_rule = "annualised"``.

    Parameters
    ----------
    volume_a_mm3, volume_b_mm3 : ndarray of shape (n,), labelled volumes (mm^3)
    params : LesionParams (default: the pipeline's defaults)
    dt_months : interval length (needed only for the annualised enlarging rule)
    voxel_mm3 : voxel volume of the truth grid (needed only for the annualised rule)

    Returns
    -------
    ndarray of shape (n,), dtype object, values in :data:`pipeline.contract.TRUTH_CLASSES`
    """
    lp = params or LesionParams()
    va = np.asarray(volume_a_mm3, float)
    vb = np.asarray(volume_b_mm3, float)
    out = np.full(va.shape, STABLE, dtype=object)
    try:
        enlarging = is_enlarging(va, vb, dt_months, lp, voxel_mm3)
    except InputError as exc:
        raise InputError("LesionParams.enlarging_rule='annualised' needs the interval length "
                         "and the voxel volume to classify truth lesions") from exc
    shrinking = is_shrinking(va, vb, lp)
    out[enlarging] = ENLARGING
    out[shrinking & ~enlarging] = SHRINKING
    out[(va > 0) & (vb == 0)] = RESOLVED
    out[(va == 0)] = ABSENT
    out[(va == 0) & is_large_enough_new(vb, lp)] = NEW
    return out


def new_t1hypo(hypo_a: np.ndarray, hypo_b: np.ndarray, volume_b_mm3: np.ndarray,
               params: LesionParams | None = None) -> np.ndarray:
    """1 where a lesion is T1-hypointense at b, not at a, and large enough at b; else 0."""
    lp = params or LesionParams()
    return ((np.asarray(hypo_b, bool) & ~np.asarray(hypo_a, bool))
            & is_large_enough_black_hole(volume_b_mm3, lp)).astype(int)


def expected_class(kind: str, event_session: int, a: int, b: int) -> tuple[str, int]:
    """What the generator meant for a lesion of ``kind`` in interval (session a, session b):
    (class, new_t1hypo). Used to check that the voxel-level truth is unambiguous."""
    within = a < event_session <= b
    before = 0 <= event_session <= a
    if kind in ("new", "new_hypo", "new_touching"):
        cls = "new" if within else ("stable" if before else "absent")
    elif kind == "enlarging":
        cls = "enlarging" if within else "stable"
    elif kind == "shrinking":
        cls = "shrinking" if within else "stable"
    elif kind == "resolving":
        cls = "resolved" if within else ("absent" if before else "stable")
    else:  # stable, turning_hypo
        cls = "stable"
    hyp = int(within and kind in ("turning_hypo", "new_hypo"))
    return cls, hyp


def lesion_table(rows: list[dict], volumes_mm3: np.ndarray, hypo: np.ndarray,
                 params: LesionParams | None = None,
                 voxel_mm3: np.ndarray | None = None) -> pd.DataFrame:
    """The per-subject lesions.tsv table.

    Parameters
    ----------
    rows : one dict per lesion with lesion_id, location, kind, center_x_mm, center_y_mm,
        center_z_mm (anatomy frame) and any extra columns to append at the end
    volumes_mm3 : ndarray of shape (n_lesions, n_sessions), labelled volume per session
    hypo : ndarray of shape (n_lesions, n_sessions), T1-hypointense per session (0/1)
    params : LesionParams
    voxel_mm3 : ndarray of shape (n_sessions,), T1 voxel volume per session (annualised rule)

    Returns
    -------
    DataFrame: lesion_id, location, kind, center_*_mm, volume_mm3_<T>, t1hypo_<T> per session,
    class_<I>, new_t1hypo_<I> per interval, then the extra columns.
    """
    base_cols = ["lesion_id", "location", "kind", "center_x_mm", "center_y_mm", "center_z_mm"]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=base_cols)
    extra = [c for c in df.columns if c not in base_cols]
    out = df[base_cols].copy()
    hypo = np.asarray(hypo, bool) & (np.asarray(volumes_mm3) > 0)
    for s, ses in enumerate(SESSIONS):
        out[f"volume_mm3_{ses}"] = volumes_mm3[:, s] if len(df) else []
        out[f"t1hypo_{ses}"] = hypo[:, s].astype(int) if len(df) else []
    index = {ses: i for i, ses in enumerate(SESSIONS)}
    for a, b in INTERVALS:
        lab = interval_label(a, b)
        ia, ib = index[a], index[b]
        if len(df):
            out[f"class_{lab}"] = classify_change(
                volumes_mm3[:, ia], volumes_mm3[:, ib], params,
                dt_months=SESSION_MONTHS[ib] - SESSION_MONTHS[ia],
                voxel_mm3=None if voxel_mm3 is None else float(voxel_mm3[ib]))
            out[f"new_t1hypo_{lab}"] = new_t1hypo(hypo[:, ia], hypo[:, ib], volumes_mm3[:, ib],
                                                  params)
        else:
            out[f"class_{lab}"] = []
            out[f"new_t1hypo_{lab}"] = []
    for c in extra:
        out[c] = df[c].to_numpy()
    return out.reset_index(drop=True)


def kind_class_mismatches(table: pd.DataFrame, event_sessions: dict[int, int]) -> int:
    """Number of (lesion, interval) pairs whose voxel-level class differs from the generator's
    intent (0 for an unambiguous truth)."""
    index = {ses: i for i, ses in enumerate(SESSIONS)}
    bad = 0
    for r in table.to_dict("records"):
        for a, b in INTERVALS:
            lab = interval_label(a, b)
            cls, hyp = expected_class(r["kind"], event_sessions[int(r["lesion_id"])],
                                      index[a], index[b])
            if r[f"class_{lab}"] != cls or int(r[f"new_t1hypo_{lab}"]) != hyp:
                bad += 1
    return bad


def endpoints_table(participant_id: str, table: pd.DataFrame, t2lv_ml: dict[str, float],
                    participant: dict) -> pd.DataFrame:
    """Truth endpoints of one subject: one row per interval, the contract columns then the
    participant's columns (arm, washout_days, ...).

    Parameters
    ----------
    participant_id : e.g. "sub-001"
    table : the subject's lesion table (:func:`lesion_table`)
    t2lv_ml : session label -> T2 lesion volume (mL)
    participant : participants.tsv row without participant_id (column -> value)
    """
    rows = []
    for a, b in INTERVALS:
        lab = interval_label(a, b)
        cls = table[f"class_{lab}"].to_numpy() if len(table) else np.array([])
        start, end = t2lv_ml[a], t2lv_ml[b]
        change = end - start
        rows.append({
            "participant_id": participant_id, "interval": lab, "ses_start": a, "ses_end": b,
            "months": SESSION_MONTHS[SESSIONS.index(b)] - SESSION_MONTHS[SESSIONS.index(a)],
            "new_t2": int((cls == "new").sum()), "enlarging_t2": int((cls == "enlarging").sum()),
            "new_t1hypo": int(table[f"new_t1hypo_{lab}"].sum()) if len(table) else 0,
            "t2lv_start_ml": start, "t2lv_end_ml": end, "t2lv_change_ml": change,
            "t2lv_change_pct": 100.0 * change / start if start > 0 else np.nan,
            **participant,
        })
    return pd.DataFrame(rows, columns=list(ENDPOINT_COLUMNS) + list(participant))
