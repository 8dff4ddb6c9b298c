"""The workflow on a real SLURM scheduler: the single-node test cluster of
scripts/slurm-test-cluster runs the ci phantom through profiles/slurm-test, every job but the
target rule an sbatch submission, and the run ends with the cohort tables and the report."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

SEED = 53  # a ci cohort seed not used by any other test
RUN_TIMEOUT_S = 900  # a job whose end SLURM never reports must fail the test, not stall CI
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.$", re.M)
#: The workflow's local rules (workflow/Snakefile `localrules:`).
LOCAL_RULES = ("all", "settings", "used_config", "discovery", "excluded", "cohort", "stats")


@pytest.fixture(scope="module")
def cluster(repo):
    """The test cluster: found running, or started here and stopped afterwards."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("no Snakemake SLURM plugin: run scripts/slurm-test-cluster install")
    script = repo / "scripts" / "slurm-test-cluster"
    if subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0:
        yield
        return
    start = subprocess.run([script, "start"], capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        pytest.skip(f"no SLURM test cluster: {start.stderr.strip()}")
    yield
    subprocess.run([script, "stop"], capture_output=True, timeout=120)


def snakemake_with_timeout(repo: Path, env: dict, args: list[str], timeout_s: float):
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # An interrupted Snakemake cancels its SLURM jobs before it exits.
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"snakemake on SLURM did not end within {timeout_s} s:\n{err[-5000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ci_cohort_runs_through_slurm(repo, tool_env, cluster, tmp_path):
    bids, out, slurm_logs = tmp_path / "bids", tmp_path / "out", tmp_path / "slurm_logs"
    overlay = tmp_path / "ci.yaml"
    overlay.write_text(f"phantom: {{preset: ci, seed: {SEED}, subjects: 2, bids_dir: '{bids}'}}\n")
    res = snakemake_with_timeout(
        repo, tool_env,
        ["--profile", "profiles/slurm-test", "--configfile", str(overlay),
         "--config", f"out_dir={out}",
         "--slurm-logdir", str(slurm_logs), "--slurm-keep-successful-logs"],
        RUN_TIMEOUT_S)
    assert res.returncode == 0, res.stderr[-5000:]
    for name in ("endpoints.tsv", "group_stats.tsv", "report.html"):
        assert (out / name).stat().st_size > 0, name

    # Every rule's job was submitted, except the workflow's declared local rules (seconds-long
    # bookkeeping and cohort steps), which ran in the submitting process.
    submitted = SUBMITTED.findall(res.stderr)
    assert len(submitted) == len(re.findall(r"^rule \w+:$", res.stderr, re.M)) > 0
    assert {"preprocess", "register", "segment", "longitudinal", "qc_figures", "report"} <= set(
        re.findall(r"^rule (\w+):$", res.stderr, re.M))
    assert sorted(set(re.findall(r"^localrule (\w+):$", res.stderr, re.M))) == sorted(LOCAL_RULES)
    # SLURM ran each one: its output file, named by SLURM's job id, holds the job's own
    # Snakemake run to the end.
    for jobid, log in submitted:
        log = Path(log)
        assert log.name == f"{jobid}.log" and log.is_relative_to(slurm_logs)
        assert "1 of 1 steps (100%) done" in log.read_text(), log
