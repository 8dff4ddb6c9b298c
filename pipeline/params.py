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
    """Plausibility limits for input images (checks before any work)."""

    min_voxel_mm: float = 0.2  # below any clinical 3T/7T protocol
    max_voxel_mm: float = 7.0  # thicker than any usable 2-D FLAIR (MAGNIMS 2021: <= 3 mm)
    min_fov_mm: float = 100.0  # smaller than a head: wrong header or a partial slab
    min_t1_flair_overlap_fraction: float = 0.5  # of the T1 field of view covered by FLAIR

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.min_voxel_mm < self.max_voxel_mm, n, "min_voxel_mm", self.min_voxel_mm,
                 "0 < min_voxel_mm < max_voxel_mm")
        _require(0 < self.min_t1_flair_overlap_fraction <= 1, n, "min_t1_flair_overlap_fraction",
                 self.min_t1_flair_overlap_fraction, "a fraction in (0, 1]")


@dataclass(frozen=True)
class RegistrationParams:
    """Rigid registration (SimpleITK, Mattes mutual information)."""

    mi_histogram_bins: int = 32  # Mattes et al. 2003; ITK default 50, 32 is robust at low res
    sampling_fraction: float = 0.05  # random MI samples per level; elastix default ~2000-5000 pts
    shrink_factors: tuple[int, ...] = (4, 2, 1)  # coarse-to-fine pyramid
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    max_iterations: int = 200
    subject_voxel_mm: float = 1.0  # isotropic grid of the unbiased subject space
    # Refuse a registration whose post-registration similarity is implausible (see registration.py).
    min_post_registration_ncc: float = 0.5
    seed: int = 20160601  # fixed sampling seed: same inputs, same transforms

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.sampling_fraction <= 1, n, "sampling_fraction", self.sampling_fraction,
                 "a fraction in (0, 1]")
        _require(len(self.shrink_factors) == len(self.smoothing_sigmas_mm), n, "shrink_factors",
                 self.shrink_factors, "as many levels as smoothing_sigmas_mm")
        _require(self.subject_voxel_mm > 0, n, "subject_voxel_mm", self.subject_voxel_mm, "> 0")


@dataclass(frozen=True)
class SegmentationParams:
    """T2/FLAIR lesion and T1-hypointense segmentation (see pipeline/segment.py for sources)."""

    # FLAIR hyperintensity, in robust SDs of normal-appearing WM FLAIR, above the brightest normal
    # tissue compatible with the voxel's T1: lesion cores (3 SD: Jack et al. 2001 threshold
    # FLAIR at a fixed number of SDs above the normal-tissue mode; 3 SD keeps the per-voxel false
    # positive rate of Gaussian noise at 0.13 %).
    flair_z_threshold: float = 3.0
    # Hysteresis: voxels connected to a core are grown down to this z (partial-volume edges; 2 SD
    # is the usual lower hysteresis level, Canny 1986 suggests low = 0.4-0.5 x high).
    flair_z_grow_threshold: float = 2.0
    # Half-maximum edge: a voxel of a grown lesion stays lesion only if its FLAIR excess over NAWM
    # reaches this fraction of the lesion's peak excess (lesion/WM partial-volume fraction >= 0.5,
    # the usual definition of a labelled voxel; FWHM convention).
    edge_fraction_of_peak: float = 0.5
    # Gaussian sigma (mm) of the within-brain smoothing of T1 and FLAIR before detection: noise
    # suppression at the scale of the smallest lesion counted (3 mm across; MAGNIMS 2016).
    smoothing_mm: float = 1.0
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
    # Estimate NAWM statistics, segment, exclude candidates, re-estimate (converges in 2-3).
    normalisation_iterations: int = 3
    # Black hole: lesion T1 below this fraction of the mean normal-appearing GM T1 (1.0 = "below
    # GM", Sahraian et al. 2010 Eur J Neurol 17:1165; van Walderveen et al. 1998 Neurology 50:1282).
    t1hypo_gm_ratio: float = 1.0
    # The GM reference is cortical: GM-like voxels within this depth of the brain surface
    # (cortical thickness ~2.5 mm, Fischl & Dale 2000, plus the sulcal CSF the mask includes).
    cortical_depth_mm: float = 6.0
    # Gaussian sigma applied to T1 before the black-hole test, so noise alone does not make a
    # mildly hypointense lesion look like a black hole (about one voxel at 1 mm).
    t1hypo_smoothing_mm: float = 1.0
    t1hypo_min_volume_mm3: float = 10.0  # a black hole must be at least ~3 mm across
    # Segment every session inside the intersection of all sessions' subject-space brain masks
    # (a common longitudinal mask, as in SIENA / longitudinal FreeSurfer), so a brain mask drawn
    # differently in one session does not create or remove lesions at its edge.
    common_brain_mask: bool = True
    seed: int = 20160601

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(self.flair_z_threshold > 0, n, "flair_z_threshold", self.flair_z_threshold, "> 0")
        _require(0 < self.flair_z_grow_threshold <= self.flair_z_threshold, n,
                 "flair_z_grow_threshold", self.flair_z_grow_threshold,
                 "0 < flair_z_grow_threshold <= flair_z_threshold")
        _require(0 <= self.edge_fraction_of_peak < 1, n, "edge_fraction_of_peak",
                 self.edge_fraction_of_peak, "a fraction in [0, 1)")
        _require(self.smoothing_mm >= 0, n, "smoothing_mm", self.smoothing_mm, ">= 0")
        _require(self.bias_smoothing_mm >= 0, n, "bias_smoothing_mm", self.bias_smoothing_mm,
                 ">= 0")
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
    # Measured from the voxel edges of the mask, so a face neighbour always counts at <= 2 mm voxels.
    new_lesion_dilation_mm: float = 1.0
    # Enlarging: growth >= both thresholds (ANIMA/MSSEG-2 uses > 12 mm^3 and a 0.5 ratio).
    enlarging_min_increase_mm3: float = 12.0
    enlarging_min_increase_pct: float = 50.0
    min_t1hypo_volume_mm3: float = 10.0
    # New-lesion confirmation: mean rise of normalised FLAIR (b - a) over the component, in robust
    # SDs of the difference image in normal-appearing tissue (subtraction-image thresholding at
    # mean + k SD: Ganiler et al. 2014 Neuroradiology 56:363; Moraal et al. 2010 Radiology 255:154).
    flair_rise_min_sd: float = 2.0
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
    # likelihood is flat in alpha there, its Hessian is singular, and Poisson is the same model
    # (Hilbe 2011, Negative Binomial Regression, 2nd ed.).
    negbin_min_alpha: float = 1e-6
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
