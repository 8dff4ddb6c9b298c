"""The cohort: clinical covariates, lesion activity by arm, and the files of every subject.

Arms are balanced (``arms[0]`` gets the extra subject when the count is odd) and shuffled with the
cohort seed. Per subject, ``washout_days`` is uniform in ``washout_days_range`` and ``next_dmt``
uniform over :data:`~pipeline.phantom.config.NEXT_DMTS`; expected lesion events per interval are
the arm's rates (``new_t2_rate``, ``turning_hypo_rate``, ``enlarging_rate``) times an activity
factor ``(1 + washout_activity_gain x (washout_days - 30) / 150) x next_dmt_activity[next_dmt]``
(a longer washout and a weaker next therapy give more activity), drawn as negative-binomial
counts. Relapses are Poisson with the study's per-arm rates (``relapse_rate_0_3m``, and
``relapses_0_12m`` = 0-3 m + 3-12 m).

Randomness: subject ``i`` uses ``numpy.random.default_rng([seed, i, stream])`` with separate
streams for clinical data, anatomy, lesions and each session's acquisition, so changing one
aspect (e.g. ``rescan``) leaves the others as they were; cohort-level choices (arms, which
subjects have 2-D FLAIR, which sessions are stored non-RAS) use ``[seed, 1000000]``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pipeline
from pipeline.errors import InputError
from pipeline.io import atomic_path, read_tsv, save_nifti, write_json, write_tsv
from pipeline.params import LesionParams
from pipeline.paths import bids_path, raw_image
from pipeline.phantom.acquisition import grid_affine, random_pose, render_session, rotation_matrix
from pipeline.phantom.anatomy import make_anatomy
from pipeline.phantom.config import (ENCODINGS, NEXT_DMTS, SESSION_MONTHS, SESSIONS,
                                     PhantomParams, preset_params, subject_contrasts)
from pipeline.phantom.lesions import plan_lesions
from pipeline.phantom.truth import (endpoints_table, kind_class_mismatches, lesion_table)

DEFAULT_SEED = 20160601
GENERATOR_NAME = "rebound-mri phantom"
PARTICIPANT_COLUMNS = ["participant_id", "arm", "washout_days", "next_dmt", "relapses_0_3m",
                       "relapses_0_12m"]
_COHORT_STREAM = 1_000_000
_STREAM_CLINICAL, _STREAM_ANATOMY, _STREAM_LESIONS, _STREAM_SESSION = 0, 1, 2, 10
_STREAM_PROTOCOL = 3  # own streams, so the analytic cohorts' draws are unchanged

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Participant label, sub-<label>."},
    "arm": {"Description": "Randomised arm after stopping natalizumab.",
            "Levels": {"IDG": "immediate discontinuation group",
                       "TG": "tapered group (two further infusions at 6 and 14 weeks)"}},
    "washout_days": {"Description": "Days from the last natalizumab infusion to the next "
                                    "disease-modifying therapy.", "Units": "day"},
    "next_dmt": {"Description": "Disease-modifying therapy started after the washout.",
                 "Levels": {d: d.replace("_", " ") for d in NEXT_DMTS}},
    "relapses_0_3m": {"Description": "Clinical relapses in months 0-3 after the last infusion.",
                      "Units": "count"},
    "relapses_0_12m": {"Description": "Clinical relapses in months 0-12 after the last infusion.",
                       "Units": "count"},
}


def subject_label(index: int) -> str:
    """BIDS label of subject ``index`` (0-based): "001", "002", ..."""
    return f"{index + 1:03d}"


def cohort_layout(preset: str = "ci", n_subjects: int | None = None) -> list[tuple[str, list[str]]]:
    """Subjects and sessions a cohort will hold, known before generating it.

    Returns
    -------
    list of (subject label, list of session labels)
    """
    p = preset_params(preset, n_subjects=n_subjects)
    return [(subject_label(i), list(SESSIONS)) for i in range(p.n_subjects)]


def _cohort_choices(p: PhantomParams, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _COHORT_STREAM])
    n = p.n_subjects
    arms = np.array([p.arms[0]] * ((n + 1) // 2) + [p.arms[1]] * (n // 2))[rng.permutation(n)]
    n_thick = int(round(p.thick_flair_fraction * n))
    thick = set(rng.permutation(n)[:n_thick].tolist())
    n_ses = n * len(SESSIONS)
    n_nonras = int(round(p.non_ras_fraction * n_ses))
    order = rng.permutation(n_ses)[:n_nonras]
    storage = ["RAS"] * n_ses
    for j, flat in enumerate(sorted(order.tolist())):
        storage[flat] = ("LAS", "LPS", "oblique")[j % 3]
    return {"arms": [str(a) for a in arms], "thick_flair": thick,
            "storage": [storage[i * len(SESSIONS):(i + 1) * len(SESSIONS)] for i in range(n)]}


def _protocol_choices(p: PhantomParams, seed: int, index: int, thick_flair: bool
                      ) -> tuple[str | None, list[str]]:
    """The subject's scanner protocol (2-D for a thick-slice FLAIR, else 3-D; None when the
    cohort has one contrast set) and each session's storage encoding."""
    rng = np.random.default_rng([seed, index, _STREAM_PROTOCOL])
    protocol = None
    if p.contrast_protocols:
        kind = "2D" if thick_flair else "3D"
        pool = [c for c in p.contrast_protocols if c.endswith(kind)] or list(p.contrast_protocols)
        protocol = str(pool[rng.integers(len(pool))])
    encodings = [str(p.encodings[rng.integers(len(p.encodings))]) for _ in SESSIONS]
    return protocol, encodings


