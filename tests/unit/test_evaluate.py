"""Evaluator: lesion matching on hand-built cases, count errors, and a perfect run on a phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.phantom.evaluate import (SCORE_COLUMNS, count_errors, detection_counts, evaluate,
                                       interval_targets, main, match_predictions,
                                       precision_recall_f1)
from pipeline.io import load_nifti, read_tsv, write_tsv
from pipeline.params import LesionParams
from pipeline.paths import bids_path
from pipeline.phantom import generate_cohort

# An LPS-stored 2 mm grid with an offset origin: matching must go through the affine.
AFFINE = np.array([[-2.0, 0, 0, 30.0], [0, -2.0, 0, 25.0], [0, 0, 2.0, -10.0], [0, 0, 0, 1]])


def _labels() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    lab = np.zeros((30, 30, 30), np.int16)
    centres = {1: (8, 8, 8), 2: (20, 20, 20), 3: (8, 22, 15), 4: (22, 8, 15)}
    for lid, c in centres.items():
        lab[c[0] - 2:c[0] + 3, c[1] - 2:c[1] + 3, c[2] - 2:c[2] + 3] = lid
    world = {lid: (AFFINE @ np.array([*c, 1.0]))[:3] for lid, c in centres.items()}
    return lab, world


def _score(points, targets, ignore=(), vols=None):
    lab, _ = _labels()
    out, matched = match_predictions(np.array(points).reshape(-1, 3), lab, AFFINE, targets, ignore)
    tvol = {t: 125 * 8.0 for t in targets}
    counts = detection_counts(out, matched, vols or [100.0] * len(out), tvol)
    row = counts[counts.size_bin == "all"].iloc[0]
    return out, int(row.tp), int(row.fp), int(row.fn), counts


def test_perfect_prediction_scores_f1_one():
    _, world = _labels()
    out, tp, fp, fn, _ = _score([world[1], world[2], world[3]], [1, 2, 3])
    assert (tp, fp, fn) == (3, 0, 0)
    assert precision_recall_f1(tp, fp, fn) == (1.0, 1.0, 1.0)


def test_missed_lesion_is_one_false_negative():
    _, world = _labels()
    _, tp, fp, fn, _ = _score([world[1], world[2]], [1, 2, 3])
    assert (tp, fp, fn) == (2, 0, 1)


def test_spurious_prediction_is_one_false_positive():
    _, world = _labels()
    empty = (AFFINE @ np.array([15.0, 3.0, 26.0, 1.0]))[:3]
    _, tp, fp, fn, _ = _score([world[1], empty], [1])
    assert (tp, fp, fn) == (1, 1, 0)


def test_hit_on_a_non_target_lesion_is_false_positive():
    _, world = _labels()
    _, tp, fp, fn, _ = _score([world[4]], [1])  # lesion 4 exists but is not new
    assert (tp, fp, fn) == (0, 1, 1)


def test_duplicate_hit_is_one_tp_and_one_fp():
    _, world = _labels()
    out, tp, fp, fn, _ = _score([world[2], world[2] + np.array([0.0, 0.0, 2.0])], [2])
    assert out == ["tp", "fp"] and (tp, fp, fn) == (1, 1, 0)


def test_one_voxel_tolerance_and_not_more():
    lab, _ = _labels()
    # Just outside lesion 1's box (index 11 is one voxel beyond its last voxel 10) is in reach.
    near = (AFFINE @ np.array([11.0, 8.0, 8.0, 1.0]))[:3]
    far = (AFFINE @ np.array([12.0, 8.0, 8.0, 1.0]))[:3]
    assert match_predictions(near[None], lab, AFFINE, [1])[0] == ["tp"]
    assert match_predictions(far[None], lab, AFFINE, [1])[0] == ["fp"]


def test_sub_threshold_truth_is_ignored_not_fp():
    _, world = _labels()
    out, tp, fp, fn, _ = _score([world[3]], [1], ignore=[3])
    assert out == ["ignored"] and (tp, fp, fn) == (0, 0, 1)


def test_size_bins_split_tp_fn_by_truth_and_fp_by_prediction():
    lab, world = _labels()
    out, matched = match_predictions(np.array([world[1], [0.0, 0.0, 60.0]]), lab, AFFINE,
                                     [1, 2])
    counts = detection_counts(out, matched, [999.0, 30.0], {1: 60.0, 2: 400.0}).set_index(
        "size_bin")
    assert counts.loc["50-200", "tp"] == 1 and counts.loc["200-inf", "fn"] == 1
    assert counts.loc["10-50", "fp"] == 1 and counts.loc["all"].tolist() == [1, 1, 1]


def test_undefined_scores_are_nan():
    p, r, f = precision_recall_f1(0, 0, 0)
    assert np.isnan(p) and np.isnan(r) and np.isnan(f)


def test_interval_targets_from_truth_table():
    table = pd.DataFrame({
        "lesion_id": [1, 2, 3, 4],
        "volume_mm3_baseline": [100.0, 0.0, 0.0, 50.0], "t1hypo_baseline": [0, 0, 0, 0],
        "volume_mm3_m06": [100.0, 80.0, 4.0, 50.0], "t1hypo_m06": [0, 1, 0, 1],
        "class_baseline-m06": ["stable", "new", "absent", "stable"],
        "new_t1hypo_baseline-m06": [0, 1, 0, 1],
    })
    t2, ign = interval_targets(table, "baseline-m06", "baseline", "m06", "t2")
    assert t2 == {2: 80.0} and ign == {3}
    hypo, _ = interval_targets(table, "baseline-m06", "baseline", "m06", "t1hypo")
    assert hypo == {2: 80.0, 4: 50.0}


def test_count_errors():
    truth = pd.DataFrame({"participant_id": ["sub-1", "sub-1", "sub-2"],
                          "interval": ["a-b", "b-c", "a-b"], "new_t2": [1, 0, 2],
                          "enlarging_t2": [0, 0, 1], "new_t1hypo": [0, 1, 0],
                          "t2lv_change_ml": [0.5, 0.0, 1.0]})
    pred = truth.copy()
    pred.loc[2, "new_t2"] = 4
    pred.loc[0, "t2lv_change_ml"] = 0.7
    per, rows = count_errors(pred, truth)
    assert list(per.new_t2_error) == [0.0, 0.0, 2.0]
    sel = rows.set_index(["metric", "interval", "kind"]).value
    assert sel[("count_bias", "all", "new_t2")] == pytest.approx(2 / 3)
    assert sel[("fraction_exact", "a-b", "new_t2")] == 0.5
    assert sel[("fraction_exact", "all", "new_t1hypo")] == 1.0
    assert sel[("t2lv_change_median_abs_error_ml", "all", "t2lv_change_ml")] == pytest.approx(0.0)
    assert sel[("t2lv_change_bias_ml", "all", "t2lv_change_ml")] == pytest.approx(0.2 / 3)
    assert "t2lv_end_ml" not in set(rows.kind)  # volumes absent from these tables: not scored
    truth["t2lv_end_ml"] = [2.0, 2.0, 3.0]
    pred["t2lv_end_ml"] = [2.5, 2.0, 3.0]
    _, rows = count_errors(pred, truth)
    sel = rows.set_index(["metric", "interval", "kind"]).value
    assert sel[("t2lv_bias_ml", "all", "t2lv_end_ml")] == pytest.approx(0.5 / 3)
    assert sel[("t2lv_median_abs_error_ml", "all", "t2lv_end_ml")] == 0.0


def _perfect_predictions(bids: Path, truth: Path, out: Path) -> None:
    """Write what a perfect pipeline would: truth endpoints and one row per truth change."""
    ep = read_tsv(truth / "truth_endpoints.tsv")
    write_tsv(out / "endpoints.tsv", ep)
    for pid, iv, a, b in ep[["participant_id", "interval", "ses_start",
                             "ses_end"]].itertuples(index=False):
        sub = pid.removeprefix("sub-")
        lab, aff, _ = load_nifti(bids_path(truth, sub, b, desc="truth", suffix="dseg"))
        table = read_tsv(truth / pid / f"{pid}_lesions.tsv")
        rows = []
        for r in table.to_dict("records"):
            ijk = np.argwhere(lab == r["lesion_id"])
            if len(ijk) == 0:
                continue
            # A voxel of the lesion nearest its centroid (the centroid of a curved lesion may
            # fall outside it).
            c = ijk[np.argmin(((ijk - ijk.mean(0)) ** 2).sum(1))]
            x, y, z = (aff @ np.array([*c, 1.0]))[:3]
            vol = r[f"volume_mm3_{b}"]
            rows.append({"kind": "t2", "class": r[f"class_{iv}"], "volume_end_mm3": vol,
                         "x_mm": x, "y_mm": y, "z_mm": z})
            if r[f"t1hypo_{b}"]:
                rows.append({"kind": "t1hypo", "class": "new" if r[f"new_t1hypo_{iv}"]
                             else "persistent", "volume_end_mm3": vol, "x_mm": x, "y_mm": y,
                             "z_mm": z})
        write_tsv(bids_path(out, sub, from_=a, to=b, suffix="lesions", ext=".tsv"),
                  pd.DataFrame(rows, columns=["kind", "class", "volume_end_mm3", "x_mm", "y_mm",
                                              "z_mm"]))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    s = generate_cohort(root / "bids", preset="ci", n_subjects=2, seed=5, non_ras_fraction=0.5,
                        new_t2_rate=((3.0, 3.0), (3.0, 3.0)),
                        turning_hypo_rate=((1.5, 1.5), (1.5, 1.5)))
    return Path(s["bids_dir"]), Path(s["truth_dir"]), root


def test_perfect_pipeline_output_scores_perfectly(phantom, capsys):
    bids, truth, root = phantom
    out = root / "perfect"
    _perfect_predictions(bids, truth, out)
    assert main(["--derivatives", str(out), "--truth", str(truth), "--bids", str(bids),
                 "--out", str(out / "scores.tsv"), "--errors", str(out / "errors.tsv")]) == 0
    errors = read_tsv(out / "errors.tsv")
    assert len(errors) == 6 and (errors.new_t2_error == 0).all()
    assert "F1" in capsys.readouterr().out
    scores = read_tsv(out / "scores.tsv")
    assert list(scores.columns) == SCORE_COLUMNS
    sel = scores.set_index(["metric", "interval", "kind", "size_bin"]).value
    assert sel[("tp", "all", "t2", "all")] > 0 and sel[("tp", "all", "t1hypo", "all")] > 0
    for kind in ("t2", "t1hypo"):
        assert sel[("f1", "all", kind, "all")] == 1.0
        assert sel[("fp", "all", kind, "all")] == 0 and sel[("fn", "all", kind, "all")] == 0
    for c in ("new_t2", "enlarging_t2", "new_t1hypo"):
        assert sel[("fraction_exact", "all", c, "all")] == 1.0
    assert sel[("t2lv_change_median_abs_error_ml", "all", "t2lv_change_ml", "all")] == 0.0
    assert sel[("subject_intervals_missing", "all", "all", "all")] == 0


def test_one_dropped_and_one_spurious_lesion(phantom):
    bids, truth, root = phantom
    out = root / "imperfect"
    _perfect_predictions(bids, truth, out)
    ep = read_tsv(truth / "truth_endpoints.tsv")
    row = ep[ep.new_t2 > 0].iloc[0]
    sub = row.participant_id.removeprefix("sub-")
    path = bids_path(out, sub, from_=row.ses_start, to=row.ses_end, suffix="lesions", ext=".tsv")
    table = read_tsv(path)
    first_new = table.index[(table.kind == "t2") & (table["class"] == "new")][0]
    spurious = {"kind": "t2", "class": "new", "volume_end_mm3": 30.0, "x_mm": 0.0, "y_mm": 0.0,
                "z_mm": 300.0}  # far outside the head
    table = pd.concat([table.drop(index=first_new), pd.DataFrame([spurious])], ignore_index=True)
    write_tsv(path, table)
    scores, details = evaluate(out, truth)
    sel = scores.set_index(["metric", "interval", "kind", "size_bin"]).value
    assert sel[("fn", row.interval, "t2", "all")] == 1
    assert sel[("fp", row.interval, "t2", "all")] == 1
    assert sel[("fp", row.interval, "t2", "10-50")] == 1
    fp = details["matches"][details["matches"].outcome == "fp"]
    assert len(fp) == 1 and fp.truth_tissue.iloc[0] == "outside"
    tp = details["matches"][details["matches"].outcome == "tp"]
    assert (tp.truth_tissue == "lesion").all()


def test_missing_endpoints_refused(tmp_path, phantom):
    _, truth, _ = phantom
    with pytest.raises(InputError, match="endpoints"):
        evaluate(tmp_path, truth)


def test_truth_is_recounted_with_the_run_params(phantom):
    bids, truth, root = phantom
    out = root / "params"
    _perfect_predictions(bids, truth, out)
    # With a new-lesion minimum above every lesion, no truth lesion is new: the predictions of
    # the (default-rule) new lesions become "ignored", and the truth count is 0 everywhere.
    strict = LesionParams(min_new_lesion_volume_mm3=1e9)
    scores, details = evaluate(out, truth, params=strict)
    sel = scores.set_index(["metric", "interval", "kind", "size_bin"]).value
    assert sel[("tp", "all", "t2", "all")] == 0 and sel[("fn", "all", "t2", "all")] == 0
    assert sel[("fp", "all", "t2", "all")] == 0
    t2 = details["matches"][details["matches"].kind == "t2"]
    assert len(t2) > 0 and (t2.outcome == "ignored").all()
    assert (details["endpoint_errors"].new_t2_truth == 0).all()
