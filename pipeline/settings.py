"""Parameter overrides shared by every command: one JSON file, validated once.

The workflow writes ``{"RegistrationParams": {...}, "LesionParams": {...}, ...}`` from its config;
each command loads the classes it needs with :func:`load_params`. Unknown classes or fields are
refused with a message naming them, so a typo in config.yaml fails before any work.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline import params as P
from pipeline.cli import run_command
from pipeline.errors import InputError
from pipeline.io import json_text, write_json, write_text

#: Every parameter class a config may override, by class name.
PARAM_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (P.InputCheckParams, P.BrainMaskParams, P.RegistrationParams,
                P.SegmentationParams, P.LesionParams, P.StatsParams)
}


def resolve(overrides: dict[str, dict[str, Any]] | None, source: str = "params") -> dict[str, Any]:
    """Build every parameter object with ``overrides`` applied.

    Parameters
    ----------
    overrides : mapping class name -> {field: value}
    source : where the overrides came from, for error messages (e.g. ``config.yaml: params``)

    Returns
    -------
    dict of class name -> frozen dataclass instance
    """
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(PARAM_CLASSES))
    if unknown:
        raise InputError(f"{source}: unknown parameter group(s) {unknown}; "
                         f"known groups are {sorted(PARAM_CLASSES)}")
    out = {}
    for name, cls in PARAM_CLASSES.items():
        values = dict(overrides.get(name) or {})
        # JSON has no tuples; the dataclasses use tuples for multi-level settings.
        defaults = cls()
        for key, value in values.items():
            if isinstance(value, list) and isinstance(getattr(defaults, key, None), tuple):
                values[key] = tuple(value)
        out[name] = P.override(defaults, values, owner=f"{source}: {name}")
    return out


def resolved_text(overrides: dict[str, dict[str, Any]] | None,
                  source: str = "config.yaml: params") -> str:
    """The parameter file's exact text: every class resolved, as ``settings`` writes it (its
    sha256 is the parameters' fingerprint in refusal records)."""
    resolved = resolve(overrides, source=source)
    return json_text({name: asdict(obj) for name, obj in resolved.items()})


def load_params(path: str | Path | None) -> dict[str, Any]:
    """Read a params JSON written by ``python -m pipeline settings`` (or None: all defaults)."""
    if path is None:
        return resolve({})
    path = Path(path)
    try:
        overrides = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: parameter file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); fix the file or regenerate it") from exc
    return resolve(overrides, source=str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline settings",
                                 description="Validate parameter overrides and write them as JSON.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--json", help="overrides: {class name: {field: value}}; written resolved")
    mode.add_argument("--record", help="any JSON (e.g. the workflow config), written as given")
    ap.add_argument("--out", required=True, type=Path, help="output JSON")
    args = ap.parse_args(argv)
    if args.record is not None:
        return run_command("settings", lambda: write_json(args.out, json.loads(args.record)),
                           errors=(json.JSONDecodeError,))
    return run_command("settings",
                       lambda: write_text(args.out, resolved_text(json.loads(args.json))),
                       errors=(InputError, json.JSONDecodeError))
