"""Image geometry shared by every stage: NIfTI <-> ITK images, rigid matrices, transform
files, resampling, grid checks (SimpleITK, nibabel conventions).

Spaces and conventions
----------------------
NIfTI affines (nibabel) map voxel indices to world coordinates in RAS mm; ITK physical space is
LPS mm (x and y negated). :func:`nifti_to_sitk` / :func:`sitk_to_nifti` are the one pair of
functions that converts between them. Every transform file is an ITK *resampling* transform,
stored with ``sitk.WriteTransform`` as text (:func:`write_transform`): it maps points of the
fixed/reference space (LPS) to points of the moving image (LPS), i.e. it is what
``sitk.Resample(moving, reference, transform)`` needs (:func:`resample_image`). Rigid
transforms are also handled as 4x4 homogeneous matrices in LPS mm (:func:`rigid_to_matrix`,
:func:`matrix_to_rigid`), which compose by matrix products and average by :func:`mean_rigid`.

Two images are on one grid when their shapes agree and their affines agree within a tolerance
in mm (:func:`same_grid`); :func:`require_same_grid` refuses an input that is not, with the
caller's message.

References
----------
Moakher M (2002) Means and averaging in the group of rotations. SIAM J Matrix Anal Appl
24:1-16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline import io
from pipeline.errors import InputError

#: RAS <-> LPS: negate x and y (its own inverse).
RAS_LPS_FLIP = np.diag([-1.0, -1.0, 1.0])

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


# --------------------------------------------------------------------------------------------
# nibabel (RAS affine) <-> SimpleITK (LPS origin/spacing/direction)
# --------------------------------------------------------------------------------------------

def nifti_to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image with the same voxels and world geometry as a NIfTI array.

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
        Voxel values indexed like nibabel (``data[i, j, k]``). Booleans become uint8.
    affine : ndarray of shape (4, 4)
        Voxel index -> world RAS mm. Columns must be orthogonal (no shear): ITK images carry
        spacing and an orthonormal direction only.

    Returns
    -------
    sitk.Image
        Size (I, J, K), spacing = voxel sizes in mm, origin and direction in LPS.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"image must be 3-D, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    matrix_lps = RAS_LPS_FLIP @ np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix_lps, axis=0)
    if not np.all(spacing > 0) or not np.all(np.isfinite(matrix_lps)):
        raise InputError(f"affine has a zero or non-finite voxel axis: {affine.tolist()}")
    direction = matrix_lps / spacing
    u, _, vt = np.linalg.svd(direction)
    orthonormal = u @ vt
    if np.abs(direction - orthonormal).max() > 1e-3:
        raise InputError("affine has shear (voxel axes not orthogonal), which ITK images cannot "
                         f"represent: {np.asarray(affine).tolist()}; reslice the image first")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in RAS_LPS_FLIP @ np.asarray(affine, dtype=float)[:3, 3]])
    image.SetDirection([float(d) for d in orthonormal.ravel()])
    return image


def sitk_to_nifti(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and RAS affine of a SimpleITK image (inverse of :func:`nifti_to_sitk`).

    Returns
    -------
    data : ndarray of shape (I, J, K)
        ``data[i, j, k]`` is the voxel at ITK index (i, j, k).
    affine : ndarray of shape (4, 4)
        Voxel index -> world RAS mm.
    """
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = RAS_LPS_FLIP @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = RAS_LPS_FLIP @ np.asarray(image.GetOrigin(), dtype=float)
    return data, affine


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each array axis from a 4x4 affine."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


# --------------------------------------------------------------------------------------------
# Grid checks
# --------------------------------------------------------------------------------------------

def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...],
              affine_b: np.ndarray, tol_mm: float = 1e-3, rtol: float = 0.0) -> bool:
    """True when two images share a voxel grid: the same first three dimensions, and affines
    within ``tol_mm`` (plus ``rtol`` x ``|affine_b|``, as ``np.allclose`` weighs it)."""
    return (tuple(shape_a[:3]) == tuple(shape_b[:3])
            and np.allclose(affine_a, affine_b, atol=tol_mm, rtol=rtol))