def _anatomy(rng: np.random.Generator, p: PhantomParams):
    if p.anatomy == "mni152":
        from pipeline.phantom.template import make_template_anatomy  # needs nilearn

        return make_template_anatomy(rng, p)
    return make_anatomy(rng, p)


def clinical(rng: np.random.Generator, arm_index: int, p: PhantomParams) -> dict[str, Any]:
    """Washout, next therapy and relapse counts of one participant (no participant_id)."""
    washout = int(rng.integers(p.washout_days_range[0], p.washout_days_range[1] + 1))
    dmt = NEXT_DMTS[int(rng.integers(len(NEXT_DMTS)))]
    r03 = int(rng.poisson(p.relapse_rate_0_3m[arm_index]))
    r312 = int(rng.poisson(p.relapse_rate_3_12m[arm_index]))
    return {"arm": p.arms[arm_index], "washout_days": washout, "next_dmt": dmt,
            "relapses_0_3m": r03, "relapses_0_12m": r03 + r312}


def expected_events(p: PhantomParams, arm_index: int, washout_days: int,
                    next_dmt: str) -> dict[str, tuple[float, float]]:
    """Mean lesion events per interval (baseline->m06, m06->m12) for one participant."""
    factor = (1.0 + p.washout_activity_gain * (washout_days - 30) / 150.0) * \
        p.next_dmt_activity[NEXT_DMTS.index(next_dmt)]
    scaled = {
        "new": p.new_t2_rate[arm_index], "turning_hypo": p.turning_hypo_rate[arm_index],
        "enlarging": p.enlarging_rate[arm_index],
    }
    out = {k: (v[0] * factor, v[1] * factor) for k, v in scaled.items()}
    out["shrinking"] = (p.shrinking_rate, p.shrinking_rate)
    out["resolving"] = (p.resolving_rate, p.resolving_rate)
    return out


def _grids(p: PhantomParams, thick: bool, storage: str,
           rng: np.random.Generator) -> tuple[np.ndarray, tuple, np.ndarray, tuple]:
    v = p.voxel_mm
    shape = tuple(int(round(f / v)) for f in p.fov_mm)
    obl = None
    if storage == "oblique":
        axis = rng.standard_normal(3)
        obl = rotation_matrix(axis, float(rng.uniform(0.25, 1.0) * p.oblique_max_deg))
    t1_aff = grid_affine(shape, (v, v, v), storage, obl)
    if not thick:
        return t1_aff, shape, t1_aff, shape
    slice_mm = max(p.flair_slice_mm, v)
    fshape = (shape[0], shape[1], int(round(p.fov_mm[2] / slice_mm)))
    return t1_aff, shape, grid_affine(fshape, (v, v, slice_mm), storage, obl), fshape


