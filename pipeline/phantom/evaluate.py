"""Score pipeline output against the phantom's ground truth.

``python -m pipeline evaluate --derivatives OUT --truth TDIR [--bids DIR] [--out scores.tsv]``

Interval lengths (for the annualised enlarging rule) come from the visit months given to
:func:`evaluate`, by default those the truth records (``phantom.json`` ``sessions``; without it,
the ``months`` column of ``truth_endpoints.tsv``).

Lesion-wise detection, per interval (a, b) and kind (``t2``: new T2 lesions; ``t1hypo``: new
T1-hypointense lesions):

- each predicted new lesion (a row of ``OUT/sub-<S>/anat/sub-<S>_from-<a>_to-<b>_lesions.tsv``
  with class ``new`` of that kind) is mapped from session b's raw-T1w world coordinates
  (``x_mm, y_mm, z_mm``, RAS mm) into the voxel grid of session b's truth label map (the inverse
  of its affine, nearest voxel);
- it is a true positive (TP) when the truth label at that voxel, or else within
  ``search_voxels`` (1) voxel of it (26-neighbourhood, nearest first), is a truth lesion that is
  a target of the interval (class ``new``; for t1hypo, ``new_t1hypo == 1``) and not yet matched;
  a prediction whose only target in reach is already matched is a false positive (FP, a
  duplicate), as is one reaching no target;
- a prediction reaching only a truth lesion that appeared but is below the counting minimum
  (``LesionParams.min_new_lesion_volume_mm3``, resp. ``min_t1hypo_volume_mm3``) is ``ignored``:
  neither TP nor FP, since such a lesion is neither required nor wrong to find;
- unmatched targets are false negatives (FN).

Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN); each is NaN
when its denominator is 0 (e.g. no truth and no prediction). Size bins use the truth volume at b
for TP and FN and the predicted ``volume_end_mm3`` for FP: [10, 50), [50, 200), [200, inf) mm^3
(a prediction smaller than 10 mm^3 counts in ``all`` only).

Counts per subject-interval (``new_t2``, ``enlarging_t2``, ``new_t1hypo``): error = predicted -
truth, reported as mean error (bias), mean absolute error and fraction exact; T2-LV change (mL):
median absolute error and bias (mean error); the same for the T2-LV at start and end, which tells
a volume bias from a change error.

The scores table is tidy: columns ``metric, interval, kind, size_bin, value``; ``interval`` is
an interval label or ``all`` (pooled over intervals), ``size_bin`` a bin label or ``all``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import run_command
from pipeline.contract import COUNT_ENDPOINTS, ENDPOINT_COLUMNS, T2LV_COLUMNS, VOLUME_ENDPOINT
from pipeline.errors import InputError
from pipeline.io import load_nifti, read_tsv, write_tsv
from pipeline.params import LesionParams
from pipeline.paths import bids_path, product_path, raw_image
from pipeline.phantom.truth import classify_change, new_t1hypo

SIZE_BINS: tuple[tuple[float, float], ...] = ((10.0, 50.0), (50.0, 200.0), (200.0, np.inf))
SCORE_COLUMNS = ["metric", "interval", "kind", "size_bin", "value"]


def size_bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"{lo:g}-inf"


def size_bin_of(volume_mm3: float, bins: tuple[tuple[float, float], ...] = SIZE_BINS) -> str:
    """Label of the bin holding ``volume_mm3``; "below" under the first bin."""
    for lo, hi in bins:
        if lo <= volume_mm3 < hi:
            return size_bin_label(lo, hi)
    return "below"


MATCH_COLUMNS = ["participant_id", "interval", "kind", "outcome", "truth_id", "x_mm", "y_mm",
                 "z_mm", "volume_end_mm3", "truth_tissue"]
TISSUE_NAMES = {0: "background", 1: "csf", 2: "gm", 3: "wm", 4: "deep_gm", 5: "lesion"}


def tissue_at(points_world_mm: np.ndarray, tissue: np.ndarray | None,
              affine: np.ndarray) -> list[str]:
    """Truth tissue name at each point (nearest voxel; "outside" off the grid, "n/a" without a
    tissue map): where false positives fall tells what the segmentation mistakes for lesion."""
    pts = np.asarray(points_world_mm, float).reshape(-1, 3)
    if tissue is None:
        return ["n/a"] * len(pts)
    inv = np.linalg.inv(affine)
    with np.errstate(invalid="ignore"):
        vox = np.rint(pts @ inv[:3, :3].T + inv[:3, 3])
    out = []
    for v in vox:
        if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v >= tissue.shape):
            out.append("outside")
        else:
            out.append(TISSUE_NAMES.get(int(tissue[tuple(v.astype(int))]), "unknown"))
    return out


def _neighbour_offsets(search_voxels: int) -> np.ndarray:
    r = np.arange(-search_voxels, search_voxels + 1)
    off = np.stack(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T
    d2 = (off ** 2).sum(axis=1)
    order = np.lexsort((off[:, 2], off[:, 1], off[:, 0], d2))  # nearest first, then fixed order
    return off[order]


def match_predictions(points_world_mm: np.ndarray, labels: np.ndarray, affine: np.ndarray,
                      target_ids: Iterable[int], ignore_ids: Iterable[int] = (),
                      search_voxels: int = 1) -> tuple[list[str], list[int]]:
    """Match predicted lesion points to truth lesions.

    Parameters
    ----------
    points_world_mm : ndarray of shape (N, 3), RAS mm in the frame of ``affine``
    labels : ndarray of shape (I, J, K), integer truth lesion labels (0 = none)
    affine : ndarray of shape (4, 4), voxel -> world of ``labels``
    target_ids : truth lesions a prediction should find (e.g. class ``new`` in the interval)
    ignore_ids : truth lesions a prediction may hit without being a TP or an FP
    search_voxels : neighbourhood radius (voxels) searched when the voxel itself misses

    Returns
    -------
    outcomes : list of "tp", "fp" or "ignored", one per prediction (in input order)
    matched : list of int, the matched truth id (0 for fp without target, or ignored)
    """
    pts = np.asarray(points_world_mm, float).reshape(-1, 3)
    if labels.ndim != 3:
        raise InputError(f"labels must be 3-D, got shape {labels.shape}")
    targets, ignore = set(int(t) for t in target_ids), set(int(t) for t in ignore_ids)
    inv = np.linalg.inv(affine)
    vox = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    offsets = _neighbour_offsets(search_voxels)
    shape = np.array(labels.shape)
    matched_set: set[int] = set()
    outcomes: list[str] = []
    matched: list[int] = []
    for v in vox:
        cand = v[None, :] + offsets
        ok = np.all((cand >= 0) & (cand < shape), axis=1)
        cand = cand[ok]
        hits = labels[cand[:, 0], cand[:, 1], cand[:, 2]].astype(int) if len(cand) else []
        in_reach = list(dict.fromkeys(int(h) for h in hits if int(h) in targets))
        free = [h for h in in_reach if h not in matched_set]
        if free:
            matched_set.add(free[0])
            outcomes.append("tp")
            matched.append(free[0])
        elif in_reach:
            outcomes.append("fp")  # duplicate hit on an already matched lesion
            matched.append(in_reach[0])
        elif any(int(h) in ignore for h in hits):
            outcomes.append("ignored")
            matched.append(0)
        else:
            outcomes.append("fp")
            matched.append(0)
    return outcomes, matched


def detection_counts(outcomes: list[str], matched: list[int], pred_volumes_mm3: Iterable[float],
                     target_volumes_mm3: dict[int, float],
                     bins: tuple[tuple[float, float], ...] = SIZE_BINS) -> pd.DataFrame:
    """TP, FP and FN overall and per size bin.

    Parameters
    ----------
    outcomes, matched : from :func:`match_predictions`
    pred_volumes_mm3 : predicted volumes (bin of each FP)
    target_volumes_mm3 : truth target id -> volume at b (bin of each TP and FN)

    Returns
    -------
    DataFrame with columns size_bin ("all" and each bin label), tp, fp, fn
    """
    labels = ["all"] + [size_bin_label(lo, hi) for lo, hi in bins]
    counts = {lab: {"tp": 0, "fp": 0, "fn": 0} for lab in labels}
    pv = list(pred_volumes_mm3)
    hit = set()
    for out, mid, vol in zip(outcomes, matched, pv):
        if out == "tp":
            hit.add(mid)
            key = size_bin_of(target_volumes_mm3[mid], bins)
            counts["all"]["tp"] += 1
        elif out == "fp":
            key = size_bin_of(float(vol), bins)
            counts["all"]["fp"] += 1
        else:
            continue
        if key in counts:
            counts[key][out] += 1
    for tid, vol in target_volumes_mm3.items():
        if tid not in hit:
            counts["all"]["fn"] += 1
            key = size_bin_of(vol, bins)
            if key in counts:
                counts[key]["fn"] += 1
    return pd.DataFrame([{"size_bin": lab, **counts[lab]} for lab in labels])


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1), NaN where the denominator is 0."""
    prec = tp / (tp + fp) if tp + fp else np.nan
    rec = tp / (tp + fn) if tp + fn else np.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else np.nan
    return prec, rec, f1


