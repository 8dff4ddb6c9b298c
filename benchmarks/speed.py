"""Speed of rebound-mri against its peers, in one run on one machine and the same subjects.

Measures, on `trial`-preset phantoms (1 mm, whole head, baseline / m06 / m12, T1w + FLAIR):

1. ``subject``: one subject from raw BIDS to its endpoints through the real Snakemake workflow
   (``snakemake --cores 1``, one thread everywhere), on both phantom families: ``mni152`` (real
   averaged anatomy, seed 6061) and ``analytic`` (seed 6062). Per step (every per-rule benchmark
   file the workflow writes for the subject under ``OUT/benchmarks/<rule>/``, whatever the rules
   are called): wall s, CPU s, peak RSS MB; the subject total (sum of wall, sum of CPU, max of
   RSS) and the workflow's own wall clock (including discovery and settings). Targets: <= 30 s
   wall on one core, <= 1536 MB peak per job.
2. ``peers``: lesiontrack 0.2.0 (``lesiontrack run --threads 1``) on the same MNI152 subjects,
   given the truth lesion masks binarised (it does not segment), manifest and masks built by
   ``benchmarks/peers.py``; wall, CPU s and peak RSS of the child (``os.wait4``).
3. ``registration``: greedy (picsl-greedy, rigid, ``-dof 6 -m NMI -n 100x50x10
   -ia-image-centers -threads 1``) of each follow-up raw T1w (m06, m12) to the baseline raw T1w,
   and this pipeline's registration on the same pairs: seconds per pair and mean / max
   displacement error over the truth brain against the phantom's true head poses (error metric and
   truth from ``benchmarks/registration_accuracy.py``). The pipeline's seconds per pair are its
   ``register`` rule (all sessions into one unbiased subject space, resampling included) divided
   by the number of follow-ups; its preprocessing (N4, brain mask) is not counted there, greedy
   reads the raw images. greedy runs as ``python -c 'Greedy3D().execute(...)'`` in the peers'
   environment (the wheel ships no executable), so its seconds include one interpreter start.
   Its matrix maps fixed (baseline) RAS mm to moving (follow-up) RAS mm; the first subject's
   baseline registered to itself checks that convention (error ~0).
4. ``headline``: lesiontrack wall per subject / pipeline subject total wall (target >= 15x) and
   greedy / pipeline seconds per registration pair, with both accuracies.
5. ``cohort``: the whole workflow (cohort statistics and report included) on cohorts of 4, 16
   and 50 MNI152 subjects (seed 6063), ``snakemake --cores 2``: wall and CPU s, and disk per
   subject (``du`` of ``OUT/sub-*`` and of the raw ``BIDS/sub-*``). Target: 50 subjects
   <= 15 min on 2 cores.

Usage (writes benchmarks/speed.tsv and benchmarks/speed.png)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py [--work /tmp/rebound-bench]
        [--subjects 1] [--cohorts 4 16 50 | --skip-cohorts] [--skip-peers]

Phantoms under ``--work`` are generated once and reused; every timed run starts from an empty
output folder. The peers live in their own virtualenv (``--peers-venv``, default /tmp/peers:
``python3 -m venv /tmp/peers && /tmp/peers/bin/pip install lesiontrack==0.2.0 picsl-greedy``)
and run as subprocesses; nothing of theirs is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402
from _tables import write_result_table  # noqa: E402
from registration_accuracy import _apply, _brain_points_ras, measure_subject  # noqa: E402
from subject_speed import run as run_child  # noqa: E402

from pipeline.paths import product_path, raw_image  # noqa: E402

SEEDS = {"mni152": 6061, "analytic": 6062, "cohort": 6063}
FAMILIES = ("mni152", "analytic")
FOLLOW_UPS = ("m06", "m12")
#: The workflow rule whose benchmark is the pipeline's registration time (all sessions of a
#: subject into its subject space).
REGISTER_RULE = "register"
TARGET_SUBJECT_S, TARGET_JOB_MB, TARGET_RATIO, TARGET_COHORT50_S = 30.0, 1536.0, 15.0, 900.0
GREEDY_ARGS = ("-d", "3", "-a", "-dof", "6", "-m", "NMI", "-n", "100x50x10",
               "-ia-image-centers", "-threads", "1")
#: greedy from the peers' environment: the picsl-greedy wheel has a module, no executable.
GREEDY_SHIM = ("import sys; from picsl_greedy import Greedy3D; "
               "Greedy3D().execute(' '.join(sys.argv[1:]))")
COLUMNS = ["section", "tool", "family", "item", "metric", "value", "target"]


def row(section: str, tool: str, family: str, item: str, metric: str, value: float,
        target: str = "") -> dict:
    return dict(zip(COLUMNS, (section, tool, family, item, metric, float(value), target)))


# ---------------------------------------------------------------------------------------------
# phantoms and workflow runs


def phantom(bids: Path, subjects: int, seed: int, anatomy: str) -> Path:
    """Generate the phantom at ``bids`` (truth at ``bids``-truth) unless it is already there."""
    if not (Path(f"{bids}-truth") / "truth_endpoints.tsv").exists():
        print(f"speed: phantom {anatomy} x{subjects} seed {seed} -> {bids}", flush=True)
        subprocess.run([sys.executable, "-m", "pipeline", "phantom", "--preset", "trial",
                        "--subjects", str(subjects), "--seed", str(seed), "--anatomy", anatomy,
                        "--out", str(bids)], cwd=ROOT, env=peers._env(), check=True,
                       stdout=subprocess.DEVNULL)
    return bids


def workflow(bids: Path, out: Path, cores: int, log: Path, targets: list[str],
             subjects: list[str] | None = None) -> dict:
    """The real workflow from an empty ``out`` (on ``subjects`` of ``bids`` when given); wall /
    CPU seconds of the Snakemake process."""
    peers._fresh(out)
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(cores),
           "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--config", f"bids_dir={bids}", f"out_dir={out}"]
    if subjects is not None:
        overlay = out.parent / f"{out.name}_subjects.yaml"
        overlay.write_text(json.dumps({"subjects": subjects}) + "\n")  # JSON is YAML
        cmd += ["--configfile", str(overlay)]
    rec = peers.timed(cmd, log, cwd=ROOT, env=peers._env(Path(sys.executable).parent))
    if rec["returncode"]:
        raise SystemExit(f"workflow failed ({log}): {peers._last_error(log)}")
    return rec


def subject_ids(bids: Path) -> list[str]:
    return sorted(p.name.removeprefix("sub-") for p in bids.glob("sub-*") if p.is_dir())


def rule_benchmarks(out: Path, sub: str) -> pd.DataFrame:
    """Every Snakemake benchmark file of one subject: step, wall_s, cpu_s, peak_rss_mb."""
    rows = []
    # In the order the jobs finished (the data flow on one core).
    for f in sorted((out / "benchmarks").glob(f"*/sub-{sub}*.tsv"),
                    key=lambda f: f.stat().st_mtime):
        name = f.name.removesuffix(".tsv")
        if name != f"sub-{sub}" and not name.startswith(f"sub-{sub}_"):
            continue
        ses = name.removeprefix(f"sub-{sub}").removeprefix("_ses-").removeprefix("_")
        b = pd.read_csv(f, sep="\t").iloc[-1]
        rows.append({"step": f"{f.parent.name} {ses}".strip(), "rule": f.parent.name,
                     "wall_s": float(b["s"]), "cpu_s": float(b["cpu_time"]),
                     "peak_rss_mb": float(b["max_rss"])})
    if not rows:
        raise SystemExit(f"{out / 'benchmarks'}: no benchmark file of sub-{sub}")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 1. one subject through the workflow


def measure_subjects(work: Path, family: str,
                     n: int) -> tuple[list[dict], dict[str, tuple[Path, pd.DataFrame]]]:
    """Table rows of ``n`` subjects of one family, each run alone on one core, and per subject
    the workflow output folder and its steps (for the registration)."""
    bids = phantom(work / family / "bids", n, SEEDS[family], family)
    rows, outs = [], {}
    for sub in subject_ids(bids):
        out = work / family / "runs" / f"sub-{sub}"
        target = str(product_path(out, "endpoints", sub))
        print(f"speed: workflow {family} sub-{sub} (1 core)", flush=True)
        rec = workflow(bids, out, 1, work / "logs" / f"workflow_{family}_sub-{sub}.log",
                       [target])
        steps = rule_benchmarks(out, sub)
        item = f"sub-{sub}"
        for s in steps.itertuples():
            rows += [row("subject", "rebound-mri", family, f"{item} {s.step}", "wall_s",
                         s.wall_s),
                     row("subject", "rebound-mri", family, f"{item} {s.step}", "cpu_s", s.cpu_s),
                     row("subject", "rebound-mri", family, f"{item} {s.step}", "peak_rss_mb",
                         s.peak_rss_mb, f"<= {TARGET_JOB_MB:.0f}")]
        total = f"{item} subject total"
        rows += [row("subject", "rebound-mri", family, total, "wall_s", steps.wall_s.sum(),
                     f"<= {TARGET_SUBJECT_S:.0f}"),
                 row("subject", "rebound-mri", family, total, "cpu_s", steps.cpu_s.sum()),
                 row("subject", "rebound-mri", family, total, "peak_rss_mb",
                     steps.peak_rss_mb.max(), f"<= {TARGET_JOB_MB:.0f}"),
                 row("subject", "rebound-mri", family, f"{item} workflow wall clock", "wall_s",
                     rec["wall_seconds"]),
                 row("subject", "rebound-mri", family, f"{item} workflow wall clock", "cpu_s",
                     rec["cpu_seconds"])]
        outs[sub] = (out, steps)
        print(f"  {len(steps)} steps: {steps.wall_s.sum():.1f} s wall, {steps.cpu_s.sum():.1f} s "
              f"CPU, peak {steps.peak_rss_mb.max():.0f} MB; workflow {rec['wall_seconds']:.1f} s",
              flush=True)
    return rows, outs


# ---------------------------------------------------------------------------------------------
# 2. lesiontrack


def measure_lesiontrack(work: Path, venv: Path) -> list[dict]:
    """lesiontrack on every MNI152 subject, truth masks binarised, manifest as peers.py."""
    base = work / "mni152"  # peers.py layout: bids, bids-truth, masks, lesiontrack
    peers.step_masks(base, force=False)
    manifest = base / "lesiontrack" / "manifest.tsv"
    peers.peer_manifest(base, manifest)
    rows = []
    for sub in peers._subjects(base):
        out = base / "lesiontrack" / "out"
        peers._fresh(out / sub)  # its cached registration would fake the time
        print(f"speed: lesiontrack {sub} (1 thread)", flush=True)
        wall, cpu, rss = run_child([str(venv / "bin" / "python"), "-m", "lesiontrack.cli", "run",
                                    str(manifest), "--out", str(out), "--subject", sub,
                                    "--threads", "1"], peers._env())
        rows += [row("peers", "lesiontrack 0.2.0", "mni152", sub, "wall_s", wall),
                 row("peers", "lesiontrack 0.2.0", "mni152", sub, "cpu_s", cpu),
                 row("peers", "lesiontrack 0.2.0", "mni152", sub, "peak_rss_mb", rss)]
        print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU, {rss:.0f} MB", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 3. registration: greedy and this pipeline on the same pairs


def greedy_matrix(venv: Path, fixed: Path, moving: Path, out: Path) -> tuple[np.ndarray, float,
                                                                             float]:
    """Rigid greedy of ``moving`` to ``fixed``: (RAS 4x4 fixed -> moving, wall s, CPU s)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    wall, cpu, _ = run_child([str(venv / "bin" / "python"), "-c", GREEDY_SHIM, *GREEDY_ARGS,
                              "-i", str(fixed), str(moving), "-o", str(out)], peers._env())
    return np.loadtxt(out), wall, cpu


def pose_error(truth: Path, sub: str, ses: str, estimate: np.ndarray) -> np.ndarray:
    """Distance (mm) between ``estimate`` (RAS baseline world -> ``ses`` world) and the true
    mapping, at every third truth brain voxel of the baseline."""
    poses = json.loads((truth / f"sub-{sub}" / f"sub-{sub}_transforms.json").read_text())
    w = {s: np.asarray(v["anat_to_world"]) for s, v in poses["sessions"].items()}
    pts = _brain_points_ras(truth, sub, "baseline")
    true = _apply(w[ses] @ np.linalg.inv(w["baseline"]), pts)
    return np.linalg.norm(_apply(estimate, pts) - true, axis=1)


def measure_registration(work: Path, family: str, outs: dict[str, tuple[Path, pd.DataFrame]],
                         venv: Path | None) -> list[dict]:
    """Seconds per pair and error of the pipeline's registration and of greedy (when ``venv``).

    The pipeline's seconds are those of its rule named ``REGISTER_RULE`` (NaN if there is none
    any more), shared among the follow-up pairs."""
    bids, truth = work / family / "bids", work / family / "bids-truth"
    rows = []
    for k, (sub, (out, steps)) in enumerate(outs.items()):
        acc = pd.DataFrame(measure_subject(out, truth, sub))
        acc = acc[(acc.kind == "t1_t1") & (acc.fixed == "baseline")]
        reg = steps[steps.rule == REGISTER_RULE]
        wall, cpu = (reg.wall_s.sum(), reg.cpu_s.sum()) if len(reg) else (np.nan, np.nan)
        for a in acc.itertuples():
            item = f"sub-{sub} baseline-{a.moving}"
            rows += [row("registration", "rebound-mri", family, item, "mean_error_mm",
                         a.mean_error_mm),
                     row("registration", "rebound-mri", family, item, "max_error_mm",
                         a.max_error_mm),
                     row("registration", "rebound-mri", family, item, "wall_s", wall / len(acc)),
                     row("registration", "rebound-mri", family, item, "cpu_s", cpu / len(acc))]
        if venv is None:
            continue
        t1 = {s: raw_image(bids, sub, s, "T1w") for s in ("baseline", *FOLLOW_UPS)}
        pairs = [*FOLLOW_UPS, "baseline"] if k == 0 else list(FOLLOW_UPS)  # + identity check
        for ses in pairs:
            print(f"speed: greedy {family} sub-{sub} {ses} -> baseline", flush=True)
            mat, g_wall, g_cpu = greedy_matrix(
                venv, t1["baseline"], t1[ses],
                work / family / "greedy" / f"sub-{sub}_from-{ses}_to-baseline.mat")
            err = pose_error(truth, sub, ses, mat)
            item = f"sub-{sub} baseline-{ses}" + (" (identity check)" if ses == "baseline"
                                                  else "")
            rows += [row("registration", "greedy", family, item, "mean_error_mm", err.mean()),
                     row("registration", "greedy", family, item, "max_error_mm", err.max()),
                     row("registration", "greedy", family, item, "wall_s", g_wall),
                     row("registration", "greedy", family, item, "cpu_s", g_cpu)]
            print(f"  {g_wall:.1f} s wall, {g_cpu:.1f} s CPU, error mean {err.mean():.3f} mm "
                  f"max {err.max():.3f} mm", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 5. cohorts


def disk_mb(folders: list[Path]) -> list[float]:
    """Disk used by each folder (``du -sk``), MB."""
    res = subprocess.run(["du", "-sk", *map(str, folders)], capture_output=True, text=True,
                         check=True)
    return [int(ln.split("\t")[0]) / 1024.0 for ln in res.stdout.splitlines()]


def measure_cohort(work: Path, n: int, largest: int) -> list[dict]:
    """The whole workflow on the first ``n`` subjects of one MNI152 cohort of ``largest`` on 2
    cores (one phantom serves every size); disk per subject."""
    bids = phantom(work / "cohort" / "bids", largest, SEEDS["cohort"], "mni152")
    chosen = subject_ids(bids)[:n]
    out = work / "cohort" / f"out-{n}"
    print(f"speed: workflow cohort of {n} (2 cores)", flush=True)
    rec = workflow(bids, out, 2, work / "logs" / f"workflow_cohort-{n}.log", [], chosen)
    item = f"{n} subjects"
    target = f"<= {TARGET_COHORT50_S:.0f}" if n == 50 else ""
    print(f"  {rec['wall_seconds']:.0f} s wall, {rec['cpu_seconds']:.0f} s CPU", flush=True)
    return [row("cohort", "rebound-mri", "mni152", item, "wall_s", rec["wall_seconds"], target),
            row("cohort", "rebound-mri", "mni152", item, "cpu_s", rec["cpu_seconds"]),
            row("cohort", "rebound-mri", "mni152", item, "wall_s_per_subject",
                rec["wall_seconds"] / n),
            row("cohort", "rebound-mri", "mni152", item, "out_mb_per_subject",
                np.mean(disk_mb(sorted(out.glob("sub-*"))))),
            row("cohort", "rebound-mri", "mni152", item, "raw_bids_mb_per_subject",
                np.mean(disk_mb([bids / f"sub-{sub}" for sub in chosen])))]


# ---------------------------------------------------------------------------------------------
# 4. headline ratios, summary, figure


def mean_of(t: pd.DataFrame, section: str, tool: str, metric: str, item_end: str = "",
            family: str = "mni152", exclude: str = "identity") -> float:
    sel = t[(t.section == section) & (t.tool == tool) & (t.family == family)
            & (t.metric == metric) & t["item"].str.endswith(item_end)
            & ~t["item"].str.contains(exclude)]
    return float(sel.value.mean()) if len(sel) else np.nan


def headline(t: pd.DataFrame) -> list[dict]:
    """Ratios of the peers' seconds to this pipeline's, on the MNI152 subjects."""
    ours = mean_of(t, "subject", "rebound-mri", "wall_s", "subject total")
    ours_cpu = mean_of(t, "subject", "rebound-mri", "cpu_s", "subject total")
    lt = mean_of(t, "peers", "lesiontrack 0.2.0", "wall_s")
    lt_cpu = mean_of(t, "peers", "lesiontrack 0.2.0", "cpu_s")
    reg = {tool: [mean_of(t, "registration", tool, m) for m in
                  ("wall_s", "cpu_s", "mean_error_mm", "max_error_mm")]
           for tool in ("rebound-mri", "greedy")}
    rows = [row("headline", "lesiontrack 0.2.0 / rebound-mri", "mni152", "per subject",
                "wall_ratio", lt / ours, f">= {TARGET_RATIO:.0f}"),
            row("headline", "lesiontrack 0.2.0 / rebound-mri", "mni152", "per subject",
                "cpu_ratio", lt_cpu / ours_cpu),
            row("headline", "greedy / rebound-mri", "mni152", "per registration pair",
                "wall_ratio", reg["greedy"][0] / reg["rebound-mri"][0]),
            row("headline", "greedy / rebound-mri", "mni152", "per registration pair",
                "cpu_ratio", reg["greedy"][1] / reg["rebound-mri"][1])]
    for tool, (_, _, mean_err, max_err) in reg.items():
        rows += [row("headline", tool, "mni152", "per registration pair", "mean_error_mm",
                     mean_err),
                 row("headline", tool, "mni152", "per registration pair", "max_error_mm",
                     max_err)]
    return rows


def summary_lines(t: pd.DataFrame, cores: int) -> list[str]:
    lines = [f"# machine: {platform.machine()} {os.cpu_count()} cores, python "
             f"{platform.python_version()}; shared host: 1-min load average at the end "
             f"{os.getloadavg()[0]:.1f}; one thread per job; seeds mni152 {SEEDS['mni152']}, "
             f"analytic {SEEDS['analytic']}, cohorts {SEEDS['cohort']}",
             f"# targets: subject total <= {TARGET_SUBJECT_S:.0f} s wall on one core, "
             f"<= {TARGET_JOB_MB:.0f} MB peak per job; lesiontrack / rebound-mri >= "
             f"{TARGET_RATIO:.0f}x; 50-subject cohort <= {TARGET_COHORT50_S / 60:.0f} min on "
             f"{cores} cores"]
    for fam in FAMILIES:
        w = mean_of(t, "subject", "rebound-mri", "wall_s", "subject total", fam)
        if np.isfinite(w):
            lines.append(
                f"# subject {fam}: {w:.1f} s wall, "
                f"{mean_of(t, 'subject', 'rebound-mri', 'cpu_s', 'subject total', fam):.1f} s "
                "CPU, peak "
                f"{mean_of(t, 'subject', 'rebound-mri', 'peak_rss_mb', 'subject total', fam):.0f}"
                " MB (workflow wall clock "
                f"{mean_of(t, 'subject', 'rebound-mri', 'wall_s', 'wall clock', fam):.1f} s)")
    h = t[t.section == "headline"].set_index(["tool", "metric"]).value
    if ("lesiontrack 0.2.0 / rebound-mri", "wall_ratio") in h.index:
        lines.append(f"# headline: lesiontrack / rebound-mri wall "
                     f"{h['lesiontrack 0.2.0 / rebound-mri', 'wall_ratio']:.1f}x (CPU "
                     f"{h['lesiontrack 0.2.0 / rebound-mri', 'cpu_ratio']:.1f}x); greedy / "
                     f"rebound-mri per registration pair wall "
                     f"{h['greedy / rebound-mri', 'wall_ratio']:.2f}x (CPU "
                     f"{h['greedy / rebound-mri', 'cpu_ratio']:.2f}x); mean error greedy "
                     f"{h['greedy', 'mean_error_mm']:.3f} mm, rebound-mri "
                     f"{h['rebound-mri', 'mean_error_mm']:.3f} mm")
    cohorts = t[t.section == "cohort"].pivot_table(index="item", columns="metric",
                                                   values="value", sort=False)
    for item, c in cohorts.iterrows():
        lines.append(f"# cohort {item}: {c.wall_s:.0f} s wall on {cores} cores "
                     f"({c.wall_s_per_subject:.1f} s per subject), CPU {c.cpu_s:.0f} s; disk per "
                     f"subject {c.out_mb_per_subject:.0f} MB derivatives, "
                     f"{c.raw_bids_mb_per_subject:.0f} MB raw BIDS")
    return lines


def plot(t: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 5))
    per_step = t[(t.section == "subject") & t.metric.isin(["wall_s", "cpu_s"])
                 & ~t["item"].str.contains("total|wall clock")]
    per_step = per_step.assign(step=per_step["item"].str.split(" ", n=1).str[1])
    for k, fam in enumerate(FAMILIES):
        s = per_step[per_step.family == fam].pivot_table(index="step", columns="metric",
                                                         values="value", sort=False)
        if s.empty:
            continue
        x = np.arange(len(s)) + (k - 0.5) * 0.4
        ax[0].bar(x, s["wall_s"], 0.4, color=f"C{k}", label=f"{fam} wall")
        ax[0].plot(x, s["cpu_s"], "k_", ms=14, mew=2, label="CPU" if k else None)
        ax[0].set_xticks(np.arange(len(s)), s.index, rotation=45, ha="right")
    ax[0].set(ylabel="s (one core)", title="rebound-mri per step, one subject")
    ax[0].legend()

    tools = [("rebound-mri\nsubject", "subject", "rebound-mri", "subject total"),
             ("lesiontrack\nsubject", "peers", "lesiontrack 0.2.0", ""),
             ("rebound-mri\nreg. pair", "registration", "rebound-mri", ""),
             ("greedy\nreg. pair", "registration", "greedy", "")]
    x = np.arange(len(tools))
    for k, metric in enumerate(("wall_s", "cpu_s")):
        ax[1].bar(x + (k - 0.5) * 0.4, [mean_of(t, sec, tool, metric, end)
                                        for _, sec, tool, end in tools], 0.4,
                  label=metric.replace("_s", " s"))
    ax[1].set_xticks(x, [n for n, *_ in tools])
    ax[1].set(ylabel="s", title="tools on the MNI152 subjects (one thread)", yscale="log")
    ax[1].legend()

    c = t[(t.section == "cohort") & (t.metric == "wall_s")]
    if len(c):
        n = c["item"].str.split().str[0].astype(int)
        ax[2].plot(n, c.value / 60, "o-")
        ax[2].axhline(TARGET_COHORT50_S / 60, ls="--", c="grey", label="target (50 subjects)")
        ax[2].legend()
    ax[2].set(xlabel="subjects", ylabel="wall min (2 cores)", title="whole workflow, cohorts",
              xlim=(0, None), ylim=(0, None))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/rebound-bench"))
    ap.add_argument("--peers-venv", type=Path, default=Path("/tmp/peers"))
    ap.add_argument("--subjects", type=int, default=1,
                    help="subjects per phantom family, each run alone on one core")
    ap.add_argument("--cohorts", type=int, nargs="+", default=[4, 16, 50],
                    help="cohort sizes run with --cores 2")
    ap.add_argument("--cores", type=int, default=2, help="cores of the cohort runs")
    ap.add_argument("--skip-cohorts", action="store_true")
    ap.add_argument("--skip-peers", action="store_true", help="no lesiontrack, no greedy")
    ap.add_argument("--out", type=Path, default=HERE / "speed.tsv")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    venv = None if args.skip_peers else args.peers_venv
    if venv is not None and not (venv / "bin" / "python").exists():
        raise SystemExit(f"{venv}: no peers' environment; python3 -m venv {venv} && "
                         f"{venv}/bin/pip install lesiontrack==0.2.0 picsl-greedy")

    rows: list[dict] = []
    for fam in FAMILIES:
        sub_rows, outs = measure_subjects(work, fam, args.subjects)
        rows += sub_rows
        rows += measure_registration(work, fam, outs, venv)
    if venv is not None:
        rows += measure_lesiontrack(work, venv)
    table = pd.DataFrame(rows, columns=COLUMNS)
    if venv is not None:
        table = pd.concat([table, pd.DataFrame(headline(table))], ignore_index=True)
    if not args.skip_cohorts:
        table = pd.concat([table, pd.DataFrame(
            [r for n in args.cohorts for r in measure_cohort(work, n, max(args.cohorts))])],
            ignore_index=True)
    write_result_table(args.out, table, "speed.py", argv,
                       f"trial preset, 1 mm, whole head; {args.subjects} subject(s) per family "
                       f"(mni152 seed {SEEDS['mni152']}, analytic seed {SEEDS['analytic']}); "
                       f"cohorts {'none' if args.skip_cohorts else args.cohorts} "
                       f"(mni152 seed {SEEDS['cohort']})", summary_lines(table, args.cores))
    plot(table, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
