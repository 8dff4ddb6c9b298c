"""Per-subject quality-control figures (PNG), all in the subject space.

Three figures per subject, each a grid of axial / coronal / sagittal slices (RAS display:
patient right on the right of axial and coronal views, anterior on the right of sagittal views):

- ``desc-registration``: every session's T1 resampled into the subject space with the edges of the
  subject template drawn on top (Canny, Canny 1986). A session that is misregistered shows its
  anatomy shifted against the template edges.
- ``desc-lesion``: every session's FLAIR with the T2 lesion mask outlined and the T1-hypointense
  mask filled in another colour, through the slices holding the most lesion voxels (the same
  slices for every session, so the sessions compare).
- ``from-<a>_to-<b>_desc-new`` (one per interval): sessions a and b with the new T2 lesions of the
  interval outlined at a and filled at b, through the slices holding the most new-lesion voxels;
  a new lesion must be absent at a and present at b.

Figures are drawn with matplotlib's Agg renderer at a fixed size and dpi and saved without
software or time metadata, so rerunning on the same images writes the same bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from skimage.feature import canny

from pipeline.errors import InputError
from pipeline.cli import run_command
from pipeline.imagespace import require_same_grid, voxel_sizes
from pipeline.io import atomic_path, load_nifti
from pipeline.paths import product_path

#: Figure width (inches), height per row (inches) and resolution: fixed so reruns match.
FIG_WIDTH_IN = 9.0
ROW_HEIGHT_IN = 3.0
DPI = 100
#: Overlay colours.
EDGE_COLOUR = "#39ff14"
T2_COLOUR = "#ffd400"
T1HYPO_COLOUR = "#00e5ff"
NEW_COLOUR = "#ff2a2a"
VIEWS = ("axial", "coronal", "sagittal")


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip voxel axes to the closest RAS orientation (no resampling).

    Parameters
    ----------
    data : ndarray of shape (I, J, K)
    affine : (4, 4) voxel -> world (RAS mm)

    Returns
    -------
    data_ras : ndarray whose axes point (approximately) right, anterior, superior
    voxel_mm : (3,) voxel sizes along those axes, mm
    """
    if data.ndim != 3:
        raise InputError(f"image must be 3-D, got shape {data.shape}")
    ornt = nib.orientations.io_orientation(affine)
    to_canonical = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    data_ras = nib.orientations.apply_orientation(data, to_canonical)
    voxel = voxel_sizes(affine)
    order = np.argsort(to_canonical[:, 0])  # new axis n comes from old axis order[n]
    return np.ascontiguousarray(data_ras), voxel[order]


def select_slices(weight: np.ndarray, fallback: np.ndarray | None = None) -> tuple[int, int, int]:
    """Axial/coronal/sagittal slice indices through the most weight.

    Parameters
    ----------
    weight : ndarray of shape (X, Y, Z), RAS axes (e.g. lesion mask summed over sessions)
    fallback : same shape; used when ``weight`` is all zero (e.g. the brain), its centre of mass

    Returns
    -------
    (k_axial, j_coronal, i_sagittal) : indices along Z, Y and X
    """
    weight = np.asarray(weight, dtype=float)
    if weight.sum() <= 0:
        source = np.asarray(fallback, dtype=float) if fallback is not None else None
        if source is None or source.sum() <= 0:
            return weight.shape[2] // 2, weight.shape[1] // 2, weight.shape[0] // 2
        centre = [int(round(float((source.sum(axis=tuple(a for a in range(3) if a != ax))
                                   * np.arange(source.shape[ax])).sum() / source.sum())))
                  for ax in range(3)]
        return centre[2], centre[1], centre[0]
    k = int(np.argmax(weight.sum(axis=(0, 1))))
    j = int(np.argmax(weight.sum(axis=(0, 2))))
    i = int(np.argmax(weight.sum(axis=(1, 2))))
    return k, j, i


