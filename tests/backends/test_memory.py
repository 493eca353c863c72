"""A large Keras capture hands freed framework memory back to the OS as it copies.

The peak RSS itself is measured by ``benchmarks/keras_backends.py`` (it moves
with the allocator's history, so it is no assertion); here: the trim is
called after each stretch of freed tensors, never on a small capture, and
the arrays are the same either way.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest

from multiviz.backends import memory
from tests.frameworks import C, H, W, expected_1x1, hand_weights


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_trim", lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory, "_looked", True)
    return calls


def test_releaser_trims_after_each_stretch_and_only_for_large_totals(counted) -> None:
    small = memory.Releaser(memory.LARGE - 1)
    for _ in range(10):
        small.freed(memory.EVERY)
    assert counted == []
    large = memory.Releaser(memory.LARGE)
    for _ in range(7):
        large.freed(memory.EVERY // 2)  # 3.5 stretches freed: three trims
    assert counted == [0, 0, 0]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_malloc_trim_is_found_on_glibc() -> None:
    trim = memory.malloc_trim()
    assert trim is not None and trim(0) in (0, 1)


@pytest.mark.keras
def test_a_large_keras_capture_trims_per_layer_and_returns_the_same_arrays(
    counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiviz as mv
    from tests.frameworks import kit

    keras_kit = kit("keras")
    w = hand_weights()
    model = keras_kit.one_by_one(w)
    x = np.random.default_rng(0).standard_normal((2, C, H, W)).astype(np.float32)
    names = ["conv", "relu", "gap", "fc"]
    small = mv.capture(model, keras_kit.native(x), names)
    assert counted == []  # a small capture never trims
    monkeypatch.setattr(memory, "LARGE", 0)
    monkeypatch.setattr(memory, "EVERY", 1)
    large = mv.capture(model, keras_kit.native(x), names)
    assert len(counted) == len(names)  # once after each layer's tensor is freed
    want = expected_1x1(x, w)
    for name in names:
        np.testing.assert_allclose(large[name], want[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(large[name], small[name])
