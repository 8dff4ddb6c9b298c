"""QC figures: slice choice, orientation handling, files written, byte-identical reruns."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io import save_nifti
from pipeline.paths import bids_path
from pipeline.qc import main, qc_files, select_slices, template_edges, to_ras

SESSIONS = ("baseline", "m06", "m12")
SHAPE = (40, 44, 36)
VOXEL_MM = (1.0, 1.0, 1.5)


def ball(shape: tuple[int, int, int], centre: tuple[float, float, float],
         radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def write_subject(out, rng: np.random.Generator, affine: np.ndarray,
                  with_brain: bool = True) -> None:
    """A small head-like subject in subject space: T1/FLAIR per session, masks, new lesions."""
    brain = ball(SHAPE, (20, 22, 18), 15)
    ventricle = ball(SHAPE, (20, 22, 18), 5)
    old = ball(SHAPE, (12, 22, 20), 3)
    new = ball(SHAPE, (27, 15, 14), 2.5)
    lesions = {"baseline": old, "m06": old | new, "m12": old | new}
    t1_template = np.where(brain, 1.0, 0.0) - 0.7 * ventricle
    for ses in SESSIONS:
        if with_brain:  # optional input: sets the display window only
            save_nifti(bids_path(out, "01", ses, space="subject", desc="brain", suffix="mask"),
                       brain, affine)
        noise = rng.normal(0, 0.03, SHAPE)
        t1 = t1_template + noise - 0.3 * lesions[ses]
        flair = np.where(brain, 0.6, 0.0) - 0.45 * ventricle + 0.7 * lesions[ses] + noise
        for desc, suffix, data in (("preproc", "T1w", t1), ("preproc", "FLAIR", flair),
                                   ("lesion", "mask", lesions[ses]),
                                   ("t1hypo", "mask", lesions[ses] & old)):
            save_nifti(bids_path(out, "01", ses, space="subject", desc=desc, suffix=suffix),
                       np.clip(data, 0, None).astype(np.float32) if data.dtype != bool else data,
                       affine)
    save_nifti(bids_path(out, "01", space="subject", desc="template", suffix="T1w"),
               t1_template.astype(np.float32), affine)
    for a, b in (("baseline", "m06"), ("m06", "m12")):
        labels = (lesions[b] & ~lesions[a]).astype(np.int32)
        save_nifti(bids_path(out, "01", from_=a, to=b, space="subject", desc="new",
                             suffix="dseg"), labels, affine)


def ras_affine() -> np.ndarray:
    return np.diag([*VOXEL_MM, 1.0])


def lps_affine() -> np.ndarray:
    affine = np.diag([-VOXEL_MM[0], -VOXEL_MM[1], VOXEL_MM[2], 1.0])
    affine[:3, 3] = [39.0, 43.0, 0.0]
    return affine


def test_to_ras_reorders_and_flips():
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(float)
    # Stored as (S, L, A): voxel axis 0 -> +z, axis 1 -> -x, axis 2 -> +y, sizes 3, 1, 2 mm.
    affine = np.array([[0, -1.0, 0, 0], [0, 0, 2.0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    ras, voxel = to_ras(data, affine)
    assert ras.shape == (3, 4, 2)
    assert voxel.tolist() == [1.0, 2.0, 3.0]
    assert ras[0, 0, 0] == data[0, 2, 0]  # x flipped: RAS x=0 is the last stored index


def test_select_slices_finds_the_weight():
    weight = np.zeros(SHAPE)
    weight[5, 30, 12] = 1
    weight[6, 30, 12] = 1
    assert select_slices(weight) == (12, 30, 5)
    fallback = ball(SHAPE, (10, 11, 12), 3)
    assert select_slices(np.zeros(SHAPE), fallback) == (12, 11, 10)


def test_template_edges_on_a_ball():
    plane = ball((40, 40, 1), (20, 20, 0), 10)[:, :, 0].astype(float)
    edges = template_edges(plane)
    assert edges.any() and not edges[20, 20] and not edges[0, 0]
    assert not template_edges(np.ones((10, 10))).any()


@pytest.mark.parametrize("affine,with_brain", [(ras_affine(), True), (lps_affine(), False)],
                         ids=["RAS-brainmask", "LPS-nobrainmask"])
def test_qc_files_written_and_reproducible(tmp_path, affine, with_brain):
    rng = np.random.default_rng(42)
    out = tmp_path / "out"
    write_subject(out, rng, affine, with_brain)
    paths = qc_files(out, "01", SESSIONS, ["baseline-m06", "m06-m12"])
    assert [p.name for p in paths] == [
        "sub-01_desc-registration_qc.png", "sub-01_desc-lesion_qc.png",
        "sub-01_from-baseline_to-m06_desc-new_qc.png", "sub-01_from-m06_to-m12_desc-new_qc.png"]
    assert all(p.parent == out / "sub-01" / "figures" for p in paths)
    first = [p.read_bytes() for p in paths]
    assert all(b.startswith(b"\x89PNG") for b in first)
    assert all(b"Software" not in b and b"tIME" not in b for b in first)
    again = qc_files(out, "sub-01", SESSIONS, ["baseline-m06", "m06-m12"])
    assert [p.read_bytes() for p in again] == first


def test_cli_reports_missing_file(tmp_path, capsys):
    rng = np.random.default_rng(1)
    write_subject(tmp_path, rng, ras_affine())
    bids_path(tmp_path, "01", space="subject", desc="template", suffix="T1w").unlink()
    assert main(["--out", str(tmp_path), "--subject", "01", "--sessions", *SESSIONS]) == 1
    assert "desc-template_T1w.nii.gz: file not found" in capsys.readouterr().err


def test_interval_with_unknown_session_refused(tmp_path):
    rng = np.random.default_rng(2)
    write_subject(tmp_path, rng, ras_affine())
    with pytest.raises(InputError, match="interval 'baseline-m24'"):
        qc_files(tmp_path, "01", SESSIONS, ["baseline-m24"])
