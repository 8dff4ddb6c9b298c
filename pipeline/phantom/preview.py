"""Preview montage of one phantom subject: does it look like a brain MRI with lesions?

Rows are sessions; columns are T1w and FLAIR, axial and coronal, all resampled onto the same
anatomy-frame planes (through the largest new lesion, else the largest lesion) so that rows are
comparable whatever the head position and storage orientation. Truth lesions are outlined in
yellow, lesions new in the interval ending at that session in red. Images are shown in the
neurological convention (patient right on the right).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from pipeline.contract import interval_label  # noqa: E402
from pipeline.io import atomic_path, load_nifti, read_tsv  # noqa: E402
from pipeline.paths import bids_path, raw_image  # noqa: E402
from pipeline.phantom.config import SESSIONS  # noqa: E402

EXISTING_COLOUR = "#ffd21f"
NEW_COLOUR = "#ff2a2a"


def sample_plane(data: np.ndarray, affine: np.ndarray, anat_to_world: np.ndarray,
                 points_mm: np.ndarray, order: int) -> np.ndarray:
    """Values of a native-grid image at anatomy-frame points (3, ...) through the session's
    pose and the image's voxel->world affine; 0 outside the field of view."""
    world = anat_to_world[:3, :3] @ points_mm.reshape(3, -1) + anat_to_world[:3, 3:4]
    vox = np.linalg.inv(affine)[:3, :3] @ world + np.linalg.inv(affine)[:3, 3:4]
    out = ndimage.map_coordinates(np.asarray(data, np.float32), vox, order=order, mode="constant",
                                  cval=0.0)
    return out.reshape(points_mm.shape[1:])


def _planes(center: np.ndarray, half: np.ndarray, step: float) -> dict[str, np.ndarray]:
    x = np.arange(-half[0], half[0] + step / 2, step)
    y = np.arange(-half[1], half[1] + step / 2, step)
    z = np.arange(-half[2], half[2] + step / 2, step)
    ax = np.stack(np.meshgrid(x, y, [center[2]], indexing="ij"))[..., 0]
    co = np.stack(np.meshgrid(x, [center[1]], z, indexing="ij"))[:, :, 0, :]
    return {"axial": ax, "coronal": co}


def _focus(table) -> tuple[np.ndarray, str]:
    if len(table) == 0:
        return np.array([0.0, 0.0, 10.0]), "no lesions"
    vol = table[[f"volume_mm3_{s}" for s in SESSIONS]].max(axis=1).to_numpy()
    new = np.zeros(len(table), bool)
    for a, b in zip(SESSIONS[:-1], SESSIONS[1:]):
        new |= (table[f"class_{interval_label(a, b)}"] == "new").to_numpy()
    pick = int(np.argmax(np.where(new, vol, -1))) if new.any() else int(np.argmax(vol))
    row = table.iloc[pick]
    what = f"{'new' if new.any() else 'largest'} lesion {int(row.lesion_id)}"
    return row[["center_x_mm", "center_y_mm", "center_z_mm"]].to_numpy(float), what


def preview_subject_files(bids_dir: str | Path, truth_dir: str | Path, sub: str) -> Path:
    """Write ``truth_dir/preview/sub-<sub>_preview.png`` and return its path."""
    truth_dir = Path(truth_dir)
    pid = f"sub-{sub}"
    table = read_tsv(truth_dir / pid / f"{pid}_lesions.tsv")
    xf = json.loads((truth_dir / pid / f"{pid}_transforms.json").read_text())["sessions"]
    center, what = _focus(table)
    planes = _planes(center, np.array([88.0, 106.0, 80.0]), 1.0)
    fig, axes = plt.subplots(len(SESSIONS), 4, figsize=(13.6, 3.6 * len(SESSIONS)),
                             facecolor="black", gridspec_kw={"wspace": 0.02, "hspace": 0.12})
    for r, ses in enumerate(SESSIONS):
        a2w = np.asarray(xf[ses]["anat_to_world"])
        lab, lab_aff, _ = load_nifti(bids_path(truth_dir, sub, ses, desc="truth", suffix="dseg"))
        prev = SESSIONS[r - 1] if r > 0 else None
        new_ids = set()
        if prev is not None:
            cls = table[f"class_{interval_label(prev, ses)}"]
            new_ids = set(table.lesion_id[cls == "new"].astype(int))
        for c, contrast in enumerate(("T1w", "FLAIR")):
            data, aff, _ = load_nifti(raw_image(bids_dir, sub, ses, contrast))
            for k, (name, pts) in enumerate(planes.items()):
                ax = axes[r, 2 * c + k]
                img = sample_plane(data, aff, a2w, pts, 1)
                labels = sample_plane(lab, lab_aff, a2w, pts, 0).astype(int)
                vmax = float(np.percentile(img[img > 0], 99.5)) if (img > 0).any() else 1.0
                extent = (pts[0].min(), pts[0].max(), pts[1 if name == "axial" else 2].min(),
                          pts[1 if name == "axial" else 2].max())
                ax.imshow(img.T, origin="lower", cmap="gray", vmin=0, vmax=vmax, extent=extent,
                          interpolation="nearest")
                is_new = np.isin(labels, list(new_ids)) if new_ids else np.zeros_like(labels, bool)
                for mask, colour in ((labels > 0) & ~is_new, EXISTING_COLOUR), (is_new, NEW_COLOUR):
                    if mask.any():
                        ax.contour(mask.T.astype(float), levels=[0.5], colors=[colour],
                                   linewidths=0.8, origin="lower", extent=extent)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.98, 0.02, "R", color="white", transform=ax.transAxes, ha="right",
                        va="bottom", fontsize=8)
                ax.set_title(f"{ses} {contrast} {name}  ({xf[ses]['storage']}"
                             f"{', 2-D' if c == 1 and xf[ses]['flair_grid'] != 'shared' else ''})",
                             color="white", fontsize=8)
    n_new = {interval_label(a, b): int((table[f"class_{interval_label(a, b)}"] == "new").sum())
             for a, b in zip(SESSIONS[:-1], SESSIONS[1:])} if len(table) else {}
    fig.suptitle(f"{pid}: {len(table)} lesions, new per interval {n_new}; planes through {what} "
                 f"(yellow: truth lesions, red: new lesions)", color="white", fontsize=10)
    out = truth_dir / "preview" / f"{pid}_preview.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90, facecolor="black", bbox_inches="tight",
                    pad_inches=0.1, metadata={"Software": None})
    plt.close(fig)
    return out
