"""Rigid registration and the unbiased subject space (pipeline.registration), with the RAS/LPS
conversion, rigid matrices, transform files and resampling it rests on (pipeline.imagespace)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from pipeline import io
from pipeline.errors import InputError, RegistrationError
from pipeline.params import RegistrationParams
from pipeline.imagespace import (
    map_points_subject_to_session,
    matrix_to_rigid,
    mean_rigid,
    nifti_to_sitk,
    resample_to_subject,
    rigid_to_matrix,
    same_grid,
    set_threads,
    sitk_to_nifti,
    write_transform,
)
from pipeline.paths import bids_path
from pipeline.registration import build_subject_space, register_rigid, register_subject_files

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# Synthetic images (also used by test_preprocess.py and test_brainmask.py)
# ---------------------------------------------------------------------------------------------

def rigid_ras(rot_deg_xyz, trans_mm, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 RAS rigid matrix: rotation (xyz Euler, degrees) about ``center``, then translation."""
    m = np.eye(4)
    r = Rotation.from_euler("xyz", rot_deg_xyz, degrees=True).as_matrix()
    c = np.asarray(center, dtype=float)
    m[:3, :3] = r
    m[:3, 3] = c + np.asarray(trans_mm, dtype=float) - r @ c
    return m


def grid_affine(shape, voxel_mm=(1.0, 1.0, 1.0), orientation="RAS", tilt_deg=15.0) -> np.ndarray:
    """Affine of a grid centred on the world origin, stored RAS, LAS, LPS or oblique."""
    voxel = np.asarray(voxel_mm, dtype=float)
    axes = {"RAS": np.eye(3), "LAS": np.diag([-1.0, 1, 1]), "LPS": np.diag([-1.0, -1, 1]),
            "oblique": Rotation.from_euler("xyz", (tilt_deg, -0.6 * tilt_deg, 0.4 * tilt_deg),
                                           degrees=True).as_matrix()}[orientation]
    aff = np.eye(4)
    aff[:3, :3] = axes * voxel
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape, dtype=float) - 1) / 2)
    return aff


def textured_blob(shape, affine, anat_to_world=np.eye(4), seed=0, noise=0.02,
                  radii_mm=(22.0, 26.0, 20.0), contrast="t1"):
    """A textured ellipsoid 'brain' sampled through ``anat_to_world`` and the grid affine.

    Returns (image float32 (I, J, K), mask bool (I, J, K)); the anatomy (texture) is fixed,
    ``seed`` only drives the noise. ``contrast="flair"`` inverts the texture contrast.
    """
    anatomy = np.random.default_rng(1234)
    centres = anatomy.uniform(-0.8, 0.8, size=(80, 3)) * np.asarray(radii_mm)
    widths = anatomy.uniform(2.0, 5.0, size=80)
    amps = anatomy.uniform(-0.4, 0.4, size=80)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inv = np.linalg.inv(anat_to_world)
    a = world @ inv[:3, :3].T + inv[:3, 3]
    r = np.sqrt(((a / np.asarray(radii_mm)) ** 2).sum(axis=1))
    inside = 1.0 / (1.0 + np.exp((r - 1.0) * 20.0))
    texture = np.zeros(len(a))
    for c, w, amp in zip(centres, widths, amps):
        texture += amp * np.exp(-((a - c) ** 2).sum(axis=1) / (2 * w * w))
    value = inside * (1.0 + texture) if contrast == "t1" else inside * 0.7 * (1.0 - 0.8 * texture)
    value = value + noise * np.random.default_rng(seed).standard_normal(len(a))
    return (np.clip(value, 0, None).reshape(shape).astype(np.float32),
            (r < 0.9).reshape(shape))


def mean_error_mm(estimate_lps: np.ndarray, truth_ras: np.ndarray, mask: np.ndarray,
                  affine: np.ndarray) -> float:
    """Mean distance over ``mask`` voxels between an LPS estimate and a RAS true point map."""
    est = FLIP @ estimate_lps @ FLIP
    pts = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    diff = (pts @ est[:3, :3].T + est[:3, 3]) - (pts @ truth_ras[:3, :3].T + truth_ras[:3, 3])
    return float(np.linalg.norm(diff, axis=1).mean())