def generate_subject(index: int, seed: int, p: PhantomParams, arm: str, thick_flair: bool,
                     storages: list[str], out_dir: Path, truth_dir: Path,
                     lesion_params: LesionParams) -> dict[str, Any]:
    """Generate and write one subject (all sessions, truth maps and tables).

    Returns
    -------
    dict with the participant row (``participant``), the truth endpoints (``endpoints``,
    DataFrame), ``seconds``, ``n_lesions`` and ``kind_class_mismatches``.
    """
    t0 = time.perf_counter()
    sub = subject_label(index)
    pid = f"sub-{sub}"
    arm_index = p.arms.index(arm)
    info = clinical(np.random.default_rng([seed, index, _STREAM_CLINICAL]), arm_index, p)
    protocol, encodings = _protocol_choices(p, seed, index, thick_flair)
    p = subject_contrasts(p, protocol)
    anat = _anatomy(np.random.default_rng([seed, index, _STREAM_ANATOMY]), p)
    events = expected_events(p, arm_index, info["washout_days"], info["next_dmt"])
    lesions = plan_lesions(np.random.default_rng([seed, index, _STREAM_LESIONS]), anat, p,
                           events, p.voxel_mm)
    n_ses = len(SESSIONS)
    volumes = np.zeros((len(lesions), n_ses))
    voxel_vols = np.zeros(n_ses)
    t2lv_ml: dict[str, float] = {}
    transforms: dict[str, Any] = {}
    for s, ses in enumerate(SESSIONS):
        rng = np.random.default_rng([seed, index, _STREAM_SESSION + s])
        pose = random_pose(rng, p)
        t1_aff, t1_shape, fl_aff, fl_shape = _grids(p, thick_flair, storages[s], rng)
        t_years = 0.0 if p.rescan else SESSION_MONTHS[s] / 12.0
        img = render_session(anat, lesions, s, t_years, pose.matrix, t1_aff, t1_shape, fl_aff,
                             fl_shape, rng, p, encodings[s])
        stored = np.dtype(ENCODINGS[encodings[s]][0])
        save_nifti(raw_image(out_dir, sub, ses, "T1w"), img.t1, t1_aff, stored_dtype=stored)
        save_nifti(raw_image(out_dir, sub, ses, "FLAIR"), img.flair, fl_aff, stored_dtype=stored)
        save_nifti(bids_path(truth_dir, sub, ses, desc="truth", suffix="dseg"), img.labels, t1_aff)
        save_nifti(bids_path(truth_dir, sub, ses, desc="brain", suffix="mask"), img.brain_mask,
                   t1_aff)
        save_nifti(bids_path(truth_dir, sub, ses, desc="tissue", suffix="dseg"), img.tissue, t1_aff)
        voxel_mm3 = float(abs(np.linalg.det(t1_aff[:3, :3])))
        voxel_vols[s] = voxel_mm3
        counts = np.bincount(img.labels.reshape(-1), minlength=len(lesions) + 1)
        volumes[:, s] = counts[1:len(lesions) + 1] * voxel_mm3
        t2lv_ml[ses] = float(counts[1:].sum() * voxel_mm3 / 1000.0)
        transforms[ses] = {
            "anat_to_world": pose.matrix, "rotation_axis": pose.axis,
            "rotation_deg": pose.rotation_deg, "translation_mm": pose.translation_mm,
            "storage": storages[s], "flair_grid": "thick_slice" if thick_flair else "shared",
            "t1w_affine": t1_aff, "flair_affine": fl_aff,
            "intensity_scale": img.intensity_scale, "encoding": encodings[s],
        }
    rows = [{
        "lesion_id": les.lesion_id, "location": les.location, "kind": les.kind,
        "center_x_mm": les.center_mm[0], "center_y_mm": les.center_mm[1],
        "center_z_mm": les.center_mm[2],
        "event_session": SESSIONS[les.event_session] if les.event_session >= 0 else "n/a",
        "parent_id": les.parent_id, "diameter_mm": 2 * les.semi_axes_mm.max(),
        "flair_ratio": les.flair_ratio,
    } for les in lesions]
    hypo = np.array([les.hypo for les in lesions], bool).reshape(len(lesions), n_ses)
    table = lesion_table(rows, volumes, hypo, lesion_params, voxel_mm3=voxel_vols)
    mismatches = kind_class_mismatches(table, {les.lesion_id: les.event_session
                                               for les in lesions})
    write_tsv(Path(truth_dir) / pid / f"{pid}_lesions.tsv", table)
    write_json(Path(truth_dir) / pid / f"{pid}_transforms.json",
               {"participant_id": pid, "frame": "anat_to_world maps anatomy-frame RAS mm to the "
                "session's scanner-world RAS mm (the frame of the raw T1w affine)",
                "sessions": transforms})
    endpoints = endpoints_table(pid, table, t2lv_ml, info)
    return {"participant": {"participant_id": pid, **info}, "endpoints": endpoints,
            "protocol": protocol,
            "seconds": time.perf_counter() - t0, "n_lesions": len(lesions),
            "kind_class_mismatches": mismatches}


def _prepare_out(out_dir: Path, truth_dir: Path, keep: set[str]) -> None:
    """Refuse to mix with another dataset; remove subjects of an earlier phantom run that the
    new cohort does not have (so the dataset holds exactly the new cohort)."""
    if out_dir.resolve() == truth_dir.resolve() or truth_dir.resolve().is_relative_to(
            out_dir.resolve()):
        raise InputError(f"--truth-dir {truth_dir} must not be inside the BIDS dataset {out_dir}: "
                         "truth would be read as raw data; use a sibling such as <DIR>-truth")
    desc = out_dir / "dataset_description.json"
    for root in (out_dir, truth_dir):
        if not root.exists():
            continue
        stale = [d for d in sorted(root.glob("sub-*")) if d.is_dir() and d.name not in keep]
        if stale and root == out_dir and (not desc.exists()
                                          or GENERATOR_NAME not in desc.read_text()):
            raise InputError(f"{out_dir}: holds subjects {[d.name for d in stale[:3]]} of another "
                             "dataset; write the phantom to an empty or new directory")
        for d in stale:
            shutil.rmtree(d)


