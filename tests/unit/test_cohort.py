"""Cohort join: endpoints x participants.tsv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cohort import ENDPOINT_COLUMNS, cohort_files, join_cohort, main, read_participants
from pipeline.errors import InputError
from pipeline.io import read_tsv, write_tsv

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
