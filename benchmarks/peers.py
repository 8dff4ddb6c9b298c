"""rebound-mri against its two nearest open peers, lesiontrack 0.2.0 and mscard 0.1.0.

Usage (writes benchmarks/peers.tsv; the command is recorded in its header)::

    .venv/bin/python benchmarks/peers.py --work /tmp/peerbench [--peers-venv /tmp/peers]

Design: every tool gets the same lesion masks, so the comparison isolates registration,
lesion-tracking rules and speed.

1. ``phantom``: a 4-subject cohort at 1 mm (``python -m pipeline phantom --preset trial
   --subjects 4 --seed 777``) with ground truth (per-session lesion label maps in each session's
   native T1w space, ``truth_endpoints.tsv``).
2. ``masks``: the truth label maps binarised (native T1w space of each session) stand in for
   "lesion masks from elsewhere": ``WORK/masks/sub-<s>_ses-<t>_mask.nii.gz``.
3. ``rebound-masks``: the Snakemake workflow in user-mask mode (``segmentation.source: masks``).
4. ``rebound-builtin``: the same workflow with its built-in segmentation (no masks given).
5. ``lesiontrack``: ``lesiontrack run`` per subject (manifest subject, session, time_years, t1,
   flair, mask; ``--threads 1``). It compares baseline with each follow-up; a follow-up
   component touching the baseline mask grown by one voxel is an ``adjacent_fragment``, never
   ``new``.
6. ``mscard``: ``mscard run --segmenter given --no-calibrate`` (its measure step: lesiontrack
   underneath, reported for baseline vs the last follow-up) then ``mscard calibrate`` (its
   self-grading on a synthetic follow-up of each baseline), per subject, ``--threads 1``.
   Its LST-AI segmenter needs a Docker daemon; whether one answers is recorded, it is not run.
7. ``score``: per tool and interval, counts against ``truth_endpoints.tsv``.

The peers run from their own virtualenv (``--peers-venv``) through subprocesses; rebound-mri does
not import them. Every heavy step runs alone on one core (``OMP_NUM_THREADS=1``, ITK/SimpleITK
threads 1, ``--threads 1``, ``snakemake --cores 1``). A step whose timing record exists under
WORK is not re-run (``--force`` re-runs the named steps), so the table can be rebuilt from a
finished WORK tree; timings are wall-clock and CPU seconds of that first run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import io  # noqa: E402
from pipeline.contract import COUNT_ENDPOINTS as COUNTS  # noqa: E402

#: The cohort: a seed used by no unit test, the trial preset (1 mm, baseline / m06 / m12).
PHANTOM_ARGS = ("--preset", "trial", "--subjects", "4", "--seed", "777")
#: Session label -> years since baseline (config/config.yaml ``sessions``, in months / 12).
SESSION_YEARS = {"baseline": 0.0, "m06": 0.5, "m12": 1.0}
INTERVALS = ("baseline-m06", "m06-m12", "baseline-m12")
STEPS = ("phantom", "masks", "rebound-masks", "rebound-builtin", "lesiontrack", "mscard", "score")

#: What each tool can do, from its documentation and source (lesiontrack/tracking.py,
#: mscard/measure.py, mscard/segment.py); the interval rows of the table show what was measured.
CAPABILITIES = {
    "rebound-mri": {
        "segments_lesions": "yes (built-in FLAIR/T1 segmentation)",
        "intervals": "every configured pair (baseline-m06, m06-m12, baseline-m12)",
        "t1hypo_class": "yes",
        "cohort_stats": "yes (NB/Poisson by arm with covariates, rank tests, linear models)",
    },
    "lesiontrack": {
        "segments_lesions": "no (masks from elsewhere)",
        "intervals": "baseline vs each follow-up",
        "t1hypo_class": "no",
        "cohort_stats": "no (cohort z-scores of SEL candidates only)",
    },
    "mscard": {
        "segments_lesions": "only through LST-AI in Docker",
        "intervals": "baseline vs last follow-up",
        "t1hypo_class": "no",
        "cohort_stats": "no (per-subject report and gallery)",
    },
}


# ---------------------------------------------------------------------------------------------
# running and timing


def _env(extra_path: Path | None = None) -> dict[str, str]:
    """One thread everywhere: BLAS/OpenMP, ITK (SimpleITK and greedy read the ITK variable)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    if extra_path is not None:
        env["PATH"] = f"{extra_path}{os.pathsep}{env.get('PATH', '')}"
    # The peers' interpreter must not see this repository's packages, nor ours theirs.
    env.pop("PYTHONPATH", None)
    return env