def interval_targets(truth_lesions: pd.DataFrame, interval: str, ses_start: str, ses_end: str,
                     kind: str, params: LesionParams | None = None,
                     dt_months: float | None = None, voxel_mm3: float | None = None
                     ) -> tuple[dict[int, float], set[int]]:
    """Truth targets (id -> volume at b, mm^3) and ignorable ids of one interval and kind.

    Parameters
    ----------
    truth_lesions : a subject's truth lesions.tsv
    interval : "a-b"; ses_start, ses_end : its sessions
    kind : "t2" (class new) or "t1hypo" (new_t1hypo == 1)
    """
    lp = params or LesionParams()
    if len(truth_lesions) == 0:
        return {}, set()
    vb = truth_lesions[f"volume_mm3_{ses_end}"].to_numpy(float)
    va = truth_lesions[f"volume_mm3_{ses_start}"].to_numpy(float)
    ids = truth_lesions["lesion_id"].to_numpy(int)
    # Classes are recomputed from the truth volumes with the run's LesionParams (the same rule
    # that wrote the class_<I> columns with the defaults), so a run with other thresholds is
    # scored against truth counted by its own rule.
    if kind == "t2":
        target = classify_change(va, vb, lp, dt_months, voxel_mm3) == "new"
        ignore = (va == 0) & (vb > 0) & ~target
    elif kind == "t1hypo":
        hyp_a = truth_lesions[f"t1hypo_{ses_start}"].to_numpy(int) == 1
        hyp_b = truth_lesions[f"t1hypo_{ses_end}"].to_numpy(int) == 1
        target = new_t1hypo(hyp_a, hyp_b, vb, lp) == 1
        ignore = hyp_b & ~hyp_a & (vb > 0) & ~target
    else:
        raise ValueError(f"kind must be 't2' or 't1hypo', got {kind!r}")
    return ({int(i): float(v) for i, v in zip(ids[target], vb[target])},
            set(int(i) for i in ids[ignore]))


