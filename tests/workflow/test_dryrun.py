"""Dry runs of the Snakemake workflow over skeleton BIDS datasets, one per option combination,
and the config schema refusing bad values by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io import read_tsv
from tests.workflow.skeleton import (ODD_SESSION_ENTRIES, ODD_SUBJECT_ENTRIES, add_odd_names,
                                     make_real_names_skeleton, make_skeleton)

pytestmark = pytest.mark.workflow


def snakemake(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--snakefile",
           str(repo / "workflow" / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


#: Subject steps with one rule per subject layout: `register`, `register_baseline_m12`, ...
LAYOUT_STEPS = ("register", "segment", "longitudinal", "qc_figures")


def job_counts(stdout: str, by_rule: bool = False) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table: jobs per step (a layout's rule counted with its
    step), or per rule with ``by_rule``."""
    counts: dict[str, int] = {}
    table = stdout.split("Job stats:")[-1]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            name = m.group(1)
            if not by_rule:
                name = next((s for s in LAYOUT_STEPS if name.startswith(f"{s}_")), name)
            counts[name] = counts.get(name, 0) + int(m.group(2))
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
    assert "sub-02 baseline-m06: skipped" in log
    assert "no FLAIR: looked for sub-02_ses-m06_FLAIR.nii.gz" in log
    counts = job_counts(res.stdout)
    assert counts["preprocess"] == 5  # sub-02 keeps baseline and m12 for baseline-m12
    assert counts["register"] == 2
    # sub-02's jobs declare its two sessions' and one interval's files: rules of their own
    rules = job_counts(res.stdout, by_rule=True)
    for step in LAYOUT_STEPS:
        assert rules[step] == 1 and rules[f"{step}_baseline_m12"] == 1


def test_settings_for_a_step_reach_its_rules_of_every_layout(repo, tool_env, tmp_path):
    bids = make_skeleton(tmp_path / "bids", {"01": "IDG", "02": "TG"},
                         missing=(("02", "m06", "FLAIR"),))
    res = snakemake(repo, tool_env, "-n", "--cores", "2", "--set-resources",
                    "segment:mem_mb=4321", "--set-threads", "register=2", "--config",
                    f"bids_dir={bids}", f"out_dir={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr
    jobs = {block.split(":", 1)[0]: block for block in res.stdout.split("\nrule ")[1:]}
    for rule in ("segment", "segment_baseline_m12"):
        assert "mem_mb=4321" in jobs[rule], jobs[rule]
    for rule in ("register", "register_baseline_m12"):
        assert "threads: 2" in jobs[rule], jobs[rule]


def test_real_file_names_runs_ce_and_visit_times(repo, tool_env, tmp_path):
    # acq-/rec-/run-/part- entities, .nii beside .nii.gz, a contrast-enhanced T1w left out, two
    # FLAIR acquisitions told apart by the inputs filter, sub-01's visit dates in sessions.tsv.
    bids = make_real_names_skeleton(tmp_path / "bids")
    out = tmp_path / "out"
    config = ["--config", f"bids_dir={bids}", f"out_dir={out}",
              "inputs={T1w: {ce: null}, FLAIR: {acq: 3D}, multiple_runs: last}"]
    res = snakemake(repo, tool_env, "-n", "-p", *config)
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout)["preprocess"] == 6
    assert "--t1w " + str(bids / "sub-01" / "ses-baseline" / "anat"
                          / "sub-01_ses-baseline_acq-mprage_run-2_T1w.nii.gz") in res.stdout
    assert "sub-01_ses-baseline_acq-3D_FLAIR.nii " in res.stdout
    assert "sub-01_ses-m06_acq-mprage_rec-norm_run-02_T1w.nii " in res.stdout
    assert "ce-gadolinium" not in res.stdout.split("Job stats:")[0].replace("candidates", "")
    # Real interval lengths reach the longitudinal stage (sub-01: 6.9 and 12.4 months).
    assert re.search(r"--sessions-months baseline=0\.0000 m06=6\.9\d+ m12=12\.4\d+", res.stdout)
    assert "--sessions-months baseline=0.0000 m06=6.0000 m12=12.0000" in res.stdout
    # The discovery table, written by its rule, shows every candidate and the choice made.
    res = snakemake(repo, tool_env, str(out / "discovery" / "sessions.tsv"), *config)
    assert res.returncode == 0, res.stderr + res.stdout
    table = read_tsv(out / "discovery" / "sessions.tsv", dtype=str)
    base = table[(table.participant_id == "sub-01") & (table.session == "baseline")].iloc[0]
    assert base.status == "ok" and base.t1w.endswith("_acq-mprage_run-2_T1w.nii.gz")
    assert "ce-gadolinium" in base.t1w_candidates and "acq-2D" in base.flair_candidates
    assert "last of run-1, run-2" in base.choice and "left out by inputs.T1w {ce: null}" in \
        base.choice
    assert base.months_source == "sessions.tsv acq_time"
    # Without the FLAIR filter the baseline is refused with the filter to set, not guessed.
    res = snakemake(repo, tool_env, "-n", "--config", f"bids_dir={bids}", f"out_dir={out}")
    assert res.returncode == 0, res.stderr
    assert "set inputs.FLAIR.acq to one of 2D, 3D" in res.stdout + res.stderr
    assert job_counts(res.stdout)["preprocess"] == 5


