"""Synthetic phantom cohort with ground truth: the test bed the pipeline is measured against.

``generate_cohort(out_dir, truth_dir=None, preset="ci", n_subjects=None, seed=None, **overrides)``
(or ``python -m pipeline phantom``) writes a BIDS raw dataset (T1w and FLAIR at baseline, m06
and m12 per subject; participants.tsv with arm, washout_days, next_dmt, relapse counts) and, in
a sibling ``<out_dir>-truth``, the truth: lesion label maps, brain masks and tissue maps on each
session's native T1w grid, per-lesion tables with classes per interval, head positions
(``anat_to_world``), the truth endpoints table and every generator parameter (phantom.json).

Presets (:data:`~pipeline.phantom.config.PRESETS`):

=======  ========  =====  ===============================================================
preset   subjects  voxel  notes
=======  ========  =====  ===============================================================
ci       4         2 mm   lesions >= 8 mm across, 1/4 of sessions LAS/LPS/oblique; seconds
demo     6         1.5mm  1/3 of subjects 2-D FLAIR (1.5x1.5x3 mm), 1/3 of sessions non-RAS
trial    50        1 mm   25 per arm (the 2016 study), 30 % 2-D FLAIR, 30 % non-RAS
=======  ========  =====  ===============================================================

Two head models (``anatomy``): the analytic head below (the one the methods were developed on)
and ``mni152`` (:mod:`~.template`): real averaged anatomy, the MNI152 2009a tissue maps nilearn
ships, with a skull, scalp, face and neck of its own, a scanner protocol per subject
(:data:`~pipeline.phantom.config.CONTRAST_PROTOCOLS`) and a storage encoding per session
(:data:`~pipeline.phantom.config.ENCODINGS`): the outside test bed. Both share the lesion
model, the acquisition and the truth.

Realism, each a :class:`~pipeline.phantom.config.PhantomParams` field with its default and source
beside it:

- anatomy (:mod:`~.anatomy`): deformed-ellipsoid head (``brain_semi_axes_mm``, per-subject
  ``brain_size_sd``/``brain_axis_sd``, ``brain_shape_deform_mm``) with scalp, skull and CSF
  shells (``scalp_mm``, ``skull_mm``, ``outer_csf_mm``), a folded cortical ribbon
  (``cortex_mm``, sulci from a random field: ``fold_sigma_mm``, ``sulcus_depth_mm``,
  ``sulcus_half_width_mm``; interhemispheric fissure), lateral ventricles
  (``ventricle_scale_range``), thalamus/caudate/lentiform deep GM, tissue ``texture_sd``;
  ``skull_stripped`` mode; atrophy ``brain_atrophy_pct_per_year``,
  ``ventricle_growth_pct_per_year``;
- contrasts: ``t1_*`` (WM 1.0 > deep GM 0.78 > GM 0.65 > CSF 0.25; scalp fat bright, skull dark)
  and ``flair_*`` (GM 0.8 > WM 0.6, CSF 0.15); lesions ``flair_lesion_ratio`` 1.3-1.6 x WM,
  T1 ``t1_lesion_iso`` (between GM and WM) or ``t1_black_hole`` (below GM);
- lesions (:mod:`~.lesions`): ``baseline_lesions`` 5-40 ellipsoids of ``lesion_diameter_mm``
  3-20 mm (``location_probabilities`` periventricular / deep WM / juxtacortical) with
  supersampled partial-volume edges (``lesion_supersample_mm``); per interval new (some
  touching an old lesion: ``touching_fraction``; some black holes: ``new_hypo_fraction``),
  enlarging (``enlarge_volume_gain``), shrinking (``shrink_volume_loss``), resolving and
  turning-hypointense lesions;
- cohort (:mod:`~.cohort`): two ``arms`` with per-interval rates after Weinstock-Guttman et al.
  2016 (``new_t2_rate``, ``turning_hypo_rate``, ``enlarging_rate``), ``washout_days_range`` and
  ``next_dmt_activity`` modulating activity, Poisson relapses (``relapse_rate_0_3m``,
  ``relapse_rate_3_12m``);
- acquisition (:mod:`~.acquisition`): head pose per session (``max_rotation_deg``,
  ``max_translation_mm``), bias field (``bias_amplitude``), Rician noise (``snr``), global
  scaling (``intensity_scale_range``), 2-D FLAIR (``thick_flair_fraction``, ``flair_slice_mm``)
  and LAS/LPS/oblique storage (``non_ras_fraction``, ``oblique_max_deg``).

Truth classes follow the pipeline's rules (:mod:`pipeline.contract`) with the thresholds of
:class:`pipeline.params.LesionParams` (see :mod:`~.truth`). Same seed and options give
byte-identical files; :mod:`~.preview` draws a PNG montage per subject; :mod:`~.evaluate`
(``python -m pipeline evaluate``) scores a pipeline run against the truth.
"""

from pipeline.phantom.cohort import DEFAULT_SEED, cohort_layout, generate_cohort
from pipeline.phantom.config import INTERVALS, PRESETS, SESSIONS, PhantomParams, preset_params

__all__ = ["DEFAULT_SEED", "INTERVALS", "PRESETS", "SESSIONS", "PhantomParams", "cohort_layout",
           "generate_cohort", "preset_params"]
