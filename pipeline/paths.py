"""The one helper that names every file the pipeline reads or writes (BIDS entities).

Raw inputs (BIDS): plain names, as the phantom writes them (:func:`raw_image`),
    sub-<s>/ses-<t>/anat/sub-<s>_ses-<t>_{T1w,FLAIR}.nii.gz
or names with more entities (``acq-``, ``run-``, ``.nii``, ...), found and chosen by
:mod:`pipeline.bids`, which records the files in the discovery sessions table.

Derivatives under ``out_dir`` (BIDS-Derivatives; ``space-subject`` is the unbiased subject space)
are the :data:`PRODUCTS`: what each per-subject step writes, by name, once for each session, each
interval or the subject. The steps write them through :func:`product_path`, and the workflow
declares :func:`step_products` as each job's outputs, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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


# ---- what each step writes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Product:
    """One file a per-subject step writes.

    ``scope`` is ``session`` (once per session: ``ses`` is filled in), ``interval`` (once per
    interval: ``from_``/``to`` are its sessions) or ``subject``; ``entities`` are the other
    :func:`bids_path` arguments; ``sidecar``: a ``.json`` with the image's ``Sources`` is written
    beside it (:func:`pipeline.provenance.write_sidecars`); ``intermediate``: only later steps of
    the same subject read it, so the workflow deletes it (and its sidecar) once they have run,
    unless asked to keep intermediates.
    """

    step: str
    scope: str
    entities: dict
    sidecar: bool = False
    intermediate: bool = False


def _products() -> dict[str, Product]:
    session, interval, subject = "session", "interval", "subject"
    sub_space = {"space": "subject"}
    return {
        # preprocess, native space of each session
        "t1w_n4": Product("preprocess", session, {"desc": "n4", "suffix": "T1w"}, True, True),
        "flair_n4": Product("preprocess", session, {"desc": "n4", "suffix": "FLAIR"}, True,
                            True),
        "brain_mask": Product("preprocess", session, {"desc": "brain", "suffix": "mask"}, True),
        "flair_to_t1w": Product("preprocess", session, {"from_": "FLAIR", "to": "T1w",
                                                        "mode": "image", "suffix": "xfm",
                                                        "ext": ".txt"}),
        "preproc_qc": Product("preprocess", session, {"desc": "preproc", "suffix": "qc",
                                                      "ext": ".json"}),
        # register: every session into subject space
        "t1w_to_subject": Product("register", session, {"from_": "T1w", "to": "subject",
                                                        "mode": "image", "suffix": "xfm",
                                                        "ext": ".txt"}),
        "t1w_subject": Product("register", session, {**sub_space, "desc": "preproc",
                                                     "suffix": "T1w"}),
        "flair_subject": Product("register", session, {**sub_space, "desc": "preproc",
                                                       "suffix": "FLAIR"}),
        "t1w_flairres_subject": Product("register", session, {**sub_space, "desc": "flairres",
                                                              "suffix": "T1w"}),
        "brain_mask_subject": Product("register", session, {**sub_space, "desc": "brain",
                                                            "suffix": "mask"}),
        "template": Product("register", subject, {**sub_space, "desc": "template",
                                                  "suffix": "T1w"}, True),
        "registration_qc": Product("register", subject, {"desc": "registration", "suffix": "qc",
                                                         "ext": ".tsv"}),
        # segment: each session's lesions in subject space
        "lesion_mask": Product("segment", session, {**sub_space, "desc": "lesion",
                                                    "suffix": "mask"}, True),
        "lesion_dseg": Product("segment", session, {**sub_space, "desc": "lesion",
                                                    "suffix": "dseg"}, True),
        "t1hypo_mask": Product("segment", session, {**sub_space, "desc": "t1hypo",
                                                    "suffix": "mask"}, True),
        "flair_norm": Product("segment", session, {**sub_space, "desc": "norm",
                                                   "suffix": "FLAIR"}, True),
        "t1w_norm": Product("segment", session, {**sub_space, "desc": "norm", "suffix": "T1w"},
                            True),
        "session_lesions": Product("segment", session, {**sub_space, "desc": "lesion",
                                                        "suffix": "lesions", "ext": ".tsv"}),
        "lesion_qc": Product("segment", session, {**sub_space, "desc": "lesion", "suffix": "qc",
                                                  "ext": ".json"}),
        "lesion_summary": Product("segment", subject, {"desc": "lesion", "suffix": "qc",
                                                       "ext": ".tsv"}),
        # longitudinal: each interval's lesions, the subject's endpoints
        "interval_lesions": Product("longitudinal", interval, {"suffix": "lesions",
                                                               "ext": ".tsv"}),
        "new_dseg": Product("longitudinal", interval, {**sub_space, "desc": "new",
                                                       "suffix": "dseg"}),
        "endpoints": Product("longitudinal", subject, {"suffix": "endpoints", "ext": ".tsv"}),
        # qc: the subject's figures
        "registration_figure": Product("qc", subject, {"datatype": "figures",
                                                      "desc": "registration", "suffix": "qc",
                                                      "ext": ".png"}),
        "lesion_figure": Product("qc", subject, {"datatype": "figures", "desc": "lesion",
                                                "suffix": "qc", "ext": ".png"}),
        "new_figure": Product("qc", interval, {"datatype": "figures", "desc": "new",
                                              "suffix": "qc", "ext": ".png"}),
    }


#: product name -> :class:`Product`, in the order of the data flow.
PRODUCTS: dict[str, Product] = _products()


def product_path(root: str | Path, product: str, sub: str, ses: str | None = None,
                 interval: tuple[str, str] | None = None) -> Path:
    """Path of one product of subject ``sub``: give ``ses`` for a session product, ``interval``
    (start, end sessions) for an interval product, neither for a subject product."""
    spec = PRODUCTS[product]
    given = {"session": ses is not None, "interval": interval is not None}
    if any(given[scope] != (scope == spec.scope) for scope in given):
        raise ValueError(f"product {product!r} is a {spec.scope} product: ses={ses!r}, "
                         f"interval={interval!r}")
    if spec.scope == "interval":
        return bids_path(root, sub, from_=interval[0], to=interval[1], **spec.entities)
    return bids_path(root, sub, ses, **spec.entities)


def sidecar_path(image_path: str | Path) -> Path:
    """The ``.json`` sidecar beside a NIfTI image."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name.removesuffix(".gz").removesuffix(".nii")
                                + ".json")


