"""Per-session T2/FLAIR lesion and T1-hypointense ("black hole") segmentation in subject space.

Unsupervised, with every threshold in robust standard deviations of the session's own normal
tissue (``pipeline.params.SegmentationParams``); no parameter is fitted to labelled data.

Method
------
1. **Tissue classes from T1.** A three-class Gaussian mixture (CSF < GM < WM) is fitted by EM to
   the T1 histogram inside the brain mask (Ashburner & Friston 2005 NeuroImage 26:839 in its
   simplest, prior-free form). Posteriors >= ``tissue_posterior_min`` select pure-tissue voxels.
2. **Intensity normalisation.** T1 is divided by the WM T1 mode and FLAIR by the mode of
   normal-appearing WM (NAWM) FLAIR, so ``desc-norm`` FLAIR is 1.0 in NAWM in every session
   whatever the scanner's global scale (Shinohara et al. 2014 NeuroImage Clin 6:9, "statistical
   principles": normalise to a reference tissue). The NAWM noise SD is the lower-half MAD of
   FLAIR in NAWM (robust to the hyperintense tail). Residual low-frequency non-uniformity left
   by N4 is removed first by dividing T1 and FLAIR by their smooth fields measured in normal WM
   (Gaussian sigma ``bias_smoothing_mm``; WM-referenced normalisation as in FreeSurfer's
   mri_normalize, Dale et al. 1999 NeuroImage 9:179). Candidates are then excluded and the
   fields and statistics re-estimated (``normalisation_iterations`` passes in all). The
   corrected, normalised T1 is written too (``desc-norm`` T1w, WM = 1): the longitudinal stage
   uses it to confirm new black holes.
3. **Hyperintensity.** Jack et al. 2001 (Stroke 32:1325) threshold FLAIR at a fixed number of SDs
   above normal tissue; LST-LGA (Schmidt et al. 2012 NeuroImage 59:3774) measures FLAIR
   hyperintensity relative to the T1 tissue class of the voxel. Both break down at tissue borders
   where partial volume mixes GM (FLAIR-bright) with WM or CSF, and a three-class model has no GM
   peak when the cortex is thin relative to the voxel. Here the normal FLAIR expected at a voxel
   is read off the session's own distribution of FLAIR given T1 (median and bright-side SD,
   (q75 - q50) / 0.6745, in equal-count T1 bins, lesions excluded): it follows every tissue
   and partial-volume mixture present, and the voxel is scored by

       z = (FLAIR_norm - max median(T1 range)) / max(sd(T1 range), sd_NAWM)

   where the T1 range spans the T1 of the voxel's neighbourhood (``t1_neighbourhood_mm``:
   FLAIR-T1 registration error and different blurring at tissue borders) widened by
   ``t1_uncertainty_sd`` x the T1 noise SD; with ``grey_matter_bound`` the median is also
   bounded below by the CSF-GM-WM mixing lines through the pure-GM vertex of the cortical band
   (:func:`grey_matter_vertex`), since pure GM (thick cortex, cerebellar folia) is a minority
   of its T1 bins when the cortex is thin: over the neighbourhood's T1 range within
   ``cortical_depth_mm`` of the brain surface, at the voxel's own T1 +- noise deeper (so a
   small black hole next to WM is not compared with GM). The score is
   the voxel's excess over the brightest normal tissue compatible with its T1 and with the T1
   around it, in robust SDs of that tissue and never less than the NAWM SD. In pure WM this is
   exactly the NAWM z-score of Jack et al.; in GM it is the excess over GM (the LGA view); CSF
   is excluded implicitly (CSF is dark on FLAIR), which keeps black holes, whose T1 is CSF-like
   but whose FLAIR is bright. T1 and FLAIR are smoothed inside the brain (Gaussian,
   ``smoothing_mm``) before scoring; the z unit is at least the robust SD of unsmoothed NAWM
   FLAIR, so smoothing only suppresses noise and does not sharpen the threshold.
4. **Lesions.** Cores: ``z >= flair_z_threshold`` at least ``edge_margin_mm`` inside the brain
   mask (cortical ribbon edge and mask boundary excluded). Hysteresis: voxels with
   ``z >= flair_z_grow_threshold`` connected (26-connectivity) to a core. Each grown component,
   plus its rim up to ``edge_grow_mm``, is then cut at its half-maximum edge: voxels whose
   normalised FLAIR excess over NAWM reaches ``edge_fraction_of_peak`` of the component's peak
   excess (a lesion/WM partial-volume fraction >= 0.5), connected to the component.
   Components are recomputed with 26-connectivity and those below ``min_component_volume_mm3``
   are dropped.
5. **T1-hypointense.** Inside the T2 lesion mask, T1 (Gaussian-smoothed, sigma
   ``t1hypo_smoothing_mm``, to suppress noise) below ``t1hypo_gm_ratio`` x the T1 of
   normal-appearing GM: black holes are hypointense relative to grey matter (van Walderveen et
   al. 1998 Neurology 50:1282; Sahraian et al. 2010 Eur J Neurol 17:1165; Truyen et al. 1996
   Neurology 47:1469). The GM T1 is that of pure cortical GM (the darker GM on T1), located as
   the vertex of the CSF-GM and GM-WM mixing lines among normal voxels within
   ``cortical_depth_mm`` of the brain surface, see :func:`grey_matter_vertex`; the smoothed T1
   must lie ``t1hypo_margin_sd`` noise SDs below it. Components
   (26-connectivity) below ``t1hypo_min_volume_mm3`` are dropped.
6. **Resolution matching.** A FLAIR voxel integrates signal over its whole extent, so with a
   coarser FLAIR (e.g. 3 mm slices) its partial-volume mixture differs from the 1 mm T1's and
   (T1, FLAIR) pairs leave the tissues' mixing lines. The register stage therefore also writes
   the T1 as the FLAIR grid would have recorded it (``desc-flairres`` T1w:
   :func:`pipeline.registration.t1_at_flair_resolution`, resampled along the FLAIR's own
   path); the FLAIR-given-T1 model and the GM vertex use it (steps 3-4), while tissue classes,
   the WM reference and the black-hole test use the full-resolution T1.
   The z unit (``z_unit``) is the NAWM noise SD when the voxels resolve the cortex (<= 1.25 mm):
   the mixing lines through the measured GM vertex are then the upper edge of normal tissue
   and only noise scatters above it. With a coarse FLAIR no voxel is pure GM, the measured
   vertex lies inside the true mixing triangle, and the unit widens to the bright-side spread
   of normal FLAIR at the voxel's T1; the same holds at 2 mm voxels ("auto" chooses by the
   native voxel sizes).
7. **Joint refinement over sessions** (:func:`longitudinal_refinement`, all sessions of a
   subject in one job). (a) *Rise*: a voxel whose focal FLAIR rose by ``refinement_rise_sd``
   robust SDs against another session where it was normal-appearing WM, and which is
   hyperintense against NAWM here, is a lesion core; cores are grown and edged as in step 4.
   Normal tissue does not change within a subject, so the other session is the reference for
   "normal" at that voxel, which no cross-sectional envelope can be; this finds lesions as
   bright as GM or blurred by partial volume (the two-time-point idea of Jain et al. 2016
   Front Neurosci 10:576; subtraction imaging, Moraal et al. 2010 Radiology 255:154).
   (b) *Persistence*: a lesion of another session whose mean focal FLAIR difference did not
   fall by ``refinement_rise_sd`` SDs is lesion here too where hyperintense and within this
   session's half-maximum edge (of a lesion that changed, its unchanged pieces of at least
   ``persistence_min_piece_mm3`` with a core-level hyperintensity here), so a threshold falling
   differently in one session does not drop or trim a stable lesion (T2-LV change noise), and
   a grown lesion keeps its old part at the earlier session. Every session is compared with every
   other (no session favoured); voxels are only added.

With ``common_brain_mask`` (default) the search region is the intersection of the
space-subject brain masks of all sessions of the subject present in the output directory, so
lesion masks of different sessions are comparable at the brain edge.

Labels of ``desc-lesion`` dseg are connected components (26-connectivity) numbered in C order of
their first voxel (``scipy.ndimage.label`` raster order), hence deterministic.
A user-supplied lesion mask (``--lesion-masks``, native T1 space) replaces steps 4 and 7; it is resampled
into subject space (linear, thresholded at 0.5) and steps 1-3 and 5 still run.

Limitations: cross-sectionally, a lesion whose FLAIR does not exceed the brightest normal tissue
of its T1 by the threshold is not found. For T1 iso/mildly hypointense lesions (T1 between GM
and WM) that tissue is GM/WM partial volume or deep GM, and small black holes blurred by partial
volume reach GM-like T1, so lesions only as bright as GM are missed, especially small ones at 2
mm voxels; the joint refinement recovers those that changed (new, or missed in one session
only), not a faint lesion that is stable and missed in every session. With a coarse FLAIR the
wider z unit lowers sensitivity further. Tissue brighter on FLAIR than most normal tissue of its
T1 (e.g. deep GM among GM/WM partial-volume voxels of the same T1) can be called lesion; such
false positives are stable across sessions and are not counted as new by the longitudinal stage,
which requires a FLAIR rise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from pipeline import io
from pipeline.errors import InputError
from pipeline.imagespace import require_same_grid, resample_to_subject, voxel_sizes
from pipeline.morphology import (
    CONNECTIVITY_26,
    bounding_box,
    dilate_labels,
    dilate_mask,
    face_distance_footprint,
    large_enough,
    neighbourhood_filter,
    remove_small_components,
)
from pipeline.outcome import add_sources_argument, run_step
from pipeline.provenance import write_sidecars
from pipeline.params import SegmentationParams
from pipeline.paths import needing_sidecars, product_path
from pipeline.robust import (
    IQR_HALF_TO_SD,
    histogram_mode,
    lower_half_sd,
    median_and_robust_sd,
    upper_half_sd,
)

#: Tissue class labels of :func:`classify_tissue_t1`.
BACKGROUND, CSF, GM, WM = 0, 1, 2, 3
TISSUE_NAMES = {CSF: "csf", GM: "gm", WM: "wm"}


@dataclass
class TissueModel:
    """Three-class Gaussian mixture of T1 intensities (raw T1 units), classes CSF, GM, WM."""

    means: np.ndarray  # (3,)
    sds: np.ndarray  # (3,)
    weights: np.ndarray  # (3,)

    def posteriors(self, values: np.ndarray) -> np.ndarray:
        """Class posteriors for ``values`` (N,), returned as (N, 3)."""
        x = np.asarray(values, dtype=np.float64)[:, None]
        log_p = (np.log(self.weights) - np.log(self.sds)
                 - 0.5 * ((x - self.means) / self.sds) ** 2)
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)


@dataclass
class SegmentationResult:
    """Everything :func:`segment_session` computes for one session (subject-space arrays)."""

    lesion_mask: np.ndarray  # bool (I, J, K)
    lesion_labels: np.ndarray  # int32 (I, J, K), 0 = background
    t1hypo_mask: np.ndarray  # bool (I, J, K)
    flair_norm: np.ndarray  # float32 (I, J, K), 1.0 = NAWM mode, 0 outside the brain
    tissue: np.ndarray  # uint8 (I, J, K): 0 background, 1 CSF, 2 GM, 3 WM (T1 mixture)
    t1_norm: np.ndarray | None = None  # float32 (I, J, K), 1.0 = WM mode, 0 outside the brain
    qc: dict[str, Any] = field(default_factory=dict)


def _check_volume(name: str, arr: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise InputError(f"{name} must be 3-D, got shape {arr.shape}")
    if shape is not None:
        require_same_grid(arr.shape, None, shape, None,
                          f"{name} has shape {arr.shape}, expected {shape} (all inputs of a "
                          "session must share the subject grid)")
    return arr


def _voxel_size(voxel_size_mm: Any) -> np.ndarray:
    v = np.broadcast_to(np.asarray(voxel_size_mm, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise InputError(f"voxel_size_mm={voxel_size_mm!r} must be three positive sizes in mm")
    return v


def fit_tissue_model(t1_brain: np.ndarray, n_iter: int = 100, bins: int = 512) -> TissueModel:
    """Fit a 3-class Gaussian mixture (CSF, GM, WM) to brain T1 intensities by EM on a histogram.

    Parameters
    ----------
    t1_brain : ndarray of shape (N,)
        T1 intensities of the brain voxels (any scale).

    Returns
    -------
    TissueModel with classes ordered by mean (CSF < GM < WM).
    """
    x = np.asarray(t1_brain, dtype=np.float64)
    if x.size < 100:
        raise InputError(f"brain mask holds only {x.size} voxels; need a whole brain to fit the "
                         "tissue classes (check the desc-brain mask)")
    lo, hi = np.percentile(x, [0.1, 99.9])
    if not hi > lo:
        raise InputError("T1 is constant inside the brain mask; check the desc-preproc T1w image")
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w = counts.astype(np.float64)
    # Deterministic start: terciles-like quantiles of the brain T1 (CSF is the smallest class).
    means = np.percentile(x, [5.0, 40.0, 80.0])
    sds = np.full(3, (hi - lo) / 10.0)
    weights = np.array([0.2, 0.4, 0.4])
    floor = 2.0 * (edges[1] - edges[0])
    for _ in range(n_iter):
        model = TissueModel(means, sds, weights)
        resp = model.posteriors(centres) * w[:, None]
        nk = resp.sum(axis=0) + 1e-12
        new_means = (resp * centres[:, None]).sum(axis=0) / nk
        new_sds = np.sqrt((resp * (centres[:, None] - new_means) ** 2).sum(axis=0) / nk)
        new_sds = np.maximum(new_sds, floor)
        new_weights = nk / nk.sum()
        converged = np.allclose(new_means, means, rtol=0, atol=1e-4 * (hi - lo))
        means, sds, weights = new_means, new_sds, new_weights
        if converged:
            break
    order = np.argsort(means, kind="stable")
    return TissueModel(means[order], sds[order], weights[order])


#: Pure voxels each class needs before its statistics are trusted (WM mode, NAWM noise).
_MIN_PURE_VOXELS = 1000


def pure_tissue_posterior(post: np.ndarray, wanted: float) -> float:
    """The posterior threshold for "pure" tissue: ``wanted``, relaxed towards 0.5 when a
    class has fewer than ``_MIN_PURE_VOXELS`` voxels above it. Blurred or low-contrast T1
    (averaged anatomy, 1.5 T SPGR, thick partial-volumed cortex) overlaps the classes so much
    that few voxels reach 0.9, and the WM statistics would rest on a handful of voxels."""
    thresholds = [wanted] + [t for t in (0.75, 0.6, 0.5) if t < wanted]
    for threshold in thresholds:
        if (post[:, 1:] >= threshold).sum(axis=0).min() >= _MIN_PURE_VOXELS:
            return threshold
    return thresholds[-1]


@dataclass
class FlairGivenT1:
    """Distribution of normal-tissue FLAIR conditional on T1 (normalised units).

    ``median[i]`` and ``sd[i]`` of normalised FLAIR among the voxels of the i-th T1 bin, whose
    median normalised T1 is ``centres[i]``. Bins hold equal numbers of voxels (at least
    ``min_count``, about 0.5 % of the brain), so sparse T1 ranges are not left to a handful of
    voxels that a lesion could dominate. ``sd`` is the upper semi-interquartile range / 0.6745:
    the spread of normal tissue on the bright side, where a lesion would have to stand out,
    robust to a lesion share of up to a quarter of a bin; the dark side mixes in CSF partial
    volume, which cannot be confused with a lesion. Being empirical, the curve follows every
    tissue and partial-volume mixture present (CSF, cortical and deep GM, WM and their borders)
    without assuming a tissue model; detected lesions are excluded on the next iteration.
    """

    centres: np.ndarray  # (B,), increasing
    median: np.ndarray  # (B,)
    sd: np.ndarray  # (B,)

    def envelope(self, t1_lo: np.ndarray, t1_hi: np.ndarray, step: float = 0.005
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Brightest normal median and widest SD for T1 anywhere in ``[t1_lo, t1_hi]``.

        Parameters
        ----------
        t1_lo, t1_hi : ndarray (N,), normalised T1 range compatible with each voxel
        step : float, grid on which the range maxima are taken

        Returns
        -------
        (median, sd), each ndarray (N,)
        """
        grid = np.arange(self.centres[0], self.centres[-1] + step, step)
        i_lo = np.clip(np.rint((t1_lo - grid[0]) / step).astype(np.int64), 0, grid.size - 1)
        i_hi = np.clip(np.rint((t1_hi - grid[0]) / step).astype(np.int64), 0, grid.size - 1)
        i_hi = np.maximum(i_hi, i_lo)
        return (_range_max(np.interp(grid, self.centres, self.median), i_lo, i_hi),
                _range_max(np.interp(grid, self.centres, self.sd), i_lo, i_hi))


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo[n]:hi[n] + 1]) for every n (sparse table, O(log B) levels)."""
    table = [values]
    while (1 << len(table)) <= values.size:
        prev, k = table[-1], 1 << (len(table) - 1)
        table.append(np.maximum(prev[:-k], prev[k:]))
    # level k holds the maxima of runs of 2**k values; every query reads two overlapping runs
    levels = np.zeros((len(table), values.size))
    for k, t in enumerate(table):
        levels[k, :t.size] = t
    level = np.floor(np.log2(hi - lo + 1)).astype(np.int64)
    return np.maximum(levels[level, lo], levels[level, hi - (1 << level) + 1])


def fit_flair_given_t1(t1_norm: np.ndarray, flair_norm: np.ndarray, n_bins: int = 200,
                       min_count: int = 100, max_samples: int = 300_000) -> FlairGivenT1:
    """Per-bin median and bright-side robust SD of normalised FLAIR given normalised T1.

    Parameters
    ----------
    t1_norm, flair_norm : ndarray (N,), normal-appearing brain voxels (lesions excluded)
    n_bins : number of equal-count T1 bins, fewer when that would leave < ``min_count`` each
    max_samples : larger inputs are subsampled with a regular stride (deterministic)

    Returns
    -------
    FlairGivenT1
    """
    t = np.asarray(t1_norm, dtype=np.float64)
    f = np.asarray(flair_norm, dtype=np.float64)
    if t.size > max_samples:  # a regular stride keeps bins of >= 1000 voxels, sorts 3x faster
        step = int(np.ceil(t.size / max_samples))
        t, f = t[::step], f[::step]
    if t.size < 3 * min(min_count, max(t.size // 3, 1)) or t.size < 30:
        raise InputError(f"only {t.size} brain voxels to model FLAIR given T1; check the brain "
                         "mask")
    count = max(min_count, t.size // n_bins) if t.size >= 3 * min_count else t.size // 3
    order = np.argsort(t, kind="stable")
    t, f = t[order], f[order]
    n = t.size // count
    edges = np.linspace(0, t.size, n + 1).astype(int)
    lengths = np.diff(edges)
    centres = np.empty(n)
    med = np.empty(n)
    sd = np.empty(n)
    # bins hold one of two sizes: each size's bins as the rows of one array
    for length in np.unique(lengths):
        rows = np.nonzero(lengths == length)[0]
        members = edges[rows, None] + np.arange(length)
        centres[rows] = np.median(t[members], axis=1)
        m, q75 = np.quantile(f[members], [0.5, 0.75], axis=1)
        med[rows] = m
        sd[rows] = (q75 - m) / IQR_HALF_TO_SD
    # equal T1 values can repeat a centre; np.interp needs strictly increasing abscissae
    centres = np.maximum.accumulate(centres + np.arange(n) * 1e-9)
    return FlairGivenT1(centres, med, sd)


def grey_matter_vertex(t1_norm: np.ndarray, flair_norm: np.ndarray, sd_t1: float,
                       k_sd: float = 3.0) -> tuple[float, float]:
    """Pure grey matter as the vertex of the partial-volume mixing lines in (T1, FLAIR).

    In the cortical band, voxels mix CSF with GM and GM with WM. Mixtures lie on straight lines
    in the (T1, FLAIR) plane (intensities add linearly), so the median FLAIR given T1 rises
    along the CSF-GM line and falls along the GM-WM line; their intersection is pure GM (the
    partial-volume "triangle" of Santago & Gage 1993 IEEE TMI 12:566, seen in two contrasts).
    Each line is fitted to the middle half of its flank, away from the rounded apex where
    three-tissue mixtures blur the corner. This locates GM even when no voxel is pure GM (a
    2-3 mm cortex at 2 mm voxels after resampling), where a T1 mixture model finds no GM peak.

    Parameters
    ----------
    t1_norm, flair_norm : ndarray (N,), unsmoothed normal voxels of the cortical band,
        normalised to WM (T1) and NAWM (FLAIR)
    sd_t1 : robust noise SD of WM T1 (normalised units); T1 within ``k_sd`` of WM is WM

    Returns
    -------
    (t1_gm, flair_gm) in normalised units; NaNs when the two flanks cannot be measured.
    """
    nan = (float("nan"), float("nan"))
    keep = t1_norm <= 1.0 - k_sd * sd_t1
    if keep.sum() < 1000:
        return nan
    curve = fit_flair_given_t1(t1_norm[keep], flair_norm[keep])
    if curve.centres.size < 10:
        return nan
    grid = np.arange(curve.centres[0], curve.centres[-1], 0.005)
    med = ndimage.gaussian_filter1d(np.interp(grid, curve.centres, curve.median), 2.0,
                                    mode="nearest")
    i = int(np.argmax(med))
    apex, t0, t2 = grid[i], grid[0], 1.0
    lines = []
    for lo_t, hi_t in ((t0 + 0.25 * (apex - t0), t0 + 0.75 * (apex - t0)),
                       (apex + 0.25 * (t2 - apex), apex + 0.75 * (t2 - apex))):
        sel = (grid >= lo_t) & (grid <= hi_t)
        if sel.sum() < 3:
            return nan
        lines.append(np.polyfit(grid[sel], med[sel], 1))
    (s1, c1), (s2, c2) = lines
    if not (s1 > 0 and s2 < 0):
        return nan
    t_gm = (c2 - c1) / (s1 - s2)
    if not (t0 < t_gm < t2):
        return nan
    return float(t_gm), float(s1 * t_gm + c1)


def mixing_line_envelope(t1_lo: np.ndarray, t1_hi: np.ndarray, points_t1: np.ndarray,
                         points_flair: np.ndarray) -> np.ndarray:
    """Brightest FLAIR on the piecewise-linear mixing lines through ``points`` for T1 anywhere
    in ``[t1_lo, t1_hi]`` (flat beyond the end points).

    Parameters
    ----------
    t1_lo, t1_hi : ndarray (N,), normalised T1 range of each voxel
    points_t1, points_flair : ndarray (P,), increasing ``points_t1`` (e.g. CSF, GM, WM)

    Returns
    -------
    ndarray (N,)
    """
    env = np.maximum(np.interp(t1_lo, points_t1, points_flair),
                     np.interp(t1_hi, points_t1, points_flair))
    for t, f in zip(points_t1, points_flair):
        env = np.where((t1_lo <= t) & (t <= t1_hi) & (f > env), f, env)
    return env


def _brain_bbox(brain: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    box = bounding_box(brain, margin)
    if box is None:
        raise InputError("the brain mask is empty; check the desc-brain mask of this session")
    return box


class BrainDepth:
    """Depth of voxels inside a mask: distance (mm) from the voxel centre to the mask surface.

    The surface is taken half a voxel beyond the outermost mask voxels' neighbours, i.e. the
    distance to the nearest non-mask voxel centre minus half the smallest voxel size (as an
    exact Euclidean distance transform would give). A k-d tree of the outer layer answers
    queries for a few voxels without a full-volume distance transform.
    """

    def __init__(self, mask: np.ndarray, voxel_size_mm: Any) -> None:
        from scipy.spatial import cKDTree

        self.vox = _voxel_size(voxel_size_mm)
        self.mask = mask
        padded = np.pad(mask, 1)
        outer = ndimage.binary_dilation(padded, structure=CONNECTIVITY_26) & ~padded
        pts = (np.column_stack(np.nonzero(outer)) - 1) * self.vox
        self.tree = cKDTree(pts) if len(pts) else None

    def band(self, max_mm: float, work_mm: float = 2.0) -> np.ndarray:
        """Mask voxels within ``max_mm`` of the surface (a distance transform on a grid of about
        ``work_mm``, enough for a band several mm wide); bool array, shape of the mask."""
        f = np.maximum(1, np.round(work_mm / self.vox).astype(int))
        shape = self.mask.shape
        padded = tuple(int(np.ceil(n / k) * k) for n, k in zip(shape, f))
        m = np.pad(self.mask, [(0, p - n) for p, n in zip(padded, shape)]).astype(np.float32)
        coarse = m.reshape(padded[0] // f[0], f[0], padded[1] // f[1], f[1], padded[2] // f[2],
                           f[2]).mean(axis=(1, 3, 5)) >= 0.5
        dist = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=self.vox * f)[
            1:-1, 1:-1, 1:-1] - 0.5 * float((self.vox * f).min())
        near = dist <= max_mm
        for axis, k in enumerate(f):
            near = np.repeat(near, k, axis=axis)
        return near[:shape[0], :shape[1], :shape[2]] & self.mask

    def __call__(self, index: tuple[np.ndarray, ...], max_mm: float = np.inf) -> np.ndarray:
        """Depth (mm) of the voxels ``index`` (a tuple of index arrays, as from np.nonzero).

        Depths beyond ``max_mm`` are returned as ``inf`` (a bounded search is much faster deep
        inside the mask, where every surface point is about equally far).
        """
        if self.tree is None or len(index[0]) == 0:
            return np.full(len(index[0]), np.inf)
        pts = np.column_stack(index) * self.vox
        bound = max_mm + 0.5 * self.vox.min() + 1e-6
        dist, _ = self.tree.query(pts, distance_upper_bound=bound)
        return dist - 0.5 * self.vox.min()


def hysteresis_lesions(z: np.ndarray, flair_norm: np.ndarray, flair_norm_smooth: np.ndarray,
                       core_allowed: np.ndarray, grow_allowed: np.ndarray,
                       params: SegmentationParams, voxel_size_mm: Any,
                       core: np.ndarray | None = None) -> np.ndarray:
    """Lesion mask from a hyperintensity z-map: cores, hysteresis growth, half-maximum edge.

    Parameters
    ----------
    z : float ndarray (I, J, K), FLAIR excess over normal tissue in NAWM robust SDs
    flair_norm : float ndarray (I, J, K), normalised FLAIR (NAWM = 1)
    flair_norm_smooth : float ndarray (I, J, K), the same smoothed (peak estimates)
    core_allowed, grow_allowed : bool ndarray (I, J, K)
    params : SegmentationParams
    voxel_size_mm : sequence of 3 floats
    core : optional bool ndarray (I, J, K), the cores (default ``z >= flair_z_threshold`` where
        ``core_allowed``)

    Returns
    -------
    bool ndarray (I, J, K)

    Notes
    -----
    Edge voxels of a lesion embedded in WM are mixtures ``1 + alpha (L - 1)`` of NAWM (1) and the
    lesion (peak ``L``, the component's maximum smoothed normalised FLAIR). A voxel of the grown
    component or within ``edge_grow_mm`` of it is kept when ``alpha >= edge_fraction_of_peak``,
    i.e. when at least half of it is lesion (the half-maximum contour, matching the usual
    definition of a labelled voxel: partial-volume fraction >= 0.5), and connected to it.
    """
    voxel_volume_mm3 = float(np.prod(_voxel_size(voxel_size_mm)))
    if core is None:
        core = (z >= params.flair_z_threshold) & core_allowed
    low = (z >= params.flair_z_grow_threshold) & (grow_allowed | core)
    labels, n = ndimage.label(low, structure=CONNECTIVITY_26)
    if n == 0:
        return np.zeros(z.shape, bool)
    has_core = np.zeros(n + 1, bool)
    has_core[np.unique(labels[core])] = True
    has_core[0] = False
    labels = np.where(has_core[labels], labels, 0)
    inside = labels > 0
    peak = np.full(n + 1, -np.inf)
    np.maximum.at(peak, labels[inside], flair_norm_smooth[inside])
    peak[0] = np.inf
    # Extend each component by edge_grow_mm so its partial-volume rim can join it (the rim of
    # a black hole looks like GM/WM partial volume and is not reached by the z-growth).
    fp = face_distance_footprint(voxel_size_mm, params.edge_grow_mm)
    near = dilate_labels(labels, fp)
    near = np.where(labels > 0, labels, near)
    excess = peak[near] - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where((near > 0) & (excess > 0), (flair_norm - 1.0) / excess, 0.0)
    keep = (near > 0) & (grow_allowed | (labels > 0)) & (alpha >= params.edge_fraction_of_peak)
    # keep only rim voxels connected to their component, and only components of at least
    # min_component_volume_mm3
    kept, n_kept = ndimage.label(keep, structure=CONNECTIVITY_26)
    touched = np.zeros(n_kept + 1, bool)
    touched[np.unique(kept[(labels > 0) & keep])] = True
    touched &= large_enough(kept, n_kept, params.min_component_volume_mm3, voxel_volume_mm3)
    return touched[kept]


def masked_smooth_field(image: np.ndarray, reference: np.ndarray, sigma_mm: float,
                        voxel_size_mm: Any, work_mm: float = 4.0) -> np.ndarray | None:
    """Smooth local mean of ``image`` over the ``reference`` voxels, defined everywhere.

    ``image`` is averaged over the ``reference`` voxels in blocks of about ``work_mm``, smoothed
    by a Gaussian of ``sigma_mm`` (normalised convolution), continued from the nearest estimate
    where no reference voxel is near, and interpolated back to the full grid.

    Returns
    -------
    float64 ndarray (I, J, K), or None when there is no reference voxel.
    """
    return masked_smooth_fields([image], reference, sigma_mm, voxel_size_mm, work_mm)[0]


def masked_smooth_fields(images: Sequence[np.ndarray], reference: np.ndarray, sigma_mm: float,
                         voxel_size_mm: Any, work_mm: float = 4.0) -> list[np.ndarray | None]:
    """:func:`masked_smooth_field` of several images over one ``reference``; the reference's
    block counts, their smoothing and the nearest-estimate lookup are computed once."""
    shape = reference.shape
    vox = _voxel_size(voxel_size_mm)
    f = np.maximum(1, np.round(work_mm / vox).astype(int))

    def block(a: np.ndarray) -> np.ndarray:
        # block sums (the last block of an axis may be partial, as zero padding would give)
        for axis, k in enumerate(f):
            a = np.add.reduceat(a, np.arange(0, a.shape[axis], k), axis=axis)
        return a

    sigma = sigma_mm / (vox * f)
    den = ndimage.gaussian_filter(block(reference.astype(np.float64)), sigma, mode="constant")
    defined = den > 1e-3 * den.max()

    def nearest_estimate(missing: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(ndimage.distance_transform_edt(missing, return_distances=False,
                                                    return_indices=True))

    shared = nearest_estimate(~defined) if defined.any() and not defined.all() else None
    fields = []
    for image in images:
        num = ndimage.gaussian_filter(block(np.where(reference, image, 0.0)), sigma,
                                      mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            coarse = np.where(defined, num / den, np.nan)
        missing = ~np.isfinite(coarse)
        if missing.all():
            fields.append(None)
            continue
        if missing.any():
            # the reference's lookup unless the image itself is undefined somewhere more
            same = shared is not None and np.array_equal(missing, ~defined)
            coarse = coarse[shared if same else nearest_estimate(missing)]
        fields.append(_upsample_linear(coarse, f, shape))
    return fields


def wm_reference_field(image: np.ndarray, reference: np.ndarray, sigma_mm: float,
                       voxel_size_mm: Any, work_mm: float = 4.0) -> np.ndarray:
    """Smooth multiplicative field of ``image`` measured in reference tissue (normal WM).

    The local mean of ``image`` over ``reference`` (:func:`masked_smooth_field`, Gaussian
    ``sigma_mm``), scaled to 1 at the median of the reference. Dividing by it removes the
    low-frequency intensity non-uniformity left after N4, using WM as the reference tissue (the
    WM-based normalisation of FreeSurfer's mri_normalize; Dale et al. 1999 NeuroImage 9:179).

    Parameters
    ----------
    image : ndarray (I, J, K)
    reference : bool ndarray (I, J, K), normal-appearing WM (lesions excluded)
    sigma_mm : float, Gaussian sigma in mm (0: a constant field of 1)
    voxel_size_mm : sequence of 3 floats
    work_mm : float, block size of the working grid in mm

    Returns
    -------
    float64 ndarray (I, J, K), positive.
    """
    return wm_reference_fields([image], reference, sigma_mm, voxel_size_mm, work_mm)[0]


def wm_reference_fields(images: Sequence[np.ndarray], reference: np.ndarray, sigma_mm: float,
                        voxel_size_mm: Any, work_mm: float = 4.0) -> list[np.ndarray]:
    """:func:`wm_reference_field` of several images (a session's T1 and FLAIR) in one
    reference."""
    shape = reference.shape
    if sigma_mm <= 0 or reference.sum() < 100:
        return [np.ones(shape) for _ in images]
    out = []
    for field in masked_smooth_fields(images, reference, sigma_mm, voxel_size_mm, work_mm):
        if field is None:
            out.append(np.ones(shape))
            continue
        level = np.median(field[reference])
        field = field / level
        out.append(np.clip(field, 0.2, 5.0))
    return out


def _upsample_linear(coarse: np.ndarray, factors: np.ndarray, shape: tuple[int, ...]
                     ) -> np.ndarray:
    """Linear interpolation of block averages (blocks of ``factors`` voxels) back to ``shape``,
    one axis at a time with small interpolation matrices (cheaper than a generic zoom)."""
    out = coarse
    for axis, (k, n) in enumerate(zip(factors, shape)):
        c = out.shape[axis]
        pos = (np.arange(n) + 0.5) / k - 0.5  # fine voxel centres in coarse index units
        pos = np.clip(pos, 0, c - 1)
        i0 = np.minimum(np.floor(pos).astype(int), c - 1)
        i1 = np.minimum(i0 + 1, c - 1)
        w1 = pos - i0
        mat = np.zeros((n, c))
        mat[np.arange(n), i0] += 1 - w1
        mat[np.arange(n), i1] += w1
        out = np.moveaxis(np.tensordot(mat, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out


def smooth_in_mask(image: np.ndarray, mask: np.ndarray, sigma_mm: float, voxel_size_mm: Any
                   ) -> np.ndarray:
    """Gaussian smoothing restricted to ``mask`` (normalised convolution: no background bleed).

    Parameters
    ----------
    image : ndarray (I, J, K)
    mask : bool ndarray (I, J, K)
    sigma_mm : float, Gaussian sigma in mm (0: no smoothing)
    voxel_size_mm : sequence of 3 floats

    Returns
    -------
    float64 ndarray (I, J, K); values outside ``mask`` are 0.
    """
    return smooth_each_in_mask([image], mask, sigma_mm, voxel_size_mm)[0]


def smooth_each_in_mask(images: Sequence[np.ndarray], mask: np.ndarray, sigma_mm: float,
                        voxel_size_mm: Any) -> list[np.ndarray]:
    """:func:`smooth_in_mask` of several images in one mask; the smoothed mask (the
    normalisation's denominator) is computed once for all of them."""
    images = [np.asarray(image, dtype=np.float64) for image in images]
    if sigma_mm <= 0:
        return [np.where(mask, image, 0.0) for image in images]
    sigma = sigma_mm / _voxel_size(voxel_size_mm)
    m = mask.astype(np.float64)
    den = ndimage.gaussian_filter(m, sigma, mode="constant")
    inside = mask & (den > 1e-6)
    out = []
    for image in images:
        num = ndimage.gaussian_filter(image * m, sigma, mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(inside, num / den, 0.0))
    return out


def t1_hypointense_mask(t1: np.ndarray, lesion_mask: np.ndarray, gm_t1: float,
                        voxel_size_mm: Any, params: SegmentationParams,
                        noise_sd: float = 0.0) -> np.ndarray:
    """Black holes: lesion voxels whose smoothed T1 is below ``t1hypo_gm_ratio`` x GM mean T1.

    Parameters
    ----------
    t1 : ndarray (I, J, K), any scale (same as ``gm_t1``)
    lesion_mask : bool ndarray (I, J, K), T2 lesions
    gm_t1 : float, T1 of normal-appearing grey matter
    noise_sd : float, noise SD of the smoothed T1 (same units); the smoothed T1 must lie
        ``t1hypo_margin_sd`` of them below the GM reference, so GM-like tissue is not called
        hypointense by noise alone
    voxel_size_mm : sequence of 3 floats
    params : SegmentationParams

    Returns
    -------
    bool ndarray (I, J, K), components >= ``t1hypo_min_volume_mm3`` (26-connectivity).
    """
    vox = _voxel_size(voxel_size_mm)
    out = np.zeros(lesion_mask.shape, bool)
    if not lesion_mask.any():
        return out
    margin = int(np.ceil(3 * params.t1hypo_smoothing_mm / vox.min())) + 1
    sl = _brain_bbox(lesion_mask, margin=margin)
    t1_crop = np.asarray(t1[sl], dtype=np.float64)
    if params.t1hypo_smoothing_mm > 0:
        t1_crop = ndimage.gaussian_filter(t1_crop, params.t1hypo_smoothing_mm / vox, mode="nearest")
    limit = params.t1hypo_gm_ratio * gm_t1 - params.t1hypo_margin_sd * noise_sd
    hypo = lesion_mask[sl] & (t1_crop < limit)
    hypo, _, _ = remove_small_components(hypo, params.t1hypo_min_volume_mm3, float(np.prod(vox)))
    out[sl] = hypo
    return out


def resolve_z_unit(params: SegmentationParams, flair_voxel_mm: Any, t1_voxel_mm: Any) -> str:
    """The hyperintensity z unit ("noise" or "tissue") for ``params.z_unit`` and the native voxel
    sizes: "auto" is "noise" when the longest voxel edge of both images is at most
    ``noise_unit_max_voxel_mm``, else "tissue"."""
    if params.z_unit != "auto":
        return params.z_unit
    longest = max(_voxel_size(flair_voxel_mm).max(), _voxel_size(t1_voxel_mm).max())
    return "noise" if longest <= params.noise_unit_max_voxel_mm + 1e-6 else "tissue"


@dataclass
class _SessionImages:
    """One session on the brain's bounding box ``sl`` of the subject grid (step 1-4 inputs).

    ``*_v`` and the smoothed images are vectors over the brain voxels ``b`` of the crop, in the
    images' own (bias-corrected, any global scale) units; ``t1m_*`` is the T1 at the FLAIR's
    resolution (the T1 itself when none is given).
    """

    shape: tuple[int, ...]  # the full subject grid
    sl: tuple[slice, ...]  # crop of the subject grid around the brain
    b: np.ndarray  # bool, brain mask on the crop
    vox: np.ndarray  # (3,) voxel size, mm
    vv: float  # voxel volume, mm3
    z_unit: str  # "noise" or "tissue", see resolve_z_unit
    t1_raw: np.ndarray  # float64 T1 on the crop
    fl_raw: np.ndarray  # float64 FLAIR on the crop
    t1v: np.ndarray  # T1 at the brain voxels
    flv: np.ndarray  # FLAIR at the brain voxels
    t1s: np.ndarray  # T1 smoothed inside the brain (smoothing_mm), brain voxels
    fls: np.ndarray  # FLAIR smoothed likewise
    t1m_raw_v: np.ndarray  # T1 at the FLAIR's resolution, brain voxels
    t1ms_raw: np.ndarray  # the same smoothed
    depth: BrainDepth  # depth below the brain surface
    t1_fp: np.ndarray  # footprint of the T1 neighbourhood (t1_neighbourhood_mm)
    band: np.ndarray  # bool, brain voxels within cortical_depth_mm of the surface


@dataclass
class _TissueClasses:
    """Step 1: the three-class T1 mixture over the brain voxels and its pure-tissue voxels."""

    model: TissueModel
    post: np.ndarray  # (N, 3) class posteriors (CSF, GM, WM) of the brain voxels
    hard: np.ndarray  # (N,) most probable class, 0 CSF, 1 GM, 2 WM
    pmin: float  # posterior that makes a voxel pure tissue
    wm_interior: np.ndarray  # (N,) bool, pure WM eroded with 26-connectivity


@dataclass
class _Normalisation:
    """Step 2, one pass: images divided by their WM reference fields, and the NAWM statistics.

    ``t1v``, ``flv``, ``t1s``, ``t1mv`` are corrected but in image units; ``t1n`` (smoothed T1
    at the FLAIR's resolution) and ``fln`` (smoothed FLAIR) are normalised to WM = 1.
    """

    excl: np.ndarray  # (N,) bool, current lesions and their rim, excluded from the statistics
    sel: np.ndarray  # (N, 3) bool, pure tissue outside excl
    counts: np.ndarray  # (3,) pure-tissue voxel counts
    core_wm: np.ndarray  # (N,) bool, NAWM interior for noise estimates
    field_t1: np.ndarray  # (N,) T1 non-uniformity field
    t1v: np.ndarray
    flv: np.ndarray
    t1s: np.ndarray
    t1mv: np.ndarray
    wm_t1: float  # WM T1 mode, image units
    nawm_flair: float  # NAWM FLAIR mode, image units
    sd_fl: float  # robust SD of unsmoothed NAWM FLAIR, normalised units
    sd_t1: float  # noise SD of the smoothed T1 in the NAWM interior, normalised units
    t1n: np.ndarray
    fln: np.ndarray


@dataclass
class _BlackHoles:
    """Step 5: the T1-hypointense mask and the grey-matter reference it was tested against."""

    mask: np.ndarray  # bool (I, J, K)
    gm_t1: float  # pure cortical GM T1, image units
    gm_t1_norm: float  # the same, WM = 1
    gm_flair_norm: float  # FLAIR of the GM vertex, NAWM = 1 (NaN without a vertex)
    noise_t1: float  # noise SD of T1 smoothed like the test, image units
    limit_norm: float  # T1 below which a lesion voxel is hypointense, WM = 1


def _check_session_inputs(t1: np.ndarray, flair: np.ndarray, brain: np.ndarray,
                          voxel_size_mm: Any
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Input checks: 3-D T1, FLAIR and brain mask on one grid, finite inside the brain, and
    three positive voxel sizes. Returns the arrays, the brain as bool, and the voxel size (mm)."""
    t1 = _check_volume("t1", t1)
    flair = _check_volume("flair", flair, t1.shape)
    brain = _check_volume("brain", brain, t1.shape) > 0
    vox = _voxel_size(voxel_size_mm)
    for name, arr in (("t1", t1), ("flair", flair)):
        if not np.all(np.isfinite(arr[brain])):
            raise InputError(f"{name} has non-finite values inside the brain mask; rerun "
                             "preprocessing for this session")
    return t1, flair, brain, vox


def _session_images(t1: np.ndarray, flair: np.ndarray, brain: np.ndarray, vox: np.ndarray,
                    params: SegmentationParams, t1_flair_resolution: np.ndarray | None,
                    flair_voxel_mm: Any, t1_voxel_mm: Any) -> _SessionImages:
    """The z unit, the crop around the brain, the images smoothed inside the brain
    (``smoothing_mm``) and the brain's depth and cortical band (``cortical_depth_mm``)."""
    vv = float(np.prod(vox))
    z_unit = resolve_z_unit(params, vox if flair_voxel_mm is None else flair_voxel_mm,
                            vox if t1_voxel_mm is None else t1_voxel_mm)
    sl = _brain_bbox(brain, margin=int(np.ceil(3 * params.smoothing_mm / vox.min())) + 1)
    b = brain[sl]
    t1_raw = np.asarray(t1[sl], dtype=np.float64)
    fl_raw = np.asarray(flair[sl], dtype=np.float64)
    # Tissue classes and tissue intensities come from the unsmoothed images (pure voxels);
    # detection runs on lightly smoothed images (noise suppression before thresholding). The
    # same kernel on T1 and FLAIR keeps partial-volume mixtures on the normal-tissue curve.
    t1v = t1_raw[b]
    flv = fl_raw[b]
    to_smooth = [t1_raw, fl_raw]
    if t1_flair_resolution is not None:
        t1m = np.asarray(_check_volume("t1_flair_resolution", t1_flair_resolution, t1.shape)[sl],
                         dtype=np.float64)
        if not np.all(np.isfinite(t1m[b])):
            raise InputError("t1_flair_resolution has non-finite values inside the brain mask; "
                             "rerun the register stage for this session")
        to_smooth.append(t1m)
    smoothed = [image[b] for image in smooth_each_in_mask(to_smooth, b, params.smoothing_mm, vox)]
    t1s, fls = smoothed[:2]
    if t1_flair_resolution is None:
        t1m_raw_v, t1ms_raw = t1v, t1s
    else:
        t1m_raw_v, t1ms_raw = t1m[b], smoothed[2]
    depth = BrainDepth(b, vox)
    t1_fp = face_distance_footprint(vox, params.t1_neighbourhood_mm)
    band = depth.band(params.cortical_depth_mm)[b]
    return _SessionImages(t1.shape, sl, b, vox, vv, z_unit, t1_raw, fl_raw, t1v, flv, t1s, fls,
                          t1m_raw_v, t1ms_raw, depth, t1_fp, band)


def _tissue_classes(s: _SessionImages, params: SegmentationParams) -> _TissueClasses:
    """Step 1, tissue classes from T1: the mixture fitted to the unsmoothed T1 of the brain, the
    pure-tissue posterior (``tissue_posterior_min``) and the interior of pure WM."""
    model = fit_tissue_model(s.t1v)
    post = model.posteriors(s.t1v)
    hard = np.argmax(post, axis=1)
    pmin = pure_tissue_posterior(post, params.tissue_posterior_min)
    # Interior of pure WM (26-eroded, so the smoothing kernel saw only WM) for noise estimates.
    pure_img = np.zeros(s.b.shape, bool)
    pure_img[s.b] = post[:, 2] >= pmin
    wm_interior = ndimage.binary_erosion(pure_img, structure=CONNECTIVITY_26)[s.b]
    return _TissueClasses(model, post, hard, pmin, wm_interior)


def _normalise_to_white_matter(s: _SessionImages, tissue: _TissueClasses,
                               lesion_crop: np.ndarray, params: SegmentationParams
                               ) -> _Normalisation:
    """Step 2, one pass of intensity normalisation with the current lesions ``lesion_crop``
    (bool, crop) excluded: residual non-uniformity removed by the WM reference fields
    (``bias_smoothing_mm``), T1 and FLAIR divided by the WM modes, NAWM noise SDs."""
    b, post, pmin = s.b, tissue.post, tissue.pmin
    # Exclude current lesions and their partial-volume rim from the reference statistics.
    excl = dilate_mask(lesion_crop, CONNECTIVITY_26)[b]
    # Residual non-uniformity, referenced to normal WM (the fields are smooth, so dividing
    # the smoothed images by them equals smoothing the corrected images).
    ref_img = np.zeros(b.shape, bool)
    ref_img[b] = (post[:, 2] >= pmin) & ~excl
    field_t1, field_fl = (field[b] for field in wm_reference_fields(
        [s.t1_raw, s.fl_raw], ref_img, params.bias_smoothing_mm, s.vox))
    t1v, flv = s.t1v / field_t1, s.flv / field_fl
    t1s, fls = s.t1s / field_t1, s.fls / field_fl
    t1mv, t1ms = s.t1m_raw_v / field_t1, s.t1ms_raw / field_t1  # at the FLAIR's resolution
    sel = (post >= pmin) & ~excl[:, None]
    counts = sel.sum(axis=0)
    if counts[2] < 50:
        raise InputError(f"only {int(counts[2])} pure white-matter voxels in the brain mask; "
                         "cannot normalise FLAIR (check the T1w contrast and brain mask)")
    wm_t1 = histogram_mode(t1v[sel[:, 2]])
    nawm_flair = histogram_mode(flv[sel[:, 2]])
    if not (wm_t1 > 0 and nawm_flair > 0):
        raise InputError("non-positive white-matter T1 or FLAIR mode; check that the "
                         "images are magnitude images with a zero background")
    # Noise of the smoothed images in the interior of pure NAWM (eroded, so the smoothing
    # kernel saw only WM); falls back to all pure WM when erosion leaves too few voxels.
    core_wm = tissue.wm_interior & ~excl
    if core_wm.sum() < 50:
        core_wm = sel[:, 2]
    # z unit: robust SD of (unsmoothed) NAWM FLAIR, which includes tissue heterogeneity;
    # T1 tolerance: noise of the smoothed T1 that the curve is evaluated at.
    sd_fl = lower_half_sd(flv[sel[:, 2]] / nawm_flair, 1.0)
    t1n = t1ms / wm_t1
    fln = fls / nawm_flair
    sd_t1 = upper_half_sd(t1n[core_wm], float(np.median(t1n[core_wm])))
    return _Normalisation(excl, sel, counts, core_wm, field_t1, t1v, flv, t1s, t1mv, wm_t1,
                          nawm_flair, sd_fl, sd_t1, t1n, fln)


def _normal_flair_envelope(s: _SessionImages, norm: _Normalisation, params: SegmentationParams
                           ) -> tuple[FlairGivenT1, np.ndarray, np.ndarray]:
    """Step 3, the FLAIR-given-T1 model: the normal FLAIR expected at each brain voxel, the
    brightest median and SD of normal FLAIR over the T1 range compatible with the voxel
    (``t1_neighbourhood_mm`` widened by ``t1_uncertainty_sd`` T1 noise SDs), bounded below by
    the grey-matter mixing lines with ``grey_matter_bound``. Returns (model, median, SD),
    normalised units, vectors over the brain voxels."""
    b, t1n, excl = s.b, norm.t1n, norm.excl
    curve = fit_flair_given_t1(t1n[~excl], norm.fln[~excl])
    # T1 values compatible with the voxel: its neighbourhood (FLAIR-T1 registration error
    # and different blurring at tissue borders) widened by the T1 noise.
    tol = params.t1_uncertainty_sd * norm.sd_t1
    t1_img = np.full(b.shape, np.nan)
    t1_img[b] = t1n
    t1_lo = neighbourhood_filter(np.where(b, t1_img, np.inf), s.t1_fp, "min")[b] - tol
    t1_hi = neighbourhood_filter(np.where(b, t1_img, -np.inf), s.t1_fp, "max")[b] + tol
    m_env, s_env = curve.envelope(t1_lo, t1_hi)
    if params.grey_matter_bound:
        # Pure GM is a minority of its T1 bins when the cortex is thin, so the median there
        # is partial volume: bound normal FLAIR below by the CSF-GM-WM mixing lines through
        # the pure-GM vertex of the cortical band. In the cortical band, where GM is next
        # to every voxel, over the neighbourhood's T1 range; deeper, at the voxel's own T1
        # (+- noise) only, so a small black hole next to WM is not compared with GM.
        band, wm_t1 = s.band, norm.wm_t1
        gm_v = grey_matter_vertex(norm.t1mv[band & ~excl] / wm_t1,
                                  norm.flv[band & ~excl] / norm.nawm_flair,
                                  upper_half_sd(norm.t1mv[norm.sel[:, 2]] / wm_t1, 1.0))
        if np.isfinite(gm_v[0]) and curve.centres[0] < gm_v[0] < 1.0:
            lo = np.where(band, t1_lo, t1n - tol)
            hi = np.where(band, t1_hi, t1n + tol)
            m_env = np.maximum(m_env, mixing_line_envelope(
                lo, hi, np.array([curve.centres[0], gm_v[0], 1.0]),
                np.array([curve.median[0], gm_v[1], 1.0])))
    return curve, m_env, s_env


def _hyperintensity_score(s: _SessionImages, norm: _Normalisation, m_env: np.ndarray,
                          s_env: np.ndarray) -> np.ndarray:
    """Step 3, the hyperintensity score z: the smoothed FLAIR's excess over the normal envelope
    in the session's z unit (NAWM noise SD, or at least the envelope's SD for "tissue").
    Returns a float64 image on the crop, 0 outside the brain."""
    z = np.zeros(s.b.shape)
    sd_fl = norm.sd_fl
    unit = max(sd_fl, 1e-6) if s.z_unit == "noise" else np.maximum(s_env, max(sd_fl, 1e-6))
    z[s.b] = (norm.fln - m_env) / unit
    return z


def _cores_and_growth(s: _SessionImages, norm: _Normalisation, m_env: np.ndarray,
                      z: np.ndarray, params: SegmentationParams) -> np.ndarray:
    """Step 4, lesions: cores (``flair_z_threshold``, ``flair_core_min_excess``, at least
    ``edge_margin_mm`` deep) grown and cut at their half-maximum edge
    (:func:`hysteresis_lesions`). Returns a bool mask on the crop."""
    b = s.b
    fl_img = np.zeros(b.shape)
    fl_img[b] = norm.flv / norm.nawm_flair
    fls_img = np.zeros(b.shape)
    fls_img[b] = norm.fln
    # Cores must lie edge_margin_mm inside the brain (depth only where z is high).
    core_allowed = np.zeros(b.shape, bool)
    excess = np.zeros(b.shape)
    excess[b] = norm.fln - m_env
    cand = np.nonzero((z >= params.flair_z_threshold)
                      & (excess >= params.flair_core_min_excess))
    core_allowed[cand] = s.depth(cand, params.edge_margin_mm) >= params.edge_margin_mm
    return hysteresis_lesions(z, fl_img, fls_img, core_allowed, b, params, s.vox)


def _on_subject_grid(s: _SessionImages, values: np.ndarray, dtype: Any) -> np.ndarray:
    """Brain-voxel ``values`` of the crop as an image of the full subject grid, 0 elsewhere."""
    crop = np.zeros(s.b.shape, dtype)
    crop[s.b] = values
    image = np.zeros(s.shape, dtype)
    image[s.sl] = crop
    return image


def _black_holes(s: _SessionImages, tissue: _TissueClasses, norm: _Normalisation,
                 lesion: np.ndarray, t1_norm: np.ndarray, params: SegmentationParams
                 ) -> _BlackHoles:
    """Step 5, T1-hypointense: the pure cortical GM vertex outside the lesions (the T1 mixture's
    GM mean without one), the noise of T1 smoothed like the test (``t1hypo_smoothing_mm``), and
    :func:`t1_hypointense_mask` on the written normalised T1 ``t1_norm`` inside ``lesion``."""
    b, wm_t1, nawm_flair = s.b, norm.wm_t1, norm.nawm_flair
    # GM reference for black holes: the pure cortical GM vertex of the cortical band.
    excl = dilate_mask(lesion[s.sl], CONNECTIVITY_26)[b]
    sd_t1_raw = upper_half_sd(norm.t1v[norm.sel[:, 2]] / wm_t1, 1.0)
    band_na = s.band & ~excl
    gm_t1_norm, gm_flair_norm = grey_matter_vertex(norm.t1v[band_na] / wm_t1,
                                                   norm.flv[band_na] / nawm_flair, sd_t1_raw)
    if not np.isfinite(gm_t1_norm):  # no measurable vertex: fall back to the T1 mixture
        gm_t1_norm = float(tissue.model.means[1] / wm_t1)
        gm_flair_norm = float("nan")
    gm_t1 = gm_t1_norm * wm_t1
    # noise of T1 smoothed like the black-hole test, measured in the interior of pure NAWM
    if params.t1hypo_smoothing_mm == params.smoothing_mm:
        t1_test = norm.t1s  # already smoothed (and corrected) with the same kernel
    elif params.t1hypo_smoothing_mm > 0:
        t1_test = smooth_in_mask(s.t1_raw, b, params.t1hypo_smoothing_mm, s.vox)[b] / norm.field_t1
    else:
        t1_test = norm.t1v
    noise_t1 = upper_half_sd(t1_test[norm.core_wm], float(np.median(t1_test[norm.core_wm])))
    # on the written normalised T1, so that a later pass (longitudinal_refinement) reproduces it
    t1hypo = t1_hypointense_mask(t1_norm, lesion, gm_t1_norm, s.vox, params, noise_t1 / wm_t1)
    t1hypo_limit_norm = (params.t1hypo_gm_ratio * gm_t1
                         - params.t1hypo_margin_sd * noise_t1) / wm_t1
    return _BlackHoles(t1hypo, gm_t1, gm_t1_norm, gm_flair_norm, noise_t1, t1hypo_limit_norm)


def _session_qc(s: _SessionImages, tissue: _TissueClasses, norm: _Normalisation,
                curve: FlairGivenT1, holes: _BlackHoles, lesion: np.ndarray, n_lesions: int,
                lesion_source: str) -> dict[str, Any]:
    """QC record of one session: lesion burden, the tissue references and units of every step,
    the T1 mixture and the FLAIR-given-T1 model."""
    model, hard, vv = tissue.model, tissue.hard, s.vv
    t1hypo, nawm_flair, noise_t1, wm_t1 = holes.mask, norm.nawm_flair, holes.noise_t1, norm.wm_t1
    return {
        "lesion_source": lesion_source,
        "z_unit": s.z_unit,
        "tissue_posterior_used": float(tissue.pmin),
        "n_lesions": int(n_lesions),
        "t2lv_ml": float(lesion.sum() * vv / 1000.0),
        "t1hypo_ml": float(t1hypo.sum() * vv / 1000.0),
        "n_t1hypo": int(ndimage.label(t1hypo, structure=CONNECTIVITY_26)[1]),
        "nawm_flair_mode": float(nawm_flair),
        "nawm_flair_sd_norm": float(norm.sd_fl),
        "wm_t1_mode": float(wm_t1),
        "wm_t1_sd_norm": float(norm.sd_t1),
        "gm_t1": float(holes.gm_t1),
        "gm_t1_norm": float(holes.gm_t1_norm),
        "gm_flair_norm": float(holes.gm_flair_norm),
        "t1hypo_limit_norm": float(holes.limit_norm),
        "t1_noise_sd_norm": float(noise_t1 / wm_t1),
        "t1_mixture": {TISSUE_NAMES[c + 1]: {"mean": float(model.means[c]),
                                             "sd": float(model.sds[c]),
                                             "weight": float(model.weights[c])}
                       for c in range(3)},
        "tissue_flair_norm_median": {
            TISSUE_NAMES[c + 1]: float(np.median(norm.flv[hard == c]) / nawm_flair)
            if np.any(hard == c) else None for c in range(3)},
        "pure_tissue_voxels": {TISSUE_NAMES[c + 1]: int(norm.counts[c]) for c in range(3)},
        "flair_given_t1": {"t1_norm": np.round(curve.centres, 4),
                           "median": np.round(curve.median, 4), "sd": np.round(curve.sd, 4)},
        "voxel_size_mm": [float(v) for v in s.vox],
    }


def segment_session(t1: np.ndarray, flair: np.ndarray, brain: np.ndarray, voxel_size_mm: Any,
                    params: SegmentationParams | None = None,
                    lesion_mask: np.ndarray | None = None,
                    t1_flair_resolution: np.ndarray | None = None,
                    flair_voxel_mm: Any = None, t1_voxel_mm: Any = None) -> SegmentationResult:
    """Segment T2/FLAIR lesions and black holes of one session (all arrays on one grid).

    Steps 1-6 of the module docstring: tissue classes, then ``normalisation_iterations`` passes
    of normalisation, FLAIR-given-T1 envelope, hyperintensity score and cores grown to lesions
    (each pass excluding the lesions of the previous one), then black holes and the QC record.

    Parameters
    ----------
    t1, flair : ndarray (I, J, K), bias-corrected, any global scale
    brain : ndarray (I, J, K), brain mask (non-zero = brain)
    voxel_size_mm : sequence of 3 floats, voxel size along I, J, K in mm
    params : SegmentationParams (defaults when None)
    lesion_mask : optional bool ndarray (I, J, K); when given it is used as the T2 lesion mask
        (components below ``min_component_volume_mm3`` dropped) instead of segmenting.
    t1_flair_resolution : optional ndarray (I, J, K), the T1 degraded to the FLAIR's resolution
        (:func:`pipeline.registration.t1_at_flair_resolution`); the FLAIR-given-T1 model and
        the grey-matter vertex use it, so that a thick-slice FLAIR is compared with a T1 that
        mixes tissues as it does. ``t1`` itself still gives the tissue classes, the WM
        reference and the black-hole test. Default: ``t1``.
    flair_voxel_mm, t1_voxel_mm : optional, the native voxel sizes (mm) of the session's FLAIR
        and T1 (default: ``voxel_size_mm``); with ``params.z_unit == "auto"`` they choose the
        z unit (see :class:`pipeline.params.SegmentationParams`).

    Returns
    -------
    SegmentationResult
    """
    params = params or SegmentationParams()
    t1, flair, brain, vox = _check_session_inputs(t1, flair, brain, voxel_size_mm)
    s = _session_images(t1, flair, brain, vox, params, t1_flair_resolution, flair_voxel_mm,
                        t1_voxel_mm)
    tissue = _tissue_classes(s, params)

    user_mask = None
    if lesion_mask is not None:
        user_mask = _check_volume("lesion_mask", lesion_mask, t1.shape) > 0
        user_mask, _, _ = remove_small_components(user_mask, params.min_component_volume_mm3,
                                                  s.vv)
    lesion_crop = np.zeros(s.b.shape, bool) if user_mask is None else user_mask[s.sl] & s.b
    n_iter = 1 if user_mask is not None else params.normalisation_iterations
    for _ in range(n_iter):
        norm = _normalise_to_white_matter(s, tissue, lesion_crop, params)
        curve, m_env, s_env = _normal_flair_envelope(s, norm, params)
        z = _hyperintensity_score(s, norm, m_env, s_env)
        if user_mask is None:
            lesion_crop = _cores_and_growth(s, norm, m_env, z, params)

    lesion = np.zeros(t1.shape, bool)
    lesion[s.sl] = lesion_crop & s.b
    lesion_labels, n_lesions = ndimage.label(lesion, structure=CONNECTIVITY_26)
    lesion_labels = lesion_labels.astype(np.int32)
    flair_norm = _on_subject_grid(s, norm.flv / norm.nawm_flair, np.float32)
    tissue_img = _on_subject_grid(s, tissue.hard.astype(np.uint8) + 1, np.uint8)
    t1_norm = (_on_subject_grid(s, norm.t1v, np.float64) / norm.wm_t1).astype(np.float32)
    holes = _black_holes(s, tissue, norm, lesion, t1_norm, params)
    qc = _session_qc(s, tissue, norm, curve, holes, lesion, n_lesions,
                     "segmented" if user_mask is None else "user mask")
    return SegmentationResult(lesion, lesion_labels, holes.mask, flair_norm, tissue_img, t1_norm,
                              qc)


@dataclass
class _SubjectSessions:
    """All sessions of a subject on the common brain's bounding box ``sl``, for step 7.

    Lists hold one crop-sized array per session; ``diff_z[(i, j)]`` is the focal FLAIR
    difference of session i minus session j in robust SDs.
    """

    shape: tuple[int, ...]  # the full subject grid
    sl: tuple[slice, ...]
    b: np.ndarray  # bool, common brain mask on the crop
    vox: np.ndarray  # (3,) mm
    vv: float  # mm3
    depth: BrainDepth
    smooth: list[np.ndarray]  # normalised FLAIR smoothed inside the brain (smoothing_mm)
    grown: list[np.ndarray]  # lesion masks grown by 1 mm
    nawm: list[np.ndarray]  # normal-appearing WM of each session
    diff_z: dict[tuple[int, int], np.ndarray]
    z_wm: list[np.ndarray]  # smoothed FLAIR against NAWM, in NAWM SDs


def _normal_wm_reference(results: list[SegmentationResult], sl: tuple[slice, ...],
                         b: np.ndarray, smooth: list[np.ndarray], vox: np.ndarray,
                         params: SegmentationParams) -> list[np.ndarray]:
    """Step 7, the other sessions' normal-tissue reference: the normal-appearing WM of each
    session, smoothed T1 and FLAIR within 2 SDs of the WM modes (bool masks on the crop)."""
    # (a GM/WM border voxel, whose partial volume shifts with atrophy, is not a reference).
    nawm = []
    t1_smooth = smooth_each_in_mask([r.t1_norm[sl] for r in results], b, params.smoothing_mm, vox)
    for r, t1_s, fl_s in zip(results, t1_smooth, smooth):
        nawm.append(b & (np.abs(t1_s - 1.0) <= 2.0 * float(r.qc["wm_t1_sd_norm"]))
                    & (np.abs(fl_s - 1.0) <= 2.0 * float(r.qc["nawm_flair_sd_norm"])))
    return nawm


def _focal_differences(smooth: list[np.ndarray], grown: list[np.ndarray], b: np.ndarray,
                       vox: np.ndarray, params: SegmentationParams
                       ) -> dict[tuple[int, int], np.ndarray]:
    """Step 7, focal FLAIR difference of every pair of sessions in robust SDs (median and MAD
    over brain outside both grown lesion masks, after removing the local level of the
    difference, ``refinement_background_mm``); pairs with under 100 reference voxels are left
    out. Returns float32 maps on the crop keyed (i, j) for s_i - s_j."""
    n = len(smooth)
    # diff_z[(i, j)] = s_i - s_j; the map of (j, i) is its negative (same reference voxels,
    # same level), so each pair is computed once.
    diff_z: dict[tuple[int, int], np.ndarray] = {}
    for i in range(n):
        for j in range(i + 1, n):
            ref = b & ~grown[i] & ~grown[j]
            if ref.sum() < 100:
                continue
            d = smooth[i] - smooth[j]
            centre, sd = median_and_robust_sd(d[ref])
            sd = max(sd, 1e-6)
            # Residual intensity non-uniformity differs between sessions: take the rise
            # against the local level of the difference (Gaussian refinement_background_mm,
            # over voxels that are not candidates), so only focal rises count.
            if params.refinement_background_mm > 0:
                quiet = ref & (np.abs(d - centre) < 2.0 * sd)
                level = masked_smooth_field(d, quiet, params.refinement_background_mm, vox)
                if level is not None:
                    d = d - level
                    centre, sd = median_and_robust_sd(d[ref])
                    sd = max(sd, 1e-6)
            diff_z[(i, j)] = ((d - centre) / sd).astype(np.float32)
            diff_z[(j, i)] = -diff_z[(i, j)]
    return diff_z


def _subject_sessions(results: list[SegmentationResult], brain: np.ndarray, vox: np.ndarray,
                      params: SegmentationParams) -> _SubjectSessions:
    """Step 7 inputs: the crop around the common brain, each session's smoothed FLAIR, grown
    lesions and NAWM, the focal differences of every pair and the FLAIR z against NAWM."""
    sl = _brain_bbox(brain, margin=int(np.ceil(3 * params.smoothing_mm / vox.min())) + 1)
    b = brain[sl]
    smooth = smooth_each_in_mask([r.flair_norm[sl] for r in results], b, params.smoothing_mm,
                                 vox)
    grow_fp = face_distance_footprint(vox, 1.0)
    grown = [dilate_mask(r.lesion_mask[sl], grow_fp) for r in results]
    depth = BrainDepth(b, vox)
    nawm = _normal_wm_reference(results, sl, b, smooth, vox, params)
    diff_z = _focal_differences(smooth, grown, b, vox, params)
    z_wm = [(smooth[i] - 1.0) / max(float(r.qc["nawm_flair_sd_norm"]), 1e-6)
            for i, r in enumerate(results)]
    return _SubjectSessions(results[0].lesion_mask.shape, sl, b, vox, float(np.prod(vox)), depth,
                            smooth, grown, nawm, diff_z, z_wm)


def _rise_lesions(results: list[SegmentationResult], f: _SubjectSessions,
                  params: SegmentationParams) -> tuple[list[np.ndarray], list[int]]:
    """Step 7(a), the rise test: cores that rose by ``refinement_rise_sd`` against a session
    where the voxel was NAWM, hyperintense against NAWM here and ``edge_margin_mm`` deep, grown
    and edged as in step 4. Returns each session's mask (crop) and its added voxel count."""
    # GM or CSF at the other session is not a reference, so no normal-tissue envelope is
    # needed and atrophy at tissue borders cannot rise.
    b, sl, n = f.b, f.sl, len(results)
    masks = []
    added_rise = []
    for i, res in enumerate(results):
        rise_z = np.full(b.shape, -np.inf)
        for j in range(n):
            if (i, j) in f.diff_z:
                rise_z = np.maximum(rise_z, np.where(~f.grown[j] & f.nawm[j], f.diff_z[(i, j)],
                                                     -np.inf))
        z = np.where(b, np.minimum(rise_z, f.z_wm[i]), -np.inf)
        core = (b & ~res.lesion_mask[sl] & (rise_z >= params.refinement_rise_sd)
                & (f.z_wm[i] >= params.flair_z_threshold))
        cand = np.nonzero(core)
        core[cand] = f.depth(cand, params.edge_margin_mm) >= params.edge_margin_mm
        mask = res.lesion_mask[sl] & b
        if core.any():
            fl = np.asarray(res.flair_norm[sl], np.float64)
            mask = mask | hysteresis_lesions(z, fl, f.smooth[i], core, b & np.isfinite(rise_z),
                                             params, f.vox, core=core)
        added_rise.append(int((mask & ~res.lesion_mask[sl]).sum()))
        masks.append(mask)
    return masks, added_rise


def _persist_from(mask: np.ndarray, i: int, j: int, components_j: tuple[np.ndarray, int],
                  flair_norm_i: np.ndarray, f: _SubjectSessions,
                  params: SegmentationParams) -> None:
    """Step 7(b) for one other session ``j``: adds to session ``i``'s ``mask`` (in place) the
    lesions of ``j`` whose mean focal difference did not fall, and the unchanged pieces of
    those that did, where bright here and within this session's half-maximum edge."""
    labels_j, n_j = components_j
    dz = f.diff_z[(i, j)]
    count = np.bincount(labels_j.ravel(), minlength=n_j + 1)
    mean_dz = np.bincount(labels_j.ravel(), weights=dz.ravel(),
                          minlength=n_j + 1) / np.maximum(count, 1)
    keep = mean_dz >= -params.refinement_rise_sd
    keep[0] = False
    # ... cut at this session's half-maximum edge, as its own lesions are
    peak = np.full(n_j + 1, -np.inf)
    inside = labels_j > 0
    np.maximum.at(peak, labels_j[inside], f.smooth[i][inside])
    excess = np.maximum(peak - 1.0, 1e-6)[labels_j]
    alpha = (np.asarray(flair_norm_i, np.float64) - 1.0) / excess
    # voxels still bright here whose own focal difference did not fall either (a grown
    # lesion's new rim is not carried back into the earlier session)
    bright = ((f.z_wm[i] >= params.flair_z_grow_threshold)
              & (alpha >= params.edge_fraction_of_peak) & f.b
              & (dz >= -params.refinement_rise_sd))
    mask |= keep[labels_j] & bright
    # A lesion that changed (e.g. grew) persists in its unchanged part: pieces whose
    # own focal difference did not fall, at least persistence_min_piece_mm3 large and
    # with a core-level hyperintensity here (noise in NAWM is neither).
    unchanged = (labels_j > 0) & ~keep[labels_j] & bright & ~mask
    if unchanged.any():
        pieces, n_p = ndimage.label(unchanged, structure=CONNECTIVITY_26)
        size = np.bincount(pieces.ravel(), minlength=n_p + 1) * f.vv
        zmax = np.full(n_p + 1, -np.inf)
        np.maximum.at(zmax, pieces[pieces > 0], f.z_wm[i][pieces > 0])
        ok = (size >= params.persistence_min_piece_mm3) & (zmax >= params.flair_z_threshold)
        ok[0] = False
        mask |= ok[pieces]


def _persistent_lesions(results: list[SegmentationResult], f: _SubjectSessions,
                        masks: list[np.ndarray], params: SegmentationParams) -> list[np.ndarray]:
    """Step 7(b), persistence: a lesion of another session whose FLAIR here did not fall is
    lesion here too, where hyperintense against NAWM (:func:`_persist_from`); from the masks of
    step 7(a), so there is no chain across sessions. Returns each session's mask (crop)."""
    # A lesion does not vanish unless its signal does, so one session's threshold cannot drop
    # or trim a stable lesion.
    components = [ndimage.label(m, structure=CONNECTIVITY_26) for m in masks]
    final = []
    for i in range(len(results)):
        mask = masks[i].copy()
        flair_norm_i = results[i].flair_norm[f.sl]
        for j in range(len(results)):
            if (i, j) not in f.diff_z or not masks[j].any():
                continue
            _persist_from(mask, i, j, components[j], flair_norm_i, f, params)
        final.append(mask)
    return final


def _refined_session(res: SegmentationResult, refined_crop: np.ndarray, rise_voxels: int,
                     f: _SubjectSessions, params: SegmentationParams) -> SegmentationResult:
    """Step 7, the session's result after the joint pass: voxels only added (never removed),
    small components dropped, labels, black holes and QC figures recomputed; ``qc`` gains
    ``refinement_added_voxels`` and ``refinement_rise_voxels``."""
    vv = f.vv
    lesion = np.zeros(f.shape, bool)
    lesion[f.sl] = refined_crop
    lesion |= res.lesion_mask  # never removes a voxel
    added = int(lesion.sum() - res.lesion_mask.sum())
    if added == 0:
        qc = dict(res.qc, refinement_added_voxels=0, refinement_rise_voxels=0)
        return SegmentationResult(res.lesion_mask, res.lesion_labels, res.t1hypo_mask,
                                  res.flair_norm, res.tissue, res.t1_norm, qc)
    lesion, _, _ = remove_small_components(lesion, params.min_component_volume_mm3, vv)
    labels, n_lesions = ndimage.label(lesion, structure=CONNECTIVITY_26)
    t1hypo = t1_hypointense_mask(res.t1_norm, lesion, res.qc["gm_t1_norm"], f.vox, params,
                                 res.qc["t1_noise_sd_norm"])
    qc = dict(res.qc, refinement_added_voxels=added, refinement_rise_voxels=rise_voxels,
              n_lesions=int(n_lesions), t2lv_ml=float(lesion.sum() * vv / 1000.0),
              t1hypo_ml=float(t1hypo.sum() * vv / 1000.0),
              n_t1hypo=int(ndimage.label(t1hypo, structure=CONNECTIVITY_26)[1]))
    return SegmentationResult(lesion, labels.astype(np.int32), t1hypo, res.flair_norm,
                              res.tissue, res.t1_norm, qc)


def longitudinal_refinement(results: list[SegmentationResult], brain: np.ndarray,
                            voxel_size_mm: Any, params: SegmentationParams | None = None
                            ) -> list[SegmentationResult]:
    """Second, joint pass over all sessions of a subject: hyperintensities that changed.

    A cross-sectional threshold must hold against every normal tissue of the voxel's T1, so a
    small or faint lesion (as bright as GM, or blurred by partial volume) can stay below it.
    Normal tissue does not change between sessions of one subject in one space, so a voxel whose
    FLAIR is clearly higher than at another session, where it was not lesion, and which is
    hyperintense by the lower (hysteresis) threshold, is lesion at this session. This is the
    two-time-point idea of Jain et al. 2016 (Front Neurosci 10:576, MSmetrix-long: the
    difference image drives the joint segmentation) and of subtraction imaging (Moraal et al.
    2010 Radiology 255:154); every session is compared with every other, so the pass favours
    none (it also finds a lesion that resolved, at the session that has it).

    Per session ``s`` and other session ``r``: ``d = smooth(flair_norm_s) - smooth(flair_norm_r)``
    (Gaussian ``smoothing_mm`` inside the brain), centred and scaled by its median and MAD x
    1.4826 over brain outside both sessions' grown lesion masks. Cores: ``d`` >=
    ``refinement_rise_sd`` SDs for some ``r``, outside ``r``'s lesions grown by 1 mm, not lesion
    at ``s``, hyperintensity ``z >= flair_z_grow_threshold`` and ``edge_margin_mm`` inside the
    brain. They are grown and edged exactly like cross-sectional cores
    (:func:`hysteresis_lesions`) and added to the session's mask; labels, black holes and the QC
    figures are recomputed. User-supplied masks are final and are never refined.

    Parameters
    ----------
    results : list of SegmentationResult, one per session, all on one grid
    brain : ndarray (I, J, K), the common brain mask the sessions were segmented in
    voxel_size_mm : sequence of 3 floats
    params : SegmentationParams

    Returns
    -------
    list of SegmentationResult (new objects; the inputs are not modified). ``qc`` gains
    ``refinement_added_voxels``.
    """
    params = params or SegmentationParams()
    vox = _voxel_size(voxel_size_mm)
    if (len(results) < 2 or not params.longitudinal_refinement
            or any(r.qc.get("lesion_source") == "user mask" for r in results)
            or any(r.t1_norm is None for r in results)):
        return list(results)
    brain = _check_volume("brain", brain, results[0].lesion_mask.shape) > 0
    f = _subject_sessions(results, brain, vox, params)
    masks, added_rise = _rise_lesions(results, f, params)
    final = _persistent_lesions(results, f, masks, params)
    return [_refined_session(res, final[i], added_rise[i], f, params)
            for i, res in enumerate(results)]


def lesion_table(labels: np.ndarray, flair_norm: np.ndarray, t1hypo: np.ndarray,
                 affine: np.ndarray) -> pd.DataFrame:
    """One row per lesion label: volume, centroid (world mm), mean normalised FLAIR, black hole.

    Parameters
    ----------
    labels : int ndarray (I, J, K), 0 = background
    flair_norm : ndarray (I, J, K)
    t1hypo : bool ndarray (I, J, K)
    affine : ndarray (4, 4), voxel -> RAS world (mm)

    Returns
    -------
    DataFrame with columns label, n_voxels, volume_mm3, x_mm, y_mm, z_mm, mean_flair_norm,
    t1hypo_voxels, sorted by label.
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    cols = ["label", "n_voxels", "volume_mm3", "x_mm", "y_mm", "z_mm", "mean_flair_norm",
            "t1hypo_voxels"]
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    vv = float(np.prod(voxel_sizes(affine)))
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1).astype(np.float64)
    idx = np.nonzero(flat)[0]
    lab = flat[idx]
    ijk = np.column_stack(np.unravel_index(idx, labels.shape)).astype(np.float64)
    cent = np.column_stack([np.bincount(lab, weights=ijk[:, d], minlength=n + 1) for d in range(3)])
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = cent / counts[:, None]
        mean_fl = np.bincount(lab, weights=np.asarray(flair_norm).ravel()[idx].astype(np.float64),
                              minlength=n + 1) / counts
    hypo = np.bincount(lab, weights=np.asarray(t1hypo).ravel()[idx].astype(np.float64),
                       minlength=n + 1)
    world = cent @ affine[:3, :3].T + affine[:3, 3]
    present = np.nonzero(counts[1:] > 0)[0] + 1
    return pd.DataFrame({
        "label": present.astype(int),
        "n_voxels": counts[present].astype(int),
        "volume_mm3": counts[present] * vv,
        "x_mm": world[present, 0], "y_mm": world[present, 1], "z_mm": world[present, 2],
        "mean_flair_norm": mean_fl[present],
        "t1hypo_voxels": hypo[present].astype(int),
    })


def _brain_masks(out_dir: Path, subject: str, sessions: Sequence[str]
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each session's subject-space brain mask (bool) and its affine, read once."""
    masks = {}
    for ses in sessions:
        data, affine, _ = io.load_nifti(product_path(out_dir, "brain_mask_subject", subject,
                                                     ses))
        masks[ses] = (np.asarray(data) > 0, affine)
    return masks


def _common_brain(masks: dict[str, tuple[np.ndarray, np.ndarray]], subject: str
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Intersection of every session's subject-space brain mask.

    Returns
    -------
    (mask, affine, number of masks intersected)
    """
    common = None
    for ses, (mask, aff) in masks.items():
        if common is None:
            common, affine = mask.copy(), aff
            continue
        require_same_grid(mask.shape, aff, common.shape, affine,
                          f"sub-{subject} ses-{ses}: subject-space brain mask not on the subject "
                          f"grid of {subject} (shape/affine differ from the other sessions'); "
                          "rerun the register stage")
        common &= mask
    return common, affine, len(masks)


def _segment_session_from_files(out_dir: Path, subject: str, session: str,
                                lesion_mask_path: str | Path | None,
                                params: SegmentationParams,
                                brain_mask: tuple[np.ndarray, np.ndarray],
                                common_brain: tuple[np.ndarray, np.ndarray, int] | None
                                ) -> tuple[SegmentationResult, np.ndarray, np.ndarray]:
    """Read one session's subject-space images and segment it cross-sectionally, inside its
    brain mask (``brain_mask``: mask, affine) intersected with ``common_brain``
    (:func:`_common_brain`) when given.

    Returns
    -------
    (result, affine, brain mask searched)
    """
    def p(product: str) -> Path:
        return product_path(out_dir, product, subject, session)

    t1, aff, _ = io.load_nifti(p("t1w_subject"))
    flair, aff_f, _ = io.load_nifti(p("flair_subject"))
    t1_fl, aff_t, _ = io.load_nifti(p("t1w_flairres_subject"))
    brain, aff_b = brain_mask
    for name, a, arr in (("FLAIR", aff_f, flair), ("T1w at FLAIR resolution", aff_t, t1_fl),
                         ("brain mask", aff_b, brain)):
        require_same_grid(arr.shape, a, t1.shape, aff,
                          f"sub-{subject} ses-{session}: subject-space {name} does not share "
                          "the T1w grid (shape/affine differ); rerun the register stage")
    common = 1
    if common_brain is not None:
        # Search lesions only where every session of the subject has brain, so that a brain
        # mask drawn differently in one session cannot add or remove lesions at its edge.
        mask, aff_c, common = common_brain
        require_same_grid(mask.shape, aff_c, brain.shape, aff,
                          f"sub-{subject} ses-{session}: the other sessions' brain masks are "
                          "not on this session's subject grid; rerun the register stage")
        brain = brain & mask
    user = None
    if lesion_mask_path is not None:
        template = product_path(out_dir, "template", subject)
        xfm = p("t1w_to_subject")
        for f in (Path(lesion_mask_path), template, xfm):
            if not f.exists():
                raise InputError(f"{f}: file not found (needed to bring a user lesion mask into "
                                 "subject space); check the path or rerun the register stage")
        data, aff_u = resample_to_subject(lesion_mask_path, template, [xfm],
                                          interpolation="linear")
        require_same_grid(data.shape, aff_u, t1.shape, aff,
                          f"{lesion_mask_path}: resampled mask does not match the subject grid "
                          f"of {template}; check that the template and T1w belong together")
        user = np.asarray(data) >= 0.5
    native = {}
    for suffix, product in (("T1w", "t1w_n4"), ("FLAIR", "flair_n4")):
        f = p(product)
        if not f.exists():
            raise InputError(f"{f}: file not found (its voxel size chooses the hyperintensity "
                             "unit); rerun the preprocess stage for this session")
        native[suffix] = np.asarray(nib.load(f).header.get_zooms()[:3], dtype=np.float64)
    res = segment_session(t1, flair, brain, voxel_sizes(aff), params, lesion_mask=user,
                          t1_flair_resolution=t1_fl, flair_voxel_mm=native["FLAIR"],
                          t1_voxel_mm=native["T1w"])
    res.qc["params"] = {k: getattr(params, k) for k in params.__dataclass_fields__}
    res.qc["brain_mask_sessions"] = common
    if lesion_mask_path is not None:
        res.qc["lesion_mask_path"] = str(lesion_mask_path)
    return res, aff, brain


#: Columns of the subject-level segmentation summary (``desc-lesion_qc.tsv``).
SUMMARY_COLUMNS = ("session", "lesion_source", "z_unit", "n_lesions", "t2lv_ml", "n_t1hypo",
                   "t1hypo_ml", "refinement_added_voxels", "nawm_flair_sd_norm", "gm_t1_norm")


def segment_subject_files(out_dir: str | Path, subject: str, sessions: list[str],
                          lesion_mask_paths: dict[str, str | Path] | None = None,
                          params: SegmentationParams | None = None) -> dict[str, Any]:
    """Segment every session of a subject, refine them jointly, write every product.

    Reads each session's subject-space images from ``out_dir`` (register stage), segments each
    cross-sectionally (:func:`segment_session`), then runs :func:`longitudinal_refinement` over
    the sessions (skipped with user masks or a single session) and writes per session the lesion
    mask and labels, black-hole mask, normalised FLAIR and T1, lesion table and QC JSON, and per
    subject the summary table ``desc-lesion_qc.tsv`` (one row per session), last, so that it
    stands for a complete set.

    Parameters
    ----------
    lesion_mask_paths : optional mapping session -> user lesion mask (native T1 space); either
        every session has one or none does.

    Returns
    -------
    dict: "sessions" -> {session: {product: path}}, "summary" -> path.
    """
    params = params or SegmentationParams()
    out_dir = Path(out_dir)
    if len(sessions) < 1 or len(set(sessions)) != len(sessions):
        raise InputError(f"sessions must be distinct labels, got {sessions}")
    masks = dict(lesion_mask_paths or {})
    if masks and set(masks) != set(sessions):
        raise InputError(f"sub-{subject}: user lesion masks given for sessions {sorted(masks)} "
                         f"but the subject has {sorted(sessions)}; give one mask per session")
    brain_masks = _brain_masks(out_dir, subject, sessions)
    common_brain = _common_brain(brain_masks, subject) if params.common_brain_mask else None
    results, affines, brains = [], [], []
    for ses in sessions:
        res, aff, brain = _segment_session_from_files(out_dir, subject, ses, masks.get(ses),
                                                      params, brain_masks[ses], common_brain)
        results.append(res)
        affines.append(aff)
        brains.append(brain)
    for ses, aff, brain in zip(sessions[1:], affines[1:], brains[1:]):
        require_same_grid(brain.shape, aff, brains[0].shape, affines[0],
                          f"sub-{subject} ses-{ses}: subject-space images are not on the grid "
                          f"of ses-{sessions[0]}; rerun the register stage")
    common = brains[0]
    for brain in brains[1:]:
        common = common & brain
    results = longitudinal_refinement(results, common, voxel_sizes(affines[0]), params)
    brain_ml = float(common.sum() * np.prod(voxel_sizes(affines[0]))) / 1000.0
    for ses, res in zip(sessions, results):
        check_plausible(res.qc, brain_ml, params, f"sub-{subject} ses-{ses}")

    written: dict[str, Any] = {"sessions": {}}
    for ses, res, aff in zip(sessions, results, affines):
        written["sessions"][ses] = _write_session_products(out_dir, subject, ses, res, aff)
    rows = [{"session": ses, **{c: res.qc.get(c, 0) for c in SUMMARY_COLUMNS[1:]}}
            for ses, res in zip(sessions, results)]
    written["summary"] = io.write_tsv(product_path(out_dir, "lesion_summary", subject),
                                      pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)))
    return written


def _write_session_products(out_dir: Path, subject: str, ses: str, res: SegmentationResult,
                            aff: np.ndarray) -> dict[str, Path]:
    """One session's lesion mask and labels, black-hole mask, normalised FLAIR and T1, lesion
    table and QC JSON, in subject space; returns product -> path."""
    def p(product: str) -> Path:
        return product_path(out_dir, product, subject, ses)

    table = lesion_table(res.lesion_labels, res.flair_norm, res.t1hypo_mask, aff)
    return {
        "lesion_mask": io.save_nifti(p("lesion_mask"), res.lesion_mask, aff, np.uint8),
        "lesion_dseg": io.save_nifti(p("lesion_dseg"), res.lesion_labels, aff, np.int32),
        "t1hypo_mask": io.save_nifti(p("t1hypo_mask"), res.t1hypo_mask, aff, np.uint8),
        "flair_norm": io.save_nifti(p("flair_norm"), res.flair_norm, aff, np.float32),
        "t1w_norm": io.save_nifti(p("t1w_norm"), res.t1_norm, aff, np.float32),
        "session_lesions": io.write_tsv(p("session_lesions"), table),
        "lesion_qc": io.write_json(p("lesion_qc"), res.qc),
    }


def check_plausible(qc: dict[str, Any], brain_ml: float, params: SegmentationParams,
                    label: str) -> None:
    """Refuse a segmentation whose tissue model or result cannot be a measurement.

    A T1 without grey/white contrast (or with it inverted, as when T1w and FLAIR are swapped)
    and a T2 lesion volume that is a large share of the brain (normal tissue called lesion) are
    refused with the numbers, so they never reach the endpoints as if measured.
    """
    gm_wm = float(qc["gm_t1_norm"])
    if not gm_wm < params.max_gm_wm_t1_ratio:
        raise InputError(f"{label}: T1w grey/white contrast implausible (GM/WM T1 ratio "
                         f"{gm_wm:.2f}, limit {params.max_gm_wm_t1_ratio}); check that the T1w "
                         "is T1-weighted and its brain mask holds the brain")
    t2lv = float(qc["t2lv_ml"])
    if t2lv > params.max_t2lv_fraction_of_brain * brain_ml:
        raise InputError(f"{label}: T2 lesion volume {t2lv:.1f} mL is "
                         f"{100 * t2lv / brain_ml:.0f} % of the {brain_ml:.0f} mL brain (limit "
                         f"{100 * params.max_t2lv_fraction_of_brain:.0f} %): normal tissue was "
                         "called lesion; check the FLAIR contrast and the report's lesion "
                         "pictures, or supply lesion masks")


def _parse_masks(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        ses, sep, path = item.partition("=")
        if not sep or not ses or not path:
            raise InputError(f"--lesion-masks item {item!r} must be SESSION=PATH")
        out[ses] = path
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline segment --out OUT --subject S --sessions T [T ...]
    [--lesion-masks T=PATH ...]``."""
    ap = argparse.ArgumentParser(prog="python -m pipeline segment",
                                 description="T2/FLAIR lesion and T1-hypointense masks of every "
                                             "session of a subject in subject space")
    ap.add_argument("--out", required=True, help="derivatives directory (register stage output)")
    ap.add_argument("--subject", required=True, help="subject label without 'sub-'")
    ap.add_argument("--sessions", required=True, nargs="+",
                    help="session labels without 'ses-'")
    ap.add_argument("--lesion-masks", nargs="*", default=None, metavar="SESSION=PATH",
                    help="use these lesion masks (each session's native T1 space) instead of "
                         "segmenting; one per session")
    ap.add_argument("--params", default=None,
                    help='JSON file {"SegmentationParams": {field: value}} of overrides')
    add_sources_argument(ap)
    args = ap.parse_args(argv)

    def work(params: dict) -> dict:
        return segment_subject_files(args.out, args.subject, args.sessions,
                                     _parse_masks(args.lesion_masks),
                                     params["SegmentationParams"])

    code, written = run_step("segment", args.out, args.subject, None, args.sources,
                             args.params, work)
    if code:
        return code
    for session, paths in written["sessions"].items():
        write_sidecars(needing_sidecars(paths), args.sources, session)
    for paths in written["sessions"].values():
        for path in paths.values():
            print(path)
    print(written["summary"])
    return 0
