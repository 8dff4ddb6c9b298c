"""Analytic head model in the anatomy frame (RAS mm, origin at the brain centre).

The head is a smooth deformed ellipsoid: scalp, skull and subarachnoid CSF are shells at fixed
depths outside the pial hull; inside, the cortex is a ribbon of ``cortex_mm`` that also lines
sulci (CSF sheets at the zero level set of a smooth random field, ``fold_sigma_mm``, reaching
``sulcus_depth_mm`` below the hull) and the interhemispheric fissure, so the GM/WM boundary is
folded rather than a shell. Lateral ventricles (frontal horn, body, atrium, temporal horn) and
deep grey matter (thalamus, caudate, lentiform nucleus) are ellipsoids; below the occipital
lobes a cerebellum (foliated cortex around a WM core, separated from the cerebrum by a CSF
sheet) and a brainstem extend the hull (``hindbrain``), so that the skull and field of view
see a head-like shape and the cut through the neck. Per subject the brain
size, axis ratios, shape deformation, folding pattern and ventricle size vary.

The model is evaluated at arbitrary points (:func:`tissue_fractions`), so every image is sampled
once, directly on its own voxel grid, with partial-volume edges of one voxel width: no
intermediate high-resolution volume is resampled. Atrophy is a function of time: the brain hull
recedes by ``brain_atrophy_pct_per_year`` of brain volume and the ventricles grow by
``ventricle_growth_pct_per_year`` of their volume, while skull and scalp stay fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.phantom.config import PhantomParams

#: Tissue classes of the truth tissue map (desc-tissue dseg).
TISSUE_LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "deep_gm": 4, "lesion": 5}


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in the anatomy frame.

    Attributes
    ----------
    center_mm : ndarray of shape (3,)
    semi_axes_mm : ndarray of shape (3,)
    rotation : ndarray of shape (3, 3)
        Columns are the ellipsoid's axes in the anatomy frame (orthonormal).
    """

    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray

    def scaled(self, factor: float, center_x_factor: float = 1.0) -> Ellipsoid:
        c = self.center_mm.copy()
        c[0] *= center_x_factor
        return Ellipsoid(c, self.semi_axes_mm * factor, self.rotation)


def ellipsoid_depth_mm(points_mm: np.ndarray, ell: Ellipsoid) -> np.ndarray:
    """Approximate signed distance to an ellipsoid surface, positive inside.

    First-order distance ``(1 - rho) / |grad rho|`` with ``rho`` the ellipsoidal radius: exact on
    the surface and accurate within a few mm of it, which is where partial-volume edges and
    layer depths are evaluated.

    Parameters
    ----------
    points_mm : ndarray of shape (3, N), anatomy frame
    ell : Ellipsoid

    Returns
    -------
    ndarray of shape (N,), float32, mm
    """
    q = ell.rotation.T.astype(np.float32) @ (points_mm - ell.center_mm[:, None].astype(np.float32))
    a = ell.semi_axes_mm.astype(np.float32)[:, None]
    u = q / a
    rho = np.sqrt(np.einsum("ij,ij->j", u, u))
    v = u / a
    g = np.sqrt(np.einsum("ij,ij->j", v, v))
    # Near the centre rho/g tends to a value between the semi-axes; guard the 0/0.
    ratio = np.where(g > 1e-6, rho / np.maximum(g, 1e-6), np.float32(ell.semi_axes_mm.min()))
    return ((1.0 - rho) * ratio).astype(np.float32)


