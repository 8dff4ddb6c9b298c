"""Rigid registration and the unbiased per-subject space (SimpleITK).

Spaces and conventions
----------------------
NIfTI affines (nibabel) map voxel indices to world coordinates in RAS mm; ITK physical space is
LPS mm (x and y negated). :func:`nifti_to_sitk` / :func:`sitk_to_nifti` are the one pair of
functions that converts between them. Every transform written by this module is an ITK
*resampling* transform, stored with ``sitk.WriteTransform`` as text: it maps points of the
fixed/reference space (LPS) to points of the moving image (LPS), i.e. it is what
``sitk.Resample(moving, reference, transform)`` needs. So

- ``from-FLAIR_to-T1w`` maps session T1 points to FLAIR points (resamples FLAIR onto T1);
- ``from-T1w_to-subject`` maps subject-space points to the session's T1 points (resamples the
  session's T1 into the subject grid).

Method
------
Pairwise rigid registration maximises Mattes mutual information (Mattes et al. 2003) with a
regular-step gradient descent over a coarse-to-fine pyramid (``RegistrationParams``; each level
on images block-averaged to its voxel size and smoothed), random metric sampling with a fixed
seed, inside the fixed image's brain mask grown by a few mm. Session-to-session T1 starts with
the brain-mask centres aligned, FLAIR-to-T1 (one session, one scanner frame) from the
identity; when a result is implausible (similarity below threshold, rotation above
``max_rotation_deg``, optimiser not converged) the next start is tried (identity, then the
image moments) before the pair is refused with a :class:`RegistrationError`.

The subject space follows the within-subject template idea of Reuter et al. (2010, 2012;
FreeSurfer longitudinal stream) and of MSSEG-2 preprocessing: every session's T1 is registered
to the first session's T1, giving transforms T_i (T_0 = identity); the subject frame is their
mean A (mean displacement of the brain centre, rotation = mean rotation matrix projected onto
SO(3) by SVD, the chordal L2 mean of Moakher 2002), and session i's subject->session transform
is S_i = T_i o A^-1. The mean of the S_i is the identity, so no session is favoured; changing
the reference session changes the space only by the (second-order) registration and averaging
error. Each image is then resampled once, from its native grid, onto an isotropic RAS-aligned
grid covering the union of the brain masks plus a margin.

Accuracy and cost (``benchmarks/registration_accuracy.py``, table
``benchmarks/registration_accuracy.tsv``, a phantom seed held out from development): at 1 mm
(4 subjects, session-to-session motion up to 14 deg / 12 mm, RAS/LAS/LPS/oblique storage,
1 x 1 x 3 mm FLAIR for half of them) the mean error over the brain of session -> session
mappings through the subject space is 0.022 mm (worst pair 0.027 mm), of FLAIR -> T1
0.025 mm (worst 0.076 mm); preprocess x 3 + register cost 22-28 CPU s per subject on one
thread, peak memory 0.74 GB.

References
----------
Mattes D et al. (2003) PET-CT image registration in the chest using free-form deformations.
IEEE Trans Med Imaging 22:120-128.
Reuter M, Rosas HD, Fischl B (2010) Highly accurate inverse consistent registration: a robust
approach. NeuroImage 53:1181-1196.
Reuter M, Schmansky NJ, Rosas HD, Fischl B (2012) Within-subject template estimation for
unbiased longitudinal image analysis. NeuroImage 61:1402-1418.
Moakher M (2002) Means and averaging in the group of rotations. SIAM J Matrix Anal Appl
24:1-16.
Commowick O et al. (2021) MSSEG-2 challenge proceedings: multiple sclerosis new lesions
segmentation challenge using a data management and processing infrastructure.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from pipeline import io
from pipeline.errors import InputError, RegistrationError
from pipeline.outcome import add_sources_argument, run_step
from pipeline.provenance import write_sidecars
from pipeline.params import RegistrationParams
from pipeline.paths import bids_path

#: RAS <-> LPS: negate x and y (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0])

_INITIALISATIONS = {
    "identity": None,
    "mask_centroid": None,
    "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
    "moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
}

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


# --------------------------------------------------------------------------------------------
# nibabel (RAS affine) <-> SimpleITK (LPS origin/spacing/direction)
# --------------------------------------------------------------------------------------------

def nifti_to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image with the same voxels and world geometry as a NIfTI array.

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
        Voxel values indexed like nibabel (``data[i, j, k]``). Booleans become uint8.
    affine : ndarray of shape (4, 4)
        Voxel index -> world RAS mm. Columns must be orthogonal (no shear): ITK images carry
        spacing and an orthonormal direction only.

    Returns
    -------
    sitk.Image
        Size (I, J, K), spacing = voxel sizes in mm, origin and direction in LPS.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"image must be 3-D, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    matrix_lps = _FLIP @ np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix_lps, axis=0)
    if not np.all(spacing > 0) or not np.all(np.isfinite(matrix_lps)):
        raise InputError(f"affine has a zero or non-finite voxel axis: {affine.tolist()}")
    direction = matrix_lps / spacing
    u, _, vt = np.linalg.svd(direction)
    orthonormal = u @ vt
    if np.abs(direction - orthonormal).max() > 1e-3:
        raise InputError("affine has shear (voxel axes not orthogonal), which ITK images cannot "
                         f"represent: {np.asarray(affine).tolist()}; reslice the image first")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in _FLIP @ np.asarray(affine, dtype=float)[:3, 3]])
    image.SetDirection([float(d) for d in orthonormal.ravel()])
    return image


def sitk_to_nifti(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and RAS affine of a SimpleITK image (inverse of :func:`nifti_to_sitk`).

    Returns
    -------
    data : ndarray of shape (I, J, K)
        ``data[i, j, k]`` is the voxel at ITK index (i, j, k).
    affine : ndarray of shape (4, 4)
        Voxel index -> world RAS mm.
    """
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _FLIP @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _FLIP @ np.asarray(image.GetOrigin(), dtype=float)
    return data, affine


