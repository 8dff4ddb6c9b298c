"""The whole workflow, for real, on the `ci` phantom cohort: every output of the contract exists,
endpoints agree with the phantom's ground truth, reruns are byte-identical, and a bad scan stops
only its own subject, leaving nothing that looks like a result."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest

from pipeline.phantom.evaluate import evaluate
from pipeline.io import read_tsv
from pipeline.paths import step_products
from tests.workflow.defects import add_nans

pytestmark = pytest.mark.workflow

ENDPOINT_COLUMNS = ["participant_id", "interval", "ses_start", "ses_end", "months", "new_t2",
                    "enlarging_t2", "new_t1hypo", "t2lv_start_ml", "t2lv_end_ml",
                    "t2lv_change_ml", "t2lv_change_pct"]
SEED = 31  # a ci cohort seed not used while developing any method


def snakemake(repo: Path, env: dict, *config: str, extra: tuple[str, ...] = ()):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--snakefile",
           str(repo / "workflow" / "Snakefile"), *extra, "--config", *config]
    # The workflow's default config file first, then the test's overlay on top.
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def ci_run(repo, tool_env, tmp_path_factory):
    """Generate the ci phantom through the workflow's own phantom rule and process it."""
    root = tmp_path_factory.mktemp("ci")
    bids, out = root / "bids", root / "out"
    # Nested values given with --config arrive as strings; a config file keeps their types.
    overlay = root / "ci.yaml"
    overlay.write_text(f"phantom: {{preset: ci, seed: {SEED}, bids_dir: '{bids}'}}\n")
    res = snakemake(repo, tool_env, f"out_dir={out}", extra=("--configfile", str(overlay)))
    assert res.returncode == 0, res.stderr[-5000:]
    return bids, Path(f"{bids}-truth"), out


def test_snakemake_report_of_the_run(repo, tool_env, ci_run, tmp_path):
    bids, _, out = ci_run
    html = tmp_path / "snakemake_report.html"
    res = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={out}",
                    extra=("--report", str(html)))
    assert res.returncode == 0, res.stderr[-5000:]
    assert html.stat().st_size > 10_000


def test_outputs_follow_the_contract(ci_run):
    bids, _, out = ci_run
    participants = read_tsv(bids / "participants.tsv")
    endpoints = read_tsv(out / "endpoints.tsv")
    assert list(endpoints.columns) == ENDPOINT_COLUMNS + list(participants.columns[1:])
    assert len(endpoints) == 3 * len(participants)
    assert set(endpoints.interval) == {"baseline-m06", "m06-m12", "baseline-m12"}
    # The phantom has no sessions.tsv: interval lengths are the nominal months.
    lengths = {"baseline-m06": 6.0, "m06-m12": 6.0, "baseline-m12": 12.0}
    assert (endpoints.months == endpoints.interval.map(lengths)).all()
    stats = read_tsv(out / "group_stats.tsv")
    assert list(stats.columns) == ["endpoint", "interval", "model", "n_IDG", "mean_IDG", "n_TG",
                                   "mean_TG", "estimate", "ci_low", "ci_high", "p_value"]
    assert {"new_t2", "new_t1hypo", "t2lv_change_ml"} <= set(stats.endpoint)
    assert (out / "dataset_description.json").exists()
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "group_stats" in html or "new T2" in html
    for sub in participants.participant_id:
        label = sub.removeprefix("sub-")
        anat = out / sub / "anat"
        assert (anat / f"{sub}_space-subject_desc-template_T1w.nii.gz").exists()
        assert (anat / f"{sub}_from-baseline_to-m06_lesions.tsv").exists()
        for ses in ("baseline", "m06", "m12"):
            sdir = out / sub / f"ses-{ses}" / "anat"
            xfm = sdir / f"{sub}_ses-{ses}_from-T1w_to-subject_mode-image_xfm.txt"
            assert xfm.read_text().startswith("#Insight Transform File")
            mask = nib.load(sdir / f"{sub}_ses-{ses}_space-subject_desc-lesion_mask.nii.gz")
            assert mask.shape == nib.load(anat / f"{sub}_space-subject_desc-template_T1w.nii.gz").shape
        assert label


