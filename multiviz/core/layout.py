"""Layouts: which axis of an array is what, and converting between channel orders.

The canonical layout in multiviz is channels-first, batch first. Every
NumPy-core function takes arrays in it. Their rank alone names a default
layout; ``layout=`` overrides it where the rank is ambiguous (a batch of 1-D
maps ``(N, C, L)`` has the rank of one 2-D map stack ``(C, H, W)``; a batch of
vectors ``(N, F)`` the rank of ``(C, L)``):

==========  =======  ===========================================
layout      rank     meaning
==========  =======  ===========================================
``NCHW``    4        batch of 2-D map stacks (default for rank 4)
``CHW``     3        one 2-D map stack (default for rank 3)
``NCL``     3        batch of 1-D map stacks
``CL``      2        one 1-D map stack (default for rank 2)
``NF``      2        batch of feature vectors
``F``       1        one feature vector (default for rank 1)
==========  =======  ===========================================

A "map" is one channel of one sample: ``(H, W)``, ``(L,)``, or — for a
vector — the whole ``(F,)`` vector.

:func:`to_channels_first` / :func:`to_channels_last` are for *inputs*: PyTorch
models take ``(N, C, H, W)``, Keras models usually take ``(N, H, W, C)``.
Conversion is explicit — multiviz never guesses the channel axis from which
dimension happens to be small.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiviz.core.params import names_parameters
from multiviz.core.transpose import channels_first_copy
from multiviz.errors import InputShapeError

__all__ = [
    "LAYOUTS",
    "SEQUENCE",
    "STATE",
    "TIME_MAPS",
    "channel_axis",
    "infer_layout",
    "map_ndim",
    "take_sample",
    "to_channels_first",
    "to_channels_last",
]

#: layout -> rank
LAYOUTS: dict[str, int] = {"NCHW": 4, "CHW": 3, "NCL": 3, "CL": 2, "NF": 2, "F": 1}

#: What a layer's output *is*, beyond maps and vectors (DESIGN.md, "Layouts by what a
#: layer is"), as backends report it: a sequence ``(N, T, F)`` (a recurrent layer's
#: output, an embedding's, what follows them) — never transposed like a
#: channels-last map; a recurrent state ``(N, layers * directions, H)``; maps of
#: each time step of a time-distributed layer ``(N, T, C, H, W)``, whose
#: statistics treat ``T`` as a batch axis.
SEQUENCE, STATE, TIME_MAPS = "sequence", "state", "time_maps"
_DEFAULT = {4: "NCHW", 3: "CHW", 2: "CL", 1: "F"}


def infer_layout(arr: np.ndarray, layout: str | None = None) -> str:
    """Return ``layout`` checked against ``arr``'s rank, or the rank's default.

    Raises:
        InputShapeError: the rank is not 1 to 4, or does not fit ``layout``.
        ValueError: ``layout`` is not one of :data:`LAYOUTS`.

    Example:
        >>> infer_layout(np.zeros((8, 5, 6)))
        'CHW'
        >>> infer_layout(np.zeros((2, 8, 30)), "NCL")
        'NCL'
    """
    ndim = np.ndim(arr)
    if layout is None:
        if ndim == 5:
            raise InputShapeError(
                f"`maps` must be (N, C, H, W), (C, H, W), (C, L) or (F,). Received shape "
                f"{np.shape(arr)}: 5-D, the (N, T, C, H, W) maps of a layer inside TimeDistributed."
                "\nhint: Pick a time step, acts[name][:, t] (statistics take the whole array: "
                "time steps count as samples)"
            )
        if ndim not in _DEFAULT:
            raise InputShapeError(
                f"`maps` must be feature maps in the canonical layout: (N, C, H, W), (C, H, W), "
                f"(C, L) or (F,) (or (N, C, L) / (N, F) with layout=). Received shape "
                f"{np.shape(arr)}.\nhint: index one sample or layer first, e.g. acts[name][0]"
            )
        return _DEFAULT[ndim]
    key = layout.upper()
    if key not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {list(LAYOUTS)} or None. Received: {layout!r}")
    if LAYOUTS[key] != ndim:
        raise InputShapeError(
            f"layout={layout!r} needs a {LAYOUTS[key]}-D array. Received shape {np.shape(arr)}."
        )
    return key


def map_ndim(layout: str) -> int:
    """Number of trailing axes that make one map: 2 (H, W), 1 (L or F).

    Example:
        >>> map_ndim("NCHW"), map_ndim("CL"), map_ndim("F")
        (2, 1, 1)
    """
    return 2 if layout.endswith("HW") else 1


def channel_axis(layout: str) -> int | None:
    """Axis of the channels, or ``None`` for vectors (``F`` / ``NF``).

    Example:
        >>> channel_axis("NCHW"), channel_axis("CL"), channel_axis("NF")
        (1, 0, None)
    """
    if "C" not in layout:
        return None
    return layout.index("C")


def take_sample(arr: np.ndarray, layout: str, sample: int) -> tuple[np.ndarray, str]:
    """Drop the batch axis by indexing ``sample``; unbatched layouts pass through.

    Raises:
        InputShapeError: ``sample`` is out of range for the batch.

    Example:
        >>> x, lay = take_sample(np.zeros((2, 8, 5, 6)), "NCHW", 1)
        >>> x.shape, lay
        ((8, 5, 6), 'CHW')
    """
    if not layout.startswith("N"):
        return arr, layout
    n = arr.shape[0]
    if not -n <= sample < n:
        raise InputShapeError(
            f"`sample` must be in [0, {n}) for a batch of {n}. Received: sample={sample}"
        )
    return arr[sample], layout[1:]


def _numbers(x: Any) -> np.ndarray:
    """``x`` as an array, refused unless it holds numbers (a file name is not an image)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"`x` must be an array of numbers. Received: {type(x).__name__} {x!r:.60}"
            + ("\nhint: read an image file with mv.load_images" if isinstance(x, str) else "")
        )
    return arr


@names_parameters
def to_channels_first(x: np.ndarray) -> np.ndarray:
    """Move the last axis to position 1: ``(N, H, W, C) -> (N, C, H, W)``.

    Works for any rank >= 3 (``(N, L, C) -> (N, C, L)``); returns a
    contiguous copy.

    Example:
        >>> to_channels_first(np.zeros((2, 5, 6, 3))).shape
        (2, 3, 5, 6)
    """
    x = _numbers(x)
    if x.ndim < 3:
        return np.array(x, copy=True)
    return channels_first_copy(x, x.dtype)


@names_parameters
def to_channels_last(x: np.ndarray) -> np.ndarray:
    """Move axis 1 to the end: ``(N, C, H, W) -> (N, H, W, C)``.

    Example:
        >>> to_channels_last(np.zeros((2, 3, 5, 6))).shape
        (2, 5, 6, 3)
    """
    x = _numbers(x)
    if x.ndim < 3:
        return np.array(x, copy=True)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))
