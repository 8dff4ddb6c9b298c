"""Properties that hold for any input (hypothesis): the input checks on arbitrary NIfTI headers,
and lesion matching under relabelling, reorientation and self-comparison.

Examples are drawn deterministically (``derandomize``), so a run in CI sees the same cases as a
run at a desk; no example database is written.
"""

from __future__ import annotations

import gzip
import tempfile
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import checks
from pipeline.errors import InputError
from pipeline.longitudinal import classify_interval
from pipeline.params import InputCheckParams, LesionParams

PROFILE = settings(deadline=None, max_examples=50, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

# --- input checks on arbitrary headers ----------------------------------------------------------

#: A limit small enough that drawn headers often exceed it while the files stay small.
LIMIT_BYTES = 1 << 20
NAN, INF = float("nan"), float("inf")

SIZES = st.one_of(st.integers(4, 40), st.integers(-3, 3), st.integers(41, 200),
                  st.sampled_from([1000, 4000, 32767]))
ENTRIES = st.one_of(st.floats(-300.0, 300.0), st.sampled_from([0.0, NAN, INF, -INF, 1e30]))
PIXDIMS = st.one_of(st.floats(0.1, 8.0), st.sampled_from([0.0, -1.0, NAN, INF, -INF, 1e30]))
#: Arbitrary values for the header fields the checks read (any may replace a plausible one).
FIELDS = {
    "dim": st.tuples(st.one_of(st.sampled_from([3, 4]), st.integers(-1, 8)), *[SIZES] * 7),
    "datatype": st.sampled_from(sorted(nib.nifti1.data_type_codes.value_set("code"))
                                + [3, 999, -1]),
    "pixdim": st.tuples(st.sampled_from([-1.0, 1.0]), *[PIXDIMS] * 3),
    "sform_code": st.integers(0, 5),
    "qform_code": st.integers(0, 5),
    **{row: st.tuples(*[ENTRIES] * 4) for row in ("srow_x", "srow_y", "srow_z")},
    **{key: ENTRIES for key in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x",
                                 "qoffset_y", "qoffset_z")},
    "scl_slope": st.sampled_from([0.0, 1.0, 2.5, -1.0, NAN, INF]),
    "scl_inter": st.sampled_from([0.0, 1.0, -10.0, NAN, INF]),
    "vox_offset": st.sampled_from([0, 1, 1000]),
}


