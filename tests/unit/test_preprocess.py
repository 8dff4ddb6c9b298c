"""Per-session preprocessing: N4 (pipeline.intensity) and the preprocess step/CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline import io, preprocess
from pipeline.errors import RegistrationError
from pipeline.intensity import n4_correct
from pipeline.paths import bids_path, raw_image
from pipeline.imagespace import read_transform, rigid_to_matrix, set_threads
from tests.unit.test_brainmask import head_affine, layered_head
from tests.unit.test_registration import mean_error_mm, rigid_ras


@pytest.fixture(autouse=True)
def _one_thread():
    set_threads(1)


def _cv(values: np.ndarray) -> float:
    return float(np.std(values) / np.mean(values))


def test_n4_removes_a_smooth_bias_field():
    shape, aff = head_affine(3.0)
    clean, brain = layered_head(shape, aff, noise=0.01, seed=1)
    biased, _ = layered_head(shape, aff, noise=0.01, seed=1, bias=0.3)
    wm = brain & (np.abs(clean - 1.0) < 0.05)  # pure WM voxels of the clean image
    corrected, log_bias = n4_correct(biased, aff, brain)
    assert corrected.shape == shape and corrected.dtype == np.float32
    # WM intensity spread: biased ~ +-30 %, corrected close to the clean image's noise.
    assert _cv(corrected[wm]) < 0.5 * _cv(biased[wm])
    assert _cv(corrected[wm]) < 0.05
    # The estimated field follows the true one (up to a global factor).
    ratio = biased[wm] / corrected[wm]
    true_ratio = biased[wm] / clean[wm]
    assert np.corrcoef(ratio, true_ratio)[0, 1] > 0.95
    np.testing.assert_allclose(np.exp(log_bias[wm]), ratio, rtol=1e-4)


def _session(shape, aff, pose, flair_grid=None, seed=0):
    t1, brain = layered_head(shape, aff, pose, "t1", seed=seed, bias=0.15)
    f_shape, f_aff = (shape, aff) if flair_grid is None else flair_grid
    flair, _ = layered_head(f_shape, f_aff, pose, "flair", seed=seed + 1, bias=-0.1)
    return t1 * 900, flair * 500, brain


def test_preprocess_session_shared_grid_is_identity():
    shape, aff = head_affine(3.0)
    t1, flair, brain = _session(shape, aff, rigid_ras((3, 0, 2), (2, -1, 0)))
    out = preprocess.preprocess_session(t1, aff, flair, aff)
    assert out.qc["flair_to_t1"]["method"].startswith("identity")
    np.testing.assert_allclose(rigid_to_matrix(out.flair_to_t1), np.eye(4))
    assert out.qc["skull_stripped"] == "no"
    assert out.brain_mask.shape == shape and out.brain_mask.dtype == bool
    inter = (out.brain_mask & brain).sum()
    assert 2 * inter / (out.brain_mask.sum() + brain.sum()) > 0.95


def test_preprocess_session_registers_thick_slice_flair():
    shape, aff = head_affine(2.0)
    # FLAIR: 2 x 2 x 4 mm axial slices stored LPS, same head pose as the T1 (one session).
    f_shape = (shape[0], shape[1], shape[2] // 2)
    f_aff = np.diag([-2.0, -2.0, 4.0, 1.0])
    f_aff[:3, 3] = -f_aff[:3, :3] @ ((np.asarray(f_shape) - 1) / 2)
    pose = rigid_ras((4, -2, 3), (3, 2, -1))
    t1, flair, brain = _session(shape, aff, pose, (f_shape, f_aff))
    out = preprocess.preprocess_session(t1, aff, flair, f_aff)
    qc = out.qc["flair_to_t1"]
    assert qc["method"].startswith("rigid") and qc["similarity_nmi"] > 1.05
    # FLAIR and T1 share the head pose: the true FLAIR -> T1 map is the identity.
    assert mean_error_mm(rigid_to_matrix(out.flair_to_t1), np.eye(4), brain, aff) < 0.5
    assert out.flair_n4.shape == f_shape


def test_preprocess_session_refuses_an_unrelated_flair():
    shape, aff = head_affine(3.0)
    t1, _, _ = _session(shape, aff, np.eye(4))
    f_shape = (shape[0], shape[1], shape[2] // 2)
    f_aff = aff @ np.diag([1.0, 1.0, 2.0, 1.0])
    noise = np.random.default_rng(7).random(f_shape).astype(np.float32) * 500
    with pytest.raises(RegistrationError, match=r"sub-01 ses-m06 FLAIR -> T1w refused.*nmi"):
        preprocess.preprocess_session(t1, aff, noise, f_aff, label="sub-01 ses-m06")


def test_preprocess_cli_writes_every_product(tmp_path, capsys):
    shape, aff = head_affine(3.0)
    t1, flair, _ = _session(shape, aff, rigid_ras((2, 2, 0), (0, 1, 2)))
    bids, out = tmp_path / "bids", tmp_path / "out"
    io.save_nifti(raw_image(bids, "01", "baseline", "T1w"), t1, aff, dtype=np.float32)
    io.save_nifti(raw_image(bids, "01", "baseline", "FLAIR"), flair, aff, dtype=np.float32)
    argv = ["--bids", str(bids), "--subject", "01", "--session", "baseline", "--out", str(out)]
    assert preprocess.main(argv) == 0
    assert "brain" in capsys.readouterr().out
    products = {
        "t1": bids_path(out, "01", "baseline", desc="n4", suffix="T1w"),
        "flair": bids_path(out, "01", "baseline", desc="n4", suffix="FLAIR"),
        "mask": bids_path(out, "01", "baseline", desc="brain", suffix="mask"),
    }
    for path in products.values():
        data, affine, _ = io.load_nifti(path)
        assert data.shape == shape and np.allclose(affine, aff)
    xfm = bids_path(out, "01", "baseline", from_="FLAIR", to="T1w", mode="image",
                    suffix="xfm", ext=".txt")
    assert isinstance(read_transform(xfm), sitk.Euler3DTransform)
    qc = json.loads(bids_path(out, "01", "baseline", desc="preproc", suffix="qc",
                              ext=".json").read_text())
    assert qc["skull_stripped"] == "no" and 1000 < qc["brain_volume_ml"] < 1600
    assert {"brain_mask", "n4_t1", "flair_to_t1", "n4_flair", "write"} <= set(qc["seconds"])
    # What the input checks did with negative voxels, per image.
    assert set(qc["negatives"]) == {"T1w", "FLAIR"}
    assert {"n_negative", "negative_fraction", "action"} <= set(qc["negatives"]["T1w"])
    # Same inputs, same bytes (QC json aside: it records seconds).
    first = {k: p.read_bytes() for k, p in products.items()}
    assert preprocess.main(argv) == 0
    assert first == {k: p.read_bytes() for k, p in products.items()}
    # Parameter overrides by class name; a bad value is refused with exit code 1.
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"BrainMaskParams": {"erosion_radii_mm": [-1.0]}}))
    assert preprocess.main(argv + ["--params", str(params)]) == 1
    assert "erosion_radii_mm" in capsys.readouterr().err


def test_preprocess_refuses_a_broken_input(tmp_path, capsys):
    shape, aff = head_affine(3.0)
    t1, flair, _ = _session(shape, aff, np.eye(4))
    flair[0, 0, :5] = np.nan
    bids = tmp_path / "bids"
    io.save_nifti(raw_image(bids, "01", "m06", "T1w"), t1, aff, dtype=np.float32)
    io.save_nifti(raw_image(bids, "01", "m06", "FLAIR"), flair, aff, dtype=np.float32)
    argv = ["--bids", str(bids), "--subject", "01", "--session", "m06",
            "--out", str(tmp_path / "out")]
    assert preprocess.main(argv) == 1
    err = capsys.readouterr().err
    assert "sub-01_ses-m06_FLAIR.nii.gz" in err and "5 voxels are NaN" in err

