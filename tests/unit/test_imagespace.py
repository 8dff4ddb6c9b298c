"""Grid checks and voxel sizes of pipeline.imagespace (conversion, rigid matrices, transform files
and resampling are tested with the registration that uses them, tests/unit/test_registration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.imagespace import require_same_grid, voxel_sizes


def test_require_same_grid_refuses_with_the_callers_message():
    a = np.diag([1.0, 1.0, 3.0, 1.0])
    require_same_grid((4, 5, 6), a, (4, 5, 6), a.copy(), "unused")
    with pytest.raises(InputError, match="^mask.nii.gz: not on the grid; rerun$"):
        require_same_grid((4, 5, 7), a, (4, 5, 6), a, "mask.nii.gz: not on the grid; rerun")
    b = a.copy()
    b[0, 3] += 2e-4  # beyond 0.1 um
    with pytest.raises(InputError, match="affine"):
        require_same_grid((4, 5, 6), b, (4, 5, 6), a, "affine differs")
    # a looser tolerance for the caller that asks for it
    require_same_grid((4, 5, 6), b, (4, 5, 6), a, "unused", atol_mm=1e-3, rtol=0.0)
    # shapes compared whole; without affines only the shapes
    with pytest.raises(InputError):
        require_same_grid((4, 5, 6, 1), a, (4, 5, 6), a, "4-D")
    require_same_grid((4, 5, 6), None, (4, 5, 6), None, "unused")
    with pytest.raises(InputError, match="shape"):
        require_same_grid((4, 5), None, (4, 5, 6), None, "shape differs")


def test_voxel_sizes_of_an_oblique_affine():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.2, 3.0])
    np.testing.assert_allclose(voxel_sizes(affine), [0.9, 1.2, 3.0])