@pytest.fixture(autouse=True)
def _one_thread():
    set_threads(1)


# ---------------------------------------------------------------------------------------------
# RAS <-> LPS
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", ["RAS", "LAS", "LPS", "oblique"])
def test_nifti_sitk_round_trip_and_world_coordinates(orientation):
    shape = (7, 9, 11)
    affine = grid_affine(shape, (1.0, 1.5, 3.0), orientation)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    image = nifti_to_sitk(data, affine)
    assert image.GetSize() == shape
    # Voxel (i, j, k) holds data[i, j, k] and lies at the affine's world point (LPS in ITK).
    for ijk in [(0, 0, 0), (6, 8, 10), (3, 1, 7)]:
        assert image.GetPixel(ijk) == data[ijk]
        ras = affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]
        lps = np.asarray(image.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(lps, ras * [-1, -1, 1], atol=1e-9)
    back, back_affine = sitk_to_nifti(image)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_affine, affine, atol=1e-9)


def test_nifti_to_sitk_refuses_shear_and_non_3d():
    affine = np.eye(4)
    affine[0, 1] = 0.3
    with pytest.raises(InputError, match="shear"):
        nifti_to_sitk(np.zeros((4, 4, 4)), affine)
    with pytest.raises(InputError, match="3-D"):
        nifti_to_sitk(np.zeros((4, 4)), np.eye(4))


def test_rigid_matrix_round_trip_and_mean():
    m = FLIP @ rigid_ras((5, -3, 8), (4, -2, 7)) @ FLIP
    tx = matrix_to_rigid(m, center_lps=np.array([10.0, -5.0, 3.0]))
    np.testing.assert_allclose(rigid_to_matrix(tx), m, atol=1e-10)
    # The mean of rotations +a and -a about one axis (and opposite translations) is identity.
    a, b = rigid_ras((0, 0, 9), (3, 0, 0)), rigid_ras((0, 0, -9), (-3, 0, 0))
    np.testing.assert_allclose(mean_rigid([a, b], np.zeros(3)), np.eye(4), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Pairwise registration
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation,moving_voxel", [
    ("RAS", (1.0, 1.0, 1.0)), ("LAS", (1.0, 1.0, 1.0)), ("LPS", (1.0, 1.0, 1.0)),
    ("oblique", (1.0, 1.0, 1.0)), ("RAS", (1.0, 1.0, 3.0))])
def test_rigid_motion_is_recovered(orientation, moving_voxel):
    shape = (64, 64, 64)
    fixed_affine = grid_affine(shape, (1.0, 1.0, 1.0), orientation)
    fixed, mask = textured_blob(shape, fixed_affine, seed=1)
    pose = rigid_ras((7, -5, 6), (5, -4, 6))
    m_shape = tuple(int(round(64 / v)) for v in moving_voxel)
    moving_affine = grid_affine(m_shape, moving_voxel, "LPS" if orientation == "RAS" else "RAS")
    moving, moving_mask = textured_blob(m_shape, moving_affine, pose, seed=2)
    result = register_rigid(fixed, fixed_affine, moving, moving_affine, RegistrationParams(),
                            fixed_mask=mask, moving_mask=moving_mask)
    # Fixed world x holds anatomy x (pose identity); the moving image shows it at pose(x).
    assert mean_error_mm(result.matrix, pose, mask, fixed_affine) < 0.5
    assert result.similarity > 0.9
    assert 0 < result.rotation_deg < 15


def test_multimodal_registration_recovers_flair_pose():
    shape = (64, 64, 64)
    affine = grid_affine(shape)
    t1, mask = textured_blob(shape, affine, seed=1)
    pose = rigid_ras((3, 2, -4), (2, 3, -2))
    f_shape = (64, 64, 22)
    f_affine = grid_affine(f_shape, (1.0, 1.0, 3.0))
    flair, _ = textured_blob(f_shape, f_affine, pose, seed=3, contrast="flair")
    result = register_rigid(t1, affine, flair, f_affine, RegistrationParams(), fixed_mask=mask,
                            multimodal=True)
    assert mean_error_mm(result.matrix, pose, mask, affine) < 0.5
    assert result.similarity_name == "nmi"


