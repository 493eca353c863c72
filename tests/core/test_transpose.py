"""The blocked, threaded channels-last -> channels-first copy (core, NumPy only)."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

from multiviz.core.layout import to_channels_first
from multiviz.core.transpose import channels_first_copy

SHAPES = [
    (8, 112, 112, 64),  # threaded, many blocks per sample
    (2, 7, 7, 2048),  # few positions, many channels
    (1, 300, 1000, 3),  # one sample, three channels
    (3, 5000, 70),  # (N, L, C)
    (2, 4, 30, 30, 40),  # (N, T, H, W, C)
    (2, 3, 4, 1),  # one channel, below the threaded size
    (0, 5, 5, 8),  # an empty batch
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_channels_first_copy_is_moveaxis(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    x.flags.writeable = False  # a framework's read-only buffer is a valid source
    out = channels_first_copy(x)
    expected = np.moveaxis(x, -1, 1)
    np.testing.assert_array_equal(out, expected)  # exact: a copy, no arithmetic
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    assert not np.shares_memory(out, x)


def test_channels_first_copy_casts_and_reads_strided_sources() -> None:
    x = np.random.default_rng(1).standard_normal((4, 64, 64, 48))  # float64, 6 MiB
    np.testing.assert_array_equal(channels_first_copy(x), np.moveaxis(x, -1, 1).astype(np.float32))
    strided = x[:, ::2, ::2].astype(np.float32)[..., ::-1]  # not C-contiguous
    out = channels_first_copy(strided)
    np.testing.assert_array_equal(out, np.moveaxis(strided, -1, 1))
    assert out.flags.c_contiguous


def test_channels_first_copy_refuses_low_ranks() -> None:
    with pytest.raises(ValueError, match="rank >= 3"):
        channels_first_copy(np.zeros((4, 5), np.float32))


def test_to_channels_first_always_copies() -> None:
    one = np.zeros((2, 4, 4, 1), np.float16)  # moving a size-1 axis is already contiguous
    out = to_channels_first(one)
    assert out.dtype == np.float16 and not np.shares_memory(out, one)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_channels_first_copy_works_in_a_forked_child() -> None:
    x = np.random.default_rng(2).standard_normal((4, 100, 100, 32), dtype=np.float32)
    channels_first_copy(x)  # the parent's worker threads exist now
    pid = os.fork()
    if pid == 0:  # child: the pool's threads did not survive the fork
        signal.alarm(60)  # a hang (waiting on threads that do not exist) fails, not stalls
        ok = np.array_equal(channels_first_copy(x), np.moveaxis(x, -1, 1))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
