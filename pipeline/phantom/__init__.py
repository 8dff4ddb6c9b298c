"""Synthetic phantom cohort with ground truth: the test bed the pipeline is measured against.

``generate_cohort(out_dir, truth_dir=None, preset="ci", n_subjects=None, seed=None, **overrides)``
writes a BIDS raw dataset (T1w and FLAIR at baseline, m06, m12 per subject; participants.tsv
with arm, washout_days, next_dmt, relapse counts) and, in a sibling ``<out_dir>-truth``, the
truth: lesion label maps, brain masks and tissue maps on each session's native T1w grid,
per-lesion tables with classes per interval, head positions (``anat_to_world``), the truth
endpoints table and every generator parameter (phantom.json).

Modules: :mod:`~pipeline.phantom.config` (parameters and presets), :mod:`~.anatomy` (analytic
head model), :mod:`~.lesions` (placement, history, partial-volume rasterisation),
:mod:`~.acquisition` (pose, storage grids, bias, Rician noise), :mod:`~.truth` (classes and
endpoints by :class:`pipeline.params.LesionParams`), :mod:`~.cohort` (clinical covariates, files),
:mod:`~.preview` (PNG montages), :mod:`~.cli` (``python -m pipeline phantom``).
"""

from pipeline.phantom.cohort import DEFAULT_SEED, cohort_layout, generate_cohort
from pipeline.phantom.config import INTERVALS, PRESETS, SESSIONS, PhantomParams, preset_params

__all__ = ["DEFAULT_SEED", "INTERVALS", "PRESETS", "SESSIONS", "PhantomParams", "cohort_layout",
           "generate_cohort", "preset_params"]