def test_implausible_pair_is_refused():
    shape = (48, 48, 48)
    affine = grid_affine(shape)
    brain, mask = textured_blob(shape, affine, seed=1)
    noise = np.random.default_rng(5).random(shape).astype(np.float32)
    with pytest.raises(RegistrationError, match=r"ses-x T1w -> ses-y T1w refused.*ncc"):
        register_rigid(brain, affine, noise, affine, RegistrationParams(), fixed_mask=mask,
                       pair="ses-x T1w -> ses-y T1w")


def test_same_grid():
    a = grid_affine((10, 10, 10))
    assert same_grid((10, 10, 10), a, (10, 10, 10), a.copy())
    b = a.copy()
    b[0, 3] += 0.5
    assert not same_grid((10, 10, 10), a, (10, 10, 10), b)
    assert not same_grid((10, 10, 10), a, (10, 10, 9), a)


# ---------------------------------------------------------------------------------------------
# Subject space
# ---------------------------------------------------------------------------------------------

POSES = [rigid_ras((4, -3, 2), (3, -2, 1)), rigid_ras((-5, 2, 6), (-4, 3, 2)),
         rigid_ras((2, 6, -5), (2, 4, -3))]


def _sessions(shape=(56, 56, 56)):
    images, masks, affines = [], [], []
    for k, (pose, orientation) in enumerate(zip(POSES, ["RAS", "LAS", "oblique"])):
        affine = grid_affine(shape, (1.2, 1.2, 1.2), orientation, tilt_deg=8.0)
        img, mask = textured_blob(shape, affine, pose, seed=10 + k)
        images.append(nifti_to_sitk(img, affine))
        masks.append(nifti_to_sitk(mask.astype(np.uint8), affine))
        affines.append(affine)
    return images, masks, affines


def test_subject_space_is_unbiased_and_order_free():
    images, masks, affines = _sessions()
    params = RegistrationParams()
    space = build_subject_space(images, masks, ["a", "b", "c"], params)
    # No session is favoured: the mean of the subject -> session maps is the identity.
    np.testing.assert_allclose(mean_rigid(space.to_session, space.center_lps), np.eye(4),
                               atol=1e-9)
    # Through the subject space, session i points map to session j points as the truth does:
    # S_j o S_i^-1 = W_j o W_i^-1 whatever the subject frame.
    for i in range(3):
        for j in range(3):
            est = space.to_session[j] @ np.linalg.inv(space.to_session[i])
            truth = POSES[j] @ np.linalg.inv(POSES[i])
            mask = sitk_to_nifti(masks[i])[0] > 0
            assert mean_error_mm(est, truth, mask, affines[i]) < 0.5
    # Reordering the sessions gives the same space (each session's map, up to tolerance).
    order = [2, 0, 1]
    other = build_subject_space([images[k] for k in order], [masks[k] for k in order],
                                ["c", "a", "b"], params)
    for pos, k in enumerate(order):
        mask = sitk_to_nifti(masks[k])[0] > 0
        diff = other.to_session[pos] @ np.linalg.inv(space.to_session[k])
        assert mean_error_mm(diff, np.eye(4), mask, affines[k]) < 0.2
    # Grid: isotropic, RAS-aligned, not finer than the coarsest T1 voxel (1.2 mm).
    ref_data, ref_affine = sitk_to_nifti(space.reference)
    np.testing.assert_allclose(ref_affine[:3, :3], np.eye(3) * 1.2, atol=1e-12)


def _write_session_files(root, images, masks):
    """Write preprocess outputs (N4 T1/FLAIR = the image, mask, identity FLAIR->T1)."""
    for ses, img, mask in zip(["baseline", "m06", "m12"], images, masks):
        data, affine = sitk_to_nifti(img)
        io.save_nifti(bids_path(root, "01", ses, desc="n4", suffix="T1w"), data, affine,
                      dtype=np.float32)
        io.save_nifti(bids_path(root, "01", ses, desc="n4", suffix="FLAIR"), data * 0.7,
                      affine, dtype=np.float32)
        io.save_nifti(bids_path(root, "01", ses, desc="brain", suffix="mask"),
                      sitk_to_nifti(mask)[0], affine, dtype=np.uint8)
        write_transform(bids_path(root, "01", ses, from_="FLAIR", to="T1w", mode="image",
                                  suffix="xfm", ext=".txt"), sitk.Euler3DTransform())


