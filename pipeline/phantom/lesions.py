"""White-matter lesions: where they are, how they change between sessions, and their
partial-volume rasterisation on any voxel grid.

Each lesion is an ellipsoid in the anatomy frame (longest axis log-uniform in
``lesion_diameter_mm``, shorter axes ``lesion_axis_ratio`` of it, random orientation), placed
periventricular (its surface within a few mm of a ventricle, long axis pointing away from it),
in deep WM, or juxtacortical (touching
the cortex from the WM side), and kept out of CSF and apart from unrelated lesions by
``lesion_gap_mm`` so that lesions never merge by accident. Events per interval (new, new touching
an old lesion, new black hole, enlarging, shrinking, resolving, turning T1-hypointense) are drawn
from per-subject expected counts; each baseline lesion takes at most one event, and new lesions
stay stable after they appear. Changes are sized so the truth class is unambiguous: enlarging
lesions grow concentrically by ``enlarge_volume_gain`` (+80..+200 %), shrinking ones lose
``shrink_volume_loss`` (45..70 %), stable ones vary by < ``stable_volume_jitter``, and a new lesion
touching an old one is a blob with only ``touching_inside_fraction`` (10..30 %) of its volume
inside the old lesion, on one side.

Rasterisation (:func:`rasterize_lesions`) computes each lesion's partial-volume fraction by
supersampling every voxel of its bounding box on a sub-grid of spacing ``lesion_supersample_mm``;
a voxel is labelled when the lesion fractions sum to >= 0.5, with the label of the lesion holding
the largest fraction there (ties go to the older lesion, so a new lesion touching an old one keeps
only its own part).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pipeline.phantom.anatomy import Anatomy, Ellipsoid, ellipsoid_depth_mm
from pipeline.phantom.config import SESSION_MONTHS, PhantomParams

LOCATIONS = ("periventricular", "deep_wm", "juxtacortical")


@dataclass
class Lesion:
    """One lesion and its history over the sessions.

    Attributes
    ----------
    lesion_id : int, >= 1, in order of appearance (older lesions have smaller ids)
    location : one of LOCATIONS
    kind : what the generator did (stable, new, new_hypo, new_touching, enlarging, shrinking,
        resolving, turning_hypo)
    center_mm, semi_axes_mm, rotation : the ellipsoid at scale 1 (anatomy frame)
    scale : ndarray of shape (n_sessions,), semi-axis factor per session, 0 = absent
    hypo : ndarray of shape (n_sessions,), bool, T1-hypointense (black hole) per session
    flair_ratio : FLAIR / WM FLAIR
    t1_iso, t1_hole : T1 relative to T1 WM when not / when hypointense
    event_session : index of the session where the event happens (-1: none)
    parent_id : for new_touching, the lesion it touches (0: none)
    """

    lesion_id: int
    location: str
    kind: str
    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    hypo: np.ndarray
    flair_ratio: float
    t1_iso: float
    t1_hole: float
    event_session: int = -1
    parent_id: int = 0

    @property
    def max_radius_mm(self) -> float:
        return float(self.semi_axes_mm.max() * self.scale.max())

    def ellipsoid(self, session: int) -> Ellipsoid:
        return Ellipsoid(self.center_mm, self.semi_axes_mm * self.scale[session], self.rotation)

    def t1_value(self, session: int) -> float:
        return self.t1_hole if self.hypo[session] else self.t1_iso


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _ball_points(n_side: int = 7) -> np.ndarray:
    """Regular points filling the unit ball, shape (3, M): the placement checks' samples."""
    g = (np.arange(n_side) + 0.5) / n_side * 2 - 1
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1)
    return pts[:, np.einsum("ij,ij->j", pts, pts) <= 1.0]


_BALL = _ball_points()


def _points_in(ell: Ellipsoid, unit: np.ndarray = _BALL) -> np.ndarray:
    return (ell.center_mm[:, None] + ell.rotation @ (ell.semi_axes_mm[:, None] * unit)).astype(
        np.float32)


