"""Bad input and faults at core-lab scale, through the whole workflow.

One BIDS dataset holds the `ci` phantom's good subjects and, beside them, one subject per bad
case: a copy of a good subject (baseline and m06) with one defect. The plain command (no
``--keep-going``: the workflow's default profile keeps going) runs it once: every bad subject
is refused with a message naming the file, the check, what was found and the fix; every good
subject finishes. The run fails (it could not build the cohort), and a second run builds the
cohort tables of the subjects that passed, with ``excluded.tsv`` and the report's banner naming
every one that did not.
"""

from __future__ import annotations

import gzip
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.io import read_tsv
from tests.workflow.defects import add_nans, read_float, save_float

pytestmark = pytest.mark.workflow

SEED = 43  # never used while developing any method
GOOD = ["001", "002", "003", "004"]


def snakemake(repo: Path, env: dict, *config: str, extra: tuple[str, ...] = (),
              timeout: int = 1800) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--snakefile",
           str(repo / "workflow" / "Snakefile"), *extra, "--config", *config]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------ the defects, one per subject

def truncated_gzip(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def not_nifti(p: Path) -> None:
    p.write_bytes(gzip.compress(b"this is a DICOM export log, not an image\n" * 50))


def empty_file(p: Path) -> None:
    p.write_bytes(b"")


def four_d(p: Path) -> None:
    data, affine = read_float(p)
    save_float(p, np.stack([data, data], axis=-1), affine)


def two_d(p: Path) -> None:
    data, affine = read_float(p)
    save_float(p, data[:, :, data.shape[2] // 2], affine)


def all_zero(p: Path) -> None:
    data, affine = read_float(p)
    save_float(p, np.zeros_like(data), affine)


def with_nan(p: Path) -> None:
    add_nans(p)


def with_inf(p: Path) -> None:
    data, affine = read_float(p)
    data[10:12, 10:12, 10:12] = np.inf
    save_float(p, data, affine)


def singular_affine(p: Path) -> None:
    data, affine = read_float(p)
    bad = affine.copy()
    bad[:3, 2] = 0.0
    save_float(p, data, bad, qform=affine, qform_code=0)


def sform_qform_apart(p: Path) -> None:
    data, affine = read_float(p)
    moved = affine.copy()
    moved[0, 3] += 20.0
    save_float(p, data, affine, qform=moved)


def far_from_t1w(p: Path) -> None:
    data, affine = read_float(p)
    moved = affine.copy()
    moved[2, 3] += 200.0
    save_float(p, data, moved)


def zero_voxel_size(p: Path) -> None:
    data, affine = read_float(p)
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    pixdim = img.header["pixdim"].copy()
    pixdim[1] = 0.0
    img.header["pixdim"] = pixdim
    nib.save(img, p)


def _claim_size(p: Path, n: int) -> None:
    """An uncompressed .nii.gz whose header claims n^3 voxels of float32 (the data are not)."""
    data, affine = read_float(p)
    save_float(p, data, affine)
    raw = bytearray(gzip.decompress(p.read_bytes()))
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])))
    hdr.set_data_shape((n, n, n))
    raw[:348] = hdr.binaryblock
    p.write_bytes(gzip.compress(bytes(raw)))


def claims_1000_cubed(p: Path) -> None:
    _claim_size(p, 1000)


def claims_4000_cubed(p: Path) -> None:
    _claim_size(p, 4000)


def phase_image(p: Path) -> None:
    data, affine = read_float(p)
    rng = np.random.default_rng(0)
    save_float(p, rng.uniform(-3.14, 3.14, data.shape) * (data > 0), affine)


def pure_noise(p: Path) -> None:
    data, affine = read_float(p)
    rng = np.random.default_rng(1)
    save_float(p, np.abs(rng.normal(100.0, 30.0, data.shape)), affine)


