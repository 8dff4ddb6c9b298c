"""Workflow start-up at cohort scale: `snakemake -n` over skeleton datasets of N subjects.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dag_scale.py [--subjects 10 100 1000 5000]

Each dataset holds N subjects x 3 sessions of empty T1w and FLAIR files (discovery must not
open an image) and a participants.tsv. The dry run plans every job of the cohort (7 per subject:
3 preprocess, register, segment, longitudinal, qc_figures; 8 cohort-level jobs); its wall time,
CPU time and peak resident memory (the snakemake process, from getrusage of the child) are
written to benchmarks/dag_scale.tsv, with the time per subject so the cost of scale is visible.
The machine's load average is recorded too: on a shared machine the wall time follows it, the
CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._tables import write_result_table  # noqa: E402
from tests.workflow.skeleton import make_skeleton  # noqa: E402


def dry_run(n: int, work: Path) -> dict:
    bids, out = work / f"bids-{n}", work / f"out-{n}"
    make_skeleton(bids, {f"{i:05d}": ("IDG", "TG")[i % 2] for i in range(1, n + 1)})
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "2",
           "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--config", f"bids_dir={bids}", f"out_dir={out}"]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime - cpu_before
    if res.returncode != 0:
        raise SystemExit(f"dry run of {n} subjects failed:\n{res.stderr[-3000:]}")
    # Snakemake prints the job stats table twice (before and after the job list): take one.
    jobs = next(int(line.split()[-1]) for line in res.stdout.splitlines()
                if line.split()[:1] == ["total"])
    return {"subjects": n, "jobs": jobs, "dry_run_wall_s": round(wall, 2),
            "dry_run_cpu_s": round(cpu, 2), "wall_ms_per_subject": round(1000 * wall / n, 2),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            # ru_maxrss of children is the largest child so far: the runs go in increasing N
            "peak_rss_mb": round(max(peak_kib, before) / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, nargs="+", default=[10, 100, 1000, 5000])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "dag_scale.tsv")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rebound-dag-") as tmp:
        rows = [dry_run(n, Path(tmp)) for n in sorted(args.subjects)]
    table = pd.DataFrame(rows)
    big = table[table.subjects == 1000]
    summary = [f"# snakemake -n, 1000 subjects x 3 sessions: "
               f"{float(big.dry_run_wall_s.iloc[0]):.1f} s wall, "
               f"{float(big.dry_run_cpu_s.iloc[0]):.1f} s CPU (target <= 15 s; load average "
               f"{float(big.load_avg_1min.iloc[0]):.1f} on {os.cpu_count()} cores)" if len(big)
               else "# no 1000-subject run"]
    write_result_table(args.out, table, "dag_scale.py", argv, "skeleton BIDS, empty files",
                       summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