def generate_cohort(out_dir: str | Path, truth_dir: str | Path | None = None, preset: str = "ci",
                    n_subjects: int | None = None, seed: int | None = None, *,
                    preview: bool = False, **overrides: Any) -> dict[str, Any]:
    """Write a synthetic BIDS cohort with its ground truth.

    Parameters
    ----------
    out_dir : BIDS raw dataset root to write
    truth_dir : truth root (default: ``<out_dir>-truth``, a sibling)
    preset : "ci", "demo" or "trial" (see :data:`pipeline.phantom.config.PRESETS`)
    n_subjects : number of subjects (default: the preset's)
    seed : random seed (default 20160601); the same seed and options give identical files
    preview : also write TDIR/preview/sub-<ID>_preview.png montages
    **overrides : any :class:`~pipeline.phantom.config.PhantomParams` field, e.g.
        ``voxel_mm=4.0``, ``skull_stripped=True``, ``rescan=True``

    Returns
    -------
    dict: ``bids_dir``, ``truth_dir``, ``participants`` (list of ids), ``seconds_per_subject``
    (list), ``kind_class_mismatches`` (total), ``previews`` (paths), ``params``.
    """
    seed = DEFAULT_SEED if seed is None else int(seed)
    if seed < 0:
        raise InputError(f"phantom seed {seed} is invalid: expected a non-negative integer")
    p = preset_params(preset, n_subjects=n_subjects, **overrides)
    out = Path(out_dir)
    truth = Path(truth_dir) if truth_dir is not None else out.with_name(out.name + "-truth")
    labels = [f"sub-{subject_label(i)}" for i in range(p.n_subjects)]
    _prepare_out(out, truth, set(labels))
    choice = _cohort_choices(p, seed)
    lp = LesionParams()
    results = [generate_subject(i, seed, p, choice["arms"][i], i in choice["thick_flair"],
                                choice["storage"][i], out, truth, lp)
               for i in range(p.n_subjects)]
    participants = pd.DataFrame([r["participant"] for r in results], columns=PARTICIPANT_COLUMNS)
    write_tsv(out / "participants.tsv", participants)
    pj = {k: dict(v) for k, v in PARTICIPANTS_JSON.items()}
    pj["arm"]["Levels"] = {a: pj["arm"]["Levels"].get(a, f"arm {a}") for a in p.arms}
    write_json(out / "participants.json", pj)
    write_json(out / "dataset_description.json", {
        "Name": f"rebound-mri synthetic phantom ({preset}, seed {seed})",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": GENERATOR_NAME, "Version": pipeline.__version__,
                         "Description": "analytic head model with MS lesions, see "
                                        "pipeline/phantom"}],
    })
    with atomic_path(out / "README") as tmp:
        tmp.write_text(
            f"Synthetic MS lesion phantom (rebound-mri {pipeline.__version__}, preset {preset}, "
            f"seed {seed}).\n\n{p.n_subjects} participants in arms {', '.join(p.arms)}, T1w "
            f"and FLAIR at sessions {', '.join(SESSIONS)}. Images are simulated; the ground "
            "truth (lesion labels, brain masks, head positions, endpoints, phantom.json) is "
            "written outside this dataset, by default to the sibling <dataset>-truth.\n")
    write_tsv(truth / "truth_endpoints.tsv", pd.concat([r["endpoints"] for r in results],
                                                       ignore_index=True))
    write_json(truth / "phantom.json", {
        "preset": preset, "seed": seed, "version": pipeline.__version__,
        "params": p.to_json(), "lesion_params": asdict(lp),
        "sessions": dict(zip(SESSIONS, SESSION_MONTHS)),
        "subjects": {labels[i]: {"arm": choice["arms"][i],
                                 "flair_grid": "thick_slice" if i in choice["thick_flair"]
                                 else "shared", "storage": choice["storage"][i],
                                 "protocol": results[i]["protocol"]}
                     for i in range(p.n_subjects)},
    })
    previews: list[str] = []
    if preview:
        from pipeline.phantom.preview import preview_subject_files

        previews = [str(preview_subject_files(out, truth, lab.removeprefix("sub-")))
                    for lab in labels]
    return {"bids_dir": str(out), "truth_dir": str(truth), "participants": labels,
            "seconds_per_subject": [r["seconds"] for r in results],
            "n_lesions": [r["n_lesions"] for r in results],
            "kind_class_mismatches": int(sum(r["kind_class_mismatches"] for r in results)),
            "previews": previews, "params": p}


def read_truth_endpoints(truth_dir: str | Path) -> pd.DataFrame:
    """Read TDIR/truth_endpoints.tsv."""
    return read_tsv(Path(truth_dir) / "truth_endpoints.tsv")
