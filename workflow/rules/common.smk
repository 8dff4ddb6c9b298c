# Configuration, BIDS discovery, path patterns and input functions shared by every rule.
import functools
import inspect
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import snakemake.common
import snakemake.resources
from snakemake.utils import validate

from pipeline.bids import ROLES, discover, parse_intervals, planned_discovery
from pipeline.cohort import check_participants
from pipeline.errors import InputError
from pipeline.outcome import (move_stale_products, params_fingerprint, read_refusals,
                              refusal_path, refusal_summary, standing_refusals, without_refused)
from pipeline.provenance import write_provenance
from pipeline.settings import resolved_text
from pipeline.paths import PRODUCTS, bids_path, product_path, products_of, step_products


validate(config, schema="../schemas/config.schema.yaml")

RUN_START = time.time()  # cohort tables older than this are stale if the run fails

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
STRICT = config["strict"] in (True, "true")
PHANTOM = config["bids_dir"] is None
BIDS = Path(config["phantom"]["bids_dir"] if PHANTOM else config["bids_dir"])
TRUTH = Path(f"{BIDS}-truth")
LOGS = OUT / "logs"
BENCH = OUT / "benchmarks"
PARAMS_JSON = LOGS / "settings" / "params.json"
# false: files that only feed the next step of a subject's chain are deleted once it has run
KEEP_INTERMEDIATES = config["keep_intermediates"] in (True, "true")

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


# ---- outcomes of earlier runs (pipeline.outcome): a standing refusal is the subject's result ----
def _standing_refusals():
    try:
        params_sha256 = params_fingerprint(resolved_text(config["params"]))
    except InputError as exc:
        raise WorkflowError(str(exc)) from None
    known = set(DISCOVERY.sessions.participant_id)
    return params_sha256, [r for r in standing_refusals(OUT, params_sha256)
                           if f"sub-{r.subject}" in known]


PARAMS_SHA256, REFUSALS = _standing_refusals()
if REFUSALS and STRICT:
    raise WorkflowError("strict: true, and these inputs were refused (the records are in "
                        f"{OUT / 'logs' / 'refusals'}):\n{refusal_summary(REFUSALS)}\nFix or "
                        "replace the files (a changed file is tried again), or list the subjects "
                        "in exclude_subjects with the reason")
if REFUSALS:
    logger.warning("Refused in an earlier run, inputs unchanged, so left out and listed in "
                   f"excluded.tsv:\n{refusal_summary(REFUSALS)}")
DISCOVERY = without_refused(DISCOVERY, REFUSALS)
SUBJECTS = DISCOVERY.subjects()
if not SUBJECTS:
    raise WorkflowError(f"{BIDS}: no subject has both sessions of any configured interval "
                        f"{INTERVALS}; check config 'sessions' and 'intervals' against the dataset")
for _row in DISCOVERY.intervals[DISCOVERY.intervals.status == "skipped"].itertuples():
    logger.warning(f"{_row.participant_id} {_row.interval}: skipped ({_row.reason})")


# ---- participants.tsv, typed by its schema (pipeline.participants) -------------------------

def participants_sidecar():
    """participants.json when the dataset has one (it declares categorical columns)."""
    path = BIDS / "participants.json"
    return [str(path)] if path.is_file() else []


_TYPES = " ".join(f"{k}={v}" for k, v in config["covariate_types"].items())
PARTICIPANT_TYPES_ARGS = (f"--covariate-types {_TYPES}" if _TYPES else "--covariate-types") + "".join(
    f" --participants-json {p}" for p in participants_sidecar())
PARTICIPANT_SCHEMA_ARGS = " ".join(
    [f"--covariates {' '.join(config['covariates'])}" if config["covariates"] else "",
     PARTICIPANT_TYPES_ARGS,
     "--relapse-columns " + " ".join(f"{k}={v:g}" for k, v in config["relapse_columns"].items())
     if config["relapse_columns"] else ""])
if not PHANTOM:  # checked before any image is read; the phantom writes its sheet itself
    try:
        check_participants(BIDS / "participants.tsv", ARM_COLUMN, ARMS, config["covariates"],
                           config["covariate_types"], list(config["relapse_columns"]),
                           subjects=SUBJECTS)
    except InputError as exc:
        raise WorkflowError(str(exc)) from None


# ---- path patterns (one helper names every file: pipeline.paths) -------------------------

def raw(suffix, sub="{subject}", ses="{session}"):
    return str(bids_path(BIDS, sub, ses, suffix=suffix))


def log(rule, sub="{subject}", ses=None):
    name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return str(LOGS / rule / f"{name}.log")