def swapped_contrasts(p: Path) -> None:
    """The T1w file holds the FLAIR and the FLAIR file the T1w (a mislabelled export)."""
    flair = p.with_name(p.name.replace("_T1w", "_FLAIR"))
    t1w_bytes = p.read_bytes()
    p.write_bytes(flair.read_bytes())
    flair.write_bytes(t1w_bytes)


def mislabelled_everywhere(p: Path) -> None:
    """Every session's T1w and FLAIR swapped: consistent, so registration passes, but the
    "T1w" has no T1 grey/white contrast."""
    for ses in ("baseline", "m06"):
        swapped_contrasts(p.parents[2] / f"ses-{ses}" / "anat"
                          / p.name.replace("ses-m06", f"ses-{ses}"))


#: label -> (session, role, defect, words the refusal must contain)
CASES = {
    "truncgz": ("m06", "FLAIR", truncated_gzip, ["not a readable NIfTI image"]),
    "notnifti": ("m06", "T1w", not_nifti, ["not a readable NIfTI image"]),
    "empty": ("m06", "FLAIR", empty_file, ["empty file"]),
    "fourd": ("m06", "FLAIR", four_d, ["(90, 108, 90, 2)", "expected 3-D"]),
    "twod": ("m06", "T1w", two_d, ["(90, 108)", "expected 3-D"]),
    "zeros": ("m06", "FLAIR", all_zero, ["every voxel equals 0"]),
    "nan": ("m06", "FLAIR", with_nan, ["8 voxels are NaN", "re-export the scan"]),
    "inf": ("m06", "T1w", with_inf, ["8 are infinite"]),
    "singular": ("m06", "FLAIR", singular_affine, ["singular"]),
    "sqapart": ("m06", "T1w", sform_qform_apart, ["sform and qform", "20.00 mm apart"]),
    "far": ("m06", "FLAIR", far_from_t1w, ["overlap check failed", "covers 0 %"]),
    "zerovox": ("m06", "FLAIR", zero_voxel_size, ["voxel size (pixdim)", "is zero"]),
    "huge": ("m06", "T1w", claims_1000_cubed, ["1000 x 1000 x 1000", "image size check"]),
    "giant": ("m06", "FLAIR", claims_4000_cubed, ["4000 x 4000 x 4000", "image size check"]),
    "phase": ("m06", "FLAIR", phase_image, ["negative values check failed"]),
    "noise": ("m06", "T1w", pure_noise, ["brain mask of", "outside the plausible"]),
    "swapped": ("m06", "T1w", swapped_contrasts, ["registration", "refused"]),
    "mislabel": ("m06", "T1w", mislabelled_everywhere, ["grey/white contrast implausible"]),
}
#: The step that refuses each case (validation, in preprocess, unless listed).
STEP = {"swapped": "register", "mislabel": "segment"}

#: Cases found by the discovery (no image is opened): label -> (step in excluded.tsv, words)
LISTED = {
    "ghost": ("discovery", "no sub-ghost/ folder"),  # a participants.tsv row, no folder
    "incomplete": ("discovery", "FLAIR"),           # m06 lacks its FLAIR
    "ambig": ("discovery", "acq"),                  # two FLAIRs differing by acq
    "excl": ("config", "motion artefact"),          # exclude_subjects
}
EXCLUDE = "exclude_subjects={'excl': 'motion artefact'}"


def _copy_sessions(bids: Path, src: str, dst: str, sessions=("baseline", "m06")) -> None:
    for ses in sessions:
        anat = bids / f"sub-{src}" / f"ses-{ses}" / "anat"
        target = bids / f"sub-{dst}" / f"ses-{ses}" / "anat"
        target.mkdir(parents=True)
        for f in anat.iterdir():
            shutil.copy(f, target / f.name.replace(f"sub-{src}", f"sub-{dst}"))


