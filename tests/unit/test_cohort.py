"""Cohort join: endpoints x participants.tsv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cohort import (
    check_participants,
    cohort_files,
    join_cohort,
    main,
    read_participants,
)
from pipeline.contract import ENDPOINT_COLUMNS
from pipeline.errors import InputError
from pipeline.io import read_tsv, write_tsv
from pipeline.participants import column_types

INTERVALS = [("baseline", "m06"), ("m06", "m12"), ("baseline", "m12")]


def subject_endpoints(pid: str, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for a, b in INTERVALS:
        start = float(rng.uniform(1, 10))
        change = float(rng.normal(0, 1))
        months = {"baseline": 0.0, "m06": 6.2, "m12": 12.1}
        rows.append([pid, f"{a}-{b}", a, b, months[b] - months[a], int(rng.poisson(1)), int(rng.poisson(1)),
                     int(rng.poisson(1)), start, start + change, change, 100 * change / start])
    return pd.DataFrame(rows, columns=list(ENDPOINT_COLUMNS))


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(11)
    paths = []
    # Written in reverse order: the join must sort by participant_id regardless.
    for pid in ("sub-003", "sub-001", "sub-002"):
        path = tmp_path / pid / "anat" / f"{pid}_endpoints.tsv"
        write_tsv(path, subject_endpoints(pid, rng))
        paths.append(path)
    participants = pd.DataFrame({
        "participant_id": ["sub-001", "sub-002", "sub-003", "sub-004"],
        "arm": ["IDG", "TG", "IDG", "TG"],
        "washout_days": [30, 90, 180, 60],
        "next_dmt": ["fingolimod", "interferon", "n/a", "rituximab"],
    })
    ppath = tmp_path / "participants.tsv"
    participants.to_csv(ppath, sep="\t", index=False)
    return tmp_path, ppath, paths


def test_join_columns_and_order(files):
    tmp, ppath, paths = files
    out = cohort_files(ppath, paths, tmp / "endpoints.tsv", "arm", ["IDG", "TG"])
    table = read_tsv(out, dtype={"participant_id": str})
    assert list(table.columns) == list(ENDPOINT_COLUMNS) + ["arm", "washout_days", "next_dmt"]
    assert table["participant_id"].tolist() == [p for p in ("sub-001", "sub-002", "sub-003")
                                                for _ in INTERVALS]
    assert table["interval"].tolist()[:3] == ["baseline-m06", "m06-m12", "baseline-m12"]
    assert table.loc[table.participant_id == "sub-002", "arm"].unique().tolist() == ["TG"]
    assert table.loc[table.participant_id == "sub-003", "next_dmt"].isna().all()
    # sub-004 has no endpoints: not in the cohort table.
    assert "sub-004" not in set(table.participant_id)


def test_interval_order_and_determinism(files):
    tmp, ppath, paths = files
    order = ["baseline-m12", "baseline-m06", "m06-m12"]
    a = cohort_files(ppath, paths, tmp / "a.tsv", "arm", ["IDG", "TG"], interval_order=order)
    b = cohort_files(ppath, paths[::-1], tmp / "b.tsv", "arm", ["IDG", "TG"],
                     interval_order=order)
    assert a.read_bytes() == b.read_bytes()
    assert read_tsv(a)["interval"].tolist()[:3] == order


def test_missing_participant_row_is_refused(files):
    tmp, ppath, paths = files
    participants = read_participants(ppath, "arm")
    endpoints = pd.concat([read_tsv(p) for p in paths])
    with pytest.raises(InputError, match=r"participants\.tsv: no row for sub-002.*add the row"):
        join_cohort(endpoints, participants[participants.participant_id != "sub-002"], "arm",
                    ["IDG", "TG"], participants_path="participants.tsv")


@pytest.mark.parametrize("arm", ["XX", None])
def test_bad_arm_is_refused(files, arm):
    tmp, ppath, paths = files
    participants = read_participants(ppath, "arm")
    participants.loc[participants.participant_id == "sub-003", "arm"] = arm
    endpoints = pd.concat([read_tsv(p) for p in paths])
    with pytest.raises(InputError, match=r"sub-003 has arm=.*not one of \['IDG', 'TG'\].*arm "
                                         r"labels"):
        join_cohort(endpoints, participants, "arm", ["IDG", "TG"])


def test_missing_arm_column_names_file(files):
    tmp, ppath, paths = files
    with pytest.raises(InputError, match=r"participants\.tsv: no column 'group'"):
        read_participants(ppath, "group")


def test_bare_labels_and_numeric_arms(tmp_path):
    """participant_id without 'sub-' and arm labels that look like numbers still join."""
    rng = np.random.default_rng(3)
    path = tmp_path / "e.tsv"
    write_tsv(path, subject_endpoints("sub-007", rng))
    ppath = tmp_path / "participants.tsv"
    ppath.write_text("participant_id\tgroup\n007\t1\n")
    out = cohort_files(ppath, [path], tmp_path / "endpoints.tsv", "group", ["1", "2"])
    table = read_tsv(out, dtype={"group": str})
    assert table["group"].tolist() == ["1"] * 3


def test_wrong_endpoint_columns_refused(tmp_path, files):
    _, ppath, _ = files
    path = tmp_path / "bad.tsv"
    pd.DataFrame({"participant_id": ["sub-001"], "interval": ["baseline-m06"]}).to_csv(
        path, sep="\t", index=False)
    with pytest.raises(InputError, match="bad.tsv: columns"):
        cohort_files(ppath, [path], tmp_path / "o.tsv", "arm", ["IDG", "TG"])


def test_duplicate_rows_refused(files):
    tmp, ppath, paths = files
    with pytest.raises(InputError, match="appears 2 times"):
        cohort_files(ppath, [paths[0], paths[0]], tmp / "o.tsv", "arm", ["IDG", "TG"])


def test_cli_and_dataset_description(files, capsys):
    tmp, ppath, paths = files
    desc = tmp / "dataset_description.json"
    rc = main(["--participants", str(ppath), "--arm-column", "arm", "--arms", "IDG", "TG",
               "--out", str(tmp / "endpoints.tsv"), "--dataset-description", str(desc),
               *map(str, paths)])
    assert rc == 0
    meta = json.loads(desc.read_text())
    assert meta["DatasetType"] == "derivative"
    assert meta["GeneratedBy"][0]["Name"] == "rebound-mri"
    rc = main(["--participants", str(ppath), "--arms", "A", "B", "--out", str(tmp / "x.tsv"),
               *map(str, paths)])
    assert rc == 1
    assert "not one of ['A', 'B']" in capsys.readouterr().err


# --------------------------------------------------------------------------- typed participants

ARMS = ["IDG", "TG"]
COVARIATES = ["washout_days", "next_dmt"]
TYPES = {"washout_days": "numeric", "next_dmt": "categorical"}
RELAPSES = ["relapses_0_3m"]


def write_sheet(path, rows, header=("participant_id", "arm", "washout_days", "next_dmt",
                                     "relapses_0_3m")):
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def sheet(tmp_path, washout=("30", "", "n/a"), relapses=("0", "1", "2"), dmt=("1", "2", "n/a")):
    rows = [(f"sub-00{i + 1}", arm, w, d, r)
            for i, (arm, w, d, r) in enumerate(zip(["IDG", "TG", "IDG"], washout, dmt, relapses))]
    return write_sheet(tmp_path / "participants.tsv", rows)


def check(path, **kwargs):
    args = dict(arm_column="arm", arms=ARMS, covariates=COVARIATES, covariate_types=TYPES,
                relapse_columns=RELAPSES)
    return check_participants(path, **{**args, **kwargs})


def test_blank_and_na_cells_are_missing_numbers(tmp_path):
    table = check(sheet(tmp_path))
    assert table["washout_days"].dtype == np.float64
    assert table["washout_days"].iloc[0] == 30.0
    assert table["washout_days"].iloc[1:].isna().all()  # blank, n/a
    assert table["relapses_0_3m"].tolist() == [0, 1, 2]
    # Categorical labels stay text as written, even when they look like numbers.
    assert table["next_dmt"].iloc[:2].tolist() == ["1", "2"] and pd.isna(table["next_dmt"].iloc[2])


def test_text_in_a_numeric_covariate_is_refused_naming_participant_and_cell(tmp_path):
    path = sheet(tmp_path, washout=("30", "about ten weeks", "n/a"))
    with pytest.raises(InputError, match=r"participants\.tsv: sub-002 has "
                                         r"washout_days='about ten weeks', not a number; write "
                                         r"the number of days or n/a"):
        check(path)


@pytest.mark.parametrize("cell", ["NA", "NaN", "N/A", "inf"])
def test_other_missing_markers_and_non_finite_numbers_are_refused(tmp_path, cell):
    with pytest.raises(InputError, match=rf"sub-003 has washout_days='{cell}'.*write"):
        check(sheet(tmp_path, washout=("30", "n/a", cell)))


def test_na_marker_in_a_categorical_covariate_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"sub-001 has next_dmt='NA'; BIDS marks a missing "
                                         r"value n/a: write n/a"):
        check(sheet(tmp_path, dmt=("NA", "2", "n/a")))


@pytest.mark.parametrize("cell", ["1.5", "-1", "two"])
def test_relapse_count_must_be_a_non_negative_integer(tmp_path, cell):
    path = sheet(tmp_path, relapses=("0", cell, "1"))
    with pytest.raises(InputError, match=rf"sub-002 has relapses_0_3m='{cell}', not a count; "
                                         r"write a non-negative whole number"):
        check(path)
    assert check(sheet(tmp_path, relapses=("0", "2.0", "n/a")))["relapses_0_3m"].tolist()[:2] \
        == [0, 2]


def test_sidecar_levels_make_a_numeric_looking_covariate_categorical(tmp_path):
    path = sheet(tmp_path, washout=("30", "60", "90"))
    # Undeclared by the config: numeric by default, so "1"/"2" would be numbers.
    assert check(path, covariate_types={})["next_dmt"].dtype == np.float64
    (tmp_path / "participants.json").write_text(json.dumps({
        "next_dmt": {"Description": "next therapy", "Levels": {"1": "interferon",
                                                               "2": "fingolimod"}},
        "washout_days": {"Units": "day"}}))
    table = check(path, covariate_types={})
    assert table["next_dmt"].iloc[:2].tolist() == ["1", "2"]
    assert table["washout_days"].dtype == np.float64


def test_config_covariate_types_override_the_sidecar(tmp_path):
    path = sheet(tmp_path, washout=("30", "60", "90"))
    (tmp_path / "participants.json").write_text(json.dumps({"next_dmt": {"Units": "code"}}))
    assert check(path)["next_dmt"].iloc[:2].tolist() == ["1", "2"]  # config: categorical
    types, notes = column_types("arm", COVARIATES, TYPES, RELAPSES,
                                {"next_dmt": {"Units": "code"}})
    assert types["next_dmt"].kind == "categorical" and types["relapses_0_3m"].kind == "count"
    assert notes == [("next_dmt", "config covariate_types says categorical, participants.json "
                                  "says numeric (it gives Units): read as categorical, the "
                                  "config wins")]


def test_participant_checks_apply_to_the_sheet_alone(tmp_path):
    path = sheet(tmp_path)
    with pytest.raises(InputError, match=r"sub-001 has arm='IDG', not one of \['A', 'B'\]"):
        check(path, arms=["A", "B"])
    with pytest.raises(InputError, match=r"no row for sub-009"):
        check(path, subjects=["001", "009"])
    dup = write_sheet(tmp_path / "dup.tsv", [("001", "IDG", "1", "a", "0"),
                                             ("sub-001", "TG", "2", "b", "0")])
    with pytest.raises(InputError, match=r"dup\.tsv: participant\(s\) \['sub-001'\] listed "
                                         r"more than once"):
        check(dup)
    with pytest.raises(InputError, match=r"not valid JSON"):
        check(path, sidecar_path=write_sheet(tmp_path / "bad.json", [("{",)], header=("x",)))


def test_cli_types_participants_and_writes_missing_as_na(files, capsys):
    tmp, _, paths = files
    ppath = write_sheet(tmp / "typed.tsv", [("sub-001", "IDG", "", "1", "0"),
                                            ("sub-002", "TG", "n/a", "2", "3"),
                                            ("sub-003", "IDG", "180", "2", "n/a")])
    # Options taking several values come before one taking a single value (--out): argparse
    # would otherwise read the endpoint tables as more covariates.
    args = ["--participants", str(ppath), "--arms", "IDG", "TG", "--covariates", *COVARIATES,
            "--covariate-types", "washout_days=numeric", "next_dmt=categorical",
            "--relapse-columns", "relapses_0_3m=3", "--out", str(tmp / "endpoints.tsv"),
            *map(str, paths)]
    assert main(args) == 0
    table = read_tsv(tmp / "endpoints.tsv", dtype={"next_dmt": str})
    first = table.drop_duplicates("participant_id").set_index("participant_id")
    assert first["washout_days"].isna().tolist() == [True, True, False]
    assert first["next_dmt"].tolist() == ["1", "2", "2"]
    text = (tmp / "endpoints.tsv").read_text()
    assert "\t\t" not in text  # the blank cell is written as n/a
    bad = write_sheet(tmp / "bad.tsv", [("sub-001", "IDG", "about ten weeks", "1", "0")])
    assert main([*args[:1], str(bad), *args[2:]]) == 1
    assert "sub-001 has washout_days='about ten weeks'" in capsys.readouterr().err
