"""Bilinear resizing (core, NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.core.resize import resize_bilinear


def test_resize_identity_is_a_copy() -> None:
    a = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    r = resize_bilinear(a, (3, 5))
    np.testing.assert_array_equal(r, a)
    r[0, 0] = -1
    assert a[0, 0] != -1


def test_resize_hand_computed_half_pixel_centres() -> None:
    # 2 -> 4: source coordinates -0.25, 0.25, 0.75, 1.25 clamp to [0, 1]
    r = resize_bilinear(np.array([[0.0, 4.0]]), (1, 4))
    np.testing.assert_allclose(r, [[0.0, 1.0, 3.0, 4.0]])


def test_resize_keeps_leading_axes_and_constant_maps() -> None:
    a = np.full((2, 3, 4, 6), 7.0, dtype=np.float32)
    r = resize_bilinear(a, (9, 5))
    assert r.shape == (2, 3, 9, 5)
    np.testing.assert_allclose(r, 7.0)


def test_resize_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 axes"):
        resize_bilinear(np.zeros(3), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        resize_bilinear(np.zeros((2, 2)), (0, 2))
