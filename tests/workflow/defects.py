"""Scans made bad on purpose: read a scan as float32, write it back with chosen header fields."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def read_float(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The scan's voxels as float32 and its affine."""
    img = nib.load(path)
    return np.asanyarray(img.dataobj).astype(np.float32), img.affine


def save_float(path: Path, data: np.ndarray, affine: np.ndarray,
               qform: np.ndarray | None = None, qform_code: int = 1,
               **header: object) -> None:
    """Write float32 voxels (so NaN and Inf are kept) with ``affine`` as the sform and
    ``qform`` (default: the same affine) as the qform; ``header`` fields are set last."""
    # No affine to the constructor: it would derive a qform even from a singular sform.
    img = nib.Nifti1Image(data.astype(np.float32), None)
    img.set_qform(affine if qform is None else qform, code=qform_code)
    img.set_sform(affine, code=1)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, path)


def add_nans(path: Path, start: int = 10, size: int = 2) -> None:
    """Set a ``size``^3 block of voxels at ``start`` to NaN."""
    data, affine = read_float(path)
    block = slice(start, start + size)
    data[block, block, block] = np.nan
    save_float(path, data, affine)
