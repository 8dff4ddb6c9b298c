"""Per-interval lesion matching in subject space: new T2, enlarging T2, new T1-hypointense, T2-LV.

All sessions of a subject share one grid (subject space), so lesions are compared voxel to voxel.
Every threshold lives in :class:`pipeline.params.LesionParams`; the table columns and the
enlarging and shrinking rules are :mod:`pipeline.contract`'s, which the phantom's ground truth
applies too, so truth and pipeline count by one rule.

Rules (interval a -> b)
-----------------------
Connected components use 26-connectivity throughout.

* **Grown earlier mask.** The a-mask is dilated by ``new_lesion_dilation_mm`` measured from the
  voxel faces: a voxel joins when its centre lies within that distance of an a-voxel's box. At
  1 mm this is the 26-neighbourhood, at 2 mm the 6-neighbourhood, at 1 x 1 x 3 mm the in-plane
  8-neighbourhood (lesiontrack 0.2 / mscard 0.1 grow the earlier mask by one voxel).
* **Matching.** Components of a and of b are the nodes of a bipartite graph with an edge when a
  b-component overlaps the grown a-component; each connected component of that graph is one
  matched group (ANIMA / MSSEG-2 style overlap graph). ``merged`` = some b-component is linked to
  >= 2 a-components; ``split`` = some a-component is linked to >= 2 b-components.
* **FLAIR rise.** ``d = flair_norm_b - flair_norm_a``; its centre and robust SD (median, MAD x
  1.4826) are measured in normal-appearing brain (both normalised FLAIRs > 0, outside both grown
  lesion masks). ``flair_rise`` is the mean of ``d`` over a lesion (part) minus that centre, in
  NAWM-normalised FLAIR units, over its voxels inside both brain masks (NaN, hence not
  confirmed, when fewer than half are: the earlier scan did not see that tissue);
  ``flair_rise_z`` is it divided by the SD. Subtraction-image confirmation as in Moraal et al.
  2010 (Radiology 255:154) and Ganiler et al. 2014 (Neuroradiology 56:363): a candidate must rise
  by ``flair_rise_min_sd`` SDs, and by at least ``flair_rise_min_fraction`` of its own
  hyperintensity at b (mean ``flair_norm_b - 1``): most of the lesion's signal must be new, not
  a lesion (or bright tissue) already there but segmented differently.
* **New T2.** A b-component with no edge (no overlap with the grown a-mask), volume >=
  ``min_new_lesion_volume_mm3`` and ``flair_rise_z >= flair_rise_min_sd``. One failing either
  test is reported with class ``unconfirmed`` and not counted.
* **New T2 touching an old lesion.** In a group with a-components, the b voxels outside the grown
  a-mask form pieces (26-connected). Pieces with volume >= ``min_new_lesion_volume_mm3`` and a
  FLAIR rise qualify. Each qualifying piece is a new lesion (``touches_existing`` = 1, its own
  row, its volume removed from the group) when all rising pieces of the group (any size)
  together (i) border less than ``touching_max_surface_fraction`` of the old lesion's surface
  (the one-voxel shell of the grown a-mask) and (ii) are one-sided: their common centroid lies
  at least ``touching_min_offset_fraction`` x the old lesion's equivalent-sphere radius off the
  old lesion's centroid (thick slices can cut a concentric shell into two caps that each
  border little surface, but they stay centred). Otherwise they wrap the old lesion
  (concentric growth) and the group is judged by the enlarging rule. A piece bordering two or
  more old lesions bridges them (a merge) and is never new. Both tests are ratios of areas or
  lengths, hence the same at 1 mm, 2 mm and 1 x 1 x 3 mm voxels. ANIMA counts such a lesion
  when its non-overlapping part is large; lesiontrack calls any touching component an
  adjacent fragment (never new).
* **Enlarging / shrinking / stable / resolved.** With the new pieces removed, a group with
  a-components is ``resolved`` when no b voxel remains, ``enlarging`` when
  ``volume_end - volume_start >= enlarging_min_increase_mm3`` and ``>= enlarging_min_increase_pct``
  % of ``volume_start`` (ANIMA / MSSEG-2 convention: an absolute and a relative threshold); with
  ``enlarging_rule = "annualised"`` the lesiontrack / mscard rule applies instead: growth >=
  ``enlarging_min_pct_per_year`` % per year of follow-up and >= ``enlarging_min_voxels`` voxels.
  With ``enlarging_requires_flair_rise`` the grown part (b voxels outside a) must pass the same
  FLAIR-rise confirmation, so a boundary drawn differently on unchanged tissue is not growth.
  ``shrinking`` mirrors enlarging (``shrinking_min_decrease_mm3`` and ``_pct``); else ``stable``.
* **New T1-hypointense.** A component of the t1hypo mask at b, inside T2 lesion(s) at b of volume
  >= ``min_t1hypo_volume_mm3`` (a black hole is as large as the T2 lesion it marks; its
  hypointense core is smaller by the partial-volume rim), that does not overlap the grown
  t1hypo mask at a: covers brand-new black holes and old T2
  lesions turning hypointense; otherwise ``persistent``. With session a's normalised T1 (the
  file wrapper reads desc-norm T1w and the black-hole limit from a's segmentation QC), a
  candidate must also not have been hypointense at a by intensity: mean T1 at a over it >= a's
  limit, else it is ``persistent`` (a black hole whose T2 lesion a's segmentation missed), or
  ``unconfirmed`` when a's brain did not cover it; with b's normalised T1 too, its T1 must have
  fallen: mean ``T1_a - T1_b`` over it >= ``t1_fall_min_sd`` robust SDs of the voxelwise T1
  difference in normal-appearing brain, else ``unconfirmed``. Without a's T1, one lying mostly inside an
  ``unconfirmed`` T2 component (a b-only component that failed the new-lesion test) is
  ``unconfirmed``: a black hole must sit in an old or a confirmed new T2 lesion.
* **T2-LV** = lesion voxels x voxel volume / 1000 (mL); change in mL and % (NaN when start is 0).

Table rows are sorted by kind (t2 before t1hypo), then by the first voxel (C order) of the row's
voxels; ``group_id`` numbers the rows 1..n in that order and the new-lesion label image numbers
the new T2 lesions 1..m in the same order.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline import io
from pipeline.contract import (
    ENDPOINT_COLUMNS,
    LESION_TABLE_COLUMNS,
    SESSION_POSITION_COLUMNS,
    UNCONFIRMED,
    interval_label,
    is_enlarging,
    is_large_enough_black_hole,
    is_large_enough_new,
    is_shrinking,
    split_interval_label,
)
from pipeline.errors import InputError
from pipeline.imagespace import map_points_subject_to_session, require_same_grid, voxel_sizes
from pipeline.morphology import (
    CONNECTIVITY_26,
    bounding_box,
    dilate_labels,
    face_distance_footprint,
)
from pipeline.outcome import add_sources_argument, run_step
from pipeline.params import LesionParams
from pipeline.paths import product_path
from pipeline.robust import median_and_robust_sd

#: Columns of :func:`classify_interval`'s table, in order: the interval lesion table's
#: (:data:`pipeline.contract.LESION_TABLE_COLUMNS`) less the position in session b's T1w world,
#: which :func:`longitudinal_files` adds from the transform.
TABLE_COLUMNS = [c for c in LESION_TABLE_COLUMNS if c not in SESSION_POSITION_COLUMNS]


def dilation_footprint(voxel_size_mm: Any, radius_mm: float) -> np.ndarray:
    """Structuring element growing a mask by ``radius_mm`` measured from the voxel faces
    (see :func:`pipeline.morphology.face_distance_footprint`)."""
    return face_distance_footprint(voxel_size_mm, radius_mm)


def _dilate_labels(labels: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Labels grown by ``footprint``; a voxel of a component keeps its own label, contested
    voxels outside take the largest neighbouring label (deterministic)."""
    if footprint.size == 1 or not labels.any():
        return labels.copy()
    return np.where(labels > 0, labels, dilate_labels(labels, footprint))


