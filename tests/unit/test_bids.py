"""BIDS discovery: file names parsed by entities, the T1w/FLAIR chosen by filters and run rule,
visit times from sessions.tsv, sessions present, missing, incomplete or refused; intervals run or
skipped."""

from __future__ import annotations

import time
from datetime import date

import pytest

from pipeline.bids import DEFAULT_FILTERS, choose_file, discover, parse_intervals, parse_name
from pipeline.errors import InputError
from tests.workflow.skeleton import make_real_names_skeleton, make_skeleton

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


# ---- names as real datasets write them ---------------------------------------------------

@pytest.mark.parametrize(("name", "entities", "suffix", "ext"), [
    ("sub-01_ses-m06_acq-3D_FLAIR.nii.gz", {"acq": "3D"}, "FLAIR", ".nii.gz"),
    ("sub-01_ses-m06_run-1_T1w.nii.gz", {"run": "1"}, "T1w", ".nii.gz"),
    ("sub-01_ses-m06_acq-mprage_rec-norm_run-02_T1w.nii",
     {"acq": "mprage", "rec": "norm", "run": "02"}, "T1w", ".nii"),
    ("sub-01_ses-m06_ce-gadolinium_T1w.nii.gz", {"ce": "gadolinium"}, "T1w", ".nii.gz"),
    ("sub-01_ses-m06_acq-3D_part-mag_FLAIR.nii.gz", {"acq": "3D", "part": "mag"}, "FLAIR",
     ".nii.gz"),
    ("sub-01_ses-m06_T1w.json", {}, "T1w", ".json"),
])
def test_parse_name_reads_entities_in_spec_order(name, entities, suffix, ext):
    parsed = parse_name(name)
    assert parsed.entities == {"sub": "01", "ses": "m06", **entities}
    assert (parsed.suffix, parsed.extension) == (suffix, ext)


@pytest.mark.parametrize("name", [
    "sub-01_ses-m06_run-1_acq-3D_FLAIR.nii.gz",  # run before acq: out of order
    "sub-01_ses-m06_acq-3D_acq-2D_FLAIR.nii.gz",  # repeated entity
    "sub-01_ses-m06_foo-1_T1w.nii.gz",  # unknown entity
    "sub-01_ses-m06_run-a_T1w.nii.gz",  # run is an index
    "sub-01_ses-m06_acq-3_D_FLAIR.nii.gz",  # not key-value
    "ses-m06_sub-01_T1w.nii.gz",
    "sub-01_ses-m06_T1w",  # no extension
])
def test_parse_name_refuses_names_outside_the_spec(name):
    assert parse_name(name) is None


T1W = ["sub-01_ses-m06_run-1_T1w.nii.gz", "sub-01_ses-m06_run-02_T1w.nii.gz",
       "sub-01_ses-m06_ce-gadolinium_T1w.nii.gz"]


@pytest.mark.parametrize(("rule", "chosen"), [("last", "run-02"), ("first", "run-1")])
def test_several_runs_are_chosen_by_the_documented_rule(rule, chosen):
    choice = choose_file(T1W, "01", "m06", "T1w", DEFAULT_FILTERS["T1w"], rule)
    assert chosen in choice.chosen and not choice.refused
    assert f"{rule} of run-1, run-02" in choice.why
    # The contrast-enhanced scan is a candidate, left out by the default filter, and said so.
    assert len(choice.candidates) == 3
    assert "left out by inputs.T1w {ce: null}: sub-01_ses-m06_ce-gadolinium_T1w" in choice.why


def test_several_runs_refused_when_asked_and_chosen_by_a_run_filter():
    choice = choose_file(T1W, "01", "m06", "T1w", {"ce": None}, "refuse")
    assert choice.chosen is None and choice.refused
    assert "2 runs (run-1, run-02)" in choice.why and "multiple_runs" in choice.why
    assert "run-1_" in choose_file(T1W, "01", "m06", "T1w", {"ce": None, "run": 1}, "refuse").chosen