def _view(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """2-D slice with the display's horizontal axis first: to show with ``.T`` and origin lower."""
    if view == "axial":
        return volume[:, :, index]
    if view == "coronal":
        return volume[:, index, :]
    return volume[index, :, :]


def _aspect(voxel_mm: np.ndarray, view: str) -> float:
    """imshow aspect (vertical / horizontal pixel size) of a view."""
    horizontal, vertical = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[view]
    return float(voxel_mm[vertical] / voxel_mm[horizontal])


def _window(volume: np.ndarray, brain: np.ndarray | None = None) -> tuple[float, float]:
    """Display window: 1st-99.5th percentile inside the brain (non-zero voxels without a mask).

    Inside the brain, so that bright scalp fat does not wash out the white matter and lesions.
    """
    inside = volume > 0 if brain is None or not np.any(brain) else np.asarray(brain) > 0
    values = volume[inside]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _grey(ax: Axes, plane: np.ndarray, window: tuple[float, float], aspect: float) -> None:
    ax.imshow(plane.T, cmap="gray", vmin=window[0], vmax=window[1], origin="lower",
              aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _outline(ax: Axes, mask_plane: np.ndarray, colour: str, width: float = 0.9) -> None:
    if mask_plane.any():  # contour of an empty mask has no level to draw
        # No ``origin`` argument: Z[0, 0] then sits at (0, 0), the centre of imshow's first
        # pixel ("lower" would shift the outline by half a voxel).
        ax.contour(mask_plane.T.astype(float), levels=[0.5], colors=[colour], linewidths=width)


def _fill(ax: Axes, mask_plane: np.ndarray, colour: str, aspect: float,
          alpha: float = 0.55) -> None:
    rgba = np.zeros(mask_plane.T.shape + (4,))
    rgba[mask_plane.T] = to_rgba(colour, alpha)
    ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")


def _figure(n_rows: int, title: str) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(FIG_WIDTH_IN, ROW_HEIGHT_IN * n_rows + 0.6), dpi=DPI,
                 facecolor="black")
    axes = np.asarray(fig.subplots(n_rows, 3, squeeze=False))
    height_in = fig.get_figheight()
    fig.suptitle(title, color="white", fontsize=11, y=1 - 0.12 / height_in, va="top")
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=1 - 0.62 / height_in,
                        wspace=0.02, hspace=0.08)
    for ax in axes.ravel():
        ax.set_facecolor("black")
    return fig, axes


def _row_label(ax: Axes, text: str) -> None:
    ax.set_ylabel(text, color="white", fontsize=10)


def _check_same_grid(volumes: Mapping[str, np.ndarray], what: str) -> tuple[int, ...]:
    shapes = {name: v.shape for name, v in volumes.items()}
    first = next(iter(shapes.values()))
    for shape in shapes.values():
        require_same_grid(shape, None, first, None,
                          f"{what}: images are not on one subject grid (shapes {shapes}); "
                          "re-run the register stage")
    return first


def template_edges(template_plane: np.ndarray, sigma_px: float = 1.5) -> np.ndarray:
    """Canny edges of one template slice (boolean, same shape), thresholds as gradient quantiles.

    Quantile thresholds (the strongest 15 % / 5 % of gradients) make the edge density independent
    of the image's intensity scale.
    """
    plane = np.asarray(template_plane, dtype=float)
    if np.ptp(plane) == 0:
        return np.zeros(plane.shape, dtype=bool)
    plane = (plane - plane.min()) / np.ptp(plane)
    return canny(plane, sigma=sigma_px, low_threshold=0.85, high_threshold=0.95,
                 use_quantiles=True)


def registration_figure(t1: Mapping[str, np.ndarray], template: np.ndarray,
                        voxel_mm: Sequence[float], title: str = "",
                        brain: Mapping[str, np.ndarray] | None = None) -> Figure:
    """Each session's subject-space T1 with the template's edges on top.

    Parameters
    ----------
    t1 : session label -> ndarray of shape (X, Y, Z), RAS axes, subject grid
    template : ndarray of shape (X, Y, Z), the subject template on the same grid
    voxel_mm : (3,) voxel sizes, mm
    title : figure title
    brain : session label -> brain mask (same grid), for the display window; optional

    Returns
    -------
    matplotlib Figure (rows = sessions, columns = axial, coronal, sagittal)
    """
    _check_same_grid({**t1, "template": template}, "registration QC")
    voxel = np.asarray(voxel_mm, dtype=float)
    lo, hi = _window(template)
    slices = select_slices(np.zeros(template.shape), fallback=template > (lo + hi) / 4)
    fig, axes = _figure(len(t1), title or "Registration: session T1 (grey), template edges "
                                          "(green)")
    edges = {view: template_edges(_view(template, view, idx)) for view, idx in zip(VIEWS, slices)}
    for row, (session, volume) in enumerate(t1.items()):
        window = _window(volume, (brain or {}).get(session))
        for col, (view, idx) in enumerate(zip(VIEWS, slices)):
            ax = axes[row, col]
            aspect = _aspect(voxel, view)
            _grey(ax, _view(volume, view, idx), window, aspect)
            _fill(ax, edges[view], EDGE_COLOUR, aspect, alpha=0.9)
            if row == 0:
                ax.set_title(f"{view} {idx}", color="white", fontsize=9)
        _row_label(axes[row, 0], f"ses-{session}")
    return fig