def test_register_subject_files_deterministic_and_complete(tmp_path):
    images, masks, _ = _sessions(shape=(48, 48, 48))
    sessions = ["baseline", "m06", "m12"]
    outputs = []
    for run in ("one", "two"):
        root = tmp_path / run
        _write_session_files(root, images, masks)
        written = register_subject_files(root, "01", sessions, RegistrationParams())
        outputs.append(written)
        qc = io.read_tsv(written["qc"])
        assert list(qc["moving"]) == ["m06", "m12"] and set(qc["fixed"]) == {"baseline"}
        assert (qc["accepted"] == "yes").all() and (qc["similarity_value"] > 0.9).all()
        t1, aff, _ = io.load_nifti(written["sessions"]["m06"]["t1w_subject"])
        tmpl, tmpl_aff, _ = io.load_nifti(written["template"])
        assert t1.shape == tmpl.shape and np.allclose(aff, tmpl_aff)
    for ses in sessions:
        a = outputs[0]["sessions"][ses]
        b = outputs[1]["sessions"][ses]
        for key in ("t1w_to_subject", "t1w_subject", "flair_subject", "brain_mask_subject"):
            assert a[key].read_bytes() == b[key].read_bytes(), (ses, key)


def test_map_points_subject_to_session_known_rotation(tmp_path):
    # ITK transform (LPS): rotate 90 deg about z, then translate by (1, 2, 3) LPS mm.
    tx = sitk.Euler3DTransform()
    tx.SetRotation(0.0, 0.0, np.pi / 2)
    tx.SetTranslation((1.0, 2.0, 3.0))
    path = write_transform(tmp_path / "xfm.txt", tx)
    ras = np.array([[10.0, 0.0, 0.0], [0.0, 5.0, -2.0]])
    # By hand: RAS (10,0,0) -> LPS (-10,0,0) -> rotated (0,-10,0) -> +t (1,-8,3) -> RAS (-1,8,3).
    #          RAS (0,5,-2) -> LPS (0,-5,-2) -> rotated (5,0,-2) -> +t (6,2,1) -> RAS (-6,-2,1).
    expected = np.array([[-1.0, 8.0, 3.0], [-6.0, -2.0, 1.0]])
    np.testing.assert_allclose(map_points_subject_to_session(ras, path), expected, atol=1e-9)
    np.testing.assert_allclose(map_points_subject_to_session(ras[0], path), expected[0],
                               atol=1e-9)


def test_resample_to_subject_agrees_with_point_mapping(tmp_path):
    # A session image with one bright cube; a subject grid; a known subject -> session map.
    shape = (40, 40, 40)
    s_affine = grid_affine(shape, (1.0, 1.0, 1.0), "LAS")
    data = np.zeros(shape, dtype=np.float32)
    data[24:28, 10:14, 18:22] = 1.0
    io.save_nifti(tmp_path / "lesion.nii.gz", data, s_affine)
    t_affine = grid_affine(shape, (1.0, 1.0, 1.0), "RAS")
    io.save_nifti(tmp_path / "template.nii.gz", np.zeros(shape, dtype=np.float32), t_affine)
    subject_to_session = FLIP @ rigid_ras((0, 0, 20), (3, -2, 1)) @ FLIP
    path = write_transform(tmp_path / "xfm.txt", matrix_to_rigid(subject_to_session))
    out, out_affine = resample_to_subject(tmp_path / "lesion.nii.gz", tmp_path / "template.nii.gz",
                                          [path], interpolation="linear")
    np.testing.assert_allclose(out_affine, t_affine, atol=1e-9)
    assert abs(out.sum() - data.sum()) < 0.05 * data.sum()
    centroid_subject = (np.argwhere(out > 0.5).mean(axis=0) @ t_affine[:3, :3].T
                        + t_affine[:3, 3])
    centroid_session = (np.argwhere(data > 0).mean(axis=0) @ s_affine[:3, :3].T
                        + s_affine[:3, 3])
    mapped = map_points_subject_to_session(centroid_subject, path)
    assert np.linalg.norm(mapped - centroid_session) < 0.5
    nearest, _ = resample_to_subject(tmp_path / "lesion.nii.gz", tmp_path / "template.nii.gz",
                                     [path], interpolation="nearest")
    assert set(np.unique(nearest)) <= {0.0, 1.0}
    with pytest.raises(InputError, match="interpolation"):
        resample_to_subject(tmp_path / "lesion.nii.gz", tmp_path / "template.nii.gz", [path],
                            interpolation="cubic")


