"""BIDS discovery: file names parsed by entities, the T1w/FLAIR chosen by filters and run rule,
visit times from sessions.tsv, sessions present, missing, incomplete or refused; intervals run or
skipped; folders whose names are not BIDS labels skipped and noted, never an error."""

from __future__ import annotations

import re
import time
from datetime import date

import pytest

from pipeline.bids import (DEFAULT_FILTERS, NOTE_COLUMNS, NOTE_KINDS, choose_file, discover, main,
                           parse_intervals, parse_name, planned_discovery)
from pipeline.errors import InputError
from pipeline.io import read_tsv
from tests.workflow.skeleton import (add_entry, add_odd_names, make_real_names_skeleton,
                                     make_skeleton)

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


def test_layouts_group_subjects_by_the_files_their_steps_write(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "02": "TG", "03": "TG", "04": "IDG"},
                         missing=(("02", "m06", "FLAIR"), ("04", "m12", "T1w")))
    full = (("baseline", "m06", "m12"), (("baseline", "m06"), ("m06", "m12"),
                                        ("baseline", "m12")))
    assert discover(bids, MONTHS, INTERVALS).layouts() == {
        full: ["01", "03"],  # the most common layout first
        (("baseline", "m06"), (("baseline", "m06"),)): ["04"],  # ties: by their sessions
        (("baseline", "m12"), (("baseline", "m12"),)): ["02"]}


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


# ---- names that are not BIDS labels: skipped and noted -------------------------------------

NOT_A_LABEL = "not a BIDS label: only letters and digits may follow {}-; rename the folder or " \
              "move it out of the dataset"
SUBJECT_FOLDER = NOT_A_LABEL.format("sub")
SESSION_FOLDER = NOT_A_LABEL.format("ses")


@pytest.mark.parametrize(("name", "folder", "shown", "kind", "reason"), [
    ("sub-001_old", True, "sub-001_old", "skipped_folder", SUBJECT_FOLDER),
    ("sub-a b", True, "sub-a b", "skipped_folder", SUBJECT_FOLDER),
    ("sub-a;b", True, "sub-a;b", "skipped_folder", SUBJECT_FOLDER),
    ("sub-", True, "sub-", "skipped_folder", SUBJECT_FOLDER),
    ("sub-01.bak", True, "sub-01.bak", "skipped_folder", SUBJECT_FOLDER),
    ("sub-a\tb", True, "sub-a\\tb", "skipped_folder", SUBJECT_FOLDER),  # a tab, escaped
    (b"sub-caf\xe9", True, "sub-caf\\xe9", "skipped_folder", SUBJECT_FOLDER),  # not UTF-8
    ("sub-caf\u00e9", True, "sub-caf\u00e9", "skipped_folder", SUBJECT_FOLDER),  # UTF-8, not ASCII
    (".sub-03", True, ".sub-03", "skipped_folder", "hidden folder (its name starts with a dot)"),
    ("Sub-04", True, "Sub-04", "skipped_folder",
     "not a BIDS name: a subject folder is named sub-<label>, lower case with a hyphen"),
    ("sub_04", True, "sub_04", "skipped_folder", "not a BIDS name: a subject folder is named"),
    ("sub-02", False, "sub-02", "not_a_folder", "a file where a subject folder sub-<label>/ is "
     "expected; move it out of the dataset"),
])
def test_odd_subject_folder_is_skipped_with_its_reason(tmp_path, name, folder, shown, kind,
                                                       reason):
    bids = make_skeleton(tmp_path, {"01": "IDG", "05": "TG"})
    add_entry(bids, name, folder)
    found = discover(bids, MONTHS, INTERVALS)
    assert found.subjects() == ["01", "05"]
    assert (found.intervals.status == "run").all()
    assert list(found.notes.columns) == NOTE_COLUMNS
    assert len(found.notes) == 1, found.notes
    note = found.notes.iloc[0]
    assert note.path == str(bids / shown) and note.kind == kind and reason in note.reason
    assert note.participant_id is None and note.session is None
    assert found.note_lines() == [f"{kind} {bids / shown}: {note.reason}"]