@dataclass
class _Match:
    """Components of a and b (crop arrays) and the bipartite overlap graph between them."""

    la: np.ndarray
    lb: np.ndarray
    na: int
    nb: int
    grown_a: np.ndarray  # labels of a grown by the footprint
    edge_a: np.ndarray  # (E,) a labels
    edge_b: np.ndarray  # (E,) b labels
    group_of_a: np.ndarray  # (na + 1,), group index, -1 for label 0
    group_of_b: np.ndarray  # (nb + 1,)
    n_groups: int


def _overlap_edges(la: np.ndarray, lb: np.ndarray, nb: int, footprint: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(a labels, b labels)`` of every b component touching an a component's own grown mask.

    Each a component is grown on its own: a voxel within reach of two old lesions links a new
    component to both, whatever their label order (the storage order), so the matching does
    not depend on how the arrays are stored.
    """
    half = [n // 2 for n in footprint.shape]
    codes = []
    for lab, box in enumerate(ndimage.find_objects(la), start=1):
        if box is None:
            continue
        big = tuple(slice(max(s.start - h, 0), min(s.stop + h, n))
                    for s, h, n in zip(box, half, la.shape))
        own = la[big] == lab
        reach = (ndimage.binary_dilation(own, structure=footprint) if footprint.size > 1
                 else own)
        hits = np.unique(lb[big][reach])
        codes.append(lab * (nb + 1) + hits[hits > 0].astype(np.int64))
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    return code // (nb + 1), code % (nb + 1)


def _match(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> _Match:
    la, na = ndimage.label(a, structure=CONNECTIVITY_26)
    lb, nb = ndimage.label(b, structure=CONNECTIVITY_26)
    grown = _dilate_labels(la, footprint)
    ea, eb = _overlap_edges(la, lb, nb, footprint)
    n = na + nb
    graph = coo_matrix((np.ones(ea.size), (ea - 1, na + eb - 1)), shape=(n, n))
    n_groups, comp = connected_components(graph, directed=False)
    # Renumber groups by first appearance over the a nodes, then the b nodes (stable).
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)
    comp = rank[comp]
    group_of_a = np.concatenate([[-1], comp[:na]])
    group_of_b = np.concatenate([[-1], comp[na:]])
    return _Match(la, lb, na, nb, grown, ea, eb, group_of_a, group_of_b, n_groups)


def _per_label(labels: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    w = None if weights is None else weights.ravel().astype(np.float64)
    return np.bincount(labels.ravel(), weights=w, minlength=n + 1)


def _label_stats(labels: np.ndarray, n: int, diff: np.ndarray, flair_b: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """Per label 1..n: voxel count, mean FLAIR rise, centroid sums (crop index), first index.

    ``diff`` is NaN where either session has no brain; the rise (and ``excess``, the mean of
    ``flair_b - 1``) is the mean over the rest, NaN when fewer than half of the label's voxels
    are in both brains.
    """
    flat = labels.ravel()
    idx = np.nonzero(flat)[0]
    lab = flat[idx]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    d = diff.ravel()[idx].astype(np.float64)
    ok = np.isfinite(d)
    dsum = np.bincount(lab[ok], weights=d[ok], minlength=n + 1)
    dcount = np.bincount(lab[ok], minlength=n + 1).astype(np.float64)
    esum = np.bincount(lab[ok], weights=flair_b.ravel()[idx][ok] - 1.0, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(dcount >= 0.5 * count, dsum / np.maximum(dcount, 1), np.nan)
        excess = np.where(dcount >= 0.5 * count, esum / np.maximum(dcount, 1), np.nan)
    ijk = np.column_stack(np.unravel_index(idx, labels.shape)).astype(np.float64)
    csum = np.column_stack([np.bincount(lab, weights=ijk[:, k], minlength=n + 1)
                            for k in range(3)])
    # first voxel in C order of the crop (converted to the full volume by the caller)
    first = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, lab, idx.astype(np.int64))
    return {"count": count, "rise": rise, "excess": excess, "csum": csum, "first": first}


def _component_mean(labels: np.ndarray, n: int, values: np.ndarray, valid: np.ndarray,
                    count: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each label 1..n (index 0 unused) where ``valid``; NaN for a label
    with fewer than half of its ``count`` voxels valid (the earlier scan did not see it)."""
    total = np.bincount(labels[valid], weights=values[valid], minlength=n + 1)
    seen = np.bincount(labels[valid], minlength=n + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen >= 0.5 * count, total / np.maximum(seen, 1), np.nan)


def difference_reference(flair_norm_a: np.ndarray, flair_norm_b: np.ndarray,
                         exclude: np.ndarray | None = None) -> tuple[float, float]:
    """Centre (median) and robust SD (MAD x 1.4826) of ``b - a`` in normal-appearing brain.

    Parameters
    ----------
    flair_norm_a, flair_norm_b : ndarray (I, J, K), normalised FLAIR (0 outside the brain)
    exclude : optional bool ndarray (I, J, K), voxels left out (grown lesion masks)

    Returns
    -------
    (centre, sd) in normalised FLAIR units.
    """
    ref = (flair_norm_a > 0) & (flair_norm_b > 0)
    if exclude is not None:
        ref &= ~exclude
    if ref.sum() < 100:
        raise InputError("fewer than 100 normal-appearing brain voxels shared by the two "
                         "sessions' normalised FLAIR images; check the desc-norm FLAIR files")
    d = flair_norm_b[ref].astype(np.float64) - flair_norm_a[ref].astype(np.float64)
    centre, sd = median_and_robust_sd(d)
    return centre, max(sd, 1e-6)


def _confirmed(rise: np.ndarray, excess: np.ndarray, sd: float, params: LesionParams
               ) -> np.ndarray:
    """FLAIR-rise confirmation: rise >= ``flair_rise_min_sd`` SDs of the difference image and
    >= ``flair_rise_min_fraction`` of the part's hyperintensity at b (its mean ``flair_b - 1``).
    NaN (tissue outside one of the brain masks) is never confirmed."""
    with np.errstate(invalid="ignore"):
        return ((rise / sd >= params.flair_rise_min_sd)
                & (rise >= params.flair_rise_min_fraction * excess))


def _is_enlarging(v0: float, v1: float, vv: float, params: LesionParams,
                  dt_months: float | None) -> bool:
    """:func:`pipeline.contract.is_enlarging` of one group, saying where the interval length
    comes from when the annualised rule lacks it."""
    try:
        return bool(is_enlarging(v0, v1, dt_months, params, vv))
    except InputError as exc:
        raise InputError("LesionParams.enlarging_rule='annualised' needs the interval length: "
                         "give --sessions-months (e.g. baseline=0 m06=6 m12=12)") from exc


@dataclass(frozen=True, eq=False)
class _CropGrid:
    """Box around every lesion voxel of both sessions (plus the footprint's reach) in which an
    interval is classified, and the geometry mapping crop indices to the full volume and to
    subject RAS mm."""

    box: tuple[slice, ...]  # crop of the full (I, J, K) volume
    shape: tuple[int, ...]  # full volume shape (I, J, K)
    crop_shape: tuple[int, ...]
    origin: np.ndarray  # (3,) float, full-volume index of the crop's first voxel
    affine: np.ndarray  # (4, 4) voxel -> subject RAS mm
    voxel_size_mm: np.ndarray  # (3,)
    voxel_mm3: float

    def full_first(self, flat_crop: int) -> int:
        """Flat (C order) index in the full volume of the flat crop index ``flat_crop``."""
        ijk = np.array(np.unravel_index(int(flat_crop), self.crop_shape)) + self.origin.astype(int)
        return int(np.ravel_multi_index(tuple(ijk), self.shape))

    def centroid_world(self, csum: np.ndarray, count: float) -> np.ndarray:
        """Subject RAS mm of the centroid of ``count`` voxels whose crop indices sum to ``csum``."""
        ijk = csum / count + self.origin
        return self.affine[:3, :3] @ ijk + self.affine[:3, 3]


def _crop_grid(any_lesion: np.ndarray, vox: np.ndarray, affine: np.ndarray,
               footprint: np.ndarray) -> _CropGrid | None:
    """The crop around ``any_lesion`` (bool, full volume), None when it is empty."""
    box = bounding_box(any_lesion, max(footprint.shape) // 2 + 2)
    if box is None:
        return None
    return _CropGrid(box=box, shape=any_lesion.shape,
                     crop_shape=tuple(s.stop - s.start for s in box),
                     origin=np.array([s.start for s in box], dtype=np.float64), affine=affine,
                     voxel_size_mm=vox, voxel_mm3=float(np.prod(vox)))


def _checked_voxel_size(arrays: dict[str, Any], voxel_size_mm: Any) -> np.ndarray:
    """Voxel size (3,) mm after checking that all ``arrays`` are 3-D on one grid."""
    shape = np.shape(arrays["lesion_a"])
    for name, arr in arrays.items():
        if np.ndim(arr) != 3 or np.shape(arr) != shape:
            raise InputError(f"{name} has shape {np.shape(arr)}; all inputs must be 3-D arrays "
                             f"on one subject grid of shape {shape}")
    vox = np.broadcast_to(np.asarray(voxel_size_mm, dtype=np.float64), (3,)).copy()
    if np.any(vox <= 0):
        raise InputError(f"voxel_size_mm={voxel_size_mm!r} must be positive")
    return vox


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float) for c in TABLE_COLUMNS})


