"""Token layers folded to maps: grid arithmetic, errors, high-norm tokens (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.core.tokens import (
    TokenGrid,
    TokenGridError,
    fold_tokens,
    high_norm_tokens,
    token_grid_arg,
)


def _coded_tokens(n: int, grid: TokenGrid, c: int = 3) -> np.ndarray:
    """Token t of sample i holds (i, t, channel) in its channels, so its position is readable."""
    t = np.zeros((n, grid.tokens, c), np.float32)
    for i in range(n):
        for k in range(grid.tokens):
            t[i, k] = [1000 * i + k + 0.01 * ch for ch in range(c)]
    return t


@pytest.mark.parametrize("grid", [(2, 3), (3, 2), (1, 5), (4, 4)])
@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_fold_puts_patch_r_c_at_pixel_r_c(grid, prefix):
    g = TokenGrid(grid, prefix=prefix, registers=min(prefix, 4) if prefix > 1 else 0)
    t = _coded_tokens(2, g, c=3)
    maps, pre = fold_tokens(t, g)
    h, w = grid
    assert maps.shape == (2, 3, h, w) and pre.shape == (2, prefix, 3)
    for i in range(2):
        for r in range(h):
            for col in range(w):
                token = prefix + r * w + col  # row-major after the prefix
                assert maps[i, :, r, col].tolist() == t[i, token].tolist()
        assert pre[i].tolist() == t[i, :prefix].tolist()


def test_fold_copies():
    g = TokenGrid((2, 2), prefix=1)
    t = _coded_tokens(1, g)
    maps, pre = fold_tokens(t, g)
    maps[...] = -1
    pre[...] = -1
    assert t.min() >= 0 and maps.flags.writeable and maps.flags.c_contiguous


def test_fold_refuses_a_count_that_does_not_fit_and_names_the_keywords():
    g = TokenGrid((14, 14), prefix=1)
    with pytest.raises(TokenGridError) as err:
        fold_tokens(np.zeros((1, 196, 8)), g, "blocks.3")
    first, hint = str(err.value).splitlines()
    assert "'blocks.3'" in first and "(1, 196, 8)" in first and "197" in first
    assert len(first) <= 200
    assert "token_grid=(h, w)" in hint and "prefix_tokens=P" in hint
    with pytest.raises(TokenGridError):
        fold_tokens(np.zeros((1, 197)), g)


def test_grid_properties():
    g = TokenGrid((7, 10), prefix=6, registers=4)
    assert (g.patches, g.tokens, g.register_indices, g.class_token) == (70, 76, [2, 3, 4, 5], True)
    assert not TokenGrid((2, 2), prefix=0).class_token
    assert not TokenGrid(
        (2, 2), prefix=4, registers=4
    ).class_token  # registers only: no class token
    with pytest.raises(TokenGridError):
        TokenGrid((0, 3))
    with pytest.raises(TokenGridError):
        TokenGrid((2, 2), prefix=1, registers=2)


def test_token_grid_argument():
    assert token_grid_arg(None, None) is None
    assert token_grid_arg((3, 5), None) == TokenGrid((3, 5), prefix=1)
    assert token_grid_arg([3, 5], 0) == TokenGrid((3, 5), prefix=0, class_token=False)
    for bad in [(3,), (3, 0), "ab", (2.5, 3), (1, 2, 3)]:
        with pytest.raises(TokenGridError, match="token_grid"):
            token_grid_arg(bad, 1)
    for bad in [-1, 1.5, True, "1"]:
        with pytest.raises(TokenGridError, match="prefix_tokens"):
            token_grid_arg((2, 2), bad)
    with pytest.raises(TokenGridError, match="needs `token_grid`"):
        token_grid_arg(None, 1)


def test_high_norm_tokens_finds_planted_tokens_only():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 16, 5, 6)).astype(np.float32)  # norms ~ 4 each
    median = np.median(np.sqrt((maps.astype(np.float64) ** 2).sum(1)).reshape(3, -1), axis=1)
    maps[1, :, 2, 4] *= 0.0
    maps[1, 0, 2, 4] = 4.5 * median[1]  # just above 4x the median
    maps[2, 0, 0, 1] = 3.5 * median[2]  # below: not an artifact (its norm is ~3.5x)
    maps[2, 1:, 0, 1] = 0.0
    found = high_norm_tokens(maps)
    assert found.tolist() == [[1, 2, 4]]
    assert found.dtype == np.int64
    assert high_norm_tokens(maps, factor=3.0).tolist() == [[1, 2, 4], [2, 0, 1]]
    assert high_norm_tokens(np.zeros((0, 2, 2, 2))).shape == (0, 3)
    with pytest.raises(ValueError, match="factor"):
        high_norm_tokens(maps, factor=0)
