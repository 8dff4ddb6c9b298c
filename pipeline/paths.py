"""The one helper that names every file the pipeline reads or writes (BIDS entities).

Raw inputs (BIDS): plain names, as the phantom writes them (:func:`raw_image`),
    sub-<s>/ses-<t>/anat/sub-<s>_ses-<t>_{T1w,FLAIR}.nii.gz
or names with more entities (``acq-``, ``run-``, ``.nii``, ...), found and chosen by
:mod:`pipeline.bids`, which records the files in the discovery sessions table.

Derivatives under ``out_dir`` (BIDS-Derivatives; ``space-subject`` is the unbiased subject space):

=====================  ======================================================================
product                path (``bids_path`` arguments)
=====================  ======================================================================
N4 T1 (native)         ses, desc="n4", suffix="T1w"
N4 FLAIR (native)      ses, desc="n4", suffix="FLAIR"
brain mask (native T1) ses, desc="brain", suffix="mask"
FLAIR -> T1 transform  ses, from_="FLAIR", to="T1w", mode="image", suffix="xfm", ext=".txt"
T1 -> subject xfm      ses, from_="T1w", to="subject", mode="image", suffix="xfm", ext=".txt"
preprocessing QC       ses, desc="preproc", suffix="qc", ext=".json"
T1 in subject space    ses, space="subject", desc="preproc", suffix="T1w"
FLAIR in subject space ses, space="subject", desc="preproc", suffix="FLAIR"
T1 at FLAIR resolution ses, space="subject", desc="flairres", suffix="T1w"
brain mask (subject)   ses, space="subject", desc="brain", suffix="mask"
T2 lesion mask         ses, space="subject", desc="lesion", suffix="mask"
T2 lesion labels       ses, space="subject", desc="lesion", suffix="dseg"
T1-hypo mask           ses, space="subject", desc="t1hypo", suffix="mask"
normalised FLAIR       ses, space="subject", desc="norm", suffix="FLAIR"
normalised T1          ses, space="subject", desc="norm", suffix="T1w"
segmentation QC        ses, space="subject", desc="lesion", suffix="qc", ext=".json"
session lesion table   ses, space="subject", desc="lesion", suffix="lesions", ext=".tsv"
subject template       space="subject", desc="template", suffix="T1w"   (no ses)
registration table     desc="registration", suffix="qc", ext=".tsv"      (no ses)
segmentation summary   desc="lesion", suffix="qc", ext=".tsv"            (no ses)
interval lesion table  from_=a, to=b, suffix="lesions", ext=".tsv"       (no ses)
new-lesion labels      from_=a, to=b, space="subject", desc="new", suffix="dseg"
subject endpoints      suffix="endpoints", ext=".tsv"                     (no ses)
QC figures             datatype="figures", ... ext=".png"
=====================  ======================================================================
"""

from __future__ import annotations

import re
from pathlib import Path

# A Snakemake wildcard such as "{subject}" stands in for a label when the workflow builds patterns.
_WILDCARD = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")

#: BIDS entity order in file names.
ENTITY_ORDER = ("sub", "ses", "from", "to", "space", "desc", "mode")


def bids_path(
    root: str | Path,
    sub: str,
    ses: str | None = None,
    *,
    suffix: str,
    ext: str = ".nii.gz",
    datatype: str = "anat",
    from_: str | None = None,
    to: str | None = None,
    space: str | None = None,
    desc: str | None = None,
    mode: str | None = None,
) -> Path:
    """Path of one file: ``root/sub-<s>[/ses-<t>]/<datatype>/sub-<s>[_ses-<t>]_..._<suffix><ext>``.

    ``sub`` and ``ses`` are labels without their ``sub-``/``ses-`` prefixes. Subject-level files
    (``ses=None``) live in ``root/sub-<s>/<datatype>/``. A label may be a Snakemake wildcard
    (``"{subject}"``) so the workflow builds its patterns with this same function.
    """
    for key, value in (("sub", sub), ("ses", ses), ("from", from_), ("to", to),
                       ("space", space), ("desc", desc), ("mode", mode)):
        if value is not None and not (str(value).isalnum() or _WILDCARD.match(str(value))):
            raise ValueError(f"BIDS entity {key}={value!r} must be a non-empty alphanumeric label")
    values = {"sub": sub, "ses": ses, "from": from_, "to": to, "space": space, "desc": desc,
              "mode": mode}
    name = "_".join(f"{k}-{values[k]}" for k in ENTITY_ORDER if values[k] is not None)
    folder = Path(root) / f"sub-{sub}"
    if ses is not None:
        folder = folder / f"ses-{ses}"
    return folder / datatype / f"{name}_{suffix}{ext}"


def raw_image(bids_dir: str | Path, sub: str, ses: str, suffix: str) -> Path:
    """A raw BIDS anatomical image: ``suffix`` is ``T1w`` or ``FLAIR``."""
    return bids_path(bids_dir, sub, ses, suffix=suffix)