def test_odd_names_are_skipped_and_noted_and_the_others_run(repo, tool_env, tmp_path):
    # Folders named like subjects or sessions that are not BIDS labels (sub-001_old, sub-a b,
    # sub-, sub-01.bak, .sub-03, ses-m06 (copy), a name that is not UTF-8, ...), files where
    # folders belong, a participants.tsv row without images and a session folder not in the
    # config (ses-m24): the run starts, sub-01 and sub-05 run, each case is a warning and a
    # row of discovery/notes.tsv.
    bids = add_odd_names(make_skeleton(tmp_path / "bids", {"01": "IDG", "05": "TG"}),
                         subject="01", without_images="07")
    out = tmp_path / "out"
    config = ["--config", f"bids_dir={bids}", f"out_dir={out}"]
    res = snakemake(repo, tool_env, "-n", "-p", *config)
    assert res.returncode == 0, res.stderr + res.stdout
    counts = job_counts(res.stdout)
    assert counts["preprocess"] == 6 and counts["register"] == counts["longitudinal"] == 2
    commands = "\n".join(line for line in res.stdout.splitlines()
                          if "python -m pipeline" in line and "pipeline discover" not in line)
    for sub in ("01", "05"):
        for ses in ("baseline", "m06", "m12"):
            assert f"sub-{sub}_ses-{ses}_FLAIR.nii.gz" in commands
    for other in ("m24", "001_old", "sub-a", "sub-07", ".bak", "(copy)"):
        assert other not in commands
    log = res.stdout + res.stderr
    assert f"skipped_folder {bids / 'sub-a b'}: not a BIDS label: only letters and digits may " \
        "follow sub-; rename the folder or move it out of the dataset" in log
    assert f"session_not_configured {bids / 'sub-01' / 'ses-m24'}: " in log
    assert f"participant_without_images {bids / 'sub-07'}: " in log
    res = snakemake(repo, tool_env, str(out / "discovery" / "notes.tsv"), *config)
    assert res.returncode == 0, res.stderr + res.stdout
    notes = read_tsv(out / "discovery" / "notes.tsv", dtype=str)
    assert list(notes.columns) == ["participant_id", "session", "path", "kind", "reason"]
    kinds = notes.set_index("path").kind
    for name, folder in ODD_SUBJECT_ENTRIES.items():
        if isinstance(name, str) and name.isprintable():
            assert kinds[str(bids / name)] == ("skipped_folder" if folder else "not_a_folder")
    assert kinds[str(bids / "sub-caf\\xe9")] == "skipped_folder"  # shown as \xe9
    for name, folder in ODD_SESSION_ENTRIES.items():
        assert kinds[str(bids / "sub-01" / name)] == (
            "not_a_folder" if not folder else
            "session_not_configured" if name == "ses-m24" else "skipped_folder")
    assert kinds[str(bids / "sub-07")] == "participant_without_images"
    assert len(notes) == len(ODD_SUBJECT_ENTRIES) + len(ODD_SESSION_ENTRIES) + 1


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