@st.composite
def nifti_files(draw):
    """(header, suffix, voxels): a plausible 5-7 mm head image (NIfTI-1 or -2, which
    passes every check) with any of its header fields replaced by arbitrary values - dims
    (huge, zero, negative), datatype, voxel sizes (0, NaN, inf), sform/qform codes and
    matrices, scaling, data offset - and voxels (:func:`_voxel_bytes`) that are complete, cut
    short or absent."""
    header = draw(st.sampled_from([nib.Nifti1Header, nib.Nifti2Header]))()
    shape = draw(st.tuples(*[st.integers(20, 40)] * 3))
    voxel_mm = draw(st.tuples(*[st.floats(5.0, 7.0)] * 3))
    header.set_data_shape(shape)
    header.set_data_dtype(draw(st.sampled_from([np.uint8, np.int16, np.uint16, np.float32,
                                                np.float64])))
    header.set_zooms(voxel_mm)
    affine = np.diag([*voxel_mm, 1.0])
    affine[:3, 3] = -0.5 * np.asarray(shape) * voxel_mm
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = header.single_vox_offset
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True)):
        value = draw(FIELDS[name])
        if name == "pixdim":
            value = [*value, 1.0, 1.0, 1.0, 1.0]
        header[name] = value
    suffix = draw(st.sampled_from([".nii", ".nii.gz"]))
    payload = draw(st.sampled_from(["full", "full", "short", "none"]))
    content = draw(st.sampled_from(["ball", "random"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return header, suffix, (payload, content, seed)


def _voxel_bytes(header, payload: str, content: str, seed: int) -> bytes:
    """The voxels the header describes (random bytes or a bright ball), whole or cut short."""
    dim = [int(d) for d in header["dim"]]
    shape = dim[1:dim[0] + 1] if 1 <= dim[0] <= 7 else []
    try:
        dtype = header.get_data_dtype()
    except KeyError:  # an unknown datatype code: write bytes all the same
        dtype = np.dtype(np.uint8)
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else 0
    if payload == "none" or not 0 < n_bytes <= 4 * LIMIT_BYTES or min(shape) < 1:
        return b""
    if content == "ball" and dtype.fields is None:
        ijk = np.indices(shape[:3], dtype=np.float32)
        r2 = sum(((x - (n - 1) / 2) / (n / 3)) ** 2 for x, n in zip(ijk, shape[:3]))
        ball = np.where(r2 < 1, 100.0, 1.0).ravel(order="F")  # NIfTI stores Fortran order
        data = np.resize(ball, n_bytes // dtype.itemsize).astype(dtype).tobytes()
    else:
        data = np.random.default_rng(seed).bytes(n_bytes)
    return data if payload == "full" else data[:n_bytes // 2]


def _write(path: Path, header, voxels: bytes) -> None:
    raw = header.binaryblock + b"\0" * 4
    offset = int(header["vox_offset"])
    raw += b"\0" * max(offset - len(raw), 0) + voxels
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


@PROFILE
@given(nifti_files())
def test_any_header_is_checked_or_refused_by_name_within_bounded_memory(case):
    """Whatever the header says, the checks pass or raise InputError naming the file; nothing
    else escapes (no nibabel or numpy error, no warning), and memory stays bounded."""
    header, suffix, voxels = case
    voxels = _voxel_bytes(header, *voxels)
    params = InputCheckParams(max_image_bytes=LIMIT_BYTES)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"sub-01_ses-m06_T1w{suffix}"
        _write(path, header, voxels)
        tracemalloc.start()
        try:
            checks.load_checked(path, "T1w", params)
            refused = None
        except InputError as exc:
            refused = str(exc)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if refused is not None:
        assert refused.strip() and str(path) in refused
    over_limit = "image size check failed" in (refused or "")
    # Refused on the header: nothing near the image was allocated. Otherwise the checks hold
    # the image as read (<= the limit), its float32 copy and a few masks: a fixed multiple of
    # the limit, never the header's claim.
    assert peak < (LIMIT_BYTES if over_limit else 32 * LIMIT_BYTES + (8 << 20))


# --- lesion matching --------------------------------------------------------------------------

SHAPE = (40, 40, 40)
NOISE = 0.04  # normalised FLAIR noise SD, as in test_longitudinal.py
VOXELS_MM = [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0), (1.5, 1.0, 1.2)]

BLOBS = st.tuples(st.tuples(*[st.integers(6, 33)] * 3), st.floats(1.5, 4.5),
                  st.sampled_from(["stable", "grow", "shrink", "vanish"]), st.booleans())


@st.composite
def intervals(draw):
    """Two sessions' lesion label images (a few blobs in a 40^3 volume: kept, grown, shrunk,
    vanished, plus new ones), T1-hypointense cores, normalised FLAIRs, voxel size, affine."""
    old = draw(st.lists(BLOBS, max_size=4))
    new = draw(st.lists(BLOBS, max_size=3))
    vox = draw(st.sampled_from(VOXELS_MM))
    seed = draw(st.integers(0, 2**32 - 1))
    ijk = np.indices(SHAPE, dtype=np.float32)

    def ball(centre, radius):
        return sum((x - c) ** 2 for x, c in zip(ijk, centre)) <= radius ** 2

    la, lb = np.zeros(SHAPE, np.int32), np.zeros(SHAPE, np.int32)
    ha, hb = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    for label, (centre, radius, fate, hypo) in enumerate(old, start=1):
        la[ball(centre, radius)] = label
        end = {"stable": radius, "grow": radius + 1.5, "shrink": max(radius - 1.0, 1.0),
               "vanish": 0.0}[fate]
        if end:
            lb[ball(centre, end)] = label
        if hypo:
            ha |= ball(centre, radius - 1.0)
            if end:
                hb |= ball(centre, end - 1.0)
    for label, (centre, radius, _, hypo) in enumerate(new, start=len(old) + 1):
        lb[ball(centre, radius)] = label
        if hypo:
            hb |= ball(centre, radius - 1.0)
    rng = np.random.default_rng(seed)
    fa = (1.0 + rng.normal(0.0, NOISE, SHAPE) + 0.5 * (la > 0)).astype(np.float32)
    fb = (1.0 + rng.normal(0.0, NOISE, SHAPE) + 0.5 * (lb > 0)).astype(np.float32)
    affine = np.diag([*vox, 1.0])
    affine[:3, 3] = [-20.0, -20.0, -20.0]
    return {"lesion_a": la, "lesion_b": lb, "flair_norm_a": fa, "flair_norm_b": fb,
            "t1hypo_a": ha, "t1hypo_b": hb, "voxel_size_mm": vox, "affine": affine}


def _classify(case):
    return classify_interval(case["lesion_a"], case["lesion_b"], case["flair_norm_a"],
                             case["flair_norm_b"], case["t1hypo_a"], case["t1hypo_b"],
                             case["voxel_size_mm"], LesionParams(), affine=case["affine"])


def _counts(table) -> dict[tuple[str, str], int]:
    return {key: int(n) for key, n in table.groupby(["kind", "class"]).size().items()}


#: Columns that say what was found (not where it lies in storage order); volumes and
#: centroids compared within 1e-6 (sums taken in another order), the rest exactly.
_FOUND = ["kind", "class", "n_start", "n_end", "merged", "split", "touches_existing"]
_MEASURED = ["volume_start_mm3", "volume_end_mm3", "x_subject_mm", "y_subject_mm",
             "z_subject_mm"]


def _same_rows(table, other) -> bool:
    """Whether two lesion tables hold the same rows in any order."""
    left = [(tuple(r[c] for c in _FOUND), np.array([r[c] for c in _MEASURED]))
            for _, r in other.iterrows()]
    for _, row in table.iterrows():
        found, measured = tuple(row[c] for c in _FOUND), np.array([row[c] for c in _MEASURED])
        match = [i for i, (f, m) in enumerate(left)
                 if f == found and np.allclose(m, measured, rtol=0, atol=1e-6)]
        if not match:
            return False
        left.pop(match[0])
    return not left


@PROFILE
@given(intervals())
def test_a_session_compared_with_itself_has_no_change(case):
    """Lesions compared with themselves: every T2 group stable and every black hole persistent
    (no new, enlarging, shrinking, resolved or unconfirmed lesion), no new-lesion voxel."""
    same = dict(case, lesion_b=case["lesion_a"], flair_norm_b=case["flair_norm_a"],
                t1hypo_b=case["t1hypo_a"])
    table, new_labels = _classify(same)
    changed = table[table["class"] != "stable"]
    changed = changed[~((changed["kind"] == "t1hypo") & (changed["class"] == "persistent"))]
    assert changed.empty, changed[["kind", "class", "volume_start_mm3", "volume_end_mm3"]]
    assert not new_labels.any()


def _reoriented(case, axes, flips):
    """``case`` stored in another voxel order: axes permuted (new axis k is old axis
    ``axes[k]``), then flipped where ``flips``; the affine changed so every voxel keeps its
    world position. Returns (the moved case, the function that moves an array)."""
    axes = list(axes)
    shape = [np.shape(case["lesion_a"])[a] for a in axes]

    def reorient(arr):
        return np.flip(np.transpose(arr, axes), [k for k in range(3) if flips[k]])

    # new voxel j -> old voxel i: i[axes[k]] = j[k], or shape[k] - 1 - j[k] when flipped
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for k, a in enumerate(axes):
        to_old[a, k] = -1.0 if flips[k] else 1.0
        to_old[a, 3] = shape[k] - 1 if flips[k] else 0.0
    moved = {key: reorient(value) for key, value in case.items()
             if isinstance(value, np.ndarray) and value.ndim == 3}
    moved["voxel_size_mm"] = tuple(case["voxel_size_mm"][a] for a in axes)
    moved["affine"] = case["affine"] @ to_old
    return moved, reorient


@PROFILE
@given(intervals(), st.permutations([0, 1, 2]), st.tuples(*[st.booleans()] * 3))
def test_lesion_counts_do_not_depend_on_storage_orientation(case, axes, flips):
    """The same physical lesions stored in another voxel order (axes permuted and flipped, the
    affine changed to match) give the same rows and the same new-lesion voxels."""
    moved, reorient = _reoriented(case, axes, flips)
    table, new_labels = _classify(case)
    table_moved, new_moved = _classify(moved)
    assert _counts(table_moved) == _counts(table)
    assert _same_rows(table_moved, table), (table, table_moved)
    assert np.array_equal(new_moved > 0, reorient(new_labels > 0))


@PROFILE
@given(intervals(), st.randoms(use_true_random=False))
def test_lesion_counts_do_not_depend_on_label_ids(case, random):
    """Label images whose lesion ids are permuted describe the same lesions."""
    relabelled = dict(case)
    for key in ("lesion_a", "lesion_b"):
        ids = list(range(1, int(case[key].max()) + 1))
        random.shuffle(ids)
        lut = np.array([0, *ids], dtype=np.int32)
        relabelled[key] = lut[case[key]]
    table, new_labels = _classify(case)
    table_relabelled, new_relabelled = _classify(relabelled)
    pd.testing.assert_frame_equal(table_relabelled, table)
    assert np.array_equal(new_relabelled, new_labels)


def test_a_lesion_in_the_gap_between_two_is_matched_the_same_in_any_storage_order():
    """A tie the random blobs above seldom draw, in its smallest form: at a, a 1-voxel-thick disk
    (radius 2, 13 mm^3) at I = 10 and a 5-voxel-thick disk (radius 5, 405 mm^3) at I = 12-16;
    at b, only a disk of radius 3 (29 mm^3) in the gap at I = 11, every voxel of it inside both
    grown a masks. Stored as is: 13 mm^3 resolved, 405 -> 29 mm^3 shrinking; flipped along I:
    405 mm^3 resolved, 13 -> 29 mm^3 enlarging."""
    j, k = np.indices(SHAPE[1:])

    def disk(radius):
        return (j - 20) ** 2 + (k - 20) ** 2 <= radius ** 2

    a, b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    a[10][disk(2)] = True
    a[12:17][:, disk(5)] = True
    b[11][disk(3)] = True
    rng = np.random.default_rng(0)
    case = {"lesion_a": a, "lesion_b": b,
            "flair_norm_a": (1.0 + rng.normal(0.0, NOISE, SHAPE) + 0.5 * a).astype(np.float32),
            "flair_norm_b": (1.0 + rng.normal(0.0, NOISE, SHAPE) + 0.5 * b).astype(np.float32),
            "t1hypo_a": np.zeros(SHAPE, bool), "t1hypo_b": np.zeros(SHAPE, bool),
            "voxel_size_mm": (1.0, 1.0, 1.0), "affine": np.eye(4)}
    moved, _ = _reoriented(case, (0, 1, 2), (True, False, False))
    assert _counts(_classify(moved)[0]) == _counts(_classify(case)[0])