def _discovery_cases(bids: Path, participants: list[str], template: list[str]) -> None:
    """Odd folder names, a participant without images, an unconfigured session, an incomplete
    and an ambiguous session, a subject excluded in the config."""
    for name in ("sub-001_old", "sub-a b", "sub-a;b"):
        (bids / name / "ses-baseline" / "anat").mkdir(parents=True)
    m24 = bids / "sub-002" / "ses-m24" / "anat"
    m24.mkdir(parents=True)
    for f in (bids / "sub-002" / "ses-m12" / "anat").iterdir():
        shutil.copy(f, m24 / f.name.replace("ses-m12", "ses-m24"))
    for label in ("incomplete", "ambig", "excl"):
        _copy_sessions(bids, "001", label)
    (bids / "sub-incomplete" / "ses-m06" / "anat" / "sub-incomplete_ses-m06_FLAIR.nii.gz").unlink()
    anat = bids / "sub-ambig" / "ses-m06" / "anat"
    shutil.copy(anat / "sub-ambig_ses-m06_FLAIR.nii.gz", anat / "sub-ambig_ses-m06_acq-2D_FLAIR.nii.gz")
    for label in LISTED:
        participants.append("\t".join([f"sub-{label}", *template[1:]]))


#: participants.tsv cells of good subjects: a blank covariate, text that must not become HTML
BLANK_WASHOUT = "sub-003"
HOSTILE = "<img src=x onerror=alert(1)>"


def _sheet_cases(participants: list[str]) -> None:
    header = participants[0].split("\t")
    for i, row in enumerate(participants):
        cells = row.split("\t")
        if cells[0] == BLANK_WASHOUT:
            cells[header.index("washout_days")] = ""
        if cells[0] == "sub-004":
            cells[header.index("next_dmt")] = HOSTILE
        participants[i] = "\t".join(cells)


