"""Tiling many maps into one 2-D array, in NumPy.

A grid of 512 maps is drawn as one image: tile ``i`` of a ``ncols``-wide grid
sits at row ``i // ncols``, column ``i % ncols``; its top-left pixel is at
``(pad + row * (h + pad), pad + col * (w + pad))`` and the padding (between
tiles and around the border) holds ``pad_value`` (NaN: drawn as background).

What a tile is depends on the layout (see :mod:`multiviz.core.layout`):

* ``(C, H, W)`` — one tile per channel, near-square grid;
* ``(N, C, H, W)`` — one row per sample, one column per channel;
* ``(C, L)`` — one horizontal strip per channel (the row repeated to a
  readable height), stacked in one column so positions line up;
* ``(N, C, L)`` — the strips of sample 0, then sample 1, …;
* ``(F,)`` — the vector wrapped row-major into a near-square grid, NaN-padded;
* ``(N, F)`` — one such grid per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from multiviz.core.layout import infer_layout
from multiviz.core.params import names_parameters

__all__ = ["Tiling", "montage", "tiling", "vector_grid_shape"]


@dataclass(frozen=True)
class Tiling:
    """Where the tiles of a montage sit.

    Attributes:
        count: number of tiles.
        tile: ``(h, w)`` of one tile in pixels.
        grid: ``(rows, ncols)``.
        pad: padding in pixels between tiles and around the border.
    """

    count: int
    tile: tuple[int, int]
    grid: tuple[int, int]
    pad: int

    @property
    def shape(self) -> tuple[int, int]:
        """Pixel shape of the montage."""
        (h, w), (rows, cols), p = self.tile, self.grid, self.pad
        return rows * (h + p) + p, cols * (w + p) + p

    def origin(self, i: int) -> tuple[int, int]:
        """``(y, x)`` of tile ``i``'s top-left pixel.

        Example:
            >>> Tiling(count=5, tile=(4, 6), grid=(2, 3), pad=1).origin(4)
            (6, 8)
        """
        (h, w), (_, cols), p = self.tile, self.grid, self.pad
        return p + (i // cols) * (h + p), p + (i % cols) * (w + p)


def vector_grid_shape(f: int) -> tuple[int, int]:
    """``(rows, cols)`` of the near-square grid a vector of ``f`` values wraps into.

    Example:
        >>> vector_grid_shape(10), vector_grid_shape(4096)
        ((3, 4), (64, 64))
    """
    cols = max(1, math.ceil(math.sqrt(f)))
    return max(1, math.ceil(f / cols)), cols


def _strip_height(count: int, length: int) -> int:
    """Rows per 1-D strip: the stack of strips comes out about 3/4 as tall as long."""
    return max(1, round(0.75 * length / max(count, 1)))


def _tiles(arr: np.ndarray, layout: str) -> tuple[np.ndarray, int | None, int | None]:
    """``(tiles (K, h, w), default ncols, pad override)`` for one array."""
    if layout == "CHW":
        return arr, None, None
    if layout == "NCHW":
        n, c, h, w = arr.shape
        return arr.reshape(n * c, h, w), c, None
    if layout in ("CL", "NCL"):
        rows = arr.reshape(-1, arr.shape[-1])
        s = _strip_height(arr.shape[-2], arr.shape[-1])
        # strips thinner than 3 px read better as one dense image than with gaps
        return np.repeat(rows[:, None, :], s, axis=1), 1, (None if s >= 3 else 0)
    # vectors: wrap each into a near-square grid, NaN where the grid overhangs
    vecs = arr.reshape(-1, arr.shape[-1])
    r, c = vector_grid_shape(vecs.shape[1])
    grids = np.full((vecs.shape[0], r * c), np.nan, dtype=np.float32)
    grids[:, : vecs.shape[1]] = vecs
    return grids.reshape(-1, r, c), None, None


def tiling(
    maps: np.ndarray, ncols: int | None = None, pad: int = 1, *, layout: str | None = None
) -> Tiling:
    """The :class:`Tiling` that :func:`montage` uses for these arguments.

    Example:
        >>> t = tiling(np.zeros((10, 5, 7)), pad=2)
        >>> t.grid, t.shape
        ((4, 3), (30, 29))
    """
    arr = np.asarray(maps)
    tiles, cols, pad_override = _tiles(arr, infer_layout(arr, layout))
    return _tiling(
        tiles, cols if ncols is None else ncols, pad if pad_override is None else pad_override
    )


def _tiling(tiles: np.ndarray, ncols: int | None, pad: int) -> Tiling:
    k, h, w = tiles.shape
    if isinstance(pad, bool) or not isinstance(pad, int | np.integer) or pad < 0:
        raise ValueError(f"`pad` must be an int >= 0. Received: pad={pad!r}")
    if ncols is None:  # near-square in pixels
        ncols = max(1, math.ceil(math.sqrt(k * h / max(w, 1))))
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"`ncols` must be a positive int or None. Received: ncols={ncols!r}")
    ncols = int(min(ncols, max(k, 1)))
    return Tiling(count=k, tile=(h, w), grid=(max(1, math.ceil(k / ncols)), ncols), pad=int(pad))


@names_parameters
def montage(
    maps: np.ndarray,
    ncols: int | None = None,
    pad: int = 1,
    pad_value: float = np.nan,
    *,
    layout: str | None = None,
) -> np.ndarray:
    """Tile a stack of maps into one 2-D float32 array (no figure, no axes).

    Args:
        maps: ``(C, H, W)``, ``(N, C, H, W)``, ``(C, L)`` or ``(F,)`` (and
            ``(N, C, L)`` / ``(N, F)`` with ``layout=``); see the module
            docstring for how each is tiled. Usually already normalized.
        ncols: tiles per row; default near-square (one column for 1-D strips,
            one column per channel for a batch).
        pad: pixels of ``pad_value`` between tiles and around the border
            (1-D strips thinner than 3 px are stacked without gaps).
        pad_value: value of the padding; NaN is drawn as background colour.
        layout: see :func:`multiviz.normalize`.

    Returns:
        A float32 array of shape :attr:`Tiling.shape`.

    Raises:
        ValueError: bad ``ncols`` or ``pad``.
        InputShapeError: the array's rank is not a canonical layout.

    Example:
        >>> m = montage(np.arange(6, dtype=np.float32).reshape(3, 1, 2), ncols=2, pad_value=-1)
        >>> m.tolist()
        [[-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0], [-1.0, 0.0, 1.0, -1.0, 2.0, 3.0, -1.0], [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0], [-1.0, 4.0, 5.0, -1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]]
    """
    arr = np.asarray(maps)
    tiles, cols, pad_override = _tiles(arr, infer_layout(arr, layout))
    t = _tiling(
        tiles, cols if ncols is None else ncols, pad if pad_override is None else pad_override
    )
    (h, w), (rows, ncols), p = t.tile, t.grid, t.pad
    cells = np.full((rows * ncols, h + p, w + p), pad_value, dtype=np.float32)
    cells[: t.count, :h, :w] = tiles
    # (rows, ncols, h+p, w+p) -> (rows, h+p, ncols, w+p): each cell keeps its
    # right and bottom padding; the top and left border come from the canvas
    body = cells.reshape(rows, ncols, h + p, w + p).transpose(0, 2, 1, 3)
    out = np.full(t.shape, pad_value, dtype=np.float32)
    out[p:, p:] = body.reshape(rows * (h + p), ncols * (w + p))
    return out