@dataclass(eq=False)
class _Difference:
    """The FLAIR difference image on the crop and its reference SD."""

    diff: np.ndarray  # crop, flair_b - flair_a - centre; NaN where either session has no brain
    flair_b: np.ndarray  # crop, float64 normalised FLAIR at b
    sd: float  # robust SD of the difference in normal-appearing brain
    grown_any: np.ndarray  # crop bool, grown a lesions or grown b lesions


def _flair_difference(flair_norm_a: np.ndarray, flair_norm_b: np.ndarray, m: _Match,
                      lesion_b_crop: np.ndarray, footprint: np.ndarray, grid: _CropGrid
                      ) -> _Difference:
    """Method step "FLAIR rise": the difference image ``d = flair_norm_b - flair_norm_a`` less
    its centre, with the centre and robust SD measured outside both grown lesion masks."""
    grown_b = (ndimage.binary_dilation(lesion_b_crop, structure=footprint)
               if lesion_b_crop.any() else lesion_b_crop)
    grown_any = (m.grown_a > 0) | grown_b
    exclude = np.zeros(grid.shape, bool)
    exclude[grid.box] = grown_any
    centre, sd = difference_reference(flair_norm_a, flair_norm_b, exclude)
    # FLAIR rise only where both sessions have brain (normalised FLAIR is 0 outside a brain
    # mask): a lesion where the earlier mask has no brain cannot be confirmed.
    fa_c = flair_norm_a[grid.box].astype(np.float64)
    fb_c = flair_norm_b[grid.box].astype(np.float64)
    diff = np.where((fa_c > 0) & (fb_c > 0), fb_c - fa_c - centre, np.nan)
    return _Difference(diff, fb_c, sd, grown_any)


@dataclass(eq=False)
class _Pieces:
    """Pieces of b outside the grown a-mask (crop labels 1..n) and their statistics."""

    labels: np.ndarray
    n: int
    stats: dict[str, np.ndarray]  # :func:`_label_stats` of the pieces
    group: np.ndarray  # (n + 1,), matched group of each piece
    volume_mm3: np.ndarray  # (n + 1,)
    ok: np.ndarray  # (n + 1,) bool, large enough and FLAIR-rise confirmed
    group_has_a: np.ndarray  # (n_groups,) bool, the group has a-components


