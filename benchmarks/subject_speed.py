"""Where one subject's time goes: every per-subject command, split into the stages of the method.

Runs the per-subject commands the workflow runs (preprocess x3, register, segment,
longitudinal) on one `trial`-preset subject (3 sessions, T1w + FLAIR at 1 mm, whole head), each
as its own process with one thread, twice: a plain run gives its wall time, CPU seconds and peak
resident memory (the kernel's rusage of the child); a run under a CPU-time profiler splits it
into the stages of the method (read, input checks, brain mask, N4, registration, resampling,
segmentation, refinement, interval classification, write, and the rest: interpreter start-up,
imports, bookkeeping). The profile is what tells which stage to make faster; the workflow's own
per-rule timings are in ``speed.py``.

    python benchmarks/subject_speed.py [--anatomy analytic mni152] [--seed S] [--work DIR]

writes benchmarks/subject_speed_<anatomy>.tsv for each anatomy (default both). Seeds: 8080
(analytic), 4711 (mni152).
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import write_result_table  # noqa: E402

HERE = Path(__file__).resolve().parent
SESSIONS = ["baseline", "m06", "m12"]
INTERVALS = ["baseline-m06", "m06-m12", "baseline-m12"]
SEEDS = {"analytic": 8080, "mni152": 4711}

#: step -> (stage, function names whose cumulative CPU time is the stage); disjoint per step.
STAGES = {
    "preprocess": [("read + input checks", ["load_checked"]),
                   ("brain mask", ["brain_mask"]),
                   ("N4 bias correction (T1w, FLAIR)", ["n4_correct_image"]),
                   ("FLAIR to T1w", ["flair_to_t1"]),
                   ("write", ["save_intensity_image", "save_nifti", "write_sidecars"])],
    "register": [("read", ["_read_sessions"]),
                 ("rigid registration + subject grid", ["_subject_space_keeping_qc"]),
                 ("resample into subject space", ["resample_image"]),
                 ("write", ["save_intensity_image", "save_nifti", "write_sidecars"])],
    "segment": [("read", ["load_nifti"]),
                ("cross-sectional segmentation (per session)", ["segment_session"]),
                ("joint refinement across sessions", ["longitudinal_refinement"]),
                ("write", ["save_nifti", "write_tsv", "write_json", "write_sidecars"])],
    "longitudinal": [("read", ["load_nifti", "read_tsv"]),
                     ("interval classification", ["classify_interval"]),
                     ("write", ["save_nifti", "write_tsv"])],
}

#: Runs ``python -m pipeline ARGS`` under cProfile with a CPU-time clock; argv[1] is the
#: profile to write.
PROFILED = """
import cProfile, runpy, sys, time
profile_path, sys.argv = sys.argv[1], ["pipeline"] + sys.argv[2:]
profiler = cProfile.Profile(time.process_time)
code = 0
profiler.enable()
try:
    runpy.run_module("pipeline", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
profiler.disable()
profiler.dump_stats(profile_path)
sys.exit(code)
"""


def run(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds, peak RSS in MB) of that child alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def stage_seconds(profile: Path, stages: list[tuple[str, list[str]]]) -> dict[str, float]:
    """CPU seconds of each stage (cumulative time of its functions, outermost calls only)."""
    stats = pstats.Stats(str(profile)).stats
    out = {}
    for stage, names in stages:
        total = 0.0
        for (_, _, func), (_, _, _, cumulative, callers) in stats.items():
            # count a function once where it is entered from outside the stage's own functions
            if func in names and not any(c[2] in names for c in callers):
                total += cumulative
        out[stage] = total
    return out


def profiled(step_args: list[str], profile: Path) -> list[str]:
    return [sys.executable, "-c", PROFILED, str(profile), *step_args]


def subject_steps(bids: Path, out: Path, params: Path, sub: str) -> list[tuple[str, str, list]]:
    """(label, step, arguments) of every per-subject command, in the workflow's order."""
    common = ["--out", str(out), "--subject", sub, "--params", str(params)]
    steps = [(f"preprocess {s}", "preprocess", ["preprocess", "--bids", str(bids), "--session", s,
                                                *common]) for s in SESSIONS]
    steps.append(("register", "register", ["register", "--sessions", *SESSIONS, "--threads", "1",
                                           *common]))
    steps.append(("segment", "segment", ["segment", "--sessions", *SESSIONS, *common]))
    steps.append(("longitudinal", "longitudinal", ["longitudinal", "--sessions", *SESSIONS,
                                                   "--intervals", *INTERVALS, *common]))
    return steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anatomy", choices=sorted(SEEDS), nargs="+", default=sorted(SEEDS))
    ap.add_argument("--seed", type=int, default=None, help="default: SEEDS[anatomy]")
    ap.add_argument("--work", type=Path, default=None, help="default /tmp/rebound-profile-<anatomy>")
    ap.add_argument("--out", type=Path, default=None, help="default subject_speed_<anatomy>.tsv")
    args = ap.parse_args(argv)
    if len(args.anatomy) > 1 and (args.seed is not None or args.work or args.out):
        ap.error("--seed, --work and --out take one --anatomy")
    for anatomy in args.anatomy:
        profile_subject(anatomy, args.seed if args.seed is not None else SEEDS[anatomy],
                        args.work or Path(f"/tmp/rebound-profile-{anatomy}"),
                        args.out or HERE / f"subject_speed_{anatomy}.tsv", argv)
    return 0


def profile_subject(anatomy: str, seed: int, work: Path, out_tsv: Path,
                    argv: list[str] | None) -> None:
    """Time and profile every per-subject command on one phantom subject; write its table."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    py = [sys.executable, "-m", "pipeline"]
    bids, out, params = work / "bids", work / "out", work / "params.json"
    if not (bids / "participants.tsv").exists():
        subprocess.run(py + ["phantom", "--preset", "trial", "--subjects", "1", "--seed",
                             str(seed), "--anatomy", anatomy, "--out", str(bids)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(py + ["settings", "--json", "{}", "--out", str(params)], env=env, check=True)

    rows = []
    for label, step, step_args in subject_steps(bids, out, params, "001"):
        # the totals from a plain run; the stage split from a second, profiled run (the profiler
        # inflates Python-heavy parts, imports most, so its seconds add up to more)
        wall, cpu, rss = run([*py, *step_args], env)
        prof = work / f"{label.replace(' ', '_')}.prof"
        _, profiled_cpu, _ = run(profiled(step_args, prof), env)
        stages = stage_seconds(prof, STAGES[step])
        stages["other (start-up, imports, bookkeeping)"] = max(
            0.0, profiled_cpu - sum(stages.values()))
        for stage, secs in stages.items():
            rows.append({"step": label, "stage": stage, "profiled_cpu_s": secs})
        rows.append({"step": label, "stage": "step total", "wall_s": wall, "cpu_s": cpu,
                     "peak_rss_mb": rss, "profiled_cpu_s": profiled_cpu})
        print(f"{label:<20} {wall:6.1f} s wall {cpu:6.1f} s CPU {rss:7.0f} MB"
              f" ({profiled_cpu:.1f} CPU s profiled)", flush=True)
    table = pd.DataFrame(rows, columns=["step", "stage", "wall_s", "cpu_s", "peak_rss_mb",
                                        "profiled_cpu_s"])
    totals = table[table.stage == "step total"]
    by_stage = (table[table.stage != "step total"].groupby("stage", sort=False).profiled_cpu_s
                .sum().sort_values(ascending=False))
    summary = [f"# subject total: {totals.wall_s.sum():.1f} s wall, {totals.cpu_s.sum():.1f} s CPU,"
               f" peak {totals.peak_rss_mb.max():.0f} MB (target <= 30 s and <= 1536 MB on one"
               " core)",
               f"# CPU seconds by stage under the profiler (total {totals.profiled_cpu_s.sum():.1f};"
               " it inflates Python-heavy parts, imports most): " + "; ".join(
                   f"{k} {v:.1f}" for k, v in by_stage.items()),
               f"# machine: {platform.machine()}, {os.cpu_count()} cores, one thread per step,"
               f" load average {os.getloadavg()[0]:.1f} at the end"]
    write_result_table(out_tsv, table, "subject_speed.py", argv,
                       f"trial preset, 1 subject, anatomy {anatomy}, seed {seed}", summary)


if __name__ == "__main__":
    sys.exit(main())