def require_same_grid(shape: tuple[int, ...], affine: np.ndarray | None,
                      reference_shape: tuple[int, ...], reference_affine: np.ndarray | None,
                      message: str, atol_mm: float = 1e-4, rtol: float = 1e-5) -> None:
    """Refuse an image that is not on the reference grid.

    Parameters
    ----------
    shape, reference_shape : tuple of int
        Array shapes, compared whole (pass ``shape[:3]`` to compare the spatial axes only).
    affine, reference_affine : ndarray of shape (4, 4), or None
        Voxel -> RAS mm, compared as ``np.allclose(affine, reference_affine, atol=atol_mm,
        rtol=rtol)``. None compares the shapes only (arrays passed without their geometry).
    message : str
        The whole error message, in the caller's words: the file or array, what differs and
        what to do.
    atol_mm, rtol : float
        Tolerances of the affine comparison; the defaults are numpy's relative tolerance with
        0.1 um absolute, the check of images a stage of this pipeline wrote onto one grid.

    Raises
    ------
    InputError
        With ``message``, when the shapes or the affines differ.
    """
    if tuple(shape) != tuple(reference_shape) or (
            affine is not None
            and not same_grid(shape, affine, reference_shape, reference_affine, atol_mm, rtol)):
        raise InputError(message)


# --------------------------------------------------------------------------------------------
# Rigid transforms as 4x4 matrices (LPS, point maps fixed -> moving)
# --------------------------------------------------------------------------------------------

def rigid_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 homogeneous matrix (LPS mm) of a linear ITK transform (Euler3D, Versor, Affine)."""
    tx = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(tx, sitk.CompositeTransform):
        out = np.eye(4)
        # A composite applies its last transform first: T(x) = T_0(T_1(...T_n(x))).
        for k in range(tx.GetNumberOfTransforms()):
            out = out @ rigid_to_matrix(tx.GetNthTransform(k))
        return out
    matrix = np.asarray(tx.GetMatrix(), dtype=float).reshape(3, 3)
    center = np.asarray(tx.GetCenter(), dtype=float)
    translation = np.asarray(tx.GetTranslation(), dtype=float)
    out = np.eye(4)
    out[:3, :3] = matrix
    out[:3, 3] = center + translation - matrix @ center
    return out


def matrix_to_rigid(matrix: np.ndarray, center_lps: np.ndarray | None = None
                    ) -> sitk.Euler3DTransform:
    """Euler3DTransform of a 4x4 rigid matrix (LPS), rotating about ``center_lps``."""
    matrix = np.asarray(matrix, dtype=float)
    center = np.zeros(3) if center_lps is None else np.asarray(center_lps, dtype=float)
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(c) for c in center])
    tx.SetMatrix([float(m) for m in _project_to_so3(matrix[:3, :3]).ravel()], 1e-6)
    translation = matrix[:3, :3] @ center + matrix[:3, 3] - center
    tx.SetTranslation([float(t) for t in translation])
    return tx


def _project_to_so3(matrix: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (Frobenius norm) by SVD."""
    u, _, vt = np.linalg.svd(matrix)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Rotation angle (degrees) of the 3x3 rotation part of a rigid matrix."""
    cos = (np.trace(np.asarray(matrix)[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def mean_rigid(matrices: list[np.ndarray], center_lps: np.ndarray) -> np.ndarray:
    """Mean of rigid transforms (4x4, LPS): chordal mean rotation, mean displacement of a centre.

    Parameters
    ----------
    matrices : list of ndarray of shape (4, 4)
    center_lps : ndarray of shape (3,)
        Point (mm, LPS) about which rotations are averaged, e.g. the brain centre. Averaging
        the displacement of a point inside the brain keeps the mean translation meaningful
        whatever the scanner's world origin.

    Returns
    -------
    ndarray of shape (4, 4)
        The rigid transform whose rotation is the mean rotation matrix projected onto SO(3)
        (Moakher 2002) and which moves ``center_lps`` by the mean displacement.
    """
    center = np.asarray(center_lps, dtype=float)
    rotation = _project_to_so3(np.mean([m[:3, :3] for m in matrices], axis=0))
    displacement = np.mean([m[:3, :3] @ center + m[:3, 3] - center for m in matrices], axis=0)
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = center + displacement - rotation @ center
    return out


# --------------------------------------------------------------------------------------------
# Transform files and point mapping
# --------------------------------------------------------------------------------------------

def write_transform(path: str | Path, transform: sitk.Transform) -> Path:
    """Write an ITK transform as text (``.txt``) atomically."""
    path = Path(path)
    if not path.name.endswith(".txt"):
        raise InputError(f"{path}: transform files must end in .txt (ITK text format)")
    with io.atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))
    return path


def read_transform(path: str | Path) -> sitk.Transform:
    """Read an ITK transform file, raising InputError naming the file when it cannot."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: transform file not found; run the preprocess/register step "
                         "that writes it")
    try:
        return sitk.ReadTransform(str(path)).Downcast()
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable ITK transform ({exc}); re-run the step that "
                         "wrote it") from exc