def rotation_x(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# Template structures (centre, semi-axes, rotation) of the right hemisphere at scale 1; the left
# one is the mirror image. Positions follow MNI-like anatomy scaled to the brain ellipsoid.
_VENTRICLE_TEMPLATE = (
    ((7.0, -2.0, 12.0), (4.5, 22.0, 6.0), rotation_x(-10.0)),  # body
    ((8.0, 17.0, 9.0), (5.0, 10.0, 7.5), rotation_x(15.0)),  # frontal horn
    ((13.0, -24.0, 8.0), (5.0, 9.0, 7.0), rotation_z(20.0)),  # atrium / occipital horn
    ((24.0, -6.0, -14.0), (3.0, 11.0, 3.5), rotation_z(-15.0)),  # temporal horn
)
_DEEP_GM_TEMPLATE = (
    ((9.0, -12.0, 4.0), (7.0, 12.0, 7.0), np.eye(3)),  # thalamus
    ((14.0, 14.0, 9.0), (4.0, 10.0, 6.0), rotation_x(10.0)),  # caudate head
    ((22.0, 2.0, -1.0), (6.0, 13.0, 8.0), np.eye(3)),  # lentiform nucleus
)


def _mirror(center: tuple, axes: tuple, rot: np.ndarray) -> list[Ellipsoid]:
    flip = np.diag([-1.0, 1.0, 1.0])
    right = Ellipsoid(np.array(center, float), np.array(axes, float), np.asarray(rot, float))
    # Mirror x: centre x -> -x; the rotation is conjugated so the shape is the mirror image.
    left = Ellipsoid(flip @ right.center_mm, right.semi_axes_mm, flip @ right.rotation @ flip)
    return [right, left]


@dataclass(frozen=True)
class Anatomy:
    """One subject's head model.

    Attributes
    ----------
    brain_semi_axes_mm : ndarray of shape (3,), pial hull at baseline
    ventricle_scale : float, subject's ventricle size factor at baseline
    fields : ndarray of shape (4, I, J, K), float32
        Smooth random fields on a regular anatomy-frame grid: hull deformation (mm), signed
        distance to the sulcal mid-surfaces (mm), relative sulcal depth, intensity texture.
    field_origin_mm : ndarray of shape (3,), anatomy coordinate of field voxel (0, 0, 0)
    field_spacing_mm : float
    params : PhantomParams
    """

    brain_semi_axes_mm: np.ndarray
    ventricle_scale: float
    fields: np.ndarray
    field_origin_mm: np.ndarray
    field_spacing_mm: float
    params: PhantomParams

    @property
    def head_semi_axes_mm(self) -> np.ndarray:
        p = self.params
        return self.brain_semi_axes_mm + p.outer_csf_mm + p.skull_mm + p.scalp_mm

    def ventricles(self, t_years: float) -> list[Ellipsoid]:
        grow = (1.0 + self.params.ventricle_growth_pct_per_year / 100.0 * t_years) ** (1 / 3)
        f = self.ventricle_scale * grow
        return [e.scaled(f, np.sqrt(f)) for c, a, r in _VENTRICLE_TEMPLATE
                for e in _mirror(c, a, r)]

    def deep_gm(self) -> list[Ellipsoid]:
        return [e for c, a, r in _DEEP_GM_TEMPLATE for e in _mirror(c, a, r)]

    def hindbrain(self) -> tuple[Ellipsoid, Ellipsoid, Ellipsoid]:
        """Cerebellum, its white-matter core, and brainstem, scaled to the brain size."""
        ax, ay, az = self.brain_semi_axes_mm
        azi = az * self.params.brain_inferior_flattening
        cb = Ellipsoid(np.array([0.0, -0.62 * ay, -0.85 * azi]),
                       np.array([0.68 * ax, 0.28 * ay, 0.38 * azi]), rotation_x(-12.0))
        core = Ellipsoid(cb.center_mm + np.array([0.0, 0.15 * cb.semi_axes_mm[1], 0.1 * azi]),
                         cb.semi_axes_mm * np.array([0.45, 0.35, 0.35]), cb.rotation)
        stem = Ellipsoid(np.array([0.0, -0.22 * ay, -1.05 * azi]),
                         np.array([0.20 * ax, 0.18 * ay, 0.55 * azi]), rotation_x(-15.0))
        return cb, core, stem

    def hull_shrink_mm(self, t_years: float) -> float:
        """Recession of the pial hull for the configured brain volume loss (volume ~ r^3)."""
        loss = self.params.brain_atrophy_pct_per_year / 100.0 * t_years
        return float(np.mean(self.brain_semi_axes_mm) * (1 - (1 - loss) ** (1 / 3)))

    # The head-model interface the renderer and the lesion planner use (shared with
    # pipeline.phantom.template.TemplateAnatomy).
    def may_contain(self, points_mm: np.ndarray) -> np.ndarray:
        return head_depth_bound(self, points_mm)

    def fractions(self, points_mm: np.ndarray, t_years: float, edge_mm: float
                  ) -> dict[str, np.ndarray]:
        return tissue_fractions(self, points_mm, t_years, edge_mm)

    def ventricle_depth_mm(self, points_mm: np.ndarray, t_years: float) -> np.ndarray:
        """Signed depth inside the nearest ventricle (positive inside)."""
        return np.max([ellipsoid_depth_mm(points_mm, e) for e in self.ventricles(t_years)], 0)

    def away_from_ventricles(self, centre_mm: np.ndarray) -> np.ndarray:
        """Vector from the centre of the nearest ventricle part to ``centre_mm``."""
        near = min(self.ventricles(0.0), key=lambda e: float(-ellipsoid_depth_mm(
            centre_mm[:, None].astype(np.float32), e)[0]))
        return centre_mm - near.center_mm


def smooth_unit_field(rng: np.random.Generator, shape: tuple[int, ...],
                      sigma_vox: float) -> np.ndarray:
    """A smooth Gaussian random field (sigma in voxels), zero mean and unit SD."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox,
                                mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-12)


def make_anatomy(rng: np.random.Generator, params: PhantomParams) -> Anatomy:
    """Draw one subject's anatomy.

    Parameters
    ----------
    rng : numpy Generator (the subject's anatomy stream)
    params : PhantomParams

    Returns
    -------
    Anatomy
    """
    p = params
    size = 1.0 + p.brain_size_sd * np.clip(rng.standard_normal(), -2, 2)
    axes = np.asarray(p.brain_semi_axes_mm) * size * (
        1.0 + p.brain_axis_sd * np.clip(rng.standard_normal(3), -2, 2))
    vent = float(rng.uniform(*p.ventricle_scale_range))
    h = p.field_spacing_mm
    half = axes * 1.1 + p.outer_csf_mm + p.skull_mm + p.scalp_mm + 15.0
    shape = tuple(int(np.ceil(2 * x / h)) + 1 for x in half)
    # Clipped at 2 SD so the hull stays within a known distance of the ellipsoid.
    deform = (np.clip(smooth_unit_field(rng, shape, 20.0 / h), -2.0, 2.0)
              * p.brain_shape_deform_mm)
    fold = smooth_unit_field(rng, shape, p.fold_sigma_mm / h)
    grad = np.gradient(fold, h)
    gmag = np.sqrt(sum(g * g for g in grad))
    # Signed distance to the zero level set (the sulcal mid-surface), first order.
    sheet = np.clip(fold / np.maximum(gmag, 1e-6), -30.0, 30.0)
    depth = np.clip(1.0 + 0.25 * smooth_unit_field(rng, shape, 10.0 / h), 0.4, 1.6)
    texture = smooth_unit_field(rng, shape, p.texture_sigma_mm / h)
    fields = np.stack([deform, sheet, depth, texture]).astype(np.float32)
    return Anatomy(axes, vent, fields, -half, h, p)


def _sample_fields(anat: Anatomy, points_mm: np.ndarray) -> np.ndarray:
    coords = (points_mm - anat.field_origin_mm[:, None].astype(np.float32)) / np.float32(
        anat.field_spacing_mm)
    out = np.empty((anat.fields.shape[0], points_mm.shape[1]), np.float32)
    for i in range(anat.fields.shape[0]):
        ndimage.map_coordinates(anat.fields[i], coords, output=out[i], order=1, mode="nearest")
    return out


def ramp(d: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume fraction of a half-space at signed distance ``d`` (box of width edge)."""
    return np.clip(0.5 + d / np.float32(edge_mm), 0.0, 1.0)


def _depth_in_box(points_mm: np.ndarray, ell: Ellipsoid, reach_mm: float,
                  deform: np.ndarray | None = None, deform_weight: float = 0.0) -> np.ndarray:
    """:func:`ellipsoid_depth_mm` (plus a share of the hull deformation) evaluated only within
    ``reach_mm`` of the ellipsoid's bounding box; elsewhere a depth far outside (-1000 mm)."""
    out = np.full(points_mm.shape[1], -1000.0, np.float32)
    r = float(ell.semi_axes_mm.max()) + reach_mm
    lo, hi = ell.center_mm - r, ell.center_mm + r
    x, y, z = points_mm
    box = np.flatnonzero((x > lo[0]) & (x < hi[0]) & (y > lo[1]) & (y < hi[1])
                         & (z > lo[2]) & (z < hi[2]))
    if box.size:
        d = ellipsoid_depth_mm(points_mm[:, box], ell)
        if deform is not None and deform_weight:
            d += np.float32(deform_weight) * deform[box]
        out[box] = d
    return out


def head_depth_bound(anat: Anatomy, points_mm: np.ndarray) -> np.ndarray:
    """Boolean (N,): points that may lie inside the head (cheap conservative test)."""
    # Deformation is at most 2 x brain_shape_deform_mm; 5 % covers the first-order distance's
    # error on the ellipsoid (checked against the full model in the tests).
    p = anat.params
    shell = p.outer_csf_mm + p.skull_mm + p.scalp_mm + 2.0 * p.brain_shape_deform_mm + 3.0
    a = (anat.brain_semi_axes_mm + shell) * 1.05
    u = points_mm / a[:, None].astype(np.float32)
    inside = np.einsum("ij,ij->j", u, u) < 1.0
    if p.hindbrain:
        cb, _, stem = anat.hindbrain()
        for ell in (cb, stem):
            big = Ellipsoid(ell.center_mm, (ell.semi_axes_mm + shell) * 1.05, ell.rotation)
            r = float(big.semi_axes_mm.max())
            lo, hi = big.center_mm - r, big.center_mm + r
            x, y, z = points_mm
            box = np.flatnonzero((z > lo[2]) & (z < hi[2]) & (y > lo[1]) & (y < hi[1])
                                 & (x > lo[0]) & (x < hi[0]))
            if box.size:
                q = big.rotation.T.astype(np.float32) @ (
                    points_mm[:, box] - big.center_mm[:, None].astype(np.float32))
                q /= big.semi_axes_mm[:, None].astype(np.float32)
                inside[box] |= np.einsum("ij,ij->j", q, q) < 1.0
    return inside


def _hull_depth_mm(anat: Anatomy, pts: np.ndarray, deform: np.ndarray) -> np.ndarray:
    """Depth (mm) of ``pts`` below the baseline brain hull: an ellipsoid with a flat base (a
    smaller z semi-axis below the centre, continuous at z = 0), deformed by ``deform``."""
    x, y, z = pts
    axes = anat.brain_semi_axes_mm
    az = np.where(z < 0, np.float32(axes[2] * anat.params.brain_inferior_flattening),
                  np.float32(axes[2]))
    u0, u1, u2 = x / np.float32(axes[0]), y / np.float32(axes[1]), z / az
    rho = np.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
    g = np.sqrt((u0 / np.float32(axes[0])) ** 2 + (u1 / np.float32(axes[1])) ** 2 + (u2 / az) ** 2)
    # first-order distance to the level set rho = 1 (value over gradient)
    return (1.0 - rho) * rho / np.maximum(g, 1e-6) + deform


def tissue_fractions(anat: Anatomy, points_mm: np.ndarray, t_years: float,
                     edge_mm: float) -> dict[str, np.ndarray]:
    """Tissue partial-volume fractions at anatomy-frame points.

    Parameters
    ----------
    anat : Anatomy
    points_mm : ndarray of shape (3, N), float32, anatomy frame (mm)
    t_years : float, time since baseline (atrophy)
    edge_mm : float, width of the partial-volume ramp (the sampling voxel size)

    Returns
    -------
    dict of ndarray of shape (N,), float32
        ``csf``, ``gm``, ``wm``, ``deep_gm``, ``skull``, ``scalp`` (summing to the head fraction),
        ``brain`` (inside the pial hull: the truth brain mask), ``cerebrum`` (brain outside
        cerebellum and brainstem), ``texture`` (unit-SD field).
    """
    p = anat.params
    pts = np.asarray(points_mm, np.float32)
    x, y, z = pts
    fld = _sample_fields(anat, pts)
    deform, sheet, depth_f, texture = fld
    axes = anat.brain_semi_axes_mm
    s0 = _hull_depth_mm(anat, pts, deform)
    e = edge_mm
    shrink = np.float32(anat.hull_shrink_mm(t_years))
    s_cer = s0 - shrink  # depth below the cerebral hull
    if p.hindbrain:
        # Cerebellum and brainstem extend the hull below the occipital lobes; the skull follows.
        cb, core, stem = anat.hindbrain()
        reach = p.outer_csf_mm + p.skull_mm + p.scalp_mm + 2 * p.brain_shape_deform_mm + 2 * e
        d_cb0 = _depth_in_box(pts, cb, reach, deform, 0.3)
        d_st0 = _depth_in_box(pts, stem, reach)
        s0 = np.maximum(s0, np.maximum(d_cb0, d_st0))
        d_cb, d_st = d_cb0 - shrink, d_st0 - shrink
    s = s0 - shrink
    head = ramp(s0 + np.float32(p.outer_csf_mm + p.skull_mm + p.scalp_mm), e)
    in_outer_skull = ramp(s0 + np.float32(p.outer_csf_mm + p.skull_mm), e)
    intracranial = ramp(s0 + np.float32(p.outer_csf_mm), e)
    brain = ramp(s, e)
    hw = np.float32(p.sulcus_half_width_mm)
    cortex = np.float32(p.cortex_mm)
    sulc_depth = np.float32(p.sulcus_depth_mm) * depth_f
    abs_sheet = np.abs(sheet)
    d_sulc = np.minimum(hw - abs_sheet, sulc_depth - s_cer)
    # The fissure reaches down to an arch over the corpus callosum (fissure_below_mm at its
    # top), and all the way down in front of and behind it.
    yc = np.float32(0.5 * axes[1])
    fiss_region = z - np.float32(p.fissure_below_mm) + np.float32(12.0) * (y / yc) ** 2
    abs_x = np.abs(x)
    d_fiss = np.minimum(hw - abs_x, fiss_region)
    d_wm = np.minimum(s_cer - cortex, np.maximum(abs_sheet - hw - cortex,
                                                 s_cer - sulc_depth - cortex))
    d_wm = np.minimum(d_wm, np.maximum(abs_x - hw - cortex, -fiss_region - cortex))
    # Outside the cerebral hull but inside the brain (around the hindbrain): cisterns.
    csf_in = np.maximum(np.maximum(ramp(d_sulc, e), ramp(d_fiss, e)), ramp(-s_cer, e))
    if p.hindbrain:
        # Tentorium/cisterns: a CSF sheet on the cerebellar surface, lined by cortex above it.
        tent = ramp(np.minimum(hw - np.abs(d_cb), s_cer), e)
        csf_in = np.maximum(csf_in, tent)
        d_wm = np.minimum(d_wm, -d_cb - hw - cortex)
    wm_raw = ramp(d_wm, e)
    deep = _deep_structures(anat, pts, t_years, e, csf_in)
    rem = 1.0 - csf_in
    cer = {"csf": csf_in, "deep_gm": rem * deep, "wm": rem * (1.0 - deep) * wm_raw,
           "gm": rem * (1.0 - deep) * (1.0 - wm_raw)}
    w_cer = np.ones_like(x)
    parts = [(w_cer, cer)]
    if p.hindbrain:
        w_cer, parts = _with_hindbrain(anat, pts, cer, d_cb, d_st, tent, core, e)
    out = {k: sum(w * t[k] for w, t in parts) * brain for k in ("csf", "deep_gm", "wm", "gm")}
    out["csf"] += intracranial - brain
    out.update({"skull": in_outer_skull - intracranial, "scalp": head - in_outer_skull,
                "brain": brain, "cerebrum": w_cer * brain, "texture": texture})
    return out


def _deep_structures(anat: Anatomy, pts: np.ndarray, t_years: float, e: float,
                     csf_in: np.ndarray) -> np.ndarray:
    """Deep GM fraction at ``pts``; ventricular CSF is added to ``csf_in`` in place.

    Ventricles and nuclei are evaluated only in the central box that holds them all.
    """
    x, y, z = pts
    deep = np.zeros_like(x)
    structs_v = anat.ventricles(t_years)
    structs_d = anat.deep_gm()
    lo = np.min([st.center_mm - st.semi_axes_mm.max() - 2 * e for st in structs_v + structs_d], 0)
    hi = np.max([st.center_mm + st.semi_axes_mm.max() + 2 * e for st in structs_v + structs_d], 0)
    box = np.flatnonzero((x > lo[0]) & (x < hi[0]) & (y > lo[1]) & (y < hi[1])
                         & (z > lo[2]) & (z < hi[2]))
    if box.size:
        sub = pts[:, box]
        d_v = np.max([ellipsoid_depth_mm(sub, st) for st in structs_v], 0)
        d_d = np.max([ellipsoid_depth_mm(sub, st) for st in structs_d], 0)
        csf_in[box] = np.maximum(csf_in[box], ramp(d_v, e))
        deep[box] = ramp(d_d, e)
    return deep


def _with_hindbrain(anat: Anatomy, pts: np.ndarray, cer: dict[str, np.ndarray],
                    d_cb: np.ndarray, d_st: np.ndarray, tent: np.ndarray, core: Ellipsoid,
                    e: float) -> tuple[np.ndarray, list]:
    """Cerebrum weight and the (weight, tissue fractions) parts: cerebrum, cerebellum (with
    folia and its WM core) and brainstem (all WM)."""
    x = pts[0]
    w_cb = ramp(d_cb, e)
    w_st = ramp(d_st, e) * (1.0 - w_cb)
    w_cer = np.clip(1.0 - w_cb - w_st, 0.0, 1.0)
    hind = np.flatnonzero(w_cb > 0)
    cb_csf = np.zeros_like(x)
    cb_wm = np.zeros_like(x)
    if hind.size:
        # Folia: the folding field at twice the spatial frequency, shallow and thin.
        sub = pts[:, hind]
        folia = np.abs(_sample_fields(anat, 2.0 * sub)[1]) / 2.0
        d_fol = np.minimum(np.float32(0.5) - folia, np.float32(16.0) - d_cb[hind])
        cb_csf[hind] = np.maximum(ramp(d_fol, e), tent[hind])
        cb_wm[hind] = ramp(ellipsoid_depth_mm(sub, core), e) * (1.0 - cb_csf[hind])
    cbl = {"csf": cb_csf, "deep_gm": np.zeros_like(x), "wm": cb_wm,
           "gm": 1.0 - cb_csf - cb_wm}
    stem_t = {"csf": np.zeros_like(x), "deep_gm": np.zeros_like(x), "wm": np.ones_like(x),
              "gm": np.zeros_like(x)}
    return w_cer, [(w_cer, cer), (w_cb, cbl), (w_st, stem_t)]


def contrast_values(params: PhantomParams, contrast: str) -> dict[str, float]:
    """Tissue intensities of ``contrast`` ("T1w" or "FLAIR") relative to T1 WM = 1."""
    p = params
    if contrast == "T1w":
        return {"csf": p.t1_csf, "gm": p.t1_gm, "wm": p.t1_wm, "deep_gm": p.t1_deep_gm,
                "skull": p.t1_skull, "scalp": p.t1_scalp, "muscle": p.t1_muscle}
    if contrast == "FLAIR":
        return {"csf": p.flair_csf, "gm": p.flair_gm, "wm": p.flair_wm,
                "deep_gm": p.flair_deep_gm, "skull": p.flair_skull, "scalp": p.flair_scalp,
                "muscle": p.flair_muscle}
    raise ValueError(f"contrast must be 'T1w' or 'FLAIR', got {contrast!r}")


def tissue_intensity(params: PhantomParams, frac: dict[str, np.ndarray],
                     contrast: str) -> np.ndarray:
    """Noise-free, unbiased tissue image (N,) from fractions: sum of fraction x intensity,
    modulated by the smooth texture so that tissues are not perfectly flat."""
    vals = contrast_values(params, contrast)
    img = np.zeros_like(frac["wm"])
    for name, v in vals.items():
        if name in frac:  # the analytic head has no muscle
            img += frac[name] * np.float32(v)
    img *= 1.0 + np.float32(params.texture_sd) * frac["texture"]
    return img


def tissue_labels(frac: dict[str, np.ndarray]) -> np.ndarray:
    """Hard tissue label (N,) uint8 by largest fraction: 0 background (air, skull, scalp, muscle),
    1 CSF, 2 GM, 3 WM, 4 deep GM (lesions are added by the caller)."""
    extra = frac["skull"] + frac["scalp"] + frac.get("muscle", 0.0)
    stack = np.stack([np.maximum(extra, 1.0 - extra - frac["csf"] - frac["gm"]
                                 - frac["wm"] - frac["deep_gm"]),
                      frac["csf"], frac["gm"], frac["wm"], frac["deep_gm"]])
    return np.argmax(stack, axis=0).astype(np.uint8)
