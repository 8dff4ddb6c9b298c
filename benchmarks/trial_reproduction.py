"""Trial reproduction: the pipeline's arm comparison on a 50-subject phantom trial vs the same
statistics computed from the phantom's ground-truth endpoints.

    python benchmarks/trial_reproduction.py [--work DIR] [--subjects 50] [--cores 2]

Generates the `trial` preset (the 2016 study's design: 25 IDG, 25 TG, baseline/6/12 months, 1 mm),
runs the whole Snakemake workflow on it, then runs :func:`pipeline.stats.compare_arms` on
``truth_endpoints.tsv`` with the workflow's own configuration. For every endpoint x interval x
model both estimates and p-values are set side by side, with whether they agree in sign (of the
effect: ratio above or below 1, difference above or below 0) and in significance (p < 0.05 or
not). Writes benchmarks/trial_reproduction.tsv.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = 5150  # never used in development or tests (earlier run: 1605)
RATIO_MODELS = ("negbin", "negbin_adjusted", "poisson", "poisson_adjusted", "poisson_exact",
                "fisher_any")


def effect_sign(model: str, estimate: float) -> float:
    if not np.isfinite(estimate):
        return float("nan")
    centre = 1.0 if model in RATIO_MODELS else 0.0
    return float(np.sign(estimate - centre))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/rebound-trial"))
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "trial_reproduction.tsv")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    bids, out = args.work / "bids", args.work / "out"
    if not (bids / "participants.tsv").exists():
        subprocess.run([sys.executable, "-m", "pipeline", "phantom", "--preset", "trial",
                        "--subjects", str(args.subjects), "--seed", str(SEED), "--out",
                        str(bids)], env=env, check=True, cwd=REPO)
    t0 = time.perf_counter()
    with open(args.work / "snakemake.log", "w") as log:
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                        "--snakefile", str(REPO / "workflow" / "Snakefile"), "--config",
                        f"bids_dir={bids}", f"out_dir={out}"], env=env, check=True, cwd=REPO,
                       stdout=log, stderr=subprocess.STDOUT)
    wall_s = time.perf_counter() - t0

    from pipeline.io import read_tsv
    from pipeline.stats import compare_arms

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    arms = config["arm"]["labels"]
    truth_endpoints = read_tsv(Path(f"{bids}-truth") / "truth_endpoints.tsv")
    truth, _ = compare_arms(truth_endpoints, config["arm"]["column"], arms,
                            config["sessions"], config["covariates"], config["relapse_columns"])
    pipe = read_tsv(out / "group_stats.tsv")
    keys = ["endpoint", "interval", "model"]
    both = pipe.merge(truth, on=keys, suffixes=("_pipeline", "_truth"), how="outer")
    rows = []
    for r in both.itertuples(index=False):
        d = r._asdict()
        sp = effect_sign(d["model"], d["estimate_pipeline"])
        st = effect_sign(d["model"], d["estimate_truth"])
        pp, pt = d["p_value_pipeline"], d["p_value_truth"]
        rows.append({
            "endpoint": d["endpoint"], "interval": d["interval"], "model": d["model"],
            f"mean_{arms[0]}_pipeline": d[f"mean_{arms[0]}_pipeline"],
            f"mean_{arms[0]}_truth": d[f"mean_{arms[0]}_truth"],
            f"mean_{arms[1]}_pipeline": d[f"mean_{arms[1]}_pipeline"],
            f"mean_{arms[1]}_truth": d[f"mean_{arms[1]}_truth"],
            "estimate_pipeline": d["estimate_pipeline"], "estimate_truth": d["estimate_truth"],
            "p_pipeline": pp, "p_truth": pt,
            "same_sign": ("n/a" if math.isnan(sp) or math.isnan(st) else
                          "yes" if sp == st else "no"),
            "same_significance": ("n/a" if not (np.isfinite(pp) and np.isfinite(pt)) else
                                  "yes" if (pp < 0.05) == (pt < 0.05) else "no"),
        })
    table = pd.DataFrame(rows)
    decided = table[(table.same_sign != "n/a") & (table.same_significance != "n/a")]
    agree = ((decided.same_sign == "yes") & (decided.same_significance == "yes")).mean()
    with open(args.out, "w") as fh:
        fh.write(f"# python benchmarks/trial_reproduction.py --subjects {args.subjects} --cores "
                 f"{args.cores}  (trial preset, seed {SEED}; workflow wall time {wall_s:.0f} s; "
                 f"rows agreeing in sign and significance: {agree:.1%} of {len(decided)})\n")
        table.to_csv(fh, sep="\t", index=False, float_format="%.4g")
    print(table.to_string(index=False))
    print(f"agreement in sign and significance: {agree:.1%} of {len(decided)} rows; "
          f"workflow {wall_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
