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

    flair_z_threshold: float = 3.0  # FLAIR hyperintensity vs normal-appearing WM, in robust SDs
    min_component_volume_mm3: float = 3.0  # drop single-voxel noise before any counting
    t1hypo_min_volume_mm3: float = 10.0  # a black hole must be at least ~3 mm across
    seed: int = 20160601

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(self.flair_z_threshold > 0, n, "flair_z_threshold", self.flair_z_threshold, "> 0")


@dataclass(frozen=True)
class LesionParams:
    """Longitudinal lesion rules per interval (new, enlarging, new T1-hypointense).

    These also define the phantom's ground-truth classes, so truth and pipeline count by one rule.
    """

    # New T2 lesion: >= 10 mm^3 (about a 3 mm sphere, 14 mm^3; MAGNIMS 2016 uses 3 mm in-plane).
    min_new_lesion_volume_mm3: float = 10.0
    # The earlier mask is grown by this much before testing overlap (lesiontrack/mscard: 1 voxel).
    new_lesion_dilation_mm: float = 1.0
    # Enlarging: growth >= both thresholds (ANIMA/MSSEG-2 uses > 12 mm^3 and a 0.5 ratio).
    enlarging_min_increase_mm3: float = 12.0
    enlarging_min_increase_pct: float = 50.0
    min_t1hypo_volume_mm3: float = 10.0

    def __post_init__(self) -> None:
        n = type(self).__name__
        for name in ("min_new_lesion_volume_mm3", "enlarging_min_increase_mm3",
                     "enlarging_min_increase_pct", "min_t1hypo_volume_mm3"):
            v = getattr(self, name)
            _require(v >= 0, n, name, v, ">= 0")
        _require(self.new_lesion_dilation_mm >= 0, n, "new_lesion_dilation_mm",
                 self.new_lesion_dilation_mm, ">= 0")


@dataclass(frozen=True)
class StatsParams:
    """Cohort statistics."""

    alpha: float = 0.05  # two-sided significance level for the 95 % CIs
    min_subjects_per_arm: int = 2  # below this a model is not fitted and the row says why
    # Negative binomial (NB2) dispersion below which the data show no overdispersion: the NB
    # likelihood is flat in alpha there, its Hessian is singular, and Poisson is the same model
    # (Hilbe 2011, Negative Binomial Regression, sec. 7.2).
    negbin_min_alpha: float = 1e-6
    max_iterations: int = 500  # BFGS iterations for NB, IRLS iterations for the Poisson GLM
    # Hodges-Lehmann CI: exact null distribution of U up to this many pairs (n_a * n_b), normal
    # approximation above (Hollander & Wolfe 1999, sec. 4.3); exact is cheap up to 50 x 50.
    hodges_lehmann_exact_max_pairs: int = 2500
    plot_seed: int = 20160601  # horizontal jitter of the report's strip plots

    def __post_init__(self) -> None:
        n = type(self).__name__
        _require(0 < self.alpha < 1, n, "alpha", self.alpha, "in (0, 1)")
        _require(self.min_subjects_per_arm >= 2, n, "min_subjects_per_arm",
                 self.min_subjects_per_arm, ">= 2 (a variance needs two subjects)")
        _require(self.negbin_min_alpha >= 0, n, "negbin_min_alpha", self.negbin_min_alpha, ">= 0")
        _require(self.max_iterations >= 1, n, "max_iterations", self.max_iterations, ">= 1")
        _require(self.hodges_lehmann_exact_max_pairs >= 0, n, "hodges_lehmann_exact_max_pairs",
                 self.hodges_lehmann_exact_max_pairs, ">= 0")
