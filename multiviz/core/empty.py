"""A batch of zero samples: results of the right shape, without running the model on nothing.

Frameworks disagree about an empty batch (PyTorch's pooling and TensorFlow's
graph code raise, NumPy's ``argmax`` of nothing raises ``IndexError``). What a
caller expects is an empty result shaped like a full one: ``(0, H, W)`` maps,
``(0, C, H, W)`` activations, ``(0, classes)`` outputs. multiviz runs the call
on a stand-in batch of one all-zero sample of the same structure (the same
types, devices and sample shapes), then keeps zero rows of every array in the
result. Duck-typed: nothing here imports a framework.

Example:
    >>> x = np.zeros((0, 3, 8, 8), np.float32)
    >>> batch_length(x), stand_in(x).shape
    (0, (1, 3, 8, 8))
    >>> cut((np.ones((1, 8, 8)), [np.ones((1, 2))]))[0].shape
    (0, 8, 8)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["batch_length", "cut", "stand_in"]


def _parts(x: Any) -> list[Any]:
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, (tuple, list)) and x and all(hasattr(i, "shape") for i in x):
        return list(x)
    return [x]


def batch_length(x: Any) -> int | None:
    """The batch size of ``x`` (an array, a tensor, or a tuple/list/dict of them); ``None`` if unknown."""
    first = _parts(x)[0]
    shape = getattr(first, "shape", None)
    if shape is None or len(shape) == 0:
        return None
    try:
        return int(shape[0])
    except (TypeError, ValueError):  # a symbolic batch size
        return None


def _zeros(part: Any) -> Any:
    shape = (1, *tuple(int(d) for d in part.shape[1:]))
    if hasattr(part, "new_zeros"):  # a PyTorch tensor: same dtype and device
        return part.new_zeros(shape)
    dtype = getattr(part, "dtype", np.float32)
    try:
        return np.zeros(shape, np.dtype(dtype))
    except TypeError:  # a framework dtype NumPy does not know
        return np.zeros(shape, np.float32)


def stand_in(x: Any) -> Any:
    """``x`` with every array replaced by one all-zero sample of the same sample shape."""
    if isinstance(x, Mapping):
        return {k: _zeros(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)) and x and all(hasattr(i, "shape") for i in x):
        zeros = [_zeros(p) for p in x]
        return tuple(zeros) if isinstance(x, tuple) else zeros
    return _zeros(x)


def cut(result: Any) -> Any:
    """``result`` with zero rows kept of every array in it (tuples, lists and dicts followed)."""
    if isinstance(result, np.ndarray):
        return result[:0] if result.ndim else result
    if isinstance(result, tuple) and hasattr(result, "_fields"):  # a named tuple
        return type(result)(*(cut(v) for v in result))
    if isinstance(result, (tuple, list)):
        return type(result)(cut(v) for v in result)
    if isinstance(result, dict):
        out = copy.copy(result)  # the same type, with its attributes (mv.explain's result)
        for key in list(out):
            out[key] = cut(out[key])
        for name, value in getattr(out, "__dict__", {}).items():
            if isinstance(value, np.ndarray):
                setattr(out, name, cut(value))
        return out
    return result
