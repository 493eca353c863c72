"""Scaling feature maps into [0, 1] for display, robust to NaN, Inf and flat maps.

Five modes, and ``"auto"`` that picks one of them from the data:

* ``"map"`` — each map min-max scaled on its own (shows every map's pattern,
  hides how strong it is);
* ``"layer"`` — one min and max for the whole array, so maps can be compared;
* ``"percentile"`` — clip at the array's ``percentile=(lo, hi)`` percentiles,
  then scale (one outlier cannot wash the picture out);
* ``"symmetric"`` — divide by the largest ``|v|`` so that 0 maps to 0.5 (for
  signed maps, drawn with a diverging colormap);
* ``"none"`` — clip to [0, 1] as is;
* ``"auto"`` — ``"symmetric"`` when the array holds a negative value (signed
  data: zero must stay visible), else ``"map"`` (:func:`resolve_mode`).

Whatever the input, the result is float32 in [0, 1] with no NaN and no
warning: NaN becomes 0, ±Inf take the value of the end of the range used, a
map (or layer) with no spread becomes a flat 0.5. What happened to each map is
reported by ``return_info=True`` in a :class:`NormInfo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from multiviz.core.layout import infer_layout, map_ndim
from multiviz.core.params import names_parameters

__all__ = ["MODES", "NormInfo", "check_mode", "normalize", "resolve_mode"]

MODES = ("map", "layer", "percentile", "symmetric", "none", "auto")
Mode = Literal["map", "layer", "percentile", "symmetric", "none", "auto"]


def check_mode(mode: object, param: str = "mode") -> None:
    """Refuse a scaling mode not in :data:`MODES`, naming the caller's parameter ``param``.

    Example:
        >>> check_mode("per_map", "normalize")
        Traceback (most recent call last):
        ...
        ValueError: `normalize` must be one of ['map', 'layer', 'percentile', 'symmetric', 'none', 'auto']. Received: normalize='per_map'
        hint: per-map scaling is normalize='map'
    """
    if isinstance(mode, str) and mode in MODES:
        return
    hint = ""
    if isinstance(mode, str) and "map" in mode.lower():
        hint = f"\nhint: per-map scaling is {param}='map'"
    raise ValueError(f"`{param}` must be one of {list(MODES)}. Received: {param}={mode!r}{hint}")


#: the value a map without spread (constant, or no finite value) is drawn as
FLAT = 0.5


@dataclass(frozen=True)
class NormInfo:
    """What :func:`normalize` did to each map.

    Arrays have one entry per map: shape ``(C,)`` for ``(C, H, W)`` or
    ``(C, L)``, ``(N, C)`` for a batch, ``()`` for one vector.

    Attributes:
        mode: the normalization mode used.
        vmin: per map, the value drawn as 0 (in the input's units; for a
            constant map its value, NaN for a map with no finite value).
        vmax: per map, the value drawn as 1.
        constant: the map has a single finite value (or none at all).
        has_nan: the map contains NaN (drawn as 0).
        has_inf: the map contains ±Inf (drawn as the end of the range).

    Example:
        >>> _, info = normalize(np.array([[1.0, 2.0], [3.0, 3.0]]), return_info=True)
        >>> info.constant.tolist(), info.flags(1)
        ([False, True], 'const')
    """

    mode: str
    vmin: np.ndarray
    vmax: np.ndarray
    constant: np.ndarray
    has_nan: np.ndarray
    has_inf: np.ndarray

    def flags(self, index: int | tuple[int, ...]) -> str:
        """Short words for what is special about map ``index`` ("" if nothing).

        Example:
            >>> _, info = normalize(np.array([[np.nan, 1.0], [0.0, 1.0]]), return_info=True)
            >>> info.flags(0), info.flags(1)
            ('const nan', '')
        """
        words = []
        if self.constant[index]:
            words.append("const")
        if self.has_nan[index]:
            words.append("nan")
        if self.has_inf[index]:
            words.append("inf")
        return " ".join(words)

    def common_range(self) -> tuple[float, float] | None:
        """The one ``(vmin, vmax)`` shared by every map, or ``None`` if they differ.

        Modes other than ``"map"`` use one range for all maps; that range is
        what a colorbar in real activation units shows.

        Example:
            >>> _, info = normalize(np.array([[0.0, 4.0], [1.0, 2.0]]), "layer", return_info=True)
            >>> info.common_range()
            (0.0, 4.0)
        """
        lo = np.unique(np.ravel(self.vmin))
        hi = np.unique(np.ravel(self.vmax))
        if lo.size != 1 or hi.size != 1 or not (np.isfinite(lo[0]) and np.isfinite(hi[0])):
            return None
        return float(lo[0]), float(hi[0])

    def __repr__(self) -> str:
        n = self.constant.size
        return (
            f"NormInfo(mode={self.mode!r}, {n} maps: {int(np.sum(self.constant))} constant, "
            f"{int(np.sum(self.has_nan))} with NaN, {int(np.sum(self.has_inf))} with Inf)"
        )


def resolve_mode(maps: np.ndarray, mode: str = "auto") -> str:
    """The mode ``"auto"`` stands for on ``maps``: ``"symmetric"`` if any value
    is negative (signed data, drawn centred on zero), else ``"map"``.
    Any other mode is returned as it is.

    Example:
        >>> resolve_mode(np.array([[0.0, 2.0]])), resolve_mode(np.array([[-1.0, 2.0]]))
        ('map', 'symmetric')
    """
    if mode != "auto":
        return mode
    arr = np.asarray(maps)
    if arr.dtype.kind not in "if":
        return "map"
    with np.errstate(invalid="ignore"):
        signed = bool(np.any(arr < 0))  # NaN compares False; -Inf counts as negative
    return "symmetric" if signed else "map"


@overload
def normalize(
    maps: np.ndarray,
    mode: Mode = ...,
    *,
    percentile: Sequence[float] = ...,
    layout: str | None = ...,
    return_info: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def normalize(
    maps: np.ndarray,
    mode: Mode = ...,
    *,
    percentile: Sequence[float] = ...,
    layout: str | None = ...,
    return_info: Literal[True],
) -> tuple[np.ndarray, NormInfo]: ...


@names_parameters
def normalize(
    maps: np.ndarray,
    mode: Mode = "map",
    *,
    percentile: Sequence[float] = (1, 99),
    layout: str | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, NormInfo]:
    """Scale feature maps into [0, 1] (float32) for display.

    Args:
        maps: ``(C, H, W)``, ``(N, C, H, W)``, ``(C, L)`` or ``(F,)`` (see
            ``layout`` for ``(N, C, L)`` and ``(N, F)``); any real dtype.
        mode: ``"map"`` (per-map min-max), ``"layer"`` (one min-max for the
            whole array), ``"percentile"`` (clip at the array's percentiles,
            then scale), ``"symmetric"`` (0 -> 0.5, ``±max|v|`` -> 0 / 1) or
            ``"none"`` (clip to [0, 1]); ``"auto"``: ``"symmetric"`` for signed
            data, else ``"map"`` (:func:`resolve_mode`; ``NormInfo.mode`` says which).
        percentile: ``(low, high)`` percentiles for ``mode="percentile"``. When
            they coincide (a mostly-zero ReLU layer), the min and max are used.
        layout: the array's layout when its rank is ambiguous: ``"NCL"`` for a
            batch of 1-D maps, ``"NF"`` for a batch of vectors. It decides what
            one map is (``"map"`` mode scales each map on its own).
        return_info: also return a :class:`NormInfo` with per-map flags.

    Returns:
        A float32 array of the input's shape with values in [0, 1] — and the
        :class:`NormInfo` when ``return_info`` is true. Never NaN: NaN -> 0,
        ±Inf -> the end of the range used, a map without spread -> 0.5.

    Raises:
        ValueError: unknown ``mode``, bad ``percentile`` or ``layout``.
        TypeError: the array is not real-valued.
        InputShapeError: the array's rank is not a canonical layout.

    Example:
        >>> normalize(np.array([[0.0, 2.0, 4.0], [5.0, 5.0, 5.0]])).tolist()
        [[0.0, 0.5, 1.0], [0.5, 0.5, 0.5]]
        >>> normalize(np.array([[-2.0, 0.0, 1.0]]), "symmetric").tolist()
        [[0.0, 0.5, 0.75]]
    """
    arr = np.asarray(maps)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`maps` must be a real-valued array. Received dtype {arr.dtype}.")
    check_mode(mode)
    mode = resolve_mode(arr, mode)
    p_lo, p_hi = _check_percentile(percentile)
    lay = infer_layout(arr, layout)
    grid = arr.shape[: arr.ndim - map_ndim(lay)]
    m = int(np.prod(grid, dtype=np.int64))
    x = arr.reshape(m, -1).astype(np.float64) if m else arr.reshape(0, 0).astype(np.float64)

    finite = np.isfinite(x)
    has_nan = np.isnan(x).any(axis=1)
    has_inf = np.isinf(x).any(axis=1)
    map_lo = np.where(finite, x, np.inf).min(axis=1, initial=np.inf)
    map_hi = np.where(finite, x, -np.inf).max(axis=1, initial=-np.inf)
    empty = ~finite.any(axis=1)
    constant = empty | (map_lo == map_hi)

    lo, hi = _range(mode, x, finite, map_lo, map_hi, (p_lo, p_hi))
    out = _scale(x, lo, hi)

    info = NormInfo(
        mode=mode,
        vmin=np.where(empty, np.nan, lo).reshape(grid),
        vmax=np.where(empty, np.nan, hi).reshape(grid),
        constant=constant.reshape(grid),
        has_nan=has_nan.reshape(grid),
        has_inf=has_inf.reshape(grid),
    )
    out = out.astype(np.float32).reshape(arr.shape)
    return (out, info) if return_info else out


def _check_percentile(percentile: Sequence[float]) -> tuple[float, float]:
    try:
        p_lo, p_hi = (float(p) for p in percentile)
    except (TypeError, ValueError):
        p_lo = p_hi = np.nan
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ValueError(
            "`percentile` must be two numbers (low, high) with 0 <= low < high <= 100. "
            f"Received: percentile={percentile!r}"
        )
    return p_lo, p_hi


def _range(
    mode: str,
    x: np.ndarray,
    finite: np.ndarray,
    map_lo: np.ndarray,
    map_hi: np.ndarray,
    percentile: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Per map, the values drawn as 0 and as 1 (float64, one entry per map)."""
    m = x.shape[0]
    if mode == "map":
        return map_lo, map_hi
    if mode == "none":
        return np.zeros(m), np.ones(m)
    layer_lo = float(map_lo.min(initial=np.inf))
    layer_hi = float(map_hi.max(initial=-np.inf))
    if mode == "symmetric":
        s = max(abs(layer_lo), abs(layer_hi)) if layer_lo <= layer_hi else 0.0
        layer_lo, layer_hi = -s, s
    elif mode == "percentile" and layer_lo < layer_hi:
        p_lo, p_hi = _percentiles(x[finite], percentile)
        if p_lo < p_hi:  # else mostly one value (a sparse ReLU map): keep min / max
            layer_lo, layer_hi = p_lo, p_hi
    return np.full(m, layer_lo), np.full(m, layer_hi)