@pytest.mark.parametrize(("name", "folder", "kind", "reason"), [
    ("ses-m06 (copy)", True, "skipped_folder", SESSION_FOLDER),
    ("ses-m06.bak", True, "skipped_folder", SESSION_FOLDER),
    (".ses-m06", True, "skipped_folder", "hidden folder"),
    ("ses-m24", True, "session_not_configured",
     "ses-m24 is not in config sessions (baseline, m06, m12), so not processed; to use it, add "
     "it to config sessions (m24: <months>) and to an interval"),
    ("ses-m12.zip", False, "not_a_folder", "a file where a session folder ses-<label>/ is"),
])
def test_odd_session_folder_is_skipped_with_its_reason(tmp_path, name, folder, kind, reason):
    bids = make_skeleton(tmp_path, {"01": "IDG", "05": "TG"})
    add_entry(bids / "sub-01", name, folder)
    found = discover(bids, MONTHS, INTERVALS)
    assert found.subjects() == ["01", "05"] and (found.intervals.status == "run").all()
    assert len(found.notes) == 1, found.notes
    note = found.notes.iloc[0]
    assert note.participant_id == "sub-01" and note.kind == kind and reason in note.reason
    assert note.path == str(bids / "sub-01" / name)
    assert note.session == ("m24" if kind == "session_not_configured" else None)


def test_a_session_folder_that_is_a_file_is_missing_and_noted(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "05": "TG"})
    ses = bids / "sub-01" / "ses-m12"
    for f in (ses / "anat").iterdir():
        f.unlink()
    (ses / "anat").rmdir()
    ses.rmdir()
    ses.touch()
    found = discover(bids, MONTHS, INTERVALS)
    reasons = found.sessions.set_index(["participant_id", "session"]).reason
    assert reasons[("sub-01", "m12")] == "no ses-m12 folder"
    assert found.intervals_of("01") == ["baseline-m06"]
    assert list(found.notes.kind) == ["not_a_folder"]


def test_participants_and_folders_are_compared_both_ways(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG", "05": "TG", "06": "TG"})
    (bids / "participants.tsv").write_text("participant_id\tarm\nsub-01\tIDG\n05\tTG\n"
                                           "sub-07\tIDG\nsub-08_old\tTG\n")
    found = discover(bids, MONTHS, INTERVALS)
    assert found.subjects() == ["01", "05", "06"]  # a missing row does not stop discovery
    notes = found.notes.set_index("participant_id")
    assert notes.kind.to_dict() == {"sub-06": "subject_not_in_participants",
                                    "sub-07": "participant_without_images",
                                    "sub-08_old": "participant_without_images"}
    assert notes.path["sub-07"] == str(bids / "sub-07")
    assert notes.reason["sub-07"] == ("listed in participants.tsv but the dataset has no sub-07/ "
                                      "folder; not processed")
    assert "sub-08_old is not a BIDS label" in notes.reason["sub-08_old"]
    assert "no row in" in notes.reason["sub-06"] and "cohort step will refuse" in \
        notes.reason["sub-06"]
    # Excluded or not asked for: no note about the row.
    found = discover(bids, MONTHS, INTERVALS, exclude={"06": "motion"})
    assert "subject_not_in_participants" not in set(found.notes.kind)
    found = discover(bids, MONTHS, INTERVALS, subjects=["01"])
    assert found.notes.empty and list(found.notes.columns) == NOTE_COLUMNS
    # No participants.tsv: nothing to compare.
    (bids / "participants.tsv").unlink()
    assert discover(bids, MONTHS, INTERVALS).notes.empty


def test_every_odd_name_together_sorted_and_labels_fit_the_wildcards(tmp_path, repo):
    bids = add_odd_names(make_skeleton(tmp_path, {"01": "IDG", "05": "TG"}))
    found = discover(bids, MONTHS, INTERVALS)
    assert found.subjects() == ["01", "05"]
    assert found.sessions_of("01") == ["baseline", "m06", "m12"]
    notes = found.notes
    assert set(notes.kind) <= set(NOTE_KINDS)
    assert notes.kind.value_counts().to_dict() == {"skipped_folder": 10, "not_a_folder": 2,
                                                   "session_not_configured": 1,
                                                   "participant_without_images": 1}
    key = [tuple(v or "" for v in row) for row in notes.itertuples(index=False)]
    assert key == sorted(key)
    assert notes.equals(discover(bids, MONTHS, INTERVALS).notes)
    # Only labels the workflow's wildcard constraints accept reach it.
    common = (repo / "workflow" / "rules" / "common.smk").read_text()
    block = common.split("wildcard_constraints:")[1].split("\n\n")[0]
    patterns = set(re.findall(r'="([^"]+)"', block))
    assert patterns == {"[A-Za-z0-9]+"}
    labels = found.subjects() + [s for sub in found.subjects() for s in found.sessions_of(sub)]
    assert all(re.fullmatch("[A-Za-z0-9]+", label) for label in labels)


def test_only_odd_folders_is_no_dataset_and_says_what_was_skipped(tmp_path):
    add_entry(tmp_path, "sub-001_old", True)
    add_entry(tmp_path, "sub-a b", True)
    with pytest.raises(InputError, match=r"no sub-<label> folders found \(skipped: sub-001_old, "
                                         r"sub-a b\)"):
        discover(tmp_path, MONTHS, INTERVALS)


def test_subjects_config_with_a_name_that_is_not_a_label(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG"})
    add_entry(bids, "sub-001_old", True)
    with pytest.raises(InputError, match=r"config 'subjects': \['001_old'\] are not BIDS labels"):
        discover(bids, MONTHS, INTERVALS, subjects=["01", "sub-001_old"])


@pytest.mark.parametrize(("content", "message"), [
    (b"participant_id\tarm\nsub-01\t\xff\xfe\n", "cannot be read as a tab-separated table"),
    (b"subject\tarm\nsub-01\tIDG\n", "no column 'participant_id'"),
    (None, "cannot be read as a tab-separated table"),  # a folder named participants.tsv
])
def test_unreadable_participants_tsv_is_an_input_error(tmp_path, content, message):
    bids = make_skeleton(tmp_path, {"01": "IDG"})
    (bids / "participants.tsv").unlink()
    if content is None:
        (bids / "participants.tsv").mkdir()
    else:
        (bids / "participants.tsv").write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"{bids / 'participants.tsv'}: ") + message):
        discover(bids, MONTHS, INTERVALS)