def bench(rule, sub="{subject}", ses=None):
    name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return str(BENCH / rule / f"{name}.tsv")


def intermediate(path):
    """A file only later steps of the same subject read: temporary unless keep_intermediates."""
    return path if KEEP_INTERMEDIATES else temp(path)


def declared(products):
    """A job's outputs: ``products(intermediate)`` (name -> path) for the files it keeps and
    for the intermediates (pipeline.paths.PRODUCTS), temporary unless keep_intermediates."""
    return {**{name: str(path) for name, path in products(False).items()},
            **{name: intermediate(str(path)) for name, path in products(True).items()}}


def session_outputs(step):
    """The outputs of a per-session step: its products with {subject} and {session} left open."""
    return declared(lambda kind: products_of(step, OUT, "{subject}", "{session}",
                                             intermediate=kind))


# ---- one rule per subject layout -----------------------------------------------------------
# A subject-level step writes files for each session and each interval of its subject, and a
# Snakemake rule declares the same outputs for all its jobs. So each such step has one rule per
# layout (the sessions and intervals subjects have: pipeline.bids Discovery.layouts), all running
# the same command: the most common layout's rule has the step's name (`register`), another one
# the step's and its sessions' (`register_baseline_m12`). Each subject matches just one of them,
# as the first one's `subject` pattern leaves out the others' subjects, which theirs list.
# --groups, --set-threads and --set-resources given for a step apply to all its rules.
def _layouts():
    groups = list(DISCOVERY.layouts().items())
    others = [s for _, subjects in groups[1:] for s in subjects]
    layouts, names = [], {""}
    for k, ((sessions, intervals), subjects) in enumerate(groups):
        if k == 0:
            suffix = ""
            pattern = (f"(?!(?:{'|'.join(others)})(?![A-Za-z0-9]))[A-Za-z0-9]+" if others
                       else "[A-Za-z0-9]+")
        else:
            suffix = "_" + "_".join(sessions)
            suffix = suffix if suffix not in names else f"{suffix}_{k}"
            pattern = "|".join(subjects)
        names.add(suffix)
        layouts.append(SimpleNamespace(sessions=list(sessions), intervals=list(intervals),
                                       suffix=suffix, subject_pattern=pattern))
    return layouts


LAYOUTS = _layouts()


def layout_outputs(step, layout):
    """Every file ``step`` writes for a subject of ``layout``, ``{subject}`` left open."""
    return declared(lambda kind: step_products(step, OUT, "{subject}", layout.sessions,
                                               layout.intervals, intermediate=kind))


def stands_for(product):
    """A subject-level product as a rule input, standing for every file of the job that writes
    it: they are that job's declared outputs, so Snakemake reruns it when any one is missing.
    One input per producing job keeps the plan of a large cohort quick: declaring every file a
    job reads made the dry run of 1000 subjects take 95 s instead of 56 s."""
    return str(product_path(OUT, product, "{subject}"))


def qc_outputs(layout):
    """qc_figures' outputs: the registration and lesion figures also go into Snakemake's report."""
    figures = layout_outputs("qc", layout)
    for name, caption in (("registration_figure", "registration"), ("lesion_figure", "lesions")):
        figures[name] = report(figures[name], caption=f"../report/{caption}.rst",
                               category="Quality control", subcategory="{subject}")
    return figures


def step_group(step):
    """The group --groups gives a subject step's rules (None: ungrouped)."""
    return workflow.group_settings.overwrite_groups.get(step)


def _given(value):
    """A --set-threads/--set-resources value as a rule would declare it (Snakemake may hand it
    over parsed, as a Resource)."""
    return value.value if isinstance(value, snakemake.resources.Resource) else value


def step_threads(step, threads):
    """``threads:`` of a subject step: --set-threads for the step, else ``threads``."""
    return _given(workflow.resource_settings.overwrite_threads.get(step, threads))


def step_resources(step):
    """``resources:`` of a subject step: job_resources, then --set-resources for the step."""
    given = workflow.resource_settings.overwrite_resources.get(step, {})
    return {**job_resources(step), **{name: _given(v) for name, v in given.items()}}


# ---- input functions -----------------------------------------------------------------------
# Snakemake calls these for every job it plans and reads each function's signature twice per
# call (which arguments to pass): ~100,000 signature readings at 1000 subjects. A function
# marked @per_job has its signature read once, here, and handed to Snakemake the way its own
# path helpers (snakemake.ioutils) do. Per-subject values are computed once (_subject).
def per_job(func):
    overwrite = getattr(snakemake.common, "overwrite_function_params", None)
    if overwrite is not None:
        overwrite(func, inspect.signature(func).parameters)
    return func


