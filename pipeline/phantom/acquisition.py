"""One MRI session: head position, storage grid, bias field, scaling and Rician noise.

Every session places the subject's anatomy in the scanner with its own rigid pose
(``anat_to_world``: rotation up to ``max_rotation_deg`` about a random axis, translation up to
``max_translation_mm``) and stores T1w and FLAIR on grids centred on the scanner origin, in RAS,
LAS, LPS or oblique (tilted by up to ``oblique_max_deg``) voxel order. FLAIR shares the T1w
grid or, for a 2-D protocol, has ``flair_slice_mm`` axial slices whose signal averages
``flair_slice_profile_samples`` sub-slices (slice-thickness blurring). Each image is the analytic
model evaluated at its own voxel centres (one interpolation-free sampling), multiplied by a smooth
bias field (``bias_amplitude``; cosines of wavelength ``bias_wavelength_mm`` in scanner space)
and a global scale (``intensity_scale_range``), then given Rician noise of sigma = WM signal /
``snr``: magnitude of a complex signal with Gaussian noise in both channels (Gudbjartsson &
Patz 1995). Images are stored as int16 scanner units (WM of T1w ~ 1000) or, per session, in
another encoding (``encodings``: 12-bit, uint16, float32 with Gaussian noise and negatives,
int16 with scl_slope; :data:`~pipeline.phantom.config.ENCODINGS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.phantom.anatomy import Anatomy, tissue_intensity, tissue_labels
from pipeline.phantom.config import ENCODINGS, PhantomParams
from pipeline.phantom.lesions import Lesion, rasterize_lesions

STORAGES = ("RAS", "LAS", "LPS", "oblique")


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` about unit ``axis`` (Rodrigues), shape (3, 3)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Pose:
    """Rigid head position: world = rotation @ anat + translation (mm, RAS)."""

    axis: np.ndarray
    rotation_deg: float
    translation_mm: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """4x4 anat_to_world."""
        m = np.eye(4)
        m[:3, :3] = rotation_matrix(self.axis, self.rotation_deg)
        m[:3, 3] = self.translation_mm
        return m


def random_pose(rng: np.random.Generator, params: PhantomParams) -> Pose:
    """A head position: uniform random axis, angle U(0, max), translation of random direction
    and length U(0, max)."""
    axis = _unit(rng)
    angle = float(rng.uniform(0, params.max_rotation_deg))
    trans = _unit(rng) * rng.uniform(0, params.max_translation_mm)
    return Pose(axis, angle, trans)


def grid_affine(shape: tuple[int, int, int], voxel_mm: tuple[float, float, float],
                storage: str, oblique_rotation: np.ndarray | None = None) -> np.ndarray:
    """Voxel -> scanner-world (RAS mm) affine of a grid centred on the world origin.

    Parameters
    ----------
    shape : grid shape (I, J, K)
    voxel_mm : voxel size along I, J, K
    storage : "RAS" (I->R, J->A, K->S), "LAS" (I->L), "LPS" (I->L, J->P) or "oblique"
        (RAS axes turned by ``oblique_rotation``)
    oblique_rotation : (3, 3) rotation for "oblique"

    Returns
    -------
    ndarray of shape (4, 4)
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    signs = {"RAS": (1, 1, 1), "LAS": (-1, 1, 1), "LPS": (-1, -1, 1), "oblique": (1, 1, 1)}[storage]
    m3 = np.diag(np.asarray(signs, float) * np.asarray(voxel_mm, float))
    if storage == "oblique":
        m3 = np.asarray(oblique_rotation, float) @ m3
    aff = np.eye(4)
    aff[:3, :3] = m3
    aff[:3, 3] = -m3 @ ((np.asarray(shape, float) - 1) / 2)
    return aff


