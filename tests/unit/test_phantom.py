"""Phantom cohort: truth consistent with the images, contract columns, geometry, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pipeline.contract import ENDPOINT_COLUMNS
from pipeline.errors import InputError
from pipeline.io import load_nifti, read_tsv
from pipeline.params import LesionParams
from pipeline.paths import bids_path, raw_image
from pipeline.phantom import SESSIONS, cohort_layout, generate_cohort, preset_params
from pipeline.phantom.acquisition import Pose, grid_affine, render_session, rotation_matrix
from pipeline.phantom.anatomy import (ellipsoid_depth_mm, head_depth_bound, make_anatomy,
                                      tissue_fractions)
from pipeline.phantom.cli import main as phantom_main
from pipeline.phantom.lesions import _points_in, plan_lesions
from pipeline.phantom.preview import sample_plane
from pipeline.phantom.truth import classify_change, expected_class

PARTICIPANT_COLUMNS = ["participant_id", "arm", "washout_days", "next_dmt", "relapses_0_3m",
                       "relapses_0_12m"]
# Enough activity that every event type occurs in a two-subject cohort.
ACTIVE = dict(new_t2_rate=((3.0, 3.0), (3.0, 3.0)), turning_hypo_rate=((1.5, 1.5), (1.5, 1.5)),
              enlarging_rate=((1.0, 1.0), (1.0, 1.0)), baseline_hypo_fraction=0.4,
              non_ras_fraction=0.5, baseline_lesions=(8, 12))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    summary = generate_cohort(root / "bids", preset="ci", n_subjects=2, seed=7, preview=True,
                              thick_flair_fraction=0.5, **ACTIVE)
    return summary


def _sessions_data(summary, pid):
    sub = pid.removeprefix("sub-")
    bids, truth = Path(summary["bids_dir"]), Path(summary["truth_dir"])
    out = {}
    for ses in SESSIONS:
        t1, t1_aff, _ = load_nifti(raw_image(bids, sub, ses, "T1w"))
        fl, fl_aff, _ = load_nifti(raw_image(bids, sub, ses, "FLAIR"))
        lab, lab_aff, _ = load_nifti(bids_path(truth, sub, ses, desc="truth", suffix="dseg"))
        tis, _, _ = load_nifti(bids_path(truth, sub, ses, desc="tissue", suffix="dseg"))
        out[ses] = dict(t1=t1.astype(float), t1_aff=t1_aff, flair=fl.astype(float),
                        flair_aff=fl_aff, labels=lab.astype(int), lab_aff=lab_aff,
                        tissue=tis.astype(int))
    table = read_tsv(truth / pid / f"{pid}_lesions.tsv")
    return out, table


def test_layout_and_contract_columns(cohort):
    bids, truth = Path(cohort["bids_dir"]), Path(cohort["truth_dir"])
    assert truth == bids.with_name(bids.name + "-truth")
    parts = read_tsv(bids / "participants.tsv")
    assert list(parts.columns) == PARTICIPANT_COLUMNS
    assert list(parts.participant_id) == ["sub-001", "sub-002"]
    assert set(json.loads((bids / "participants.json").read_text())) == set(PARTICIPANT_COLUMNS)
    desc = json.loads((bids / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"].startswith("1.9")
    assert desc["Name"] and desc["GeneratedBy"]
    ep = read_tsv(truth / "truth_endpoints.tsv")
    assert list(ep.columns) == list(ENDPOINT_COLUMNS) + PARTICIPANT_COLUMNS[1:]
    assert list(ep.interval[:3]) == ["baseline-m06", "m06-m12", "baseline-m12"]
    assert sorted(p.name for p in (bids / "sub-001").iterdir()) == [f"ses-{s}" for s in
                                                                  sorted(SESSIONS)]
    table = read_tsv(truth / "sub-001" / "sub-001_lesions.tsv")
    head = ["lesion_id", "location", "kind", "center_x_mm", "center_y_mm", "center_z_mm"]
    head += [c for s in SESSIONS for c in (f"volume_mm3_{s}", f"t1hypo_{s}")]
    head += [c for i in ep.interval[:3] for c in (f"class_{i}", f"new_t1hypo_{i}")]
    assert list(table.columns[:len(head)]) == head
    phantom = json.loads((truth / "phantom.json").read_text())
    assert phantom["preset"] == "ci" and phantom["seed"] == 7 and "voxel_mm" in phantom["params"]
    assert cohort_layout("ci", 3) == [(f"00{i}", list(SESSIONS)) for i in (1, 2, 3)]
    for path in cohort["previews"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truth_maps_on_t1_grid_and_volumes_match(cohort):
    for pid in cohort["participants"]:
        data, table = _sessions_data(cohort, pid)
        for ses, d in data.items():
            assert d["labels"].shape == d["t1"].shape
            np.testing.assert_allclose(d["lab_aff"], d["t1_aff"])
            vox = abs(np.linalg.det(d["t1_aff"][:3, :3]))
            counts = np.bincount(d["labels"].ravel(), minlength=table.lesion_id.max() + 1)
            np.testing.assert_allclose(table[f"volume_mm3_{ses}"], counts[table.lesion_id] * vox)
            assert set(np.unique(d["labels"])) <= {0, *table.lesion_id}
            assert ((d["tissue"] == 5) == (d["labels"] > 0)).all()
            assert d["t1"].min() >= 0 and d["flair"].min() >= 0


def test_every_event_occurs_and_truth_is_unambiguous(cohort):
    kinds = set()
    for pid in cohort["participants"]:
        _, table = _sessions_data(cohort, pid)
        kinds |= set(table.kind)
    assert {"stable", "new", "turning_hypo"} <= kinds
    assert cohort["kind_class_mismatches"] == 0


def test_lesions_are_flair_bright_against_surrounding_wm(cohort):
    checked = 0
    for pid in cohort["participants"]:
        data, table = _sessions_data(cohort, pid)
        for ses, d in data.items():
            flair = d["flair"]
            if not np.allclose(d["flair_aff"], d["t1_aff"]):
                # 2-D FLAIR on its own grid: sample it at the T1 voxel centres through world
                # coordinates, so this also checks that the two grids agree in world space.
                vox = np.stack(np.indices(d["t1"].shape)).reshape(3, -1)
                m = np.linalg.inv(d["flair_aff"]) @ d["t1_aff"]
                flair = ndimage.map_coordinates(d["flair"], m[:3, :3] @ vox + m[:3, 3:4],
                                                order=1).reshape(d["t1"].shape)
            objs = ndimage.find_objects(d["labels"])
            for lid, sl in enumerate(objs, start=1):
                if sl is None:
                    continue
                big = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in sl)
                lab = d["labels"][big] == lid
                near = ndimage.binary_dilation(lab, iterations=3) & ~ndimage.binary_dilation(
                    lab, iterations=1)
                shell = near & (d["tissue"][big] == 3)
                if shell.sum() < 5:
                    continue
                fl = flair[big]
                assert fl[lab].mean() > 1.1 * fl[shell].mean(), (pid, ses, lid)
                checked += 1
    assert checked >= 10


def test_new_lesion_absent_at_start(cohort):
    found = 0
    for pid in cohort["participants"]:
        data, table = _sessions_data(cohort, pid)
        for a, b in (("baseline", "m06"), ("m06", "m12"), ("baseline", "m12")):
            new = table.lesion_id[table[f"class_{a}-{b}"] == "new"]
            for lid in new:
                assert not (data[a]["labels"] == lid).any()
                assert (data[b]["labels"] == lid).sum() > 0
                found += 1
    assert found >= 2


def test_black_holes_are_darker_than_grey_matter(cohort):
    checked = 0
    for pid in cohort["participants"]:
        data, table = _sessions_data(cohort, pid)
        for ses, d in data.items():
            gm = d["t1"][d["tissue"] == 2].mean()
            for lid in table.lesion_id[table[f"t1hypo_{ses}"] == 1]:
                inside = d["labels"] == lid
                if inside.any():
                    assert d["t1"][inside].mean() < gm, (pid, ses, lid)
                    checked += 1
            # Non-hypointense lesions stay above GM (iso or mildly hypointense).
            for lid in table.lesion_id[(table[f"t1hypo_{ses}"] == 0)
                                       & (table[f"volume_mm3_{ses}"] > 0)]:
                assert d["t1"][d["labels"] == lid].mean() > gm
    assert checked >= 2


def test_world_coordinates_agree_across_storage_orientations():
    p = preset_params("ci", voxel_mm=3.0, snr=1e6, bias_amplitude=0.0,
                      intensity_scale_range=(1.0, 1.0))
    anat = make_anatomy(np.random.default_rng(3), p)
    lesions = plan_lesions(np.random.default_rng(4), anat, p,
                           {k: (1.0, 1.0) for k in ("new", "turning_hypo", "enlarging",
                                                    "shrinking", "resolving")}, p.voxel_mm)
    pose = Pose(np.array([0.3, 1.0, 0.2]), 8.0, np.array([4.0, -6.0, 3.0])).matrix
    shape = tuple(int(round(f / p.voxel_mm)) for f in p.fov_mm)
    obl = rotation_matrix(np.array([1.0, 0.5, -0.2]), 15.0)
    images = {}
    for storage in ("RAS", "LAS", "LPS", "oblique"):
        aff = grid_affine(shape, (3.0, 3.0, 3.0), storage, obl)
        img = render_session(anat, lesions, 0, 0.0, pose, aff, shape, aff, shape,
                             np.random.default_rng(5), p)
        images[storage] = (img.t1.astype(float), aff)
    assert not np.array_equal(images["RAS"][0], images["LPS"][0])  # stored differently
    rng = np.random.default_rng(6)
    pts = (rng.uniform(-1, 1, (3, 4000)) * np.array([[45.0], [55.0], [40.0]]))
    ref = sample_plane(images["RAS"][0], images["RAS"][1], pose, pts, 1)
    wm = 1000.0
    for storage in ("LAS", "LPS", "oblique"):
        got = sample_plane(images[storage][0], images[storage][1], pose, pts, 1)
        # Exact flips agree to rounding; the oblique grid differs by interpolation only.
        tol = 0.01 if storage != "oblique" else 0.08
        assert np.median(np.abs(got - ref)) / wm < tol, storage
        assert np.corrcoef(got, ref)[0, 1] > 0.95


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    opts = dict(preset="ci", n_subjects=1, voxel_mm=4.0, non_ras_fraction=1.0,
                thick_flair_fraction=1.0)
    generate_cohort(tmp_path / "a" / "bids", seed=11, **opts)
    generate_cohort(tmp_path / "b" / "bids", seed=11, **opts)
    generate_cohort(tmp_path / "c" / "bids", seed=12, **opts)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b and len(a) > 20
    t1 = "bids/sub-001/ses-baseline/anat/sub-001_ses-baseline_T1w.nii.gz"
    assert a[t1] != c[t1]


def test_rescan_cohort_has_no_change(tmp_path):
    code = phantom_main(["--preset", "ci", "--subjects", "2", "--voxel-mm", "4", "--rescan",
                         "--skull-stripped", "--out", str(tmp_path / "rs"), "--seed", "3"])
    assert code == 0
    truth = tmp_path / "rs-truth"
    ep = read_tsv(truth / "truth_endpoints.tsv")
    assert (ep[["new_t2", "enlarging_t2", "new_t1hypo"]] == 0).all().all()
    assert (ep.t2lv_change_pct.abs() < 25).all()  # voxelisation only; no lesion change
    xf = json.loads((truth / "sub-001" / "sub-001_transforms.json").read_text())["sessions"]
    poses = [np.asarray(xf[s]["anat_to_world"]) for s in SESSIONS]
    assert not np.allclose(poses[0], poses[1])  # the head moved between sessions
    for pid in ("sub-001", "sub-002"):
        table = read_tsv(truth / pid / f"{pid}_lesions.tsv")
        assert set(table.kind) <= {"stable"}
    t1, _, _ = load_nifti(raw_image(tmp_path / "rs", "001", "baseline", "T1w"))
    mask, _, _ = load_nifti(bids_path(truth, "001", "baseline", desc="brain", suffix="mask"))
    assert (t1[mask == 0] == 0).all() and (t1[mask > 0] > 0).mean() > 0.99


def test_classification_rule_uses_lesion_params():
    va = np.array([0, 0, 100, 100, 100, 100, 0])
    vb = np.array([20, 5, 200, 105, 40, 0, 0])
    assert list(classify_change(va, vb)) == ["new", "absent", "enlarging", "stable", "shrinking",
                                             "resolved", "absent"]
    # The annualised (lesiontrack/mscard) rule: +9 %/year and >= 3 voxels.
    annual = LesionParams(enlarging_rule="annualised")
    cls = classify_change(np.array([100.0, 100.0, 100.0]), np.array([106.0, 104.0, 110.0]),
                          annual, dt_months=6.0, voxel_mm3=2.0)
    assert list(cls) == ["enlarging", "stable", "enlarging"]
    with pytest.raises(InputError, match="annualised"):
        classify_change(np.array([1.0]), np.array([2.0]), annual)
    assert expected_class("new", 1, 0, 2) == ("new", 0)
    assert expected_class("turning_hypo", 2, 0, 1) == ("stable", 0)
    assert expected_class("turning_hypo", 2, 1, 2) == ("stable", 1)


def test_refuses_bad_requests(tmp_path):
    with pytest.raises(InputError, match="preset"):
        generate_cohort(tmp_path / "x", preset="huge")
    with pytest.raises(InputError, match="unknown parameter"):
        generate_cohort(tmp_path / "x", voxel_size=2)
    with pytest.raises(InputError, match="must not be inside"):
        generate_cohort(tmp_path / "x", truth_dir=tmp_path / "x" / "truth", voxel_mm=4.0)
    (tmp_path / "other" / "sub-99").mkdir(parents=True)
    with pytest.raises(InputError, match="another dataset"):
        generate_cohort(tmp_path / "other", voxel_mm=4.0, n_subjects=1)


def test_change_geometry_is_unambiguous():
    p = preset_params("ci", touching_fraction=1.0)
    anat = make_anatomy(np.random.default_rng(8), p)
    lesions = plan_lesions(np.random.default_rng(9), anat, p,
                           {"new": (4.0, 4.0), "turning_hypo": (0.0, 0.0),
                            "enlarging": (2.0, 2.0), "shrinking": (1.0, 1.0),
                            "resolving": (0.0, 0.0)}, p.voxel_mm)
    by_id = {q.lesion_id: q for q in lesions}
    touching = [q for q in lesions if q.kind == "new_touching"]
    assert touching
    for q in touching:
        s = q.event_session
        pts = _points_in(q.ellipsoid(s))
        inside = (ellipsoid_depth_mm(pts, by_id[q.parent_id].ellipsoid(s)) > 0).mean()
        assert 0 < inside <= 0.4  # touches the old lesion, >= 60 % outside it
        assert 2 * q.semi_axes_mm.min() * q.scale[s] >= 5.0 * 0.97
    for q in lesions:
        s = q.event_session
        gain = (q.scale[s] / q.scale[s - 1]) ** 3 - 1 if s > 0 and q.scale[s - 1] > 0 else None
        if q.kind == "enlarging":
            assert gain > 0.7
        elif q.kind == "shrinking":
            assert gain < -0.3
        elif q.kind == "stable":
            v = q.scale ** 3
            assert v.max() / v.min() < 1.1


def test_head_bound_never_cuts_the_head():
    # Images evaluate the model only inside this cheap bound; it must hold the whole head.
    p = preset_params("ci")
    pts = (np.random.default_rng(1).uniform(-1, 1, (3, 200_000))
           * np.array([[100.0], [120.0], [100.0]])).astype(np.float32)
    for seed in range(3):
        anat = make_anatomy(np.random.default_rng(seed), p)
        frac = tissue_fractions(anat, pts, 0.0, 1.0)
        head = sum(frac[k] for k in ("scalp", "skull", "csf", "gm", "wm", "deep_gm")) > 0
        assert head.any() and not (head & ~head_depth_bound(anat, pts)).any()


def test_outside_anatomy_head_is_a_plausible_whole_head(tmp_path):
    """The MNI152 test bed: real brain volume, every storage encoding as declared, negatives
    in Gaussian-noise float images, skull and scalp outside the brain, same seed same bytes."""
    pytest.importorskip("nilearn", reason="the outside-anatomy test bed reads nilearn's template")
    import nibabel as nib

    from pipeline.phantom.config import ENCODINGS

    kwargs = dict(preset="ci", n_subjects=2, seed=5, anatomy="mni152", voxel_mm=3.0,
                  encodings=tuple(ENCODINGS))
    first = generate_cohort(tmp_path / "a", **kwargs)
    generate_cohort(tmp_path / "b", **kwargs)
    truth = Path(first["truth_dir"])
    for sub in first["participants"]:
        sessions = json.loads((truth / sub / f"{sub}_transforms.json").read_text())["sessions"]
        for ses, info in sessions.items():
            t1 = tmp_path / "a" / sub / f"ses-{ses}" / "anat" / f"{sub}_ses-{ses}_T1w.nii.gz"
            img = nib.load(t1)
            assert img.get_data_dtype() == np.dtype(ENCODINGS[info["encoding"]][0])
            values = img.get_fdata()
            assert (values.min() < 0) == (ENCODINGS[info["encoding"]][2] == "gaussian")
            mask = nib.load(truth / sub / f"ses-{ses}" / "anat"
                            / f"{sub}_ses-{ses}_desc-brain_mask.nii.gz").get_fdata() > 0
            assert 900 < mask.sum() * 27 / 1000 < 1700  # mL: adult brains
            # A whole head: bright tissue (scalp, face, neck) well outside the brain.
            assert (values[~mask] > 0.5 * np.median(values[mask])).sum() * 27 > 300_000
            assert t1.read_bytes() == (tmp_path / "b" / t1.relative_to(tmp_path / "a")).read_bytes()
    assert json.loads((truth / "phantom.json").read_text())["params"]["anatomy"] == "mni152"
