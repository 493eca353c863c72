"""aggregate / select_channels against direct NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.core.reduce import aggregate, select_channels

RNG = np.random.default_rng(7)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)  # N, C, H, W all differ

NUMPY = {
    "mean": lambda a, ax: a.mean(axis=ax),
    "max": lambda a, ax: a.max(axis=ax),
    "std": lambda a, ax: a.std(axis=ax),
    "l2": lambda a, ax: np.sqrt((a.astype(np.float64) ** 2).sum(axis=ax)),
    "sum": lambda a, ax: a.sum(axis=ax),
}


# --------------------------------------------------------------------------- aggregate


@pytest.mark.parametrize("reduce", list(NUMPY))
def test_aggregate_matches_numpy_for_every_layout(reduce):
    ref = NUMPY[reduce]
    np.testing.assert_allclose(aggregate(X[0], reduce), ref(X[0], 0), rtol=1e-5)  # (C,H,W)
    np.testing.assert_allclose(aggregate(X, reduce), ref(X, 1), rtol=1e-5)  # (N,C,H,W)
    x1 = X[0, :, 0]  # (C, L)
    np.testing.assert_allclose(aggregate(x1, reduce), ref(x1, 0), rtol=1e-5)
    xn = X[:, :, 0]  # (N, C, L)
    np.testing.assert_allclose(aggregate(xn, reduce, layout="NCL"), ref(xn, 1), rtol=1e-5)
    v = X[0, 0, 0]  # (F,) -> scalar
    np.testing.assert_allclose(aggregate(v, reduce), ref(v, 0), rtol=1e-5)
    assert aggregate(X, reduce).dtype == np.float32


def test_aggregate_over_chosen_channels():
    np.testing.assert_allclose(aggregate(X, "mean", [2, 0]), X[:, [0, 2]].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(aggregate(X[0], "max", [-1]), X[0, 2], rtol=1e-6)


def test_aggregate_shapes():
    assert aggregate(X).shape == (2, 4, 5)
    assert aggregate(X[0]).shape == (4, 5)
    assert aggregate(X[0, :, 0]).shape == (5,)
    assert aggregate(X[:, :, 0, 0], layout="NF").shape == (2,)


def test_aggregate_bad_arguments():
    with pytest.raises(ValueError, match="must be one of"):
        aggregate(X, "median")
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[3\]"):
        aggregate(X, "mean", [3])
    with pytest.raises(ValueError, match="sequence of ints"):
        aggregate(X, "mean", [0.5])


def test_aggregate_nan_propagates_without_warning():
    x = X[0].copy()
    x[1, 2, 3] = np.nan
    out = aggregate(x, "std")
    assert np.isnan(out[2, 3]) and np.isfinite(np.delete(out.ravel(), 2 * 5 + 3)).all()


# --------------------------------------------------------------------------- select_channels


def test_select_channels_all_and_given():
    assert select_channels(X[0]).tolist() == [0, 1, 2]
    assert select_channels(X, [2, -3]).tolist() == [2, 0]


@pytest.mark.parametrize("by", ["mean", "max", "std", "l2"])
def test_select_top_by_score_matches_numpy(by):
    flat = np.moveaxis(X, 1, 0).reshape(3, -1).astype(np.float64)
    score = {
        "mean": flat.mean(1),
        "max": flat.max(1),
        "std": flat.std(1),
        "l2": np.sqrt((flat**2).sum(1)),
    }[by]
    assert select_channels(X, top=2, by=by).tolist() == np.argsort(-score)[:2].tolist()


def test_select_top_ties_nan_and_candidates():
    x = np.stack([np.full((2, 3), v) for v in (1.0, 5.0, np.nan, 5.0, 0.0)])
    assert select_channels(x, top=5).tolist() == [1, 3, 0, 4, 2]  # ties: lower first, NaN last
    assert select_channels(x, [4, 0, 3], top=2).tolist() == [3, 0]
    assert select_channels(x, top=0).tolist() == []
    with pytest.raises(ValueError, match="top"):
        select_channels(x, top=-1)
    with pytest.raises(ValueError, match="by"):
        select_channels(x, top=1, by="median")
