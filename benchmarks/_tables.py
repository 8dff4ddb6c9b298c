"""Writing a benchmark's result table: the command that made it and the summary lines on top."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pandas as pd

from pipeline import io


def write_result_table(out: Path, table: pd.DataFrame, script: str, argv: list[str] | None,
                       context: str, summary: list[str]) -> None:
    """Write ``table`` to ``out`` under ``# command:``, ``# phantom: <context>`` and the
    ``summary`` lines (each starting with ``#``), then print the summary."""
    command = (f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/{script} "
               + shlex.join(argv if argv is not None else sys.argv[1:]))
    header = [f"# command: {command.strip()}", f"# phantom: {context}", *summary]
    io.write_tsv(out, table, float_format="%.4g", comments=header)
    print("\n".join(summary))
    print(f"wrote {out}")
