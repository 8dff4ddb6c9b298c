# Configuration, BIDS discovery, path patterns and input functions shared by every rule.
import json
from pathlib import Path

from snakemake.utils import validate

from pipeline.bids import ROLES, discover, parse_intervals, planned_discovery
from pipeline.errors import InputError
from pipeline.paths import bids_path


validate(config, schema="../schemas/config.schema.yaml")

OUT = Path(config["out_dir"])
SESSIONS_MONTHS = {str(k): float(v) for k, v in config["sessions"].items()}
INTERVALS = list(config["intervals"])
ARM_COLUMN = config["arm"]["column"]
ARMS = list(config["arm"]["labels"])
# `--config inputs={T1w: {ce: null}}` reaches us as the text "null" (Snakemake parses --config
# values with YAML's BaseLoader); a BIDS label is never "null", so it means "entity absent".
INPUT_FILTERS = {role: {k: None if v in (None, "null", "~") else v
                        for k, v in config["inputs"][role].items()} for role in ROLES}
MULTIPLE_RUNS = config["inputs"]["multiple_runs"]
VISIT_TIMES = dict(config["visit_times"])
PHANTOM = config["bids_dir"] is None
BIDS = Path(config["phantom"]["bids_dir"] if PHANTOM else config["bids_dir"])
TRUTH = Path(f"{BIDS}-truth")
LOGS = OUT / "logs"
BENCH = OUT / "benchmarks"
PARAMS_JSON = LOGS / "settings" / "params.json"

try:
    parse_intervals(INTERVALS, SESSIONS_MONTHS)
except InputError as exc:
    raise WorkflowError(str(exc)) from None

wildcard_constraints:
    subject="[A-Za-z0-9]+",
    session="[A-Za-z0-9]+",
    ses_a="[A-Za-z0-9]+",
    ses_b="[A-Za-z0-9]+",


def _phantom_layout():
    """Subjects and sessions the phantom will write (known before it runs)."""
    from pipeline.phantom import cohort_layout

    return cohort_layout(config["phantom"]["preset"], config["phantom"]["subjects"])


def _discover():
    # The phantom is not written yet when the workflow starts: its layout stands for it.
    if PHANTOM:
        return planned_discovery(BIDS, _phantom_layout(), SESSIONS_MONTHS, INTERVALS)
    try:
        return discover(BIDS, SESSIONS_MONTHS, INTERVALS, config["subjects"],
                        config["exclude_subjects"], INPUT_FILTERS, MULTIPLE_RUNS, VISIT_TIMES)
    except InputError as exc:
        raise WorkflowError(str(exc)) from None


DISCOVERY = _discover()
# Folders skipped for their names, participants without images, sessions not configured, ...
# (also in OUT/discovery/notes.tsv, written by the discovery rule).
for _line in DISCOVERY.note_lines():
    logger.warning(_line)
SUBJECTS = DISCOVERY.subjects()
if not SUBJECTS:
    raise WorkflowError(f"{BIDS}: no subject has both sessions of any configured interval "
                        f"{INTERVALS}; check config 'sessions' and 'intervals' against the dataset")
for _row in DISCOVERY.intervals[DISCOVERY.intervals.status == "skipped"].itertuples():
    logger.warning(f"{_row.participant_id} {_row.interval}: skipped ({_row.reason})")


# ---- path patterns (one helper names every file: pipeline.paths.bids_path) ----------------

def deriv(sub="{subject}", ses="{session}", **entities):
    return str(bids_path(OUT, sub, ses, **entities))


def raw(suffix, sub="{subject}", ses="{session}"):
    return str(bids_path(BIDS, sub, ses, suffix=suffix))


def log(rule, sub="{subject}", ses=None):
    name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return str(LOGS / rule / f"{name}.log")


def bench(rule, sub="{subject}", ses=None):
    name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return str(BENCH / rule / f"{name}.tsv")


# ---- input functions -----------------------------------------------------------------------

def sessions_of(wildcards):
    return DISCOVERY.sessions_of(wildcards.subject)


def intervals_of(wildcards):
    return DISCOVERY.intervals_of(wildcards.subject)


def visit_months(wildcards):
    """``session=months`` of the subject's sessions: real visit times where sessions.tsv gives
    them (config visit_times), the nominal config months otherwise."""
    return " ".join(f"{s}={m:.4f}" for s, m in DISCOVERY.months_of(wildcards.subject).items())


def raw_inputs(wildcards):
    """The session's raw images as discovery chose them (config inputs); with the phantom, the
    generator's participants.tsv stands for the whole tree it writes."""
    t1w, flair = DISCOVERY.files_of(wildcards.subject, wildcards.session)
    files = {"t1w": t1w, "flair": flair}
    if PHANTOM:
        files["phantom"] = str(BIDS / "participants.tsv")
    return files


def user_lesion_masks(wildcards):
    """The subject's user-supplied lesion masks, one per session in sessions_of order."""
    if config["segmentation"]["source"] != "masks":
        return []
    return [config["segmentation"]["mask_pattern"].format(
        bids_dir=BIDS, subject=wildcards.subject, session=s) for s in sessions_of(wildcards)]


def subject_endpoints():
    return [deriv(s, None, suffix="endpoints", ext=".tsv") for s in SUBJECTS]


def subject_figures():
    return [deriv(s, None, datatype="figures", desc="registration", suffix="qc", ext=".png")
            for s in SUBJECTS]


def final_targets():
    targets = [str(OUT / "endpoints.tsv"), str(OUT / "group_stats.tsv"), str(OUT / "report.html")]
    if PHANTOM:
        targets.append(str(OUT / "evaluation" / "scores.tsv"))
    return targets
