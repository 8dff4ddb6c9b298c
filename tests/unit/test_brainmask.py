"""Brain mask on whole-head and skull-stripped T1 (pipeline.brainmask)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.brainmask import brain_mask, is_skull_stripped
from pipeline.errors import InputError
from pipeline.params import BrainMaskParams

#: Tissue intensities of the synthetic head (T1w: WM > GM > CSF, bright scalp fat, dark skull;
#: FLAIR: GM > WM, CSF dark).
CONTRASTS = {"t1": dict(fat=1.1, skull=0.1, csf=0.25, gm=0.65, wm=1.0, lesion=0.8),
             "flair": dict(fat=0.9, skull=0.1, csf=0.15, gm=0.8, wm=0.6, lesion=1.0)}


def layered_head(shape, affine, anat_to_world=np.eye(4), contrast="t1", seed=0, noise=0.03,
                 stripped=False, bias=0.0):
    """Whole-head synthetic MRI sampled at the grid's world points.

    Layers outward from a wobbly ellipsoidal brain (about 130 x 160 x 120 mm): GM ribbon
    (3 mm, with sulcal CSF), CSF (6 mm), skull (7 mm), scalp fat (9 mm), air; ventricles and
    three lesions inside. Rician noise of sigma ``noise``; optional smooth multiplicative bias
    of amplitude ``bias``. Returns (image float32 (I, J, K), truth brain mask bool (I, J, K)).
    """
    tab = CONTRASTS[contrast]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inv = np.linalg.inv(anat_to_world)
    x, y, z = (world @ inv[:3, :3].T + inv[:3, 3]).T
    r = np.sqrt((x / 65.0) ** 2 + (y / 80.0) ** 2 + (z / 60.0) ** 2)
    wobble = 1 + 0.03 * np.sin(3 * np.arctan2(y, x)) * np.cos(2 * np.arctan2(z, np.hypot(x, y)))
    depth_mm = (r / wobble - 1.0) * 65.0  # > 0 outside the brain surface
    v = np.zeros(len(x))
    v[(depth_mm > 13) & (depth_mm <= 22)] = tab["fat"]
    v[(depth_mm > 6) & (depth_mm <= 13)] = tab["skull"]
    v[(depth_mm > 0) & (depth_mm <= 6)] = tab["csf"]
    brain = depth_mm <= 0
    gm = brain & (depth_mm > -3)
    v[brain] = tab["wm"]
    v[gm] = tab["gm"]
    v[gm & (np.sin(x / 4.0 + 0.3 * z / 7.0) * np.sin(y / 5.0) > 0.7)] = tab["csf"]
    v[((x / 12) ** 2 + (y / 25) ** 2 + ((z - 10) / 10) ** 2) < 1] = tab["csf"]
    for cx, cy, cz in [(20, 10, 5), (-25, -15, 10), (10, -30, -5)]:
        v[brain & (((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < 25)] = tab["lesion"]
    if bias:
        v *= np.exp(bias * np.sin(x / 70.0 + 0.5) * np.cos(y / 90.0))
    if stripped:
        v[~brain] = 0.0
    else:
        rng = np.random.default_rng(seed)
        n = len(v)
        v = np.abs(v + noise * rng.standard_normal(n) + 1j * noise * rng.standard_normal(n))
    return v.reshape(shape).astype(np.float32), brain.reshape(shape)


def head_affine(voxel_mm=2.0, fov_mm=(180.0, 216.0, 180.0)):
    shape = tuple(int(round(f / voxel_mm)) for f in fov_mm)
    aff = np.diag([voxel_mm] * 3 + [1.0])
    aff[:3, 3] = -(np.asarray(shape) - 1) / 2 * voxel_mm
    return shape, aff


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("bias", [0.0, 0.2])
def test_whole_head_mask_matches_truth(bias):
    shape, aff = head_affine(2.0)
    img, truth = layered_head(shape, aff, bias=bias, seed=3)
    img *= 731.0  # any global scale
    mask, info = brain_mask(img, aff)
    assert info["skull_stripped"] is False
    assert dice(mask, truth) > 0.97
    assert info["brain_volume_ml"] == pytest.approx(truth.sum() * 8 / 1000, rel=0.05)


def test_skull_stripped_is_detected_and_masked():
    shape, aff = head_affine(2.0)
    img, truth = layered_head(shape, aff, stripped=True)
    assert is_skull_stripped(img, (2.0, 2.0, 2.0))
    mask, info = brain_mask(img, aff)
    assert info["skull_stripped"] is True
    assert dice(mask, truth) > 0.99
    whole, _ = layered_head(shape, aff)
    assert not is_skull_stripped(whole, (2.0, 2.0, 2.0))
    # A whole head with a zeroed background is still a whole head (too large for a brain).
    zeroed = whole.copy()
    zeroed[whole < 0.08] = 0.0
    assert not is_skull_stripped(zeroed, (2.0, 2.0, 2.0))


def test_anisotropic_and_non_ras_grids():
    shape, aff = head_affine(2.0)
    aff = aff @ np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS storage
    aff[0, 3] = -aff[0, 3]
    thick = aff @ np.diag([1.0, 1.0, 2.0, 1.0])
    t_shape = (shape[0], shape[1], shape[2] // 2)
    for a, s in ((aff, shape), (thick, t_shape)):
        img, truth = layered_head(s, a)
        mask, _ = brain_mask(img, a)
        assert dice(mask, truth) > 0.95


def test_implausible_brain_volume_is_refused():
    shape, aff = head_affine(3.0)
    img, _ = layered_head(shape, aff)
    with pytest.raises(InputError, match=r"brain mask of \d+ mL .* outside the plausible"):
        brain_mask(img, aff, BrainMaskParams(min_brain_volume_ml=2000.0,
                                             max_brain_volume_ml=3000.0))


def test_erosion_that_removes_everything_is_refused():
    shape, aff = head_affine(3.0)
    img, _ = layered_head(shape, aff)
    with pytest.raises(InputError, match="erosion"):
        brain_mask(img, aff, BrainMaskParams(erosion_radii_mm=(80.0,)))


def test_wide_bridges_to_scalp_and_neck_are_cut():
    """Real heads connect brain and extracranial tissue over bridges far wider than a 4 mm
    erosion cuts: a 20 mm wide plug of thin bone in partial volume (above the tissue threshold,
    darker than brain and scalp) through skull and CSF, and a neck block of muscle under the
    skull base (filling the scalp and the air below the brain)."""
    shape, aff = head_affine(2.0)
    img, truth = layered_head(shape, aff, seed=5)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    x, y, z = np.moveaxis(ijk @ aff[:3, :3].T + aff[:3, 3], -1, 0)
    tube = (np.hypot(y - 10.0, z - 10.0) < 10.0) & (x > 40.0) & ~truth
    scalp_at_plug = tube & (img > 1.0)
    img[tube & (img > 0.08) & (img < 0.5)] = 0.5
    neck = (z < -45.0) & (np.hypot(x / 1.3, y) < 45.0) & ~truth & ((img < 0.05) | (img > 1.0))
    img[neck] = 0.6
    mask, _ = brain_mask(img, aff)
    assert dice(mask, truth) > 0.95
    assert (mask & scalp_at_plug).sum() < 0.05 * scalp_at_plug.sum()
    assert (mask & neck).sum() < 0.02 * neck.sum()