@pytest.fixture(scope="module")
def fault_bed(repo, tool_env, tmp_path_factory):
    """The dataset, the first (failing) run and the second (cohort) run."""
    root = tmp_path_factory.mktemp("faults")
    bids, out = root / "bids", root / "out"
    res = subprocess.run([sys.executable, "-m", "pipeline", "phantom", "--preset", "ci",
                          "--seed", str(SEED), "--out", str(bids), "--truth-dir",
                          str(root / "truth")], cwd=repo, env=tool_env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    participants = (bids / "participants.tsv").read_text().splitlines()
    template = next(r for r in participants if r.startswith("sub-001\t")).split("\t")
    for label, (session, role, defect, _) in CASES.items():
        for ses in ("baseline", "m06"):
            src = bids / "sub-001" / f"ses-{ses}" / "anat"
            dst = bids / f"sub-{label}" / f"ses-{ses}" / "anat"
            dst.mkdir(parents=True)
            for f in src.iterdir():
                shutil.copy(f, dst / f.name.replace("sub-001", f"sub-{label}"))
        defect(bids / f"sub-{label}" / f"ses-{session}" / "anat"
               / f"sub-{label}_ses-{session}_{role}.nii.gz")
        participants.append("\t".join([f"sub-{label}", *template[1:]]))
    _discovery_cases(bids, participants, template)
    _sheet_cases(participants)
    (bids / "participants.tsv").write_text("\n".join(participants) + "\n")
    before = {p: p.read_bytes() for p in sorted(bids.rglob("*")) if p.is_file()}
    first = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={out}", EXCLUDE)
    cohort_after_first = [n for n in ("endpoints.tsv", "excluded.tsv", "report.html")
                          if (out / n).exists()]
    second = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={out}", EXCLUDE)
    after = {p: p.read_bytes() for p in sorted(bids.rglob("*")) if p.is_file()}
    return {"bids": bids, "out": out, "first": first, "second": second,
            "unchanged": before == after, "cohort_after_first": cohort_after_first}


def _refusal(out: Path, label: str) -> dict:
    records = sorted((out / "logs" / "refusals").glob(f"sub-{label}_*.json"))
    assert records, f"sub-{label}: no refusal record"
    return json.loads(records[0].read_text())


@pytest.mark.parametrize("label", sorted(CASES))
def test_each_bad_scan_is_refused_with_file_check_and_fix(fault_bed, label):
    session, role, _, words = CASES[label]
    record = _refusal(fault_bed["out"], label)
    message = record["message"]
    assert record["step"] == STEP.get(label, "preprocess"), record
    assert f"sub-{label}_ses-{session}_{role}.nii.gz" in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    assert record["sources"] and all(len(h) == 64 for h in record["sources"].values())
    # nothing that looks like a result: no endpoints for the refused subject
    assert not (fault_bed["out"] / f"sub-{label}" / "anat" / f"sub-{label}_endpoints.tsv").exists()


def test_first_run_fails_but_every_good_subject_finishes(fault_bed):
    first, out = fault_bed["first"], fault_bed["out"]
    assert first.returncode != 0
    for sub in GOOD:
        assert (out / f"sub-{sub}" / "anat" / f"sub-{sub}_endpoints.tsv").exists(), sub
    assert "refused in this run" in first.stderr
    assert fault_bed["cohort_after_first"] == []


def test_second_run_builds_the_cohort_of_those_that_passed(fault_bed):
    second, out = fault_bed["second"], fault_bed["out"]
    assert second.returncode == 0, second.stderr[-4000:]
    endpoints = read_tsv(out / "endpoints.tsv", dtype={"participant_id": str})
    assert sorted(endpoints.participant_id.unique()) == [f"sub-{s}" for s in GOOD]
    excluded = read_tsv(out / "excluded.tsv", dtype=str)
    assert list(excluded.columns) == ["participant_id", "session", "step", "file", "reason", "fix"]
    assert set(excluded.participant_id) == {f"sub-{label}" for label in (*CASES, *LISTED)}
    html = (out / "report.html").read_text()
    assert "Not in these tables" in html
    for label in CASES:
        assert f"sub-{label}" in html


def test_the_bids_tree_is_unchanged(fault_bed):
    assert fault_bed["unchanged"]


def test_nothing_partial_is_left(fault_bed):
    out = fault_bed["out"]
    assert not list(out.rglob(".*.nii.gz")) and not list(out.rglob(".*.tsv"))
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("label", sorted(LISTED))
def test_what_discovery_finds_is_listed_not_dropped(fault_bed, label):
    step, words = LISTED[label]
    excluded = read_tsv(fault_bed["out"] / "excluded.tsv", dtype=str).fillna("")
    rows = excluded[excluded.participant_id == f"sub-{label}"]
    assert len(rows) and set(rows.step) == {step}, rows
    assert words.lower() in " ".join(rows.reason).lower(), rows


@pytest.mark.parametrize("name", ["sub-001_old", "sub-a b", "sub-a;b", "ses-m24"])
def test_odd_folders_and_unconfigured_sessions_are_noted(fault_bed, name):
    notes = read_tsv(fault_bed["out"] / "discovery" / "notes.tsv", dtype=str).fillna("")
    assert notes.path.str.endswith(name).any(), notes
    assert html.escape(name) in (fault_bed["out"] / "report.html").read_text()


def test_strict_stops_at_start_naming_the_refusals(repo, tool_env, fault_bed):
    res = snakemake(repo, tool_env, f"bids_dir={fault_bed['bids']}",
                    f"out_dir={fault_bed['out']}", EXCLUDE, "strict=true", extra=("-n",))
    assert res.returncode != 0
    log = res.stdout + res.stderr
    assert "strict" in log and "sub-nan ses-m06 [preprocess]" in log, log[-3000:]


def test_a_replaced_file_is_tried_again(repo, tool_env, fault_bed, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(fault_bed["bids"], bids, symlinks=True)
    out = tmp_path / "out"
    shutil.copytree(fault_bed["out"], out)
    # The records name the original dataset's files; here the copies are the inputs, so the
    # records of this copy are rewritten to point at them, as if refused here.
    for record in (out / "logs" / "refusals").glob("*.json"):
        data = json.loads(record.read_text())
        data["sources"] = {p.replace(str(fault_bed["bids"]), str(bids)): h
                           for p, h in data["sources"].items()}
        record.write_text(json.dumps(data))
    nan = bids / "sub-nan" / "ses-m06" / "anat" / "sub-nan_ses-m06_FLAIR.nii.gz"
    shutil.copy(bids / "sub-001" / "ses-m06" / "anat" / "sub-001_ses-m06_FLAIR.nii.gz", nan)
    res = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={out}", EXCLUDE,
                    extra=("-n",))
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "sub-nan ses-m06 [preprocess]" not in log  # no longer a standing refusal
    assert "sub-inf ses-m06 [preprocess]" in log      # still is


def test_a_blank_covariate_is_missing_and_the_adjusted_models_say_so(fault_bed):
    out = fault_bed["out"]
    endpoints = read_tsv(out / "endpoints.tsv", dtype={"participant_id": str})
    assert endpoints.loc[endpoints.participant_id == BLANK_WASHOUT, "washout_days"].isna().all()
    assert endpoints["washout_days"].dropna().map(float).notna().all()  # still a number column
    notes = read_tsv(out / "group_stats_notes.tsv", dtype=str).fillna("")
    adjusted = notes[notes.model.str.endswith("_adjusted")
                     & notes.note.str.startswith("complete cases:")]
    assert len(adjusted), notes
    assert adjusted.note.str.contains("1 of 4 participant").all(), adjusted.note.tolist()
    assert adjusted.note.str.contains("washout_days").all(), adjusted.note.tolist()


def test_hostile_text_in_the_sheet_is_escaped_in_the_report(fault_bed):
    text = (fault_bed["out"] / "report.html").read_text()
    assert HOSTILE not in text and html.escape(HOSTILE) in text


def test_text_in_a_number_column_stops_the_run_at_start_naming_the_cell(repo, tool_env,
                                                                       fault_bed, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(fault_bed["bids"], bids)
    sheet = bids / "participants.tsv"
    rows = [r.split("\t") for r in sheet.read_text().splitlines()]
    column = rows[0].index("washout_days")
    for row in rows:
        if row[0] == "sub-002":
            row[column] = "about ten weeks"
    sheet.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    res = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={tmp_path / 'out'}", EXCLUDE,
                    extra=("-n",))
    log = res.stdout + res.stderr
    assert res.returncode != 0
    assert "sub-002" in log and "washout_days" in log and "about ten weeks" in log, log[-3000:]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_provenance_of_the_run(fault_bed):
    out, bids = fault_bed["out"], fault_bed["bids"]
    prov = json.loads((out / "provenance.json").read_text())
    assert {"pipeline", "software", "config", "command", "started", "finished", "host",
            "inputs_sha256"} <= set(prov)
    assert prov["pipeline"]["version"] and "snakemake" in prov["software"]
    assert prov["command"][0].endswith("snakemake") or "snakemake" in " ".join(prov["command"])
    sheet = str(bids / "participants.tsv")
    assert sheet in prov["inputs_sha256"] and len(prov["inputs_sha256"][sheet]) == 64
    raw = str(bids / "sub-001" / "ses-m06" / "anat" / "sub-001_ses-m06_FLAIR.nii.gz")
    assert raw in prov["inputs_sha256"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["SourceDatasets"][0]["URL"] == bids.resolve().as_uri()
    assert desc["GeneratedBy"][0]["Name"] == "rebound-mri" and desc["GeneratedBy"][0]["Version"]
    sidecar = json.loads((out / "sub-001" / "ses-m06" / "anat"
                          / "sub-001_ses-m06_space-subject_desc-lesion_mask.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-001/ses-m06/anat/sub-001_ses-m06_FLAIR.nii.gz",
                                  "bids:raw:sub-001/ses-m06/anat/sub-001_ses-m06_T1w.nii.gz"]
