"""A skeleton BIDS dataset of empty files, for dry runs of the workflow."""

from __future__ import annotations

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
