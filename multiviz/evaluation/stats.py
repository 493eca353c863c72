"""Bootstrap confidence intervals of a mean over images. NumPy only.

A metric's value for a method is the mean of its per-image values; the
interval says how much that mean would move with other images of the same
kind: the percentile bootstrap (Efron & Tibshirani 1993, "An Introduction
to the Bootstrap", ch. 13) resamples the images with replacement
``resamples`` times and takes the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles of the resampled means. NaN values (an image whose map or score is
not finite) are left out and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_interval"]


@dataclass(frozen=True)
class Interval:
    """A mean over images with its bootstrap interval.

    Attributes:
        value: the mean of the finite per-image values (NaN when there are none).
        low, high: the interval's ends (equal to ``value`` for one image).
        n: the number of finite values used.
        nonfinite: the number of NaN/Inf values left out.
    """

    value: float
    low: float
    high: float
    n: int
    nonfinite: int = 0

    def overlaps(self, other: Interval) -> bool:
        """True when the two intervals share a point (NaN intervals overlap everything)."""
        if any(math.isnan(v) for v in (self.low, self.high, other.low, other.high)):
            return True
        return self.low <= other.high and other.low <= self.high


def bootstrap_interval(
    values: np.ndarray, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of ``values`` and its percentile-bootstrap interval.

    Args:
        values: per-image values ``(N,)``; NaN/Inf are left out (and counted).
        level: the interval's coverage, in ``(0, 1)``.
        resamples: bootstrap resamples, >= 1.
        seed: the resampling seed (the same seed gives the same interval).

    Returns:
        :class:`Interval`.

    Example:
        >>> iv = bootstrap_interval(np.array([1.0, 2.0, 3.0, np.nan]))
        >>> iv.value, iv.n, iv.nonfinite, bool(1.0 <= iv.low < 2.0 < iv.high <= 3.0)
        (2.0, 3, 1, True)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level!r}")
    if int(resamples) < 1:
        raise ValueError(f"`resamples` must be a positive int. Received: resamples={resamples!r}")
    v = np.asarray(values, np.float64).reshape(-1)
    ok = np.isfinite(v)
    v = v[ok]
    bad = int((~ok).sum())
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, bad)
    mean = float(v.mean())
    if v.size == 1 or np.all(v == v[0]):
        return Interval(mean, mean, mean, int(v.size), bad)
    rng = np.random.default_rng(seed)
    block = max(1, 2_000_000 // v.size)  # bounded memory for many images
    means = np.concatenate(
        [
            v[rng.integers(0, v.size, size=(min(block, int(resamples) - s), v.size))].mean(axis=1)
            for s in range(0, int(resamples), block)
        ]
    )
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return Interval(mean, float(lo), float(hi), int(v.size), bad)