def test_undecodable_sessions_tsv_is_an_input_error(tmp_path):
    bids = make_skeleton(tmp_path, {"01": "IDG"})
    (bids / "sub-01" / "sub-01_sessions.tsv").write_bytes(b"session_id\tacq_time\n\xff\n")
    with pytest.raises(InputError, match="sub-01_sessions.tsv: cannot be read"):
        discover(bids, MONTHS, INTERVALS, visit_times={"column": "acq_time"})


def test_planned_discovery_has_an_empty_notes_table(tmp_path):
    found = planned_discovery(tmp_path, [("01", ["baseline", "m06", "m12"])], MONTHS, INTERVALS)
    assert found.notes.empty and list(found.notes.columns) == NOTE_COLUMNS
    assert found.note_lines() == []


def test_cli_writes_the_notes_table(tmp_path, capsys):
    bids = add_odd_names(make_skeleton(tmp_path / "bids", {"01": "IDG", "05": "TG"}))
    out = tmp_path / "discovery"
    assert main(["--bids", str(bids), "--sessions", "baseline=0", "m06=6", "m12=12",
                 "--intervals", *INTERVALS, "--sessions-out", str(out / "sessions.tsv"),
                 "--intervals-out", str(out / "intervals.tsv"),
                 "--notes-out", str(out / "notes.tsv")]) == 0
    table = read_tsv(out / "notes.tsv", dtype=str)
    assert list(table.columns) == NOTE_COLUMNS and len(table) == 14
    assert str(bids / "sub-caf\\xe9") in set(table.path)
    assert table.participant_id.isna().sum() == 10  # the root's odd names belong to nobody
    printed = capsys.readouterr().out
    assert f"participant_without_images {bids / 'sub-07'}: listed in participants.tsv" in printed
    # --notes-out is optional: callers that write only the two tables go on working.
    other = tmp_path / "other"
    assert main(["--bids", str(bids), "--sessions", "baseline=0", "m06=6", "m12=12",
                 "--intervals", *INTERVALS, "--sessions-out", str(other / "sessions.tsv"),
                 "--intervals-out", str(other / "intervals.tsv")]) == 0
    assert sorted(p.name for p in other.iterdir()) == ["intervals.tsv", "sessions.tsv"]
