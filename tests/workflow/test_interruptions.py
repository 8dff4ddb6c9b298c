"""Interrupted and repeated runs give the tables of an uninterrupted run, byte for byte.

A `ci` phantom of two subjects is run once as the reference. Then: the same inputs with one
job slot (the scheduler's order differs), two runs with two registration threads, and two runs
killed with SIGKILL - during a subject's segmentation and during the cohort join - then
unlocked and rerun as a user would; and scans added to a finished run, one of them bad.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.io import read_tsv
from tests.workflow.defects import add_nans

pytestmark = pytest.mark.workflow

SEED = 47  # never used while developing any method
TABLES = ("endpoints.tsv", "group_stats.tsv", "group_stats_notes.tsv", "excluded.tsv")
MASK = "sub-001/ses-m06/anat/sub-001_ses-m06_space-subject_desc-lesion_mask.nii.gz"


def command(repo: Path, bids: Path, out: Path, *config: str, cores: int = 2) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", str(cores), "--snakefile",
            str(repo / "workflow" / "Snakefile"), "--config", f"bids_dir={bids}",
            f"out_dir={out}", *config]


def run(repo, env, bids, out, *config, cores=2, extra=()):
    res = subprocess.run(command(repo, bids, out, *config, cores=cores) + list(extra), cwd=repo,
                         env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def same_outputs(a: Path, b: Path) -> None:
    for name in (*TABLES, MASK):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(repo, tool_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    bids = root / "bids"
    res = subprocess.run([sys.executable, "-m", "pipeline", "phantom", "--preset", "ci",
                          "--seed", str(SEED), "--subjects", "2", "--out", str(bids),
                          "--truth-dir", str(root / "truth")], cwd=repo, env=tool_env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = root / "reference"
    run(repo, tool_env, bids, out)
    return bids, out


def test_one_job_slot_gives_the_same_tables(repo, tool_env, reference, tmp_path):
    bids, ref = reference
    run(repo, tool_env, bids, tmp_path / "serial", cores=1)
    same_outputs(ref, tmp_path / "serial")


def test_two_registration_threads_reproduce_themselves(repo, tool_env, reference, tmp_path):
    bids, ref = reference
    for name in ("a", "b"):
        run(repo, tool_env, bids, tmp_path / name, "threads_register=2")
    same_outputs(tmp_path / "a", tmp_path / "b")


def _kill_when(repo, env, bids, out, started: Path, delay_s: float) -> None:
    """Start the workflow, SIGKILL its whole process group once ``started`` exists."""
    proc = subprocess.Popen(command(repo, bids, out), cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while not started.exists():
        assert proc.poll() is None, "the workflow ended before the step to interrupt began"
        assert time.monotonic() < deadline, f"{started} never appeared"
        time.sleep(0.05)
    time.sleep(delay_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.parametrize("moment", ["subject step", "cohort step"])
def test_kill_then_rerun_gives_the_uninterrupted_tables(repo, tool_env, reference, tmp_path,
                                                         moment):
    bids, ref = reference
    out = tmp_path / "out"
    if moment == "subject step":  # two seconds into sub-001's segmentation
        started, delay_s = out / "logs" / "segment" / "sub-001.log", 2.0
    else:  # as soon as the cohort join starts
        started, delay_s = out / "logs" / "cohort" / "cohort.log", 0.0
    _kill_when(repo, tool_env, bids, out, started, delay_s)
    # The kill left the run unfinished: no cohort table (and, mid-subject, no subject table).
    assert not (out / "group_stats.tsv").exists()
    if moment == "subject step":
        assert not (out / "sub-001" / "anat" / "sub-001_endpoints.tsv").exists()
    run(repo, tool_env, bids, out, extra=("--unlock",))
    run(repo, tool_env, bids, out)
    same_outputs(ref, out)


def test_scans_added_with_a_bad_one_never_leave_an_old_cohort_looking_current(
        repo, tool_env, reference, tmp_path):
    src_bids, ref = reference
    bids, out = tmp_path / "bids", tmp_path / "out"
    shutil.copytree(src_bids, bids)
    shutil.copytree(ref, out)
    # New scans arrive: sub-003, a copy of sub-001 whose m06 FLAIR holds NaNs.
    for ses in ("baseline", "m06", "m12"):
        anat = bids / "sub-003" / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True)
        for f in (bids / "sub-001" / f"ses-{ses}" / "anat").iterdir():
            shutil.copy(f, anat / f.name.replace("sub-001", "sub-003"))
    flair = bids / "sub-003" / "ses-m06" / "anat" / "sub-003_ses-m06_FLAIR.nii.gz"
    add_nans(flair, start=20)
    rows = (bids / "participants.tsv").read_text().splitlines()
    rows.append(rows[1].replace("sub-001", "sub-003", 1))
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")

    first = subprocess.run(command(repo, bids, out), cwd=repo, env=tool_env,
                           capture_output=True, text=True, timeout=1800)
    assert first.returncode != 0
    assert "sub-003 ses-m06 [preprocess]" in first.stderr and "NaN" in first.stderr
    # The two-subject tables are not left looking current for a three-subject dataset.
    assert not (out / "endpoints.tsv").exists() and not (out / "report.html").exists()
    assert (out / "stale" / "endpoints.tsv").read_bytes() == (ref / "endpoints.tsv").read_bytes()
    assert "older state" in (out / "stale" / "STALE.txt").read_text()

    run(repo, tool_env, bids, out)
    endpoints = read_tsv(out / "endpoints.tsv", dtype={"participant_id": str})
    # The refused session counts as missing: sub-003 keeps its baseline-m12 interval.
    assert set(endpoints.participant_id) == {"sub-001", "sub-002", "sub-003"}
    assert set(endpoints[endpoints.participant_id == "sub-003"].interval) == {"baseline-m12"}
    excluded = read_tsv(out / "excluded.tsv", dtype=str)
    assert excluded[["participant_id", "session", "step"]].values.tolist() == [
        ["sub-003", "m06", "preprocess"]]
    assert "NaN" in excluded.reason[0] and "re-export" in excluded.fix[0]
    assert "Not in these tables" in (out / "report.html").read_text()
    assert not (out / "stale").exists()
