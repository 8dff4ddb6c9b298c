"""A skeleton BIDS dataset of empty files, for dry runs of the workflow."""

from __future__ import annotations

import os
from pathlib import Path

SESSIONS = ("baseline", "m06", "m12")


def make_skeleton(root: Path, subjects: dict[str, str], missing: tuple[tuple[str, str, str], ...] = (),
                  masks: bool = False) -> Path:
    """Write sub-*/ses-*/anat/*_{T1w,FLAIR}.nii.gz (empty) and participants.tsv.

    subjects: label -> arm. missing: (subject, session, suffix) files to leave out.
    """
    for sub in subjects:
        for ses in SESSIONS:
            anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            for suffix in ("T1w", "FLAIR"):
                if (sub, ses, suffix) not in missing:
                    (anat / f"sub-{sub}_ses-{ses}_{suffix}.nii.gz").touch()
            if masks:
                mdir = root / "derivatives" / "lesions" / f"sub-{sub}" / f"ses-{ses}" / "anat"
                mdir.mkdir(parents=True, exist_ok=True)
                (mdir / f"sub-{sub}_ses-{ses}_desc-lesion_mask.nii.gz").touch()
    lines = ["participant_id\tarm"] + [f"sub-{s}\t{a}" for s, a in subjects.items()]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    (root / "dataset_description.json").write_text('{"Name": "skeleton", "BIDSVersion": "1.9.0"}\n')
    return root


#: Files of a dataset named as real ones are: entities (acq, ce, rec, run, part), .nii and
#: .nii.gz, a contrast-enhanced T1w, repeated runs, two FLAIR acquisitions, a stray file.
REAL_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("01", "baseline"): ("acq-mprage_run-1_T1w.nii.gz", "acq-mprage_run-2_T1w.nii.gz",
                         "acq-mprage_ce-gadolinium_T1w.nii.gz", "acq-3D_FLAIR.nii",
                         "acq-2D_FLAIR.nii.gz", "acq-3D_FLAIR.json"),
    ("01", "m06"): ("acq-mprage_rec-norm_run-02_T1w.nii", "acq-3D_FLAIR.nii.gz"),
    ("01", "m12"): ("acq-mprage_T1w.nii.gz", "acq-3D_part-mag_FLAIR.nii.gz"),
    ("02", "baseline"): ("acq-mprage_T1w.nii.gz", "acq-3D_FLAIR.nii.gz"),
    ("02", "m06"): ("acq-mprage_T1w.nii.gz", "acq-3D_FLAIR.nii.gz"),
    ("02", "m12"): ("acq-mprage_T1w.nii.gz", "acq-3D_FLAIR.nii.gz"),
}
#: sub-01's visit dates (sessions.tsv acq_time); sub-02 has no sessions.tsv.
REAL_VISITS = {"baseline": "2019-03-04", "m06": "2019-09-30T09:15:00", "m12": "2020-03-16"}


def make_real_names_skeleton(root: Path, names: dict[tuple[str, str], tuple[str, ...]] | None = None,
                             visits: dict[str, str] | None = None) -> Path:
    """Write empty files named :data:`REAL_NAMES` (``sub-<s>_ses-<t>_`` prepended), sub-01's
    sessions.tsv (:data:`REAL_VISITS`, column acq_time) and participants.tsv (01 IDG, 02 TG)."""
    names = REAL_NAMES if names is None else names
    for (sub, ses), files in names.items():
        anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for name in files:
            (anat / f"sub-{sub}_ses-{ses}_{name}").touch()
    visits = REAL_VISITS if visits is None else visits
    lines = ["session_id\tacq_time"] + [f"ses-{s}\t{t}" for s, t in visits.items()]
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("\n".join(lines) + "\n")
    subjects = sorted({sub for sub, _ in names})
    arms = ["IDG" if i % 2 == 0 else "TG" for i in range(len(subjects))]
    rows = ["participant_id\tarm"] + [f"sub-{s}\t{a}" for s, a in zip(subjects, arms)]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    (root / "dataset_description.json").write_text('{"Name": "skeleton", "BIDSVersion": "1.9.0"}\n')
    return root


#: Entries of a dataset root named like subject folders that are not ones: name -> whether it is
#: a folder (a bytes name is not UTF-8).
ODD_SUBJECT_ENTRIES: dict[str | bytes, bool] = {
    "sub-001_old": True, "sub-a b": True, "sub-a;b": True, "sub-": True, "sub-01.bak": True,
    "sub-02": False, ".sub-03": True, "Sub-04": True, "sub-a\tb": True, b"sub-caf\xe9": True,
}
#: Entries of a subject folder: a copied session, a session not in the config, a zipped session.
ODD_SESSION_ENTRIES: dict[str | bytes, bool] = {"ses-m06 (copy)": True, "ses-m24": True,
                                                "ses-m12.zip": False}


def add_entry(parent: Path, name: str | bytes, folder: bool) -> bytes:
    """Create ``parent/name``: a folder holding an ``anat/`` T1w and FLAIR (empty files), or an
    empty file. Returns the path as bytes (``name`` may not be UTF-8)."""
    path = os.path.join(os.fsencode(parent), os.fsencode(name))
    if not folder:
        with open(path, "wb"):
            pass
        return path
    anat = os.path.join(path, b"anat")
    os.makedirs(anat)
    for suffix in (b"T1w", b"FLAIR"):
        with open(os.path.join(anat, b"img_" + suffix + b".nii.gz"), "wb"):
            pass
    return path


def add_odd_names(root: Path, subject: str = "01", without_images: str = "07") -> Path:
    """Add :data:`ODD_SUBJECT_ENTRIES` to a skeleton's root, :data:`ODD_SESSION_ENTRIES` to
    ``sub-<subject>/``, and a participants.tsv row for ``sub-<without_images>``, which has no
    folder."""
    for name, folder in ODD_SUBJECT_ENTRIES.items():
        add_entry(root, name, folder)
    for name, folder in ODD_SESSION_ENTRIES.items():
        add_entry(root / f"sub-{subject}", name, folder)
    with open(root / "participants.tsv", "a") as fh:
        fh.write(f"sub-{without_images}\tIDG\n")
    return root
