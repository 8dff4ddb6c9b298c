"""The output contract: table columns, lesion classes, interval labels and the lesion rules.

Everything that says what the pipeline's tables contain, and by which rule a lesion is counted,
is written here once. The longitudinal stage writes by it, the cohort join, the statistics and
the report read by it, and the phantom's ground truth counts by the same rule functions, so the
truth cannot grade the pipeline by another rule than the one it counts by.

Tables (see DESIGN.md, "Output contract")
-----------------------------------------
* Subject endpoints (``sub-<S>_endpoints.tsv``; ``endpoints.tsv`` adds the participants.tsv
  columns after them): :data:`ENDPOINT_COLUMNS`, one row per participant x interval.
* Interval lesion table (``sub-<S>_from-<a>_to-<b>_lesions.tsv``): :data:`LESION_TABLE_COLUMNS`,
  one row per matched T2 group or new T2 lesion, then one per T1-hypointense component at b.

Lesion rules (interval a -> b, volumes in mm^3)
-----------------------------------------------
Vectorised over arrays of lesions; the thresholds are fields of
:class:`pipeline.params.LesionParams`. Every comparison of volumes allows
:data:`VOLUME_TOLERANCE_MM3`, so a volume equal to a threshold up to rounding meets it.

* :func:`is_enlarging`: present at a, and with ``enlarging_rule = "interval"`` (ANIMA /
  MSSEG-2 convention) growth >= ``enlarging_min_increase_mm3`` and >= ``enlarging_min_increase_pct``
  % of the volume at a; with ``"annualised"`` (lesiontrack 0.2 / mscard 0.1) growth >=
  ``enlarging_min_pct_per_year`` % per year of follow-up and >= ``enlarging_min_voxels`` voxels.
* :func:`is_shrinking`: present at a and at b, and loss >= ``shrinking_min_decrease_mm3`` and
  >= ``shrinking_min_decrease_pct`` % of the volume at a (the mirror of enlarging).
* :func:`is_large_enough_new`: a new T2 lesion (or its piece outside the old lesions) has
  >= ``min_new_lesion_volume_mm3``; :func:`is_large_enough_black_hole`: a T1-hypointense
  lesion's T2 lesion has >= ``min_t1hypo_volume_mm3``.

What a lesion is beyond volumes (FLAIR-rise confirmation, touching and merging lesions) is the
longitudinal stage's method (:mod:`pipeline.longitudinal`); the phantom's truth has no images to
confirm by and applies the volume rules alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.params import LesionParams

# --- endpoints -----------------------------------------------------------------------------
#: Lesion-count endpoints, in table order.
COUNT_ENDPOINTS: tuple[str, ...] = ("new_t2", "enlarging_t2", "new_t1hypo")
#: The continuous endpoint: T2 lesion-volume change (mL), end - start.
VOLUME_ENDPOINT = "t2lv_change_ml"
#: T2 lesion volume (mL) at the interval's start and end sessions.
T2LV_COLUMNS: tuple[str, ...] = ("t2lv_start_ml", "t2lv_end_ml")
#: Columns of a subject endpoints table, exactly and in order.
ENDPOINT_COLUMNS: tuple[str, ...] = (
    "participant_id", "interval", "ses_start", "ses_end", "months", *COUNT_ENDPOINTS,
    *T2LV_COLUMNS, VOLUME_ENDPOINT, "t2lv_change_pct",
)

# --- interval lesion table -------------------------------------------------------------------
#: Lesion centroid in session b's raw T1w world (RAS mm).
SESSION_POSITION_COLUMNS: tuple[str, ...] = ("x_mm", "y_mm", "z_mm")
#: Lesion centroid in subject space (RAS mm).
SUBJECT_POSITION_COLUMNS: tuple[str, ...] = ("x_subject_mm", "y_subject_mm", "z_subject_mm")
#: Columns of the interval lesion table, exactly and in order.
LESION_TABLE_COLUMNS: tuple[str, ...] = (
    "group_id", "kind", "class", "volume_start_mm3", "volume_end_mm3", "change_mm3",
    "change_pct", "n_start", "n_end", "merged", "split", "touches_existing", "flair_rise",
    "flair_rise_z", *SESSION_POSITION_COLUMNS, *SUBJECT_POSITION_COLUMNS,
)
#: Values of the lesion table's ``kind`` column.
KINDS: tuple[str, ...] = ("t2", "t1hypo")

# --- lesion classes --------------------------------------------------------------------------
NEW = "new"
ENLARGING = "enlarging"
SHRINKING = "shrinking"
STABLE = "stable"
RESOLVED = "resolved"
#: A b-only component failing the new-lesion volume or FLAIR-rise test (or a black hole not
#: confirmed by intensity): reported, never counted.
UNCONFIRMED = "unconfirmed"
#: A T1-hypointense component that was hypointense at a already.
PERSISTENT = "persistent"
#: Truth only: a lesion absent at a and not (or too small to count) at b.
ABSENT = "absent"
#: Classes of a ``t2`` row of the lesion table.
T2_CLASSES: tuple[str, ...] = (NEW, ENLARGING, SHRINKING, STABLE, RESOLVED, UNCONFIRMED)
#: Classes of a ``t1hypo`` row of the lesion table.
T1HYPO_CLASSES: tuple[str, ...] = (NEW, PERSISTENT, UNCONFIRMED)
#: Classes of a truth lesion in an interval (the phantom's ``class_<interval>`` columns).
TRUTH_CLASSES: tuple[str, ...] = (NEW, ENLARGING, STABLE, SHRINKING, RESOLVED, ABSENT)

# --- intervals -------------------------------------------------------------------------------


def interval_label(ses_start: str, ses_end: str) -> str:
    """The ``interval`` column value of endpoints.tsv, e.g. ``baseline-m06``."""
    return f"{ses_start}-{ses_end}"


def split_interval_label(label: str) -> tuple[str, str] | None:
    """``(ses_start, ses_end)`` of an interval label; None unless it has exactly one ``-``.

    Either part may be empty (``"baseline-"``): callers check the sessions against theirs.
    """
    parts = label.split("-")
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


# --- lesion rules ----------------------------------------------------------------------------
#: Slack (mm^3) allowed when a volume is compared with a threshold.
VOLUME_TOLERANCE_MM3 = 1e-9


def is_enlarging(volume_start_mm3: np.ndarray | float, volume_end_mm3: np.ndarray | float,
                 dt_months: float | None, params: LesionParams,
                 voxel_mm3: float | None = None) -> np.ndarray:
    """Whether each lesion grew enough to count as enlarging (see the module docstring).

    Parameters
    ----------
    volume_start_mm3, volume_end_mm3 : float or ndarray of shape (n,), volumes at a and b (mm^3)
    dt_months : interval length (months); needed only for ``enlarging_rule = "annualised"``
    params : LesionParams
    voxel_mm3 : voxel volume (mm^3); needed only for the annualised rule

    Returns
    -------
    bool ndarray of the inputs' broadcast shape (0-d for scalars)

    Raises
    ------
    InputError
        for the annualised rule without ``dt_months > 0`` or without ``voxel_mm3``.
    """
    va = np.asarray(volume_start_mm3, float)
    vb = np.asarray(volume_end_mm3, float)
    grow = vb - va
    tol = VOLUME_TOLERANCE_MM3
    if params.enlarging_rule == "annualised":
        if dt_months is None or voxel_mm3 is None or not dt_months > 0:
            raise InputError("LesionParams.enlarging_rule='annualised' needs the interval length "
                             f"(dt_months > 0, got {dt_months!r}) and the voxel volume "
                             f"(voxel_mm3, got {voxel_mm3!r})")
        with np.errstate(divide="ignore", invalid="ignore"):
            pct_per_year = np.where(va > 0, 100.0 * grow / np.where(va > 0, va, 1.0), 0.0) \
                * 12.0 / dt_months
        return (va > 0) & (pct_per_year >= params.enlarging_min_pct_per_year) & (
            grow >= params.enlarging_min_voxels * voxel_mm3 - tol)
    return (va > 0) & (grow >= params.enlarging_min_increase_mm3 - tol) & (
        grow >= params.enlarging_min_increase_pct / 100.0 * va - tol)


def is_large_enough_new(volume_mm3: np.ndarray | float, params: LesionParams) -> np.ndarray:
    """Whether each new T2 lesion (volume at b, mm^3) is large enough to count as new."""
    return np.asarray(volume_mm3, float) >= params.min_new_lesion_volume_mm3 - VOLUME_TOLERANCE_MM3


def is_large_enough_black_hole(volume_mm3: np.ndarray | float, params: LesionParams
                               ) -> np.ndarray:
    """Whether each T1-hypointense lesion (volume of its T2 lesion at b, mm^3) is large enough
    to count."""
    return np.asarray(volume_mm3, float) >= params.min_t1hypo_volume_mm3 - VOLUME_TOLERANCE_MM3


def is_shrinking(volume_start_mm3: np.ndarray | float, volume_end_mm3: np.ndarray | float,
                 params: LesionParams) -> np.ndarray:
    """Whether each lesion, present at a and at b, lost enough to count as shrinking.

    Parameters
    ----------
    volume_start_mm3, volume_end_mm3 : float or ndarray of shape (n,), volumes at a and b (mm^3)
    params : LesionParams

    Returns
    -------
    bool ndarray of the inputs' broadcast shape (0-d for scalars)
    """
    va = np.asarray(volume_start_mm3, float)
    vb = np.asarray(volume_end_mm3, float)
    loss = va - vb
    tol = VOLUME_TOLERANCE_MM3
    return (va > 0) & (vb > 0) & (loss >= params.shrinking_min_decrease_mm3 - tol) & (
        loss >= params.shrinking_min_decrease_pct / 100.0 * va - tol)
