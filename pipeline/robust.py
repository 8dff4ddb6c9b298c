"""Robust statistics of intensity samples: median/MAD standard deviations, half-sample SDs and
the histogram mode.

The segmentation and lesion-matching thresholds are in robust SDs of normal tissue or of a
difference image, so that lesions, partial volume and other outliers in the sample do not
inflate the unit. For a Gaussian sample, 1.4826 x the median absolute deviation (MAD) and the
upper semi-interquartile range / 0.6745 both estimate the SD (1.4826 ~ 1 / 0.6745 =
1 / Phi^-1(3/4); the two constants are kept as written, so the numbers of each caller stay as
they were).

References
----------
Rousseeuw PJ, Croux C (1993) Alternatives to the median absolute deviation. J Am Stat Assoc
88:1273-1283.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MAD_TO_SD = 1.4826  # MAD of a Gaussian x 1.4826 = its SD
IQR_HALF_TO_SD = 0.6745  # (q75 - q50) of a Gaussian / 0.6745 = its SD


def robust_sd(values: np.ndarray, centre: float | None = None) -> float:
    """Robust SD: 1.4826 x the median absolute deviation of ``values`` from ``centre``.

    Parameters
    ----------
    values : ndarray of shape (N,)
        The sample (computed in float64).
    centre : float, optional
        The centre the deviations are taken from; the sample median when omitted.

    Returns
    -------
    float, in the units of ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    if centre is None:
        centre = float(np.median(values))
    return float(MAD_TO_SD * np.median(np.abs(values - centre)))


def median_and_robust_sd(values: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (:func:`robust_sd` about the median) of a sample.

    Parameters
    ----------
    values : ndarray of shape (N,)

    Returns
    -------
    (centre, sd) : floats, in the units of ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    centre = float(np.median(values))
    return centre, robust_sd(values, centre)


def lower_half_sd(values: np.ndarray, centre: float) -> float:
    """Robust SD from the half of the sample below ``centre`` (MAD x 1.4826 of that half).

    A hyperintense tail (lesions, partial volume with GM on FLAIR) does not inflate it.
    """
    values = np.asarray(values, dtype=np.float64)
    below = centre - values[values <= centre]
    if below.size < 10:
        return robust_sd(values, centre)
    return float(MAD_TO_SD * np.median(below))


def upper_half_sd(values: np.ndarray, centre: float) -> float:
    """Robust SD from the half of the sample above ``centre`` (MAD x 1.4826 of that half)."""
    return lower_half_sd(-np.asarray(values, dtype=np.float64), -centre)


def histogram_mode(values: np.ndarray, bins: int = 256) -> float:
    """Mode of a 1-D sample: peak of a lightly smoothed histogram, refined parabolically.

    Parameters
    ----------
    values : ndarray of shape (N,)

    Returns
    -------
    float, in the units of ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    if not hi > lo:
        return float(np.median(values))
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0, mode="constant")
    i = int(np.argmax(smooth))
    width = edges[1] - edges[0]
    offset = 0.0
    if 0 < i < bins - 1:  # vertex of the parabola through the peak and its neighbours
        y0, y1, y2 = smooth[i - 1], smooth[i], smooth[i + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            offset = 0.5 * (y0 - y2) / denom
    return float(edges[i] + (0.5 + offset) * width)
