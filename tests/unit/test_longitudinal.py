"""Tests of pipeline.longitudinal: spheres in a 40 mm cube that appear, touch, enlarge, shrink,
merge, split, resolve or turn hypointense, at 1 mm, 2 mm and 1 x 1 x 3 mm voxels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.contract import ENDPOINT_COLUMNS
from pipeline.errors import InputError
from pipeline.longitudinal import (
    TABLE_COLUMNS,
    classify_interval,
    dilation_footprint,
    interval_endpoints,
    main,
    t2lv_ml,
)
from pipeline.params import LesionParams
from pipeline.paths import bids_path

VOXELS = [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.0, 1.0, 3.0)]
FOV_MM = 42.0
NOISE = 0.04  # normalised FLAIR noise SD (SNR 25)
LESION_FLAIR = 1.5


def grid(vox):
    shape = tuple(int(round(FOV_MM / v)) for v in vox)
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, vox)]
    return np.meshgrid(*axes, indexing="ij")


def ball(vox, centre, radius):
    x, y, z = grid(vox)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius ** 2


def flair(vox, bright, seed):
    """Normalised FLAIR: NAWM 1 + noise, lesions LESION_FLAIR."""
    rng = np.random.default_rng(seed)
    x, _, _ = grid(vox)
    img = 1.0 + rng.normal(0.0, NOISE, x.shape)
    img[bright] = LESION_FLAIR + rng.normal(0.0, NOISE, int(bright.sum()))
    return img.astype(np.float32)


def affine_of(vox):
    """Voxel -> mm with the origin at the volume centre (matches :func:`grid`)."""
    shape = grid(vox)[0].shape
    affine = np.diag([*vox, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * v for n, v in zip(shape, vox)]
    return affine


def run(vox, a, b, ha=None, hb=None, fa_bright=None, fb_bright=None, params=None, **kw):
    zeros = np.zeros(a.shape, bool)
    kw.setdefault("affine", affine_of(vox))
    fa = flair(vox, a if fa_bright is None else fa_bright, 1)
    fb = flair(vox, b if fb_bright is None else fb_bright, 2)
    return classify_interval(a, b, fa, fb, zeros if ha is None else ha,
                             zeros if hb is None else hb, vox, params or LesionParams(), **kw)


def counts(table):
    t2 = table[table["kind"] == "t2"]
    return {c: int((t2["class"] == c).sum()) for c in
            ("new", "enlarging", "stable", "shrinking", "resolved", "unconfirmed")}


OLD = (-8.0, 0.0, 0.0)
FAR = (9.0, 6.0, 3.0)


@pytest.mark.parametrize("vox", VOXELS)
def test_new_lesion(vox):
    a = ball(vox, OLD, 4.5)
    b = a | ball(vox, FAR, 4.0)
    table, new = run(vox, a, b)
    assert counts(table)["new"] == 1 and counts(table)["stable"] == 1
    row = table[table["class"] == "new"].iloc[0]
    assert row["touches_existing"] == 0 and row["flair_rise_z"] > 2
    assert row["x_subject_mm"] == pytest.approx(FAR[0], abs=0.6)
    assert new.max() == 1 and np.array_equal(new > 0, ball(vox, FAR, 4.0))


@pytest.mark.parametrize("vox", VOXELS)
def test_new_lesion_touching_an_old_one(vox):
    a = ball(vox, OLD, 4.5)
    # a 7.5 mm blob on one side (in-plane, so the 3 mm slices cut it), mostly outside the old one
    centre = (OLD[0] + 4.5 + 2.5, OLD[1], OLD[2])
    blob = ball(vox, centre, 3.75)
    assert (blob & ~a).sum() >= 0.6 * blob.sum()
    b = a | blob
    table, new = run(vox, a, b)
    c = counts(table)
    assert c["new"] == 1 and c["enlarging"] == 0 and c["stable"] == 1
    row = table[table["class"] == "new"].iloc[0]
    assert row["touches_existing"] == 1
    assert row["x_subject_mm"] > OLD[0] + 4.5  # centroid of the new part, outside the old lesion
    assert new.max() == 1


@pytest.mark.parametrize("vox", VOXELS)
def test_concentric_growth_is_enlarging_not_new(vox):
    a = ball(vox, OLD, 4.0)
    b = ball(vox, OLD, 5.5)  # +160 % volume
    table, _ = run(vox, a, b)
    c = counts(table)
    assert c == {"new": 0, "enlarging": 1, "stable": 0, "shrinking": 0, "resolved": 0,
                 "unconfirmed": 0}
    row = table.iloc[0]
    assert row["change_mm3"] == pytest.approx((b.sum() - a.sum()) * np.prod(vox))


@pytest.mark.parametrize("vox", VOXELS)
def test_shrinking_and_resolving(vox):
    a = ball(vox, OLD, 5.5) | ball(vox, FAR, 4.0)
    b = ball(vox, OLD, 4.0)
    table, _ = run(vox, a, b)
    c = counts(table)
    assert c["shrinking"] == 1 and c["resolved"] == 1 and c["new"] == 0
    resolved = table[table["class"] == "resolved"].iloc[0]
    assert resolved["volume_end_mm3"] == 0 and resolved["x_subject_mm"] == pytest.approx(
        FAR[0], abs=0.6)


@pytest.mark.parametrize("vox", VOXELS)
def test_merge_and_split_are_flagged_not_new(vox):
    two = ball(vox, (-5.0, 0, 0), 3.5) | ball(vox, (5.0, 0, 0), 3.5)
    one = two | ball(vox, (0, 0, 0), 3.0)  # the bridge joins them
    table, _ = run(vox, two, one)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["merged"], row["split"], row["n_start"], row["n_end"]) == (1, 0, 2, 1)
    assert row["class"] != "new"
    table, _ = run(vox, one, two)
    row = table.iloc[0]
    assert (row["merged"], row["split"], row["n_start"], row["n_end"]) == (0, 1, 1, 2)
    assert counts(table)["new"] == 0


@pytest.mark.parametrize("vox", VOXELS)
def test_new_mask_without_flair_rise_is_not_counted(vox):
    a = ball(vox, OLD, 4.5)
    hidden = ball(vox, FAR, 4.0)
    b = a | hidden
    # the lesion is FLAIR-bright in both sessions: segmentation missed it at a
    table, new = run(vox, a, b, fa_bright=b, fb_bright=b)
    assert counts(table)["new"] == 0 and counts(table)["unconfirmed"] == 1
    assert new.max() == 0


@pytest.mark.parametrize("vox", VOXELS)
def test_small_new_component_is_not_counted(vox):
    a = ball(vox, OLD, 4.5)
    b = a.copy()
    b[tuple(n // 2 + 5 for n in b.shape)] = True  # one voxel (<= 6 mm^3 < 10 mm^3)
    table, _ = run(vox, a, b)
    assert counts(table)["new"] == 0


@pytest.mark.parametrize("vox", VOXELS)
def test_rescan_jitter_gives_no_new_lesion(vox):
    rng = np.random.default_rng(5)
    centres = [(-9, -8, 0), (8, -7, 3), (0, 9, -4), (10, 8, 6)]
    a = np.zeros(grid(vox)[0].shape, bool)
    b = a.copy()
    for c in centres:
        a |= ball(vox, c, 4.0)
        jitter = rng.normal(0, 0.4, 3)
        b |= ball(vox, tuple(np.add(c, jitter)), 4.0 + rng.normal(0, 0.2))
    table, _ = run(vox, a, b)
    c = counts(table)
    assert c["new"] == 0 and c["enlarging"] == 0 and c["stable"] == len(centres)


@pytest.mark.parametrize("vox", VOXELS)
def test_new_t1_hypointense(vox):
    old1 = ball(vox, OLD, 4.5)  # T2 lesion turning hypointense
    old2 = ball(vox, (6.0, -8.0, 0.0), 4.0)  # black hole at both sessions
    fresh = ball(vox, FAR, 4.0)  # brand-new lesion, hypointense
    a = old1 | old2
    b = a | fresh
    table, _ = run(vox, a, b, ha=old2, hb=old1 | old2 | fresh)
    hypo = table[table["kind"] == "t1hypo"]
    assert sorted(hypo["class"]) == ["new", "new", "persistent"]
    ep = interval_endpoints(table, 1.0, 1.0, "01", "baseline", "m06")
    assert (ep["new_t2"], ep["new_t1hypo"]) == (1, 2)


@pytest.mark.parametrize("vox", VOXELS)
def test_new_t1hypo_confirmed_by_t1_at_a(vox):
    lesion = ball(vox, OLD, 4.5)
    fresh = ball(vox, FAR, 4.0)
    a = lesion.copy()  # the segmentation at a missed `fresh`
    b = lesion | fresh
    t1_a = np.ones(a.shape, np.float32)
    t1_a[lesion] = 0.45  # `lesion` was already a black hole at a (but not in a's hypo mask)
    table, _ = run(vox, a, b, hb=lesion | fresh, t1_norm_a=t1_a, t1hypo_limit_a=0.62)
    hypo = table[table["kind"] == "t1hypo"].sort_values("x_subject_mm")
    # already dark at a: persistent; normal T1 at a: a new black hole
    assert list(hypo["class"]) == ["persistent", "new"]


def test_black_hole_in_an_unconfirmed_t2_component_is_not_new():
    vox = (1.0, 1.0, 1.0)
    a = ball(vox, OLD, 4.5)
    hidden = ball(vox, FAR, 4.0)
    b = a | hidden
    table, _ = run(vox, a, b, hb=hidden, fa_bright=b, fb_bright=b)  # no FLAIR rise
    hypo = table[table["kind"] == "t1hypo"]
    assert list(hypo["class"]) == ["unconfirmed"]


def test_table_layout_and_sorting():
    vox = (1.0, 1.0, 1.0)
    a = ball(vox, OLD, 4.5)
    b = a | ball(vox, FAR, 4.0)
    table, _ = run(vox, a, b, ha=a, hb=a)
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table["group_id"]) == list(range(1, len(table) + 1))
    assert list(table["kind"]) == ["t2", "t2", "t1hypo"]
    again, _ = run(vox, a, b, ha=a, hb=a)
    pd.testing.assert_frame_equal(table, again)


@pytest.mark.parametrize("vox", VOXELS)
def test_t2lv_exact(vox):
    a = np.zeros(grid(vox)[0].shape, bool)
    a[2:5, 2:5, 2:4] = True  # 18 voxels
    b = a.copy()
    b[10:12, 10:12, 5:7] = True  # + 8 voxels
    vv = float(np.prod(vox))
    assert t2lv_ml(a, vox) == 18 * vv / 1000
    table, _ = run(vox, a, b)
    ep = interval_endpoints(table, t2lv_ml(a, vox), t2lv_ml(b, vox), "01", "baseline", "m12")
    assert ep["t2lv_change_ml"] == pytest.approx(8 * vv / 1000, abs=1e-12)
    assert ep["t2lv_change_pct"] == pytest.approx(100 * 8 / 18)
    zero = interval_endpoints(table, 0.0, 0.5, "01", "baseline", "m12")
    assert np.isnan(zero["t2lv_change_pct"])


def test_dilation_footprint_in_mm():
    assert dilation_footprint((1, 1, 1), 1.0).sum() == 27  # 26-neighbourhood
    assert dilation_footprint((2, 2, 2), 1.0).sum() == 7  # faces only
    fp = dilation_footprint((1, 1, 3), 1.0)
    assert fp.shape == (3, 3, 1) and fp.sum() == 9
    assert dilation_footprint((1, 1, 1), 0.0).sum() == 1


def test_annualised_rule_needs_interval_length():
    vox = (1.0, 1.0, 1.0)
    a = ball(vox, OLD, 4.0)
    b = ball(vox, OLD, 4.4)  # +33 %: not enlarging by 50 %, enlarging by >= 9 %/year
    p = LesionParams(enlarging_rule="annualised")
    with pytest.raises(InputError, match="sessions-months"):
        run(vox, a, b, params=p)
    table, _ = run(vox, a, b, params=p, dt_months=12.0)
    assert counts(table)["enlarging"] == 1
    table, _ = run(vox, a, b)
    assert counts(table)["enlarging"] == 0


def test_empty_masks():
    vox = (2.0, 2.0, 2.0)
    z = np.zeros(grid(vox)[0].shape, bool)
    table, new = run(vox, z, z)
    assert len(table) == 0 and list(table.columns) == TABLE_COLUMNS and new.max() == 0


def test_shape_mismatch_raises():
    with pytest.raises(InputError, match="lesion_b"):
        classify_interval(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), np.zeros((4, 4, 4)),
                          np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), 1.0)


# --- file wrapper and CLI ----------------------------------------------------------------------

def _write_subject(out, vox, sessions):
    import SimpleITK as sitk

    affine = affine_of(vox)
    for i, (ses, mask, hypo) in enumerate(sessions):
        kw = dict(space="subject")
        io.save_nifti(bids_path(out, "01", ses, desc="lesion", suffix="mask", **kw), mask,
                      affine, np.uint8)
        io.save_nifti(bids_path(out, "01", ses, desc="t1hypo", suffix="mask", **kw), hypo,
                      affine, np.uint8)
        io.save_nifti(bids_path(out, "01", ses, desc="norm", suffix="FLAIR", **kw),
                      flair(vox, mask, 10 + i), affine, np.float32)
        t1 = np.where(hypo, 0.45, 1.0).astype(np.float32)
        io.save_nifti(bids_path(out, "01", ses, desc="norm", suffix="T1w", **kw), t1, affine,
                      np.float32)
        io.write_json(bids_path(out, "01", ses, desc="lesion", suffix="qc", ext=".json", **kw),
                      {"t1hypo_limit_norm": 0.62})
        # session T1 world = subject world shifted by +5 mm in x (a pure translation)
        xfm = sitk.TranslationTransform(3, (-5.0, 0.0, 0.0))  # LPS: +5 mm RAS x
        path = bids_path(out, "01", ses, from_="T1w", to="subject", mode="image", suffix="xfm",
                         ext=".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteTransform(xfm, str(path))
    return affine


def test_cli_writes_tables_labels_and_endpoints(tmp_path):
    vox = (2.0, 2.0, 2.0)
    a = ball(vox, OLD, 4.5)
    b = a | ball(vox, FAR, 4.0)
    c = b | ball(vox, (0.0, -9.0, -5.0), 4.0)
    none = np.zeros(a.shape, bool)
    _write_subject(tmp_path, vox, [("baseline", a, none), ("m06", b, none), ("m12", c, c)])
    args = ["--out", str(tmp_path), "--subject", "01", "--sessions", "baseline", "m06", "m12",
            "--intervals", "baseline-m06", "m06-m12", "baseline-m12"]
    assert main(args) == 0
    ep = io.read_tsv(bids_path(tmp_path, "01", suffix="endpoints", ext=".tsv"))
    assert list(ep.columns) == list(ENDPOINT_COLUMNS)
    assert list(ep["interval"]) == ["baseline-m06", "m06-m12", "baseline-m12"]
    assert list(ep["new_t2"]) == [1, 1, 2]
    assert list(ep["new_t1hypo"]) == [0, 3, 3]
    assert ep["participant_id"].iloc[0] == "sub-01"
    lesions = io.read_tsv(bids_path(tmp_path, "01", from_="m06", to="m12", suffix="lesions",
                                    ext=".tsv"))
    for col in ("x_mm", "y_mm", "z_mm", "x_subject_mm"):
        assert col in lesions.columns
    new = lesions[(lesions["kind"] == "t2") & (lesions["class"] == "new")].iloc[0]
    # the session's T1 world is the subject world shifted by +5 mm along x
    assert new["x_mm"] == pytest.approx(new["x_subject_mm"] + 5.0, abs=1e-6)
    dseg, _, _ = io.load_nifti(bids_path(tmp_path, "01", from_="baseline", to="m12",
                                         space="subject", desc="new", suffix="dseg"))
    assert dseg.max() == 2
    assert ep["months"].isna().all()  # no visit times given
    first = bids_path(tmp_path, "01", suffix="endpoints", ext=".tsv").read_bytes()
    assert main(args) == 0
    assert bids_path(tmp_path, "01", suffix="endpoints", ext=".tsv").read_bytes() == first
    # Visit times (real ones from the discovery table) give each interval its length.
    assert main(args + ["--sessions-months", "baseline=0", "m06=6.5", "m12=11.75"]) == 0
    ep = io.read_tsv(bids_path(tmp_path, "01", suffix="endpoints", ext=".tsv"))
    assert ep.columns.get_loc("months") == ep.columns.get_loc("ses_end") + 1
    assert list(ep["months"]) == pytest.approx([6.5, 5.25, 11.75])


def test_cli_refuses_interval_with_missing_session(tmp_path, capsys):
    rc = main(["--out", str(tmp_path), "--subject", "01", "--sessions", "baseline", "m06",
               "--intervals", "baseline-m06", "m06-m12"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "m06-m12" in err and "m12" in err


@pytest.mark.parametrize("vox", VOXELS)
def test_new_t1hypo_needs_a_t1_fall(vox):
    """A hypointense core at b in a lesion whose T1 did not change (a GM-like lesion dipping
    below the GM reference by noise) is not a new black hole; one whose T1 fell is."""
    rng = np.random.default_rng(4)
    gm_like = ball(vox, OLD, 4.5)
    turning = ball(vox, FAR, 4.5)
    a = b = gm_like | turning
    t1_a = (1.0 + rng.normal(0, 0.02, a.shape)).astype(np.float32)
    t1_b = (1.0 + rng.normal(0, 0.02, a.shape)).astype(np.float32)
    t1_a[gm_like] = t1_b[gm_like] = 0.64  # at the GM level at both sessions
    t1_a[turning], t1_b[turning] = 0.80, 0.45  # iso at a, a black hole at b
    table, _ = run(vox, a, b, fa_bright=a, fb_bright=b, hb=gm_like | turning,
                   t1_norm_a=t1_a, t1hypo_limit_a=0.62, t1_norm_b=t1_b)
    hypo = table[table["kind"] == "t1hypo"].sort_values("x_subject_mm")
    assert list(hypo["class"]) == ["unconfirmed", "new"]


def test_new_t1hypo_size_is_its_t2_lesion():
    """A small hypointense core (smaller than min_t1hypo_volume_mm3) inside a new T2 lesion
    larger than it counts: a black hole is as large as the lesion it marks."""
    vox = (1.0, 1.0, 1.0)
    lesion = ball(vox, FAR, 3.0)  # ~113 mm3
    core = ball(vox, FAR, 1.0)  # 7 voxels
    zeros = np.zeros(lesion.shape, bool)
    table, _ = run(vox, zeros, lesion, hb=core)
    hypo = table[table["kind"] == "t1hypo"]
    assert list(hypo["class"]) == ["new"] and float(hypo["volume_end_mm3"].iloc[0]) < 10
