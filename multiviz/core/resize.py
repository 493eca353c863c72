"""Bilinear and nearest-neighbour resizing of 2-D maps in NumPy (for CAMs and overlays).

Both use half-pixel centres — the convention of ``torch.nn.functional.interpolate(
mode="bilinear", align_corners=False)`` / ``mode="nearest-exact"``, of
``tf.image.resize`` and of Pillow — so upsampled maps agree whichever
framework produced the low-resolution map.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_bilinear", "resize_nearest"]


def _weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo)


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``maps`` to ``size = (height, width)``.

    Any leading axes (batch, channels) are kept. Returns float32.

    Example:
        >>> resize_bilinear(np.array([[0.0, 1.0]]), (1, 4)).round(2).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim < 2:
        raise ValueError(f"resize_bilinear needs at least 2 axes. Received shape {maps.shape}.")
    h_out, w_out = int(size[0]), int(size[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(f"`size` must be two positive ints. Received: size={size!r}")
    h_in, w_in = maps.shape[-2:]
    if (h_in, w_in) == (h_out, w_out):
        return maps.copy()
    y0, y1, wy = _weights(h_in, h_out)
    x0, x1, wx = _weights(w_in, w_out)
    wy = wy.astype(np.float32)[:, None]
    wx = wx.astype(np.float32)[None, :]
    top = maps[..., y0, :][..., x0] * (1 - wx) + maps[..., y0, :][..., x1] * wx
    bottom = maps[..., y1, :][..., x0] * (1 - wx) + maps[..., y1, :][..., x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``maps`` to ``size`` by nearest neighbour (half-pixel centres).

    Output pixel ``i`` takes input pixel ``floor((i + 0.5) * n_in / n_out)``:
    for a whole-number factor ``k`` every input pixel becomes a ``k x k``
    block (the same as PyTorch's ``"nearest"`` and ``"nearest-exact"``, which
    differ only for other factors, where this is ``"nearest-exact"``). Any
    leading axes are kept. Returns float32.

    Example:
        >>> resize_nearest(np.array([[1.0, 2.0]]), (2, 4)).tolist()
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim < 2:
        raise ValueError(f"resize_nearest needs at least 2 axes. Received shape {maps.shape}.")
    h_out, w_out = int(size[0]), int(size[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(f"`size` must be two positive ints. Received: size={size!r}")
    h_in, w_in = maps.shape[-2:]

    def source(n_in: int, n_out: int) -> np.ndarray:
        src = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp)
        return np.minimum(src, n_in - 1)

    return np.ascontiguousarray(maps[..., source(h_in, h_out), :][..., source(w_in, w_out)])
