"""Input checks on raw images (pipeline.checks): one test per check, plus the validate CLI."""

from __future__ import annotations

import gzip
import json
import resource
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from pipeline import checks, io
from pipeline.errors import InputError
from pipeline.params import InputCheckParams
from pipeline.paths import raw_image

SHAPE = (40, 40, 40)


def _affine(voxel_mm=4.0) -> np.ndarray:
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = -(np.asarray(SHAPE) - 1) / 2 * voxel_mm
    return aff


def _image(seed=0) -> np.ndarray:
    """A 160 mm field of view with a bright ellipsoid on a noisy background."""
    rng = np.random.default_rng(seed)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    r = np.sqrt((((ijk - 19.5) / np.array([15.0, 17.0, 14.0])) ** 2).sum(-1))
    return (np.where(r < 1, 800.0, 0.0) + 20 * rng.random(SHAPE)).astype(np.float32)


def _header(affine, sform_code=1, qform_code=1) -> nib.Nifti1Header:
    img = nib.Nifti1Image(np.zeros(SHAPE, dtype=np.float32), affine)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)
    return img.header


def _check(data, affine=None, header="default", params=None):
    affine = _affine() if affine is None else affine
    header = _header(affine) if isinstance(header, str) else header
    return checks.check_image(data, affine, header, "sub-01_ses-m06_FLAIR.nii.gz", "FLAIR",
                              params or InputCheckParams())


def test_valid_image_passes_and_4d_single_volume_is_squeezed():
    data = _image()
    assert _check(data).shape == SHAPE
    out = _check(data[..., None])
    assert out.shape == SHAPE and out.dtype == np.float32


def test_dimensions():
    with pytest.raises(InputError, match=r"sub-01_ses-m06_FLAIR.nii.gz \(FLAIR\): dimensions"):
        _check(np.stack([_image(), _image(1)], axis=-1))
    with pytest.raises(InputError, match="dimensions"):
        _check(_image()[:, :, 0])


def test_finite_values():
    data = _image()
    data[0, 0, :12] = np.nan
    data[1, 1, 1] = np.inf
    with pytest.raises(InputError, match=r"12 voxels are NaN and 1 are infinite.*re-export"):
        _check(data)


def test_empty_constant_and_nearly_empty():
    with pytest.raises(InputError, match="every voxel equals 0"):
        _check(np.zeros(SHAPE, dtype=np.float32))
    with pytest.raises(InputError, match="every voxel equals 7"):
        _check(np.full(SHAPE, 7.0, dtype=np.float32))
    sparse = np.zeros(SHAPE, dtype=np.float32)
    sparse[20, 20, 20:25] = 100.0
    with pytest.raises(InputError, match=r"non-empty check failed: only 0\.01 %"):
        _check(sparse)