def test_contrast_enhanced_t1w_chosen_only_when_asked():
    choice = choose_file(T1W, "01", "m06", "T1w", {"ce": "gadolinium"})
    assert choice.chosen == "sub-01_ses-m06_ce-gadolinium_T1w.nii.gz"
    # Without the default filter, ce is what tells the candidates apart: refused, with the fix.
    choice = choose_file(T1W, "01", "m06", "T1w", {})
    assert choice.refused and "set inputs.T1w.ce to one of gadolinium or null" in choice.why


def test_candidates_differing_by_acquisition_are_refused_naming_the_filter():
    names = ["sub-01_ses-m06_acq-2D_FLAIR.nii.gz", "sub-01_ses-m06_acq-3D_FLAIR.nii"]
    choice = choose_file(names, "01", "m06", "FLAIR", {})
    assert choice.refused and choice.chosen is None
    assert all(n in choice.why for n in names)
    assert "set inputs.FLAIR.acq to one of 2D, 3D" in choice.why
    assert choose_file(names, "01", "m06", "FLAIR", {"acq": "3D"}).chosen == names[1]


def test_nothing_found_names_the_pattern_and_the_closest_files():
    names = ["sub-01_ses-m06_acq-2D_FLAIR.nii.gz", "sub-01_ses-m06_FLAIR.mgz",
             "sub-01_ses-m06_flair.nii.gz", "sub-01_ses-m06_run-1_acq-x_FLAIR.nii.gz",
             "sub-01_ses-m06_T1w.nii.gz"]
    choice = choose_file(names, "01", "m06", "FLAIR", {"acq": "3D"})
    assert choice.chosen is None and not choice.refused
    assert "looked for sub-01_ses-m06_FLAIR.nii.gz (or .nii" in choice.why
    for hint in ("acq-2D_FLAIR.nii.gz (left out by inputs.FLAIR {acq: 3D})",
                 "FLAIR.mgz (extension .mgz", "flair.nii.gz (suffix flair, BIDS spells it FLAIR)",
                 "run-1_acq-x_FLAIR.nii.gz (not a BIDS name"):
        assert hint in choice.why
    assert "T1w" not in choice.why


def test_discovery_of_real_names_records_files_choice_and_visit_times(tmp_path):
    bids = make_real_names_skeleton(tmp_path)
    found = discover(bids, MONTHS, INTERVALS, filters={"T1w": {"ce": None}, "FLAIR": {"acq": "3D"}},
                     visit_times={"column": "acq_time", "format": "datetime"})
    rows = found.sessions.set_index(["participant_id", "session"])
    base = rows.loc[("sub-01", "baseline")]
    assert base.status == "ok"
    assert base.t1w.endswith("sub-01_ses-baseline_acq-mprage_run-2_T1w.nii.gz")
    assert base.flair.endswith("sub-01_ses-baseline_acq-3D_FLAIR.nii")
    assert "ce-gadolinium" in base.t1w_candidates and "acq-2D" in base.flair_candidates
    assert "last of run-1, run-2" in base.choice and "left out by inputs.FLAIR" in base.choice
    assert rows.loc[("sub-01", "m06")].t1w.endswith("_rec-norm_run-02_T1w.nii")
    assert rows.loc[("sub-01", "m12")].flair.endswith("_acq-3D_part-mag_FLAIR.nii.gz")
    # sub-01: real months from acq_time (days / 30.4375 since baseline); sub-02: nominal.
    m06 = (date(2019, 9, 30) - date(2019, 3, 4)).days + 9.25 / 24
    m12 = (date(2020, 3, 16) - date(2019, 3, 4)).days
    assert found.months_of("01") == pytest.approx(
        {"baseline": 0.0, "m06": m06 / 30.4375, "m12": m12 / 30.4375})
    assert base.months_source == "sessions.tsv acq_time"
    assert found.months_of("02") == MONTHS
    assert rows.loc[("sub-02", "m06")].months_source == "nominal (no sessions.tsv)"
    intervals = found.intervals.set_index(["participant_id", "interval"]).months
    assert intervals[("sub-01", "m06-m12")] == pytest.approx((m12 - m06) / 30.4375)
    assert intervals[("sub-02", "m06-m12")] == 6.0
    assert found.files_of("01", "m06") == (rows.loc[("sub-01", "m06")].t1w,
                                          rows.loc[("sub-01", "m06")].flair)