def test_every_file_a_subject_job_writes_is_declared(ci_run):
    # The rules declare pipeline.paths' products as their outputs; a file written beside them
    # would escape Snakemake's incomplete-file detection and clean-up. The N4 intermediates
    # (and their sidecars) are declared temporary, so the finished run no longer has them.
    bids, _, out = ci_run
    sessions, intervals = ["baseline", "m06", "m12"], [("baseline", "m06"), ("m06", "m12"),
                                                       ("baseline", "m12")]
    for sub in read_tsv(bids / "participants.tsv").participant_id:
        label = sub.removeprefix("sub-")
        declared = {p for step in ("preprocess", "register", "segment", "longitudinal", "qc")
                    for p in step_products(step, out, label, sessions, intervals,
                                           intermediate=False).values()}
        written = {p for p in (out / sub).rglob("*") if p.is_file()}
        assert written == declared, (sorted(written - declared), sorted(declared - written))


def test_endpoints_agree_with_ground_truth(ci_run):
    bids, truth, out = ci_run
    scores, details = evaluate(out, truth, bids)
    value = scores.set_index(["metric", "interval", "kind", "size_bin"]).value
    # Lesion-wise detection of new T2 lesions pooled over intervals and subjects.
    assert value[("f1", "all", "t2", "all")] >= 0.85
    assert value[("f1", "all", "t1hypo", "all")] >= 0.85
    # Lesion counts per subject-interval: most exact, none far off.
    assert value[("fraction_exact", "all", "new_t2", "all")] >= 0.75
    errors = details["endpoint_errors"]
    assert errors["new_t2_error"].abs().max() <= 1
    assert value[("t2lv_change_median_abs_error_ml", "all", "t2lv_change_ml", "all")] <= 0.3
    assert details["missing"] == [] or len(details["missing"]) == 0


def test_rerun_gives_byte_identical_tables(repo, tool_env, ci_run, tmp_path):
    bids, _, out = ci_run
    again = tmp_path / "again"
    res = snakemake(repo, tool_env, f"bids_dir={bids}", f"out_dir={again}")
    assert res.returncode == 0, res.stderr[-5000:]
    for name in ("endpoints.tsv", "group_stats.tsv", "group_stats_notes.tsv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    rel = "sub-001/ses-m12/anat/sub-001_ses-m12_space-subject_desc-lesion_mask.nii.gz"
    assert (again / rel).read_bytes() == (out / rel).read_bytes()


def test_bad_scan_stops_only_its_subject(repo, tool_env, ci_run, tmp_path):
    bids_src, _, _ = ci_run
    bids = tmp_path / "bids"
    shutil.copytree(bids_src, bids)
    bad = bids / "sub-002" / "ses-m06" / "anat" / "sub-002_ses-m06_FLAIR.nii.gz"
    add_nans(bad)
    before = {p: p.read_bytes() for p in sorted(bids.rglob("*")) if p.is_file()}
    out = tmp_path / "out"
    config = (f"bids_dir={bids}", f"out_dir={out}", "subjects=[001, 002]")
    res = snakemake(repo, tool_env, *config, extra=("--keep-going",))
    assert res.returncode != 0
    log = (out / "logs" / "preprocess" / "sub-002_ses-m06.log").read_text()
    assert "sub-002_ses-m06_FLAIR.nii.gz" in log and "NaN" in log
    assert "finite values check failed" in log and "re-export the scan" in log
    # The other subject went on; the bad session left no output; no cohort table exists.
    assert (out / "sub-001" / "anat" / "sub-001_endpoints.tsv").exists()
    assert not list((out / "sub-002" / "ses-m06").rglob("*.nii.gz"))
    assert not (out / "endpoints.tsv").exists()
    assert not list(out.rglob(".*.nii.gz")) and not list(out.rglob(".*.tsv"))
    # Nothing the user gave was modified.
    assert before == {p: p.read_bytes() for p in sorted(bids.rglob("*")) if p.is_file()}
    # Excluding the subject, with a reason, lets the cohort finish without it.
    res = snakemake(repo, tool_env, *config, "exclude_subjects={'002': 'FLAIR corrupt'}")
    assert res.returncode == 0, res.stderr[-5000:]
    endpoints = read_tsv(out / "endpoints.tsv")
    assert set(endpoints.participant_id) == {"sub-001"}
    assert isinstance(endpoints, pd.DataFrame)