def lesion_figure(flair: Mapping[str, np.ndarray], lesion: Mapping[str, np.ndarray],
                  t1hypo: Mapping[str, np.ndarray], voxel_mm: Sequence[float],
                  title: str = "", brain: Mapping[str, np.ndarray] | None = None) -> Figure:
    """Each session's FLAIR with T2 lesions outlined and T1-hypointense voxels filled.

    Parameters
    ----------
    flair, lesion, t1hypo : session label -> ndarray of shape (X, Y, Z), RAS axes, subject grid
        (masks: non-zero = in the mask)
    voxel_mm : (3,) voxel sizes, mm
    brain : session label -> brain mask, for the display window; optional

    Returns
    -------
    Figure (rows = sessions), slices through the most lesion voxels over all sessions.
    """
    _check_same_grid({**{f"FLAIR {s}": v for s, v in flair.items()},
                      **{f"lesion {s}": v for s, v in lesion.items()},
                      **{f"t1hypo {s}": v for s, v in t1hypo.items()}}, "lesion QC")
    voxel = np.asarray(voxel_mm, dtype=float)
    load = sum((np.asarray(m) > 0).astype(np.int32) for m in lesion.values())
    first = next(iter(flair.values()))
    slices = select_slices(load, fallback=first > _window(first)[0])
    fig, axes = _figure(len(flair), title or "Lesions: FLAIR, T2 lesions (yellow outline), "
                                             "T1-hypointense (cyan fill)")
    for row, session in enumerate(flair):
        window = _window(flair[session], (brain or {}).get(session))
        for col, (view, idx) in enumerate(zip(VIEWS, slices)):
            ax = axes[row, col]
            aspect = _aspect(voxel, view)
            _grey(ax, _view(flair[session], view, idx), window, aspect)
            # T1-hypo filled, not outlined: a black hole lies inside a T2 lesion and often
            # shares its border, where two outlines would blend into a third colour.
            _fill(ax, _view(np.asarray(t1hypo[session]) > 0, view, idx), T1HYPO_COLOUR, aspect,
                  alpha=0.45)
            _outline(ax, _view(np.asarray(lesion[session]) > 0, view, idx), T2_COLOUR, 1.0)
            if row == 0:
                ax.set_title(f"{view} {idx}", color="white", fontsize=9)
        n_vox = int((np.asarray(lesion[session]) > 0).sum())
        _row_label(axes[row, 0], f"ses-{session} ({n_vox} lesion voxels)")
    return fig


def new_lesion_figure(flair_a: np.ndarray, flair_b: np.ndarray, lesion_a: np.ndarray,
                      lesion_b: np.ndarray, new_labels: np.ndarray, voxel_mm: Sequence[float],
                      sessions: tuple[str, str], title: str = "",
                      brain: tuple[np.ndarray, np.ndarray] | None = None) -> Figure:
    """Sessions a and b with the interval's new T2 lesions filled.

    Parameters
    ----------
    flair_a, flair_b, lesion_a, lesion_b : ndarray of shape (X, Y, Z), RAS axes, subject grid
    new_labels : ndarray of shape (X, Y, Z), 1..n new lesions of the interval (0 elsewhere)
    voxel_mm : (3,) voxel sizes, mm
    sessions : (a, b) labels
    brain : (brain mask at a, at b), for the display window; optional

    Returns
    -------
    Figure with two rows (a, b), slices through the most new-lesion voxels (through the most
    lesion voxels at b when there is no new lesion).
    """
    _check_same_grid({"FLAIR a": flair_a, "FLAIR b": flair_b, "lesion a": lesion_a,
                      "lesion b": lesion_b, "new": new_labels}, "new-lesion QC")
    voxel = np.asarray(voxel_mm, dtype=float)
    new = np.asarray(new_labels) > 0
    n_new = int(len(np.unique(np.asarray(new_labels)[new])))
    slices = select_slices(new, fallback=np.asarray(lesion_b) > 0)
    a, b = sessions
    fig, axes = _figure(2, title or f"New T2 lesions {a} -> {b} (red): {n_new}; "
                                    "T2 lesions outlined (yellow)")
    for row, (session, volume, mask) in enumerate(((a, flair_a, lesion_a),
                                                   (b, flair_b, lesion_b))):
        window = _window(volume, brain[row] if brain is not None else None)
        for col, (view, idx) in enumerate(zip(VIEWS, slices)):
            ax = axes[row, col]
            aspect = _aspect(voxel, view)
            _grey(ax, _view(volume, view, idx), window, aspect)
            _outline(ax, _view(np.asarray(mask) > 0, view, idx), T2_COLOUR, width=0.7)
            if row == 0:  # outline only at a, so the (normal) FLAIR under it stays visible
                _outline(ax, _view(new, view, idx), NEW_COLOUR, width=1.2)
            else:
                _fill(ax, _view(new, view, idx), NEW_COLOUR, aspect)
            if row == 0:
                ax.set_title(f"{view} {idx}", color="white", fontsize=9)
        _row_label(axes[row, 0], f"ses-{session}")
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically, without software/time metadata (byte-reproducible)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor=fig.get_facecolor(),
                    metadata={"Software": None})
    return Path(path)