def _percentiles(values: np.ndarray, percentile: tuple[float, float]) -> tuple[float, float]:
    # Interpolating between ±1e308 would overflow: work on values scaled by a
    # power of two (exact) so that |v| <= 1, and scale the result back.
    _, e = np.frexp(np.max(np.abs(values)))
    p = np.percentile(np.ldexp(values, -e), percentile)
    lo, hi = np.ldexp(p, e)
    return float(lo), float(hi)


def _scale(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(clip(x, lo, hi) - lo) / (hi - lo)`` per row, exact at any magnitude.

    Each row is first scaled by a power of two (exact) so that ``|lo|, |hi| <=
    1``: the difference can then neither overflow (±1e308) nor vanish
    (subnormals). Rows without spread become :data:`FLAT`; NaN becomes 0.
    """
    spread = hi > lo  # False for constant rows and rows with no finite value
    lo = np.where(spread, lo, 0.0)[:, None]
    hi = np.where(spread, hi, 1.0)[:, None]
    _, e = np.frexp(np.maximum(np.abs(lo), np.abs(hi)))
    with np.errstate(all="ignore"):  # NaN passes through clip; replaced below
        xs = np.ldexp(np.clip(x, lo, hi), -e)
        los, his = np.ldexp(lo, -e), np.ldexp(hi, -e)
        out = (xs - los) / (his - los)
    out[~spread] = FLAT
    out[np.isnan(x)] = 0.0
    np.clip(out, 0.0, 1.0, out=out)
    return out
