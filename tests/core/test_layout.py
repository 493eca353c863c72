"""Layout conversion (core, NumPy only)."""

from __future__ import annotations

import numpy as np

from multiviz.core.layout import to_channels_first, to_channels_last


def test_layout_round_trip_moves_the_right_axis() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # N, C, H, W
    last = to_channels_last(x)
    assert last.shape == (2, 4, 5, 3)
    assert last[1, 2, 3, 0] == x[1, 0, 2, 3]
    np.testing.assert_array_equal(to_channels_first(last), x)
    assert to_channels_first(last).flags.c_contiguous
