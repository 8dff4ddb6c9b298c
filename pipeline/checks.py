"""Input checks on raw T1w/FLAIR images, before any work.

Each check refuses data that would otherwise give meaningless numbers after an hour of
processing, with an :class:`~pipeline.errors.InputError` whose message names the file, the
check and the fix. Limits live in :class:`pipeline.params.InputCheckParams`.

Checks per file on the header alone, before any voxel is read (:func:`check_header`): 3-D
(or 4-D with one volume), every dimension positive, a datatype nibabel reads, the memory the
voxels would take within ``max_image_bytes``, an uncompressed file long enough for them,
finite positive voxel sizes (pixdim) and a qform that is a rotation when one is in use, so a
corrupt header is refused with what it claims rather than by a failed allocation or a
misleading later check (a zero pixdim, which nibabel reads as 1 mm, would otherwise be
reported as an sform/qform mismatch).

Checks per image (:func:`check_image`): 3-D (a 4-D image with a single volume is squeezed),
finite voxels, not empty or constant, negative values no more than noise and ringing (a
magnitude image's negatives are small; a phase or difference image's are as large as its
positives; accepted negatives are clipped to 0 and counted in the QC), plausible voxel sizes,
a sane affine (finite, non-singular, orthogonal axes, sform or qform present, sform and
qform consistent, header voxel sizes equal to the affine's), and a plausible field of view.
Per session (:func:`check_session`): T1w and FLAIR overlap in world space (fraction of the T1
field of view covered by the FLAIR field of view).

Any storage type (uint8, int16, uint16, float32, float64), scl_slope/scl_inter scaling and
intensity range (0-1, 0-4095, 0-65535) is accepted: no check uses an absolute intensity.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from nibabel.volumeutils import apply_read_scaling

from pipeline import io
from pipeline.cli import run_command
from pipeline.errors import InputError
from pipeline.params import InputCheckParams
from pipeline.paths import raw_image
from pipeline.settings import load_params

#: What to tell the user when the image itself is broken.
_REEXPORT = "re-export the scan from the scanner/PACS or re-convert it (e.g. dcm2niix)"


class CheckedImage(NamedTuple):
    """A raw image that passed :func:`check_image` (:func:`load_checked`)."""

    data: np.ndarray  # (I, J, K) float32, negatives clipped to 0
    affine: np.ndarray  # (4, 4) voxel -> world RAS mm
    negatives: dict  # what was done with negative voxels (:func:`negative_values`, action)


def negative_values(values: np.ndarray) -> dict:
    """How deep below zero an image goes, and how much of its signal lies there.

    Returns
    -------
    dict
        ``n_negative`` (voxels < 0), ``negative_fraction`` (of all voxels), ``minimum``,
        ``negative_depth_ratio`` (99th percentile of |negative values| / 99th percentile of the
        positive values) and ``negative_signal_ratio`` (sum of |negative values| / sum of
        positive values); both ratios are 0 without negatives and infinite without positives.
        Background noise puts many voxels slightly below zero (shallow); a phase or difference
        image is as deep below zero as above it, with half of its signal there.
    """
    negative = values < 0
    n_negative = int(np.count_nonzero(negative))
    out = {"n_negative": n_negative, "negative_fraction": n_negative / values.size,
           "minimum": float(values.min()), "negative_depth_ratio": 0.0,
           "negative_signal_ratio": 0.0}
    if n_negative:
        below, above = -values[negative], values[values > 0]
        if above.size:
            out["negative_depth_ratio"] = float(np.percentile(below, 99)
                                                / np.percentile(above, 99))
            out["negative_signal_ratio"] = float(below.sum(dtype=np.float64)
                                                 / above.sum(dtype=np.float64))
        else:
            out["negative_depth_ratio"] = out["negative_signal_ratio"] = float("inf")
    return out


def _fail(path: str | Path, role: str, check: str, detail: str, fix: str) -> InputError:
    return InputError(f"{path} ({role}): {check} check failed: {detail}; {fix}")


def _not_nifti(path: str | Path, role: str) -> InputError:
    return _fail(path, role, "orientation", "the header carries no sform or qform (not a "
                 "NIfTI-1/2 file)", "convert to NIfTI with dcm2niix")


#: Suffixes nibabel decompresses while reading: the file size says nothing of the voxels.
_COMPRESSED = (".gz", ".bz2", ".zst")


def check_header(header: nib.Nifti1Header, path: str | Path, role: str,
                 params: InputCheckParams | None = None,
                 data_file: str | Path | None = None) -> None:
    """Check an image's header before any voxel is read.

    Dimensions (3-D, or 4-D with one volume, as :func:`check_image` accepts), every size
    positive, a datatype nibabel reads, the memory the voxels would take (voxels x bytes per
    voxel of the array nibabel returns, float64 when scl_slope/scl_inter scale the stored
    values) within ``params.max_image_bytes`` (1 GiB: a 0.5 mm whole-head scan in float64 is
    800 MiB, see :class:`~pipeline.params.InputCheckParams`), an uncompressed ``data_file`` at
    least ``vox_offset`` + the stored voxels long, finite positive voxel sizes (pixdim[1:4]),
    and with qform_code > 0 a qform quaternion that is a rotation.

    Parameters
    ----------
    header : nibabel.Nifti1Header or Nifti2Header
        As stored in the file (:func:`pipeline.io.read_header`): nibabel's loader replaces a
        zero pixdim by 1, which this check must see.
    path : path
        The file, named in error messages.
    role : str
        ``"T1w"`` or ``"FLAIR"``, named in error messages.
    params : InputCheckParams
    data_file : path, optional
        The file holding the voxels, for the truncation check (skipped when None or
        compressed).

    Raises
    ------
    InputError
        The first failed check, naming the file, what the header says, the check and the fix.
    """
    params = params or InputCheckParams()
    if not isinstance(header, nib.Nifti1Header):  # Nifti2Header is a subclass
        raise _not_nifti(path, role)
    shape = _header_shape(header, path, role)
    dtype = _header_dtype(header, path, role)
    _check_memory(header, shape, dtype, params, path, role)
    if data_file is not None and not str(data_file).lower().endswith(_COMPRESSED):
        _check_file_size(header, shape, dtype, data_file, path, role)
    _check_pixdim(header, path, role)
    _check_qform(header, path, role)


def _header_shape(header: nib.Nifti1Header, path: str | Path, role: str) -> tuple[int, ...]:
    """Dimensions check: the shape the header declares, 1-7 dimensions, every size at least 1,
    3-D or 4-D with one volume."""
    dim = [int(d) for d in header["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise _fail(path, role, "dimensions", f"header dim[0] (the number of dimensions) is "
                    f"{ndim}, not 1-7 (dim = {dim})", f"the header is corrupt; {_REEXPORT}")
    shape = tuple(dim[1:ndim + 1])
    if min(shape) < 1:
        raise _fail(path, role, "dimensions", f"the header declares shape {shape}, with a size "
                    "below 1", f"the header is corrupt; {_REEXPORT}")
    if not (ndim == 3 or (ndim == 4 and shape[3] == 1)):
        raise _fail(path, role, "dimensions", f"the header declares shape {shape}, expected "
                    "3-D", "give one 3-D volume per file (split multi-echo/multi-volume series, "
                    "e.g. with fslsplit or nibabel)")
    return shape


def _header_dtype(header: nib.Nifti1Header, path: str | Path, role: str) -> np.dtype:
    """Data type check: the stored voxel type, one nibabel can read."""
    code = int(header["datatype"])
    try:
        dtype = header.get_data_dtype()
    except KeyError:  # an unknown code: nibabel's code table has no entry
        dtype = None
    if dtype is None or dtype.itemsize == 0:
        name = nib.nifti1.data_type_codes.label.get(code, "not a NIfTI datatype code")
        raise _fail(path, role, "data type", f"header datatype code {code} ({name}) is not "
                    "one nibabel can read", f"store magnitude images as integers or floats; "
                    f"{_REEXPORT}")
    return dtype


def _check_memory(header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype,
                  params: InputCheckParams, path: str | Path, role: str) -> None:
    """Image size check: the bytes the voxels would take in memory (in the type nibabel returns
    them in) within ``params.max_image_bytes``."""
    n_voxels = int(np.prod(shape, dtype=object))
    read_dtype = _read_dtype(header, dtype)
    n_bytes = n_voxels * read_dtype.itemsize
    if n_bytes > params.max_image_bytes:
        scaled = "" if read_dtype == dtype else f", read as {read_dtype} (scl_slope/scl_inter)"
        raise _fail(path, role, "image size", f"the header claims {' x '.join(map(str, shape))}"
                    f" voxels of {dtype}{scaled}: {n_bytes:,} bytes "
                    f"({n_bytes / 2**30:.2f} GiB) in memory, above the limit of "
                    f"{params.max_image_bytes:,} bytes ({params.max_image_bytes / 2**30:.2f} "
                    "GiB, max_image_bytes)", "a corrupt header (dim) or an image far beyond a "
                    f"0.5 mm whole-head scan; {_REEXPORT}, or raise "
                    "InputCheckParams.max_image_bytes if the image is real")


def _check_file_size(header: nib.Nifti1Header, shape: tuple[int, ...], dtype: np.dtype,
                     data_file: str | Path, path: str | Path, role: str) -> None:
    """File size check: an uncompressed ``data_file`` at least ``vox_offset`` + the stored
    voxels long (bytes), else it was truncated."""
    n_voxels = int(np.prod(shape, dtype=object))
    offset = int(header.get_data_offset())
    needed = offset + n_voxels * dtype.itemsize
    size = Path(data_file).stat().st_size
    if size < needed:
        raise _fail(path, role, "file size", f"{Path(data_file).name} holds {size:,} "
                    f"bytes, but its header needs {needed:,} (vox_offset {offset} + "
                    f"{' x '.join(map(str, shape))} voxels x {dtype.itemsize} bytes of "
                    f"{dtype}): the file is truncated", "the file was cut short (an "
                    "interrupted copy, download or export); copy or export it again")


def _read_dtype(header: nib.Nifti1Header, dtype: np.dtype) -> np.dtype:
    """The type nibabel returns the voxels in: ``dtype``, or wider when scl_slope/scl_inter
    scale them (nibabel's own rule, applied to one voxel)."""
    try:
        slope, inter = header.get_slope_inter()
        return np.asarray(apply_read_scaling(np.zeros(1, dtype), slope, inter)).dtype
    except Exception:  # invalid scaling (nibabel's reader refuses it) or a structured type
        return np.dtype(np.float64) if dtype.itemsize < 8 else dtype


def _check_pixdim(header: nib.Nifti1Header, path: str | Path, role: str) -> None:
    """Header voxel sizes (pixdim[1:4]) finite and positive: nibabel reads a zero as 1 and a
    negative as its absolute value, other readers differently, so neither is a voxel size."""
    pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
    shown = [float(v) for v in pixdim]
    for bad, what in ((~np.isfinite(pixdim), "not finite"), (pixdim == 0, "zero"),
                      (pixdim < 0, "negative")):
        if bad.any():
            axes = ", ".join(str(i) for i in np.nonzero(bad)[0])
            raise _fail(path, role, "voxel size", f"voxel size (pixdim) {shown} is {what} "
                        f"along axis {axes}", "the conversion lost the voxel size; re-convert "
                        "the scan with dcm2niix, or set the true voxel size in the header "
                        "(nibabel header.set_zooms) and check its affine")


def _check_qform(header: nib.Nifti1Header, path: str | Path, role: str) -> None:
    """A qform in use (qform_code > 0) is a rotation: finite quaternion and offsets, and
    b^2 + c^2 + d^2 <= 1 (nibabel's rule), else it places the image nowhere."""
    if int(header["qform_code"]) <= 0:
        return
    bcd = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")]
    offset = [float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
    if np.all(np.isfinite(bcd + offset)):
        try:
            header.get_qform_quaternion()
            return
        except ValueError:  # b^2 + c^2 + d^2 > 1: no rotation has that quaternion
            pass
    raise _fail(path, role, "orientation", f"qform_code is {int(header['qform_code'])} but the "
                f"qform quaternion (b, c, d) = {bcd} with offsets {offset} mm is not a finite "
                f"rotation (b^2 + c^2 + d^2 = {float(np.dot(bcd, bcd)):.3g}, at most 1)",
                "the header was edited or corrupted; set the qform from the sform (nibabel "
                "set_qform) or re-convert the scan")


def _fov_corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the 8 outer voxel-centre corners, shape (8, 3)."""
    ext = [(0, n - 1) for n in shape[:3]]
    corners = np.array([[i, j, k] for i in ext[0] for j in ext[1] for k in ext[2]], dtype=float)
    return corners @ affine[:3, :3].T + affine[:3, 3]


def check_image(data: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header | None,
                path: str | Path, role: str, params: InputCheckParams | None = None,
                return_negatives: bool = False) -> np.ndarray | tuple[np.ndarray, dict]:
    """Check one raw image; return its voxels as a 3-D float32 array, negatives clipped to 0.

    Parameters
    ----------
    data : ndarray of shape (I, J, K) or (I, J, K, 1)
        Voxel values (scaling already applied, as :func:`pipeline.io.load_nifti` returns), any
        real type and intensity range.
    affine : ndarray of shape (4, 4)
        Voxel -> world RAS mm (nibabel's ``img.affine``).
    header : nibabel.Nifti1Header or None
        Used for the sform/qform and header voxel-size checks (skipped when None, e.g. for
        arrays that never were a file).
    path : path
        The file, named in error messages.
    role : str
        ``"T1w"`` or ``"FLAIR"``, named in error messages.
    params : InputCheckParams
    return_negatives : bool
        Also return what was done with negative voxels (:func:`negative_values` plus
        ``action``), for the preprocessing QC.

    Returns
    -------
    ndarray of shape (I, J, K), float32
        (and the negatives dict when ``return_negatives``)

    Raises
    ------
    InputError
        The first failed check, naming the file, the check and the fix.
    """
    params = params or InputCheckParams()
    data = _squeeze_3d(np.asarray(data), path, role)
    _check_real(data, path, role)
    values = _finite_float32(data, path, role)
    _check_not_empty(values, params, path, role)
    values, negatives = _clip_negatives(values, params, path, role)
    affine = _check_affine(affine, path, role)
    voxel_mm = _affine_voxel_mm(affine, params, path, role)
    _check_axes_orthogonal(affine, voxel_mm, params, path, role)
    if header is not None:
        _check_header(header, data.shape, affine, voxel_mm, path, role, params)
    _check_fov(data.shape, voxel_mm, params, path, role)
    return (values, negatives) if return_negatives else values


def _squeeze_3d(data: np.ndarray, path: str | Path, role: str) -> np.ndarray:
    """Dimensions check: a 3-D array (a 4-D one with a single volume is squeezed)."""
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise _fail(path, role, "dimensions", f"image has shape {data.shape}, expected 3-D",
                    "give one 3-D volume per file (split multi-echo/multi-volume series, e.g. "
                    "with fslsplit or nibabel)")
    return data


def _check_real(data: np.ndarray, path: str | Path, role: str) -> None:
    """Data type check: real numbers (not complex, boolean or object voxels)."""
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise _fail(path, role, "data type", f"voxel type {data.dtype} is not real-valued",
                    "store magnitude images as integers or floats")


def _finite_float32(data: np.ndarray, path: str | Path, role: str) -> np.ndarray:
    """Finite values check: the voxels as float32, with no NaN or infinite value (counting
    those finite in the file but beyond the float32 range)."""
    # Values beyond float32 become inf and signalling NaNs quiet NaNs: counted below.
    with np.errstate(over="ignore", invalid="ignore"):
        values = data.astype(np.float32, copy=False)
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    if n_nan or n_inf:
        n_beyond = n_inf - int(np.isinf(data).sum()) if values is not data else 0
        beyond = (f" ({n_beyond} of them finite in the file but beyond the float32 range, "
                  f"|value| > {np.finfo(np.float32).max:.3g})" if n_beyond else "")
        raise _fail(path, role, "finite values", f"{n_nan} voxels are NaN and {n_inf} are "
                    f"infinite{beyond}", _REEXPORT)
    return values


def _check_not_empty(values: np.ndarray, params: InputCheckParams, path: str | Path,
                     role: str) -> None:
    """Non-empty check: not constant, and at least ``params.min_nonzero_fraction`` of the
    voxels non-zero."""
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        raise _fail(path, role, "non-empty", f"every voxel equals {lo:g}",
                    f"the file holds no image; {_REEXPORT}")
    nonzero_fraction = float(np.count_nonzero(values)) / values.size
    if nonzero_fraction < params.min_nonzero_fraction:
        raise _fail(path, role, "non-empty", f"only {100 * nonzero_fraction:.2f} % of voxels are "
                    f"non-zero (limit {100 * params.min_nonzero_fraction:.2f} %)",
                    f"the image is (nearly) empty; {_REEXPORT}")


def _clip_negatives(values: np.ndarray, params: InputCheckParams, path: str | Path,
                    role: str) -> tuple[np.ndarray, dict]:
    """Negative values check: refuse negatives both deeper and holding more signal than noise
    and ringing do; clip accepted ones to 0. Returns the values and :func:`negative_values`
    plus ``action``."""
    negatives = negative_values(values)
    if (negatives["negative_depth_ratio"] > params.max_negative_depth_ratio
            and negatives["negative_signal_ratio"] > params.max_negative_signal_ratio):
        raise _fail(path, role, "negative values", f"{negatives['n_negative']} voxels "
                    f"({100 * negatives['negative_fraction']:.1f} %) are negative, as deep below "
                    f"zero as {100 * negatives['negative_depth_ratio']:.0f} % of the positive "
                    f"values (99th percentiles; minimum {negatives['minimum']:g}) and holding "
                    f"{100 * negatives['negative_signal_ratio']:.0f} % as much signal (limits "
                    f"{100 * params.max_negative_depth_ratio:.0f} % and "
                    f"{100 * params.max_negative_signal_ratio:.0f} %: more than noise or "
                    "ringing)", "give magnitude images, not phase, real-part or "
                    "filtered/difference images")
    if negatives["n_negative"]:
        # Negative magnitude is noise or ringing, not tissue; 0 keeps N4's log and the
        # brain-mask histogram defined.
        values = np.maximum(values, np.float32(0))
    negatives["action"] = "clipped to 0" if negatives["n_negative"] else "none"
    return values, negatives


def _check_affine(affine: np.ndarray, path: str | Path, role: str) -> np.ndarray:
    """Affine check: a finite, non-singular 4 x 4 voxel-to-world matrix, returned as float."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _fail(path, role, "affine", "the voxel-to-world matrix is missing or not finite",
                    f"repair the header; {_REEXPORT}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise _fail(path, role, "affine", "the voxel-to-world matrix is singular",
                    f"repair the header; {_REEXPORT}")
    return affine


def _affine_voxel_mm(affine: np.ndarray, params: InputCheckParams, path: str | Path,
                     role: str) -> np.ndarray:
    """Voxel size check: the affine's voxel sizes (mm, column norms) within
    [``params.min_voxel_mm``, ``params.max_voxel_mm``]; returned, shape (3,)."""
    voxel_mm = np.linalg.norm(affine[:3, :3], axis=0)
    if voxel_mm.min() < params.min_voxel_mm or voxel_mm.max() > params.max_voxel_mm:
        raise _fail(path, role, "voxel size", f"voxel sizes {np.round(voxel_mm, 3).tolist()} mm "
                    f"are outside [{params.min_voxel_mm}, {params.max_voxel_mm}] mm",
                    "the header's voxel size is wrong (lost in conversion) or the image is "
                    "not a brain MRI; re-convert with dcm2niix")
    return voxel_mm


def _check_axes_orthogonal(affine: np.ndarray, voxel_mm: np.ndarray, params: InputCheckParams,
                           path: str | Path, role: str) -> None:
    """Affine (shear) check: the voxel axes orthogonal, every cosine between them at most
    ``params.max_axis_cosine``."""
    axes = affine[:3, :3] / voxel_mm
    cosines = np.abs(axes.T @ axes - np.eye(3)).max()
    if cosines > params.max_axis_cosine:
        raise _fail(path, role, "affine", f"voxel axes are not orthogonal (shear, max cosine "
                    f"{cosines:.2g})", "reslice the image to an orthogonal grid (e.g. "
                    "nibabel.processing.resample_from_to) or re-convert it")


def _check_fov(shape: tuple[int, ...], voxel_mm: np.ndarray, params: InputCheckParams,
               path: str | Path, role: str) -> None:
    """Field of view check: voxel sizes x shape (mm) within [``params.min_fov_mm``,
    ``params.max_fov_mm``] along every axis."""
    fov_mm = voxel_mm * np.asarray(shape[:3])
    if fov_mm.min() < params.min_fov_mm or fov_mm.max() > params.max_fov_mm:
        raise _fail(path, role, "field of view", f"field of view "
                    f"{np.round(fov_mm, 1).tolist()} mm is outside [{params.min_fov_mm}, "
                    f"{params.max_fov_mm}] mm", "a partial slab or wrong voxel size; "
                    "acquire/export the whole head or fix the header's voxel size")


def _check_header(header: nib.Nifti1Header, shape: tuple[int, ...], affine: np.ndarray,
                  voxel_mm: np.ndarray, path: str | Path, role: str,
                  params: InputCheckParams) -> None:
    """Header voxel sizes and qform valid, sform/qform presence and consistency; header voxel
    sizes equal the affine's."""
    if not isinstance(header, nib.Nifti1Header):  # Nifti2Header is a subclass
        # Not a NIfTI header (e.g. Analyze): nibabel's affine then comes from pixdims only.
        raise _not_nifti(path, role)
    _check_pixdim(header, path, role)
    _check_qform(header, path, role)
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    if not sform_code and not qform_code:
        raise _fail(path, role, "orientation", "sform_code and qform_code are both 0, so the "
                    "position and orientation in the scanner are unknown",
                    "re-convert the DICOM series with dcm2niix, which writes both")
    if sform_code and qform_code and sform is not None and qform is not None:
        mismatch = np.abs(_fov_corners(shape, sform) - _fov_corners(shape, qform)).max()
        if mismatch > params.max_qform_sform_mismatch_mm:
            raise _fail(path, role, "sform/qform consistency", f"sform and qform place the "
                        f"field of view {mismatch:.2f} mm apart (limit "
                        f"{params.max_qform_sform_mismatch_mm} mm)", "the header was edited "
                        "inconsistently; set both from the correct one (nibabel set_qform/"
                        "set_sform) or re-convert the scan")
    zooms = np.asarray(header.get_zooms()[:3], dtype=float)
    if zooms.shape == (3,) and np.any(np.abs(zooms - voxel_mm) > 0.01 * voxel_mm + 1e-4):
        raise _fail(path, role, "voxel size", f"header voxel sizes (pixdim) "
                    f"{np.round(zooms, 3).tolist()} mm disagree with the affine's "
                    f"{np.round(voxel_mm, 3).tolist()} mm (e.g. an identity affine written "
                    "over real voxel sizes)", "re-convert the scan, or repair the affine")


def overlap_fraction(t1_shape: tuple[int, ...], t1_affine: np.ndarray,
                     flair_shape: tuple[int, ...], flair_affine: np.ndarray,
                     n_per_axis: int = 24) -> float:
    """Fraction of the T1 field of view (volume) inside the FLAIR field of view.

    Evaluated on a regular ``n_per_axis``^3 lattice of points spanning the T1 field of view,
    mapped through the world (RAS mm) into FLAIR voxel coordinates.
    """
    axes = [np.linspace(-0.5, n - 0.5, n_per_axis) for n in t1_shape[:3]]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    to_flair = np.linalg.inv(flair_affine) @ t1_affine
    f_ijk = ijk @ to_flair[:3, :3].T + to_flair[:3, 3]
    upper = np.asarray(flair_shape[:3], dtype=float) - 0.5
    inside = np.all((f_ijk >= -0.5) & (f_ijk <= upper), axis=1)
    return float(inside.mean())


def check_overlap(t1_shape: tuple[int, ...], t1_affine: np.ndarray,
                  flair_shape: tuple[int, ...], flair_affine: np.ndarray,
                  t1_path: str | Path, flair_path: str | Path,
                  params: InputCheckParams | None = None) -> float:
    """Refuse a FLAIR that covers too little of the T1 field of view; return the fraction."""
    params = params or InputCheckParams()
    fraction = overlap_fraction(t1_shape, t1_affine, flair_shape, flair_affine)
    if fraction < params.min_t1_flair_overlap_fraction:
        raise _fail(flair_path, "FLAIR", "T1w/FLAIR overlap", f"the FLAIR field of view covers "
                    f"{100 * fraction:.0f} % of the T1w field of view of {t1_path} (limit "
                    f"{100 * params.min_t1_flair_overlap_fraction:.0f} %)",
                    "check that both files belong to the same session and that neither header "
                    "lost its position (compare the affines)")
    return fraction


def load_checked(path: str | Path, role: str, params: InputCheckParams | None = None
                 ) -> CheckedImage:
    """Check a raw image's header (:func:`check_header`), then read it and run
    :func:`check_image`: float32 data (I, J, K), RAS affine and what was done with its negative
    voxels."""
    header, data_file = io.read_header(path)
    check_header(header, path, role, params, data_file)
    data, affine, header = io.load_nifti(path)
    values, negatives = check_image(data, affine, header, path, role, params,
                                    return_negatives=True)
    return CheckedImage(values, affine, negatives)


def check_session(t1_path: str | Path, flair_path: str | Path,
                  params: InputCheckParams | None = None) -> dict:
    """Check a session's T1w and FLAIR files and their overlap.

    Returns
    -------
    dict
        Per role (``T1w``, ``FLAIR``): shape, voxel_mm, fov_mm, negatives (see
        :func:`check_image`); and ``t1_flair_overlap_fraction``.

    Raises
    ------
    InputError
        Naming the file, the check and the fix.
    """
    params = params or InputCheckParams()
    info: dict = {}
    geometry = {}
    for role, path in (("T1w", t1_path), ("FLAIR", flair_path)):
        values, affine, negatives = load_checked(path, role, params)
        voxel_mm = np.linalg.norm(affine[:3, :3], axis=0)
        geometry[role] = (values.shape, affine)
        info[role] = {"shape": list(values.shape), "voxel_mm": voxel_mm.round(4).tolist(),
                      "fov_mm": (voxel_mm * values.shape).round(1).tolist(),
                      "negatives": negatives}
    info["t1_flair_overlap_fraction"] = check_overlap(*geometry["T1w"], *geometry["FLAIR"],
                                                      t1_path, flair_path, params)
    return info


def session_inputs(bids_dir: str | Path | None, subject: str, session: str,
                 t1w: str | Path | None, flair: str | Path | None) -> tuple[Path, Path]:
    """The session's (T1w, FLAIR) files: as given, else the plain BIDS names under ``bids_dir``."""
    if t1w is None or flair is None:
        if bids_dir is None:
            raise InputError(f"sub-{subject} ses-{session}: give both --t1w and --flair (the "
                             "files discovery chose), or --bids for the plain "
                             "sub-<s>_ses-<t>_{T1w,FLAIR}.nii.gz names")
        t1w = raw_image(bids_dir, subject, session, "T1w") if t1w is None else t1w
        flair = raw_image(bids_dir, subject, session, "FLAIR") if flair is None else flair
    return Path(t1w), Path(flair)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``--t1w/--flair`` (explicit files) or ``--bids`` (plain names), ``--subject``,
    ``--session``: shared by the preprocess and validate CLIs."""
    parser.add_argument("--t1w", help="the session's T1w file (as chosen by discovery)")
    parser.add_argument("--flair", help="the session's FLAIR file (as chosen by discovery)")
    parser.add_argument("--bids", help="BIDS raw dataset root, for the plain names "
                        "sub-<s>/ses-<t>/anat/sub-<s>_ses-<t>_{T1w,FLAIR}.nii.gz when --t1w/"
                        "--flair are not given")
    parser.add_argument("--subject", required=True, help="subject label without 'sub-'")
    parser.add_argument("--session", required=True, help="session label without 'ses-'")


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline validate --t1w T1 --flair FLAIR --subject S --session T
    [--params JSON]`` (or ``--bids DIR`` instead of ``--t1w/--flair`` for plain file names)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline validate",
                                     description="Check a BIDS session's T1w and FLAIR.")
    add_input_arguments(parser)
    parser.add_argument("--params", help="parameter JSON ({class name: {field: value}}, as "
                        "written by 'python -m pipeline settings'); uses InputCheckParams")
    args = parser.parse_args(argv)
    return run_command("validate", lambda: _validate_files(args))


def _validate_files(args: argparse.Namespace) -> None:
    """The validate command: both images of one session checked, one summary line."""
    params = load_params(args.params)["InputCheckParams"]
    t1, flair = session_inputs(args.bids, args.subject, args.session, args.t1w, args.flair)
    info = check_session(t1, flair, params)
    print(f"validate sub-{args.subject} ses-{args.session}: ok (T1w {info['T1w']['shape']} @ "
          f"{info['T1w']['voxel_mm']} mm, FLAIR {info['FLAIR']['shape']} @ "
          f"{info['FLAIR']['voxel_mm']} mm, overlap "
          f"{100 * info['t1_flair_overlap_fraction']:.0f} %)")