def _rows(counts: pd.DataFrame, interval: str, kind: str) -> list[dict]:
    out = []
    for r in counts.to_dict("records"):
        prec, rec, f1 = precision_recall_f1(r["tp"], r["fp"], r["fn"])
        for metric, value in (("tp", r["tp"]), ("fp", r["fp"]), ("fn", r["fn"]),
                              ("precision", prec), ("recall", rec), ("f1", f1)):
            out.append({"metric": metric, "interval": interval, "kind": kind,
                        "size_bin": r["size_bin"], "value": float(value)})
    return out


def count_errors(predicted: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per subject-interval endpoint errors and their summary.

    Parameters
    ----------
    predicted, truth : endpoints tables (at least participant_id, interval, the count
        endpoints and t2lv_change_ml)

    Returns
    -------
    per_pair : DataFrame, one row per subject-interval present in both: participant_id,
        interval, and ``<endpoint>_pred``, ``<endpoint>_truth``, ``<endpoint>_error``
    rows : tidy score rows (metric, interval, kind=endpoint, size_bin="all", value)
    """
    keys = ["participant_id", "interval"]
    volumes = [c for c in T2LV_COLUMNS if c in truth.columns and c in predicted.columns]
    cols = list(COUNT_ENDPOINTS) + [VOLUME_ENDPOINT] + volumes
    merged = truth[keys + cols].merge(predicted[keys + cols], on=keys, how="inner",
                                      suffixes=("_truth", "_pred"))
    for c in cols:
        merged[f"{c}_error"] = merged[f"{c}_pred"].astype(float) - merged[f"{c}_truth"].astype(float)
    rows = []
    groups = [("all", merged)] + [(iv, g) for iv, g in merged.groupby("interval", sort=False)]
    for iv, g in groups:
        for c in COUNT_ENDPOINTS:
            e = g[f"{c}_error"].to_numpy(float)
            e = e[np.isfinite(e)]
            for metric, value in (("count_bias", e.mean() if e.size else np.nan),
                                  ("count_mae", np.abs(e).mean() if e.size else np.nan),
                                  ("fraction_exact", (e == 0).mean() if e.size else np.nan),
                                  ("n_pairs", float(e.size))):
                rows.append({"metric": metric, "interval": iv, "kind": c, "size_bin": "all",
                             "value": float(value)})
        e = g["t2lv_change_ml_error"].to_numpy(float)
        e = e[np.isfinite(e)]
        for metric, value in (("t2lv_change_median_abs_error_ml",
                               float(np.median(np.abs(e))) if e.size else np.nan),
                              ("t2lv_change_bias_ml", float(e.mean()) if e.size else np.nan),
                              ("n_pairs", float(e.size))):
            rows.append({"metric": metric, "interval": iv, "kind": "t2lv_change_ml",
                         "size_bin": "all", "value": value})
        # The volumes themselves show whether a change error comes from a volume bias.
        for c in volumes:
            e = g[f"{c}_error"].to_numpy(float)
            e = e[np.isfinite(e)]
            for metric, value in (("t2lv_median_abs_error_ml",
                                   float(np.median(np.abs(e))) if e.size else np.nan),
                                  ("t2lv_bias_ml", float(e.mean()) if e.size else np.nan)):
                rows.append({"metric": metric, "interval": iv, "kind": c, "size_bin": "all",
                             "value": value})
    return merged, pd.DataFrame(rows, columns=SCORE_COLUMNS)


def read_predicted_endpoints(derivatives: str | Path) -> pd.DataFrame:
    """OUT/endpoints.tsv, or the concatenation of OUT/sub-*/anat/sub-*_endpoints.tsv."""
    out = Path(derivatives)
    cohort = out / "endpoints.tsv"
    if cohort.exists():
        table = read_tsv(cohort)
    else:
        files = sorted(out.glob("sub-*/anat/sub-*_endpoints.tsv"))
        if not files:
            raise InputError(f"{out}: neither endpoints.tsv nor sub-*/anat/sub-*_endpoints.tsv "
                             "found; run the pipeline (longitudinal/cohort stages) first or point "
                             "--derivatives at its output directory")
        table = pd.concat([read_tsv(f) for f in files], ignore_index=True)
    missing = [c for c in ENDPOINT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{out}: endpoints table lacks columns {missing}; expected the output "
                         f"contract {list(ENDPOINT_COLUMNS)}")
    return table


def truth_session_months(truth_dir: str | Path) -> dict[str, float] | None:
    """Visit month of each session as the truth records it (``phantom.json`` ``sessions``);
    None when the truth directory has no ``phantom.json``."""
    path = Path(truth_dir) / "phantom.json"
    if not path.exists():
        return None
    return {str(k): float(v) for k, v in json.loads(path.read_text()).get("sessions", {}).items()}


def evaluate(derivatives: str | Path, truth_dir: str | Path, bids_dir: str | Path | None = None,
             params: LesionParams | None = None, search_voxels: int = 1,
             session_months: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """Score a pipeline output directory against a phantom truth directory.

    Parameters
    ----------
    derivatives : pipeline output directory
    truth_dir : phantom truth directory
    bids_dir : optional phantom BIDS directory; its T1w grids must be the truth's
    params : LesionParams of the run (the truth is recounted by them)
    search_voxels : neighbourhood radius (voxels) of the lesion matching
    session_months : session label -> visit month; default :func:`truth_session_months`, else
        each interval's ``months`` in ``truth_endpoints.tsv``

    Returns
    -------
    scores : tidy DataFrame (:data:`SCORE_COLUMNS`)
    details : dict with ``endpoint_errors`` (per subject-interval DataFrame), ``matches``
        (one row per prediction: participant_id, interval, kind, outcome, truth_id) and
        ``missing`` (subject-intervals without a lesion table)
    """
    out, truth = Path(derivatives), Path(truth_dir)
    lp = params or LesionParams()
    truth_ep = read_tsv(truth / "truth_endpoints.tsv")
    pred_ep = read_predicted_endpoints(out)
    months = (dict(session_months) if session_months is not None
              else truth_session_months(truth))
    match_rows: list[dict] = []
    missing: list[str] = []
    per_kind: dict[tuple[str, str], list[pd.DataFrame]] = {}
    truth_counts: dict[tuple[str, str], dict[str, int]] = {}
    for j, (pid, iv, a, b) in enumerate(truth_ep[["participant_id", "interval", "ses_start",
                                                  "ses_end"]].itertuples(index=False)):
        sub = str(pid).removeprefix("sub-")
        table_path = product_path(out, "interval_lesions", sub, interval=(a, b))
        if not table_path.exists():
            missing.append(f"{pid} {iv}")
            continue
        dt = (months[b] - months[a] if months is not None
              else float(truth_ep["months"].iloc[j]))
        truth_counts[(pid, iv)] = _score_interval(
            read_predicted_lesions(table_path), truth, bids_dir, pid, iv, a, b, dt, lp,
            search_voxels, per_kind, match_rows)
    scores = _detection_scores(per_kind, list(dict.fromkeys(truth_ep["interval"])))
    errors, err_rows = count_errors(pred_ep, _with_counts(truth_ep, truth_counts))
    scores = pd.concat([pd.DataFrame(scores, columns=SCORE_COLUMNS), err_rows],
                       ignore_index=True)
    scores = pd.concat([scores, pd.DataFrame([{
        "metric": "subject_intervals_missing", "interval": "all", "kind": "all",
        "size_bin": "all", "value": float(len(missing))}])], ignore_index=True)
    return scores, {"endpoint_errors": errors, "matches": pd.DataFrame(
        match_rows, columns=MATCH_COLUMNS),
        "missing": missing}


def read_predicted_lesions(table_path: Path) -> pd.DataFrame:
    """One interval's lesion table, with the columns the scoring needs."""
    pred = read_tsv(table_path)
    need = {"kind", "class", "volume_end_mm3", "x_mm", "y_mm", "z_mm"}
    if need - set(pred.columns):
        raise InputError(f"{table_path}: lacks columns {sorted(need - set(pred.columns))}; "
                         "the interval lesion table must give kind, class, volume_end_mm3 "
                         "and x_mm, y_mm, z_mm in session b's T1w world coordinates")
    return pred


def _score_interval(pred: pd.DataFrame, truth: Path, bids_dir: str | Path | None, pid: str,
                    iv: str, a: str, b: str, dt: float, lp: LesionParams, search_voxels: int,
                    per_kind: dict[tuple[str, str], list[pd.DataFrame]],
                    match_rows: list[dict]) -> dict[str, int]:
    """Match one subject-interval's new lesions (T2, then T1-hypointense) with the truth.

    Appends the detection counts to ``per_kind[(iv, kind)]`` and one row per prediction to
    ``match_rows``; returns the truth's counts (new_t2, enlarging_t2, new_t1hypo).
    """
    sub = str(pid).removeprefix("sub-")
    labels, affine, _ = load_nifti(bids_path(truth, sub, b, desc="truth", suffix="dseg"))
    if bids_dir is not None:
        _, t1_aff, _ = load_nifti(raw_image(bids_dir, sub, b, "T1w"))
        if not np.allclose(t1_aff, affine, atol=1e-4):
            raise InputError(f"{raw_image(bids_dir, sub, b, 'T1w')}: affine differs from the "
                             f"truth label map's; --truth {truth} does not belong to --bids "
                             f"{bids_dir}")
    tissue_path = bids_path(truth, sub, b, desc="tissue", suffix="dseg")
    tissue_map = load_nifti(tissue_path)[0] if tissue_path.exists() else None
    lesions = read_tsv(truth / pid / f"{pid}_lesions.tsv")
    vv = float(abs(np.linalg.det(affine[:3, :3])))
    counts_of_truth: dict[str, int] = {}
    for kind in ("t2", "t1hypo"):
        targets, ignore = interval_targets(lesions, iv, a, b, kind, lp, dt, vv)
        if kind == "t2":
            cls = classify_change(lesions[f"volume_mm3_{a}"].to_numpy(float),
                                  lesions[f"volume_mm3_{b}"].to_numpy(float), lp, dt, vv)
            counts_of_truth = {"new_t2": len(targets),
                               "enlarging_t2": int((cls == "enlarging").sum())}
        else:
            counts_of_truth["new_t1hypo"] = len(targets)
        rows = pred[(pred["kind"] == kind) & (pred["class"] == "new")]
        xyz = rows[["x_mm", "y_mm", "z_mm"]].to_numpy(float)
        volumes = rows["volume_end_mm3"].to_numpy(float)
        outcomes, matched = match_predictions(xyz, labels, affine, targets, ignore,
                                              search_voxels)
        per_kind.setdefault((iv, kind), []).append(
            detection_counts(outcomes, matched, volumes, targets))
        tissue = tissue_at(xyz, tissue_map, affine) if len(rows) else []
        for o, m, (x, y, z), v, t in zip(outcomes, matched, xyz, volumes, tissue):
            match_rows.append({"participant_id": pid, "interval": iv, "kind": kind,
                               "outcome": o, "truth_id": m, "x_mm": x, "y_mm": y, "z_mm": z,
                               "volume_end_mm3": v, "truth_tissue": t})
    return counts_of_truth


def _detection_scores(per_kind: dict[tuple[str, str], list[pd.DataFrame]],
                      intervals: list[str]) -> list[dict]:
    """Score rows of the lesion-wise detection, per interval and pooled ("all"), per kind."""
    score_rows: list[dict] = []
    for kind in ("t2", "t1hypo"):
        pooled = []
        for iv in intervals:
            parts = per_kind.get((iv, kind), [])
            if not parts:
                continue
            summed = pd.concat(parts).groupby("size_bin", sort=False)[["tp", "fp", "fn"]].sum()
            summed = summed.reset_index()
            pooled.append(summed)
            score_rows += _rows(summed, iv, kind)
        if pooled:
            total = pd.concat(pooled).groupby("size_bin", sort=False)[["tp", "fp", "fn"]].sum()
            score_rows += _rows(total.reset_index(), "all", kind)
    return score_rows


def _with_counts(truth_ep: pd.DataFrame, truth_counts: dict[tuple[str, str], dict[str, int]]
                 ) -> pd.DataFrame:
    """The truth endpoints with the counts recounted under the run's lesion rules."""
    truth_ep = truth_ep.copy()
    for j, (pid, iv) in enumerate(truth_ep[["participant_id", "interval"]].itertuples(index=False)):
        for c, v in truth_counts.get((pid, iv), {}).items():
            truth_ep.loc[truth_ep.index[j], c] = v
    return truth_ep


def summary_text(scores: pd.DataFrame) -> str:
    """A short human-readable summary of :func:`evaluate`'s scores."""
    def val(metric: str, interval: str, kind: str, size_bin: str = "all") -> float:
        sel = scores[(scores.metric == metric) & (scores.interval == interval)
                     & (scores.kind == kind) & (scores.size_bin == size_bin)]
        return float(sel.value.iloc[0]) if len(sel) else float("nan")

    lines = ["lesion-wise detection (TP/FP/FN, precision, recall, F1):"]
    intervals = [i for i in dict.fromkeys(scores.interval) if i != "all"] + ["all"]
    for kind in ("t2", "t1hypo"):
        for iv in intervals:
            if np.isnan(val("tp", iv, kind)):
                continue
            lines.append(f"  new {kind:<7} {iv:<14} TP {val('tp', iv, kind):>4.0f}  FP "
                         f"{val('fp', iv, kind):>4.0f}  FN {val('fn', iv, kind):>4.0f}  P "
                         f"{val('precision', iv, kind):.2f}  R {val('recall', iv, kind):.2f}  F1 "
                         f"{val('f1', iv, kind):.2f}")
    lines.append("endpoint counts (pred - truth), all intervals:")
    for c in COUNT_ENDPOINTS:
        lines.append(f"  {c:<13} bias {val('count_bias', 'all', c):+.2f}  MAE "
                     f"{val('count_mae', 'all', c):.2f}  exact {val('fraction_exact', 'all', c):.0%}")
    lines.append(f"  T2-LV change  median |error| "
                 f"{val('t2lv_change_median_abs_error_ml', 'all', 't2lv_change_ml'):.3f} mL, "
                 f"bias {val('t2lv_change_bias_ml', 'all', 't2lv_change_ml'):+.3f} mL")
    lines.append(f"  T2-LV (end)   median |error| "
                 f"{val('t2lv_median_abs_error_ml', 'all', 't2lv_end_ml'):.3f} mL, "
                 f"bias {val('t2lv_bias_ml', 'all', 't2lv_end_ml'):+.3f} mL")
    miss = val("subject_intervals_missing", "all", "all")
    if miss:
        lines.append(f"  {miss:.0f} subject-interval(s) had no lesion table and were not scored")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline evaluate",
                                 description="Score pipeline output against phantom ground truth.")
    ap.add_argument("--derivatives", required=True, help="pipeline output directory (OUT)")
    ap.add_argument("--truth", required=True, help="phantom truth directory (TDIR)")
    ap.add_argument("--bids", default=None, help="phantom BIDS directory (checks the grids)")
    ap.add_argument("--out", default=None, help="scores TSV (default OUT/evaluation_scores.tsv)")
    ap.add_argument("--errors", default=None,
                    help="also write the per subject-interval endpoint errors to this TSV")
    ap.add_argument("--matches", default=None,
                    help="also write one row per predicted new lesion (outcome, matched truth "
                         "lesion, truth tissue at its position) to this TSV")
    ap.add_argument("--params", default=None,
                    help="JSON with LesionParams overrides ({\"LesionParams\": {...}}) used by "
                         "the pipeline run")
    args = ap.parse_args(argv)
    return run_command("evaluate", lambda: _evaluate_files(args))


def _evaluate_files(args: argparse.Namespace) -> None:
    """The evaluate command: scores (and optional error and match tables) written, summarised."""
    lp = LesionParams()
    if args.params:
        from pipeline.params import override
        raw = json.loads(Path(args.params).read_text())
        lp = override(lp, raw.get("LesionParams", {}))
    scores, details = evaluate(args.derivatives, args.truth, args.bids, lp)
    out = Path(args.out) if args.out else Path(args.derivatives) / "evaluation_scores.tsv"
    write_tsv(out, scores)
    if args.errors:
        write_tsv(args.errors, details["endpoint_errors"])
    if args.matches:
        write_tsv(args.matches, details["matches"])
    print(summary_text(scores))
    print(f"scores: {out}")
