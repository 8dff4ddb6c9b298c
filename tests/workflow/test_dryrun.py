"""Dry runs of the Snakemake workflow over skeleton BIDS datasets, one per option combination,
and the config schema refusing bad values by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow.skeleton import make_skeleton

pytestmark = pytest.mark.workflow


def snakemake(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--snakefile",
           str(repo / "workflow" / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def job_counts(stdout: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    counts = {}
    table = stdout.split("Job stats:")[-1]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture()
def skeleton(tmp_path: Path) -> Path:
    return make_skeleton(tmp_path / "bids", {"01": "IDG", "02": "TG", "03": "TG"})


def test_full_cohort_dry_run_lists_every_stage(repo, tool_env, skeleton, tmp_path):
    # -p formats every shell command, so a rule naming an unknown param fails here too.
    res = snakemake(repo, tool_env, "-n", "-p", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr + res.stdout
    counts = job_counts(res.stdout)
    assert counts["preprocess"] == 9 and counts["segment"] == 3
    assert counts["register"] == counts["longitudinal"] == counts["qc_figures"] == 3
    for rule in ("cohort", "stats", "report", "discovery", "settings"):
        assert counts[rule] == 1
    assert "phantom" not in counts
    assert "python -m pipeline longitudinal" in res.stdout


def test_phantom_default_dry_run(repo, tool_env, tmp_path):
    res = snakemake(repo, tool_env, "-n", "-p", "--config", f"out_dir={tmp_path / 'out'}",
                    f"phantom={{bids_dir: {tmp_path / 'bids'}}}")
    assert res.returncode == 0, res.stderr + res.stdout
    counts = job_counts(res.stdout)
    assert counts["phantom"] == 1 and counts["evaluate"] == 1 and counts["register"] >= 2


def test_missing_session_skips_its_intervals_with_a_reason(repo, tool_env, tmp_path):
    bids = make_skeleton(tmp_path / "bids", {"01": "IDG", "02": "TG"},
                         missing=(("02", "m06", "FLAIR"),))
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={bids}",
                    f"out_dir={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr
    assert "sub-02 baseline-m06: skipped" in log and "sub-02_ses-m06_FLAIR.nii.gz not found" in log
    counts = job_counts(res.stdout)
    assert counts["preprocess"] == 5  # sub-02 keeps baseline and m12 for baseline-m12
    assert counts["register"] == 2


def test_custom_sessions_and_intervals(repo, tool_env, skeleton, tmp_path):
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}", "intervals=[baseline-m12]")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["preprocess"] == 6  # m06 is not needed by any interval


def test_user_masks_become_inputs_of_segmentation(repo, tool_env, tmp_path):
    bids = make_skeleton(tmp_path / "bids", {"01": "IDG", "02": "TG"}, masks=True)
    res = snakemake(repo, tool_env, "-n", "-p", "--config", f"bids_dir={bids}",
                    f"out_dir={tmp_path / 'out'}", "segmentation={source: masks}")
    assert res.returncode == 0, res.stderr
    assert "--lesion-masks baseline=" in res.stdout and "desc-lesion_mask.nii.gz" in res.stdout


def test_subjects_and_exclusions(repo, tool_env, skeleton, tmp_path):
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}", "exclude_subjects={'03': 'motion'}")
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout)["register"] == 2
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}", "subjects=[01]")
    assert res.returncode == 0, res.stderr
    assert job_counts(res.stdout)["register"] == 1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("threads_register=0", "threads_register"),
        ("intervals=[baseline_m06]", "intervals"),
        ("segmentation={source: lst}", "source"),
        ("unknown_key=1", "unknown_key"),
    ],
)
def test_schema_refuses_bad_config_naming_the_key(repo, tool_env, skeleton, tmp_path, override,
                                                  key):
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}", override)
    assert res.returncode != 0
    assert "Error validating config file" in res.stderr + res.stdout
    assert key in res.stderr + res.stdout


def test_interval_with_unknown_session_is_refused(repo, tool_env, skeleton, tmp_path):
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}", "intervals=[baseline-m24]")
    assert res.returncode != 0
    assert "'baseline-m24' names session 'm24'" in res.stderr + res.stdout


def test_lint_is_clean(repo, tool_env, skeleton, tmp_path):
    res = snakemake(repo, tool_env, "--lint", "--config", f"bids_dir={skeleton}",
                    f"out_dir={tmp_path / 'out'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr
