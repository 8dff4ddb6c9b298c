"""``python -m pipeline phantom``: write a synthetic BIDS cohort with ground truth.

Example::

    python -m pipeline phantom --preset ci --out work/ci-bids --preview

writes the BIDS dataset to ``work/ci-bids`` and its truth to ``work/ci-bids-truth``.
"""

from __future__ import annotations

import argparse

from pipeline.cli import run_command
from pipeline.phantom.cohort import DEFAULT_SEED, generate_cohort
from pipeline.phantom.config import ANATOMIES, PRESETS


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline phantom",
                                 description="Write a synthetic BIDS cohort (T1w, FLAIR at "
                                             "baseline, m06, m12) with ground truth.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="ci",
                    help="ci: 4 subjects at 2 mm (seconds); demo: 6 at 1.5 mm with 2-D FLAIR "
                         "and non-RAS storage; trial: 50 at 1 mm (the study design)")
    ap.add_argument("--out", required=True, help="BIDS raw dataset root to write")
    ap.add_argument("--truth-dir", default=None, help="truth root (default: <OUT>-truth)")
    ap.add_argument("--subjects", type=int, default=None, help="number of subjects")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"random seed (default {DEFAULT_SEED}); same seed, same bytes")
    ap.add_argument("--anatomy", choices=ANATOMIES, default=None,
                    help="analytic: the model head (default); mni152: real averaged anatomy "
                         "(MNI152 2009a, needs nilearn) with protocols and storage varied")
    ap.add_argument("--voxel-mm", type=float, default=None, help="T1w voxel size override (mm)")
    ap.add_argument("--skull-stripped", action="store_true",
                    help="zero the images outside the truth brain mask")
    ap.add_argument("--rescan", action="store_true",
                    help="no lesion change or atrophy: only position, noise and scaling differ")
    ap.add_argument("--preview", action="store_true",
                    help="write TRUTH/preview/sub-<ID>_preview.png montages")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {}
    if args.anatomy is not None:
        overrides["anatomy"] = args.anatomy
    if args.voxel_mm is not None:
        overrides["voxel_mm"] = args.voxel_mm
    if args.skull_stripped:
        overrides["skull_stripped"] = True
    if args.rescan:
        overrides["rescan"] = True
    return run_command("phantom", lambda: _write_cohort(args, overrides))


def _write_cohort(args: argparse.Namespace, overrides: dict) -> None:
    """The phantom command: the cohort written, with a summary of what was made."""
    summary = generate_cohort(args.out, args.truth_dir, preset=args.preset,
                              n_subjects=args.subjects, seed=args.seed,
                              preview=args.preview, **overrides)
    secs = summary["seconds_per_subject"]
    print(f"phantom: wrote {len(summary['participants'])} subjects to {summary['bids_dir']} "
          f"(truth: {summary['truth_dir']})")
    print(f"phantom: seconds per subject: mean {sum(secs) / len(secs):.1f}, max {max(secs):.1f}; "
          f"lesions per subject {summary['n_lesions']}")
    if summary["kind_class_mismatches"]:
        print(f"phantom: warning: {summary['kind_class_mismatches']} lesion-interval truth classes "
              "differ from the generated change (lesions too small for the voxel size?)")
    for path in summary["previews"]:
        print(path)
