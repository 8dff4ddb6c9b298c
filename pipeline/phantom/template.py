"""Outside-anatomy test bed: real averaged adult anatomy (MNI152 2009a) as a subject's head.

The analytic head of :mod:`pipeline.phantom.anatomy` is the model the segmentation was developed
on; this module gives the same generator (lesions, change, acquisition, truth) a head it was not
developed on. The anatomy is the ICBM 2009a nonlinear symmetric template as nilearn ships it
(T1 and GM/WM probability maps at 1 mm; Fonov et al. 2011 NeuroImage 54:313): GM and WM
fractions are its probability maps, CSF is the rest of its intracranial mask (the template's
T1 > 0), so sulci, ventricles, deep grey matter, cerebellum and brainstem are real averaged
anatomy rather than ellipsoids. Per subject the template is scaled (``template_scale_range``:
the template's brain is larger than a typical adult's) and deformed by a smooth random
displacement (``template_deform_mm``), so no two subjects share a shape.

Outside the intracranial mask the head is this module's own: a skull whose thickness varies
smoothly (``template_skull_mm``; cortical tables dark, marrow brighter on T1), a scalp
(subcutaneous fat, ``template_scalp_mm``), and the neck and face below the skull base (muscle
and fat, with the spinal cord continuing the brainstem), since the face and neck are what a
brain extraction on a whole-head scan must learn to leave out.

Truth: the brain mask is the pial hull (GM + WM >= 0.5, closed over sulci by
``_HULL_CLOSING_MM`` and hole-filled, so sulcal CSF and ventricles are inside, as for the
analytic head); the tissue map and lesion labels are as for the analytic head.
No atrophy is modelled here (the template does not deform with time).

Requires nilearn (an extra of the test bed, not of the pipeline): ``pip install nilearn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.phantom.anatomy import ramp, smooth_unit_field
from pipeline.phantom.config import PhantomParams

#: Files of the template inside nilearn's package data.
TEMPLATE_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                  "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                  "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
#: Margin added around the template grid so skull, scalp, face and neck fit (mm).
_PAD_MM = 40
#: Closing radius that wraps the pial hull over sulci (truth brain mask), mm.
_HULL_CLOSING_MM = 4.0
#: Ventricles: CSF at least this deep inside the hull (the rest is sulcal or cisternal CSF), mm.
_VENTRICLE_MIN_DEPTH_MM = 12.0
#: Spacing of the per-subject random fields (displacement, thickness, texture), mm.
_FIELD_MM = 4.0
#: The brain sits this far above the anatomy-frame origin (the field of view's centre), so a
#: head-sized field of view holds the vertex with the face and neck below, as a scan is planned.
_BRAIN_ABOVE_CENTRE_MM = 12.0


@dataclass(frozen=True)
class _Template:
    """Template maps on a padded 1 mm grid (template MNI mm = ``origin_mm`` + index)."""

    maps: dict[str, np.ndarray]  # gm, wm, csf, hull, ventricle, muscle, cord: fractions (float32)
    outside_mm: np.ndarray  # distance outside the intracranial mask (0 inside), float32
    origin_mm: np.ndarray  # MNI mm of index (0, 0, 0)
    centre_mm: np.ndarray  # MNI mm of the brain's bounding-box centre (anatomy-frame origin)
    half_extent_mm: np.ndarray  # half size of the brain's bounding box about that centre


def _template_dir() -> Path:
    try:
        import nilearn.datasets
    except ImportError as exc:  # the test bed's own dependency
        raise InputError("the mni152 anatomy needs nilearn, which ships the MNI152 2009a "
                         "template: pip install nilearn (or pip install -e '.[test]')") from exc
    return Path(nilearn.datasets.__file__).parent / "data"


def _ellipsoid(grid: list[np.ndarray], centre: tuple, semi: tuple) -> np.ndarray:
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, semi)) <= 1.0


@lru_cache(maxsize=1)
def load_template() -> _Template:
    """Read the template once per process and derive the maps the head model samples."""
    import nibabel as nib

    folder = _template_dir()
    imgs = {k: nib.load(str(folder / f)) for k, f in TEMPLATE_FILES.items()}
    affine = imgs["t1"].affine
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise InputError(f"{folder}: template grid is not 1 mm RAS; nilearn version unsupported")
    pad = _PAD_MM
    raw = {k: np.pad(np.asarray(im.dataobj, np.float32), pad) for k, im in imgs.items()}
    origin = affine[:3, 3] - pad
    gm, wm = raw["gm"] / 255.0, raw["wm"] / 255.0
    total = np.maximum(gm + wm, 1.0)  # the maps sum to <= 1 almost everywhere
    gm, wm = gm / total, wm / total
    intracranial = ndimage.binary_fill_holes(raw["t1"] > 0)
    csf = np.where(intracranial, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)
    tissue = (gm + wm) >= 0.5
    # Closing by Euclidean distance (exact ball, far faster than a structuring element).
    grown = ndimage.distance_transform_edt(~tissue) <= _HULL_CLOSING_MM
    closed = ndimage.distance_transform_edt(grown) > _HULL_CLOSING_MM
    hull = ndimage.binary_fill_holes(closed | tissue) & intracranial
    depth = ndimage.distance_transform_edt(hull)
    vent_seed = (csf >= 0.5) & (depth >= _VENTRICLE_MIN_DEPTH_MM)
    # The ventricles are the CSF connected to those deep seeds (lateral and third ventricle).
    labels, _ = ndimage.label((csf >= 0.5) & hull)
    ventricle = np.isin(labels, np.unique(labels[vent_seed])) & (labels > 0) & (depth >= 3.0)
    outside = ndimage.distance_transform_edt(~intracranial).astype(np.float32)
    grid = np.meshgrid(*[origin[i] + np.arange(raw["t1"].shape[i]) for i in range(3)],
                       indexing="ij", sparse=True)
    # Spinal cord: the brainstem's cross-section at the template's lowest slice, continued down.
    k0 = pad + 2
    stem = wm[:, :, k0] > 0.5
    ci, cj = (np.argwhere(stem).mean(axis=0) if stem.any()
              else (raw["t1"].shape[0] / 2, raw["t1"].shape[1] / 2))
    cord_xy = (origin[0] + ci, origin[1] + cj)
    z_floor = origin[2] + k0
    # The cord (5 mm radius) sits in a CSF sheath (to 8 mm) inside the vertebral canal.
    r2 = (grid[0] - cord_xy[0]) ** 2 + (grid[1] - cord_xy[1]) ** 2
    below = (grid[2] < z_floor) & ~intracranial
    cord = (r2 <= 5.0 ** 2) & below
    sheath = (r2 <= 8.0 ** 2) & below & ~cord
    csf = np.where(sheath, 1.0, csf).astype(np.float32)
    # Face and neck (muscle, mixed with fat by the texture): below and in front of the skull base.
    neck = _ellipsoid(grid, (0.0, cord_xy[1] + 5.0, z_floor - 30.0), (55.0, 52.0, 60.0))
    face = _ellipsoid(grid, (0.0, 55.0, -45.0), (58.0, 40.0, 38.0))
    muscle = (neck | face) & (outside > 3.0) & ~(r2 <= 8.0 ** 2)
    brain_idx = np.argwhere(hull)
    lo, hi = origin + brain_idx.min(axis=0), origin + brain_idx.max(axis=0)
    centre = (lo + hi) / 2.0
    maps = {"gm": gm.astype(np.float32), "wm": wm.astype(np.float32), "csf": csf,
            "hull": hull.astype(np.float32), "ventricle": ventricle.astype(np.float32),
            "muscle": muscle.astype(np.float32), "cord": cord.astype(np.float32)}
    return _Template(maps, outside, origin, centre, (hi - lo) / 2.0)


@lru_cache(maxsize=4)
def _blurred_maps(edge_mm: float) -> dict[str, np.ndarray]:
    """The template maps box-blurred to a voxel of ``edge_mm`` (partial volume of a coarser
    voxel: a box of width e has variance e^2/12, of which the 1 mm template holds 1/12)."""
    t = load_template()
    sigma = float(np.sqrt(max(edge_mm ** 2 - 1.0, 0.0) / 12.0))
    if sigma < 0.2:
        return t.maps
    return {k: ndimage.gaussian_filter(v, sigma) for k, v in t.maps.items()}


@dataclass
class TemplateAnatomy:
    """One subject's head built on the template (the interface of the analytic ``Anatomy``).

    Anatomy frame: RAS mm with the brain's bounding-box centre ``_BRAIN_ABOVE_CENTRE_MM``
    above the origin; a point ``p`` maps to template MNI mm
    ``centre + (p - shift) / scale + displacement(p)``.
    """

    scale: np.ndarray  # (3,) per-axis scale of the template brain
    fields: np.ndarray  # (7, I, J, K): displacement x/y/z (mm), skull, scalp, marrow, texture
    field_origin_mm: np.ndarray
    params: PhantomParams

    @property
    def brain_semi_axes_mm(self) -> np.ndarray:
        """Half size (about the origin) of a box holding the brain (lesion placement grid)."""
        half = load_template().half_extent_mm * self.scale + self.params.template_deform_mm
        return half + np.array([0.0, 0.0, _BRAIN_ABOVE_CENTRE_MM])

    def _sample_fields(self, points_mm: np.ndarray) -> np.ndarray:
        coords = (points_mm - self.field_origin_mm[:, None].astype(np.float32)) / np.float32(
            _FIELD_MM)
        out = np.empty((self.fields.shape[0], points_mm.shape[1]), np.float32)
        for i in range(self.fields.shape[0]):
            ndimage.map_coordinates(self.fields[i], coords, output=out[i], order=1,
                                    mode="nearest")
        return out

    def _template_coords(self, points_mm: np.ndarray, fld: np.ndarray) -> np.ndarray:
        t = load_template()
        shift = np.array([0.0, 0.0, _BRAIN_ABOVE_CENTRE_MM], np.float32)[:, None]
        q = ((points_mm - shift) / self.scale[:, None].astype(np.float32) + fld[:3]
             + (t.centre_mm - t.origin_mm)[:, None].astype(np.float32))
        return q  # template voxel indices (1 mm grid)

    def may_contain(self, points_mm: np.ndarray) -> np.ndarray:
        """Points that may lie inside the head (cheap conservative test)."""
        t = load_template()
        fld = self._sample_fields(points_mm)
        q = self._template_coords(points_mm, fld)
        shape = np.asarray(t.outside_mm.shape, np.float32)[:, None]
        inside = np.all((q >= 0) & (q <= shape - 1), axis=0)
        dist = np.full(points_mm.shape[1], np.inf, np.float32)
        dist[inside] = ndimage.map_coordinates(t.outside_mm, q[:, inside], order=1)
        shell = self.params.template_skull_mm[1] + self.params.template_scalp_mm[1] + 4.0
        body = ndimage.map_coordinates(t.maps["muscle"] + t.maps["cord"], q, order=1,
                                       mode="constant") > 0
        return (dist <= shell / float(self.scale.min())) | body

    def fractions(self, points_mm: np.ndarray, t_years: float, edge_mm: float
                  ) -> dict[str, np.ndarray]:
        """Tissue partial-volume fractions at anatomy-frame points (keys as for the analytic
        head, plus ``muscle``); ``t_years`` is ignored (no atrophy on the template)."""
        del t_years
        t = load_template()
        pts = np.asarray(points_mm, np.float32)
        fld = self._sample_fields(pts)
        q = self._template_coords(pts, fld)
        maps = _blurred_maps(round(float(edge_mm), 1))
        s = {k: ndimage.map_coordinates(v, q, order=1, mode="constant")
             for k, v in maps.items() if k != "ventricle"}
        # Shells outside the inner skull surface, in subject mm (template distance x scale).
        d = ndimage.map_coordinates(t.outside_mm, q, order=1, mode="nearest") * np.float32(
            self.scale.mean())
        skull_mm, scalp_mm = fld[3], fld[4]
        e = float(edge_mm)
        in_outer_skull = ramp(skull_mm - d, e)
        in_head = ramp(skull_mm + scalp_mm - d, e)
        intracranial = np.clip(s["gm"] + s["wm"] + s["csf"], 0.0, 1.0)
        body = np.clip(s["muscle"] + s["cord"], 0.0, 1.0) * (1.0 - in_outer_skull)
        skull = np.clip(in_outer_skull - intracranial, 0.0, 1.0)
        scalp = np.clip(np.maximum(in_head - in_outer_skull, 0.0) - body, 0.0, 1.0)
        # Marrow (diploe): the middle of the skull's thickness is fatty, brighter on T1.
        marrow_w = np.clip(fld[5], 0.0, 0.6)
        mid = np.abs(d - skull_mm / 2.0) < skull_mm / 4.0
        marrow = np.where(mid, skull * marrow_w, 0.0).astype(np.float32)
        skull = skull - marrow
        infra = self._infratentorial(q, t)
        brain = np.clip(s["hull"], 0.0, 1.0)
        # Fat/muscle mix of the neck and face follows the texture (fascia, fat pads).
        fat_share = np.clip(0.3 + 0.25 * fld[6], 0.0, 1.0)
        return {"csf": s["csf"], "gm": s["gm"], "wm": s["wm"] + s["cord"] * (1.0 - in_outer_skull),
                "deep_gm": np.zeros_like(d), "skull": skull,
                "scalp": scalp + marrow + body * fat_share, "muscle": body * (1.0 - fat_share),
                "brain": brain, "cerebrum": brain * (1.0 - infra), "texture": fld[6]}

    @staticmethod
    def _infratentorial(q: np.ndarray, t: _Template) -> np.ndarray:
        """Cerebellum and brainstem (MNI): below z = -25 mm, or behind y = -40 and below z = -5."""
        y = q[1] + np.float32(t.origin_mm[1])
        z = q[2] + np.float32(t.origin_mm[2])
        return ((z < -25.0) | ((y < -40.0) & (z < -5.0))).astype(np.float32)

    def ventricle_depth_mm(self, points_mm: np.ndarray, t_years: float) -> np.ndarray:
        """Positive inside the ventricles (> 0.5 ventricle fraction), negative outside."""
        del t_years
        t = load_template()
        q = self._template_coords(points_mm, self._sample_fields(points_mm))
        v = ndimage.map_coordinates(t.maps["ventricle"], q, order=1, mode="constant")
        return (v - 0.5).astype(np.float32)

    def away_from_ventricles(self, centre_mm: np.ndarray) -> np.ndarray:
        """Direction from the nearest ventricle wall to ``centre_mm`` (for Dawson's fingers)."""
        r = np.linspace(-12.0, 12.0, 9, dtype=np.float32)
        g = np.stack(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1)
        pts = centre_mm[:, None].astype(np.float32) + g
        inside = self.ventricle_depth_mm(pts, 0.0) > 0
        if not inside.any():
            return np.zeros(3)
        near = pts[:, inside][:, np.argmin((g[:, inside] ** 2).sum(axis=0))]
        return centre_mm - near


def make_template_anatomy(rng: np.random.Generator, params: PhantomParams) -> TemplateAnatomy:
    """Draw one subject's head on the template: scale, displacement, skull/scalp thickness."""
    p = params
    t = load_template()
    size = rng.uniform(*p.template_scale_range)
    scale = size * (1.0 + p.brain_axis_sd * np.clip(rng.standard_normal(3), -2, 2))
    half = (np.asarray(t.outside_mm.shape) / 2.0 + 20.0) * scale.max()
    shape = tuple(int(np.ceil(2 * h / _FIELD_MM)) + 1 for h in half)
    disp = [np.clip(smooth_unit_field(rng, shape, 20.0 / _FIELD_MM), -2.0, 2.0)
            * p.template_deform_mm
            for _ in range(3)]

    def between(lo_hi: tuple[float, float], sigma_mm: float) -> np.ndarray:
        u = 0.5 + 0.5 * np.tanh(smooth_unit_field(rng, shape, sigma_mm / _FIELD_MM))
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u

    skull = between(p.template_skull_mm, 30.0)
    scalp = between(p.template_scalp_mm, 30.0)
    marrow = between((0.0, 0.6), 25.0)
    texture = smooth_unit_field(rng, shape, p.texture_sigma_mm / _FIELD_MM)
    fields = np.stack(disp + [skull, scalp, marrow, texture]).astype(np.float32)
    return TemplateAnatomy(scale.astype(np.float64), fields, -half, p)
