"""Rigid registration and the unbiased per-subject space (SimpleITK).

Spaces and conventions
----------------------
RAS/LPS conversion, rigid matrices, transform files and resampling are the utilities of
:mod:`pipeline.imagespace`, whose conventions hold here: every transform written by this module
is an ITK *resampling* transform (fixed/reference LPS points -> moving LPS points). So

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
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from pipeline import io
from pipeline.errors import InputError, RegistrationError
from pipeline.imagespace import (
    RAS_LPS_FLIP,
    compose,
    matrix_to_rigid,
    mean_rigid,
    nifti_to_sitk,
    read_transform,
    require_same_grid,
    resample_image,
    resample_mask,
    rigid_to_matrix,
    rotation_angle_deg,
    set_threads,
    sitk_to_nifti,
    write_transform,
)
from pipeline.outcome import add_sources_argument, run_step
from pipeline.provenance import write_sidecars
from pipeline.params import RegistrationParams
from pipeline.paths import product_path

if TYPE_CHECKING:
    import pandas as pd

_INITIALISATIONS = {
    "identity": None,
    "mask_centroid": None,
    "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
    "moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
}


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
    problem = _rigid_problem(fixed, moving, params, fixed_mask, moving_mask, multimodal,
                             initialisations)
    results: list[tuple[RigidResult, list[str]]] = []
    for init in initialisations:
        start = _starting_transform(problem, init)
        if start is None:
            continue
        result = _register_from_start(problem, init, start)
        problems = _implausibility(problem, result)
        results.append((result, problems))
        if not problems:
            break
    return _choose_result(problem, results, pair)


@dataclass
class _RigidProblem:
    """What every start of one rigid registration shares (fixed <- moving).

    ``fixed`` and ``moving`` are the float32 images; ``metric_fixed`` and ``metric_mask`` the
    fixed image and mask the metric sees (the dilated brain region, or the whole image);
    ``center_lps`` the fixed brain centre (LPS mm) the rotations are about; ``threshold`` the
    plausibility threshold of the similarity called ``similarity_name``.
    """

    fixed: sitk.Image
    moving: sitk.Image
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None
    metric_fixed: sitk.Image
    metric_mask: sitk.Image | None
    center_lps: np.ndarray
    threshold: float
    similarity_name: str
    multimodal: bool
    params: RegistrationParams


def _rigid_problem(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams,
                   fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None,
                   multimodal: bool, initialisations: tuple[str, ...]) -> _RigidProblem:
    """Step 1, set-up: float images, brain centre, metric region, threshold; checks the starts."""
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
    return _RigidProblem(fixed, moving, fixed_mask, moving_mask, metric_fixed, metric_mask,
                         center, threshold, name, multimodal, params)


def _starting_transform(problem: _RigidProblem, init: str) -> sitk.Euler3DTransform | None:
    """Step 2, initialisation: the start ``init``, or None where it cannot be formed."""
    fixed, moving = problem.fixed, problem.moving
    if init == "identity":
        start = sitk.Euler3DTransform()
    elif init == "mask_centroid":
        if problem.fixed_mask is None or problem.moving_mask is None:
            return None
        # Brain centres aligned: far closer than image centres when fields of view are
        # placed differently (oblique or shifted grids).
        start = sitk.Euler3DTransform()
        start.SetTranslation([float(v) for v in _mask_centroid_lps(problem.moving_mask, moving)
                              - problem.center_lps])
    else:
        try:
            start = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
                fixed, moving, sitk.Euler3DTransform(), _INITIALISATIONS[init]))
        except RuntimeError:
            # Moments are undefined for an all-zero image; the other starts still ran.
            return None
    return start


def _register_from_start(problem: _RigidProblem, init: str,
                         start: sitk.Euler3DTransform) -> RigidResult:
    """Step 3, one registration from ``start``: optimise, then similarity and brain motion."""
    params, center = problem.params, problem.center_lps
    fixed, moving = problem.fixed, problem.moving
    # Rotate about the brain centre so translation and rotation decouple in the optimiser.
    start_matrix = rigid_to_matrix(start)
    start = matrix_to_rigid(start_matrix, center)
    transform, metric, stop, iterations, converged = _run_registration(
        problem.metric_fixed, moving, params, problem.metric_mask, start)
    f_vals, m_vals = paired_samples(fixed, moving, transform, problem.fixed_mask,
                                    problem.moving_mask)
    similarity = (normalised_mutual_information(f_vals, m_vals, params.mi_histogram_bins)
                  if problem.multimodal else normalised_cross_correlation(f_vals, m_vals))
    matrix = rigid_to_matrix(transform)
    rotation = rotation_angle_deg(matrix)
    translation = float(np.linalg.norm(matrix[:3, :3] @ center + matrix[:3, 3] - center))
    return RigidResult(transform, metric, similarity, problem.similarity_name, rotation,
                       translation, converged, stop, init, iterations)


def _implausibility(problem: _RigidProblem, result: RigidResult) -> list[str]:
    """Step 4, plausibility test: what is wrong with ``result`` (empty when plausible)."""
    params, threshold, name = problem.params, problem.threshold, problem.similarity_name
    similarity, rotation = result.similarity, result.rotation_deg
    problems = []
    if not np.isfinite(similarity) or similarity < threshold:
        problems.append(f"post-registration {name} {similarity:.3f} < {threshold}")
    if rotation > params.max_rotation_deg:
        problems.append(f"rotation {rotation:.1f} deg > {params.max_rotation_deg} deg")
    if not result.converged:
        problems.append(f"optimiser did not converge ({result.stop_condition})")
    return problems


def _choose_result(problem: _RigidProblem, results: list[tuple[RigidResult, list[str]]],
                   pair: str) -> RigidResult:
    """Step 5, choice: the most similar plausible result, else a RegistrationError with all."""
    params, threshold, name = problem.params, problem.threshold, problem.similarity_name
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
        ras = subject_points @ RAS_LPS_FLIP.T
        lo = np.minimum(lo, ras.min(axis=0))
        hi = np.maximum(hi, ras.max(axis=0))
    lo_ras = np.floor((lo - margin_mm) / voxel_mm) * voxel_mm
    hi_ras = np.ceil((hi + margin_mm) / voxel_mm) * voxel_mm
    size = [int(round(n)) + 1 for n in (hi_ras - lo_ras) / voxel_mm]
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing([float(voxel_mm)] * 3)
    # RAS-aligned axes: index i increases towards R, j towards A, k towards S.
    reference.SetDirection([float(d) for d in RAS_LPS_FLIP.ravel()])
    reference.SetOrigin([float(o) for o in RAS_LPS_FLIP @ lo_ras])
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
    FLAIR, desc-flairres T1w (the T1 at the FLAIR's resolution), desc-brain mask; per subject:
    space-subject desc-template T1w and the desc-registration QC TSV.

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
    images = _read_sessions(out_dir, subject, sessions)
    seconds["read"] = time.perf_counter() - timer

    timer = time.perf_counter()
    qc_path = product_path(out_dir, "registration_qc", subject)
    space = _subject_space_keeping_qc(images, sessions, params, qc_path)
    seconds["register"] = time.perf_counter() - timer

    timer = time.perf_counter()
    written: dict[str, object] = {"sessions": {}}
    subject_t1s, subject_masks = [], []
    for k, ses in enumerate(sessions):
        paths, t1_sub, mask_sub = _write_session_products(out_dir, subject, ses, k, images,
                                                          space, params)
        written["sessions"][ses] = paths
        subject_t1s.append(t1_sub)
        subject_masks.append(mask_sub)
    written["template"] = _write_template(out_dir, subject, subject_t1s, subject_masks, space)
    seconds["resample_write"] = time.perf_counter() - timer

    written["qc"] = _write_registration_qc(qc_path, space)
    written["seconds"] = seconds
    return written


@dataclass
class _SessionImages:
    """One subject's session inputs, in session order, as SimpleITK images (LPS).

    ``t1s`` and ``flairs`` the N4 images (float32), ``masks`` the native brain masks (uint8, on
    the T1 grids), ``flair_tx`` the FLAIR->T1 transforms (T1 points -> FLAIR points),
    ``t1_affines`` the T1 voxel -> RAS mm affines.
    """

    t1s: list[sitk.Image]
    flairs: list[sitk.Image]
    masks: list[sitk.Image]
    flair_tx: list[sitk.Transform]
    t1_affines: list[np.ndarray]


def _read_sessions(out_dir: str | Path, subject: str, sessions: list[str]) -> _SessionImages:
    """Step 1, read the sessions: N4 T1 and FLAIR, brain mask (on the T1 grid), FLAIR->T1."""
    t1s, flairs, masks, flair_tx, t1_affines = [], [], [], [], []
    for ses in sessions:
        t1_data, t1_aff, _ = io.load_nifti(product_path(out_dir, "t1w_n4", subject, ses))
        fl_data, fl_aff, _ = io.load_nifti(product_path(out_dir, "flair_n4", subject, ses))
        mask_path = product_path(out_dir, "brain_mask", subject, ses)
        m_data, m_aff, _ = io.load_nifti(mask_path)
        require_same_grid(m_data.shape[:3], m_aff, t1_data.shape[:3], t1_aff,
                          f"{mask_path}: brain mask is not on the N4 T1 grid; re-run "
                          f"preprocess for ses-{ses}", atol_mm=1e-3, rtol=0.0)
        t1s.append(nifti_to_sitk(np.asarray(t1_data, dtype=np.float32), t1_aff))
        flairs.append(nifti_to_sitk(np.asarray(fl_data, dtype=np.float32), fl_aff))
        masks.append(nifti_to_sitk(np.asarray(m_data > 0, dtype=np.uint8), t1_aff))
        flair_tx.append(read_transform(product_path(out_dir, "flair_to_t1w", subject, ses)))
        t1_affines.append(t1_aff)
    return _SessionImages(t1s, flairs, masks, flair_tx, t1_affines)


def _subject_space_keeping_qc(images: _SessionImages, sessions: list[str],
                              params: RegistrationParams, qc_path: Path) -> SubjectSpace:
    """Step 2, build the subject space; a refusal still writes its QC table to ``qc_path``."""
    try:
        space = build_subject_space(images.t1s, images.masks, sessions, params)
    except RegistrationError as exc:
        # Keep the evidence: the QC table with the refused pair(s) marked accepted = no.
        if getattr(exc, "table", None) is not None:
            io.write_tsv(qc_path, exc.table)
        raise
    return space


def _write_session_products(out_dir: str | Path, subject: str, ses: str, k: int,
                            images: _SessionImages, space: SubjectSpace,
                            params: RegistrationParams
                            ) -> tuple[dict, sitk.Image, sitk.Image]:
    """Step 3, one session (index ``k``) into subject space: its transform, images and mask.

    Returns the written paths and the session's T1 and brain mask on the subject grid.
    """
    t1s, flairs, masks, flair_tx = images.t1s, images.flairs, images.masks, images.flair_tx
    to_session = matrix_to_rigid(space.to_session[k], space.center_lps)
    xfm_path = write_transform(product_path(out_dir, "t1w_to_subject", subject, ses),
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
    paths = {"t1w_to_subject": xfm_path}
    for product, img in (("t1w_subject", t1_sub), ("flair_subject", fl_sub),
                         ("t1w_flairres_subject", t1_fl_sub)):
        data, affine = sitk_to_nifti(img)
        paths[product] = io.save_intensity_image(
            product_path(out_dir, product, subject, ses), data, affine)
    data, affine = sitk_to_nifti(mask_sub)
    paths["brain_mask_subject"] = io.save_nifti(
        product_path(out_dir, "brain_mask_subject", subject, ses), data, affine, dtype=np.uint8)
    return paths, t1_sub, mask_sub


def _write_template(out_dir: str | Path, subject: str, subject_t1s: list[sitk.Image],
                    subject_masks: list[sitk.Image], space: SubjectSpace) -> Path:
    """Step 4, the subject template T1: session T1s in subject space, median-scaled, averaged."""
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
    return io.save_intensity_image(product_path(out_dir, "template", subject), data, affine)


def _write_registration_qc(qc_path: Path, space: SubjectSpace) -> Path:
    """Step 5, the QC table: one row per registered pair (session -> reference session)."""
    table = registration_table(space.pairs, space.pair_names)
    return io.write_tsv(qc_path, table)


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
    import pandas as pd  # here, not at the top: preprocess imports this module and no table

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
