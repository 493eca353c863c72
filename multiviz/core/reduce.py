"""Reducing feature maps: aggregate over channels, pick channels.

:func:`aggregate` turns a stack of maps into one map per sample (mean, max,
std, L2 or sum over the channel axis); :func:`select_channels` picks channels
by index or the ``top`` k by a score. Running statistics over batches and data
sets live in :mod:`multiviz.core.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multiviz.core.layout import channel_axis, infer_layout
from multiviz.core.params import names_parameters
from multiviz.core.stats import channel_stats

__all__ = ["REDUCTIONS", "SCORES", "aggregate", "check_channels", "select_channels"]

REDUCTIONS = ("mean", "max", "std", "l2", "sum")
SCORES = ("mean", "max", "std", "l2")


# --------------------------------------------------------------------------- channels


def check_channels(channels: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """Validate channel indices against ``n`` channels; negative ones count from the end."""
    if channels is None:
        return np.arange(n)
    idx = np.asarray(channels)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(
            f"`channels` must be a sequence of ints. Received: {channels!r} "
            f"(shape {idx.shape}, dtype {idx.dtype})."
        )
    idx = idx.astype(np.intp)
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        raise ValueError(
            f"`channels` must be in [0, {n}) for an array with {n} channels. "
            f"Received out-of-range channels {bad.tolist()}."
        )
    return np.where(idx < 0, idx + n, idx)


@names_parameters
def aggregate(
    maps: np.ndarray,
    reduce: str = "mean",
    channels: Sequence[int] | np.ndarray | None = None,
    *,
    layout: str | None = None,
) -> np.ndarray:
    """Reduce a map stack over its channel axis: one map per sample.

    Args:
        maps: ``(C, H, W)`` -> ``(H, W)``; ``(N, C, H, W)`` -> ``(N, H, W)``;
            ``(C, L)`` -> ``(L,)``; ``(N, C, L)`` (``layout="NCL"``) -> ``(N, L)``.
            A vector ``(F,)`` reduces to a scalar, ``(N, F)`` (``layout="NF"``)
            to ``(N,)``.
        reduce: ``"mean"``, ``"max"``, ``"std"``, ``"l2"`` (root of the sum of
            squares) or ``"sum"``.
        channels: reduce over these channel indices only (default: all).
        layout: see :func:`multiviz.normalize`.

    Returns:
        float32 array; NaN/Inf propagate as in NumPy, without warnings.

    Raises:
        ValueError: unknown ``reduce``, bad ``channels`` or ``layout``.
        InputShapeError: the array's rank is not a canonical layout.

    Example:
        >>> x = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
        >>> aggregate(x, "max").tolist()
        [[8.0, 9.0], [10.0, 11.0]]
        >>> aggregate(x, "mean", channels=[0, 2]).tolist()
        [[4.0, 5.0], [6.0, 7.0]]
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {list(REDUCTIONS)}. Received: reduce={reduce!r}")
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    axis = channel_axis(lay)
    if axis is None:  # vectors: the features are the channels
        axis = arr.ndim - 1
    idx = check_channels(channels, arr.shape[axis])
    x = np.take(arr, idx, axis=axis).astype(np.float64)
    with np.errstate(all="ignore"):
        if reduce == "mean":
            out = x.mean(axis=axis)
        elif reduce == "max":
            out = x.max(axis=axis, initial=-np.inf)
        elif reduce == "std":
            out = x.std(axis=axis)
        elif reduce == "l2":
            out = np.sqrt(np.square(x).sum(axis=axis))
        else:
            out = x.sum(axis=axis)
        return np.asarray(out, dtype=np.float32)


@names_parameters
def select_channels(
    maps: np.ndarray,
    channels: Sequence[int] | np.ndarray | None = None,
    *,
    top: int | None = None,
    by: str = "mean",
    layout: str | None = None,
) -> np.ndarray:
    """Choose channels: all, given ones, or the ``top`` k by a score.

    Args:
        maps: a map stack or batch (see :func:`multiviz.normalize`); scores
            are taken over the batch and the spatial axes.
        channels: candidate channel indices (negative ones count from the
            end); default all.
        top: keep the ``top`` highest-scoring candidates, best first (ties:
            lower index first). Channels with no finite value score lowest.
        by: the score: ``"mean"``, ``"max"``, ``"std"`` or ``"l2"``.
        layout: see :func:`multiviz.normalize`.

    Returns:
        Channel indices (``np.intp``): the candidates in the given order, or
        the ``top`` ones in descending score.

    Raises:
        ValueError: bad ``channels``, ``top`` or ``by``.

    Example:
        >>> x = np.stack([np.full((2, 3), v, np.float32) for v in (1.0, 5.0, 3.0)])
        >>> select_channels(x, top=2).tolist()
        [1, 2]
        >>> select_channels(x, [2, -3]).tolist()
        [2, 0]
    """
    if by not in SCORES:
        raise ValueError(f"`by` must be one of {list(SCORES)}. Received: by={by!r}")
    arr = np.asarray(maps)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`maps` must be an array of numbers. Received dtype {arr.dtype}.")
    lay = infer_layout(arr, layout)
    axis = channel_axis(lay)
    n = arr.shape[axis if axis is not None else -1]
    idx = check_channels(channels, n)
    if top is None:
        return idx
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 0:
        raise ValueError(f"`top` must be a non-negative int or None. Received: top={top!r}")
    stats = channel_stats(arr, layout=lay, quantiles=False)
    score = {"mean": stats.mean, "max": stats.max, "std": stats.std, "l2": stats.l2}[by][idx]
    score = np.where(np.isnan(score), -np.inf, score)
    order = np.argsort(-score, kind="stable")
    return idx[order[:top]]
