"""How many grids a household total needs, and how far a count lies outside the band."""

from __future__ import annotations

import numpy as np


def band_violation(households, band_min: int, band_max: int):
    """Households outside ``[band_min, band_max]`` (0 when in band); works on scalars and arrays."""
    count = np.asarray(households)
    return np.maximum(0, np.maximum(band_min - count, count - band_max))


def grid_count(total: int, band_min: int, band_max: int) -> tuple[int, bool]:
    """Number of grids for ``total`` households and whether all of them can be in the band.

    Among feasible counts ``k`` (``k·band_min ≤ total ≤ k·band_max``) the one whose mean is closest
    to the middle of the band; otherwise the count with the least total violation (at least 1).
    """
    if total <= 0:
        return 1, False
    fewest, most = -(-total // band_max), total // band_min
    if fewest <= most:
        middle = (band_min + band_max) / 2.0
        counts = np.arange(fewest, most + 1)
        return int(counts[np.argmin(np.abs(total / counts - middle))]), True
    # the least (violation, count) pair: ties go to the smaller count
    _, best_count = min((max(0, k * band_min - total, total - k * band_max), k) for k in {max(1, most), max(1, fewest)})
    return best_count, False