def voxel_points(vox_to_anat: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Anatomy-frame coordinates of every voxel centre, shape (3, I*J*K) float32 (C order)."""
    idx = [np.arange(n, dtype=np.float32) for n in shape]
    m = vox_to_anat.astype(np.float32)
    out = np.empty((3, *shape), np.float32)
    for r in range(3):
        out[r] = (m[r, 0] * idx[0][:, None, None] + m[r, 1] * idx[1][None, :, None]
                  + m[r, 2] * idx[2][None, None, :] + m[r, 3])
    return out.reshape(3, -1)


def bias_field(rng: np.random.Generator, world_mm: np.ndarray, params: PhantomParams) -> np.ndarray:
    """Smooth multiplicative field at scanner-world points (3, N): 1 +- ``bias_amplitude``.

    A sum of three plane cosines of random direction, phase and wavelength, scaled so that its
    extreme over the given points reaches exactly the amplitude.
    """
    g = np.zeros(world_mm.shape[1], np.float32)
    for _ in range(3):
        k = _unit(rng) * (2 * np.pi / rng.uniform(*params.bias_wavelength_mm))
        g += np.float32(rng.uniform(0.5, 1.0)) * np.cos(
            (k.astype(np.float32) @ world_mm) + np.float32(rng.uniform(0, 2 * np.pi)))
    g -= g.mean() if g.size else 0
    peak = float(np.abs(g).max()) if g.size else 1.0
    return 1.0 + np.float32(params.bias_amplitude / max(peak, 1e-6)) * g


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of ``signal`` + complex Gaussian noise of SD ``sigma`` per channel (>= 0)."""
    re = signal + np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    im = np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im)


@dataclass
class SessionImages:
    """What one session's rendering returns (arrays on their native grids)."""

    t1: np.ndarray  # stored values (T1 grid), dtype of the encoding
    flair: np.ndarray  # stored values (FLAIR grid)
    labels: np.ndarray  # int16 truth lesion labels (T1 grid)
    brain_mask: np.ndarray  # uint8 (T1 grid)
    tissue: np.ndarray  # uint8 tissue classes incl. 5 = lesion (T1 grid)
    intensity_scale: dict[str, float]  # global scaling per contrast


