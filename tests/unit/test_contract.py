"""The output contract: its column lists, interval labels, and the lesion rules read value by
value against a plain scalar reading of the documented rule, at and around every threshold."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from pipeline import contract
from pipeline.contract import (
    COUNT_ENDPOINTS,
    ENDPOINT_COLUMNS,
    LESION_TABLE_COLUMNS,
    TRUTH_CLASSES,
    interval_label,
    is_enlarging,
    is_shrinking,
    split_interval_label,
)
from pipeline.errors import InputError
from pipeline.longitudinal import TABLE_COLUMNS, _is_enlarging
from pipeline.params import LesionParams
from pipeline.phantom.truth import classify_change

TOL = 1e-9


def test_columns_are_the_documented_contract():
    # DESIGN.md, "Output contract" (plus ``months``, added by the visit-times issue).
    assert ENDPOINT_COLUMNS == (
        "participant_id", "interval", "ses_start", "ses_end", "months", "new_t2", "enlarging_t2",
        "new_t1hypo", "t2lv_start_ml", "t2lv_end_ml", "t2lv_change_ml", "t2lv_change_pct")
    assert COUNT_ENDPOINTS == ("new_t2", "enlarging_t2", "new_t1hypo")
    assert contract.VOLUME_ENDPOINT == "t2lv_change_ml"
    assert LESION_TABLE_COLUMNS == (
        "group_id", "kind", "class", "volume_start_mm3", "volume_end_mm3", "change_mm3",
        "change_pct", "n_start", "n_end", "merged", "split", "touches_existing", "flair_rise",
        "flair_rise_z", "x_mm", "y_mm", "z_mm", "x_subject_mm", "y_subject_mm", "z_subject_mm")
    assert TABLE_COLUMNS == [c for c in LESION_TABLE_COLUMNS if c not in ("x_mm", "y_mm", "z_mm")]
    assert set(contract.T1HYPO_CLASSES) - set(contract.T2_CLASSES) == {"persistent"}
    assert set(TRUTH_CLASSES) - set(contract.T2_CLASSES) == {"absent"}


def test_interval_labels():
    assert interval_label("baseline", "m06") == "baseline-m06"
    assert split_interval_label(interval_label("m06", "m12")) == ("m06", "m12")
    assert split_interval_label("baseline-") == ("baseline", "")
    assert split_interval_label("baseline") is None
    assert split_interval_label("a-b-c") is None


def test_contract_imports_no_stage_module():
    tree = ast.parse(Path(contract.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("pipeline")} <= {"pipeline.errors",
                                                                 "pipeline.params"}


# --- the rules, read value by value ---------------------------------------------------------

def scalar_enlarging(v0: float, v1: float, dt_months: float, p: LesionParams,
                     voxel_mm3: float) -> bool:
    """The documented rule, one lesion at a time, in plain Python floats."""
    if not v0 > 0:
        return False
    change = v1 - v0
    if p.enlarging_rule == "annualised":
        pct_per_year = 100.0 * change / v0 * 12.0 / dt_months
        return (pct_per_year >= p.enlarging_min_pct_per_year
                and change >= p.enlarging_min_voxels * voxel_mm3 - TOL)
    return (change >= p.enlarging_min_increase_mm3 - TOL
            and change >= p.enlarging_min_increase_pct / 100.0 * v0 - TOL)


def scalar_shrinking(v0: float, v1: float, p: LesionParams) -> bool:
    if not (v0 > 0 and v1 > 0):
        return False
    loss = v0 - v1
    return (loss >= p.shrinking_min_decrease_mm3 - TOL
            and loss >= p.shrinking_min_decrease_pct / 100.0 * v0 - TOL)


PARAMS = [
    LesionParams(),
    LesionParams(enlarging_min_increase_mm3=5.0, enlarging_min_increase_pct=10.0,
                 shrinking_min_decrease_mm3=0.0, shrinking_min_decrease_pct=0.0),
    LesionParams(enlarging_rule="annualised"),
    LesionParams(enlarging_rule="annualised", enlarging_min_pct_per_year=20.0,
                 enlarging_min_voxels=0),
]
INTERVALS = [(6.0, 1.0), (12.0, 8.0), (6.5, 1.728)]  # (dt_months, voxel_mm3)


def volume_grid(p: LesionParams, dt_months: float, voxel_mm3: float) -> np.ndarray:
    """Start volumes and the end volumes that sit exactly on, just inside and just outside every
    threshold of ``p`` (within and beyond the 1e-9 mm^3 tolerance)."""
    starts = [0.0, 1e-12, 1.0, 10.0, 24.0, 33.3, 100.0, 1000.0 / 3.0]
    values = set(starts)
    for v0 in starts:
        steps = [p.enlarging_min_increase_mm3, p.enlarging_min_increase_pct / 100.0 * v0,
                 p.enlarging_min_voxels * voxel_mm3,
                 p.enlarging_min_pct_per_year / 100.0 * v0 * dt_months / 12.0,
                 -p.shrinking_min_decrease_mm3, -p.shrinking_min_decrease_pct / 100.0 * v0,
                 -v0, 0.0]
        for step in steps:
            for eps in (0.0, 5e-10, -5e-10, 2e-9, -2e-9, 1e-6, -1e-6):
                values.add(max(v0 + step + eps, 0.0))
    return np.array(sorted(values))


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: f"{p.enlarging_rule}")
@pytest.mark.parametrize("dt_months,voxel_mm3", INTERVALS)
def test_rules_match_the_scalar_reading(p, dt_months, voxel_mm3):
    vals = volume_grid(p, dt_months, voxel_mm3)
    va, vb = (g.ravel() for g in np.meshgrid(vals, vals, indexing="ij"))
    enl = is_enlarging(va, vb, dt_months, p, voxel_mm3)
    shr = is_shrinking(va, vb, p)
    assert enl.dtype == bool and enl.shape == va.shape and shr.shape == va.shape
    expect_enl = [scalar_enlarging(float(a), float(b), dt_months, p, voxel_mm3)
                  for a, b in zip(va, vb)]
    expect_shr = [scalar_shrinking(float(a), float(b), p) for a, b in zip(va, vb)]
    assert enl.tolist() == expect_enl
    assert shr.tolist() == expect_shr
    assert enl.any() and shr.any() and not enl.all()
    # A scalar call is the same rule (the longitudinal stage classifies one group at a time).
    for a, b in zip(va[::17], vb[::17]):
        assert bool(is_enlarging(a, b, dt_months, p, voxel_mm3)) == scalar_enlarging(
            float(a), float(b), dt_months, p, voxel_mm3)
        if a > 0 and b > 0:
            assert _is_enlarging(a, b, voxel_mm3, p, dt_months) == scalar_enlarging(
                float(a), float(b), dt_months, p, voxel_mm3)


def test_thresholds_are_inclusive_up_to_the_tolerance():
    p = LesionParams()  # +12 mm^3 and +50 %; -12 mm^3 and -33.3 %
    assert is_enlarging(24.0, 36.0, None, p) and is_enlarging(24.0, 36.0 - 5e-10, None, p)
    assert not is_enlarging(24.0, 36.0 - 2e-9, None, p)
    assert not is_enlarging(20.0, 31.9, None, p)  # +59.5 % but +11.9 mm^3
    assert not is_enlarging(0.0, 100.0, None, p)  # absent at a: new, not enlarging
    assert is_shrinking(60.0, 40.02, p) and not is_shrinking(60.0, 40.03, p)
    assert not is_shrinking(60.0, 0.0, p)  # gone at b: resolved, not shrinking
    annual = LesionParams(enlarging_rule="annualised")  # +9 %/year and >= 3 voxels
    assert is_enlarging(100.0, 104.5, 6.0, annual, 1.5)  # exactly 9 %/year, exactly 3 voxels
    assert not is_enlarging(100.0, 104.5, 6.0, annual, 1.6)  # 3 voxels of 1.6 mm^3 is 4.8
    assert not is_enlarging(100.0, 104.49, 6.0, annual, 1.0)
    for dt, vv in ((None, 1.0), (0.0, 1.0), (6.0, None)):
        with pytest.raises(InputError, match="annualised"):
            is_enlarging(np.zeros(0), np.zeros(0), dt, annual, vv)


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: f"{p.enlarging_rule}")
def test_truth_classes_follow_the_rules(p):
    vals = volume_grid(p, 6.0, 1.0)
    va, vb = (g.ravel() for g in np.meshgrid(vals, vals, indexing="ij"))
    cls = classify_change(va, vb, p, dt_months=6.0, voxel_mm3=1.0)
    assert set(cls) <= set(TRUTH_CLASSES)
    present = (va > 0) & (vb > 0)
    enl = is_enlarging(va, vb, 6.0, p, 1.0)
    assert ((cls == "enlarging") == enl).all()
    assert ((cls == "shrinking") == (is_shrinking(va, vb, p) & ~enl)).all()
    assert ((cls == "stable") == (present & ~enl & ~is_shrinking(va, vb, p))).all()