# --------------------------------------------------------------------------------------------
# Rigid transforms as 4x4 matrices (LPS, point maps fixed -> moving)
# --------------------------------------------------------------------------------------------

def rigid_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 homogeneous matrix (LPS mm) of a linear ITK transform (Euler3D, Versor, Affine)."""
    tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(tx, sitk.CompositeTransform):
        out = np.eye(4)
        # A composite applies its last transform first: T(x) = T_0(T_1(...T_n(x))).
        for k in range(tx.GetNumberOfTransforms()):
            out = out @ rigid_to_matrix(tx.GetNthTransform(k))
        return out
    matrix = np.asarray(tx.GetMatrix(), dtype=float).reshape(3, 3)
    center = np.asarray(tx.GetCenter(), dtype=float)
    translation = np.asarray(tx.GetTranslation(), dtype=float)
    out = np.eye(4)
    out[:3, :3] = matrix
    out[:3, 3] = center + translation - matrix @ center
    return out


def matrix_to_rigid(matrix: np.ndarray, center_lps: np.ndarray | None = None
                    ) -> sitk.Euler3DTransform:
    """Euler3DTransform of a 4x4 rigid matrix (LPS), rotating about ``center_lps``."""
    matrix = np.asarray(matrix, dtype=float)
    center = np.zeros(3) if center_lps is None else np.asarray(center_lps, dtype=float)
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(c) for c in center])
    tx.SetMatrix([float(m) for m in _project_to_so3(matrix[:3, :3]).ravel()], 1e-6)
    translation = matrix[:3, :3] @ center + matrix[:3, 3] - center
    tx.SetTranslation([float(t) for t in translation])
    return tx


def _project_to_so3(matrix: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (Frobenius norm) by SVD."""
    u, _, vt = np.linalg.svd(matrix)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Rotation angle (degrees) of the 3x3 rotation part of a rigid matrix."""
    cos = (np.trace(np.asarray(matrix)[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def mean_rigid(matrices: list[np.ndarray], center_lps: np.ndarray) -> np.ndarray:
    """Mean of rigid transforms (4x4, LPS): chordal mean rotation, mean displacement of a centre.

    Parameters
    ----------
    matrices : list of ndarray of shape (4, 4)
    center_lps : ndarray of shape (3,)
        Point (mm, LPS) about which rotations are averaged, e.g. the brain centre. Averaging
        the displacement of a point inside the brain keeps the mean translation meaningful
        whatever the scanner's world origin.

    Returns
    -------
    ndarray of shape (4, 4)
        The rigid transform whose rotation is the mean rotation matrix projected onto SO(3)
        (Moakher 2002) and which moves ``center_lps`` by the mean displacement.
    """
    center = np.asarray(center_lps, dtype=float)
    rotation = _project_to_so3(np.mean([m[:3, :3] for m in matrices], axis=0))
    displacement = np.mean([m[:3, :3] @ center + m[:3, 3] - center for m in matrices], axis=0)
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = center + displacement - rotation @ center
    return out


def save_intensity_image(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write a float intensity image as int16 with scl_slope/inter (nibabel picks them), atomically.

    Quantisation is 1/65535 of the intensity range (~0.01 % of WM on a T1), far below MRI
    noise, and the file is half the size of float32 and twice as fast to gzip, which dominated
    the cost of this step. Readers see floats (``pipeline.io.load_nifti`` applies the scaling).
    Header as :func:`pipeline.io.save_nifti` writes it (sform and qform code 1, mm units).
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(np.int16)
    with io.atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def write_transform(path: str | Path, transform: sitk.Transform) -> Path:
    """Write an ITK transform as text (``.txt``) atomically."""
    path = Path(path)
    if not path.name.endswith(".txt"):
        raise InputError(f"{path}: transform files must end in .txt (ITK text format)")
    with io.atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))
    return path


def read_transform(path: str | Path) -> sitk.Transform:
    """Read an ITK transform file, raising InputError naming the file when it cannot."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: transform file not found; run the preprocess/register step "
                         "that writes it")
    try:
        return sitk.ReadTransform(str(path)).Downcast()
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable ITK transform ({exc}); re-run the step that "
                         "wrote it") from exc


# --------------------------------------------------------------------------------------------
# Pairwise rigid registration
# --------------------------------------------------------------------------------------------

@dataclass
class RigidResult:
    """Outcome of one rigid registration (fixed <- moving).

    ``transform`` maps fixed physical points (LPS mm) to moving points: resample the moving
    image with it to bring it onto the fixed grid. ``similarity`` is the NCC (same contrast)
    or normalised mutual information (multimodal) inside the fixed brain mask after
    registration; ``metric_value`` the final Mattes MI metric (negative: lower is better).
    """

    transform: sitk.Euler3DTransform
    metric_value: float
    similarity: float
    similarity_name: str
    rotation_deg: float
    translation_mm: float
    converged: bool
    stop_condition: str
    initialisation: str
    iterations: int

    @property
    def matrix(self) -> np.ndarray:
        """4x4 LPS matrix of :attr:`transform`."""
        return rigid_to_matrix(self.transform)


