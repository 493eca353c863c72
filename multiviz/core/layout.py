"""Converting arrays between channels-last and channels-first layouts.

The canonical layout in multiviz is channels-first. These helpers are for
*inputs*: PyTorch models take ``(N, C, H, W)``, Keras models usually take
``(N, H, W, C)``. Conversion is explicit — multiviz never guesses the channel
axis from which dimension happens to be small.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_channels_first", "to_channels_last"]


def to_channels_first(x: np.ndarray) -> np.ndarray:
    """Move the last axis to position 1: ``(N, H, W, C) -> (N, C, H, W)``.

    Works for any rank >= 3 (``(N, L, C) -> (N, C, L)``); returns a
    contiguous copy.

    Example:
        >>> to_channels_first(np.zeros((2, 5, 6, 3))).shape
        (2, 3, 5, 6)
    """
    x = np.asarray(x)
    if x.ndim < 3:
        return np.array(x, copy=True)
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """Move axis 1 to the end: ``(N, C, H, W) -> (N, H, W, C)``.

    Example:
        >>> to_channels_last(np.zeros((2, 3, 5, 6))).shape
        (2, 5, 6, 3)
    """
    x = np.asarray(x)
    if x.ndim < 3:
        return np.array(x, copy=True)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))