@functools.cache
def _session_pattern(product):
    return str(product_path(OUT, product, "{subject}", "{session}"))


@functools.cache
def _subject(subject):
    """Everything the subject rules ask of discovery, computed once per subject."""
    sessions = DISCOVERY.sessions_of(subject)
    files = [f for s in sessions for f in DISCOVERY.files_of(subject, s)]
    masks = user_lesion_masks(SimpleNamespace(subject=subject))
    # the preprocess rule's output patterns, filled in (one path call per pattern, not per file)
    native = lambda product: [_session_pattern(product).format(subject=subject, session=s)  # noqa: E731
                              for s in sessions]
    return SimpleNamespace(
        sessions=" ".join(sessions),
        intervals=" ".join(DISCOVERY.intervals_of(subject)),
        months=" ".join(f"{s}={m:.4f}" for s, m in DISCOVERY.months_of(subject).items()),
        sources=" ".join(shlex.quote(f) for f in files + masks),
        t1w=native("t1w_n4"),
        flair=native("flair_n4"),
        mask=native("brain_mask"),
        xfm=native("flair_to_t1w"),
        user_masks=masks,
        image_mb=sum(_image_mb(f) for f in files),
    )


def sessions_of(wildcards):
    return DISCOVERY.sessions_of(wildcards.subject)


@per_job
def out_dir(wildcards):
    """The derivatives root: a step finds its inputs and names its outputs under it."""
    return str(OUT)


@per_job
def subject_sessions(wildcards):
    return _subject(wildcards.subject).sessions


@per_job
def subject_intervals(wildcards):
    return _subject(wildcards.subject).intervals


@per_job
def visit_months(wildcards):
    """``session=months`` of the subject's sessions: real visit times where sessions.tsv gives
    them (config visit_times), the nominal config months otherwise."""
    return _subject(wildcards.subject).months


@per_job
def raw_inputs(wildcards):
    """The session's raw images as discovery chose them (config inputs); with the phantom, the
    generator's participants.tsv stands for the whole tree it writes."""
    t1w, flair = DISCOVERY.files_of(wildcards.subject, wildcards.session)
    files = {"t1w": t1w, "flair": flair}
    if PHANTOM:
        files["phantom"] = str(BIDS / "participants.tsv")
    return files


@per_job
def register_inputs(wildcards):
    """Every needed session's preprocess outputs (N4 images, brain mask, FLAIR->T1w transform)."""
    sub = _subject(wildcards.subject)
    return {"t1w": sub.t1w, "flair": sub.flair, "mask": sub.mask, "xfm": sub.xfm}


@per_job
def segment_inputs(wildcards):
    """The native N4 images (segment reads their voxel sizes) and any user lesion masks."""
    sub = _subject(wildcards.subject)
    return {"native_t1w": sub.t1w, "native_flair": sub.flair, "user_masks": sub.user_masks}


@per_job
def user_mask_args(wildcards, input):
    """``--lesion-masks session=path ...`` when masks are user-supplied, else nothing."""
    if not input.user_masks:
        return ""
    return "--lesion-masks " + " ".join(f"{s}={m}" for s, m in zip(sessions_of(wildcards),
                                                                    input.user_masks))


@per_job
def subject_sources(wildcards):
    """The raw files a subject step derives from, shell-quoted for ``--sources``: every needed
    session's T1w and FLAIR (the fingerprint of a refusal; the derivatives' ``Sources``)."""
    return _subject(wildcards.subject).sources


# ---- what a job asks of a cluster (mem_mb, runtime in minutes) -----------------------------
# Measured per job at 1 mm whole head, one thread per step (benchmarks/subject_speed.py and
# the MNI152 test bed: a session's T1w + FLAIR are ~25 MB of .nii.gz, 180x220x190 voxels):
# peak resident memory preprocess ~600 MB, register ~630 MB, segment ~1070 MB (3 sessions),
# longitudinal ~460 MB; 5-30 s wall per job. qc_figures was not measured at 1 mm: taken as
# 600 MB, 10 s. About 250 MB of each peak is the interpreter and its libraries; the rest grows
# with the voxels the job reads, measured here by the size of its raw images against the 1 mm
# reference (a 0.5 mm scan, 8x the voxels, gets ~8x that part). A job asks 1.5x the scaled
# memory and 10x the scaled time, never less than at 1 mm (or 5 minutes): the phantoms' 1.5-2 mm
# scans get the 1 mm figures. Local runs ignore both unless --resources limits them.
STEP_COST = {  # step: (peak MB at 1 mm, seconds at 1 mm, sessions the figure is for)
    "preprocess": (600, 10, 1),
    "register": (630, 15, 3),
    "segment": (1070, 30, 3),
    "longitudinal": (460, 10, 3),
    "qc_figures": (600, 10, 3),
}
REFERENCE_SESSION_MB = 25.0  # T1w + FLAIR .nii.gz of one 1 mm whole-head session
BASE_MB = 250  # the interpreter and libraries, whatever the image size


