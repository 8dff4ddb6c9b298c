"""Preprocess one session: input checks, brain mask, N4, FLAIR -> T1 rigid registration.

Order of the steps (all on native grids, nothing is resampled here):

1. input checks on T1w and FLAIR (:mod:`pipeline.checks`);
2. brain mask on the raw T1 (:mod:`pipeline.brainmask`, whole-head or skull-stripped detected);
3. N4 on the T1 inside the brain mask (:mod:`pipeline.intensity`);
4. FLAIR -> T1 rigid registration (Mattes MI, fixed = N4 T1 restricted to the brain mask, so
   neither the bias field nor the scalp drives the fit); the identity when FLAIR and T1 share a
   grid (same shape and affine), as for a FLAIR computed on the T1 grid;
5. N4 on the FLAIR inside the T1 brain mask mapped into FLAIR space.

The brain mask comes before the registration (the order in DESIGN.md is checks -> registration ->
mask -> N4) because masking the metric to the brain makes FLAIR -> T1 both faster and more
accurate; the outputs are the same products.

Outputs (file names from :data:`pipeline.paths.PRODUCTS`): N4 T1w, N4 FLAIR, native brain mask,
the FLAIR -> T1 ITK transform (maps T1 points to FLAIR points, i.e. resamples FLAIR onto T1)
and a QC json (similarity after FLAIR -> T1, brain volume in mL, skull-stripped yes/no, seconds
per step; the seconds are the only values that differ between two runs on the same inputs).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline import io
from pipeline.brainmask import brain_mask
from pipeline.checks import add_input_arguments, check_overlap, load_checked, session_inputs
from pipeline.intensity import n4_correct_image
from pipeline.params import BrainMaskParams, InputCheckParams, RegistrationParams
from pipeline.paths import needing_sidecars, product_path
from pipeline.imagespace import (
    nifti_to_sitk,
    resample_mask,
    same_grid,
    set_threads,
    sitk_to_nifti,
    write_transform,
)
from pipeline.registration import (
    normalised_mutual_information,
    paired_samples,
    register_rigid_images,
)
from pipeline.outcome import run_step
from pipeline.provenance import write_sidecars


@dataclass
class SessionPreprocessed:
    """Products of :func:`preprocess_session` (all on native grids).

    ``t1_n4``/``flair_n4`` are float32 (I, J, K) arrays on the T1 and FLAIR grids,
    ``brain_mask`` a bool array on the T1 grid, ``flair_to_t1`` the ITK transform mapping
    T1 LPS points to FLAIR LPS points, ``qc`` a JSON-serialisable dict.
    """

    t1_n4: np.ndarray
    flair_n4: np.ndarray
    brain_mask: np.ndarray
    flair_to_t1: sitk.Euler3DTransform
    qc: dict = field(default_factory=dict)


def preprocess_session(t1: np.ndarray, t1_affine: np.ndarray, flair: np.ndarray,
                       flair_affine: np.ndarray,
                       registration_params: RegistrationParams | None = None,
                       mask_params: BrainMaskParams | None = None,
                       label: str = "session") -> SessionPreprocessed:
    """Brain mask, N4 and FLAIR -> T1 registration of one (checked) session.

    Parameters
    ----------
    t1 : ndarray of shape (I, J, K)
    t1_affine : ndarray of shape (4, 4), voxel -> RAS mm
    flair : ndarray of shape (I2, J2, K2)
    flair_affine : ndarray of shape (4, 4)
    registration_params : RegistrationParams
    mask_params : BrainMaskParams
    label : str
        Names the session in messages (e.g. ``"sub-01 ses-m06"``).

    Returns
    -------
    SessionPreprocessed

    Raises
    ------
    RegistrationError
        When FLAIR -> T1 is implausible from every initialisation.
    """
    reg_params = registration_params or RegistrationParams()
    mask_params = mask_params or BrainMaskParams()
    seconds: dict[str, float] = {}

    timer = time.perf_counter()
    mask, mask_info = brain_mask(t1, t1_affine, mask_params)
    seconds["brain_mask"] = time.perf_counter() - timer

    timer = time.perf_counter()
    t1_img = nifti_to_sitk(np.asarray(t1, dtype=np.float32), t1_affine)
    mask_img = nifti_to_sitk(mask.astype(np.uint8), t1_affine)
    t1_n4, _ = n4_correct_image(t1_img, mask_img, mask_params)
    seconds["n4_t1"] = time.perf_counter() - timer

    timer = time.perf_counter()
    flair_img = nifti_to_sitk(np.asarray(flair, dtype=np.float32), flair_affine)
    shared_grid = same_grid(np.shape(t1), t1_affine, np.shape(flair), flair_affine)
    transform, flair_qc = flair_to_t1(t1_n4, flair_img, mask_img, shared_grid, reg_params,
                                      label)
    seconds["flair_to_t1"] = time.perf_counter() - timer

    timer = time.perf_counter()
    # The T1 mask on the FLAIR grid: FLAIR points -> T1 points is the inverse transform.
    flair_mask = resample_mask(mask_img, flair_img, transform.GetInverse())
    flair_n4, _ = n4_correct_image(flair_img, flair_mask, mask_params)
    seconds["n4_flair"] = time.perf_counter() - timer

    voxel_mm = np.linalg.norm(np.asarray(t1_affine)[:3, :3], axis=0)
    qc = {"brain_volume_ml": mask_info["brain_volume_ml"],
          "skull_stripped": "yes" if mask_info["skull_stripped"] else "no",
          "flair_to_t1": flair_qc,
          "t1_voxel_mm": voxel_mm.round(4).tolist(),
          "flair_voxel_mm": np.linalg.norm(np.asarray(flair_affine)[:3, :3], axis=0)
          .round(4).tolist(),
          "seconds": seconds}
    return SessionPreprocessed(np.ascontiguousarray(sitk_to_nifti(t1_n4)[0]),
                               np.ascontiguousarray(sitk_to_nifti(flair_n4)[0]),
                               mask, transform, qc)


def flair_to_t1(t1_n4: sitk.Image, flair: sitk.Image, t1_mask: sitk.Image, shared_grid: bool,
                reg_params: RegistrationParams, label: str
                ) -> tuple[sitk.Euler3DTransform, dict]:
    """The FLAIR -> T1 transform of one session and its QC record.

    A FLAIR stored on the T1's grid is taken as aligned (the identity, with its similarity
    recorded); otherwise it is registered rigidly (Mattes MI) inside the T1 brain mask,
    starting from the identity: FLAIR and T1 of one session share the scanner frame.
    """
    if shared_grid:
        transform = sitk.Euler3DTransform()
        f_vals, m_vals = paired_samples(t1_n4, flair, transform, t1_mask, None)
        return transform, {"method": "identity (shared grid)",
                           "similarity_nmi": normalised_mutual_information(
                               f_vals, m_vals, reg_params.mi_histogram_bins),
                           "metric_value": None, "rotation_deg": 0.0, "translation_mm": 0.0,
                           "initialisation": None, "iterations": 0}
    result = register_rigid_images(t1_n4, flair, reg_params, fixed_mask=t1_mask,
                                   multimodal=True, pair=f"{label} FLAIR -> T1w",
                                   initialisations=("identity", "geometry", "moments"))
    return result.transform, {"method": "rigid (Mattes MI)", "similarity_nmi": result.similarity,
                              "metric_value": result.metric_value,
                              "rotation_deg": result.rotation_deg,
                              "translation_mm": result.translation_mm,
                              "initialisation": result.initialisation,
                              "iterations": result.iterations}


def preprocess_session_files(bids_dir: str | Path | None, subject: str, session: str,
                             out_dir: str | Path,
                             check_params: InputCheckParams | None = None,
                             registration_params: RegistrationParams | None = None,
                             mask_params: BrainMaskParams | None = None,
                             t1w: str | Path | None = None,
                             flair: str | Path | None = None) -> dict:
    """Check, preprocess and write one BIDS session; return the written paths.

    Reads ``t1w`` and ``flair`` (the files discovery chose, e.g. ``..._acq-mprage_run-2_T1w.nii``),
    or by default ``bids_dir/sub-S/ses-T/anat/sub-S_ses-T_{T1w,FLAIR}.nii.gz``; writes under
    ``out_dir`` the N4 T1w, N4 FLAIR, brain mask, FLAIR -> T1 transform and the preprocessing QC
    json (which records the input files and what the checks did with negative voxels).
    """
    check_params = check_params or InputCheckParams()
    seconds: dict[str, float] = {}
    timer = time.perf_counter()
    t1_path, flair_path = session_inputs(bids_dir, subject, session, t1w, flair)
    t1, t1_affine, t1_negatives = load_checked(t1_path, "T1w", check_params)
    flair, flair_affine, flair_negatives = load_checked(flair_path, "FLAIR", check_params)
    overlap = check_overlap(t1.shape, t1_affine, flair.shape, flair_affine, t1_path, flair_path,
                            check_params)
    seconds["read_check"] = time.perf_counter() - timer

    result = preprocess_session(t1, t1_affine, flair, flair_affine, registration_params,
                                mask_params, label=f"sub-{subject} ses-{session}")

    def path(product: str) -> Path:
        return product_path(out_dir, product, subject, session)

    timer = time.perf_counter()
    paths = {
        "t1w_n4": io.save_intensity_image(path("t1w_n4"), result.t1_n4, t1_affine),
        "flair_n4": io.save_intensity_image(path("flair_n4"), result.flair_n4, flair_affine),
        "brain_mask": io.save_nifti(path("brain_mask"), result.brain_mask, t1_affine,
                                    dtype=np.uint8),
        "flair_to_t1w": write_transform(path("flair_to_t1w"), result.flair_to_t1),
    }
    seconds["write"] = time.perf_counter() - timer
    qc = dict(result.qc)
    qc.update({"subject": subject, "session": session, "t1w": str(t1_path),
               "flair": str(flair_path), "t1_flair_overlap_fraction": overlap,
               "negatives": {"T1w": t1_negatives, "FLAIR": flair_negatives}})
    qc["seconds"] = {**seconds, **qc["seconds"]}
    paths["preproc_qc"] = io.write_json(path("preproc_qc"), qc)
    return {"paths": paths, "qc": qc}


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline preprocess --t1w T1 --flair FLAIR --subject S --session T --out OUT``
    (or ``--bids BIDS`` instead of ``--t1w/--flair`` for plain file names)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline preprocess",
        description="Per session: input checks, brain mask, N4, FLAIR -> T1 registration.")
    add_input_arguments(parser)
    parser.add_argument("--out", required=True, help="derivatives directory")
    parser.add_argument("--params", help="parameter JSON ({class name: {field: value}}, as "
                        "written by 'python -m pipeline settings'); uses InputCheckParams, "
                        "RegistrationParams and BrainMaskParams")
    parser.add_argument("--threads", type=int, default=1,
                        help="SimpleITK threads (default 1: bit-reproducible outputs)")
    args = parser.parse_args(argv)

    def work(params: dict) -> dict:
        set_threads(args.threads)
        return preprocess_session_files(args.bids, args.subject, args.session, args.out,
                                        params["InputCheckParams"], params["RegistrationParams"],
                                        params["BrainMaskParams"], args.t1w, args.flair)

    sources = [p for p in (args.t1w, args.flair) if p]
    code, out = run_step("preprocess", args.out, args.subject, args.session, sources,
                         args.params, work)
    if code:
        return code
    write_sidecars(needing_sidecars(out["paths"]), [out["qc"]["t1w"], out["qc"]["flair"]])
    qc = out["qc"]
    print(f"preprocess sub-{args.subject} ses-{args.session}: brain {qc['brain_volume_ml']:.0f} "
          f"mL, skull-stripped {qc['skull_stripped']}, FLAIR->T1 "
          f"{qc['flair_to_t1']['method']} (NMI {qc['flair_to_t1']['similarity_nmi']:.3f}), "
          f"{sum(qc['seconds'].values()):.1f} s")
    return 0