@dataclass
class _PlacementMaps:
    """Coarse anatomy-frame maps used to propose lesion centres (checked exactly afterwards)."""

    origin_mm: np.ndarray
    spacing_mm: float
    wm: np.ndarray  # bool
    dist_nonwm_mm: np.ndarray
    dist_vent_mm: np.ndarray
    dist_cortex_mm: np.ndarray
    anat: Anatomy
    t_check: tuple[float, ...] = field(default_factory=tuple)


def _placement_maps(anat: Anatomy, t_last_years: float) -> _PlacementMaps:
    h = 2.0
    half = anat.brain_semi_axes_mm + 2.0
    axes = [np.arange(-hx, hx + h / 2, h) for hx in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij")).astype(np.float32)
    shape = grid.shape[1:]
    pts = grid.reshape(3, -1)
    # Worst case over time: smallest brain and largest ventricles (the last session).
    frac = anat.fractions(pts, t_last_years, h)
    # Supratentorial lesions only: the cerebellum and brainstem are not candidate sites.
    wm = ((frac["wm"] > 0.5) & (frac["cerebrum"] > 0.5)).reshape(shape)
    cortex = (frac["gm"] > 0.5).reshape(shape)
    vent_mask = (anat.ventricle_depth_mm(pts, t_last_years) > 0).reshape(shape)
    return _PlacementMaps(
        origin_mm=np.array([a[0] for a in axes]), spacing_mm=h, wm=wm,
        dist_nonwm_mm=ndimage.distance_transform_edt(wm) * h,
        dist_vent_mm=ndimage.distance_transform_edt(~vent_mask) * h,
        dist_cortex_mm=ndimage.distance_transform_edt(~cortex) * h,
        anat=anat, t_check=(0.0, t_last_years))


def _candidates(maps: _PlacementMaps, location: str, radius_mm: float) -> np.ndarray:
    r = radius_mm
    if location == "periventricular":
        ok = maps.wm & (maps.dist_nonwm_mm >= r + 1.0) & (maps.dist_vent_mm <= r + 4.0)
    elif location == "deep_wm":
        ok = maps.wm & (maps.dist_nonwm_mm >= r + 1.5) & (maps.dist_vent_mm >= r + 6.0)
    elif location == "juxtacortical":
        ok = (maps.wm & (maps.dist_cortex_mm >= 0.6 * r) & (maps.dist_cortex_mm <= r + 0.5)
              & (maps.dist_vent_mm >= r + 6.0))
    else:
        raise ValueError(f"unknown lesion location {location!r}")
    return np.argwhere(ok)


def _fits_tissue(maps: _PlacementMaps, ell: Ellipsoid, location: str) -> bool:
    """Exact check on the analytic model: the lesion lies in WM and never in CSF."""
    pts = _points_in(ell)
    for t in maps.t_check:
        frac = maps.anat.fractions(pts, t, 1.0)
        if frac["csf"].mean() > 0.01 or frac["csf"].max() > 0.5:
            return False
        if frac["cerebrum"].mean() < 0.99:
            return False
        need_wm = 0.6 if location == "juxtacortical" else 0.9
        if frac["wm"].mean() < need_wm:
            return False
        if location == "juxtacortical" and frac["gm"].max() < 0.5:
            return False  # it must actually reach the cortex
    return True


def _collides(center: np.ndarray, radius: float, others: list[Lesion], gap_mm: float,
              exempt: int = 0) -> bool:
    for o in others:
        if o.lesion_id == exempt:
            continue
        if np.linalg.norm(center - o.center_mm) < radius + o.max_radius_mm + gap_mm:
            return True
    return False


def _draw_shape(rng: np.random.Generator, p: PhantomParams, diameter_mm: tuple[float, float],
                voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    lo = max(diameter_mm[0], p.min_lesion_voxels_across * voxel_mm)
    hi = max(diameter_mm[1], lo * 1.2)
    d = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    ratios = rng.uniform(*p.lesion_axis_ratio, size=2)
    # Every axis spans at least min_lesion_voxels_across voxels, so that voxelisation on a
    # coarse grid cannot make a stable lesion look as if it shrank or grew.
    axes = np.maximum(0.5 * d * np.array([1.0, *ratios]), 0.5 * lo)
    return axes, _random_rotation(rng)


def _new_lesion(rng: np.random.Generator, p: PhantomParams, lesion_id: int, location: str,
                kind: str, center: np.ndarray, axes: np.ndarray, rot: np.ndarray,
                n_sessions: int, first: int, hypo: bool) -> Lesion:
    scale = np.zeros(n_sessions)
    scale[first:] = 1.0
    hyp = np.zeros(n_sessions, bool)
    hyp[first:] = hypo
    return Lesion(lesion_id, location, kind, center, axes, rot, scale, hyp,
                  flair_ratio=float(rng.uniform(*p.flair_lesion_ratio)),
                  t1_iso=float(rng.uniform(*p.t1_lesion_iso)),
                  t1_hole=float(rng.uniform(*p.t1_black_hole)),
                  event_session=first if first > 0 else -1)


def _radial_rotation(rng: np.random.Generator, direction: np.ndarray) -> np.ndarray:
    """A rotation whose first axis is ``direction`` (the other two random about it)."""
    d = direction / np.linalg.norm(direction)
    q, _ = np.linalg.qr(np.column_stack([d, rng.standard_normal((3, 2))]))
    q[:, 0] = d  # qr may flip the sign
    if np.linalg.det(q) < 0:
        q[:, 2] = -q[:, 2]
    return q


def _place(rng: np.random.Generator, maps: _PlacementMaps, p: PhantomParams, lesions: list[Lesion],
           location: str, axes: np.ndarray, rot: np.ndarray,
           tries: int = 40) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre, rotation) of a lesion at ``location`` that fits, or None.

    Periventricular lesions are first tried with their long axis pointing away from the nearest
    ventricle (ovoid lesions perpendicular to the ventricle wall, "Dawson's fingers").
    """
    radius = float(axes.max())
    cand = _candidates(maps, location, radius)
    if len(cand) == 0:
        return None
    for _ in range(tries):
        ijk = cand[rng.integers(len(cand))]
        c = maps.origin_mm + (ijk + rng.uniform(-0.5, 0.5, 3)) * maps.spacing_mm
        if _collides(c, radius, lesions, p.lesion_gap_mm):
            continue
        options = [rot]
        if location == "periventricular":
            away = maps.anat.away_from_ventricles(c)
            if np.linalg.norm(away) > 1e-6:
                options.insert(0, _radial_rotation(rng, away))
        for r in options:
            if _fits_tissue(maps, Ellipsoid(c, axes, r), location):
                return c, r
    return None


def _place_touching(rng: np.random.Generator, maps: _PlacementMaps, p: PhantomParams,
                    lesions: list[Lesion], parent: Lesion, axes: np.ndarray, rot: np.ndarray,
                    session: int, tries: int = 30) -> np.ndarray | None:
    """Centre of a blob touching ``parent`` on one side with a set fraction inside it.

    The blob is no wider than the parent, so it can only sit on one side of it; the distance
    along a random direction is found by bisection on the blob's fraction inside the parent.
    """
    target = rng.uniform(*p.touching_inside_fraction)
    pe = parent.ellipsoid(session)
    radius = float(axes.max())
    for _ in range(tries):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        lo, hi = 0.0, float(pe.semi_axes_mm.max() + radius) + 1.0

        def inside(t: float) -> float:
            pts = _points_in(Ellipsoid(pe.center_mm + t * u, axes, rot))
            return float((ellipsoid_depth_mm(pts, pe) > 0).mean())

        if inside(hi) > 0 or inside(lo) <= target:
            continue
        for _ in range(25):  # bisection: the inside fraction falls as the blob moves out
            mid = 0.5 * (lo + hi)
            if inside(mid) > target:
                lo = mid
            else:
                hi = mid
        c = pe.center_mm + hi * u
        blob = Ellipsoid(c, axes, rot)
        # Touching on one side: most of the parent stays outside the blob.
        if (ellipsoid_depth_mm(_points_in(pe), blob) > 0).mean() > 0.3:
            continue
        if _collides(c, radius, lesions, p.lesion_gap_mm, exempt=parent.lesion_id):
            continue
        if _fits_tissue(maps, blob, parent.location):
            return c
    return None


def draw_count(rng: np.random.Generator, mean: float, dispersion: float) -> int:
    """A negative-binomial (NB2, var = mu + alpha mu^2) count with the given mean; Poisson when
    ``dispersion`` is 0."""
    if mean <= 0:
        return 0
    if dispersion <= 0:
        return int(rng.poisson(mean))
    return int(rng.poisson(rng.gamma(1.0 / dispersion, mean * dispersion)))


def plan_lesions(rng: np.random.Generator, anat: Anatomy, params: PhantomParams,
                 expected: dict[str, tuple[float, float]], voxel_mm: float) -> list[Lesion]:
    """Draw a subject's lesions and their history over the sessions.

    Parameters
    ----------
    rng : numpy Generator (the subject's lesion stream)
    anat : Anatomy
    params : PhantomParams
    expected : mapping event -> (mean count in baseline->m06, in m06->m12), events ``new``,
        ``turning_hypo``, ``enlarging``, ``shrinking``, ``resolving``
    voxel_mm : T1 voxel size (lesions are at least ``min_lesion_voxels_across`` voxels across)

    Returns
    -------
    list of Lesion, ids 1..n in order of appearance
    """
    p = params
    n_ses = len(SESSION_MONTHS)
    t_last = 0.0 if p.rescan else SESSION_MONTHS[-1] / 12.0
    maps = _placement_maps(anat, t_last)
    lesions: list[Lesion] = []
    n0 = int(rng.integers(p.baseline_lesions[0], p.baseline_lesions[1] + 1))
    min_d = max(p.lesion_diameter_mm[0], p.min_lesion_voxels_across * voxel_mm)
    for _ in range(n0):
        location = str(rng.choice(LOCATIONS, p=p.location_probabilities))
        axes, rot = _draw_shape(rng, p, p.lesion_diameter_mm, voxel_mm)
        placed = _place(rng, maps, p, lesions, location, axes, rot)
        if placed is None:
            continue
        c, rot = placed
        hypo = bool(rng.random() < p.baseline_hypo_fraction) and axes.max() * 2 >= 1.5 * min_d
        lesions.append(_new_lesion(rng, p, len(lesions) + 1, location, "stable", c, axes, rot,
                                   n_ses, 0, hypo))
    if p.rescan:
        return lesions
    for k in (1, 2):  # the event happens by session k (interval k-1 -> k)
        _baseline_events(rng, maps, p, lesions, expected, k, min_d)
        n_new = draw_count(rng, expected["new"][k - 1], p.activity_dispersion)
        for _ in range(n_new):
            _add_new(rng, maps, p, lesions, k, voxel_mm)
    # Stable lesions are not perfectly constant: small volume jitter per session.
    for les in lesions:
        present = les.scale > 0
        jit = (1.0 + rng.uniform(-p.stable_volume_jitter, p.stable_volume_jitter, n_ses)) ** (1 / 3)
        les.scale = np.where(present, les.scale * jit, 0.0)
    return lesions


def _free_baseline(lesions: list[Lesion]) -> list[Lesion]:
    touched = {les.parent_id for les in lesions}
    return [les for les in lesions if les.kind == "stable" and les.scale[0] > 0
            and les.lesion_id not in touched]


def _baseline_events(rng: np.random.Generator, maps: _PlacementMaps, p: PhantomParams,
                     lesions: list[Lesion], expected: dict[str, tuple[float, float]], k: int,
                     min_d: float) -> None:
    for event in ("enlarging", "shrinking", "resolving", "turning_hypo"):
        n = draw_count(rng, expected[event][k - 1], p.activity_dispersion if event in (
            "enlarging", "turning_hypo") else 0.0)
        for _ in range(n):
            pool = _free_baseline(lesions)
            if event == "shrinking":
                pool = [q for q in pool if 2 * q.semi_axes_mm.max() >= 1.6 * min_d]
            elif event == "turning_hypo":
                pool = [q for q in pool if not q.hypo[0] and 2 * q.semi_axes_mm.max() >= 1.5 * min_d]
            elif event == "resolving":
                pool = [q for q in pool if not q.hypo[0]
                        and 2 * q.semi_axes_mm.max() <= max(p.resolving_max_diameter_mm, min_d)]
            if not pool:
                break
            les = pool[int(rng.integers(len(pool)))]
            if event == "enlarging":
                gain = rng.uniform(*p.enlarge_volume_gain)
                f = (1.0 + gain) ** (1 / 3)
                ell = Ellipsoid(les.center_mm, les.semi_axes_mm * f, les.rotation)
                r = float(ell.semi_axes_mm.max())
                if (_collides(les.center_mm, r, lesions, p.lesion_gap_mm, exempt=les.lesion_id)
                        or not _fits_tissue(maps, ell, les.location)):
                    continue
                les.scale[k:] = f
            elif event == "shrinking":
                les.scale[k:] = (1.0 - rng.uniform(*p.shrink_volume_loss)) ** (1 / 3)
            elif event == "resolving":
                les.scale[k:] = 0.0
            else:
                les.hypo[k:] = True
            les.kind = event
            les.event_session = k


def _add_new(rng: np.random.Generator, maps: _PlacementMaps, p: PhantomParams,
             lesions: list[Lesion], k: int, voxel_mm: float) -> None:
    n_ses = len(SESSION_MONTHS)
    touching = rng.random() < p.touching_fraction
    hypo = (not touching) and rng.random() < p.new_hypo_fraction
    axes, rot = _draw_shape(rng, p, p.new_lesion_diameter_mm, voxel_mm)
    if touching:
        # A compact blob >= 5 mm across (and >= the minimum lesion size), no wider than its
        # parent so that it touches the parent on one side instead of engulfing it.
        r_min = max(2.5, 0.5 * p.min_lesion_voxels_across * voxel_mm,
                    0.5 * p.new_lesion_diameter_mm[0])
        used = {o.parent_id for o in lesions}
        pool = [q for q in lesions if q.scale[k - 1] > 0 and q.lesion_id not in used
                and (q.kind == "stable" or (q.kind in ("new", "new_hypo")
                                            and q.event_session < k))
                and q.semi_axes_mm.min() >= r_min]
        if pool:
            parent = pool[int(rng.integers(len(pool)))]
            r = rng.uniform(r_min, max(r_min, min(parent.semi_axes_mm.min(), 6.0)))
            axes_t = np.array([r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0)])
            c = _place_touching(rng, maps, p, lesions, parent, axes_t, rot, k)
            if c is not None:
                les = _new_lesion(rng, p, len(lesions) + 1, parent.location, "new_touching", c,
                                  axes_t, rot, n_ses, k, False)
                les.parent_id = parent.lesion_id
                lesions.append(les)
                return
    location = str(rng.choice(LOCATIONS, p=p.location_probabilities))
    placed = _place(rng, maps, p, lesions, location, axes, rot)
    if placed is not None:
        c, rot = placed
        lesions.append(_new_lesion(rng, p, len(lesions) + 1, location,
                                   "new_hypo" if hypo else "new", c, axes, rot, n_ses, k, hypo))


@dataclass
class LesionRaster:
    """Lesions rasterised on one voxel grid.

    Attributes
    ----------
    labels : ndarray (I, J, K) int16, lesion_id where the summed fraction >= 0.5, else 0
    fraction : ndarray (I, J, K) float32, summed partial-volume fraction clipped to [0, 1]
    t1 : ndarray (I, J, K) float32, fraction-weighted mean lesion T1 (relative to T1 WM)
    flair : ndarray (I, J, K) float32, fraction-weighted mean lesion FLAIR (relative to T1 WM)
    """

    labels: np.ndarray
    fraction: np.ndarray
    t1: np.ndarray
    flair: np.ndarray


def rasterize_lesions(lesions: list[Lesion], session: int, vox_to_anat: np.ndarray,
                      shape: tuple[int, int, int], params: PhantomParams) -> LesionRaster:
    """Partial-volume fractions, labels and intensities of the lesions present at ``session``.

    Parameters
    ----------
    lesions : list of Lesion
    session : session index
    vox_to_anat : ndarray of shape (4, 4), voxel index -> anatomy frame (mm)
    shape : grid shape (I, J, K)
    params : PhantomParams (``lesion_supersample_mm``, ``flair_wm``)

    Returns
    -------
    LesionRaster
    """
    m3 = vox_to_anat[:3, :3]
    voxel = np.sqrt((m3 ** 2).sum(axis=0))
    n_sub = np.clip(np.ceil(voxel / params.lesion_supersample_mm), 1, 10).astype(int)
    offs = [(np.arange(n) + 0.5) / n - 0.5 for n in n_sub]
    off = np.stack(np.meshgrid(*offs, indexing="ij")).reshape(3, -1)
    inv3 = np.linalg.inv(m3)
    total = np.zeros(shape, np.float32)
    best = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int16)
    t1 = np.zeros(shape, np.float32)
    flair = np.zeros(shape, np.float32)
    for les in sorted(lesions, key=lambda q: q.lesion_id):
        if les.scale[session] <= 0:
            continue
        ell = les.ellipsoid(session)
        shape_m = ell.rotation * ell.semi_axes_mm[None, :]  # anat = c + shape_m @ u
        c_vox = inv3 @ (ell.center_mm - vox_to_anat[:3, 3])
        ext = np.sqrt(((inv3 @ shape_m) ** 2).sum(axis=1)) + 1.0
        lo = np.maximum(np.floor(c_vox - ext).astype(int), 0)
        hi = np.minimum(np.ceil(c_vox + ext).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        # u = A @ ijk + b: ellipsoid-normalised coordinates of voxel sub-samples.
        a_mat = (ell.rotation.T / ell.semi_axes_mm[:, None]) @ m3
        b_vec = (ell.rotation.T @ (vox_to_anat[:3, 3] - ell.center_mm)) / ell.semi_axes_mm
        grid = np.stack(np.meshgrid(*[np.arange(lo[i], hi[i]) for i in range(3)],
                                    indexing="ij")).reshape(3, -1).astype(np.float64)
        base = a_mat @ grid + b_vec[:, None]  # (3, B)
        suboff = a_mat @ off  # (3, S)
        u = base[:, :, None] + suboff[:, None, :]
        frac = (np.einsum("ibs,ibs->bs", u, u) <= 1.0).mean(axis=1).astype(np.float32)
        frac = frac.reshape(tuple(hi - lo))
        sl = tuple(slice(lo[i], hi[i]) for i in range(3))
        take = frac > best[sl]  # strict: ties keep the older (smaller) id
        labels[sl][take] = les.lesion_id
        best[sl] = np.maximum(best[sl], frac)
        total[sl] += frac
        t1[sl] += frac * np.float32(les.t1_value(session))
        flair[sl] += frac * np.float32(les.flair_ratio * params.flair_wm)
    nz = total > 0
    t1[nz] /= total[nz]
    flair[nz] /= total[nz]
    labels[total < 0.5] = 0
    return LesionRaster(labels, np.minimum(total, 1.0), t1, flair)
