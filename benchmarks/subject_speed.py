"""Wall time and peak memory of one subject (3 sessions, T1w + FLAIR at 1 mm) on one core.

Runs the same per-subject commands the workflow runs (preprocess x3, register, segment,
longitudinal), each as its own process with one thread, on a `trial`-preset phantom subject, and
records seconds and peak resident memory per step (from the kernel's rusage of each child).

    python benchmarks/subject_speed.py [--work DIR] [--seed S] [--subjects N]

writes benchmarks/subject_speed.tsv. Target: <= 60 s wall and <= 2 GB peak per subject.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SESSIONS = ["baseline", "m06", "m12"]
INTERVALS = ["baseline-m06", "m06-m12", "baseline-m12"]


def run(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds, peak RSS in MB) of that child alone.

    CPU seconds (user + system) are what one free core would need; wall time also counts any
    wait for a core that other processes hold.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0  # ru_maxrss is in kB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/rebound-speed"))
    ap.add_argument("--seed", type=int, default=8080)
    ap.add_argument("--subjects", type=int, default=2, help="subjects timed (each alone)")
    ap.add_argument("--out", type=Path, default=HERE / "subject_speed.tsv")
    args = ap.parse_args(argv)

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    py = [sys.executable, "-m", "pipeline"]
    bids, out = args.work / "bids", args.work / "out"
    if not (bids / "participants.tsv").exists():
        subprocess.run(py + ["phantom", "--preset", "trial", "--subjects", str(args.subjects),
                             "--seed", str(args.seed), "--out", str(bids)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    params = args.work / "params.json"
    subprocess.run(py + ["settings", "--json", "{}", "--out", str(params)], env=env, check=True)

    rows = []
    for i in range(1, args.subjects + 1):
        sub = f"{i:03d}"
        steps = [(f"preprocess {s}", py + ["preprocess", "--bids", str(bids), "--subject", sub,
                                           "--session", s, "--out", str(out), "--params",
                                           str(params)]) for s in SESSIONS]
        steps.append(("register", py + ["register", "--out", str(out), "--subject", sub,
                                        "--sessions", *SESSIONS, "--params", str(params),
                                        "--threads", "1"]))
        steps.append(("segment", py + ["segment", "--out", str(out), "--subject", sub,
                                       "--sessions", *SESSIONS, "--params", str(params)]))
        steps.append(("longitudinal", py + ["longitudinal", "--out", str(out), "--subject", sub,
                                            "--sessions", *SESSIONS, "--intervals", *INTERVALS,
                                            "--params", str(params)]))
        for name, cmd in steps:
            wall, cpu, rss = run(cmd, env)
            rows.append({"participant_id": f"sub-{sub}", "step": name, "wall_s": wall,
                         "cpu_s": cpu, "peak_rss_mb": rss})
            print(f"sub-{sub} {name:<18} {wall:6.1f} s wall {cpu:6.1f} s CPU {rss:7.0f} MB",
                  flush=True)
    steps = pd.DataFrame(rows)
    total = steps.groupby("participant_id").agg(wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                                peak_rss_mb=("peak_rss_mb", "max")).reset_index()
    total["step"] = "subject total"
    table = pd.concat([steps, total[steps.columns]], ignore_index=True)
    load = os.getloadavg()[0]
    header = (f"# python benchmarks/subject_speed.py --seed {args.seed} --subjects {args.subjects}"
              f"  ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread"
              f" per step, load average {load:.1f} at the end; target <= 60 s and <= 2048 MB per"
              " subject)\n")
    with open(args.out, "w") as fh:
        fh.write(header)
        table.to_csv(fh, sep="\t", index=False, float_format="%.1f")
    print(total.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
