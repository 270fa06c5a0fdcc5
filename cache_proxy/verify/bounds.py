"""Wilson score bounds of a binomial proportion (closed form: cheap enough to recompute per
verdict; for 0 failures in n the upper bound is z^2/(n+z^2), close to the exact 'rule of 3')."""

from __future__ import annotations

import math
from statistics import NormalDist

Z_ONE_SIDED_95 = 1.6449  # P(Z > z) = 0.05


def one_sided_z(confidence: float) -> float:
    """The normal quantile of a one-sided bound at `confidence` (0.95 -> 1.6449)."""
    return NormalDist().inv_cdf(confidence)


def _centre_and_spread(failures: int, total: int, z: float) -> tuple[float, float, float]:
    rate = failures / total
    centre = rate + z**2 / (2 * total)
    spread = z * math.sqrt(rate * (1 - rate) / total + z**2 / (4 * total**2))
    return centre, spread, 1 + z**2 / total


def wilson_lower(failures: int, total: int, z: float) -> float:
    centre, spread, scale = _centre_and_spread(failures, total, z)
    return max(0.0, (centre - spread) / scale)


def wilson_upper(failures: int, total: int, z: float) -> float:
    if total == 0:
        return 1.0
    centre, spread, scale = _centre_and_spread(failures, total, z)
    return min(1.0, (centre + spread) / scale)
