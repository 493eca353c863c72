"""Colormapping in NumPy through a colormap's lookup table.

:func:`colorize` gives the same bytes as ``matplotlib.colormaps[name](v,
bytes=True)`` — value ``v`` in [0, 1] picks entry ``floor(v * N)`` of the
``N``-entry table — without drawing anything, so a PNG of 512 maps costs one
table lookup. NaN (and the padding between tiles of a montage) gets a neutral
background colour chosen to stand apart from the colormap.
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap

from multiviz.core.params import names_parameters

__all__ = [
    "background_color",
    "colorize",
    "colormap_names",
    "default_cmap",
    "get_cmap",
    "lookup_table",
]

#: candidates for the background, in order of preference on ties
_BACKGROUNDS = np.array(
    [
        (255, 255, 255),  # white
        (0, 0, 0),  # black
        (128, 128, 128),  # mid grey
        (140, 165, 210),  # slate blue: stands apart from grey colormaps
    ],
    dtype=np.float64,
)


def default_cmap(normalize: str) -> str:
    """The colormap plots use when none is given: diverging for signed scaling.

    Example:
        >>> default_cmap("symmetric"), default_cmap("map")
        ('RdBu_r', 'gray')
    """
    return "RdBu_r" if normalize == "symmetric" else "gray"


def colormap_names() -> list[str]:
    """The names of every registered matplotlib colormap.

    Example:
        >>> "viridis" in colormap_names()
        True
    """
    return list(colormaps)


def get_cmap(cmap: str | Colormap, param: str = "cmap") -> Colormap:
    """Return the registered colormap ``cmap`` (or ``cmap`` itself).

    Args:
        cmap: a name in ``matplotlib.colormaps`` or a ``Colormap``.
        param: the caller's parameter name, for the error (``"diff_cmap"``...).

    Raises:
        ValueError: no colormap of that name; the message names ``param``
            and its hint lists close names.
    """
    if isinstance(cmap, Colormap):
        return cmap
    try:
        return colormaps[cmap]
    except (KeyError, TypeError):
        from multiviz.errors import closest

        near = closest(str(cmap), list(colormaps))[:3]
        raise ValueError(
            f"`{param}` must be a name in matplotlib.colormaps or a matplotlib Colormap. "
            f"Received: {param}={cmap!r}"
            + (f"\nhint: close names: {', '.join(near)}" if near else "")
        ) from None


@functools.lru_cache(maxsize=64)
def _named_table(name: str) -> np.ndarray:
    cm = get_cmap(name)
    table = cm(np.arange(cm.N), bytes=True)[:, :3]
    table.flags.writeable = False
    return table


def lookup_table(cmap: str | Colormap) -> np.ndarray:
    """The colormap's ``(N, 3)`` uint8 RGB lookup table (256 entries for most).

    Example:
        >>> lookup_table("gray")[[0, -1]].tolist()
        [[0, 0, 0], [255, 255, 255]]
    """
    if isinstance(cmap, str):
        return _named_table(cmap)
    return cmap(np.arange(cmap.N), bytes=True)[:, :3]


def background_color(cmap: str | Colormap) -> tuple[int, int, int]:
    """A neutral colour far from every colour of ``cmap``, for NaN and padding.

    White for most colormaps; slate blue for grey ones (where white and black
    are data); black where white is data but black is not.

    Example:
        >>> background_color("viridis"), background_color("gray")
        ((255, 255, 255), (140, 165, 210))
    """
    table = lookup_table(cmap).astype(np.float64)
    dist = np.sqrt(((table[None, :, :] - _BACKGROUNDS[:, None, :]) ** 2).sum(-1)).min(axis=1)
    # prefer the first candidates unless a later one stands clearly further apart
    best = int(np.argmax(dist >= min(dist.max(), 120.0)))
    r, g, b = (int(c) for c in _BACKGROUNDS[best])
    return r, g, b


@names_parameters
def colorize(
    values: np.ndarray,
    cmap: str | Colormap = "gray",
    *,
    background: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Map values in [0, 1] to uint8 RGB through ``cmap``'s lookup table.

    Args:
        values: any shape; values outside [0, 1] are clipped, NaN gets the
            background colour (a montage's padding is NaN).
        cmap: a matplotlib colormap name or object.
        background: RGB for NaN; by default :func:`background_color` of ``cmap``.

    Returns:
        uint8 array of shape ``values.shape + (3,)``, equal to
        ``matplotlib.colormaps[cmap](values, bytes=True)[..., :3]`` wherever
        ``values`` is finite.

    Raises:
        ValueError: unknown colormap name.

    Example:
        >>> colorize(np.array([0.0, 1.0, np.nan]), "gray", background=(9, 9, 9)).tolist()
        [[0, 0, 0], [255, 255, 255], [9, 9, 9]]
    """
    table = lookup_table(cmap)
    n = table.shape[0]
    v = np.asarray(values)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"`values` must be a real-valued array. Received dtype {v.dtype}.")
    if v.dtype.kind != "f":
        v = v.astype(np.float64)
    bad = np.isnan(v)
    # matplotlib: index = floor(v * N), with v == 1 taking the last entry;
    # the product in the input's own dtype, as matplotlib does it
    with np.errstate(invalid="ignore"):
        idx = np.clip(v, 0, 1) * v.dtype.type(n)
    idx = np.minimum(np.where(bad, 0, idx).astype(np.intp), n - 1)
    rgb = table[idx]
    if background is not None:
        _check_background(background)
    if bad.any():
        rgb[bad] = background_color(cmap) if background is None else background
    return rgb


def _check_background(background: object) -> None:
    """``background`` is three whole numbers in [0, 255] (an RGB colour)."""
    ok = isinstance(background, (tuple, list, np.ndarray)) and len(background) == 3
    ok = ok and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
        for v in background  # type: ignore[union-attr]
    )
    if not ok:
        raise ValueError(
            "`background` must be an RGB colour: three whole numbers in [0, 255]. "
            f"Received: background={background!r}"
        )