def _render_grid(anat: Anatomy, lesions: list[Lesion], session: int, t_years: float,
                 vox_to_anat: np.ndarray, shape: tuple[int, int, int], contrasts: tuple[str, ...],
                 params: PhantomParams, slice_samples: int, want_truth: bool
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Noise-free images of ``contrasts`` on one grid, plus brain fraction and truth maps."""
    n = int(np.prod(shape))
    pts = voxel_points(vox_to_anat, shape)
    inside = np.flatnonzero(anat.may_contain(pts))
    sub = pts[:, inside]
    del pts
    edge = float(np.sqrt((vox_to_anat[:3, :2] ** 2).sum(axis=0)).mean())  # in-plane voxel
    offsets = (np.arange(slice_samples) + 0.5) / slice_samples - 0.5
    images = {c: np.zeros(n, np.float32) for c in contrasts}
    brain = np.zeros(n, np.float32)
    truth: dict[str, np.ndarray] = {}
    for off in offsets:
        p = sub if off == 0 else sub + (vox_to_anat[:3, 2] * off).astype(np.float32)[:, None]
        frac = anat.fractions(p, t_years, edge)
        for c in contrasts:
            images[c][inside] += tissue_intensity(params, frac, c) / np.float32(slice_samples)
        brain[inside] += frac["brain"] / np.float32(slice_samples)
        if want_truth and off == offsets[len(offsets) // 2]:
            lab = np.zeros(n, np.uint8)
            lab[inside] = tissue_labels(frac)
            truth["tissue"] = lab.reshape(shape)
    raster = rasterize_lesions(lesions, session, vox_to_anat, shape, params)
    f = raster.fraction.reshape(-1)
    for c in contrasts:
        lesion_val = (raster.t1 if c == "T1w" else raster.flair).reshape(-1)
        images[c] = (1.0 - f) * images[c] + f * lesion_val
        images[c] = images[c].reshape(shape)
    if want_truth:
        truth["labels"] = raster.labels
        truth["tissue"][raster.labels > 0] = 5
    return images, brain.reshape(shape), truth


def _store(rng: np.random.Generator, clean: np.ndarray, world_fn, brain: np.ndarray,
           wm_value: float, scale: float, params: PhantomParams, encoding: str) -> np.ndarray:
    """Bias, scale, noise (Rician, or Gaussian for float encodings), optional skull stripping,
    conversion to the encoding's values (:data:`~pipeline.phantom.config.ENCODINGS`)."""
    dtype, units, noise = ENCODINGS[encoding]
    signal = clean * np.float32(units * scale)
    head = np.flatnonzero(clean.reshape(-1) > 0)
    flat = signal.reshape(-1)
    flat[head] *= bias_field(rng, world_fn(head), params)
    sigma = units * scale * wm_value / params.snr
    if noise == "rician":
        noisy = rician(rng, signal, sigma)
    else:
        noisy = signal + np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    if params.skull_stripped:
        noisy *= brain >= 0.5
    if encoding == "uint12":
        return np.clip(np.rint(noisy), 0, 4095).astype(np.int16)
    if np.issubdtype(np.dtype(dtype), np.integer) and encoding != "scaled":
        info = np.iinfo(np.dtype(dtype))
        return np.clip(np.rint(noisy), 0, info.max).astype(dtype)
    return noisy.astype(np.float32)  # "scaled": nibabel scales it into int16 when writing


def render_session(anat: Anatomy, lesions: list[Lesion], session: int, t_years: float,
                   anat_to_world: np.ndarray, t1_affine: np.ndarray, t1_shape: tuple[int, int, int],
                   flair_affine: np.ndarray, flair_shape: tuple[int, int, int],
                   rng: np.random.Generator, params: PhantomParams,
                   encoding: str = "int16") -> SessionImages:
    """Render one session's T1w and FLAIR with truth maps on the T1w grid.

    Parameters
    ----------
    anat : Anatomy
    lesions : list of Lesion
    session : session index (which lesion state)
    t_years : time since baseline (atrophy; 0 in a rescan cohort)
    anat_to_world : (4, 4) the session's head position
    t1_affine, flair_affine : (4, 4) voxel -> scanner world (RAS mm)
    t1_shape, flair_shape : grid shapes
    rng : numpy Generator (the session's acquisition stream: bias, scale, noise)
    params : PhantomParams
    encoding : how the images are stored (:data:`~pipeline.phantom.config.ENCODINGS`)

    Returns
    -------
    SessionImages
    """
    world_to_anat = np.linalg.inv(anat_to_world)
    shared = flair_shape == t1_shape and np.allclose(flair_affine, t1_affine)
    # Each series has its own receiver gain: one global scale per image.
    scale = {c: float(rng.uniform(*params.intensity_scale_range)) for c in ("T1w", "FLAIR")}
    t1_vox_to_anat = world_to_anat @ t1_affine
    contrasts = ("T1w", "FLAIR") if shared else ("T1w",)
    imgs, brain, truth = _render_grid(anat, lesions, session, t_years, t1_vox_to_anat, t1_shape,
                                      contrasts, params, 1, True)
    brain_mask = (brain >= 0.5).astype(np.uint8)

    def world_of(affine: np.ndarray, shape: tuple[int, int, int]):
        def fn(flat_idx: np.ndarray) -> np.ndarray:
            ijk = np.stack(np.unravel_index(flat_idx, shape)).astype(np.float32)
            return affine[:3, :3].astype(np.float32) @ ijk + affine[:3, 3:4].astype(np.float32)
        return fn

    t1 = _store(rng, imgs["T1w"], world_of(t1_affine, t1_shape), brain, params.t1_wm,
                scale["T1w"], params, encoding)
    if shared:
        flair_clean, flair_brain = imgs["FLAIR"], brain
    else:
        fimgs, flair_brain, _ = _render_grid(
            anat, lesions, session, t_years, world_to_anat @ flair_affine, flair_shape,
            ("FLAIR",), params, params.flair_slice_profile_samples, False)
        flair_clean = fimgs["FLAIR"]
    flair = _store(rng, flair_clean, world_of(flair_affine, flair_shape), flair_brain,
                   params.flair_wm, scale["FLAIR"], params, encoding)
    return SessionImages(t1, flair, truth["labels"], brain_mask, truth["tissue"], scale)