@functools.cache
def _image_mb(path):
    """On-disk size of a raw image in MB (an uncompressed .nii counts half, as if gzipped);
    0 for a file not there yet (the phantom before it is generated). One stat per file a run."""
    try:
        size = os.stat(path).st_size / 1e6
    except OSError:
        return 0.0
    return size / 2 if str(path).endswith(".nii") else size


def _scale(step, wildcards):
    """The job's voxels against the 1 mm reference (>= 1)."""
    sessions = STEP_COST[step][2]
    if step == "preprocess":
        image_mb = sum(map(_image_mb, DISCOVERY.files_of(wildcards.subject, wildcards.session)))
    else:
        image_mb = _subject(wildcards.subject).image_mb
    return max(1.0, image_mb / (sessions * REFERENCE_SESSION_MB))


def job_resources(step):
    """``resources:`` of a heavy step: mem_mb and runtime (minutes) from its input size."""
    peak_mb, seconds, _ = STEP_COST[step]

    @per_job
    def mem_mb(wildcards):
        return math.ceil(1.5 * (BASE_MB + (peak_mb - BASE_MB) * _scale(step, wildcards)))

    @per_job
    def runtime(wildcards):
        return max(5, math.ceil(10 * seconds * _scale(step, wildcards) / 60))

    return {"mem_mb": mem_mb, "runtime": runtime}


def refusal_records():
    """Records of the standing refusals (the excluded table lists them)."""
    return [str(refusal_path(OUT, r.step, r.subject, r.session)) for r in REFUSALS]


def user_lesion_masks(wildcards):
    """The subject's user-supplied lesion masks, one per session in sessions_of order."""
    if config["segmentation"]["source"] != "masks":
        return []
    return [config["segmentation"]["mask_pattern"].format(
        bids_dir=BIDS, subject=wildcards.subject, session=s) for s in sessions_of(wildcards)]


def subject_endpoints():
    return [str(product_path(OUT, "endpoints", s)) for s in SUBJECTS]


def subject_figures():
    """Every QC figure of every subject, the report's inputs: the registration and lesion
    figures of all subjects, then each subject's new-lesion figure of each interval."""
    return ([str(product_path(OUT, f, s)) for s in SUBJECTS
             for f in ("registration_figure", "lesion_figure")]
            + [str(product_path(OUT, "new_figure", s, interval=pair)) for s in SUBJECTS
               for pair in DISCOVERY.interval_sessions_of(s)])


def final_targets():
    targets = [str(OUT / "endpoints.tsv"), str(OUT / "group_stats.tsv"), str(OUT / "report.html")]
    if PHANTOM:
        targets.append(str(OUT / "evaluation" / "scores.tsv"))
    return targets


# ---- the end of a run ------------------------------------------------------------------------

def input_files_used():
    """Every input file the run's outputs derive from (provenance checksums)."""
    files = [BIDS / "participants.tsv"]
    for sub in SUBJECTS:
        files.append(BIDS / f"sub-{sub}" / f"sub-{sub}_sessions.tsv")
        for ses in DISCOVERY.sessions_of(sub):
            files += DISCOVERY.files_of(sub, ses)
        if config["segmentation"]["source"] == "masks":
            files += user_lesion_masks(SimpleNamespace(subject=sub))
    return [f for f in map(Path, files) if f.is_file()]


def report_failed_run():
    """A failed run: keep older cohort tables from looking current, and say what was refused."""
    moved = move_stale_products(OUT, RUN_START)
    refused = [r for r in read_refusals(OUT)
               if refusal_path(OUT, r.step, r.subject, r.session).stat().st_mtime >= RUN_START]
    if refused:
        logger.error(f"{len(refused)} input(s) refused in this run (records in "
                     f"{OUT / 'logs' / 'refusals'}):\n{refusal_summary(refused)}")
    if moved:
        logger.error(f"The cohort tables were not rebuilt; the older ones were moved to "
                     f"{OUT / 'stale'} so they cannot be taken for current.")
    if refused:
        logger.error("Run the same command again to build the cohort tables without them (they "
                     "are listed in excluded.tsv and the report), or fix the files: a replaced "
                     "file is tried again" + ("; strict: true will stop instead"
                                              if not STRICT else ""))