def set_threads(threads: int) -> None:
    """Set SimpleITK's global thread count (1 gives bit-reproducible transforms)."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def _mask_centroid_lps(mask: sitk.Image | None, image: sitk.Image) -> np.ndarray:
    """Centroid (LPS mm) of a binary mask, or the image centre without a mask."""
    if mask is not None:
        idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
        if len(idx):
            mean_ijk = idx.mean(axis=0)[::-1]
            return np.asarray(mask.TransformContinuousIndexToPhysicalPoint(
                [float(v) for v in mean_ijk]))
    size = np.asarray(image.GetSize(), dtype=float)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in (size - 1) / 2]))


def dilate_mask(mask: sitk.Image, radius_mm: float) -> sitk.Image:
    """Binary mask grown by ``radius_mm`` (Euclidean, in mm; uint8)."""
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if radius_mm <= 0:
        return mask
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.Cast(distance <= radius_mm, sitk.sitkUInt8)


def metric_region(fixed: sitk.Image, fixed_mask: sitk.Image, dilation_mm: float
                  ) -> tuple[sitk.Image, sitk.Image]:
    """The fixed image cropped to the dilated mask, and that mask on a ~2 mm grid.

    The metric mask only selects sample points, so a half-resolution mask (any voxel of the
    2 x 2 x 2 block inside, then dilated) is as good and 8 x cheaper to grow; cropping the
    fixed image spares the optimiser's per-level smoothing of empty field of view.
    """
    factors = [max(1, min(n, int(round(2.0 / sp))))
               for sp, n in zip(fixed_mask.GetSpacing(), fixed_mask.GetSize())]
    small = sitk.BinShrink(sitk.Cast(fixed_mask > 0, sitk.sitkFloat32), factors) > 0
    small = dilate_mask(small, dilation_mm)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(small)
    if not stats.HasLabel(1):
        raise InputError("the fixed brain mask is empty; re-run preprocess for that session")
    box = stats.GetBoundingBox(1)
    lo = [max(0, b * f - 2) for b, f in zip(box[:3], factors)]
    hi = [min(n, (b + w) * f + 2) for b, w, f, n in zip(box[:3], box[3:], factors,
                                                        fixed.GetSize())]
    cropped = sitk.RegionOfInterest(fixed, [h - low for low, h in zip(lo, hi)], lo)
    return cropped, small


def _pyramid_level(image: sitk.Image, spacing_mm: float, sigma_mm: float) -> sitk.Image:
    """``image`` block-averaged to about ``spacing_mm`` (axes already coarser stay), smoothed."""
    factors = [max(1, min(n, int(round(spacing_mm / sp))))
               for sp, n in zip(image.GetSpacing(), image.GetSize())]
    out = sitk.BinShrink(image, factors) if max(factors) > 1 else image
    if sigma_mm > 0:
        out = sitk.SmoothingRecursiveGaussian(out, float(sigma_mm))
    return out


def _run_registration(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams,
                      fixed_mask: sitk.Image | None, initial: sitk.Euler3DTransform
                      ) -> tuple[sitk.Euler3DTransform, float, str, int, bool]:
    """Coarse-to-fine Mattes-MI rigid registration, one optimiser run per pyramid level.

    Each level starts from the previous result with a first step of ``max_step_mm`` (a
    smaller first step at fine levels stalls in narrow valleys of the metric) and stops below a
    minimum step scaled by its shrink factor (``min_step_mm`` at the finest level): coarse
    levels need no sub-voxel precision. Each level runs on images block-averaged to its voxel
    size and smoothed there (:func:`_pyramid_level`).

    Returns (transform, final metric value, last stop condition, total iterations, converged),
    converged meaning that no level stopped at ``max_iterations``.
    """
    # Volume (mm^3) inside the mask (the mask may be on a coarser grid than the image).
    mask_mm3 = (float(np.count_nonzero(sitk.GetArrayViewFromImage(fixed_mask)))
                * float(np.prod(fixed_mask.GetSpacing())) if fixed_mask is not None
                else float(np.prod(fixed.GetSize())) * float(np.prod(fixed.GetSpacing())))
    finest = min(params.shrink_factors)
    base_mm = min(fixed.GetSpacing())
    transform = sitk.Euler3DTransform(initial)
    metric, stop, iterations, converged = float("nan"), "", 0, True
    for level, (shrink, sigma) in enumerate(zip(params.shrink_factors,
                                                params.smoothing_sigmas_mm)):
        # Own pyramid: both images block-averaged to ~shrink x the fixed voxel, then smoothed
        # there. ITK would smooth (and interpolate in) the full-resolution moving image at every
        # level, which costs more than the optimisation itself on a 1 mm head.
        fixed_l = _pyramid_level(fixed, shrink * base_mm, sigma)
        moving_l = _pyramid_level(moving, shrink * base_mm, sigma)
        n_voxels = mask_mm3 / float(np.prod(fixed_l.GetSpacing()))
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.mi_histogram_bins)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # sampling_fraction of the level's voxels in the mask, but at least min_metric_samples
        # (a coarse level with a few hundred samples has a noisy MI that can pull the
        # optimiser off a correct start). ITK draws the samples once, from the seed.
        fraction = min(1.0, max(params.sampling_fraction,
                                params.min_metric_samples / max(n_voxels, 1.0)))
        reg.SetMetricSamplingPercentage(float(fraction), params.seed + level)
        if fixed_mask is not None:
            reg.SetMetricFixedMask(fixed_mask)
        # Image gradients at the sample points only, not as whole-image filters per level.
        reg.SetMetricUseFixedImageGradientFilter(False)
        reg.SetMetricUseMovingImageGradientFilter(False)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=params.max_step_mm,
            minStep=params.min_step_mm * shrink / finest,
            numberOfIterations=params.max_iterations, relaxationFactor=params.step_relaxation,
            gradientMagnitudeTolerance=1e-6)
        # Scales from physical shift: one optimiser step moves voxels by about the same
        # distance in mm whether it rotates or translates.
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(transform, inPlace=False)
        out = reg.Execute(fixed_l, moving_l)
        if out.GetName() == "CompositeTransform":
            out = sitk.CompositeTransform(out).GetNthTransform(0)
        transform = sitk.Euler3DTransform(out.Downcast())
        metric = float(reg.GetMetricValue())
        stop = reg.GetOptimizerStopConditionDescription()
        iterations += int(reg.GetOptimizerIteration())
        converged &= "Maximum number of iterations" not in stop
    return transform, metric, stop, iterations, converged


def paired_samples(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                         fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None,
                         shrink: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Fixed and resampled moving intensities at fixed-grid voxels inside both masks.

    Computed on the fixed grid shrunk by ``shrink`` (similarity is a plausibility check, not the
    optimised metric, so half resolution suffices and keeps it cheap).
    """
    if shrink > 1:
        factors = [max(1, min(shrink, s)) for s in fixed.GetSize()]
        ref = sitk.Shrink(fixed, factors)
    else:
        ref = fixed
    # GetArrayFromImage copies: a view of a temporary image would outlive its buffer.
    fixed_values = sitk.GetArrayFromImage(
        sitk.Resample(fixed, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    moved = sitk.GetArrayFromImage(
        sitk.Resample(moving, ref, transform, sitk.sitkLinear, np.nan, sitk.sitkFloat32))
    keep = np.isfinite(moved)
    if fixed_mask is not None:
        keep &= sitk.GetArrayFromImage(sitk.Resample(
            fixed_mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
    if moving_mask is not None:
        keep &= sitk.GetArrayFromImage(sitk.Resample(
            moving_mask, ref, transform, sitk.sitkNearestNeighbor, 0)) > 0
    return fixed_values[keep], moved[keep]


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long intensity samples (NaN if either is constant)."""
    if len(a) < 2:
        # No overlap left (e.g. a registration that moved the image away): not plausible.
        return float("nan")
    a = np.asarray(a, dtype=float) - np.mean(a)
    b = np.asarray(b, dtype=float) - np.mean(b)
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Studholme's NMI = (H(a) + H(b)) / H(a, b) of two samples: 1 = independent, 2 = identical.

    Intensities are binned between their 0.5 and 99.5 percentiles so outliers do not squeeze
    the histogram.
    """
    if len(a) < 2 * bins:
        return float("nan")

    def edges(x: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(x, [0.5, 99.5])
        return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)

    joint, _, _ = np.histogram2d(np.clip(a, *np.percentile(a, [0.5, 99.5])),
                                 np.clip(b, *np.percentile(b, [0.5, 99.5])),
                                 bins=(edges(a), edges(b)))
    p = joint / joint.sum()

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-np.sum(q * np.log(q)))

    return (entropy(p.sum(axis=1)) + entropy(p.sum(axis=0))) / entropy(p.ravel())


def register_rigid_images(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams,
                          fixed_mask: sitk.Image | None = None,
                          moving_mask: sitk.Image | None = None, multimodal: bool = False,
                          pair: str = "moving -> fixed",
                          initialisations: tuple[str, ...] = ("mask_centroid", "identity",
                                                              "moments")
                          ) -> RigidResult:
    """Rigidly register ``moving`` to ``fixed`` (SimpleITK images), refusing implausible fits.

    Tries the initialisations in order (by default brain-mask centres aligned, then the
    identity, then the image moments) until one gives a plausible result (similarity at least
    the threshold, rotation at most ``params.max_rotation_deg``, optimiser converged).

    Parameters
    ----------
    fixed, moving : sitk.Image
        Scalar images (any grid, orientation and voxel size).
    params : RegistrationParams
    fixed_mask : sitk.Image, optional
        Binary brain mask on the fixed grid. The metric is restricted to it dilated by
        ``params.metric_mask_dilation_mm`` (the brain edge against CSF is the strongest rigid
        feature; scalp, neck and jaw move between sessions), the post-registration
        similarity to the mask itself.
    moving_mask : sitk.Image, optional
        Binary mask on the moving grid, used only for the post-registration similarity.
    multimodal : bool
        False: similarity is the NCC of intensities (same contrast) against
        ``params.min_post_registration_ncc``; True: normalised mutual information against
        ``params.min_post_registration_nmi`` (e.g. FLAIR to T1).
    pair : str
        Names of the two images for messages, e.g. ``"ses-m06 T1w -> ses-baseline T1w"``.
    initialisations : tuple of {"mask_centroid", "identity", "geometry", "moments"}
        Starts to try in order: ``mask_centroid`` (brain-mask centres aligned; needs both
        masks, else skipped), ``identity`` (scanner coordinates already agree, e.g. FLAIR and
        T1 of one session), ``geometry`` (image centres aligned) or ``moments`` (intensity
        centres of mass and principal axes aligned).

    Raises
    ------
    RegistrationError
        When no initialisation gives a plausible result.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    center = _mask_centroid_lps(fixed_mask, fixed)
    threshold = params.min_post_registration_nmi if multimodal else params.min_post_registration_ncc
    name = "nmi" if multimodal else "ncc"
    metric_fixed, metric_mask = fixed, None
    if fixed_mask is not None:
        metric_fixed, metric_mask = metric_region(fixed, fixed_mask,
                                                  params.metric_mask_dilation_mm)
    unknown = sorted(set(initialisations) - set(_INITIALISATIONS))
    if unknown or not initialisations:
        raise InputError(f"initialisations {list(initialisations)} must be some of "
                         f"{list(_INITIALISATIONS)}")
    results: list[tuple[RigidResult, list[str]]] = []
    for init in initialisations:
        if init == "identity":
            start = sitk.Euler3DTransform()
        elif init == "mask_centroid":
            if fixed_mask is None or moving_mask is None:
                continue
            # Brain centres aligned: far closer than image centres when fields of view are
            # placed differently (oblique or shifted grids).
            start = sitk.Euler3DTransform()
            start.SetTranslation([float(v) for v in _mask_centroid_lps(moving_mask, moving)
                                  - center])
        else:
            try:
                start = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
                    fixed, moving, sitk.Euler3DTransform(), _INITIALISATIONS[init]))
            except RuntimeError:
                # Moments are undefined for an all-zero image; the other starts still ran.
                continue
        # Rotate about the brain centre so translation and rotation decouple in the optimiser.
        start_matrix = rigid_to_matrix(start)
        start = matrix_to_rigid(start_matrix, center)
        transform, metric, stop, iterations, converged = _run_registration(
            metric_fixed, moving, params, metric_mask, start)
        f_vals, m_vals = paired_samples(fixed, moving, transform, fixed_mask, moving_mask)
        similarity = (normalised_mutual_information(f_vals, m_vals, params.mi_histogram_bins)
                      if multimodal else normalised_cross_correlation(f_vals, m_vals))
        matrix = rigid_to_matrix(transform)
        rotation = rotation_angle_deg(matrix)
        translation = float(np.linalg.norm(matrix[:3, :3] @ center + matrix[:3, 3] - center))
        problems = []
        if not np.isfinite(similarity) or similarity < threshold:
            problems.append(f"post-registration {name} {similarity:.3f} < {threshold}")
        if rotation > params.max_rotation_deg:
            problems.append(f"rotation {rotation:.1f} deg > {params.max_rotation_deg} deg")
        if not converged:
            problems.append(f"optimiser did not converge ({stop})")
        result = RigidResult(transform, metric, similarity, name, rotation, translation,
                             converged, stop, init, iterations)
        results.append((result, problems))
        if not problems:
            break
    plausible = [r for r, p in results if not p]
    if plausible:
        return max(plausible, key=lambda r: r.similarity)
    details = "; ".join(f"{r.initialisation} start: {', '.join(p)}" for r, p in results)
    error = RegistrationError(
        f"registration {pair} refused: {details}. Check that both scans show the same head "
        "(subject/session labels, contrast, field of view) and that the head position is not "
        "extreme; thresholds are RegistrationParams.min_post_registration_"
        f"{name}={threshold} and max_rotation_deg={params.max_rotation_deg}")
    # The refused attempts, best similarity first, for QC tables.
    error.attempts = sorted((r for r, _ in results), key=lambda r: -np.nan_to_num(r.similarity,
                                                                                  nan=-np.inf))
    raise error


def register_rigid(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray,
                   moving_affine: np.ndarray, params: RegistrationParams | None = None,
                   fixed_mask: np.ndarray | None = None, moving_mask: np.ndarray | None = None,
                   multimodal: bool = False, pair: str = "moving -> fixed") -> RigidResult:
    """Array interface of :func:`register_rigid_images`.

    Parameters
    ----------
    fixed : ndarray of shape (I, J, K)
    fixed_affine : ndarray of shape (4, 4), voxel -> RAS mm
    moving : ndarray of shape (I2, J2, K2)
    moving_affine : ndarray of shape (4, 4)
    fixed_mask : bool ndarray of shape (I, J, K), optional
    moving_mask : bool ndarray of shape (I2, J2, K2), optional

    Returns
    -------
    RigidResult
        ``transform`` maps fixed LPS points to moving LPS points.
    """
    params = params or RegistrationParams()
    f_img = nifti_to_sitk(np.asarray(fixed, dtype=np.float32), fixed_affine)
    m_img = nifti_to_sitk(np.asarray(moving, dtype=np.float32), moving_affine)
    f_mask = None if fixed_mask is None else nifti_to_sitk(
        np.asarray(fixed_mask, dtype=np.uint8), fixed_affine)
    m_mask = None if moving_mask is None else nifti_to_sitk(
        np.asarray(moving_mask, dtype=np.uint8), moving_affine)
    return register_rigid_images(f_img, m_img, params, f_mask, m_mask, multimodal, pair)


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...],
              affine_b: np.ndarray, tol_mm: float = 1e-3) -> bool:
    """True when two images share a voxel grid (same shape, affines within ``tol_mm``)."""
    return (tuple(shape_a[:3]) == tuple(shape_b[:3])
            and np.allclose(affine_a, affine_b, atol=tol_mm, rtol=0))


# --------------------------------------------------------------------------------------------
# Subject space
# --------------------------------------------------------------------------------------------

@dataclass
class SubjectSpace:
    """The unbiased subject space of one subject.

    ``to_session[i]`` is the 4x4 LPS matrix mapping subject-space points to session i's T1
    points (the resampling transform). ``reference`` is an empty image defining the subject
    grid (isotropic, RAS-aligned). ``pairs`` holds one RigidResult per registered pair
    (session i -> reference session), ``pair_names`` their (moving, fixed) labels.
    """

    to_session: list[np.ndarray]
    reference: sitk.Image
    center_lps: np.ndarray
    pairs: list[RigidResult]
    pair_names: list[tuple[str, str]]


def subject_grid(masks: list[sitk.Image], to_session: list[np.ndarray], voxel_mm: float,
                 margin_mm: float) -> sitk.Image:
    """Isotropic RAS-aligned grid covering the union of brain masks (in subject space) + margin.

    Parameters
    ----------
    masks : list of sitk.Image
        Binary brain masks on the sessions' native T1 grids.
    to_session : list of ndarray of shape (4, 4)
        Subject -> session LPS matrices.
    voxel_mm : float
        Grid spacing (mm).
    margin_mm : float
        Added on every side of the masks' bounding box.

    Returns
    -------
    sitk.Image
        uint8 zeros on the grid; origin on a multiple of ``voxel_mm``.
    """
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for mask, matrix in zip(masks, to_session):
        idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1].astype(float)
        if not len(idx):
            raise InputError("a brain mask is empty; re-run preprocess for that session")
        direction = np.asarray(mask.GetDirection()).reshape(3, 3)
        points = (idx * np.asarray(mask.GetSpacing())) @ direction.T + np.asarray(mask.GetOrigin())
        # Session points -> subject points through the inverse of the subject -> session map.
        inverse = np.linalg.inv(matrix)
        subject_points = points @ inverse[:3, :3].T + inverse[:3, 3]
        ras = subject_points @ _FLIP.T
        lo = np.minimum(lo, ras.min(axis=0))
        hi = np.maximum(hi, ras.max(axis=0))
    lo_ras = np.floor((lo - margin_mm) / voxel_mm) * voxel_mm
    hi_ras = np.ceil((hi + margin_mm) / voxel_mm) * voxel_mm
    size = [int(round(n)) + 1 for n in (hi_ras - lo_ras) / voxel_mm]
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing([float(voxel_mm)] * 3)
    # RAS-aligned axes: index i increases towards R, j towards A, k towards S.
    reference.SetDirection([float(d) for d in _FLIP.ravel()])
    reference.SetOrigin([float(o) for o in _FLIP @ lo_ras])
    return reference


def build_subject_space(t1_images: list[sitk.Image], masks: list[sitk.Image],
                        sessions: list[str], params: RegistrationParams) -> SubjectSpace:
    """Register every session's T1 to the first and define the mean (unbiased) subject space.

    Parameters
    ----------
    t1_images : list of sitk.Image
        Bias-corrected T1 of each session (native grids).
    masks : list of sitk.Image
        Brain mask of each session on its T1 grid.
    sessions : list of str
        Session labels, for QC rows and messages.
    params : RegistrationParams

    Returns
    -------
    SubjectSpace

    Raises
    ------
    RegistrationError
        When a session cannot be registered plausibly.
    """
    if len(t1_images) != len(masks) or len(t1_images) != len(sessions):
        raise InputError("t1_images, masks and sessions must have the same length")
    ref_img, ref_mask = t1_images[0], masks[0]
    center = _mask_centroid_lps(ref_mask, ref_img)
    to_reference = [np.eye(4)]
    pairs: list[RigidResult] = []
    names: list[tuple[str, str]] = []
    accepted: list[bool] = []
    refused: list[str] = []
    for k in range(1, len(t1_images)):
        try:
            result = register_rigid_images(
                ref_img, t1_images[k], params, fixed_mask=ref_mask, moving_mask=masks[k],
                pair=f"ses-{sessions[k]} T1w -> ses-{sessions[0]} T1w")
        except RegistrationError as exc:
            # Register the remaining sessions too, so the QC table shows every pair.
            refused.append(str(exc))
            attempts = getattr(exc, "attempts", [])
            if attempts:
                pairs.append(attempts[0])
                names.append((sessions[k], sessions[0]))
                accepted.append(False)
            continue
        to_reference.append(result.matrix)
        pairs.append(result)
        names.append((sessions[k], sessions[0]))
        accepted.append(True)
    if refused:
        error = RegistrationError(" | ".join(refused))
        error.table = registration_table(pairs, names, accepted)
        raise error
    mean = mean_rigid(to_reference, center)
    inverse_mean = np.linalg.inv(mean)
    to_session = [m @ inverse_mean for m in to_reference]
    t1_voxel_mm = max(max(img.GetSpacing()) for img in t1_images)
    voxel_mm = max(params.subject_voxel_mm, t1_voxel_mm)
    reference = subject_grid(masks, to_session, voxel_mm, params.subject_margin_mm)
    # The reference brain centre in subject coordinates: S_0^-1(c) = A(c).
    subject_center = mean[:3, :3] @ center + mean[:3, 3]
    return SubjectSpace(to_session, reference, subject_center, pairs, names)


def resample_image(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
                   interpolation: str = "linear") -> sitk.Image:
    """Resample ``image`` onto ``reference`` through a resampling transform (float32, 0 outside)."""
    if interpolation not in _INTERPOLATORS:
        raise InputError(f"interpolation={interpolation!r} must be one of "
                         f"{sorted(_INTERPOLATORS)}")
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, transform,
                         _INTERPOLATORS[interpolation], 0.0, sitk.sitkFloat32)


def resample_mask(mask: sitk.Image, reference: sitk.Image, transform: sitk.Transform
                  ) -> sitk.Image:
    """Resample a binary mask by linear interpolation thresholded at 0.5 (uint8)."""
    frac = resample_image(mask, reference, transform, "linear")
    return sitk.Cast(frac >= 0.5, sitk.sitkUInt8)


def t1_at_flair_resolution(t1: sitk.Image, flair: sitk.Image, flair_to_t1: sitk.Transform,
                           interpolation: str = "linear") -> sitk.Image:
    """The T1 as the FLAIR's acquisition grid would have recorded it (on the FLAIR grid).

    A FLAIR voxel integrates signal over its whole extent (e.g. a 3 mm slice), while the T1 is
    sampled at 1 mm, so at a tissue border the two record different partial-volume mixtures and
    a (T1, FLAIR) pair no longer lies on the tissues' mixing lines. Matching the point-spread
    functions restores that: T1 is resampled onto the FLAIR grid subdivided into T1-sized
    sub-voxels, and each FLAIR voxel's sub-voxels are averaged (a box profile the size of the
    voxel; slices are assumed contiguous, slice thickness = spacing). Resampled into subject
    space through the same transforms as the FLAIR, it has passed through the same
    interpolations too. When FLAIR voxels are no larger than T1 voxels it is the T1 resampled
    onto the FLAIR grid (identical to the T1 when the two share a grid).

    Parameters
    ----------
    t1, flair : sitk.Image, the session's T1 and FLAIR (native grids)
    flair_to_t1 : the session's ``from-FLAIR_to-T1w`` resampling transform (T1 points ->
        FLAIR points, as used to resample FLAIR onto T1)
    interpolation : {"linear", "bspline"}

    Returns
    -------
    sitk.Image (float32) on the FLAIR grid.
    """
    t1_spacing = min(t1.GetSpacing())
    spacing = np.array(flair.GetSpacing(), dtype=np.float64)
    factors = np.maximum(1, np.rint(spacing / t1_spacing).astype(int))
    to_t1 = flair_to_t1.GetInverse()  # FLAIR points -> T1 points
    if np.all(factors == 1):
        return resample_image(t1, flair, to_t1, interpolation)
    fine_spacing = spacing / factors
    direction = np.array(flair.GetDirection(), dtype=np.float64).reshape(3, 3)
    # sub-voxel centres of FLAIR voxel 0 are offset by -(n - 1) / 2 fine steps per axis
    origin = (np.array(flair.GetOrigin(), dtype=np.float64)
              + direction @ (-(factors - 1) / 2.0 * fine_spacing))
    fine = sitk.Image([int(s) for s in np.array(flair.GetSize()) * factors], sitk.sitkUInt8)
    fine.SetSpacing([float(s) for s in fine_spacing])
    fine.SetOrigin([float(o) for o in origin])
    fine.SetDirection(flair.GetDirection())
    arr = sitk.GetArrayFromImage(resample_image(t1, fine, to_t1, interpolation))  # a copy
    ni, nj, nk = (int(f) for f in factors)
    size_i, size_j, size_k = flair.GetSize()
    # numpy order is (k, j, i): average each n_k x n_j x n_i block
    blocks = arr.astype(np.float64).reshape(size_k, nk, size_j, nj, size_i, ni)
    out = sitk.GetImageFromArray(blocks.mean(axis=(1, 3, 5)).astype(np.float32))
    out.CopyInformation(flair)
    return out


def compose(transforms: list[sitk.Transform]) -> sitk.Transform:
    """Compose resampling transforms listed moving -> ... -> reference.

    For ``[FLAIR->T1, T1->subject]`` the result maps a subject point first into T1, then into
    FLAIR, which is what resampling FLAIR into subject space needs (ITK composites apply their
    last transform first, so the list is used as given).
    """
    if len(transforms) == 1:
        return transforms[0]
    return sitk.CompositeTransform(list(transforms))


def resample_to_subject(moving_path: str | Path, template_path: str | Path,
                        transform_paths: list[str | Path], interpolation: str = "linear"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Resample a native-space image into the subject grid of ``template_path``.

    Parameters
    ----------
    moving_path : path
        NIfTI image in a session's native space (e.g. a lesion mask on the session's T1 grid).
    template_path : path
        Any image on the subject grid (e.g. the ``space-subject_desc-template_T1w`` file).
    transform_paths : list of path
        ITK transform files composed in order moving -> ... -> subject, e.g.
        ``[T1->subject]`` for a T1-space image or ``[FLAIR->T1, T1->subject]`` for a
        FLAIR-space image.
    interpolation : {"linear", "nearest", "bspline"}

    Returns
    -------
    data : ndarray of shape (I, J, K), float32
        On the subject grid; 0 outside the moving image. Threshold at 0.5 for masks.
    affine : ndarray of shape (4, 4)
        Subject grid voxel -> RAS mm.
    """
    if not transform_paths:
        raise InputError("transform_paths is empty: give at least the T1->subject transform")
    data, affine, _ = io.load_nifti(moving_path)
    t_data, t_affine, _ = io.load_nifti(template_path)
    reference = nifti_to_sitk(np.zeros(t_data.shape[:3], dtype=np.uint8), t_affine)
    moving = nifti_to_sitk(np.asarray(np.squeeze(data), dtype=np.float32), affine)
    transform = compose([read_transform(p) for p in transform_paths])
    out, out_affine = sitk_to_nifti(resample_image(moving, reference, transform, interpolation))
    return np.ascontiguousarray(out), out_affine


def map_points_subject_to_session(points_ras_mm: np.ndarray, transform_path: str | Path
                                  ) -> np.ndarray:
    """Map subject-space world points to the session's T1 scanner-world points.

    Parameters
    ----------
    points_ras_mm : ndarray of shape (N, 3) or (3,)
        Points in subject space, world RAS mm (e.g. lesion centroids from the subject grid
        affine).
    transform_path : path
        The session's ``from-T1w_to-subject`` transform file (maps subject LPS points to session
        T1 LPS points).

    Returns
    -------
    ndarray of shape (N, 3) (or (3,) for one point)
        The same anatomical points in the world RAS mm frame of the session's raw T1w.
    """
    points = np.asarray(points_ras_mm, dtype=float)
    single = points.ndim == 1
    points = np.atleast_2d(points)
    if points.shape[1] != 3:
        raise InputError(f"points_ras_mm must have shape (N, 3), got {points.shape}")
    transform = read_transform(transform_path)
    lps = points @ _FLIP.T
    mapped = np.array([transform.TransformPoint([float(v) for v in p]) for p in lps])
    out = mapped.reshape(-1, 3) @ _FLIP.T
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# Subject-level files
# --------------------------------------------------------------------------------------------

def _brain_median(image: sitk.Image, mask: sitk.Image) -> float:
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) > 0]
    return float(np.median(values)) if values.size else float("nan")


