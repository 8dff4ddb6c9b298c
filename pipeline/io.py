"""Thin file I/O: NIfTI and TSV, every write atomic (temporary name in the same folder, then
rename), so an interrupted job never leaves a file that looks like a result."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from isal import igzip
from nibabel.filebasedimages import ImageFileError
from nibabel.imageclasses import all_image_classes

from pipeline.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: gzip level of every image written. ISA-L's level 1 compresses a 1 mm head as tightly as
#: zlib's level 1 (nibabel's default) in about a seventh of the time; with zlib, gzip was a
#: third of the cost of the register step.
GZIP_LEVEL = 1


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (.nii.gz) so writers that dispatch on it behave.
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give results the permissions of any other file the user writes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _missing(path: Path) -> InputError:
    return InputError(f"{path}: file not found; check the BIDS dataset path and file names")


def _unreadable(path: Path, exc: BaseException) -> InputError:
    # A MemoryError carries no message; name the exception then.
    reason = str(exc) or type(exc).__name__
    return InputError(f"{path}: not a readable NIfTI image ({reason}); re-export or re-convert "
                      "the scan (e.g. dcm2niix)")


def load_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read a NIfTI image as (data float64 or integer array, 4x4 affine, header).

    Raises :class:`InputError` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    try:
        img = _gunzipped_nifti1(path) or nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise _unreadable(path, exc) from exc
    return data, img.affine.copy(), img.header


def _gunzipped_nifti1(path: Path) -> nib.Nifti1Image | None:
    """A ``.nii.gz`` NIfTI-1 image decompressed by ISA-L (2-3x zlib's speed), else None.

    Anything else, or a file this cannot read, is left to :func:`nibabel.load`, which gives the
    error message for a damaged file.
    """
    if not path.name.endswith(".nii.gz"):
        return None
    try:
        return nib.Nifti1Image.from_bytes(igzip.decompress(path.read_bytes()))
    except Exception:  # not NIfTI-1 (e.g. NIfTI-2) or damaged: nibabel decides
        return None


def read_header(path: str | Path) -> tuple[nib.Nifti1Header, Path]:
    """Read an image's header alone, as stored in the file: no voxel is read.

    nibabel picks the format as :func:`nibabel.load` does, but the header is read unchecked
    (``check=False``): :func:`nibabel.load` repairs some fields on the way in (a zero pixdim
    becomes 1, a negative one its absolute value) and refuses others (an unknown datatype code)
    with its own message, and the input checks must see what the file says.

    Returns
    -------
    header : nibabel header (``Nifti1Header`` or ``Nifti2Header`` for NIfTI files)
    data_file : Path
        The file holding the voxels: ``path`` itself, or the ``.img`` of a ``.hdr/.img`` pair.

    Raises :class:`InputError` naming the file when no header can be read from it.
    """
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    try:
        if path.stat().st_size == 0:
            raise ImageFileError("empty file")
        sniff = None
        for klass in all_image_classes:
            is_valid, sniff = klass.path_maybe_image(str(path), sniff)
            if is_valid:
                break
        else:
            raise ImageFileError("cannot work out the file type")
        file_map = klass.filespec_to_file_map(str(path))
        # A single-file format (.nii) keeps its header in the image file.
        with file_map.get("header", file_map["image"]).get_prepare_fileobj(mode="rb") as fobj:
            header = klass.header_class.from_fileobj(fobj, check=False)
        data_file = Path(file_map["image"].filename)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise _unreadable(path, exc) from exc
    if not data_file.exists():  # the .img of a pair
        raise _missing(data_file)
    return header, data_file


def save_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray,
               dtype: Any | None = None, stored_dtype: Any | None = None) -> Path:
    """Write ``data`` with ``affine`` (sform and qform set, code 'scanner') atomically.

    ``stored_dtype`` (e.g. int16 for float data) makes nibabel scale the values into that type
    with scl_slope/scl_inter, as many converters store scans. Written deterministically: gzip
    header carries no time stamp (nibabel writes mtime 0).
    """
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = nib.Nifti1Image(arr, affine)
    if stored_dtype is not None:
        img.set_data_dtype(stored_dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    _write_image(img, path)
    return Path(path)


def _write_image(img: nib.Nifti1Image, path: str | Path) -> None:
    """Write ``img`` atomically; ``.nii.gz`` compressed by ISA-L at :data:`GZIP_LEVEL`.

    The gzip header carries no time stamp (mtime 0), so the same image gives the same bytes.
    """
    with atomic_path(path) as tmp:
        if tmp.name.endswith(".nii.gz"):
            tmp.write_bytes(igzip.compress(img.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
        else:
            nib.save(img, str(tmp))


def save_intensity_image(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write a float intensity image as int16 with scl_slope/inter (nibabel picks them), atomically.

    Quantisation is 1/65535 of the intensity range (~0.01 % of WM on a T1), far below MRI
    noise, and the file is half the size of float32 and twice as fast to gzip, which dominated
    the cost of the register step. Readers see floats (:func:`load_nifti` applies the scaling).
    Header as :func:`save_nifti` writes it (sform and qform code 1, mm units).
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(np.int16)
    _write_image(img, path)
    return Path(path)


def write_tsv(path: str | Path, table: pd.DataFrame, float_format: str = "%.6g",
              comments: Sequence[str] = ()) -> Path:
    """Write a tidy table as TSV (``n/a`` for missing values, fixed float format) atomically.

    ``comments`` are lines written above the header (each must start with ``#``), e.g. the
    command that produced a benchmark table.
    """
    bad = [c for c in comments if not c.startswith("#")]
    if bad:
        raise ValueError(f"comment lines must start with '#': {bad}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.writelines(f"{c}\n" for c in comments)
            table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format=float_format,
                         lineterminator="\n")
    return Path(path)


def read_tsv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a TSV written by :func:`write_tsv` or a BIDS ``participants.tsv``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    import pandas as pd  # here, not at the top: image-only steps start faster without it

    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)


def json_text(obj: Any) -> str:
    """The project's JSON form: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (:func:`json_text`) atomically."""
    return write_text(path, json_text(obj))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
