"""File naming and atomic, deterministic writes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.errors import InputError
from pipeline.io import atomic_path, load_nifti, read_header, read_tsv, save_nifti, write_tsv
from pipeline.contract import interval_label
from pipeline.paths import PRODUCTS, bids_path, product_path, products_of, step_products


def test_bids_path_orders_entities(tmp_path):
    p = bids_path(tmp_path, "01", "m06", from_="FLAIR", to="T1w", mode="image", suffix="xfm",
                  ext=".txt")
    assert p == tmp_path / "sub-01/ses-m06/anat/sub-01_ses-m06_from-FLAIR_to-T1w_mode-image_xfm.txt"
    p = bids_path(tmp_path, "01", space="subject", desc="template", suffix="T1w")
    assert p == tmp_path / "sub-01/anat/sub-01_space-subject_desc-template_T1w.nii.gz"
    assert bids_path("o", "{subject}", "{session}", suffix="T1w").name == (
        "sub-{subject}_ses-{session}_T1w.nii.gz")
    assert interval_label("baseline", "m06") == "baseline-m06"


def test_bids_path_refuses_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="alphanumeric"):
        bids_path(tmp_path, "0_1", suffix="T1w")


def test_products_name_every_file_once(tmp_path):
    sessions, intervals = ["baseline", "m06", "m12"], [("baseline", "m06"), ("baseline", "m12")]
    files = {}
    for step in sorted({spec.step for spec in PRODUCTS.values()}):
        written = step_products(step, tmp_path, "01", sessions, intervals)
        assert all(name.isidentifier() for name in written)
        for name, path in written.items():
            assert path not in files.values(), f"{name}: {path} is also {files}"
            files[name] = path
    assert len(set(files.values())) == len(files)
    # 3 sessions x (8 preprocess + 5 register + 12 segment) + 2 intervals x (2 + 1) + 7 subject
    assert len(files) == 3 * 25 + 2 * 3 + 7
    assert files["new_figure_baseline_m12"] == tmp_path / (
        "sub-01/figures/sub-01_from-baseline_to-m12_desc-new_qc.png")
    assert files["lesion_mask_json_m06"] == tmp_path / (
        "sub-01/ses-m06/anat/sub-01_ses-m06_space-subject_desc-lesion_mask.json")
    # the intermediates and only them
    assert set(step_products("preprocess", tmp_path, "01", ["m06"], intermediate=True)) == {
        "t1w_n4_m06", "t1w_n4_json_m06", "flair_n4_m06", "flair_n4_json_m06"}
    assert products_of("preprocess", "o", "{subject}", "{session}")["brain_mask"].name == (
        "sub-{subject}_ses-{session}_desc-brain_mask.nii.gz")


def test_product_path_wants_the_scope_of_its_product(tmp_path):
    assert product_path(tmp_path, "endpoints", "01") == tmp_path / "sub-01/anat/sub-01_endpoints.tsv"
    with pytest.raises(ValueError, match="session product"):
        product_path(tmp_path, "lesion_mask", "01")
    with pytest.raises(ValueError, match="interval product"):
        product_path(tmp_path, "new_dseg", "01", "m06")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "result.tsv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_nifti_and_tsv_writes_are_byte_identical(tmp_path):
    rng = np.random.default_rng(7)
    data = rng.random((6, 5, 4)).astype(np.float32)
    affine = np.diag([-1.0, 1.0, 2.0, 1.0])
    a, b = save_nifti(tmp_path / "a.nii.gz", data, affine), save_nifti(tmp_path / "b.nii.gz",
                                                                      data, affine)
    assert a.read_bytes() == b.read_bytes()
    back, aff, _ = load_nifti(a)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_array_equal(aff, affine)
    table = pd.DataFrame({"x": [1.0, np.nan], "y": ["a", "b"]})
    write_tsv(tmp_path / "t.tsv", table)
    assert (tmp_path / "t.tsv").read_text() == "x\ty\n1\ta\nn/a\tb\n"
    assert read_tsv(tmp_path / "t.tsv").x.isna().tolist() == [False, True]


def test_tsv_comment_lines_precede_the_header(tmp_path):
    table = pd.DataFrame({"x": [1.5]})
    write_tsv(tmp_path / "c.tsv", table, comments=["# command: make bench"])
    assert (tmp_path / "c.tsv").read_text() == "# command: make bench\nx\n1.5\n"
    assert read_tsv(tmp_path / "c.tsv", comment="#").x.tolist() == [1.5]
    with pytest.raises(ValueError, match="must start with '#'"):
        write_tsv(tmp_path / "d.tsv", table, comments=["no hash"])
    assert not (tmp_path / "d.tsv").exists()


def test_read_header_returns_the_header_as_stored_and_the_data_file(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    single = save_nifti(tmp_path / "a.nii.gz", data, np.diag([2.0, 2.0, 2.0, 1.0]))
    header, data_file = read_header(single)
    assert isinstance(header, nib.Nifti1Header) and data_file == single
    assert header.get_data_shape() == (2, 3, 4) and header.get_data_dtype() == np.int16
    pair = tmp_path / "b.hdr"
    nib.save(nib.Nifti1Pair(data, np.eye(4)), str(pair))
    assert read_header(pair)[1] == tmp_path / "b.img"
    # Fields nibabel's loader would repair (pixdim 0 -> 1) or refuse (an unknown datatype code)
    # come back as stored.
    raw = bytearray(pair.read_bytes())
    stored = nib.Nifti1Header(bytes(raw[:348]), check=False)
    stored["pixdim"][1] = 0.0
    stored["datatype"] = 999
    raw[:348] = stored.binaryblock
    pair.write_bytes(bytes(raw))
    header, _ = read_header(pair)
    assert header["pixdim"][1] == 0.0 and int(header["datatype"]) == 999
    with pytest.raises(InputError, match="b.hdr: not a readable NIfTI image"):
        load_nifti(pair)
    (tmp_path / "b.img").unlink()
    with pytest.raises(InputError, match="b.img: file not found"):
        read_header(pair)


def test_unreadable_files_name_the_file_and_the_reason(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        read_header(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.nii: not a readable NIfTI image \(empty file\)"):
        read_header(tmp_path / "empty.nii")
    (tmp_path / "text.nii").write_text("not an image")
    with pytest.raises(InputError, match="text.nii: not a readable NIfTI image"):
        read_header(tmp_path / "text.nii")
    # An exception without a message (a failed allocation) is named by its type.
    path = save_nifti(tmp_path / "a.nii", np.ones((2, 2, 2), np.float32), np.eye(4))

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(io.nib, "load", no_memory)
    with pytest.raises(InputError, match=r"a.nii: not a readable NIfTI image \(MemoryError\)"):
        load_nifti(path)