def _head(noise_sd=0.0, radii=(15.0, 17.0, 14.0), seed=0) -> np.ndarray:
    """White matter 1.0 inside grey matter 0.7 in air 0, plus Gaussian noise of ``noise_sd``
    (float32, so about half of the air voxels are negative, as in float magnitude exports)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    r = np.sqrt((((ijk - 19.5) / np.array(radii)) ** 2).sum(-1))
    head = np.where(r < 0.6, 1.0, np.where(r < 1, 0.7, 0.0))
    return (head + noise_sd * np.random.default_rng(seed).standard_normal(SHAPE)
            ).astype(np.float32)


def _ringing(image: np.ndarray) -> np.ndarray:
    """``image`` reconstructed from the central half of its k-space (Gibbs ringing)."""
    k = np.fft.fftshift(np.fft.fftn(image))
    keep = np.zeros(SHAPE, dtype=bool)
    keep[10:30, 10:30, 10:30] = True
    return np.fft.ifftn(np.fft.ifftshift(k * keep)).real.astype(np.float32)


def test_negative_values_offset_image_is_refused():
    data = _image() - 400.0
    with pytest.raises(InputError, match=r"negative values check failed.*give magnitude"):
        _check(data)


@pytest.mark.parametrize(("name", "image"), [
    ("gaussian noise SD 3 % of WM", _head(0.03)),
    ("low SNR, SD 10 % of WM", _head(0.10)),
    ("low SNR, small head", _head(0.10, radii=(6.5, 7.5, 6.5))),
    ("Gibbs ringing", _ringing(_head())),
])
def test_magnitude_noise_and_ringing_below_zero_are_accepted_and_clipped(name, image):
    values, negatives = checks.check_image(image, _affine(), _header(_affine()), "t1.nii.gz",
                                           "T1w", return_negatives=True)
    assert negatives["n_negative"] > 0.3 * np.count_nonzero(_head() == 0), name
    assert negatives["negative_depth_ratio"] < 0.35, name
    assert negatives["action"] == "clipped to 0"
    assert values.min() == 0 and values.max() == pytest.approx(image.max())


def test_phase_and_difference_images_are_refused():
    inside = _head() > 0
    phase = np.where(inside, np.random.default_rng(1).uniform(-np.pi, np.pi, SHAPE), 0.0)
    difference = _head(0.03, seed=1) - _head(0.03, seed=2)
    for image in (phase, difference):
        negatives = checks.negative_values(image.astype(np.float32))
        assert negatives["negative_depth_ratio"] > 0.9
        assert negatives["negative_signal_ratio"] > 0.9
        with pytest.raises(InputError, match=r"negative values check failed.*not phase"):
            _check(image.astype(np.float32))


def test_a_few_deep_negative_voxels_are_clipped_not_refused():
    data = _head(0.03)
    data[20, 20, 18:22] = -0.9  # e.g. an integer overflow in four bright voxels
    values, negatives = checks.check_image(data, _affine(), None, "t1.nii.gz", "T1w",
                                           return_negatives=True)
    assert negatives["minimum"] == pytest.approx(-0.9)
    assert negatives["negative_signal_ratio"] < 0.1 and values[20, 20, 18:22].max() == 0


def test_image_without_negatives_records_nothing_done():
    _, negatives = checks.check_image(_image(), _affine(), None, "t1.nii.gz", "T1w",
                                      return_negatives=True)
    assert negatives["n_negative"] == 0 and negatives["action"] == "none"


def _save(path, data, dtype, slope=None, inter=None):
    """Write ``data`` stored as ``dtype``; nibabel picks scl_slope/scl_inter for integer storage
    of float data unless ``slope``/``inter`` are given (then the stored integers are ``data``)."""
    img = nib.Nifti1Image(data.astype(dtype) if slope else data, _affine())
    img.set_data_dtype(dtype)
    if slope:
        img.header.set_slope_inter(slope, inter)
    img.set_sform(_affine(), code=1)
    img.set_qform(_affine(), code=1)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.uint8])
@pytest.mark.parametrize("top", [1.0, 4095.0, 65535.0])
def test_any_storage_type_and_intensity_range_is_accepted(tmp_path, dtype, top):
    head = _head(0.02) if np.issubdtype(dtype, np.floating) else np.maximum(_head(0.02), 0)
    data = head / head.max() * top
    t1 = _save(tmp_path / "t1.nii.gz", data, dtype)
    flair = _save(tmp_path / "flair.nii", data[::-1], dtype)
    values, affine, negatives = checks.load_checked(t1, "T1w")
    assert values.dtype == np.float32 and values.shape == SHAPE
    # Scaling applied: the stored integers (or floats) come back in the written range.
    assert values.max() == pytest.approx(top, rel=0.01)
    assert np.allclose(affine, _affine())
    info = checks.check_session(t1, flair)
    assert info["T1w"]["negatives"]["action"] == ("clipped to 0" if dtype in (np.float32,
                                                                               np.float64)
                                                  else "none")


def test_explicit_scl_slope_and_inter_are_applied(tmp_path):
    stored = np.round(_image()).astype(np.int16)
    path = _save(tmp_path / "t1.nii.gz", stored, np.int16, slope=2.5, inter=-10.0)
    values, _, negatives = checks.load_checked(path, "T1w")
    assert values.max() == pytest.approx(2.5 * stored.max() - 10.0)
    # The inter shifts the background to -10: shallow next to the ~2000 tissue, so clipped.
    assert negatives["action"] == "clipped to 0" and values.min() == 0


def test_voxel_size():
    with pytest.raises(InputError, match=r"voxel size check failed.*\[8\.0, 8\.0, 8\.0\]"):
        _check(_image(), _affine(8.0))
    with pytest.raises(InputError, match="voxel size"):
        _check(_image(), _affine(0.1))


def test_affine_singular_shear_and_nonfinite():
    singular = _affine()
    singular[:3, 2] = singular[:3, 1]
    with pytest.raises(InputError, match="singular"):
        _check(_image(), singular, header=None)
    shear = _affine()
    shear[0, 1] = 1.0
    with pytest.raises(InputError, match="shear"):
        _check(_image(), shear, header=None)
    bad = _affine()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="not finite"):
        _check(_image(), bad, header=None)


def test_orientation_codes_and_consistency():
    affine = _affine()
    with pytest.raises(InputError, match="sform_code and qform_code are both 0"):
        _check(_image(), affine, header=_header(affine, 0, 0))
    moved = affine.copy()
    moved[0, 3] += 5.0
    header = _header(affine)
    header.set_qform(moved, code=1)
    with pytest.raises(InputError, match=r"sform/qform consistency.*5\.00 mm apart"):
        _check(_image(), affine, header=header)
    # Only one of them set is fine.
    assert _check(_image(), affine, header=_header(affine, 1, 0)).shape == SHAPE


def test_header_voxel_sizes_agree_with_affine():
    # An affine rewritten without the real voxel size (pixdim says 3 mm, the affine 4 mm).
    # (qform off: nibabel's qform is built from pixdim and would trip the consistency check.)
    header = _header(_affine(), sform_code=1, qform_code=0).copy()
    header.set_zooms((3.0, 3.0, 3.0))
    with pytest.raises(InputError, match="disagree with the affine"):
        _check(_image(), _affine(), header=header)


def test_field_of_view():
    small = _image()[:20]
    with pytest.raises(InputError, match=r"field of view check failed.*\[80\.0, 160\.0, 160\.0\]"):
        _check(small, header=None)


def test_overlap_fraction_and_session_check(tmp_path):
    affine = _affine()
    t1 = tmp_path / "t1.nii.gz"
    flair = tmp_path / "flair.nii.gz"
    io.save_nifti(t1, _image(), affine)
    io.save_nifti(flair, _image(1), affine)
    info = checks.check_session(t1, flair)
    assert info["t1_flair_overlap_fraction"] == pytest.approx(1.0)
    assert info["FLAIR"]["negatives"]["n_negative"] == 0
    shifted = affine.copy()
    shifted[0, 3] += 120.0  # 3/4 of the 160 mm field of view
    io.save_nifti(flair, _image(1), shifted)
    assert checks.overlap_fraction(SHAPE, affine, SHAPE, shifted) == pytest.approx(0.25, abs=0.03)
    with pytest.raises(InputError, match=r"flair.nii.gz \(FLAIR\): T1w/FLAIR overlap"):
        checks.check_session(t1, flair)


def test_validate_cli(tmp_path, capsys):
    bids = tmp_path / "bids"
    io.save_nifti(raw_image(bids, "01", "m06", "T1w"), _image(), _affine())
    flair = raw_image(bids, "01", "m06", "FLAIR")
    data = _image(1)
    data[3, 3, 3] = np.nan
    io.save_nifti(flair, data, _affine())
    argv = ["--bids", str(bids), "--subject", "01", "--session", "m06"]
    assert checks.main(argv) == 1
    err = capsys.readouterr().err
    assert "sub-01_ses-m06_FLAIR.nii.gz" in err and "1 voxels are NaN" in err
    io.save_nifti(flair, _image(1), _affine())
    assert checks.main(argv) == 0
    assert "ok" in capsys.readouterr().out
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"InputCheckParams": {"min_fov_mm": 200.0}}))
    assert checks.main(argv + ["--params", str(params)]) == 1
    assert "field of view" in capsys.readouterr().err
    params.write_text(json.dumps({"NoSuchParams": {}}))
    assert checks.main(argv + ["--params", str(params)]) == 1
    assert "unknown parameter group" in capsys.readouterr().err
    # The files discovery chose, named with entities, are given explicitly.
    anat = bids / "sub-01" / "ses-m06" / "anat"
    t1 = io.save_nifti(anat / "sub-01_ses-m06_acq-mprage_run-2_T1w.nii", _image(), _affine())
    explicit = ["--t1w", str(t1), "--flair", str(flair), "--subject", "01", "--session", "m06"]
    assert checks.main(explicit) == 0
    assert checks.main(["--subject", "01", "--session", "m06"]) == 1
    assert "give both --t1w and --flair" in capsys.readouterr().err


# --- header checks, before any voxel is read ---------------------------------------------------

def _header_file(path, shape=SHAPE, dtype=np.float32, voxels=True, n_voxel_bytes=None,
                 **fields):
    """Write a NIfTI-1 file byte by byte: the header of a valid 4 mm image (sform and qform set)
    with ``fields`` stored as given (nibabel's writer would refuse or repair them), then the
    voxels of :func:`_image` in ``dtype`` (none without ``voxels``, the first ``n_voxel_bytes``
    when given)."""
    img = nib.Nifti1Image(np.zeros((1, 1, 1), dtype), _affine())
    img.set_sform(_affine(), code=1)
    img.set_qform(_affine(), code=1)
    header = img.header.copy()
    header.set_zooms((4.0, 4.0, 4.0))
    header["vox_offset"] = 352
    for key, value in fields.items():
        header[key] = value
    if "dim" not in fields:
        dim = np.ones(8, dtype=np.int16)
        dim[0] = len(shape)
        dim[1:len(shape) + 1] = shape
        header["dim"] = dim
    payload = _image().astype(dtype).tobytes(order="F") if voxels else b""  # NIfTI order
    if n_voxel_bytes is not None:
        payload = payload[:n_voxel_bytes]
    raw = header.binaryblock + b"\0" * 4 + payload
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)
    return path


def _memory_used(func):
    """Run ``func`` (expected to raise InputError); return (the error, peak bytes allocated by
    Python and numpy during it, growth of the process's peak resident size in bytes)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    return info.value, peak, rss_growth


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_1000_cubed_voxels_is_refused_before_reading(tmp_path, suffix):
    path = _header_file(tmp_path / f"t1{suffix}", (1000, 1000, 1000), np.int16, voxels=False)
    error, peak, rss_growth = _memory_used(lambda: checks.load_checked(path, "T1w"))
    assert str(error).startswith(f"{path} (T1w): image size check failed: the header claims "
                                 "1000 x 1000 x 1000 voxels of int16: 2,000,000,000 bytes "
                                 "(1.86 GiB) in memory, above the limit of 1,073,741,824 bytes "
                                 "(1.00 GiB, max_image_bytes)")
    assert "max_image_bytes if the image is real" in str(error)
    assert peak < 20e6 and rss_growth < 200e6


def test_header_claiming_4000_cubed_voxels_is_refused_before_reading(tmp_path):
    path = _header_file(tmp_path / "t1.nii.gz", (4000, 4000, 4000), np.int16, voxels=False)
    error, peak, rss_growth = _memory_used(lambda: checks.load_checked(path, "T1w"))
    assert "image size check failed: the header claims 4000 x 4000 x 4000 voxels of int16: " \
        "128,000,000,000 bytes (119.21 GiB)" in str(error)
    assert peak < 20e6 and rss_growth < 200e6


def test_image_size_limit_counts_the_type_nibabel_returns(tmp_path):
    # 40^3 voxels; stored int16 scaled by scl_slope/scl_inter comes back as float64.
    for dtype, slope, read_bytes in [(np.float32, np.nan, 4), (np.int16, np.nan, 2),
                                     (np.int16, 2.5, 8), (np.uint8, 0.5, 8)]:
        path = _header_file(tmp_path / "t1.nii", dtype=dtype, scl_slope=slope, scl_inter=0)
        n_bytes = int(np.prod(SHAPE)) * read_bytes
        assert checks.load_checked(path, "T1w", InputCheckParams(max_image_bytes=n_bytes)
                                   ).data.shape == SHAPE
        with pytest.raises(InputError, match=f"image size check failed.*{n_bytes:,} bytes"):
            checks.load_checked(path, "T1w", InputCheckParams(max_image_bytes=n_bytes - 1))
    scaled = _header_file(tmp_path / "s.nii", dtype=np.int16, scl_slope=2.0, scl_inter=0)
    with pytest.raises(InputError, match=r"of int16, read as float64 \(scl_slope/scl_inter\)"):
        checks.load_checked(scaled, "T1w", InputCheckParams(max_image_bytes=1000))
    # The default admits a 0.5 mm 256 mm cube in float64 (512^3 x 8 bytes = 1 GiB exactly).
    header = nib.Nifti1Header()
    header.set_data_shape((512, 512, 512))
    header.set_data_dtype(np.float64)
    header.set_zooms((0.5, 0.5, 0.5))
    checks.check_header(header, "t1.nii.gz", "T1w")
    header.set_data_shape((512, 512, 513))
    with pytest.raises(InputError, match="image size"):
        checks.check_header(header, "t1.nii.gz", "T1w")
    with pytest.raises(InputError, match=r"max_image_bytes=0 is invalid"):
        InputCheckParams(max_image_bytes=0)


def test_zero_voxel_size_with_an_intact_sform_is_named_not_a_mismatch(tmp_path):
    # nibabel's loader reads pixdim 0 as 1 mm, which puts the qform 89 mm from the sform.
    path = _header_file(tmp_path / "flair.nii.gz", pixdim=[1.0, 0.0, 4.0, 4.0, 1, 1, 1, 1])
    with pytest.raises(InputError) as info:
        checks.load_checked(path, "FLAIR")
    message = str(info.value)
    assert message.startswith(f"{path} (FLAIR): voxel size check failed: voxel size (pixdim) "
                              "[0.0, 4.0, 4.0] is zero along axis 0; the conversion lost the "
                              "voxel size; re-convert the scan with dcm2niix")
    assert "sform/qform" not in message
    # The same header checked as nibabel loads it (pixdim repaired) is still refused by name.
    _, affine, header = io.load_nifti(path)
    header["pixdim"][1] = 0.0
    with pytest.raises(InputError, match=r"voxel size \(pixdim\) \[0\.0, 4\.0, 4\.0\] is zero"):
        checks.check_image(_image(), affine, header, path, "FLAIR")


@pytest.mark.parametrize(("pixdim", "what"), [([np.nan, 4.0, 4.0], r"\[nan, 4\.0, 4\.0\] is not finite"),
                                              ([4.0, 4.0, np.inf], r"is not finite along axis 2"),
                                              ([4.0, -4.0, 4.0], r"is negative along axis 1")])
def test_nonfinite_and_negative_voxel_sizes(tmp_path, pixdim, what):
    path = _header_file(tmp_path / "t1.nii", pixdim=[1.0, *pixdim, 1, 1, 1, 1])
    with pytest.raises(InputError, match=f"voxel size check failed: voxel size \\(pixdim\\) .*{what}"):
        checks.load_checked(path, "T1w")


@pytest.mark.parametrize(("dim", "found"), [
    ([3, -5, 40, 40, 1, 1, 1, 1], r"declares shape \(-5, 40, 40\), with a size below 1"),
    ([3, 40, 0, 40, 1, 1, 1, 1], r"declares shape \(40, 0, 40\), with a size below 1"),
    ([0, 40, 40, 40, 1, 1, 1, 1], r"dim\[0\] \(the number of dimensions\) is 0, not 1-7"),
    ([4, 40, 40, 40, 2, 1, 1, 1], r"declares shape \(40, 40, 40, 2\), expected 3-D.*fslsplit"),
    ([2, 40, 40, 1, 1, 1, 1, 1], r"declares shape \(40, 40\), expected 3-D"),
])
def test_header_dimensions(tmp_path, dim, found):
    path = _header_file(tmp_path / "t1.nii", voxels=False, dim=dim)
    with pytest.raises(InputError, match=f"t1.nii \\(T1w\\): dimensions check failed: .*{found}"):
        checks.load_checked(path, "T1w")


def test_header_of_a_4d_single_volume_file_passes(tmp_path):
    path = _header_file(tmp_path / "t1.nii", shape=(*SHAPE, 1))
    assert checks.load_checked(path, "T1w").data.shape == SHAPE


@pytest.mark.parametrize(("code", "name"), [(999, "not a NIfTI datatype code"), (0, "none"),
                                            (1, "binary")])
def test_header_datatype_nibabel_cannot_read(tmp_path, code, name):
    path = _header_file(tmp_path / "t1.nii.gz", datatype=code)
    with pytest.raises(InputError, match=f"data type check failed: header datatype code {code} "
                       f"\\({name}\\) is not one nibabel can read; store magnitude images"):
        checks.load_checked(path, "T1w")


def test_truncated_uncompressed_file(tmp_path):
    path = _header_file(tmp_path / "t1.nii", n_voxel_bytes=100_000)
    with pytest.raises(InputError, match=r"t1.nii \(T1w\): file size check failed: t1.nii holds "
                       r"100,352 bytes, but its header needs 256,352 \(vox_offset 352 \+ 40 x 40 "
                       r"x 40 voxels x 4 bytes of float32\): the file is truncated; the file "
                       r"was cut short"):
        checks.load_checked(path, "T1w")
    # Compressed, the size is unknown before decompressing: nibabel's read error names the file.
    gz = _header_file(tmp_path / "t1.nii.gz", n_voxel_bytes=100_000)
    with pytest.raises(InputError, match=r"t1.nii.gz: not a readable NIfTI image"):
        checks.load_checked(gz, "T1w")
    # Complete files of either kind pass.
    for name in ("full.nii", "full.nii.gz"):
        assert checks.load_checked(_header_file(tmp_path / name), "T1w").data.shape == SHAPE


def test_validate_cli_refuses_a_bad_header_first(tmp_path, capsys):
    t1 = io.save_nifti(tmp_path / "t1.nii.gz", _image(), _affine())
    flair = _header_file(tmp_path / "flair.nii.gz", (1000, 1000, 1000), np.int16, voxels=False)
    argv = ["--t1w", str(t1), "--flair", str(flair), "--subject", "01", "--session", "m06"]
    assert checks.main(argv) == 1
    assert "flair.nii.gz (FLAIR): image size check failed" in capsys.readouterr().err
