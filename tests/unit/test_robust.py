"""Robust statistics (pipeline.robust)."""

from __future__ import annotations

import numpy as np

from pipeline.robust import MAD_TO_SD, median_and_robust_sd, robust_sd


def test_robust_sd_is_the_scaled_mad_about_the_median():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 0.5, 20001)
    centre, sd = median_and_robust_sd(x)
    # the same floating-point operations as the expression it replaced, bit for bit
    assert centre == float(np.median(x))
    assert sd == float(1.4826 * np.median(np.abs(x - float(np.median(x)))))
    assert robust_sd(x) == sd
    assert abs(sd - 0.5) < 0.02
    # a tail of outliers leaves it nearly unchanged
    assert abs(robust_sd(np.concatenate([x, np.full(2000, 50.0)])) - sd) < 0.07
    assert robust_sd(x, 0.0) == float(MAD_TO_SD * np.median(np.abs(x)))
