"""The whole workflow on the `ci` preset of the outside-anatomy test bed: real averaged anatomy
(MNI152 2009a) inside a skull, scalp, face and neck the methods never saw, with the scanner
protocol, storage encoding (int16, 12-bit, uint16, float32 with Gaussian noise and negatives,
scl_slope-scaled int16) and noise model varied per subject and session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.phantom.evaluate import evaluate
from pipeline.io import read_tsv

pytest.importorskip("nilearn", reason="the outside-anatomy test bed reads nilearn's template")
pytestmark = pytest.mark.workflow

SEED = 91  # never used while developing any method
SUBJECTS = 3


@pytest.fixture(scope="module")
def mni_run(repo, tool_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("mni")
    bids, out = root / "bids", root / "out"
    overlay = root / "mni.yaml"
    overlay.write_text(f"phantom: {{preset: ci, anatomy: mni152, seed: {SEED}, "
                       f"subjects: {SUBJECTS}, bids_dir: '{bids}'}}\n")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--snakefile",
           str(repo / "workflow" / "Snakefile"), "--configfile", str(overlay),
           "--config", f"out_dir={out}"]
    res = subprocess.run(cmd, cwd=repo, env=tool_env, capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-5000:]
    return bids, Path(f"{bids}-truth"), out


def test_every_encoding_is_read_and_every_session_processed(mni_run):
    bids, truth, out = mni_run
    encodings = set()
    for sub in read_tsv(bids / "participants.tsv").participant_id:
        transforms = json.loads((truth / sub / f"{sub}_transforms.json").read_text())
        encodings |= {s["encoding"] for s in transforms["sessions"].values()}
    assert len(encodings) >= 3
    endpoints = read_tsv(out / "endpoints.tsv")
    assert len(endpoints) == 3 * SUBJECTS


def test_brain_masks_hold_on_whole_head_scans(mni_run):
    bids, truth, out = mni_run
    for qc_path in sorted(out.glob("sub-*/ses-*/anat/*_desc-preproc_qc.json")):
        qc = json.loads(qc_path.read_text())
        sub, ses = f"sub-{qc['subject']}", f"ses-{qc['session']}"
        got = nib.load(out / sub / ses / "anat" / f"{sub}_{ses}_desc-brain_mask.nii.gz")
        want = nib.load(truth / sub / ses / "anat" / f"{sub}_{ses}_desc-brain_mask.nii.gz")
        a, b = np.asarray(got.dataobj) > 0, np.asarray(want.dataobj) > 0
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.95, qc_path.name


def test_endpoints_agree_with_ground_truth(mni_run):
    bids, truth, out = mni_run
    scores, details = evaluate(out, truth, bids)
    value = scores.set_index(["metric", "interval", "kind", "size_bin"]).value
    errors = details["endpoint_errors"]
    assert value[("f1", "all", "t2", "all")] >= 0.8
    assert errors["new_t2_error"].abs().max() <= 1
    got = read_tsv(out / "endpoints.tsv").set_index(["participant_id", "interval"])
    want = read_tsv(truth / "truth_endpoints.tsv").set_index(["participant_id", "interval"])
    # Per-session T2-LV: no cortex or deep grey matter called lesion on real anatomy.
    ratio = got.t2lv_start_ml / want.t2lv_start_ml.reindex(got.index)
    assert ratio.between(0.7, 1.3).all(), ratio.to_dict()
