"""Every threshold of the pipeline, in one place.

Each field carries its unit in its name and its source in a comment. The workflow's config
(``config/config.yaml``) overrides any of them by name; ``__post_init__`` rejects nonsense so a
bad value fails at start, not after an hour of registration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from pipeline.errors import InputError

T = TypeVar("T")


def _require(cond: bool, owner: str, name: str, value: Any, expect: str) -> None:
    if not cond:
        raise InputError(f"{owner}.{name}={value!r} is invalid: expected {expect}")


def override(params: T, values: dict[str, Any] | None, owner: str | None = None) -> T:
    """Return ``params`` with ``values`` replaced, refusing unknown names.

    Parameters
    ----------
    params : dataclass instance
    values : mapping of field name to new value (``None`` or empty: unchanged)
    owner : name used in error messages (default: the class name)
    """
    if not values:
        return params
    owner = owner or type(params).__name__
    known = {f.name for f in fields(params)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(
            f"{owner}: unknown parameter(s) {unknown}; known parameters are {sorted(known)}"
        )
    return replace(params, **values)  # type: ignore[type-var]


@dataclass(frozen=True)
class InputCheckParams:
    """Plausibility limits for input images (checks before any work, see pipeline/checks.py)."""

    min_voxel_mm: float = 0.2  # below any clinical 3T/7T protocol
    max_voxel_mm: float = 7.0  # thicker than any usable 2-D FLAIR (MAGNIMS 2021: <= 3 mm)
    min_fov_mm: float = 100.0  # smaller than a head: wrong header or a partial slab
    max_fov_mm: float = 600.0  # larger than any head coil: voxel sizes lost in conversion
    min_t1_flair_overlap_fraction: float = 0.5  # of the T1 field of view covered by FLAIR
    # An image with fewer non-zero voxels than this fraction is empty or a failed export
    # (a head fills ~30-60 % of a clinical field of view).
    min_nonzero_fraction: float = 0.01
    # sform and qform may differ by float rounding (qform stores a quaternion) but not by more:
    # larger disagreements mean an edited header and an ambiguous position.
    max_qform_sform_mismatch_mm: float = 0.1
    # Non-orthogonal voxel axes (shear) beyond this cosine cannot be represented by ITK images.
    max_axis_cosine: float = 1e-3
    # Magnitude images are >= 0 in principle, but float images from converters, denoisers and
    # resampling carry noise and ringing below zero. Gaussian background noise makes about half
    # of the air voxels negative, but only by ~2.5 noise SDs (99th percentile of |x|), whatever
    # the head's share of the field of view. Depth = 99th percentile of |negative values| / 99th
    # percentile of positive values, measured on simulated heads (tests/unit/test_checks.py):
    # 0.08 with noise SD 3 % of white matter, 0.23-0.30 with a low-SNR 10 %, 0.07 for Gibbs
    # ringing (k-space truncation); a phase or difference image 0.98-1.0.
    max_negative_depth_ratio: float = 0.5
    # ... and refused only when its negatives also hold this much of the positive signal
    # (sum |negative| / sum positive; phase and difference images ~1.0, measured in
    # tests/unit/test_checks.py), so a few deep outlier voxels are clipped and counted rather
    # than refusing the scan.
    max_negative_signal_ratio: float = 0.1
    # Largest image the checks will read, in bytes held in memory: voxels x bytes per voxel of
    # the array nibabel returns (the stored type; float64 when scl_slope/scl_inter scale it),
    # computed from the header before any voxel is read, so a corrupt dim cannot make the
    # reader allocate. Sized for a 0.5 mm isotropic whole-head scan, 256 x 256 x 200 mm =
    # 512 x 512 x 400 = 104,857,600 voxels: 400 MiB as float32, 800 MiB as float64 or as
    # scaled integers. 1 GiB = 2**30 bytes leaves 28 % above that (a 256 mm cube at 0.5 mm
    # in float64, 512**3 x 8 bytes, is exactly the limit and passes); a header claiming
    # 1000**3 int16 voxels (1.86 GiB) is refused.
    max_image_bytes: int = 2**30

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(self.max_image_bytes > 0, n, "max_image_bytes", self.max_image_bytes, "> 0")
        _require(0 < self.max_negative_depth_ratio < 1, n, "max_negative_depth_ratio",
                 self.max_negative_depth_ratio, "a ratio in (0, 1)")
        _require(0 <= self.max_negative_signal_ratio < 1, n, "max_negative_signal_ratio",
                 self.max_negative_signal_ratio, "a ratio in [0, 1)")
        _require(0 < self.min_voxel_mm < self.max_voxel_mm, n, "min_voxel_mm", self.min_voxel_mm,
                 "0 < min_voxel_mm < max_voxel_mm")
        _require(0 < self.min_fov_mm < self.max_fov_mm, n, "min_fov_mm", self.min_fov_mm,
                 "0 < min_fov_mm < max_fov_mm")
        _require(0 < self.min_t1_flair_overlap_fraction <= 1, n, "min_t1_flair_overlap_fraction",
                 self.min_t1_flair_overlap_fraction, "a fraction in (0, 1]")
        _require(0 <= self.min_nonzero_fraction < 1, n, "min_nonzero_fraction",
                 self.min_nonzero_fraction, "a fraction in [0, 1)")
        _require(self.max_qform_sform_mismatch_mm > 0, n, "max_qform_sform_mismatch_mm",
                 self.max_qform_sform_mismatch_mm, "> 0")


@dataclass(frozen=True)
class RegistrationParams:
    """Rigid registration (SimpleITK, Mattes mutual information) and the subject space."""

    mi_histogram_bins: int = 32  # Mattes et al. 2003; ITK default 50, 32 is robust at low res
    # Random MI samples per level, as a fraction of the level's voxels inside the (dilated)
    # brain mask: 2 % is ~35k points at 1 mm (elastix uses 2000-5000 per iteration); on the
    # phantom 2 % and 5 % give the same 0.01-0.05 mm error, 2 % in 2/3 of the time.
    sampling_fraction: float = 0.02
    # ... but at least this many fixed samples per level (inside the mask): ITK draws one sample
    # set per level, so it needs more points than elastix's per-iteration resampling.
    min_metric_samples: int = 20000
    shrink_factors: tuple[int, ...] = (4, 2, 1)  # coarse-to-fine pyramid
    # Gaussian sigma per level, about one shrunk voxel at 1 mm (4, 2 mm) so the coarse levels
    # see a smooth, single-optimum metric: with (2, 1, 0) mm a 6 deg / 6 mm start fell into a
    # wrong optimum in 4 of 12 phantom trials, with (4, 2, 0) in none.
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    max_iterations: int = 200
    # The metric runs inside the brain mask grown by this much: the brain/CSF edge is the
    # strongest rigid feature, while scalp, neck and jaw move between sessions.
    metric_mask_dilation_mm: float = 5.0
    # Regular-step gradient descent: first step (mm of physical shift, optimiser scales from
    # physical shift), halved on each direction reversal, stop below min_step_mm (0.01 mm is
    # far below the 0.5 mm accuracy target).
    max_step_mm: float = 2.0
    min_step_mm: float = 0.01
    # Step factor on each direction reversal. ITK's default 0.5 stops early on the sampling
    # noise of the metric (errors 0.2-0.8 mm on the phantom); 0.7 reaches 0.01-0.03 mm.
    step_relaxation: float = 0.7
    subject_voxel_mm: float = 1.0  # isotropic grid of the unbiased subject space
    # Margin around the union of brain masks in the subject grid (room for the skull edge and
    # for partial-volume resampling at the brain surface).
    subject_margin_mm: float = 10.0
    t1_interpolation: str = "linear"  # linear or bspline (B-spline keeps edges, costs ~5x)
    # Refuse a registration whose post-registration similarity is implausible (see registration.py):
    # aligned T1 pairs correlate at >= 0.9 inside the brain on the phantom (SNR 25, bias, new
    # lesions) while a 5 mm / 8 deg misregistration falls to ~0.5; 0.7 lies between.
    min_post_registration_ncc: float = 0.7
    # Same for FLAIR -> T1 (different contrasts): Studholme NMI inside the brain, 32 bins.
    # Unrelated images give 1.00-1.01 (finite-sample bias), aligned phantom T1/FLAIR
    # 1.10-1.13 (2-D thick-slice FLAIR included); 1.03 refuses only the implausible.
    min_post_registration_nmi: float = 1.03
    # Head positions between sessions differ by a few degrees; > 45 deg is a wrong optimum.
    max_rotation_deg: float = 45.0
    seed: int = 20160601  # fixed sampling seed: same inputs, same transforms

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.sampling_fraction <= 1, n, "sampling_fraction", self.sampling_fraction,
                 "a fraction in (0, 1]")
        _require(len(self.shrink_factors) == len(self.smoothing_sigmas_mm), n, "shrink_factors",
                 self.shrink_factors, "as many levels as smoothing_sigmas_mm")
        _require(self.subject_voxel_mm > 0, n, "subject_voxel_mm", self.subject_voxel_mm, "> 0")
        _require(self.metric_mask_dilation_mm >= 0, n, "metric_mask_dilation_mm",
                 self.metric_mask_dilation_mm, ">= 0")
        _require(self.min_metric_samples >= 1000, n, "min_metric_samples",
                 self.min_metric_samples, ">= 1000")
        _require(0 < self.min_step_mm < self.max_step_mm, n, "min_step_mm", self.min_step_mm,
                 "0 < min_step_mm < max_step_mm")
        _require(0 < self.step_relaxation < 1, n, "step_relaxation", self.step_relaxation,
                 "in (0, 1)")
        _require(self.subject_margin_mm >= 0, n, "subject_margin_mm", self.subject_margin_mm,
                 ">= 0")
        _require(self.t1_interpolation in ("linear", "bspline"), n, "t1_interpolation",
                 self.t1_interpolation, "'linear' or 'bspline'")
        _require(0 < self.max_rotation_deg <= 180, n, "max_rotation_deg", self.max_rotation_deg,
                 "in (0, 180]")


@dataclass(frozen=True)
class BrainMaskParams:
    """Brain mask on T1 (pipeline/brainmask.py) and the N4 bias correction it restricts."""

    # Skull-stripped detection: at least this fraction of the field of view is (near) zero ...
    stripped_min_zero_fraction: float = 0.2
    # ... where "zero" is below this fraction of the 99th intensity percentile (noise in a
    # whole-head magnitude image sits at ~1-5 % of WM; stripped images are exactly 0 outside).
    stripped_zero_level: float = 0.005
    # ... and the non-zero voxels form one blob no larger than a brain (adult brain + CSF
    # ~1.0-1.8 L; a whole head is ~4-5 L).
    stripped_max_volume_ml: float = 2500.0
    # The whole-head method runs on a grid of this spacing (mm) and is upsampled: the
    # morphology costs 1/8 at 2 mm and the boundary is refined at full resolution.
    working_voxel_mm: float = 2.0
    smoothing_mm: float = 1.0  # Gaussian sigma before thresholds (noise, BSE step 1)
    # Brain tissue is brighter than this fraction of the WM level on T1w. T1w ratios to WM:
    # CSF ~0.2-0.35, GM ~0.6-0.72, so 0.45 sits between them: a thin skull or CSF layer in
    # partial volume stays below it (fewer bridges to the scalp), while sulcal partial volume
    # is wrapped back in by the closing. Measured (benchmarks/brainmask_accuracy.tsv, seed
    # 90909, then confirmed on another seed): with the watershed boundary, 0.45 gives Dice
    # 0.977 (min 0.967) on whole-head MNI152-anatomy scans where 0.35 gave 0.946 (min 0.846,
    # one mask through the scalp), and 0.984 vs 0.988 on the analytic head.
    tissue_fraction_of_wm: float = 0.45
    # Erosions tried to cut the bridges (optic nerves, dura, vessels, thin bone in partial
    # volume, the cord) between brain and scalp, face and neck (BSE uses a 3-4 mm erosion,
    # Shattuck et al. 2001; bridges on real anatomy are wider): the smallest radius after
    # which no larger one shrinks the mask by more than erosion_stable_fraction is kept (a
    # bridge to the scalp or neck adds 40-70 % of a brain; larger radii lose < 10 % of it).
    erosion_radii_mm: tuple[float, ...] = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0)
    erosion_stable_fraction: float = 0.12
    # An erosion that loses more than this share of the previous radius's brain has cut the
    # brain itself apart (a hemisphere, the cerebellum: 40-50 %), not a bridge (15-30 %).
    erosion_split_fraction: float = 0.4
    # The watershed's outside marker: air plus this outer rim of the head (mm), deeper than the
    # air/scalp partial-volume ramp, shallower than scalp + skull (>= ~7 mm in adults).
    air_marker_depth_mm: float = 4.0
    # Closing radius that wraps the brain envelope over sulcal CSF (sulci are 1-3 mm wide,
    # up to ~5 mm in atrophy).
    closing_mm: float = 5.0
    # A brain mask outside this volume range is a failure, not a brain (adult intracranial
    # volume 1.1-1.9 L; severe atrophy or a child's brain stays above 0.5 L).
    min_brain_volume_ml: float = 500.0
    max_brain_volume_ml: float = 2500.0
    # N4 (Tustison et al. 2010): fitting on a shrunk image, ITK defaults otherwise; B-spline
    # distance 200 mm as in ANTs brain extraction and fMRIPrep.
    n4_shrink_factor: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    # ITK's default 1e-3 runs ~4x longer on the phantom for the same corrected WM spread
    # (coefficient of variation 0.0606 vs 0.0608 at 5e-3).
    n4_convergence_threshold: float = 5e-3
    n4_spline_distance_mm: float = 200.0

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.stripped_min_zero_fraction < 1, n, "stripped_min_zero_fraction",
                 self.stripped_min_zero_fraction, "a fraction in (0, 1)")
        _require(0 <= self.stripped_zero_level < 1, n, "stripped_zero_level",
                 self.stripped_zero_level, "a fraction in [0, 1)")
        for name in ("working_voxel_mm", "stripped_max_volume_ml", "n4_spline_distance_mm"):
            _require(getattr(self, name) > 0, n, name, getattr(self, name), "> 0")
        _require(0 < self.tissue_fraction_of_wm < 1, n, "tissue_fraction_of_wm",
                 self.tissue_fraction_of_wm, "a fraction in (0, 1)")
        for name in ("smoothing_mm", "closing_mm"):
            _require(getattr(self, name) >= 0, n, name, getattr(self, name), ">= 0")
        _require(len(self.erosion_radii_mm) >= 1 and min(self.erosion_radii_mm) > 0
                 and list(self.erosion_radii_mm) == sorted(self.erosion_radii_mm), n,
                 "erosion_radii_mm", self.erosion_radii_mm, "increasing radii > 0 (mm)")
        for name in ("erosion_stable_fraction", "erosion_split_fraction"):
            _require(0 < getattr(self, name) < 1, n, name, getattr(self, name),
                     "a fraction in (0, 1)")
        _require(0 <= self.min_brain_volume_ml < self.max_brain_volume_ml, n,
                 "min_brain_volume_ml", self.min_brain_volume_ml,
                 "0 <= min_brain_volume_ml < max_brain_volume_ml")
        _require(self.n4_shrink_factor >= 1, n, "n4_shrink_factor", self.n4_shrink_factor, ">= 1")
        _require(len(self.n4_iterations) >= 1 and min(self.n4_iterations) >= 1, n,
                 "n4_iterations", self.n4_iterations, "one or more positive counts per level")


@dataclass(frozen=True)
class SegmentationParams:
    """T2/FLAIR lesion and T1-hypointense segmentation (see pipeline/segment.py for sources)."""

    # FLAIR hyperintensity, in robust SDs of normal-appearing WM FLAIR, above the brightest normal
    # tissue compatible with the voxel's T1: lesion cores (3 SD: Jack et al. 2001 threshold
    # FLAIR at a fixed number of SDs above the normal-tissue mode; 3 SD keeps the per-voxel false
    # positive rate of Gaussian noise at 0.13 %).
    flair_z_threshold: float = 3.0
    # ... and by at least this much normalised FLAIR (NAWM = 1): a lesion core is visibly
    # brighter than the normal tissue its T1 allows, not only improbable under the noise. On
    # real anatomy pure deep GM (putamen, claustrum, insula) lies above the mixing lines of a
    # GM vertex measured in the partial-volumed cortex by up to ~0.13 (measured on the MNI152
    # test bed; several noise SDs at 1 mm), while the least contrasted protocols still give
    # lesions 0.25 above WM (lesion/WM FLAIR ~1.25, 2-D FLAIR at 1.5 T;
    # pipeline.phantom.config.CONTRAST_PROTOCOLS).
    flair_core_min_excess: float = 0.15
    # Plausibility of a session's segmentation (segment.check_plausible), refused beyond:
    # T1 GM/WM ratio (0.6-0.8 on T1-weighted scans at 1.5-3 T; ~1 is no contrast, e.g. a
    # PD/T2 image or a mask holding no brain),
    max_gm_wm_t1_ratio: float = 0.92
    # T2-LV as a share of the brain (MS cohorts: typically 1-30 mL of a 1.0-1.5 L brain;
    # 10 % is beyond the most affected patients and means normal tissue was called lesion).
    max_t2lv_fraction_of_brain: float = 0.10
    # Hysteresis: voxels connected to a core are grown down to this z (partial-volume edges; 2 SD
    # is the usual lower hysteresis level, Canny 1986 suggests low = 0.4-0.5 x high).
    flair_z_grow_threshold: float = 2.0
    # Half-maximum edge: a voxel of a grown lesion stays lesion only if its FLAIR excess over NAWM
    # reaches this fraction of the lesion's peak excess (lesion/WM partial-volume fraction >= 0.5,
    # the usual definition of a labelled voxel; FWHM convention).
    edge_fraction_of_peak: float = 0.5
    # ... tested up to this far (mm from the voxel faces) beyond the z-grown lesion: a lesion's
    # partial-volume rim is 1-2 voxels wide at 1 mm.
    edge_grow_mm: float = 2.0
    # Gaussian sigma (mm) of the within-brain smoothing of T1 and FLAIR before detection: noise
    # suppression at the scale of the smallest lesion counted (3 mm across; MAGNIMS 2016).
    smoothing_mm: float = 1.0
    # Unit of the hyperintensity z-score. "noise": the robust SD of normal-appearing WM FLAIR,
    # everywhere; right when the normal-tissue envelope (the CSF-GM-WM mixing lines through the
    # measured pure-GM vertex) is the true upper edge of normal (T1, FLAIR) pairs, which holds
    # when the voxels are small enough for the cortex (~2.5 mm thick, Fischl & Dale 2000) to
    # contain pure-GM voxels. "tissue": the larger of that and the bright-side spread of normal
    # FLAIR at the voxel's T1 (the spread of partial-volume mixtures), needed with larger voxels
    # (2 mm, or 3 mm FLAIR slices), where no voxel is pure GM and the measured vertex lies
    # inside the true mixing triangle. "auto": "noise" when the longest native voxel edge of
    # both T1 and FLAIR is at most ``noise_unit_max_voxel_mm``.
    z_unit: str = "auto"
    noise_unit_max_voxel_mm: float = 1.25
    # Bound normal FLAIR below by the CSF-GM-WM mixing lines through the pure-GM vertex (at the
    # voxel's own T1): where the cortex is thin, pure GM is a minority of its T1 bins.
    grey_matter_bound: bool = True
    # Normal FLAIR is predicted from the T1 of the voxel's neighbourhood within this distance
    # (mm from the voxel faces): tolerates FLAIR-T1 misregistration and unequal blurring of
    # about one voxel at tissue borders (the registration accuracy target is 0.5 mm).
    t1_neighbourhood_mm: float = 1.0
    # T1 noise tolerance when predicting normal FLAIR from T1, in robust SDs of WM T1 (2 SD covers
    # 95 % of the T1 noise of a normal voxel).
    t1_uncertainty_sd: float = 2.0
    # Lesion cores must lie at least this far inside the brain mask: excludes the cortical ribbon
    # edge and the mask boundary (mean cortical thickness ~2.5 mm, Fischl & Dale 2000 PNAS).
    edge_margin_mm: float = 3.0
    min_component_volume_mm3: float = 3.0  # drop single-voxel noise before any counting
    # Residual intensity non-uniformity after N4 is measured in normal WM and smoothed with this
    # Gaussian sigma (mm): far wider than any lesion (<= 20 mm across), far narrower than the N4
    # B-spline spacing (200 mm), so it removes the slow field N4 leaves and keeps lesions.
    bias_smoothing_mm: float = 20.0
    # Pure-tissue voxels for reference statistics: T1 mixture posterior at least this.
    tissue_posterior_min: float = 0.9
    # Estimate NAWM statistics and segment, then exclude the candidates and re-estimate once
    # (a second re-estimation changed nothing measurable on synthetic data).
    normalisation_iterations: int = 2
    # Black hole: lesion T1 below this fraction of the mean normal-appearing GM T1 (1.0 = "below
    # GM", Sahraian et al. 2010 Eur J Neurol 17:1165; van Walderveen et al. 1998 Neurology 50:1282).
    t1hypo_gm_ratio: float = 1.0
    # ... by at least this many noise SDs of the (smoothed) T1: GM-like tissue must not turn
    # "hypointense" by noise (2 SD: 2.3 % of GM-level voxels on one side).
    t1hypo_margin_sd: float = 2.0
    # The GM reference is cortical: GM-like voxels within this depth of the brain surface
    # (cortical thickness ~2.5 mm, Fischl & Dale 2000, plus the sulcal CSF the mask includes).
    cortical_depth_mm: float = 6.0
    # Gaussian sigma applied to T1 before the black-hole test: half a voxel at 1 mm suppresses
    # noise while keeping the core of a 4 mm black hole below the GM reference (a 1 mm sigma
    # lifts it above); noise dips that remain are not counted as new black holes without a
    # T1 fall (LesionParams.t1_fall_min_sd).
    t1hypo_smoothing_mm: float = 0.5
    # Smallest hypointense core kept (~3 mm across; noise specks and partial-volume dips at the
    # edge of a GM-like lesion are smaller). The core of a black hole is smaller than its
    # lesion (partial volume with WM lifts the rim's T1 above GM); the black hole's size is its
    # T2 lesion's, tested by LesionParams.min_t1hypo_volume_mm3.
    t1hypo_min_volume_mm3: float = 10.0
    # Joint pass over the subject's sessions (segment.longitudinal_refinement): voxels whose
    # smoothed FLAIR rose by refinement_rise_sd robust SDs of the focal difference image
    # against another session, where they were normal-appearing WM, and which are hyperintense
    # against NAWM by flair_z_threshold, are lesion cores too (3 SD: the same confirmation level
    # as a new lesion's FLAIR rise); lesions whose FLAIR did not fall persist across sessions.
    longitudinal_refinement: bool = True
    refinement_rise_sd: float = 3.0
    # ... measured against the local level of the difference image (Gaussian sigma, mm), so a
    # residual intensity non-uniformity that differs between sessions is not a rise; new
    # lesions are <= ~15 mm across and are left out of the level estimate (0: global level).
    refinement_background_mm: float = 10.0
    # Persistence of a lesion that changed (grew, shrank): its unchanged pieces of at least this
    # volume persist into the other sessions (10 mm^3: the smallest lesion counted as new).
    persistence_min_piece_mm3: float = 10.0
    # Segment every session inside the intersection of all sessions' subject-space brain masks
    # (a common longitudinal mask, as in SIENA / longitudinal FreeSurfer), so a brain mask drawn
    # differently in one session does not create or remove lesions at its edge.
    common_brain_mask: bool = True
    seed: int = 20160601

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(self.flair_z_threshold > 0, n, "flair_z_threshold", self.flair_z_threshold, "> 0")
        _require(self.flair_core_min_excess >= 0, n, "flair_core_min_excess",
                 self.flair_core_min_excess, ">= 0 (normalised FLAIR)")
        for name in ("max_gm_wm_t1_ratio", "max_t2lv_fraction_of_brain"):
            _require(getattr(self, name) > 0, n, name, getattr(self, name), "> 0")
        _require(0 < self.flair_z_grow_threshold <= self.flair_z_threshold, n,
                 "flair_z_grow_threshold", self.flair_z_grow_threshold,
                 "0 < flair_z_grow_threshold <= flair_z_threshold")
        _require(0 <= self.edge_fraction_of_peak < 1, n, "edge_fraction_of_peak",
                 self.edge_fraction_of_peak, "a fraction in [0, 1)")
        _require(self.edge_grow_mm >= 0, n, "edge_grow_mm", self.edge_grow_mm, ">= 0")
        _require(self.smoothing_mm >= 0, n, "smoothing_mm", self.smoothing_mm, ">= 0")
        _require(self.refinement_rise_sd > 0, n, "refinement_rise_sd",
                 self.refinement_rise_sd, "> 0")
        _require(self.refinement_background_mm >= 0, n, "refinement_background_mm",
                 self.refinement_background_mm, ">= 0")
        _require(self.persistence_min_piece_mm3 >= 0, n, "persistence_min_piece_mm3",
                 self.persistence_min_piece_mm3, ">= 0")
        _require(self.z_unit in ("auto", "noise", "tissue"), n, "z_unit", self.z_unit,
                 "'auto', 'noise' or 'tissue'")
        _require(self.noise_unit_max_voxel_mm > 0, n, "noise_unit_max_voxel_mm",
                 self.noise_unit_max_voxel_mm, "> 0")
        _require(self.bias_smoothing_mm >= 0, n, "bias_smoothing_mm", self.bias_smoothing_mm,
                 ">= 0")
        _require(self.t1_neighbourhood_mm >= 0, n, "t1_neighbourhood_mm",
                 self.t1_neighbourhood_mm, ">= 0")
        _require(self.t1_uncertainty_sd >= 0, n, "t1_uncertainty_sd", self.t1_uncertainty_sd,
                 ">= 0")
        _require(self.edge_margin_mm >= 0, n, "edge_margin_mm", self.edge_margin_mm, ">= 0")
        _require(self.min_component_volume_mm3 >= 0, n, "min_component_volume_mm3",
                 self.min_component_volume_mm3, ">= 0")
        _require(0.5 <= self.tissue_posterior_min < 1, n, "tissue_posterior_min",
                 self.tissue_posterior_min, "a probability in [0.5, 1)")
        _require(self.normalisation_iterations >= 1, n, "normalisation_iterations",
                 self.normalisation_iterations, ">= 1")
        _require(self.cortical_depth_mm > 0, n, "cortical_depth_mm", self.cortical_depth_mm,
                 "> 0")
        _require(self.t1hypo_margin_sd >= 0, n, "t1hypo_margin_sd", self.t1hypo_margin_sd,
                 ">= 0")
        _require(self.t1hypo_gm_ratio > 0, n, "t1hypo_gm_ratio", self.t1hypo_gm_ratio, "> 0")
        _require(self.t1hypo_smoothing_mm >= 0, n, "t1hypo_smoothing_mm",
                 self.t1hypo_smoothing_mm, ">= 0")
        _require(self.t1hypo_min_volume_mm3 >= 0, n, "t1hypo_min_volume_mm3",
                 self.t1hypo_min_volume_mm3, ">= 0")


@dataclass(frozen=True)
class LesionParams:
    """Longitudinal lesion rules per interval (new, enlarging, new T1-hypointense).

    These also define the phantom's ground-truth classes, so truth and pipeline count by one rule.
    """

    # New T2 lesion: >= 10 mm^3 (about a 3 mm sphere, 14 mm^3; MAGNIMS 2016 uses 3 mm in-plane).
    min_new_lesion_volume_mm3: float = 10.0
    # The earlier mask is grown by this much before testing overlap (lesiontrack/mscard: 1 voxel).
    # Measured from the voxel faces, so a face neighbour always counts at <= 2 mm voxels.
    new_lesion_dilation_mm: float = 1.0
    # Enlarging: growth >= both thresholds (ANIMA/MSSEG-2 uses > 12 mm^3 and a 0.5 ratio).
    enlarging_min_increase_mm3: float = 12.0
    enlarging_min_increase_pct: float = 50.0
    # New black hole: its T2 lesion at b is at least this large (the same floor as a new lesion).
    min_t1hypo_volume_mm3: float = 10.0
    # ... and its T1 fell by this many robust SDs of the voxelwise T1 difference (mean over the
    # hypointense core; the T1 counterpart of flair_rise_min_sd).
    t1_fall_min_sd: float = 3.0
    # New-lesion confirmation: mean rise of normalised FLAIR (b - a) over the component, in robust
    # SDs of the difference image in normal-appearing tissue (subtraction-image thresholding at
    # mean + k SD: Ganiler et al. 2014 Neuroradiology 56:363; Moraal et al. 2010 Radiology 255:154).
    # 3 SD: the same margin a lesion core needs over normal tissue (SegmentationParams).
    flair_rise_min_sd: float = 3.0
    # ... and by at least this fraction of the candidate's own hyperintensity at b (mean of
    # flair_norm_b - 1): half or more of the signal is new (half-maximum convention).
    flair_rise_min_fraction: float = 0.5
    # The grown part of an enlarging lesion must pass the same FLAIR-rise confirmation.
    enlarging_requires_flair_rise: bool = True
    # A new lesion touching an old one: its part outside the grown earlier mask counts as new when
    # it borders less than this fraction of the old lesion's outer surface (a one-sided blob);
    # concentric growth wraps the whole surface and is judged by the enlarging rule instead.
    touching_max_surface_fraction: float = 0.5
    # ... and is one-sided: the new part's centroid lies at least this fraction of the old
    # lesion's equivalent-sphere radius off the old lesion's centroid (a blob touching the old
    # lesion sits ~1 radius off; concentric growth, even cut into caps by thick slices, ~0).
    touching_min_offset_fraction: float = 0.5
    # Shrinking: the mirror of enlarging on a log-volume scale (1 / 1.5 = -33.3 %) and >= 12 mm^3.
    shrinking_min_decrease_mm3: float = 12.0
    shrinking_min_decrease_pct: float = 33.3
    # "interval": growth thresholds above apply to the interval as is (ANIMA/MSSEG-2 style);
    # "annualised": lesiontrack/mscard rule, growth >= enlarging_min_pct_per_year % per year of
    # follow-up and >= enlarging_min_voxels voxels (needs the interval length in months).
    enlarging_rule: str = "interval"
    enlarging_min_pct_per_year: float = 9.0  # lesiontrack 0.2 / mscard 0.1 default
    enlarging_min_voxels: int = 3  # lesiontrack 0.2 / mscard 0.1 default

    def __post_init__(self) -> None:
        n = type(self).__name__
        for name in ("min_new_lesion_volume_mm3", "enlarging_min_increase_mm3",
                     "enlarging_min_increase_pct", "min_t1hypo_volume_mm3", "flair_rise_min_sd",
                     "t1_fall_min_sd",
                     "shrinking_min_decrease_mm3", "enlarging_min_pct_per_year",
                     "enlarging_min_voxels"):
            v = getattr(self, name)
            _require(v >= 0, n, name, v, ">= 0")
        _require(self.new_lesion_dilation_mm >= 0, n, "new_lesion_dilation_mm",
                 self.new_lesion_dilation_mm, ">= 0")
        _require(0 <= self.flair_rise_min_fraction <= 1, n, "flair_rise_min_fraction",
                 self.flair_rise_min_fraction, "a fraction in [0, 1]")
        _require(self.touching_min_offset_fraction >= 0, n, "touching_min_offset_fraction",
                 self.touching_min_offset_fraction, ">= 0")
        _require(0 < self.touching_max_surface_fraction <= 1, n, "touching_max_surface_fraction",
                 self.touching_max_surface_fraction, "a fraction in (0, 1]")
        _require(0 <= self.shrinking_min_decrease_pct < 100, n, "shrinking_min_decrease_pct",
                 self.shrinking_min_decrease_pct, "a percentage in [0, 100)")
        _require(self.enlarging_rule in ("interval", "annualised"), n, "enlarging_rule",
                 self.enlarging_rule, "'interval' or 'annualised'")


@dataclass(frozen=True)
class StatsParams:
    """Cohort statistics."""

    alpha: float = 0.05  # two-sided significance level for the 95 % CIs
    min_subjects_per_arm: int = 2  # below this a model is not fitted and the row says why
    # Negative binomial (NB2) dispersion below which the data show no overdispersion: the NB
    # likelihood is flat in alpha there, its Hessian is near singular, and Poisson is the same
    # model (Hilbe 2011, Negative Binomial Regression, 2nd ed.). At 1e-3 the extra variance
    # alpha*mu^2 is < 0.1 % of mu at the lesion rates of a trial (mu <= 1 per month); optimisers
    # stop anywhere below it on under-dispersed data (statsmodels 0.14: ~1e-8, 0.15: ~2e-5),
    # whereas MS lesion counts give alpha ~0.5-3.
    negbin_min_alpha: float = 1e-3
    max_iterations: int = 500  # BFGS iterations for NB, IRLS iterations for the Poisson GLM
    # Hodges-Lehmann CI: exact null distribution of U up to this many pairs (n_a * n_b), normal
    # approximation above (Hollander & Wolfe 1999, sec. 4.3); exact is cheap up to 50 x 50.
    hodges_lehmann_exact_max_pairs: int = 2500
    # Adjusted models need rows beyond their terms: with a handful of subjects the covariates
    # saturate the design and Wald p-values are meaningless (near-saturated fits; Peduzzi et al.
    # 1996 ask for ~10 events per term, this is only the hard floor).
    min_residual_df: int = 3
    plot_seed: int = 20160601  # horizontal jitter of the report's strip plots

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.alpha < 1, n, "alpha", self.alpha, "in (0, 1)")
        _require(self.min_subjects_per_arm >= 2, n, "min_subjects_per_arm",
                 self.min_subjects_per_arm, ">= 2 (a variance needs two subjects)")
        _require(self.negbin_min_alpha >= 0, n, "negbin_min_alpha", self.negbin_min_alpha, ">= 0")
        _require(self.max_iterations >= 1, n, "max_iterations", self.max_iterations, ">= 1")
        _require(self.min_residual_df >= 1, n, "min_residual_df", self.min_residual_df, ">= 1")
        _require(self.hodges_lehmann_exact_max_pairs >= 0, n, "hodges_lehmann_exact_max_pairs",
                 self.hodges_lehmann_exact_max_pairs, ">= 0")
