"""Tests of pipeline.segment on a small synthetic brain (CSF, GM ribbon, WM, ventricles, deep GM,
FLAIR-bright ellipsoidal lesions with partial-volume edges, Gaussian noise, global scaling)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import io
from pipeline.errors import InputError
from pipeline.params import SegmentationParams
from pipeline.paths import bids_path
from pipeline.robust import histogram_mode, lower_half_sd
from pipeline.segment import (
    fit_flair_given_t1,
    fit_tissue_model,
    grey_matter_vertex,
    lesion_table,
    main,
    segment_session,
    t1_hypointense_mask,
    wm_reference_field,
)

# Tissue intensities (T1, FLAIR), relative to WM T1: realistic ratios for 3D T1w / 3D FLAIR.
T1 = {"csf": 0.25, "gm": 0.65, "wm": 1.0, "dgm": 0.75}
FL = {"csf": 0.15, "gm": 0.80, "wm": 0.60, "dgm": 0.72}

# Lesions: centre (mm, from the volume centre), semi-axes (mm), FLAIR ratio to WM, T1 value.
LESIONS = [
    ((-8.0, 6.0, 2.0), (3.5, 3.0, 3.0), 1.45, 0.85),   # iso on T1
    ((7.0, -6.0, -3.0), (4.0, 3.5, 3.5), 1.55, 0.40),  # black hole
    ((6.0, 9.0, 6.0), (3.0, 3.0, 2.5), 1.42, 0.78),    # mildly hypo, faint
    ((-6.0, -9.0, -6.0), (3.0, 2.5, 3.0), 1.50, 0.90),
]


def _fractions(points: np.ndarray, lesions: list) -> dict[str, np.ndarray]:
    """Tissue labels at points (N, 3) mm; returns one-hot fraction arrays per tissue."""
    x, y, z = points.T
    r_brain = np.sqrt((x / 19.0) ** 2 + (y / 22.0) ** 2 + (z / 18.0) ** 2)
    # Folded GM/WM boundary: radial modulation so the ribbon is not a simple shell.
    fold = 0.06 * np.sin(3.0 * np.arctan2(y, x)) * np.cos(2.5 * np.arctan2(z, np.hypot(x, y)))
    label = np.full(x.shape, "bg", dtype=object)
    brain = r_brain <= 1.0
    label[brain] = "csf"  # outer CSF rim
    label[r_brain <= 0.93] = "gm"
    label[r_brain <= 0.80 + fold] = "wm"
    vent = ((np.abs(x) - 4.0) / 2.0) ** 2 + (y / 8.0) ** 2 + (z / 4.0) ** 2 <= 1.0
    label[vent] = "csf"
    dgm = ((x) / 3.0) ** 2 + ((y + 2.0) / 3.0) ** 2 + ((z + 8.5) / 3.0) ** 2 <= 1.0
    label[dgm] = "dgm"
    lesion_id = np.zeros(x.shape, int)
    for i, (c, a, _, _) in enumerate(lesions, start=1):
        inside = (((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2
                  + ((z - c[2]) / a[2]) ** 2) <= 1.0
        lesion_id[inside] = i
    return {"label": label, "lesion": lesion_id}


def make_brain(voxel_mm=(1.0, 1.0, 1.0), fov_mm=46.0, scale_t1=1.0, scale_flair=1.0,
               lesions=LESIONS, seed=0, snr=25.0, ss=3):
    """Synthetic brain: returns t1, flair, brain mask, truth lesion mask, lesion pv, affine."""
    vox = np.asarray(voxel_mm, float)
    shape = tuple(int(round(fov_mm / v)) for v in vox)
    # supersample each voxel on an ss^3 grid to get partial-volume fractions
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    grids = [((np.arange(n) - (n - 1) / 2.0)[:, None] + offs[None, :]) * v
             for n, v in zip(shape, vox)]
    gi, gj, gk = np.meshgrid(grids[0].ravel(), grids[1].ravel(), grids[2].ravel(), indexing="ij")
    pts = np.column_stack([gi.ravel(), gj.ravel(), gk.ravel()])
    f = _fractions(pts, lesions)
    t1_tab = np.array([0.0 if t == "bg" else T1[t] for t in f["label"]])
    fl_tab = np.array([0.0 if t == "bg" else FL[t] for t in f["label"]])
    brain_s = (f["label"] != "bg").astype(float)
    les_s = np.zeros(len(pts))
    for i, (_, _, ratio, t1v) in enumerate(lesions, start=1):
        m = f["lesion"] == i
        t1_tab[m] = t1v
        fl_tab[m] = FL["wm"] * ratio
        les_s[m] = 1.0

    def block(v):
        v = v.reshape(shape[0], ss, shape[1], ss, shape[2], ss)
        return v.mean(axis=(1, 3, 5))

    t1 = block(t1_tab)
    fl = block(fl_tab)
    brain = block(brain_s) >= 0.5
    pv = block(les_s)
    rng = np.random.default_rng(seed)
    t1 = np.abs(t1 + rng.normal(0, T1["wm"] / snr, shape)) * scale_t1
    fl = np.abs(fl + rng.normal(0, FL["wm"] / snr, shape)) * scale_flair
    affine = np.diag([*vox, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * vox
    return t1, fl, brain, pv >= 0.5, pv, affine


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def brain_1mm():
    return make_brain()


def test_histogram_mode_and_robust_sd():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(5.0, 0.5, 20000), rng.normal(8.0, 0.5, 3000)])
    assert histogram_mode(x) == pytest.approx(5.0, abs=0.05)
    assert lower_half_sd(x, 5.0) == pytest.approx(0.5, rel=0.05)


def test_tissue_model_orders_classes():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0.25, 0.04, 3000), rng.normal(0.65, 0.04, 8000),
                        rng.normal(1.0, 0.04, 9000)])
    model = fit_tissue_model(x)
    np.testing.assert_allclose(model.means, [0.25, 0.65, 1.0], atol=0.02)
    np.testing.assert_allclose(model.weights, [0.15, 0.4, 0.45], atol=0.03)


def test_flair_given_t1_follows_the_normal_curve_and_ignores_lesions():
    rng = np.random.default_rng(3)
    t = rng.uniform(0.2, 1.1, 200000)
    curve = np.interp(t, [0.25, 0.65, 1.0], [0.25, 1.33, 1.0])
    f = curve + rng.normal(0, 0.04, t.size)
    f[:2000] += 0.5  # 1 % hyperintense outliers
    model = fit_flair_given_t1(t, f)
    t_q = np.array([0.3, 0.65, 1.0])
    med, sd = model.envelope(t_q, t_q)
    np.testing.assert_allclose(med, np.interp([0.3, 0.65, 1.0], [0.25, 0.65, 1.0],
                                              [0.25, 1.33, 1.0]), atol=0.03)
    np.testing.assert_allclose(sd, 0.04, atol=0.01)
    # a voxel whose compatible T1 range reaches GM is compared with GM itself
    med_tol, _ = model.envelope(np.array([0.52]), np.array([0.68]))
    assert med_tol[0] == pytest.approx(1.33, abs=0.03)


def test_grey_matter_vertex_without_pure_grey_matter():
    rng = np.random.default_rng(4)
    csf, gm = np.array([0.25, 0.25]), np.array([0.65, 1.33])
    # only mixtures: CSF/GM and GM/WM partial volume, no pure GM voxel
    a = rng.uniform(0, 0.85, 20000)[:, None]
    c = rng.uniform(0.15, 1, 20000)[:, None]
    pts = np.concatenate([(1 - a) * csf + a * gm, (1 - c) * gm + c * np.array([1.0, 1.0]),
                          np.tile([1.0, 1.0], (20000, 1))])
    pts += rng.normal(0, 0.03, pts.shape)
    t_gm, f_gm = grey_matter_vertex(pts[:, 0], pts[:, 1], 0.03)
    assert t_gm == pytest.approx(0.65, abs=0.04)
    assert f_gm == pytest.approx(1.33, abs=0.08)


def test_wm_reference_field_removes_a_smooth_bias(brain_1mm):
    t1, fl, brain, truth, _, affine = brain_1mm
    x = np.arange(fl.shape[0])[:, None, None]
    bias = 1.0 + 0.15 * (x - fl.shape[0] / 2) / fl.shape[0]  # +-7.5 % ramp
    wm = brain & (t1 > 0.9) & ~truth
    # the synthetic brain is ~1/4 of a real one: scale the field's smoothing accordingly
    field = wm_reference_field(fl * bias, wm, 6.0, (1, 1, 1))
    corrected = fl * bias / field
    left, right = wm & (x < 18), wm & (x > 28)
    ratio_before = np.median((fl * bias)[right]) / np.median((fl * bias)[left])
    ratio_after = np.median(corrected[right]) / np.median(corrected[left])
    assert ratio_before > 1.05 and abs(ratio_after - 1.0) < 0.02


def test_segmentation_with_a_residual_bias_field():
    t1, fl, brain, truth, _, _ = make_brain(seed=21)
    x = np.arange(fl.shape[0])[:, None, None]
    bias = 1.0 + 0.2 * (x - fl.shape[0] / 2) / fl.shape[0]
    res = segment_session(t1 * bias, fl * bias, brain, (1, 1, 1),
                          SegmentationParams(bias_smoothing_mm=6.0))
    assert dice(res.lesion_mask, truth) >= 0.8


def test_segmentation_finds_lesions(brain_1mm):
    t1, fl, brain, truth, _, affine = brain_1mm
    res = segment_session(t1, fl, brain, (1, 1, 1))
    assert dice(res.lesion_mask, truth) >= 0.8
    assert res.qc["n_lesions"] == len(LESIONS)
    # NAWM normalised to 1
    nawm = (res.tissue == 3) & ~truth
    assert np.median(res.flair_norm[nawm]) == pytest.approx(1.0, abs=0.03)


def test_normalisation_agrees_across_scaled_sessions(brain_1mm):
    t1, fl, brain, truth, _, _ = brain_1mm
    t1b, flb, _, _, _, _ = make_brain(scale_t1=1.3, scale_flair=0.75, seed=7)
    a = segment_session(t1, fl, brain, (1, 1, 1))
    b = segment_session(t1b, flb, brain, (1, 1, 1))
    nawm = (a.tissue == 3) & (b.tissue == 3) & ~truth
    ratio = np.median(b.flair_norm[nawm]) / np.median(a.flair_norm[nawm])
    assert abs(ratio - 1.0) < 0.02
    assert dice(b.lesion_mask, truth) >= 0.8


@pytest.mark.parametrize("voxel_mm", [(2.0, 2.0, 2.0), (1.0, 1.0, 3.0)])
def test_segmentation_other_voxel_sizes(voxel_mm):
    big = [(c, tuple(max(x, 4.0) for x in a), r, t) for c, a, r, t in LESIONS]
    t1, fl, brain, truth, _, _ = make_brain(voxel_mm=voxel_mm, lesions=big, seed=3)
    res = segment_session(t1, fl, brain, voxel_mm)
    assert dice(res.lesion_mask, truth) >= 0.75


def test_no_lesions_in_a_lesion_free_brain():
    t1, fl, brain, _, _, _ = make_brain(lesions=[], seed=11)
    res = segment_session(t1, fl, brain, (1, 1, 1))
    assert res.lesion_mask.sum() * 1.0 <= 30.0  # at most a few mm^3 of noise in ~30 mL
    assert res.qc["t2lv_ml"] < 0.03


def test_black_hole_in_t1hypo_and_iso_lesion_not(brain_1mm):
    t1, fl, brain, truth, _, affine = brain_1mm
    res = segment_session(t1, fl, brain, (1, 1, 1))
    ijk = lambda c: tuple(int(round(v)) for v in np.linalg.solve(affine, [*c, 1.0])[:3])
    assert res.t1hypo_mask[ijk(LESIONS[1][0])]  # black hole centre
    assert not res.t1hypo_mask[ijk(LESIONS[0][0])]  # iso lesion centre
    labels = res.lesion_labels
    hole_label = labels[ijk(LESIONS[1][0])]
    assert res.t1hypo_mask[labels != hole_label].sum() == 0
    assert res.t1hypo_mask.sum() >= 0.5 * (labels == hole_label).sum()


def test_t1hypo_drops_small_components():
    t1 = np.ones((20, 20, 20))
    les = np.zeros(t1.shape, bool)
    les[5:8, 5:8, 5:8] = True  # 27 mm^3
    les[12:14, 12:14, 12:14] = True  # 8 mm^3
    t1[les] = 0.3
    p = SegmentationParams(t1hypo_smoothing_mm=0.0)
    hypo = t1_hypointense_mask(t1, les, 0.65, (1, 1, 1), p)
    assert hypo[5:8, 5:8, 5:8].all() and not hypo[12:14, 12:14, 12:14].any()


def test_user_lesion_mask_is_used(brain_1mm):
    t1, fl, brain, truth, _, _ = brain_1mm
    res = segment_session(t1, fl, brain, (1, 1, 1), lesion_mask=truth)
    assert np.array_equal(res.lesion_mask, truth)
    assert res.qc["lesion_source"] == "user mask"


def test_lesion_table_volumes_and_centroids():
    labels = np.zeros((10, 10, 10), np.int32)
    labels[1:3, 1:3, 1:3] = 1
    labels[6:9, 6:9, 6:9] = 2
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    fl = np.full(labels.shape, 1.5, np.float32)
    t = lesion_table(labels, fl, labels == 2, aff)
    assert list(t["volume_mm3"]) == [8 * 8.0, 27 * 8.0]
    assert list(t["x_mm"]) == [3.0, 14.0]
    assert list(t["t1hypo_voxels"]) == [0, 27]


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="3-D"):
        segment_session(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4)), 1.0)
    with pytest.raises(InputError, match="brain mask is empty"):
        segment_session(np.ones((8, 8, 8)), np.ones((8, 8, 8)), np.zeros((8, 8, 8)), 1.0)


def _write_session(out, sub, ses, t1, fl, brain, affine):
    io.save_nifti(bids_path(out, sub, ses, space="subject", desc="preproc", suffix="T1w"),
                  t1, affine, np.float32)
    io.save_nifti(bids_path(out, sub, ses, space="subject", desc="preproc", suffix="FLAIR"),
                  fl, affine, np.float32)
    # FLAIR on the T1 grid: the T1 at FLAIR resolution is the T1 itself; the native (N4)
    # images give the voxel sizes
    for suffix, img in (("T1w", t1), ("FLAIR", fl)):
        io.save_nifti(bids_path(out, sub, ses, desc="n4", suffix=suffix), img, affine, np.float32)
    io.save_nifti(bids_path(out, sub, ses, space="subject", desc="flairres", suffix="T1w"),
                  t1, affine, np.float32)
    io.save_nifti(bids_path(out, sub, ses, space="subject", desc="brain", suffix="mask"),
                  brain, affine, np.uint8)


def test_cli_writes_products_deterministically(tmp_path, brain_1mm):
    t1, fl, brain, truth, _, affine = brain_1mm
    _write_session(tmp_path, "01", "baseline", t1, fl, brain, affine)
    args = ["--out", str(tmp_path), "--subject", "01", "--sessions", "baseline"]
    assert main(args) == 0
    products = [bids_path(tmp_path, "01", "baseline", space="subject", desc=d, suffix=s, ext=e)
                for d, s, e in (("lesion", "mask", ".nii.gz"), ("lesion", "dseg", ".nii.gz"),
                                ("t1hypo", "mask", ".nii.gz"), ("norm", "FLAIR", ".nii.gz"),
                                ("norm", "T1w", ".nii.gz"),
                                ("lesion", "lesions", ".tsv"), ("lesion", "qc", ".json"))]
    first = [p.read_bytes() for p in products]
    assert main(args) == 0
    assert [p.read_bytes() for p in products] == first
    qc = json.loads(products[-1].read_text())
    assert qc["n_lesions"] == len(LESIONS)
    table = io.read_tsv(products[5])
    assert len(table) == len(LESIONS)
    dseg, _, _ = io.load_nifti(products[1])
    assert dseg.dtype == np.int32
    summary = io.read_tsv(bids_path(tmp_path, "01", desc="lesion", suffix="qc", ext=".tsv"))
    assert list(summary["session"]) == ["baseline"]
    assert int(summary["n_lesions"].iloc[0]) == len(LESIONS)


def test_cli_reports_missing_input(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--subject", "01", "--sessions", "m06"]) == 1
    assert "file not found" in capsys.readouterr().err
    assert not bids_path(tmp_path, "01", desc="lesion", suffix="qc", ext=".tsv").exists()


@pytest.mark.parametrize("vox", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.0, 1.0, 3.0)])
def test_fast_neighbourhood_filters_match_scipy(vox):
    from scipy import ndimage

    from pipeline.morphology import face_distance_footprint, neighbourhood_filter

    x = np.random.default_rng(8).normal(size=(12, 13, 14))
    fp = face_distance_footprint(vox, 1.0)
    np.testing.assert_array_equal(neighbourhood_filter(x, fp, "min"),
                                  ndimage.minimum_filter(x, footprint=fp, mode="nearest"))
    np.testing.assert_array_equal(neighbourhood_filter(x, fp, "max"),
                                  ndimage.maximum_filter(x, footprint=fp, mode="nearest"))


def test_block_upsampling_is_linear_interpolation():
    from scipy import ndimage

    from pipeline.segment import _upsample_linear

    c = np.random.default_rng(9).normal(size=(5, 6, 7))
    f = np.array([4, 4, 2])
    expected = ndimage.zoom(c, f, order=1, mode="nearest", grid_mode=True)[:18, :23, :13]
    np.testing.assert_allclose(_upsample_linear(c, f, (18, 23, 13)), expected, atol=1e-12)


def test_dilate_labels_matches_grey_dilation():
    from scipy import ndimage

    from pipeline.morphology import dilate_labels, face_distance_footprint

    labels = np.zeros((20, 20, 20), np.int32)
    labels[3:6, 3:6, 3:6] = 1
    labels[7:9, 4:6, 4:6] = 2  # close to 1: contested voxels
    labels[15, 15, 15] = 3
    for vox, r in (((1, 1, 1), 2.0), ((2, 2, 2), 1.0), ((1, 1, 3), 1.0)):
        fp = face_distance_footprint(vox, r)
        np.testing.assert_array_equal(dilate_labels(labels, fp),
                                      ndimage.grey_dilation(labels, footprint=fp,
                                                            mode="constant", cval=0))


def test_cli_user_lesion_mask_resampled_into_subject_space(tmp_path, brain_1mm):
    import SimpleITK as sitk

    t1, fl, brain, truth, _, affine = brain_1mm
    _write_session(tmp_path, "01", "m06", t1, fl, brain, affine)
    io.save_nifti(bids_path(tmp_path, "01", space="subject", desc="template", suffix="T1w"),
                  t1, affine, np.float32)
    xfm = bids_path(tmp_path, "01", "m06", from_="T1w", to="subject", mode="image",
                    suffix="xfm", ext=".txt")
    sitk.WriteTransform(sitk.Euler3DTransform(), str(xfm))  # native T1 grid = subject grid
    user = tmp_path / "manual_mask.nii.gz"
    io.save_nifti(user, truth, affine, np.uint8)
    assert main(["--out", str(tmp_path), "--subject", "01", "--sessions", "m06",
                 "--lesion-masks", f"m06={user}"]) == 0
    mask, _, _ = io.load_nifti(bids_path(tmp_path, "01", "m06", space="subject", desc="lesion",
                                         suffix="mask"))
    assert dice(mask > 0, truth) > 0.95
    qc = json.loads(bids_path(tmp_path, "01", "m06", space="subject", desc="lesion", suffix="qc",
                              ext=".json").read_text())
    assert qc["lesion_source"] == "user mask"


def test_mixing_line_envelope():
    from pipeline.segment import mixing_line_envelope

    pts_t1, pts_fl = np.array([0.25, 0.65, 1.0]), np.array([0.25, 1.33, 1.0])
    lo = np.array([0.6, 0.3, 0.9, 1.1])
    hi = np.array([0.7, 0.4, 0.95, 1.2])
    env = mixing_line_envelope(lo, hi, pts_t1, pts_fl)
    np.testing.assert_allclose(env, [1.33, np.interp(0.4, pts_t1, pts_fl),
                                     np.interp(0.9, pts_t1, pts_fl), 1.0])


# --- hyperintensity unit and joint refinement over sessions ---------------------------------

def test_z_unit_follows_the_flair_resolution():
    from pipeline.segment import resolve_z_unit

    auto = SegmentationParams()
    assert resolve_z_unit(auto, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == "noise"
    assert resolve_z_unit(auto, (1.0, 1.0, 1.2), (1.0, 1.0, 1.0)) == "noise"
    assert resolve_z_unit(auto, (1.0, 1.0, 3.0), (1.0, 1.0, 1.0)) == "tissue"
    assert resolve_z_unit(auto, (2.0, 2.0, 2.0), (2.0, 2.0, 2.0)) == "tissue"
    assert resolve_z_unit(SegmentationParams(z_unit="tissue"), (1, 1, 1), (1, 1, 1)) == "tissue"
    with pytest.raises(InputError, match="z_unit"):
        SegmentationParams(z_unit="sd")


FAINT_NEW = ((0.0, 8.0, -4.0), (2.5, 2.5, 2.5), 1.32, 0.72)  # as bright as GM, GM-like T1


def _segment(lesions, seed):
    t1, fl, brain, truth, _, affine = make_brain(lesions=lesions, seed=seed)
    return segment_session(t1, fl, brain, 1.0), brain, truth


def _hit(mask, centre_mm, shape):
    idx = tuple(int(round(c + (n - 1) / 2.0)) for c, n in zip(centre_mm, shape))
    return bool(mask[idx])


def test_refinement_finds_a_faint_new_lesion_and_adds_nothing_to_a_rescan():
    from pipeline.segment import longitudinal_refinement

    a, brain, _ = _segment(LESIONS, seed=11)
    b, _, truth_b = _segment(LESIONS + [FAINT_NEW], seed=12)
    shape = a.lesion_mask.shape
    # the cross-sectional threshold misses it (it is as bright as GM at GM-like T1) ...
    assert not _hit(b.lesion_mask, FAINT_NEW[0], shape)
    ra, rb = longitudinal_refinement([a, b], brain, 1.0)
    # ... the rise against session a's normal white matter finds it, at b only
    assert _hit(rb.lesion_mask, FAINT_NEW[0], shape)
    assert not _hit(ra.lesion_mask, FAINT_NEW[0], shape)
    assert rb.qc["refinement_rise_voxels"] > 0
    added = rb.lesion_mask & ~b.lesion_mask
    assert added[truth_b].sum() >= 0.8 * added.sum()  # what was added is lesion
    assert (rb.lesion_mask | b.lesion_mask).sum() == rb.lesion_mask.sum()  # never removes
    # inputs untouched
    assert not _hit(b.lesion_mask, FAINT_NEW[0], shape)

    # a rescan (same lesions, new noise): no new component at either session
    c, _, _ = _segment(LESIONS, seed=13)
    rc = longitudinal_refinement([a, c], brain, 1.0)
    from scipy import ndimage

    for before, after in ((a, rc[0]), (c, rc[1])):
        _, n_before = ndimage.label(before.lesion_mask, np.ones((3, 3, 3)))
        _, n_after = ndimage.label(after.lesion_mask, np.ones((3, 3, 3)))
        assert n_after <= n_before
        assert after.qc["refinement_rise_voxels"] == 0


def test_refinement_keeps_a_stable_lesion_one_session_missed():
    from pipeline.segment import longitudinal_refinement

    a, brain, truth = _segment(LESIONS, seed=21)
    b, _, _ = _segment(LESIONS, seed=22)
    shape = a.lesion_mask.shape
    centre = LESIONS[0][0]
    assert _hit(a.lesion_mask, centre, shape) and _hit(b.lesion_mask, centre, shape)
    # drop lesion 0 from b's mask, as a threshold falling the other way would
    from scipy import ndimage

    lab, _ = ndimage.label(b.lesion_mask, np.ones((3, 3, 3)))
    idx = tuple(int(round(c + (n - 1) / 2.0)) for c, n in zip(centre, shape))
    b.lesion_mask = b.lesion_mask & (lab != lab[idx])
    ra, rb = longitudinal_refinement([a, b], brain, 1.0)
    assert _hit(rb.lesion_mask, centre, shape)  # its FLAIR did not fall: it persists
    assert rb.qc["refinement_rise_voxels"] == 0
    near = ndimage.binary_dilation(truth, iterations=2)
    assert not (rb.lesion_mask & ~b.lesion_mask & ~near).any()


def test_refinement_leaves_user_masks_alone():
    from pipeline.segment import longitudinal_refinement

    t1, fl, brain, truth, _, _ = make_brain(seed=31)
    a = segment_session(t1, fl, brain, 1.0, lesion_mask=truth)
    b = segment_session(t1, fl, brain, 1.0, lesion_mask=np.zeros_like(truth))
    ra, rb = longitudinal_refinement([a, b], brain, 1.0)
    assert ra is a and rb is b


def test_implausible_segmentations_are_refused_with_the_numbers():
    from pipeline.segment import check_plausible

    params = SegmentationParams()
    good = {"gm_t1_norm": 0.68, "t2lv_ml": 12.0}
    check_plausible(good, 1400.0, params, "sub-01 ses-m06")
    for change, words in (({"gm_t1_norm": 0.99}, "grey/white contrast"),
                          ({"t2lv_ml": 300.0}, "21 % of the 1400 mL brain")):
        with pytest.raises(InputError, match=words) as info:
            check_plausible({**good, **change}, 1400.0, params, "sub-01 ses-m06")
        assert "sub-01 ses-m06" in str(info.value)


def test_pure_tissue_threshold_relaxes_when_classes_overlap():
    from pipeline.segment import pure_tissue_posterior

    rng = np.random.default_rng(0)
    clear = rng.dirichlet([0.05, 0.05, 0.05], size=20_000)  # posteriors near 0 or 1
    assert pure_tissue_posterior(clear, 0.9) == 0.9
    blurred = rng.dirichlet([3.0, 3.0, 3.0], size=20_000)  # few voxels above 0.9
    assert pure_tissue_posterior(blurred, 0.9) < 0.9
