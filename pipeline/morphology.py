"""Morphology on voxel grids: connectivity, footprints measured in mm from the voxel faces,
label and mask dilation, neighbourhood minima and maxima, connected components, bounding boxes.

Connected components use 26-connectivity (faces, edges and corners) throughout the pipeline
(:data:`CONNECTIVITY_26`). Footprints in mm (:func:`face_distance_footprint`) give the same
physical reach at any voxel size, including anisotropic voxels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

#: 26-connectivity (faces, edges and corners) for every connected-component step.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def face_distance_footprint(voxel_size_mm: Any, radius_mm: float) -> np.ndarray:
    """Structuring element of the voxels within ``radius_mm`` of the central voxel's box.

    An offset joins when the neighbour's centre lies within ``radius_mm`` of the central voxel's
    faces: ``sqrt(sum(max(0, |d_i| v_i - v_i / 2)^2)) <= radius_mm``. At 1 mm and radius 1 mm
    this is the 26-neighbourhood, at 2 mm the 6-neighbourhood, at 1 x 1 x 3 mm the in-plane
    8-neighbourhood.

    Parameters
    ----------
    voxel_size_mm : sequence of 3 floats
    radius_mm : float, >= 0 (0: the centre only)

    Returns
    -------
    bool ndarray of odd shape (2 n_i + 1,) per axis
    """
    vox = np.broadcast_to(np.asarray(voxel_size_mm, dtype=np.float64), (3,))
    half = [int(np.floor((radius_mm + v / 2) / v + 1e-9)) for v in vox]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    gap = [np.maximum(0.0, np.abs(g) * v - v / 2) for g, v in zip(grids, vox)]
    return np.sqrt(sum(x ** 2 for x in gap)) <= radius_mm + 1e-9


def dilate_labels(labels: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Grey dilation of a sparse label image by ``footprint``, computed per component box.

    Same result as ``scipy.ndimage.grey_dilation(labels, footprint=footprint)`` with a zero
    background (contested voxels take the largest neighbouring label), at the cost of the
    components' bounding boxes instead of the whole volume.
    """
    out = np.zeros_like(labels)
    if footprint.size == 1:
        return labels.copy()
    half = [n // 2 for n in footprint.shape]
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        big = tuple(slice(max(b.start - h, 0), min(b.stop + h, n))
                    for b, h, n in zip(box, half, labels.shape))
        sub = np.where(labels[big] == lab, lab, 0).astype(labels.dtype)
        grown = ndimage.grey_dilation(sub, footprint=footprint, mode="constant", cval=0)
        np.maximum(out[big], grown, out=out[big])
    return out


def dilate_mask(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Binary dilation of a sparse mask (lesions) by ``structure``, on the mask's bounding box.

    Same result as ``scipy.ndimage.binary_dilation(mask, structure=structure)``: the dilation
    cannot reach beyond the box grown by the structure's half-width, so the rest stays False.
    """
    half = max(n // 2 for n in structure.shape)
    box = bounding_box(mask, half)
    out = np.zeros(mask.shape, bool)
    if box is not None:
        out[box] = ndimage.binary_dilation(mask[box], structure=structure)
    return out


def neighbourhood_filter(image: np.ndarray, footprint: np.ndarray, op: str) -> np.ndarray:
    """Minimum or maximum over ``footprint``; separable 1-D passes for a full box or for the
    6-neighbourhood cross (the footprints of 1 mm-radius neighbourhoods), generic otherwise."""
    one_d = ndimage.minimum_filter1d if op == "min" else ndimage.maximum_filter1d
    full = ndimage.minimum_filter if op == "min" else ndimage.maximum_filter
    combine = np.minimum if op == "min" else np.maximum
    if footprint.size == 1:
        return image.copy()
    if footprint.all():
        out = image
        for axis, size in enumerate(footprint.shape):
            if size > 1:
                out = one_d(out, size, axis=axis, mode="nearest")
        return out
    cross = np.zeros_like(footprint)
    centre = tuple(n // 2 for n in footprint.shape)
    for axis, size in enumerate(footprint.shape):
        idx = list(centre)
        idx[axis] = slice(None)
        cross[tuple(idx)] = True
    if np.array_equal(cross, footprint):
        out = image
        for axis, size in enumerate(footprint.shape):
            if size > 1:
                out = combine(out, one_d(image, size, axis=axis, mode="nearest"))
        return out
    return full(image, footprint=footprint, mode="nearest")


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the box around the ``True`` voxels of ``mask``, grown by ``margin`` voxels on
    every side and clipped to the array; None when ``mask`` is empty."""
    box = []
    for axis, n in enumerate(mask.shape):
        # the mask's projection on the axis: cheaper than listing its voxels
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, n)))
    return tuple(box)


def large_enough(labels: np.ndarray, n: int, min_volume_mm3: float, voxel_volume_mm3: float
                 ) -> np.ndarray:
    """Which of the components 1..n of ``labels`` hold at least ``min_volume_mm3``: bool
    (n + 1,), False for the background 0."""
    sizes_mm3 = np.bincount(labels.ravel(), minlength=n + 1) * voxel_volume_mm3
    keep = sizes_mm3 >= min_volume_mm3 - 1e-9
    keep[0] = False
    return keep


def remove_small_components(mask: np.ndarray, min_volume_mm3: float, voxel_volume_mm3: float
                            ) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop 26-connected components smaller than ``min_volume_mm3``.

    Returns
    -------
    mask : bool ndarray, same shape
    labels : int32 ndarray, components 1..n in raster order of their first voxel
    n : int
    """
    labels, n = ndimage.label(mask, structure=CONNECTIVITY_26)
    if n == 0:
        return np.zeros(mask.shape, bool), labels.astype(np.int32), 0
    keep = large_enough(labels, n, min_volume_mm3, voxel_volume_mm3)
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    out = remap[labels]
    return out > 0, out, int(keep.sum())


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (bool; all False when it is empty)."""
    labels, n = ndimage.label(mask, structure=CONNECTIVITY_26)
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