def test_rotation_above_limit_is_refused():
    shape = (48, 48, 48)
    affine = grid_affine(shape)
    fixed, mask = textured_blob(shape, affine, seed=1)
    moving, _ = textured_blob(shape, affine, rigid_ras((0, 0, 8), (0, 0, 0)), seed=2)
    with pytest.raises(RegistrationError, match=r"rotation [78]\.\d deg > 3\.0 deg"):
        register_rigid(fixed, affine, moving, affine, RegistrationParams(max_rotation_deg=3.0),
                       fixed_mask=mask)


def test_register_cli_reports_missing_inputs(tmp_path, capsys):
    from pipeline.registration import main

    argv = ["--out", str(tmp_path), "--subject", "01", "--sessions", "baseline", "m06"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "sub-01_ses-baseline_desc-n4_T1w.nii.gz: file not found" in err
    assert main(["--out", str(tmp_path), "--subject", "01", "--sessions", "a", "a"]) == 1
    assert "distinct" in capsys.readouterr().err


def test_refused_session_is_marked_in_the_qc_table(tmp_path):
    images, masks, _ = _sessions(shape=(48, 48, 48))
    # Session m12 holds noise: its pair is refused, the other one accepted; the table stays.
    noise = np.random.default_rng(3).random(images[2].GetSize()[::-1]).astype(np.float32)
    bad = sitk.GetImageFromArray(noise)
    bad.CopyInformation(images[2])
    _write_session_files(tmp_path, [images[0], images[1], bad], masks)
    with pytest.raises(RegistrationError, match="ses-m12 T1w -> ses-baseline T1w refused"):
        register_subject_files(tmp_path, "01", ["baseline", "m06", "m12"], RegistrationParams())
    qc = io.read_tsv(bids_path(tmp_path, "01", desc="registration", suffix="qc", ext=".tsv"))
    assert list(qc["moving"]) == ["m06", "m12"]
    assert list(qc["accepted"]) == ["yes", "no"]


def test_t1_at_flair_resolution_averages_over_the_flair_voxel():
    from pipeline.imagespace import nifti_to_sitk, sitk_to_nifti
    from pipeline.registration import t1_at_flair_resolution

    rng = np.random.default_rng(5)
    t1 = rng.uniform(0.5, 1.0, (20, 22, 24)).astype(np.float32)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    t1_img = nifti_to_sitk(t1, aff)
    # same grid: the T1 itself
    same, _ = sitk_to_nifti(t1_at_flair_resolution(t1_img, t1_img, sitk.Euler3DTransform()))
    np.testing.assert_allclose(same, t1, atol=1e-5)
    # 1 x 1 x 3 mm FLAIR covering slices 3k-1 .. 3k+1 of the T1: the mean of those slices
    fl_aff = np.diag([1.0, 1.0, 3.0, 1.0])
    fl_aff[2, 3] = 1.0
    flair = nifti_to_sitk(np.zeros((20, 22, 7), np.float32), fl_aff)
    out, out_aff = sitk_to_nifti(t1_at_flair_resolution(t1_img, flair, sitk.Euler3DTransform()))
    np.testing.assert_allclose(out_aff, fl_aff)
    expected = t1[:, :, :21].reshape(20, 22, 7, 3).mean(axis=3)
    np.testing.assert_allclose(out, expected, atol=1e-5)