def products_of(step: str, root: str | Path, sub: str, ses: str | None = None,
                interval: tuple[str, str] | None = None, intermediate: bool | None = None
                ) -> dict[str, Path]:
    """The files ``step`` writes for one session (``ses``), one interval, or the subject
    (neither): product name -> path, and ``<name>_json`` -> its sidecar; only the intermediates
    (``intermediate=True``) or only the others (``False``) when asked."""
    scope = "session" if ses is not None else "interval" if interval is not None else "subject"
    files: dict[str, Path] = {}
    for name, spec in PRODUCTS.items():
        if intermediate is not None and spec.intermediate != intermediate:
            continue
        if spec.step == step and spec.scope == scope:
            files[name] = product_path(root, name, sub, ses, interval)
            if spec.sidecar:
                files[f"{name}_json"] = sidecar_path(files[name])
    return files


def step_products(step: str, root: str | Path, sub: str, sessions: Sequence[str],
                  intervals: Sequence[tuple[str, str]] = (), intermediate: bool | None = None
                  ) -> dict[str, Path]:
    """Every file ``step`` writes for subject ``sub`` with these sessions and intervals, by a
    name that is a Python identifier: ``<product>`` for the subject's, ``<product>_<ses>`` and
    ``<product>_<a>_<b>`` for a session's and an interval's (``_json`` before them: a sidecar);
    ``intermediate`` as in :func:`products_of`."""
    files = products_of(step, root, sub, intermediate=intermediate)
    for ses in sessions:
        files.update({f"{k}_{ses}": v for k, v in
                      products_of(step, root, sub, ses=ses, intermediate=intermediate).items()})
    for a, b in intervals:
        files.update({f"{k}_{a}_{b}": v for k, v in
                      products_of(step, root, sub, interval=(a, b),
                                  intermediate=intermediate).items()})
    return files


def needing_sidecars(written: dict[str, Path]) -> list[Path]:
    """Of a step's written files, keyed by product name, the images that get a ``.json``."""
    return [path for name, path in written.items() if name in PRODUCTS and PRODUCTS[name].sidecar]
