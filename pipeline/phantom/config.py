"""Generator parameters of the phantom cohort and its three presets.

Every number the generator uses is a field of :class:`PhantomParams`, with its unit in its name
and its source or reason in a comment; ``phantom.json`` records them all. Presets are named sets
of overrides (:data:`PRESETS`); ``generate_cohort(..., **overrides)`` and the CLI apply further
overrides by field name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pipeline.errors import InputError

#: Session labels and months since baseline (the study's MRI schedule).
SESSIONS: tuple[str, ...] = ("baseline", "m06", "m12")
SESSION_MONTHS: tuple[float, ...] = (0.0, 6.0, 12.0)
#: Intervals scored by the study, in the order of truth_endpoints.tsv.
INTERVALS: tuple[tuple[str, str], ...] = (("baseline", "m06"), ("m06", "m12"), ("baseline", "m12"))

#: Next therapies after natalizumab named in the study and its critique.
NEXT_DMTS: tuple[str, ...] = ("interferon", "glatiramer", "fingolimod", "dimethyl_fumarate",
                              "teriflunomide", "rituximab")


def _require(cond: bool, name: str, value: Any, expect: str) -> None:
    if not cond:
        raise InputError(f"PhantomParams.{name}={value!r} is invalid: expected {expect}")


@dataclass(frozen=True)
class PhantomParams:
    """All parameters of the synthetic cohort (anatomy, lesions, acquisition, clinical data).

    Lengths in mm, times in months or years as named, intensities relative to white matter (WM)
    of the same contrast unless named otherwise. Per-arm tuples are in the order of ``arms``;
    per-interval tuples are (baseline->m06, m06->m12).
    """

    # --- cohort -----------------------------------------------------------------------------
    n_subjects: int = 4
    arms: tuple[str, str] = ("IDG", "TG")  # immediate discontinuation, taper (the 2016 study)
    rescan: bool = False  # same anatomy and lesions in every session; only acquisition differs

    # --- anatomy source ---------------------------------------------------------------------
    anatomy: str = "analytic"  # "analytic" (pipeline.phantom.anatomy) or "mni152" (.template)
    template_scale_range: tuple[float, float] = (0.84, 0.95)
    # ^ linear scale of the MNI152 brain (1.7 L of GM + WM + CSF hull) to adult brains of about
    #   1.0-1.45 L (the template is an enlarged average, Fonov et al. 2011)
    template_deform_mm: float = 2.5  # smooth per-subject displacement of the template (mm)
    template_skull_mm: tuple[float, float] = (4.0, 8.0)  # calvarium thickness, varying smoothly
    template_scalp_mm: tuple[float, float] = (3.0, 8.0)  # scalp thickness, varying smoothly
    # Per-subject scanner protocol (CONTRAST_PROTOCOLS); empty: the contrasts below for all.
    # Subjects with a thick-slice FLAIR draw a 2-D protocol, the others a 3-D one.
    contrast_protocols: tuple[str, ...] = ()
    # How each session's images are stored, drawn per session from these (ENCODINGS).
    encodings: tuple[str, ...] = ("int16",)

    # --- grid -------------------------------------------------------------------------------
    voxel_mm: float = 1.0  # isotropic T1w voxel
    fov_mm: tuple[float, float, float] = (180.0, 216.0, 180.0)  # T1w field of view (x, y, z)
    skull_stripped: bool = False  # zero outside the truth brain mask (a pre-stripped dataset)
    field_spacing_mm: float = 2.0  # grid of the smooth random fields (folding, texture, shape)

    # --- anatomy (anatomy frame: RAS mm, origin at the brain centre) ------------------------
    brain_semi_axes_mm: tuple[float, float, float] = (64.0, 80.0, 58.0)  # adult cerebrum ~13x16x12 cm
    brain_size_sd: float = 0.04  # per-subject relative SD of the brain size (ICV CV ~10 %)
    brain_axis_sd: float = 0.03  # per-axis relative SD on top of the overall size
    brain_inferior_flattening: float = 0.82  # z semi-axis factor below the centre (flat base)
    brain_shape_deform_mm: float = 3.0  # amplitude of the smooth deformation of the ellipsoid
    outer_csf_mm: float = 2.0  # subarachnoid CSF between cortex and skull
    skull_mm: float = 6.0  # typical adult calvarium 5-7 mm
    scalp_mm: float = 6.0
    cortex_mm: float = 2.6  # cortical thickness (Fischl & Dale 2000: 2.5 mm mean)
    sulcus_half_width_mm: float = 0.8  # CSF in a sulcus, each side of its mid-surface
    sulcus_depth_mm: float = 14.0  # mean sulcal depth below the hull (~10-20 mm)
    fold_sigma_mm: float = 3.5  # smoothing of the folding field: sets gyral spacing (~15-20 mm)
    fissure_below_mm: float = 14.0  # interhemispheric fissure reaches down to z=this (corpus callosum)
    ventricle_scale_range: tuple[float, float] = (0.75, 1.4)  # per-subject ventricle size factor
    hindbrain: bool = True  # cerebellum (foliated cortex, WM core) and brainstem below the cerebrum
    texture_sd: float = 0.03  # smooth within-tissue intensity variation (relative)
    texture_sigma_mm: float = 2.0

    # --- atrophy (per year; not applied in a rescan cohort) ---------------------------------
    brain_atrophy_pct_per_year: float = 0.5  # MS brain volume loss ~0.5-1 %/y (De Stefano 2016)
    ventricle_growth_pct_per_year: float = 4.0  # ventricular enlargement in MS ~3-5 %/y

    # --- contrasts (relative to WM of the same contrast) ------------------------------------
    t1_wm: float = 1.0
    t1_gm: float = 0.65
    t1_csf: float = 0.25
    t1_deep_gm: float = 0.78  # thalamus/basal ganglia lie between GM and WM on T1
    t1_skull: float = 0.08  # cortical bone gives almost no signal
    t1_scalp: float = 0.95  # subcutaneous fat is bright on T1
    flair_wm: float = 0.6
    flair_gm: float = 0.8
    flair_csf: float = 0.15  # suppressed fluid
    flair_deep_gm: float = 0.72
    flair_skull: float = 0.05
    flair_scalp: float = 0.55
    t1_muscle: float = 0.55  # neck and face muscle (template head only): between GM and CSF
    flair_muscle: float = 0.3  # muscle is dark on FLAIR (short T2)

    # --- lesions ----------------------------------------------------------------------------
    baseline_lesions: tuple[int, int] = (5, 40)  # inclusive range of baseline lesion count
    lesion_diameter_mm: tuple[float, float] = (3.0, 20.0)  # longest axis, log-uniform
    new_lesion_diameter_mm: tuple[float, float] = (4.0, 12.0)  # new lesions are small
    min_lesion_voxels_across: float = 4.0  # lesion axes below this many T1 voxels are raised
    # ^ a 3.5-voxel sphere's labelled volume varies by up to +-50 % with its sub-voxel position
    lesion_axis_ratio: tuple[float, float] = (0.6, 1.0)  # shorter axes / longest axis
    location_probabilities: tuple[float, float, float] = (0.5, 0.35, 0.15)
    # ^ periventricular, deep_wm, juxtacortical (periventricular lesions dominate in MS)
    lesion_gap_mm: float = 3.0  # minimum surface gap between unrelated lesions (no merging)
    flair_lesion_ratio: tuple[float, float] = (1.3, 1.6)  # lesion FLAIR / WM FLAIR
    t1_lesion_iso: tuple[float, float] = (0.72, 0.92)  # between GM (0.65) and WM (1.0)
    t1_black_hole: tuple[float, float] = (0.35, 0.5)  # darker than GM
    baseline_hypo_fraction: float = 0.2  # baseline lesions that are already black holes
    lesion_supersample_mm: float = 0.34  # sub-sample spacing for partial-volume fractions
    stable_volume_jitter: float = 0.03  # stable lesions change volume by < 3 % (< 10 %)
    enlarge_volume_gain: tuple[float, float] = (0.8, 2.0)  # +80..+200 % volume, concentric
    shrink_volume_loss: tuple[float, float] = (0.45, 0.7)  # -45..-70 % volume
    touching_inside_fraction: tuple[float, float] = (0.1, 0.3)  # of a new_touching lesion's
    # volume lying inside the old lesion (so >= 70 % is outside; the truth needs >= 60 %)
    touching_fraction: float = 0.25  # of new lesions placed touching an existing lesion
    new_hypo_fraction: float = 0.25  # of new lesions that are black holes when they appear

    # --- activity per arm and interval (shaped after Weinstock-Guttman et al. 2016) ---------
    # Mean events per subject in (baseline->m06, m06->m12), for arms[0] (IDG) and arms[1] (TG).
    # IDG: new T2 lesions mostly at 6-12 months, new black holes mostly at 0-6 months; TG: few.
    new_t2_rate: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 2.5), (0.25, 0.35))
    turning_hypo_rate: tuple[tuple[float, float], tuple[float, float]] = ((0.9, 0.2), (0.1, 0.1))
    enlarging_rate: tuple[tuple[float, float], tuple[float, float]] = ((0.6, 0.8), (0.15, 0.15))
    # Per interval, arm-independent; kept low so T2-LV drifts up as in MS cohorts (T2-LV grows
    # ~1-3 %/y on treatment), with only small lesions resolving.
    shrinking_rate: float = 0.15
    resolving_rate: float = 0.08
    resolving_max_diameter_mm: float = 10.0
    activity_dispersion: float = 1.0  # NB2 alpha: var = mu + alpha mu^2 (lesion counts overdisperse)
    washout_days_range: tuple[int, int] = (30, 180)  # 1-6 months in the study
    washout_activity_gain: float = 0.6  # activity x (1 + gain x (washout - 30) / 150)
    # Relative activity under each next therapy (weaker therapy -> more activity), NEXT_DMTS order.
    next_dmt_activity: tuple[float, ...] = (1.0, 1.0, 0.5, 0.7, 0.9, 0.25)
    # Relapses per subject in 0-3 m and 3-12 m, per arm: the study had 20 vs 7 (0-3 m) and
    # 28 vs 8 (0-12 m) relapses in 25 vs 25 patients.
    relapse_rate_0_3m: tuple[float, float] = (20 / 25, 7 / 25)
    relapse_rate_3_12m: tuple[float, float] = (8 / 25, 1 / 25)

    # --- acquisition per session ------------------------------------------------------------
    max_rotation_deg: float = 10.0  # head position: rotation about a random axis
    max_translation_mm: float = 10.0
    bias_amplitude: float = 0.2  # multiplicative bias field within +-20 %
    bias_wavelength_mm: tuple[float, float] = (250.0, 450.0)
    snr: float = 25.0  # WM signal / Rician noise sigma, per contrast
    intensity_scale_range: tuple[float, float] = (0.7, 1.4)  # per-session global scaling
    thick_flair_fraction: float = 0.0  # of subjects whose FLAIR is 2-D on a thick-slice grid
    flair_slice_mm: float = 3.0  # slice thickness of that FLAIR (MAGNIMS 2021: <= 3 mm)
    flair_slice_profile_samples: int = 3  # sub-slices averaged for slice-thickness blurring
    non_ras_fraction: float = 0.0  # of sessions stored LAS, LPS or oblique
    oblique_max_deg: float = 20.0  # tilt of an oblique storage grid

    def __post_init__(self) -> None:
        _require(self.n_subjects >= 1, "n_subjects", self.n_subjects, ">= 1")
        _require(len(self.arms) == 2 and self.arms[0] != self.arms[1]
                 and all(str(a).isalnum() for a in self.arms), "arms", self.arms,
                 "two different alphanumeric labels")
        _require(0.3 <= self.voxel_mm <= 6.0, "voxel_mm", self.voxel_mm, "0.3..6 mm")
        _require(len(self.fov_mm) == 3 and min(self.fov_mm) >= 100, "fov_mm", self.fov_mm,
                 "three extents >= 100 mm (the head must fit)")
        lo, hi = self.baseline_lesions
        _require(0 <= lo <= hi, "baseline_lesions", self.baseline_lesions, "0 <= low <= high")
        for name in ("lesion_diameter_mm", "new_lesion_diameter_mm", "flair_lesion_ratio",
                     "t1_lesion_iso", "t1_black_hole", "enlarge_volume_gain",
                     "shrink_volume_loss", "touching_inside_fraction", "intensity_scale_range",
                     "ventricle_scale_range", "bias_wavelength_mm", "lesion_axis_ratio"):
            v = getattr(self, name)
            _require(len(v) == 2 and 0 <= v[0] <= v[1], name, v, "a (low, high) pair, low <= high")
        _require(self.flair_lesion_ratio[0] > 1.0, "flair_lesion_ratio", self.flair_lesion_ratio,
                 "lesions brighter than WM on FLAIR (> 1)")
        _require(self.t1_black_hole[1] < self.t1_gm, "t1_black_hole", self.t1_black_hole,
                 f"black holes darker than GM (< t1_gm={self.t1_gm})")
        _require(self.t1_gm < self.t1_lesion_iso[0], "t1_lesion_iso", self.t1_lesion_iso,
                 f"iso/mildly hypointense lesions brighter than GM (> t1_gm={self.t1_gm})")
        _require(self.touching_inside_fraction[1] <= 0.4, "touching_inside_fraction",
                 self.touching_inside_fraction, "<= 0.4 (>= 60 % of the new lesion outside)")
        _require(self.shrink_volume_loss[1] < 1.0, "shrink_volume_loss", self.shrink_volume_loss,
                 "< 1 (a lesion losing all its volume is 'resolving')")
        _require(abs(sum(self.location_probabilities) - 1) < 1e-6
                 and len(self.location_probabilities) == 3, "location_probabilities",
                 self.location_probabilities, "three probabilities summing to 1")
        _require(len(self.next_dmt_activity) == len(NEXT_DMTS), "next_dmt_activity",
                 self.next_dmt_activity, f"one value per therapy {NEXT_DMTS}")
        _require(self.snr > 0, "snr", self.snr, "> 0")
        for name in ("thick_flair_fraction", "non_ras_fraction", "touching_fraction",
                     "new_hypo_fraction", "baseline_hypo_fraction"):
            v = getattr(self, name)
            _require(0 <= v <= 1, name, v, "a fraction in [0, 1]")
        _require(self.flair_slice_profile_samples >= 1, "flair_slice_profile_samples",
                 self.flair_slice_profile_samples, ">= 1")
        _require(self.lesion_supersample_mm > 0, "lesion_supersample_mm",
                 self.lesion_supersample_mm, "> 0")
        _require(self.anatomy in ANATOMIES, "anatomy", self.anatomy, f"one of {ANATOMIES}")
        unknown = [c for c in self.contrast_protocols if c not in CONTRAST_PROTOCOLS]
        _require(not unknown, "contrast_protocols", self.contrast_protocols,
                 f"names from {sorted(CONTRAST_PROTOCOLS)}")
        _require(len(self.encodings) >= 1 and all(e in ENCODINGS for e in self.encodings),
                 "encodings", self.encodings, f"one or more of {sorted(ENCODINGS)}")

    def to_json(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return asdict(self)


#: Head models: the analytic one the methods were developed on, and real averaged anatomy.
ANATOMIES = ("analytic", "mni152")

#: Scanner protocols: tissue contrasts relative to WM (T1 WM = 1; FLAIR relative to T1 WM, as
#: the fields above). Representative values spanning the protocols of MS trials: 3-D FLAIR
#: (SPACE/CUBE) suppresses CSF better and, at 3 T, gives a higher lesion/WM contrast than 2-D
#: FLAIR at 1.5 T (Bink et al. 2006 Eur Radiol 16:1104; Wattjes et al. 2006 AJNR 27:1794),
#: while GM/WM contrast on FLAIR is larger for 2-D FLAIR at 1.5 T; T1 GM/WM is lower (more
#: contrast) for MPRAGE at 3 T than for SPGR at 1.5 T. Each names its FLAIR GM/WM ratio in
#: the comment; lesions keep their T1 above GM (iso) or below it (black holes).
CONTRAST_PROTOCOLS: dict[str, dict[str, Any]] = {
    "3T-3D": dict(t1_gm=0.60, t1_csf=0.20, flair_wm=0.6, flair_gm=0.66, flair_csf=0.06,
                  flair_lesion_ratio=(1.5, 2.0)),  # FLAIR GM/WM 1.10
    "1.5T-3D": dict(t1_gm=0.68, t1_csf=0.28, flair_wm=0.6, flair_gm=0.72, flair_csf=0.10,
                    flair_lesion_ratio=(1.35, 1.8), t1_lesion_iso=(0.76, 0.94)),  # GM/WM 1.20
    "3T-2D": dict(t1_gm=0.62, t1_csf=0.22, flair_wm=0.6, flair_gm=0.75, flair_csf=0.12,
                  flair_lesion_ratio=(1.35, 1.8)),  # FLAIR GM/WM 1.25
    "1.5T-2D": dict(t1_gm=0.72, t1_csf=0.30, flair_wm=0.6, flair_gm=0.80, flair_csf=0.16,
                    flair_lesion_ratio=(1.25, 1.6), t1_lesion_iso=(0.8, 0.95)),  # GM/WM 1.33
}

#: Storage of a session's images: (numpy dtype on disk, stored value of T1 WM at scale 1,
#: noise). Magnitude images from scanners are Rician and integer; images written by
#: processing tools (resampling, denoising, other converters) are often float with Gaussian
#: noise and negatives in the background; "scaled" is float data stored as int16 with
#: scl_slope/scl_inter (nibabel chooses them); "uint12" is a 12-bit range in int16.
ENCODINGS: dict[str, tuple[str, float, str]] = {
    "int16": ("int16", 1000.0, "rician"),
    "uint12": ("int16", 1400.0, "rician"),
    "uint16": ("uint16", 22000.0, "rician"),
    "float32": ("float32", 0.7, "gaussian"),
    "scaled": ("int16", 350.0, "gaussian"),
}

#: Named presets: overrides of the defaults above.
PRESETS: dict[str, dict[str, Any]] = {
    # The study's design: 25 + 25 subjects at 1 mm, a realistic share of 2-D FLAIR and of
    # non-RAS storage as in a multi-centre archive.
    "trial": dict(n_subjects=50, voxel_mm=1.0, thick_flair_fraction=0.3, non_ras_fraction=0.3),
    # Small enough that the whole workflow runs in minutes on 2 cores, but exercising every
    # input variant (thick-slice FLAIR, LAS/LPS/oblique storage).
    "demo": dict(n_subjects=6, voxel_mm=1.5, thick_flair_fraction=0.34, non_ras_fraction=0.34,
                 baseline_lesions=(5, 25), lesion_diameter_mm=(4.0, 18.0),
                 new_lesion_diameter_mm=(5.0, 12.0)),
    # Seconds to generate; lesions >= 6 mm across so they survive the 2 mm grid.
    "ci": dict(n_subjects=4, voxel_mm=2.0, non_ras_fraction=0.25, baseline_lesions=(5, 12),
               lesion_diameter_mm=(6.0, 16.0), new_lesion_diameter_mm=(6.0, 12.0)),
}


#: Defaults of the template head (applied under a preset's and the caller's overrides): the
#: whole range of protocols and storage, a field of view for a real head with face and neck.
ANATOMY_DEFAULTS: dict[str, dict[str, Any]] = {
    "analytic": {},
    "mni152": dict(contrast_protocols=tuple(CONTRAST_PROTOCOLS),
                   encodings=("int16", "uint12", "uint16", "float32", "scaled"),
                   fov_mm=(180.0, 220.0, 190.0)),
}


def preset_params(preset: str = "ci", **overrides: Any) -> PhantomParams:
    """Parameters of ``preset`` with ``overrides`` (field name -> value) applied.

    Raises
    ------
    InputError
        For an unknown preset or an unknown field name.
    """
    if preset not in PRESETS:
        raise InputError(f"phantom preset {preset!r} is unknown; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(PhantomParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"phantom: unknown parameter(s) {unknown}; known parameters are "
                         f"{sorted(known)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    anatomy = given.get("anatomy", PRESETS[preset].get("anatomy", "analytic"))
    if anatomy not in ANATOMY_DEFAULTS:
        raise InputError(f"phantom anatomy {anatomy!r} is unknown; choose one of {ANATOMIES}")
    values = {**ANATOMY_DEFAULTS[anatomy], **PRESETS[preset], **given}
    return replace(PhantomParams(), **values)


def subject_contrasts(p: PhantomParams, protocol: str | None) -> PhantomParams:
    """``p`` with the tissue contrasts of ``protocol`` (None: unchanged)."""
    return p if protocol is None else replace(p, **CONTRAST_PROTOCOLS[protocol])