def timed(cmd: list[str], log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` to completion, output to ``log``; return wall and child CPU seconds and rc.

    CPU seconds (user + system of the child and its descendants) are less sensitive than wall
    seconds to other jobs on a shared host.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            check=False).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": shlex.join(cmd), "returncode": rc, "wall_seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2), "log": str(log)}


def _last_error(log: Path, n: int = 3) -> str:
    """The last non-empty lines of a log: the exact error a failed tool printed."""
    lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines()
             if ln.strip() and not ln.startswith("$ ")]  # not the command line written by timed
    return " | ".join(lines[-n:])


def _done(record: Path, force: bool) -> bool:
    return record.exists() and not force


def _fresh(folder: Path) -> None:
    """Remove a tool's earlier output: lesiontrack reuses a cached registration (keyed on its
    parameters, not its inputs), Snakemake skips finished jobs, and either would fake a timing."""
    if folder.exists():
        shutil.rmtree(folder)


# ---------------------------------------------------------------------------------------------
# steps 1-2: cohort and masks


def subjects_sessions(truth: Path) -> list[tuple[str, str, Path]]:
    """(subject label, session label, truth label map) for every truth session, sorted."""
    rows = []
    for f in sorted(truth.glob("sub-*/ses-*/anat/*_desc-truth_dseg.nii.gz")):
        rows.append((f.parts[-4][len("sub-"):], f.parts[-3][len("ses-"):], f))
    if not rows:
        raise SystemExit(f"{truth}: no sub-*/ses-*/anat/*_desc-truth_dseg.nii.gz; run the "
                         "phantom step first")
    return rows


def step_phantom(work: Path, force: bool) -> None:
    if _done(work / "bids-truth" / "truth_endpoints.tsv", force):
        return
    rec = timed([sys.executable, "-m", "pipeline", "phantom", *PHANTOM_ARGS,
                 "--out", str(work / "bids")], work / "logs" / "phantom.log", cwd=ROOT,
                env=_env())
    if rec["returncode"]:
        raise SystemExit(f"phantom failed: {_last_error(Path(rec['log']))}")


def mask_path(work: Path, sub: str, ses: str) -> Path:
    return work / "masks" / f"sub-{sub}_ses-{ses}_mask.nii.gz"


def step_masks(work: Path, force: bool) -> None:
    """Binarise every truth label map in its own native T1w grid (affine kept)."""
    for sub, ses, f in subjects_sessions(work / "bids-truth"):
        out = mask_path(work, sub, ses)
        if _done(out, force):
            continue
        labels, affine, _ = io.load_nifti(f)
        io.save_nifti(out, (labels > 0).astype(np.uint8), affine)


# ---------------------------------------------------------------------------------------------
# steps 3-4: rebound-mri


def step_rebound(work: Path, force: bool, masks: bool) -> None:
    name = "rebound-masks" if masks else "rebound-builtin"
    out = work / name
    record = work / "timing" / f"{name}.json"
    if _done(record, force):
        return
    _fresh(out)
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", "1",
           "--config", f"bids_dir={work / 'bids'}", f"out_dir={out}"]
    if masks:
        pattern = str(work / "masks" / "sub-{subject}_ses-{session}_mask.nii.gz")
        cmd.append(f"segmentation={{source: masks, mask_pattern: '{pattern}'}}")
    code = code_version()
    rec = timed(cmd, work / "logs" / f"{name}.log", cwd=ROOT,
                env=_env(Path(sys.executable).parent))
    io.write_json(record, {**rec, **code})


def code_version() -> dict:
    """The commit the workflow ran from and the pipeline files that differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    changed = git("status", "--porcelain", "--", "pipeline", "workflow", "config")
    return {"git_commit": git("rev-parse", "HEAD"),
            "uncommitted": sorted(ln[3:] for ln in changed.splitlines())}


def rebound_seconds(out: Path) -> dict[str, dict[str, float]]:
    """Per subject: the summed Snakemake benchmark seconds (``s``) and ``cpu_time`` of its rules.

    Rules benchmarked per session (preprocess) and per subject (register, segment,
    longitudinal) are named ``benchmarks/<rule>/sub-<s>[_ses-<t>].tsv``.
    """
    per: dict[str, dict[str, float]] = {}
    for f in sorted((out / "benchmarks").glob("*/sub-*.tsv")):
        sub = f.name.split("_")[0].removesuffix(".tsv")
        b = io.read_tsv(f)
        d = per.setdefault(sub, {"seconds": 0.0, "cpu_seconds": 0.0})
        d["seconds"] += float(b["s"].iloc[-1])
        d["cpu_seconds"] += float(b["cpu_time"].iloc[-1])
    return per


def rebound_counts(out: Path) -> pd.DataFrame:
    """endpoints.tsv rows (participant_id, interval, counts, T2-LV change)."""
    ep = io.read_tsv(out / "endpoints.tsv")
    return ep[["participant_id", "interval", *COUNTS, "t2lv_change_ml"]]


# ---------------------------------------------------------------------------------------------
# steps 5-6: the peers


def peer_manifest(work: Path, path: Path) -> None:
    """lesiontrack / mscard manifest: subject, session, time_years, t1, flair, mask."""
    rows = []
    for sub, ses, _ in subjects_sessions(work / "bids-truth"):
        anat = work / "bids" / f"sub-{sub}" / f"ses-{ses}" / "anat"
        rows.append({"subject": f"sub-{sub}", "session": ses, "time_years": SESSION_YEARS[ses],
                     "t1": str(anat / f"sub-{sub}_ses-{ses}_T1w.nii.gz"),
                     "flair": str(anat / f"sub-{sub}_ses-{ses}_FLAIR.nii.gz"),
                     "mask": str(mask_path(work, sub, ses))})
    io.write_tsv(path, pd.DataFrame(rows))


def _subjects(work: Path, only: list[str] | None = None) -> list[str]:
    """Participant ids of the cohort (``sub-<s>``), restricted to ``only`` when given."""
    subs = sorted({f"sub-{s}" for s, _, _ in subjects_sessions(work / "bids-truth")})
    if only:
        missing = sorted(set(only) - set(subs))
        if missing:
            raise SystemExit(f"subjects {missing} are not in the cohort {subs}")
        subs = [s for s in subs if s in set(only)]
    return subs


def step_lesiontrack(work: Path, venv: Path, force: bool, only: list[str] | None) -> None:
    base = work / "lesiontrack"
    record = work / "timing" / "lesiontrack.json"
    peer_manifest(work, base / "manifest.tsv")
    # The record grows one subject at a time, so an interrupted run keeps what it measured.
    runs = json.loads(record.read_text()) if record.exists() and not force else {}
    for sub in _subjects(work, only):
        if sub in runs:
            continue
        _fresh(base / "out" / sub)
        runs[sub] = timed([str(venv / "bin" / "python"), "-m", "lesiontrack.cli", "run",
                           str(base / "manifest.tsv"), "--out", str(base / "out"),
                           "--subject", sub, "--threads", "1"],
                          work / "logs" / "lesiontrack" / f"{sub}.log", env=_env())
        io.write_json(record, runs)


def step_mscard(work: Path, venv: Path, force: bool, only: list[str] | None) -> None:
    base = work / "mscard"
    record = work / "timing" / "mscard.json"
    peer_manifest(work, base / "manifest.tsv")
    rec = json.loads(record.read_text()) if record.exists() and not force else {"runs": {}}
    runs: dict[str, dict] = rec["runs"]
    py = str(venv / "bin" / "python")
    # LST-AI (mscard's own segmenter) runs in Docker: record whether a daemon answers.
    try:
        res = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30,
                             check=False)
        rec["docker"] = {"returncode": res.returncode, "error": next(
            (ln.strip() for ln in (res.stdout + res.stderr).splitlines()
             if "Cannot connect" in ln or "error" in ln.lower()), "")}
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        rec["docker"] = {"returncode": None, "error": f"docker: {exc}"}
    io.write_json(record, rec)
    for sub in _subjects(work, only):
        common = [str(base / "manifest.tsv"), "--out", str(base / "out"), "--subject", sub,
                  "--threads", "1", "--segmenter", "given"]
        if sub not in runs:
            _fresh(base / "out" / sub)
        done = runs.setdefault(sub, {})
        for stage, cmd in (("measure", ["run", *common, "--no-calibrate"]),
                           ("calibrate", ["calibrate", *common])):
            if stage not in done:
                done[stage] = timed([py, "-m", "mscard.cli", *cmd],
                                    work / "logs" / "mscard" / f"{sub}_{stage}.log", env=_env())
                io.write_json(record, rec)


def lesiontrack_counts(out: Path, subjects: list[str]) -> pd.DataFrame:
    """Per subject and follow-up: groups classed ``new`` and ``enlarging``; T2-LV change.

    T2-LV change is the summed follow-up minus baseline group volume (the masks resliced into
    lesiontrack's halfway frame).
    """
    rows = []
    for sub in subjects:
        f = out / sub / "lesion_tracking.tsv"
        if not f.exists():
            continue
        t = pd.read_csv(f, sep="\t")
        for fu, g in t.groupby("follow_up", sort=True):
            rows.append({"participant_id": sub, "interval": f"baseline-{fu}",
                         "new_t2": int((g["class"] == "new").sum()),
                         "enlarging_t2": int((g["class"] == "enlarging").sum()),
                         "new_t1hypo": np.nan,
                         "t2lv_change_ml": (g["volume_followup_mm3"].sum()
                                            - g["volume_baseline_mm3"].sum()) / 1000.0})
    return pd.DataFrame(rows, columns=["participant_id", "interval", *COUNTS, "t2lv_change_ml"])


def mscard_counts(out: Path, subjects: list[str]) -> pd.DataFrame:
    """What mscard reports (measure/mscard.json): baseline vs its last follow-up only."""
    rows = []
    for sub in subjects:
        f = out / sub / "measure" / "mscard.json"
        if not f.exists():
            continue
        m = json.loads(f.read_text())
        les = m["lesions"]
        vol = {s["session"]: s["lesion_volume_mm3"] for s in m["scans"]}
        rows.append({"participant_id": sub, "interval": f"{m['baseline']}-{m['follow_up']}",
                     "new_t2": int(les["new"]), "enlarging_t2": int(les["enlarging"]),
                     "new_t1hypo": np.nan,
                     "t2lv_change_ml": (vol[m["follow_up"]] - vol[m["baseline"]]) / 1000.0})
    return pd.DataFrame(rows, columns=["participant_id", "interval", *COUNTS, "t2lv_change_ml"])


def mscard_lights(out: Path, subjects: list[str]) -> dict[str, dict]:
    """mscard's self-grade (traffic lights) per subject, from its calibration."""
    lights = {}
    for sub in subjects:
        f = out / sub / "calibration" / "grade.json"
        if f.exists():
            lights[sub] = json.loads(f.read_text()).get("lights", {})
    return lights


# ---------------------------------------------------------------------------------------------
# step 7: scoring


def score(truth: pd.DataFrame, measured: pd.DataFrame, interval: str) -> dict:
    """Count accuracy of one tool on one interval (or ``all`` it reports).

    Parameters
    ----------
    truth : truth_endpoints.tsv rows (participant_id, interval, new_t2, enlarging_t2,
        new_t1hypo, t2lv_change_ml)
    measured : the tool's rows, same columns; NaN where the tool has no such class
    interval : an interval label, or ``"all"`` for every interval the tool reported

    Returns
    -------
    dict with ``n_subject_intervals`` (truth rows the tool reported), per count
    ``<count>_exact_fraction`` (share of subject-intervals with the exact true count) and
    ``<count>_mae`` (mean absolute error, lesions), ``t2lv_change_ml_mae`` (mL); NaN where the
    tool lacks the interval or the class.
    """
    t = truth if interval == "all" else truth[truth["interval"] == interval]
    m = t.merge(measured, on=["participant_id", "interval"], suffixes=("_truth", ""),
                how="inner")
    rec: dict = {"n_subject_intervals": len(m)}
    for c in (*COUNTS, "t2lv_change_ml"):
        have = m[c].notna() if len(m) else pd.Series(dtype=bool)
        err = (m.loc[have, c] - m.loc[have, f"{c}_truth"]).abs()
        if c != "t2lv_change_ml":
            rec[f"{c}_exact_fraction"] = float((err == 0).mean()) if len(err) else np.nan
        rec[f"{c}_mae"] = float(err.mean()) if len(err) else np.nan
    return rec


def build_table(work: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The benchmark table (one row per tool x interval, plus ``all``), the per
    subject-interval counts of every run beside the truth, and a status note per run."""
    truth = io.read_tsv(work / "bids-truth" / "truth_endpoints.tsv")
    subjects = sorted(truth["participant_id"].unique())
    n_sub = len(subjects)
    tools: list[tuple[str, str, str, pd.DataFrame, dict]] = []
    notes: dict[str, str] = {}

    for name, seg in (("rebound-builtin", "built-in segmentation"),
                      ("rebound-masks", "truth masks (binarised)")):
        rec_f = work / "timing" / f"{name}.json"
        if not rec_f.exists():
            continue
        rec = json.loads(rec_f.read_text())
        out = work / name
        ok = rec["returncode"] == 0 and (out / "endpoints.tsv").exists()
        sec = rebound_seconds(out)
        timing = {
            "seconds_per_subject": np.mean([v["seconds"] for v in sec.values()]) if sec else np.nan,
            "cpu_seconds_per_subject": (np.mean([v["cpu_seconds"] for v in sec.values()])
                                        if sec else np.nan),
            "end_to_end_seconds_per_subject": rec["wall_seconds"] / n_sub,
        }
        counts = rebound_counts(out) if ok else pd.DataFrame(columns=["participant_id",
                                                                      "interval"])
        notes[name] = ("ok" if ok else f"FAILED rc={rec['returncode']}: "
                       f"{_last_error(Path(rec['log']))}")
        if rec.get("git_commit"):
            notes[name] += f"; code {rec['git_commit'][:7]}" + (
                " with uncommitted " + ",".join(rec["uncommitted"]) if rec.get("uncommitted")
                else "")
        tools.append(("rebound-mri", seg, name, counts, timing))

    lt = work / "timing" / "lesiontrack.json"
    if lt.exists():
        runs = json.loads(lt.read_text())
        counts = lesiontrack_counts(work / "lesiontrack" / "out", subjects)
        failed = {s: _last_error(Path(r["log"])) for s, r in runs.items() if r["returncode"]}
        notes["lesiontrack"] = ("ok" if not failed else "FAILED " + "; ".join(
            f"{s}: {e}" for s, e in failed.items()))
        ok_runs = [r for r in runs.values() if not r["returncode"]]
        timing = {"seconds_per_subject": np.mean([r["wall_seconds"] for r in ok_runs])
                  if ok_runs else np.nan,
                  "cpu_seconds_per_subject": np.mean([r["cpu_seconds"] for r in ok_runs])
                  if ok_runs else np.nan}
        timing["end_to_end_seconds_per_subject"] = timing["seconds_per_subject"]
        tools.append(("lesiontrack", "truth masks (binarised)", "lesiontrack", counts, timing))

    ms = work / "timing" / "mscard.json"
    if ms.exists():
        rec = json.loads(ms.read_text())
        runs = rec["runs"]
        counts = mscard_counts(work / "mscard" / "out", subjects)
        msgs = []
        for s, r in runs.items():
            for stage in ("measure", "calibrate"):
                if stage not in r:
                    msgs.append(f"{s} {stage}: not run")
                elif r[stage]["returncode"]:
                    msgs.append(f"{s} {stage}: {_last_error(Path(r[stage]['log']))}")
        docker = rec.get("docker", {"error": "", "returncode": "not checked"})
        msgs.append("LST-AI not run (needs Docker): " + (docker["error"] or
                                                        f"docker info rc={docker['returncode']}"))
        lights = mscard_lights(work / "mscard" / "out", subjects)
        if lights:
            msgs.append("self-grade " + "; ".join(
                f"{s}: " + ",".join(f"{k}={v}" for k, v in sorted(li.items()))
                for s, li in sorted(lights.items())))
        notes["mscard"] = " | ".join(msgs)
        meas = [r["measure"] for r in runs.values()
                if "measure" in r and not r["measure"]["returncode"]]
        both = [r for r in runs.values() if all(
            stage in r and not r[stage]["returncode"] for stage in ("measure", "calibrate"))]
        timing = {
            "seconds_per_subject": np.mean([m["wall_seconds"] for m in meas]) if meas else np.nan,
            "cpu_seconds_per_subject": np.mean([m["cpu_seconds"] for m in meas])
            if meas else np.nan,
            # measure + calibrate: what `mscard run` does by default
            "end_to_end_seconds_per_subject": np.mean(
                [r["measure"]["wall_seconds"] + r["calibrate"]["wall_seconds"] for r in both])
            if both else np.nan,
        }
        tools.append(("mscard", "truth masks (binarised)", "mscard", counts, timing))

    rows, detail = [], []
    for tool, seg, key, counts, timing in tools:
        d = truth[["participant_id", "interval", *COUNTS, "t2lv_change_ml"]].merge(
            counts, on=["participant_id", "interval"], how="left", suffixes=("_truth", ""))
        d.insert(0, "run", key)
        detail.append(d)
        if tool == "rebound-mri":
            label, caps = "rebound-mri", CAPABILITIES["rebound-mri"]
        else:
            label, caps = {"lesiontrack": "lesiontrack 0.2.0", "mscard": "mscard 0.1.0"}[tool], \
                CAPABILITIES[tool]
        for interval in (*INTERVALS, "all"):
            rec = score(truth, counts, interval)
            rows.append({"tool": label, "lesion_masks": seg, "interval": interval, **rec,
                         **{k: round(float(v), 1) for k, v in timing.items()},
                         **caps, "status": notes[key]})
    return pd.DataFrame(rows), pd.concat(detail, ignore_index=True), notes


def write_table(path: Path, table: pd.DataFrame, command: str) -> None:
    """TSV with a header comment naming the command, the cohort and the host."""
    head = [
        "# rebound-mri vs lesiontrack 0.2.0 and mscard 0.1.0 on a 4-subject 1 mm phantom "
        "(trial preset, seed 777), same masks for all given-mask runs; counts vs ground truth.",
        f"# command: {command}",
        "# n/a: the tool has no such interval or class. seconds_per_subject: rebound-mri = "
        "summed Snakemake rule benchmarks per subject, peers = wall clock per subject "
        "(mscard: measure only); end_to_end adds the cohort stage (rebound-mri) or the "
        "calibration (mscard). One core, one thread.",
        f"# machine: {platform.machine()} python {platform.python_version()}; shared host, "
        "timings vary with load",
    ]
    with io.atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("\n".join(head) + "\n")
            table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format="%.3g",
                         lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="working directory (cohort, runs)")
    ap.add_argument("--peers-venv", type=Path, default=Path("/tmp/peers"),
                    help="virtualenv holding lesiontrack, mscard and picsl-greedy")
    ap.add_argument("--steps", default=",".join(STEPS),
                    help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--force", action="store_true", help="re-run the named steps")
    ap.add_argument("--mscard-subjects", default="",
                    help="comma-separated participant ids mscard runs on (default: all); its "
                         "measure and calibration each cost a lesiontrack run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "peers.tsv")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"unknown step(s) {unknown}; choose from {list(STEPS)}")
    only = [s.strip() for s in args.mscard_subjects.split(",") if s.strip()] or None
    for step in STEPS:  # fixed order whatever the order given
        if step not in steps:
            continue
        print(f"peers: {step}", flush=True)
        if step == "phantom":
            step_phantom(work, args.force)
        elif step == "masks":
            step_masks(work, args.force)
        elif step in ("rebound-masks", "rebound-builtin"):
            step_rebound(work, args.force, masks=step == "rebound-masks")
        elif step == "lesiontrack":
            step_lesiontrack(work, args.peers_venv, args.force, None)
        elif step == "mscard":
            step_mscard(work, args.peers_venv, args.force, only)
        elif step == "score":
            table, detail, _ = build_table(work)
            io.write_tsv(work / "per_subject_interval.tsv", detail)
            command = f".venv/bin/python benchmarks/peers.py --work {args.work}"
            if args.peers_venv != Path("/tmp/peers"):
                command += f" --peers-venv {args.peers_venv}"
            if only:
                command += f" --mscard-subjects {','.join(only)}"
            write_table(args.out, table, command)
            print(table[["tool", "lesion_masks", "interval", "n_subject_intervals",
                         "new_t2_exact_fraction", "new_t2_mae", "enlarging_t2_mae",
                         "new_t1hypo_mae", "seconds_per_subject"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