def _outside_pieces(m: _Match, dif: _Difference, params: LesionParams, grid: _CropGrid
                    ) -> _Pieces:
    """Method steps "New T2" and "New T2 touching an old lesion": the b voxels outside the grown
    a-mask as 26-connected pieces, each tested for volume and FLAIR rise."""
    outside = (m.lb > 0) & (m.grown_a == 0)
    lp, npieces = ndimage.label(outside, structure=CONNECTIVITY_26)
    ps = _label_stats(lp, npieces, dif.diff, dif.flair_b)
    piece_b = np.zeros(npieces + 1, dtype=np.int64)
    if npieces:
        piece_b[1:] = np.asarray(ndimage.maximum(m.lb, lp, index=np.arange(1, npieces + 1)),
                                 dtype=np.int64)
    piece_vol = ps["count"] * grid.voxel_mm3
    piece_ok = (is_large_enough_new(piece_vol, params)
                & _confirmed(ps["rise"], ps["excess"], dif.sd, params))
    piece_ok[0] = False
    group_has_a = np.zeros(m.n_groups, bool)
    if m.na:
        group_has_a[m.group_of_a[1:]] = True
    return _Pieces(lp, npieces, ps, m.group_of_b[piece_b], piece_vol, piece_ok, group_has_a)


def _bordered_surface(m: _Match, pieces: _Pieces, rising: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contact rule (i): per group, the old-lesion surface (one-voxel shell of the grown a-mask)
    and the fraction of it bordered by the ``rising`` pieces; per piece, how many old lesions
    it borders. Returns ``(shell_total, frac, n_old)``."""
    shell = (m.grown_a > 0) & (m.la == 0)
    shell_a = m.grown_a[shell]
    shell_group = m.group_of_a[shell_a]
    shell_total = np.bincount(shell_group, minlength=m.n_groups)
    lab_r = np.where(rising[pieces.labels], pieces.labels, 0)
    near_r = ndimage.grey_dilation(lab_r, footprint=CONNECTIVITY_26)[shell]
    hit = (near_r > 0) & (pieces.group[near_r] == shell_group)
    pairs = np.unique(near_r[hit].astype(np.int64) * (m.na + 1) + shell_a[hit])
    n_old = np.bincount(pairs // (m.na + 1), minlength=pieces.n + 1)
    bordered = np.bincount(shell_group[hit], minlength=m.n_groups)
    return shell_total, bordered / np.maximum(shell_total, 1), n_old


def _rising_offset_mm(m: _Match, pieces: _Pieces, rising: np.ndarray, grid: _CropGrid
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Contact rule (ii): per group, the distance (mm) from the old lesion's centroid to the
    common centroid of its ``rising`` pieces, and the old lesion's equivalent-sphere radius
    (mm). Returns ``(offset_mm, r_eq_mm)``."""
    qg = pieces.group[1:][rising[1:]]
    qn = pieces.stats["count"][1:][rising[1:]]
    qc = pieces.stats["csum"][1:][rising[1:]]
    q_count = np.bincount(qg, weights=qn, minlength=m.n_groups)
    q_cent = np.column_stack([np.bincount(qg, weights=qc[:, k], minlength=m.n_groups)
                              for k in range(3)]) / np.maximum(q_count, 1)[:, None]
    la_flat = np.nonzero(m.la.ravel())[0]
    la_g = m.group_of_a[m.la.ravel()[la_flat]]
    la_ijk = np.column_stack(np.unravel_index(la_flat, grid.crop_shape)).astype(np.float64)
    a_count = np.bincount(la_g, minlength=m.n_groups)
    a_cent = np.column_stack([np.bincount(la_g, weights=la_ijk[:, k], minlength=m.n_groups)
                              for k in range(3)]) / np.maximum(a_count, 1)[:, None]
    offset_mm = np.sqrt((((q_cent - a_cent) * grid.voxel_size_mm) ** 2).sum(axis=1))
    r_eq_mm = np.cbrt(3.0 * a_count * grid.voxel_mm3 / (4.0 * np.pi))
    return offset_mm, r_eq_mm


def _new_touching_pieces(m: _Match, pieces: _Pieces, sd: float, params: LesionParams,
                         grid: _CropGrid) -> np.ndarray:
    """Method step "New T2 touching an old lesion" (the one-sided contact rule): which
    qualifying pieces of groups with a-components are new lesions, (npieces + 1,) bool."""
    is_new_piece = np.zeros(pieces.n + 1, bool)
    touching = pieces.ok.copy()
    touching[1:] &= pieces.group_has_a[pieces.group[1:]]
    if not touching.any():
        return is_new_piece
    # Every outside piece with a FLAIR rise (any size) shows where the old lesion grew;
    # coverage and one-sidedness are judged on all of them together, so a concentric shell
    # broken into fragments (thin growth at coarse voxels) is still seen as a shell.
    rising = _confirmed(pieces.stats["rise"], pieces.stats["excess"], sd, params)
    rising[0] = False
    rising[1:] &= pieces.group_has_a[pieces.group[1:]]
    shell_total, frac, n_old = _bordered_surface(m, pieces, rising)
    # A piece bordering two or more old lesions bridges them: a merge, not a new lesion.
    touching &= n_old <= 1
    # One-sidedness: the rising pieces' common centroid must sit off the old lesion's
    # centroid by a fraction of its equivalent-sphere radius (concentric growth, even when
    # thick slices cut it into caps, stays centred).
    offset_mm, r_eq_mm = _rising_offset_mm(m, pieces, rising, grid)
    ok_group = ((shell_total > 0) & (frac < params.touching_max_surface_fraction)
                & (offset_mm >= params.touching_min_offset_fraction * r_eq_mm))
    is_new_piece[1:] = touching[1:] & ok_group[pieces.group[1:]]
    return is_new_piece


def _new_lesion_rows(pieces: _Pieces, is_new_piece: np.ndarray, grid: _CropGrid
                     ) -> list[dict[str, Any]]:
    """Method steps "New T2" and "New T2 touching an old lesion": one row per b-only component
    (``new`` or ``unconfirmed``) and per new touching piece; ``_piece`` is the piece label of a
    row counted as new (its voxels go to the new-lesion image), else 0."""
    ps = pieces.stats
    rows = []
    # b-only groups are whole pieces (a b-component without an edge lies entirely outside).
    for p in range(1, pieces.n + 1):
        g = pieces.group[p]
        if pieces.group_has_a[g] and not is_new_piece[p]:
            continue
        if pieces.group_has_a[g]:
            cls, touches = "new", 1
        else:
            cls, touches = ("new" if pieces.ok[p] else UNCONFIRMED), 0
        rows.append({"kind": "t2", "class": cls, "volume_start_mm3": 0.0,
                     "volume_end_mm3": pieces.volume_mm3[p], "n_start": 0, "n_end": 1,
                     "merged": 0, "split": 0, "touches_existing": touches,
                     "flair_rise": ps["rise"][p],
                     "_xyz": grid.centroid_world(ps["csum"][p], ps["count"][p]),
                     "_first": grid.full_first(ps["first"][p]),
                     "_piece": p if cls == "new" else 0})
    return rows


def _group_sums(idx: np.ndarray, gflat: np.ndarray, ng: int, crop_shape: tuple[int, ...]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per group 0..ng-1 of the flat crop voxels ``idx`` (group ``gflat[idx]``): the sums of
    their crop indices (ng, 3) and their first flat index (C order)."""
    ijk = np.column_stack(np.unravel_index(idx, crop_shape)).astype(np.float64)
    g = gflat[idx]
    cs = np.column_stack([np.bincount(g, weights=ijk[:, k], minlength=ng) for k in range(3)])
    first = np.full(ng, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, g, idx.astype(np.int64))
    return cs, first


def _group_class(v0: float, v1: float, rise: float, excess: float, sd: float,
                 params: LesionParams, dt_months: float | None, vv: float) -> str:
    """Method step "Enlarging / shrinking / stable / resolved" for one group of start volume
    ``v0`` and end volume ``v1`` (mm3) whose grown part has FLAIR rise ``rise``."""
    grown_confirmed = (not params.enlarging_requires_flair_rise
                       or bool(_confirmed(np.array([rise]), np.array([excess]), sd, params)[0]))
    if v1 == 0:
        return "resolved"
    if _is_enlarging(v0, v1, vv, params, dt_months) and grown_confirmed:
        return "enlarging"
    if is_shrinking(v0, v1, params):
        return "shrinking"
    return "stable"


def _matched_group_rows(m: _Match, pieces: _Pieces, is_new_piece: np.ndarray,
                        dif: _Difference, params: LesionParams, dt_months: float | None,
                        grid: _CropGrid) -> list[dict[str, Any]]:
    """Method steps "Matching" and "Enlarging / shrinking / stable / resolved": one row per
    matched group with a-components, its new pieces removed; merged and split from the
    overlap graph's degrees."""
    if not m.na:
        return []
    vv = grid.voxel_mm3
    new_vox = is_new_piece[pieces.labels] & (pieces.labels > 0)
    rest_b = np.where(new_vox, 0, m.lb)
    gb = np.where(rest_b > 0, m.group_of_b[rest_b], -1)
    ga = np.where(m.la > 0, m.group_of_a[m.la], -1)
    ng = m.n_groups
    cnt_b = np.bincount(gb[gb >= 0], minlength=ng).astype(np.float64)
    cnt_a = np.bincount(ga[ga >= 0], minlength=ng).astype(np.float64)
    growth = (gb >= 0) & (m.la == 0) & np.isfinite(dif.diff)
    cnt_g = np.bincount(gb[growth], minlength=ng).astype(np.float64)
    dsum_g = np.bincount(gb[growth], weights=dif.diff[growth], minlength=ng)
    esum_g = np.bincount(gb[growth], weights=dif.flair_b[growth] - 1.0, minlength=ng)
    # growth voxels inside both brains, for the half-coverage rule of the FLAIR rise
    all_growth = np.bincount(gb[(gb >= 0) & (m.la == 0)], minlength=ng).astype(np.float64)
    cs_b, first_b = _group_sums(np.nonzero(gb.ravel() >= 0)[0], gb.ravel(), ng, grid.crop_shape)
    cs_a, first_a = _group_sums(np.nonzero(ga.ravel() >= 0)[0], ga.ravel(), ng, grid.crop_shape)
    deg_a = np.bincount(m.edge_a, minlength=m.na + 1)
    deg_b = np.bincount(m.edge_b, minlength=m.nb + 1)
    n_start = np.bincount(m.group_of_a[1:], minlength=ng)
    n_end = np.bincount(m.group_of_b[np.unique(rest_b[rest_b > 0])], minlength=ng)
    merged = np.zeros(ng, bool)
    split = np.zeros(ng, bool)
    if m.nb:
        merged[m.group_of_b[1:][deg_b[1:] >= 2]] = True
    split[m.group_of_a[1:][deg_a[1:] >= 2]] = True
    rows = []
    for g in np.nonzero(pieces.group_has_a)[0]:
        v0 = cnt_a[g] * vv
        v1 = cnt_b[g] * vv
        ok_cover = cnt_g[g] > 0 and cnt_g[g] >= 0.5 * all_growth[g]
        rise = dsum_g[g] / cnt_g[g] if ok_cover else np.nan
        excess = esum_g[g] / cnt_g[g] if ok_cover else np.nan
        if cnt_b[g] > 0:
            xyz = grid.centroid_world(cs_b[g], cnt_b[g])
        else:
            xyz = grid.centroid_world(cs_a[g], cnt_a[g])
        rows.append({"kind": "t2",
                     "class": _group_class(v0, v1, rise, excess, dif.sd, params, dt_months, vv),
                     "volume_start_mm3": v0, "volume_end_mm3": v1, "n_start": int(n_start[g]),
                     "n_end": int(n_end[g]), "merged": int(merged[g]),
                     "split": int(split[g]), "touches_existing": 0, "flair_rise": rise,
                     "_xyz": xyz, "_first": grid.full_first(min(first_a[g], first_b[g])),
                     "_piece": 0})
    return rows


def _t1_evidence(mh: _Match, hs: dict[str, np.ndarray], t1_norm_a: np.ndarray | None,
                 t1hypo_limit_a: float | None, t1_norm_b: np.ndarray | None,
                 grown_any: np.ndarray, grid: _CropGrid
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Method step "New T1-hypointense", intensity evidence per black hole at b: mean
    normalised T1 at a (None without ``t1_norm_a`` or ``t1hypo_limit_a``) and T1 fall in
    robust SDs (None without both T1s, or too little normal-appearing brain)."""
    # Not hypointense at a, judged by intensity when session a's normalised T1 is given: the
    # mean T1 at a over the component must be at or above a's black-hole limit (a T2 lesion
    # missed at a, or a segmentation difference, otherwise makes an old black hole look new).
    ta = None if t1_norm_a is None else np.asarray(t1_norm_a)[grid.box].astype(np.float64)
    t1_at_a = None
    if ta is not None and t1hypo_limit_a is not None:
        t1_at_a = _component_mean(mh.lb, mh.nb, ta, ta > 0, hs["count"])
    # T1 fall: the mean of T1_a - T1_b over the core, in robust SDs of the voxelwise T1
    # difference in normal-appearing brain, the T1 analogue of the FLAIR-rise confirmation (a
    # noise dip in a GM-like lesion is not a new black hole; a lesion turning hypointense is).
    t1_fall_z = None
    if ta is not None and t1_norm_b is not None:
        tb = np.asarray(t1_norm_b)[grid.box].astype(np.float64)
        both_t = (ta > 0) & (tb > 0)
        ref_t = both_t & ~grown_any
        if ref_t.sum() >= 100:
            dt1 = ta - tb
            c_t, sd_t = median_and_robust_sd(dt1[ref_t])
            sd_t = max(sd_t, 1e-6)
            t1_fall_z = _component_mean(mh.lb, mh.nb, dt1 - c_t, both_t, hs["count"]) / sd_t
    return t1_at_a, t1_fall_z


def _t2_volume_of_black_holes(mh: _Match, m: _Match, vv: float) -> np.ndarray:
    """Per black hole at b (index 0 unused): total volume (mm3) of the T2 lesion(s) at b that
    contain it. A black hole is as large as the T2 lesion it marks (its hypointense core is
    smaller by the partial-volume rim), so the volume test applies to those."""
    t2_count_b = np.bincount(m.lb.ravel(), minlength=m.nb + 1).astype(np.float64)
    both = (mh.lb > 0) & (m.lb > 0)
    pair = np.unique(mh.lb[both].astype(np.int64) * (m.nb + 1) + m.lb[both])
    return np.bincount(pair // (m.nb + 1), weights=t2_count_b[pair % (m.nb + 1)],
                       minlength=mh.nb + 1) * vv


def _new_black_hole_rows(t1hypo_a_crop: np.ndarray, t1hypo_b_crop: np.ndarray,
                         footprint: np.ndarray, m: _Match, pieces: _Pieces, dif: _Difference,
                         t1: tuple[np.ndarray | None, float | None, np.ndarray | None],
                         params: LesionParams, grid: _CropGrid) -> list[dict[str, Any]]:
    """Method step "New T1-hypointense": one row per T1-hypointense component at b inside T2
    lesion(s) of at least ``min_t1hypo_volume_mm3``, ``new``, ``persistent`` or
    ``unconfirmed``; ``t1`` is ``(t1_norm_a, t1hypo_limit_a, t1_norm_b)``."""
    vv = grid.voxel_mm3
    mh = _match(t1hypo_a_crop, t1hypo_b_crop, footprint)
    hs = _label_stats(mh.lb, mh.nb, dif.diff, dif.flair_b)
    vol_ha = _per_label(mh.la, mh.na) * vv
    linked: dict[int, list[int]] = {}
    for ea, eb in zip(mh.edge_a, mh.edge_b):
        linked.setdefault(int(eb), []).append(int(ea))
    t1_norm_a, t1hypo_limit_a, t1_norm_b = t1
    t1_at_a, t1_fall_z = _t1_evidence(mh, hs, t1_norm_a, t1hypo_limit_a, t1_norm_b,
                                      dif.grown_any, grid)
    # Without it: a black hole inside a T2 component that failed the new-lesion test (no FLAIR
    # rise, too small) is segmentation noise, not a new black hole.
    unconfirmed_piece = np.zeros(pieces.n + 1, bool)
    unconfirmed_piece[1:] = ~pieces.group_has_a[pieces.group[1:]] & ~pieces.ok[1:]
    in_unconfirmed = np.bincount(mh.lb.ravel(), weights=unconfirmed_piece[pieces.labels].ravel(),
                                 minlength=mh.nb + 1)
    t2_volume_of_hypo = _t2_volume_of_black_holes(mh, m, vv)
    rows = []
    for j in range(1, mh.nb + 1):
        if not is_large_enough_black_hole(t2_volume_of_hypo[j], params):
            continue
        olds = linked.get(j, [])
        cls = "persistent" if olds else "new"
        if not olds and t1_at_a is not None:
            if not t1_at_a[j] >= t1hypo_limit_a:  # hypointense at a already (or not seen)
                cls = "persistent" if np.isfinite(t1_at_a[j]) else UNCONFIRMED
            elif t1_fall_z is not None and not t1_fall_z[j] >= params.t1_fall_min_sd:
                cls = UNCONFIRMED  # no T1 fall: not a change
        elif not olds and in_unconfirmed[j] > 0.5 * hs["count"][j]:
            cls = UNCONFIRMED
        rows.append({"kind": "t1hypo", "class": cls,
                     "volume_start_mm3": float(sum(vol_ha[i] for i in olds)),
                     "volume_end_mm3": hs["count"][j] * vv, "n_start": len(olds), "n_end": 1,
                     "merged": int(len(olds) >= 2), "split": 0, "touches_existing": 0,
                     "flair_rise": hs["rise"][j],
                     "_xyz": grid.centroid_world(hs["csum"][j], hs["count"][j]),
                     "_first": grid.full_first(hs["first"][j]), "_piece": 0})
    return rows


def _interval_table(rows: list[dict[str, Any]], piece_labels: np.ndarray, sd: float,
                    grid: _CropGrid) -> tuple[pd.DataFrame, np.ndarray]:
    """Table rows sorted by kind (t2 first) and first voxel, numbered ``group_id`` 1..n, and
    the new-lesion label image (new T2 lesions 1..m in that order, full volume)."""
    new_labels = np.zeros(grid.shape, np.int32)
    if not rows:
        return _empty_table(), new_labels
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["kind"] != "t2", rows[i]["_first"]))
    new_crop = np.zeros(grid.crop_shape, np.int32)
    n_new = 0
    out_rows = []
    for gid, i in enumerate(order, start=1):
        r = rows[i]
        if r["_piece"]:
            n_new += 1
            new_crop[piece_labels == r["_piece"]] = n_new
        v0, v1 = r["volume_start_mm3"], r["volume_end_mm3"]
        out_rows.append({
            "group_id": gid, "kind": r["kind"], "class": r["class"],
            "volume_start_mm3": v0, "volume_end_mm3": v1, "change_mm3": v1 - v0,
            "change_pct": 100.0 * (v1 - v0) / v0 if v0 > 0 else np.nan,
            "n_start": r["n_start"], "n_end": r["n_end"], "merged": r["merged"],
            "split": r["split"], "touches_existing": r["touches_existing"],
            "flair_rise": r["flair_rise"], "flair_rise_z": r["flair_rise"] / sd,
            "x_subject_mm": r["_xyz"][0], "y_subject_mm": r["_xyz"][1],
            "z_subject_mm": r["_xyz"][2],
        })
    new_labels[grid.box] = new_crop
    return pd.DataFrame(out_rows, columns=TABLE_COLUMNS), new_labels


def classify_interval(lesion_a: np.ndarray, lesion_b: np.ndarray, flair_norm_a: np.ndarray,
                      flair_norm_b: np.ndarray, t1hypo_a: np.ndarray, t1hypo_b: np.ndarray,
                      voxel_size_mm: Any, params: LesionParams | None = None, *,
                      affine: np.ndarray | None = None, dt_months: float | None = None,
                      t1_norm_a: np.ndarray | None = None,
                      t1hypo_limit_a: float | None = None,
                      t1_norm_b: np.ndarray | None = None
                      ) -> tuple[pd.DataFrame, np.ndarray]:
    """Match lesions between sessions a and b and classify them (see module docstring).

    Parameters
    ----------
    lesion_a, lesion_b : bool ndarray (I, J, K), T2 lesion masks on one subject grid
    flair_norm_a, flair_norm_b : float ndarray (I, J, K), normalised FLAIR (NAWM = 1, 0 outside
        the brain)
    t1hypo_a, t1hypo_b : bool ndarray (I, J, K), T1-hypointense masks
    voxel_size_mm : sequence of 3 floats, voxel size along I, J, K (mm)
    params : LesionParams (defaults when None)
    affine : optional (4, 4) voxel -> subject RAS mm; default ``diag(voxel_size_mm)``
    dt_months : interval length, needed only for ``enlarging_rule = "annualised"``
    t1_norm_a : optional float ndarray (I, J, K), normalised T1 at a (WM = 1, 0 outside brain)
    t1hypo_limit_a : optional float, the normalised T1 below which session a calls a lesion
        voxel hypointense; with ``t1_norm_a`` it confirms new black holes by intensity
    t1_norm_b : optional float ndarray (I, J, K), normalised T1 at b; with ``t1_norm_a`` a new
        black hole must also show a T1 fall (``t1_fall_min_sd``)

    Returns
    -------
    table : DataFrame, columns :data:`TABLE_COLUMNS`, one row per matched T2 group or new T2
        lesion and one per T1-hypointense component at b; centroids in subject RAS mm
    new_labels : int32 ndarray (I, J, K), new T2 lesions 1..m in table order
    """
    params = params or LesionParams()
    vox = _checked_voxel_size(
        {"lesion_a": lesion_a, "lesion_b": lesion_b, "flair_norm_a": flair_norm_a,
         "flair_norm_b": flair_norm_b, "t1hypo_a": t1hypo_a, "t1hypo_b": t1hypo_b},
        voxel_size_mm)
    if affine is None:
        affine = np.diag([*vox, 1.0])
    a, b = np.asarray(lesion_a) > 0, np.asarray(lesion_b) > 0
    ha, hb = np.asarray(t1hypo_a) > 0, np.asarray(t1hypo_b) > 0
    fp = dilation_footprint(vox, params.new_lesion_dilation_mm)
    grid = _crop_grid(a | b | ha | hb, vox, affine, fp)
    if grid is None:
        return _empty_table(), np.zeros(np.shape(lesion_a), np.int32)
    m = _match(a[grid.box], b[grid.box], fp)
    dif = _flair_difference(np.asarray(flair_norm_a), np.asarray(flair_norm_b), m,
                            b[grid.box], fp, grid)
    pieces = _outside_pieces(m, dif, params, grid)
    is_new_piece = _new_touching_pieces(m, pieces, dif.sd, params, grid)
    rows = (_new_lesion_rows(pieces, is_new_piece, grid)
            + _matched_group_rows(m, pieces, is_new_piece, dif, params, dt_months, grid)
            + _new_black_hole_rows(ha[grid.box], hb[grid.box], fp, m, pieces, dif,
                                   (t1_norm_a, t1hypo_limit_a, t1_norm_b), params, grid))
    return _interval_table(rows, pieces.labels, dif.sd, grid)


def t2lv_ml(lesion: np.ndarray, voxel_size_mm: Any) -> float:
    """T2 lesion volume in mL: lesion voxels x voxel volume / 1000."""
    return float(np.count_nonzero(lesion) * float(np.prod(np.broadcast_to(
        np.asarray(voxel_size_mm, dtype=np.float64), (3,)))) / 1000.0)


def interval_endpoints(table: pd.DataFrame, t2lv_start_ml: float, t2lv_end_ml: float,
                       subject: str, ses_start: str, ses_end: str,
                       months: float | None = None) -> dict[str, Any]:
    """One endpoints row (columns :data:`pipeline.contract.ENDPOINT_COLUMNS`) from an interval
    lesion table; ``months`` is the interval's real length (NaN when not given)."""
    t2 = table["kind"] == "t2"
    change = t2lv_end_ml - t2lv_start_ml
    return {
        "participant_id": f"sub-{subject}",
        "interval": interval_label(ses_start, ses_end),
        "ses_start": ses_start,
        "ses_end": ses_end,
        "months": np.nan if months is None else float(months),
        "new_t2": int(((table["class"] == "new") & t2).sum()),
        "enlarging_t2": int(((table["class"] == "enlarging") & t2).sum()),
        "new_t1hypo": int(((table["class"] == "new") & ~t2).sum()),
        "t2lv_start_ml": t2lv_start_ml,
        "t2lv_end_ml": t2lv_end_ml,
        "t2lv_change_ml": change,
        "t2lv_change_pct": 100.0 * change / t2lv_start_ml if t2lv_start_ml > 0 else np.nan,
    }


def endpoints_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Endpoints rows as a DataFrame with exactly :data:`pipeline.contract.ENDPOINT_COLUMNS`."""
    return pd.DataFrame(rows, columns=list(ENDPOINT_COLUMNS))


def _parse_intervals(intervals: list[str], sessions: list[str]) -> list[tuple[str, str]]:
    out = []
    missing = []
    for item in intervals:
        parts = split_interval_label(item)
        if parts is None or not all(parts):
            raise InputError(f"interval {item!r} must be '<ses_a>-<ses_b>', e.g. baseline-m06")
        if parts[0] == parts[1]:
            raise InputError(f"interval {item!r} compares a session with itself")
        gone = [s for s in parts if s not in sessions]
        if gone:
            missing.append(f"{item} (missing {', '.join(gone)})")
        out.append((parts[0], parts[1]))
    if missing:
        raise InputError(f"intervals {'; '.join(missing)} use sessions not in --sessions "
                         f"{sessions}; process those sessions or drop the intervals")
    return out


def _parse_months(items: list[str] | None) -> dict[str, float]:
    months = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            months[key] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise InputError(f"--sessions-months entry {item!r} must be <session>=<months>")
    return months


def _load_session(out_dir: Path, subject: str, ses: str,
                  grid: list[tuple[tuple[int, ...], np.ndarray]]) -> dict[str, Any]:
    """One session's space-subject images (lesion, t1hypo, norm FLAIR, norm T1w), its
    T1w->subject transform path and its black-hole limit. ``grid`` holds the (shape, affine) of
    the first image read (set here when empty); every image must lie on it."""
    d: dict[str, Any] = {}
    for key, product in (("lesion", "lesion_mask"), ("t1hypo", "t1hypo_mask"),
                         ("flair", "flair_norm"), ("t1", "t1w_norm")):
        path = product_path(out_dir, product, subject, ses)
        data, aff, _ = io.load_nifti(path)
        if not grid:
            grid.append((data.shape, aff))
        require_same_grid(data.shape, aff, grid[0][0], grid[0][1],
                          f"{path}: not on the subject grid shared by the other images "
                          f"(shape {data.shape} vs {grid[0][0]} or affine differs); rerun "
                          "the register and segment stages")
        d[key] = data
    d["xfm"] = product_path(out_dir, "t1w_to_subject", subject, ses)
    qc_path = product_path(out_dir, "lesion_qc", subject, ses)
    try:
        d["t1hypo_limit"] = float(json.loads(qc_path.read_text())["t1hypo_limit_norm"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{qc_path}: cannot read t1hypo_limit_norm ({exc}); rerun the "
                         "segment stage for this session") from exc
    return d


def longitudinal_files(out_dir: str | Path, subject: str, sessions: list[str],
                       intervals: list[str], params: LesionParams | None = None,
                       sessions_months: dict[str, float] | None = None) -> dict[str, Path]:
    """Classify every interval of one subject from its segment outputs; write all products.

    Reads per session (space-subject): desc-lesion mask, desc-t1hypo mask, desc-norm FLAIR,
    desc-norm T1w and the desc-lesion QC json (black-hole limit); and session b's T1w->subject
    transform to map centroids into session b's raw T1w world.

    Returns
    -------
    dict product name -> written path.
    """
    params = params or LesionParams()
    out_dir = Path(out_dir)
    pairs = _parse_intervals(intervals, sessions)
    cache: dict[str, dict[str, Any]] = {}
    grid: list[tuple[tuple[int, ...], np.ndarray]] = []  # (shape, affine) of the first image

    def load(ses: str) -> dict[str, Any]:
        if ses not in cache:
            cache[ses] = _load_session(out_dir, subject, ses, grid)
        return cache[ses]

    written: dict[str, Path] = {}
    endpoint_rows = []
    for ses_a, ses_b in pairs:
        da, db = load(ses_a), load(ses_b)
        affine = grid[0][1]
        vox = voxel_sizes(affine)
        dt = None
        if sessions_months:
            if ses_a not in sessions_months or ses_b not in sessions_months:
                raise InputError(f"--sessions-months lacks {ses_a} or {ses_b}")
            dt = sessions_months[ses_b] - sessions_months[ses_a]
        table, new_labels = classify_interval(
            da["lesion"] > 0, db["lesion"] > 0, da["flair"], db["flair"], da["t1hypo"] > 0,
            db["t1hypo"] > 0, vox, params, affine=affine, dt_months=dt, t1_norm_a=da["t1"],
            t1hypo_limit_a=da["t1hypo_limit"], t1_norm_b=db["t1"])
        if not db["xfm"].exists():
            raise InputError(f"{db['xfm']}: file not found; the T1w->subject transform of "
                             f"ses-{ses_b} is needed to report lesion positions in its T1w world "
                             "(rerun the register stage)")
        pts = table[["x_subject_mm", "y_subject_mm", "z_subject_mm"]].to_numpy(dtype=np.float64)
        mapped = (map_points_subject_to_session(pts, db["xfm"]) if len(pts)
                  else np.zeros((0, 3)))
        table.insert(table.columns.get_loc("x_subject_mm"), "x_mm", mapped[:, 0])
        table.insert(table.columns.get_loc("x_subject_mm"), "y_mm", mapped[:, 1])
        table.insert(table.columns.get_loc("x_subject_mm"), "z_mm", mapped[:, 2])
        label = interval_label(ses_a, ses_b)
        written[f"lesions_{label}"] = io.write_tsv(
            product_path(out_dir, "interval_lesions", subject, interval=(ses_a, ses_b)),
            table)
        written[f"new_{label}"] = io.save_nifti(
            product_path(out_dir, "new_dseg", subject, interval=(ses_a, ses_b)), new_labels,
            affine, np.int32)
        endpoint_rows.append(interval_endpoints(
            table, t2lv_ml(da["lesion"] > 0, vox), t2lv_ml(db["lesion"] > 0, vox), subject,
            ses_a, ses_b, dt))
    written["endpoints"] = io.write_tsv(product_path(out_dir, "endpoints", subject),
                                        endpoints_table(endpoint_rows))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline longitudinal --out OUT --subject S --sessions ... --intervals ...``."""
    ap = argparse.ArgumentParser(prog="python -m pipeline longitudinal",
                                 description="Match lesions across intervals; new T2, enlarging "
                                             "T2, new T1-hypointense and T2-LV per interval")
    ap.add_argument("--out", required=True, help="derivatives directory (segment stage output)")
    ap.add_argument("--subject", required=True, help="subject label without 'sub-'")
    ap.add_argument("--sessions", required=True, nargs="+", help="session labels present")
    ap.add_argument("--intervals", required=True, nargs="+",
                    help="intervals as <ses_a>-<ses_b>, e.g. baseline-m06 m06-m12")
    ap.add_argument("--sessions-months", nargs="*", default=None,
                    help="session=months, the visit times (from the discovery table: real ones "
                         "where sessions.tsv gives them); the endpoints' months column and the "
                         "annualised enlarging rule use them (without: months n/a)")
    ap.add_argument("--params", default=None,
                    help='JSON file {"LesionParams": {field: value}} of overrides')
    add_sources_argument(ap)
    args = ap.parse_args(argv)

    def work(params: dict) -> dict:
        return longitudinal_files(args.out, args.subject, args.sessions, args.intervals,
                                  params["LesionParams"],
                                  _parse_months(args.sessions_months) or None)

    code, written = run_step("longitudinal", args.out, args.subject, None, args.sources,
                             args.params, work)
    if code:
        return code
    for path in written.values():
        print(path)
    return 0
