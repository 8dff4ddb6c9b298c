"""Command-line entry points: ``python -m pipeline <command> [options]``.

Each command lives in the module that owns the science and exposes ``main(argv) -> int``;
this file only dispatches, importing lazily so that ``phantom`` does not pay for SimpleITK.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable

from pipeline.errors import InputError

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("pipeline.phantom.cli", "write a synthetic BIDS cohort with ground truth"),
    "evaluate": ("pipeline.phantom.evaluate", "score pipeline output against phantom ground truth"),
    "discover": ("pipeline.bids", "list subjects, sessions and runnable intervals of a BIDS dataset"),
    "settings": ("pipeline.settings", "validate parameter overrides and write them as JSON"),
    "validate": ("pipeline.checks", "check a BIDS session's T1w/FLAIR before any work"),
    "preprocess": ("pipeline.preprocess", "per session: checks, FLAIR->T1, brain mask, N4"),
    "register": ("pipeline.registration", "per subject: all sessions into one unbiased space"),
    "segment": ("pipeline.segment", "per session: T2/FLAIR lesion and T1-hypointense masks"),
    "longitudinal": ("pipeline.longitudinal", "per subject: lesion matching and interval endpoints"),
    "excluded": ("pipeline.outcome", "list what is missing from the cohort tables, and why"),
    "cohort": ("pipeline.cohort", "join subject endpoints with participants.tsv"),
    "stats": ("pipeline.stats", "compare arms: NB/Poisson, rank tests, Fisher, linear models"),
    "qc": ("pipeline.qc", "per subject: registration and lesion QC figures"),
    "report": ("pipeline.report", "write the self-contained HTML report"),
}


def run_command(name: str, work: Callable[[], object],
                errors: tuple[type[BaseException], ...] = (InputError,)) -> int:
    """Run one command's ``work`` with the project's error handling and timing log.

    Returns the exit code: 0 when it ran; 1 when the input or configuration was refused, with
    the message (file, check, fix) on stderr after the command's name, never a traceback.
    Either way the time taken goes to stderr, so every job's log ends the same way.
    """
    start = time.perf_counter()
    try:
        work()
    except errors as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 0


def _usage() -> str:
    lines = ["usage: python -m pipeline <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'python -m pipeline <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
