"""BIDS discovery: sessions present, missing or incomplete; intervals run or skipped."""

from __future__ import annotations

import pytest

from pipeline.bids import discover, parse_intervals
from pipeline.errors import InputError
from tests.workflow.skeleton import make_skeleton

MONTHS = {"baseline": 0.0, "m06": 6.0, "m12": 12.0}
INTERVALS = ["baseline-m06", "m06-m12", "baseline-m12"]


def test_complete_dataset_runs_every_interval(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "02": "TG"})
    found = discover(bids, MONTHS, INTERVALS)
    assert found.subjects() == ["01", "02"]
    assert (found.intervals.status == "run").all()
    assert found.sessions_of("01") == ["baseline", "m06", "m12"]
    assert list(found.intervals.months) == [6.0, 6.0, 12.0] * 2


def test_incomplete_session_skips_the_intervals_that_need_it(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG"}, missing=(("01", "m06", "FLAIR"),))
    found = discover(bids, MONTHS, INTERVALS)
    row = found.sessions.set_index("session").loc["m06"]
    assert row.status == "incomplete" and "sub-01_ses-m06_FLAIR.nii.gz" in row.reason
    assert found.intervals_of("01") == ["baseline-m12"]
    assert found.sessions_of("01") == ["baseline", "m12"]
    skipped = found.intervals[found.intervals.status == "skipped"]
    assert set(skipped.interval) == {"baseline-m06", "m06-m12"}


def test_missing_session_folder_and_exclusion(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "02": "TG"})
    for f in (bids / "sub-02" / "ses-m12" / "anat").iterdir():
        f.unlink()
    (bids / "sub-02" / "ses-m12" / "anat").rmdir()
    (bids / "sub-02" / "ses-m12").rmdir()
    found = discover(bids, MONTHS, INTERVALS, exclude={"01": "motion"})
    assert found.subjects() == ["02"]
    assert found.intervals_of("02") == ["baseline-m06"]
    reasons = found.sessions.set_index(["participant_id", "session"]).reason
    assert reasons[("sub-01", "m06")] == "excluded in config: motion"
    assert reasons[("sub-02", "m12")] == "no ses-m12 folder"


def test_subject_restriction_names_unknown_subjects(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG"})
    assert discover(bids, MONTHS, INTERVALS, subjects=["sub-01"]).subjects() == ["01"]
    with pytest.raises(InputError, match=r"\['09'\]"):
        discover(bids, MONTHS, INTERVALS, subjects=["09"])


def test_not_a_bids_directory(tmp_path):
    with pytest.raises(InputError, match="BIDS directory not found"):
        discover(tmp_path / "nope", MONTHS, INTERVALS)
    with pytest.raises(InputError, match="no sub-<label> folders"):
        discover(tmp_path, MONTHS, INTERVALS)


@pytest.mark.parametrize(
    ("label", "message"),
    [("baseline_m06", "must be '<ses_start>-<ses_end>'"),
     ("baseline-m24", "names session 'm24'"),
     ("m12-baseline", "must go forward in time")],
)
def test_bad_intervals_are_refused(label, message):
    with pytest.raises(InputError, match=message):
        parse_intervals([label], MONTHS)
