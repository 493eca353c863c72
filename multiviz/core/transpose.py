"""A fast channels-last -> channels-first copy for large arrays.

NumPy copies a transposed view element by element in the destination's order,
reading the source with a stride of ``C`` floats: on a ``(8, 112, 112, 64)``
float32 map that costs about three times a plain copy. Moving the channel axis
block by block (``block`` spatial positions at a time, so both the rows read
and the rows written stay in cache) on a few threads brings it to about 1.6-2
plain copies. Keras hands over channels-last buffers that multiviz must copy
anyway (they are read-only or shared), so moving the axis in that copy
replaces a transpose in the framework plus a copy
(``benchmarks/keras_backends.py`` times the copy inside a capture).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["channels_first_copy"]

#: below this many bytes a plain NumPy copy is as fast as the blocked one
_THREADED_FROM = 1 << 20
#: bytes of one block (spatial positions x channels) moved at once
_BLOCK_BYTES = 32 << 10

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="multiviz-transpose")
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def channels_first_copy(x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """A new C-contiguous ``dtype`` array with ``x``'s last axis moved to position 1.

    ``(N, H, W, C) -> (N, C, H, W)``, ``(N, L, C) -> (N, C, L)``,
    ``(N, T, H, W, C) -> (N, C, T, H, W)``. ``x`` is only read (a read-only
    view of a framework's buffer is fine); the result shares no memory with it.

    Args:
        x: an array of rank >= 3, any real dtype.
        dtype: the result's dtype (default float32).

    Returns:
        The moved copy, writable and C-contiguous; the same values as
        ``np.ascontiguousarray(np.moveaxis(x, -1, 1), dtype)``.

    Example:
        >>> x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
        >>> bool((channels_first_copy(x) == np.moveaxis(x, -1, 1)).all())
        True
    """
    if x.ndim < 3:
        raise ValueError(f"channels_first_copy needs rank >= 3, got shape {x.shape}")
    n, *space, c = x.shape
    out = np.empty((n, c, *space), dtype=dtype)
    if x.nbytes < _THREADED_FROM or not x.flags.c_contiguous or x.dtype != out.dtype:
        np.copyto(out, np.moveaxis(x, -1, 1), casting="unsafe")
        return out
    p = out.size // max(n * c, 1)  # spatial positions per sample
    src = x.reshape(n, p, c)
    dst = out.reshape(n, c, p)
    block = max(8, _BLOCK_BYTES // (c * x.itemsize))
    tasks = [(i, s) for i in range(n) for s in range(0, p, block)]
    chunks = _WORKERS  # one contiguous run of blocks per worker

    def move(part: list[tuple[int, int]]) -> None:
        for i, s in part:
            dst[i, :, s : s + block] = src[i, s : s + block].T

    step = -(-len(tasks) // chunks)
    for f in [_workers().submit(move, tasks[k : k + step]) for k in range(0, len(tasks), step)]:
        f.result()
    return out