def compose(transforms: list[sitk.Transform]) -> sitk.Transform:
    """Compose resampling transforms listed moving -> ... -> reference.

    For ``[FLAIR->T1, T1->subject]`` the result maps a subject point first into T1, then into
    FLAIR, which is what resampling FLAIR into subject space needs (ITK composites apply their
    last transform first, so the list is used as given).
    """
    if len(transforms) == 1:
        return transforms[0]
    return sitk.CompositeTransform(list(transforms))


def map_points_subject_to_session(points_ras_mm: np.ndarray, transform_path: str | Path
                                  ) -> np.ndarray:
    """Map subject-space world points to the session's T1 scanner-world points.

    Parameters
    ----------
    points_ras_mm : ndarray of shape (N, 3) or (3,)
        Points in subject space, world RAS mm (e.g. lesion centroids from the subject grid
        affine).
    transform_path : path
        The session's ``from-T1w_to-subject`` transform file (maps subject LPS points to session
        T1 LPS points).

    Returns
    -------
    ndarray of shape (N, 3) (or (3,) for one point)
        The same anatomical points in the world RAS mm frame of the session's raw T1w.
    """
    points = np.asarray(points_ras_mm, dtype=float)
    single = points.ndim == 1
    points = np.atleast_2d(points)
    if points.shape[1] != 3:
        raise InputError(f"points_ras_mm must have shape (N, 3), got {points.shape}")
    transform = read_transform(transform_path)
    lps = points @ RAS_LPS_FLIP.T
    mapped = np.array([transform.TransformPoint([float(v) for v in p]) for p in lps])
    out = mapped.reshape(-1, 3) @ RAS_LPS_FLIP.T
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# Resampling (and the SimpleITK thread count, which fixes its reproducibility)
# --------------------------------------------------------------------------------------------

def set_threads(threads: int) -> None:
    """Set SimpleITK's global thread count (1 gives bit-reproducible transforms)."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def resample_image(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
                   interpolation: str = "linear") -> sitk.Image:
    """Resample ``image`` onto ``reference`` through a resampling transform (float32, 0 outside)."""
    if interpolation not in _INTERPOLATORS:
        raise InputError(f"interpolation={interpolation!r} must be one of "
                         f"{sorted(_INTERPOLATORS)}")
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, transform,
                         _INTERPOLATORS[interpolation], 0.0, sitk.sitkFloat32)


def resample_mask(mask: sitk.Image, reference: sitk.Image, transform: sitk.Transform
                  ) -> sitk.Image:
    """Resample a binary mask by linear interpolation thresholded at 0.5 (uint8)."""
    frac = resample_image(mask, reference, transform, "linear")
    return sitk.Cast(frac >= 0.5, sitk.sitkUInt8)


def resample_to_subject(moving_path: str | Path, template_path: str | Path,
                        transform_paths: list[str | Path], interpolation: str = "linear"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Resample a native-space image into the subject grid of ``template_path``.

    Parameters
    ----------
    moving_path : path
        NIfTI image in a session's native space (e.g. a lesion mask on the session's T1 grid).
    template_path : path
        Any image on the subject grid (e.g. the ``space-subject_desc-template_T1w`` file).
    transform_paths : list of path
        ITK transform files composed in order moving -> ... -> subject, e.g.
        ``[T1->subject]`` for a T1-space image or ``[FLAIR->T1, T1->subject]`` for a
        FLAIR-space image.
    interpolation : {"linear", "nearest", "bspline"}

    Returns
    -------
    data : ndarray of shape (I, J, K), float32
        On the subject grid; 0 outside the moving image. Threshold at 0.5 for masks.
    affine : ndarray of shape (4, 4)
        Subject grid voxel -> RAS mm.
    """
    if not transform_paths:
        raise InputError("transform_paths is empty: give at least the T1->subject transform")
    data, affine, _ = io.load_nifti(moving_path)
    t_data, t_affine, _ = io.load_nifti(template_path)
    reference = nifti_to_sitk(np.zeros(t_data.shape[:3], dtype=np.uint8), t_affine)
    moving = nifti_to_sitk(np.asarray(np.squeeze(data), dtype=np.float32), affine)
    transform = compose([read_transform(p) for p in transform_paths])
    out, out_affine = sitk_to_nifti(resample_image(moving, reference, transform, interpolation))
    return np.ascontiguousarray(out), out_affine