def register_subject_files(out_dir: str | Path, subject: str, sessions: list[str],
                           params: RegistrationParams | None = None) -> dict:
    """Register all sessions of a subject into its unbiased space and write every product.

    Reads per session (from ``out_dir``): N4 T1, N4 FLAIR, native brain mask, FLAIR->T1
    transform. Writes per session: T1->subject transform, space-subject desc-preproc T1w and
    FLAIR, desc-flairres T1w (the T1 at the FLAIR's resolution), desc-brain mask; per subject: space-subject desc-template T1w and the
    desc-registration QC TSV.

    Returns
    -------
    dict
        Written paths and seconds per step.
    """
    params = params or RegistrationParams()
    if len(sessions) < 1 or len(set(sessions)) != len(sessions):
        raise InputError(f"sessions must be distinct labels, got {sessions}")
    timer = time.perf_counter()
    seconds: dict[str, float] = {}
    t1s, flairs, masks, flair_tx, t1_affines = [], [], [], [], []
    for ses in sessions:
        t1_data, t1_aff, _ = io.load_nifti(bids_path(out_dir, subject, ses, desc="n4",
                                                     suffix="T1w"))
        fl_data, fl_aff, _ = io.load_nifti(bids_path(out_dir, subject, ses, desc="n4",
                                                     suffix="FLAIR"))
        mask_path = bids_path(out_dir, subject, ses, desc="brain", suffix="mask")
        m_data, m_aff, _ = io.load_nifti(mask_path)
        if not same_grid(m_data.shape, m_aff, t1_data.shape, t1_aff):
            raise InputError(f"{mask_path}: brain mask is not on the N4 T1 grid; re-run "
                             f"preprocess for ses-{ses}")
        t1s.append(nifti_to_sitk(np.asarray(t1_data, dtype=np.float32), t1_aff))
        flairs.append(nifti_to_sitk(np.asarray(fl_data, dtype=np.float32), fl_aff))
        masks.append(nifti_to_sitk(np.asarray(m_data > 0, dtype=np.uint8), t1_aff))
        flair_tx.append(read_transform(bids_path(out_dir, subject, ses, from_="FLAIR", to="T1w",
                                                 mode="image", suffix="xfm", ext=".txt")))
        t1_affines.append(t1_aff)
    seconds["read"] = time.perf_counter() - timer

    timer = time.perf_counter()
    qc_path = bids_path(out_dir, subject, desc="registration", suffix="qc", ext=".tsv")
    try:
        space = build_subject_space(t1s, masks, sessions, params)
    except RegistrationError as exc:
        # Keep the evidence: the QC table with the refused pair(s) marked accepted = no.
        if getattr(exc, "table", None) is not None:
            io.write_tsv(qc_path, exc.table)
        raise
    seconds["register"] = time.perf_counter() - timer

    timer = time.perf_counter()
    written: dict[str, object] = {"sessions": {}}
    subject_t1s, subject_masks = [], []
    for k, ses in enumerate(sessions):
        to_session = matrix_to_rigid(space.to_session[k], space.center_lps)
        xfm_path = write_transform(bids_path(out_dir, subject, ses, from_="T1w", to="subject",
                                             mode="image", suffix="xfm", ext=".txt"),
                                   to_session)
        t1_sub = resample_image(t1s[k], space.reference, to_session, params.t1_interpolation)
        fl_sub = resample_image(flairs[k], space.reference, compose([flair_tx[k], to_session]),
                                params.t1_interpolation)
        # T1 with the FLAIR's resolution, brought along the FLAIR's own path (segmentation
        # compares the two images voxel by voxel)
        t1_fl = t1_at_flair_resolution(t1s[k], flairs[k], flair_tx[k], params.t1_interpolation)
        t1_fl_sub = resample_image(t1_fl, space.reference, compose([flair_tx[k], to_session]),
                                   params.t1_interpolation)
        mask_sub = resample_mask(masks[k], space.reference, to_session)
        paths = {"xfm": xfm_path}
        for key, img, desc, suffix in (("t1", t1_sub, "preproc", "T1w"),
                                       ("flair", fl_sub, "preproc", "FLAIR"),
                                       ("t1_flairres", t1_fl_sub, "flairres", "T1w")):
            data, affine = sitk_to_nifti(img)
            paths[key] = save_intensity_image(bids_path(out_dir, subject, ses, space="subject",
                                                        desc=desc, suffix=suffix), data, affine)
        data, affine = sitk_to_nifti(mask_sub)
        paths["mask"] = io.save_nifti(bids_path(out_dir, subject, ses, space="subject",
                                                desc="brain", suffix="mask"), data, affine,
                                      dtype=np.uint8)
        written["sessions"][ses] = paths
        subject_t1s.append(t1_sub)
        subject_masks.append(mask_sub)

    # Template: each session's T1 scaled to the mean of the brain medians (N4 leaves a
    # per-session global scale), then averaged, so no session dominates by brightness.
    medians = np.array([_brain_median(i, m) for i, m in zip(subject_t1s, subject_masks)])
    common = float(np.mean(medians))
    template = np.zeros(sitk.GetArrayViewFromImage(subject_t1s[0]).shape, dtype=np.float64)
    for img, med in zip(subject_t1s, medians):
        template += sitk.GetArrayViewFromImage(img) * (common / med)
    template /= len(subject_t1s)
    tmpl_img = sitk.GetImageFromArray(template.astype(np.float32))
    tmpl_img.CopyInformation(space.reference)
    data, affine = sitk_to_nifti(tmpl_img)
    written["template"] = save_intensity_image(bids_path(out_dir, subject, space="subject",
                                                         desc="template", suffix="T1w"),
                                               data, affine)
    seconds["resample_write"] = time.perf_counter() - timer

    table = registration_table(space.pairs, space.pair_names)
    written["qc"] = io.write_tsv(qc_path, table)
    written["seconds"] = seconds
    return written


