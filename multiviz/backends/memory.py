"""Handing a framework's freed memory back to the OS while a large capture is copied.

A compiled Keras step (a ``tf.function``, a jitted JAX plan) returns every
captured output at once, allocated by the framework's worker threads. The
adapter copies them to NumPy one by one and drops each framework tensor as
soon as it is copied, so the data should never exist twice. With glibc's
allocator it still can: memory freed by a worker thread's arena cannot serve
the main thread's NumPy allocations, and glibc keeps it, so the process's
peak reaches the captured bytes twice over (2.0x measured on a ResNet50
capture of every layer on TensorFlow, ``benchmarks/keras_backends.py``).
``malloc_trim(0)`` returns the free pages of every arena to the OS; calling it
after each large stretch of freed tensors keeps the peak near the data plus
one stretch. Dask's distributed workers use the same call for the same reason.

Only glibc (Linux) has ``malloc_trim``; elsewhere :class:`Releaser` does
nothing. Small captures never call it (the cost, about a millisecond per
call, would show on a capture that frees little).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

__all__ = ["Releaser"]

#: captures smaller than this never trim
LARGE = 256 << 20
#: trim after this many bytes of framework tensors were freed
EVERY = 64 << 20

_trim: Callable[[int], int] | None = None
_looked = False


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none."""
    global _trim, _looked
    if not _looked:
        _looked = True
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl and other C libraries
                fn = None
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _trim = fn
    return _trim


class Releaser:
    """Counts the bytes of framework tensors freed; trims after each :data:`EVERY`.

    Args:
        total: bytes of the framework tensors about to be copied and freed.
            Below :data:`LARGE` the releaser does nothing.
    """

    def __init__(self, total: int) -> None:
        self.trim = malloc_trim() if total >= LARGE else None
        self.pending = 0

    def freed(self, nbytes: int) -> None:
        """``nbytes`` more of framework memory were just freed."""
        if self.trim is None:
            return
        self.pending += nbytes
        if self.pending >= EVERY:
            self.trim(0)
            self.pending = 0
