"""Parameter overrides: validated by name, round-tripped through JSON."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import InputError
from pipeline.params import LesionParams, RegistrationParams, override
from pipeline.settings import load_params, main, resolve


def test_defaults_and_overrides():
    params = resolve({"LesionParams": {"min_new_lesion_volume_mm3": 20.0}})
    assert params["LesionParams"].min_new_lesion_volume_mm3 == 20.0
    assert params["RegistrationParams"] == RegistrationParams()


def test_unknown_group_or_field_is_named():
    with pytest.raises(InputError, match="LesionParam"):
        resolve({"LesionParam": {}})
    with pytest.raises(InputError, match="min_volume"):
        resolve({"LesionParams": {"min_volume": 3}})


def test_nonsense_value_is_refused():
    with pytest.raises(InputError, match="min_new_lesion_volume_mm3"):
        override(LesionParams(), {"min_new_lesion_volume_mm3": -1.0})


def test_json_round_trip_keeps_tuples(tmp_path):
    out = tmp_path / "params.json"
    overrides = {"RegistrationParams": {"shrink_factors": [2, 1], "smoothing_sigmas_mm": [1, 0]}}
    assert main(["--json", json.dumps(overrides), "--out", str(out)]) == 0
    loaded = load_params(out)
    assert loaded["RegistrationParams"].shrink_factors == (2, 1)
    assert load_params(out) == loaded  # deterministic
    assert out.read_text() == out.read_text()


def test_cli_refuses_bad_override(tmp_path, capsys):
    # exit status 1 (the command's error line names the parameter), no file written
    assert main(["--json", '{"StatsParams": {"alpha": 2}}', "--out", str(tmp_path / "p.json")]) == 1
    assert "alpha" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