def test_ambiguous_session_is_refused_and_its_intervals_skipped(tmp_path):
    bids = make_real_names_skeleton(tmp_path)
    found = discover(bids, MONTHS, INTERVALS)  # no FLAIR filter: 2D and 3D at baseline
    row = found.sessions.set_index(["participant_id", "session"]).loc[("sub-01", "baseline")]
    assert row.status == "refused" and "set inputs.FLAIR.acq to one of 2D, 3D" in row.reason
    assert found.intervals_of("01") == ["m06-m12"]


def test_visit_times_from_a_months_column_and_fallbacks(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "02": "TG", "03": "TG"})
    (bids / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tmonths\nses-baseline\t0.5\nses-m06\t7.0\nses-m12\t13.25\n")
    # A session without a time: the whole subject stays nominal, and says why.
    (bids / "sub-02" / "sub-02_sessions.tsv").write_text(
        "session_id\tmonths\nses-baseline\t0\nses-m06\tn/a\nses-m12\t12.5\n")
    (bids / "sub-03" / "sub-03_sessions.tsv").write_text("session_id\tmonths\nses-baseline\tsoon\n"
                                                        "ses-m06\t6\nses-m12\t12\n")
    vt = {"column": "months", "format": "months"}
    with pytest.raises(InputError, match=r"sub-03_sessions.tsv: months of ses-baseline is 'soon'"):
        discover(bids, MONTHS, INTERVALS, visit_times=vt)
    found = discover(bids, MONTHS, INTERVALS, subjects=["01", "02"], visit_times=vt)
    assert found.months_of("01") == {"baseline": 0.0, "m06": 6.5, "m12": 12.75}
    assert found.months_of("02") == MONTHS
    source = found.sessions.set_index(["participant_id", "session"]).months_source
    assert source[("sub-02", "m12")] == "nominal (sub-02_sessions.tsv gives no months for ses-m06)"
    # The acq_time default finds no such column here: nominal, with the reason.
    found = discover(bids, MONTHS, INTERVALS, subjects=["01"],
                     visit_times={"column": "acq_time", "format": "datetime"})
    assert found.sessions.months_source.iloc[0] == "nominal (sub-01_sessions.tsv has no column " \
        "acq_time)"


def test_visits_out_of_order_skip_the_interval(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG"})
    (bids / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tacq_time\nses-baseline\t2020-01-01\nses-m06\t2019-06-01\nses-m12\t2021-01-01\n")
    found = discover(bids, MONTHS, INTERVALS, visit_times={"column": "acq_time"})
    reasons = found.intervals.set_index("interval").reason
    assert "ses-m06 is not after ses-baseline" in reasons["baseline-m06"]
    assert found.intervals_of("01") == ["m06-m12", "baseline-m12"]


def test_discovery_of_1000_subjects_is_fast(tmp_path):
    bids = make_skeleton(tmp_path, {f"{i:04d}": "IDG" for i in range(1000)})
    for i in range(0, 1000, 2):
        (bids / f"sub-{i:04d}" / f"sub-{i:04d}_sessions.tsv").write_text(
            "session_id\tacq_time\nses-baseline\t2020-01-10\nses-m06\t2020-07-20\n"
            "ses-m12\t2021-01-05\n")
    start = time.perf_counter()
    found = discover(bids, MONTHS, INTERVALS, visit_times={"column": "acq_time"})
    seconds = time.perf_counter() - start
    assert len(found.subjects()) == 1000 and (found.sessions.status == "ok").all()
    assert seconds < 2.0, f"discovery of 1000 subjects x 3 sessions took {seconds:.2f} s"