def _load_ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data, affine, _ = load_nifti(path)
    return to_ras(np.asarray(data, dtype=np.float32), affine)


def qc_files(out: str | Path, subject: str, sessions: Sequence[str],
             intervals: Sequence[str]) -> list[Path]:
    """Read one subject's subject-space images from ``out`` and write its QC figures.

    Parameters
    ----------
    out : derivatives root
    subject : label without ``sub-``
    sessions : session labels (rows of the registration and lesion figures)
    intervals : ``"<a>-<b>"`` labels; one new-lesion figure each

    Returns
    -------
    paths written: registration, lesion, then one per interval
    """
    sub = subject.removeprefix("sub-")
    t1, flair, lesion, t1hypo, brain = {}, {}, {}, {}, {}
    voxel = None
    for ses in sessions:
        t1[ses], voxel = _load_ras(product_path(out, "t1w_subject", sub, ses))
        flair[ses], _ = _load_ras(product_path(out, "flair_subject", sub, ses))
        lesion[ses], _ = _load_ras(product_path(out, "lesion_mask", sub, ses))
        t1hypo[ses], _ = _load_ras(product_path(out, "t1hypo_mask", sub, ses))
        brain_path = product_path(out, "brain_mask_subject", sub, ses)
        if brain_path.exists():  # only sets the display window; optional
            brain[ses], _ = _load_ras(brain_path)
    if voxel is None:
        raise InputError("qc: no session given; pass --sessions")
    template, _ = _load_ras(product_path(out, "template", sub))

    written = []
    fig = registration_figure(t1, template, voxel, f"sub-{sub}: session T1 in subject space "
                                                   "(grey), template edges (green)", brain)
    written.append(save_png(fig, product_path(out, "registration_figure", sub)))
    fig = lesion_figure(flair, lesion, t1hypo, voxel, f"sub-{sub}: FLAIR, T2 lesions (yellow "
                                                      "outline), T1-hypointense (cyan fill)",
                        brain)
    written.append(save_png(fig, product_path(out, "lesion_figure", sub)))
    for interval in intervals:
        a, sep, b = interval.partition("-")
        if not sep or a not in flair or b not in flair:
            raise InputError(f"qc: interval {interval!r} needs sessions of {list(sessions)} "
                             "written as <a>-<b>; pass its sessions with --sessions")
        new, _ = _load_ras(product_path(out, "new_dseg", sub, interval=(a, b)))
        fig = new_lesion_figure(flair[a], flair[b], lesion[a], lesion[b], new, voxel, (a, b),
                                f"sub-{sub}: new T2 lesions {a} -> {b} (red), T2 lesions "
                                "(yellow)",
                                (brain[a], brain[b]) if a in brain and b in brain else None)
        written.append(save_png(fig, product_path(out, "new_figure", sub, interval=(a, b))))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline qc",
                                 description="Per-subject registration and lesion QC figures.")
    ap.add_argument("--out", required=True, type=Path, help="derivatives root")
    ap.add_argument("--subject", required=True, help="subject label (with or without sub-)")
    ap.add_argument("--sessions", nargs="+", required=True)
    ap.add_argument("--intervals", nargs="*", default=[], help="e.g. baseline-m06 m06-m12")
    args = ap.parse_args(argv)
    def work() -> None:
        for path in qc_files(args.out, args.subject, args.sessions, args.intervals):
            print(path)

    return run_command("qc", work)