def registration_table(pairs: list[RigidResult], names: list[tuple[str, str]],
                       accepted: list[bool] | None = None) -> pd.DataFrame:
    """One QC row per registered pair (moving, fixed): metric, similarity, motion, accepted.

    A refused pair (``accepted`` False) shows its best attempt; ``rotation_deg`` and
    ``translation_mm`` are the rigid motion of the brain centre, ``similarity_value`` the NCC
    of brain intensities after registration.
    """
    accepted = [True] * len(pairs) if accepted is None else accepted
    rows = []
    for (moving, fixed), r, ok in zip(names, pairs, accepted):
        rows.append({"moving": moving, "fixed": fixed, "metric": "mattes_mi",
                     "metric_value": r.metric_value, "similarity": r.similarity_name,
                     "similarity_value": r.similarity, "rotation_deg": r.rotation_deg,
                     "translation_mm": r.translation_mm, "initialisation": r.initialisation,
                     "iterations": r.iterations, "accepted": "yes" if ok else "no"})
    columns = ["moving", "fixed", "metric", "metric_value", "similarity", "similarity_value",
               "rotation_deg", "translation_mm", "initialisation", "iterations", "accepted"]
    return pd.DataFrame(rows, columns=columns)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline register --out OUT --subject S --sessions A B C [--params JSON]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline register",
        description="Register every session of a subject into one unbiased subject space.")
    parser.add_argument("--out", required=True, help="derivatives directory (preprocess output)")
    parser.add_argument("--subject", required=True, help="subject label without 'sub-'")
    parser.add_argument("--sessions", required=True, nargs="+", help="session labels")
    parser.add_argument("--params", help="parameter JSON ({class name: {field: value}}, as "
                        "written by 'python -m pipeline settings'); uses RegistrationParams")
    parser.add_argument("--threads", type=int, default=1,
                        help="SimpleITK threads (default 1: bit-reproducible transforms)")
    add_sources_argument(parser)
    args = parser.parse_args(argv)

    def work(params: dict) -> dict:
        set_threads(args.threads)
        return register_subject_files(args.out, args.subject, args.sessions,
                                      params["RegistrationParams"])

    code, written = run_step("register", args.out, args.subject, None, args.sources,
                             args.params, work)
    if code:
        return code
    write_sidecars([written["template"]], args.sources)
    print(f"register sub-{args.subject}: wrote {written['template']} and {written['qc']} "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in written['seconds'].items())})")
    return 0
