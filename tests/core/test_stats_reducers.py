"""The streaming reducers against brute force on random data.

Brute force: every value of a channel gathered into one float64 array and
reduced with NumPy (mean, std, min, max, sorting for ranks and for top-k).
The reducers see the same data in random batch splits, merged in random
orders: counts, min, max and top-k must be identical, moments within 1e-6
(relative), sketch quantiles within the sketch's own documented rank bound.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from multiviz.core.stats import (
    Counts,
    Moments,
    QuantileSketch,
    TopK,
    as_channels,
    pack_bytes,
    saturation_tolerance,
    unpack_bytes,
)

N, C, H, W = 60, 5, 6, 7  # every axis a different length


def _data(seed: int, nonfinite: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, C, H, W)).astype(np.float32) * rng.uniform(0.5, 3, size=(1, C, 1, 1))
    x[:, 2] = np.maximum(x[:, 2], 0)  # a ReLU-like channel: many exact zeros
    x[:, 3] = np.clip(x[:, 3] + 1.0, 0, 1)  # piles up at both bounds of a hard sigmoid
    x[:, 4] = -np.abs(x[:, 4])  # never positive: dead
    if nonfinite:
        idx = rng.integers(0, x.size, 40)
        vals = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), 40)
        x.reshape(-1)[idx] = vals
    return x.astype(np.float32)  # activations are float32


def _per_channel(x: np.ndarray) -> list[np.ndarray]:
    """Every finite value of each channel, float64."""
    v = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.float64)
    return [row[np.isfinite(row)] for row in v]


def _splits(rng: np.random.Generator, n: int) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(1, 8), replace=False))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def _merge_randomly(parts: list, rng: np.random.Generator):
    """Merge partial reducers pairwise in a random tree order."""
    parts = list(parts)
    while len(parts) > 1:
        i, j = sorted(rng.choice(len(parts), 2, replace=False).tolist())
        b = parts.pop(j)
        a = parts.pop(i)
        parts.append(a.merge(b) if rng.random() < 0.5 else b.merge(a))
    return parts[0]


def _partials(make, update, x: np.ndarray, rng: np.random.Generator) -> list:
    parts = []
    for sl in _splits(rng, len(x)):
        v, _ = as_channels(x[sl])
        parts.append(update(make(), v, np.arange(len(x))[sl]))
    return parts


# --------------------------------------------------------------------------- moments


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("nonfinite", [False, True])
def test_moments_match_brute_force_for_any_split_and_merge_order(seed, nonfinite):
    x = _data(seed, nonfinite)
    rng = np.random.default_rng(100 + seed)
    parts = _partials(lambda: Moments(C), lambda r, v, i: r.update(v), x, rng)
    got = _merge_randomly(parts, rng).finalize()
    vals = _per_channel(x)
    assert got["count"].tolist() == [len(v) for v in vals]
    np.testing.assert_allclose(got["mean"], [v.mean() for v in vals], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(got["std"], [v.std() for v in vals], rtol=1e-6)
    np.testing.assert_allclose(got["l2"], [np.sqrt((v**2).sum()) for v in vals], rtol=1e-6)
    assert got["min"].tolist() == [v.min() for v in vals]  # exact
    assert got["max"].tolist() == [v.max() for v in vals]


def test_moments_of_a_channel_without_finite_values_are_nan():
    x = np.full((3, 2, 4), np.nan, np.float32)
    x[:, 1] = 2.0
    got = Moments(2).update(x).finalize()
    assert got["count"].tolist() == [0, 12]
    assert np.isnan([got[k][0] for k in ("mean", "std", "min", "max")]).all()
    assert got["mean"][1] == 2.0 and got["std"][1] == 0.0


def test_moments_merge_with_empty_and_empty_batch():
    x = _data(0)
    v, _ = as_channels(x)
    one = Moments(C).update(v).finalize()
    other = Moments(C).merge(Moments(C).update(v)).update(v[:0]).merge(Moments(C)).finalize()
    for key in one:
        np.testing.assert_array_equal(one[key], other[key])


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_brute_force_for_any_split(seed):
    x = _data(seed, nonfinite=True)
    rng = np.random.default_rng(seed)
    bounds = (0.0, 1.0)
    parts = _partials(lambda: Counts(C, bounds, eps=1e-3), lambda r, v, i: r.update(v), x, rng)
    got = _merge_randomly(parts, rng).finalize()
    flat = x.transpose(1, 0, 2, 3).reshape(C, -1).astype(np.float64)
    finite = np.isfinite(flat)
    assert got["total"].tolist() == [flat.shape[1]] * C
    assert got["nonfinite"].tolist() == (~finite).sum(axis=1).tolist()
    assert got["positive"].tolist() == (finite & (flat > 0)).sum(axis=1).tolist()
    assert got["zero"].tolist() == (np.abs(flat) <= 1e-3).sum(axis=1).tolist()
    sat = sum(np.abs(flat - b) <= 1e-3 for b in bounds).sum(axis=1)
    assert got["saturated"].tolist() == sat.tolist()
    assert got["positive"][4] == 0  # the never-positive channel
    # the hard-sigmoid channel piles up at its bounds: most of its values saturate
    assert got["saturated"][3] > 0.5 * flat.shape[1]


def test_saturation_tolerance_is_relative_to_the_bound_scale():
    x = np.array([[[6.0, 5.995, 5.993, 0.0, 1.0]]], np.float32)
    assert Counts(1, bounds=(6.0,)).update(x).finalize()["saturated"].tolist() == [2]
    assert saturation_tolerance(-1.0) == 1e-3 and saturation_tolerance(6.0) == 6e-3
    # unbounded: nothing is counted
    assert Counts(1).update(x).finalize()["saturated"].tolist() == [0]


def test_counts_refuse_to_merge_different_bounds():
    with pytest.raises(ValueError, match="different bounds"):
        Counts(2, (6.0,)).merge(Counts(2, (0.0, 1.0)))


# --------------------------------------------------------------------------- top-k


def _brute_topk(x: np.ndarray, k: int):
    """Per channel: (index, score, flat position) of the k best inputs by max over positions."""
    n, c = x.shape[:2]
    v = x.reshape(n, c, -1)
    out = []
    for ch in range(c):
        rows = []
        for i in range(n):
            m = v[i, ch]
            fin = np.isfinite(m)
            if not fin.any():
                continue
            masked = np.where(fin, m, -np.inf)
            rows.append((-float(masked.max()), i, int(np.argmax(masked))))
        rows.sort()  # score descending, then index ascending
        out.append([(i, -s, p) for s, i, p in rows[:k]])
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("nonfinite", [False, True])
def test_topk_identical_to_brute_force_for_any_split_and_merge_order(seed, nonfinite):
    x = _data(seed, nonfinite)
    # plant ties: the same max in several inputs of channel 0, at different positions
    x[[7, 3, 41], 0, 2, 3] = 50.0
    x[[19], 0, 5, 6] = 50.0
    rng = np.random.default_rng(seed)
    k = 6
    parts = _partials(lambda: TopK(C, k), lambda r, v, i: r.update(v, i), x, rng)
    got = _merge_randomly(parts, rng).finalize()
    want = _brute_topk(x, k)
    for ch in range(C):
        assert got["index"][:, ch].tolist() == [w[0] for w in want[ch]]
        assert got["score"][:, ch].tolist() == [w[1] for w in want[ch]]
        assert got["position"][:, ch].tolist() == [w[2] for w in want[ch]]
    assert got["index"][:4, 0].tolist() == [3, 7, 19, 41]  # ties by index ascending
    assert np.unravel_index(got["position"][0, 0], (H, W)) == (2, 3)


def test_topk_with_fewer_inputs_than_k_and_inputs_without_finite_values():
    x = np.array([[[1.0, 2.0]], [[np.nan, np.inf]], [[3.0, -1.0]]], np.float32)
    got = TopK(1, k=5).update(x, np.array([4, 5, 6])).finalize()
    assert got["valid"][:, 0].tolist() == [True, True, False, False, False]
    assert got["index"][:2, 0].tolist() == [6, 4]
    assert (got["index"][2:, 0] == -1).all()


def test_topk_rejects_bad_arguments():
    with pytest.raises(ValueError, match="topk"):
        TopK(3, k=0)
    with pytest.raises(ValueError, match="one index per sample"):
        TopK(1, 2).update(np.zeros((3, 1, 2)), np.arange(2))


# --------------------------------------------------------------------------- quantiles


def _true_rank_interval(values: np.ndarray, v: float) -> tuple[float, float]:
    """Normalized ranks of ``v`` among ``values``: fraction < v, fraction <= v."""
    s = np.sort(values)
    return np.searchsorted(s, v, "left") / s.size, np.searchsorted(s, v, "right") / s.size


def test_quantiles_exact_while_the_sketch_holds_every_value():
    x = _data(0, nonfinite=True)[:1]  # 42 values per channel: below REQ's first compaction (72)
    v, _ = as_channels(x)
    s = QuantileSketch(C).update(v)
    assert s.exact
    qs = [0.0, 0.1, 0.5, 0.9, 0.995, 1.0]
    got = s.quantile(qs)
    for ch, vals in enumerate(_per_channel(x)):
        want = np.quantile(vals, qs, method="inverted_cdf")
        np.testing.assert_array_equal(got[:, ch], want.astype(np.float32))


def test_quantiles_within_the_sketch_rank_bound_for_any_split():
    """Every channel's quantiles at 7 ranks, after random splits and merges.

    REQ is randomized: DataSketches documents its rank bound at 3 standard
    deviations (about 99.7% of queries inside). Over the 7 * 8 * 4 = 224
    queries here about 0.7 are expected outside it; the test allows 6 (a
    chance below 1e-4 for a correct sketch) and none beyond twice the bound.
    """
    rng = np.random.default_rng(5)
    qs = [0.01, 0.1, 0.5, 0.9, 0.99, 0.995, 0.999]
    outside = 0
    checks = 0
    for seed in range(4):
        x = rng.normal(size=(400, 8, 11, 13)).astype(np.float32)  # 57,200 values per channel
        x[:, 1] = np.exp(x[:, 1])  # heavy right tail
        x[:, 2] = np.maximum(x[:, 2], 0)  # half of the values tied at 0
        parts = _partials(
            lambda: QuantileSketch(8), lambda r, v, i: r.update(v), x, np.random.default_rng(seed)
        )
        s = _merge_randomly(parts, np.random.default_rng(seed))
        assert not s.exact and s.n.tolist() == [400 * 11 * 13] * 8
        got = s.quantile(qs)
        vals = _per_channel(x)
        for qi, q in enumerate(qs):
            lo, hi = s.rank_bounds(q, 3)
            for ch in range(8):
                below, at_or_below = _true_rank_interval(vals[ch], got[qi, ch])
                checks += 1
                # the returned value's rank interval must meet [lo, hi]
                slack = max(lo[ch] - at_or_below, below - hi[ch], 0.0)
                outside += slack > 0
                assert slack <= hi[ch] - lo[ch], (q, ch, below, at_or_below, lo[ch], hi[ch])
    assert checks == 224
    assert outside <= 6


def test_top_tail_is_the_most_accurate_part_of_the_sketch():
    s = QuantileSketch(1).update(np.random.default_rng(0).normal(size=(1, 1, 200_000)))
    width = [np.subtract(*s.rank_bounds(q, 2)[::-1])[0] for q in (0.5, 0.9, 0.995)]
    assert width[0] > width[1] > width[2] > 0


def test_sketch_position_subsampling_keeps_an_evenly_spaced_subset():
    x = np.arange(2 * 1 * 100, dtype=np.float32).reshape(2, 1, 100)
    s = QuantileSketch(1, positions=5).update(x)
    assert s.n.tolist() == [10]
    assert s.quantile(1.0)[0] == 199.0 and s.quantile(0.0)[0] == 0.0


def test_quantile_rejects_ranks_outside_0_1():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        QuantileSketch(1).quantile(1.5)


# --------------------------------------------------------------------------- state


def test_every_reducer_round_trips_through_npz_without_pickle(tmp_path):
    x = _data(3, nonfinite=True)
    v, _ = as_channels(x)
    idx = np.arange(N)
    reducers = {
        "m": Moments(C).update(v),
        "c": Counts(C, (0.0, 1.0), 1e-3).update(v),
        "q": QuantileSketch(C, positions=20).update(v),
        "t": TopK(C, 4).update(v, idx),
    }
    flat = {f"{name}.{k}": a for name, r in reducers.items() for k, a in r.to_state().items()}
    np.savez(tmp_path / "s.npz", **flat)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    for name, r in reducers.items():
        state = {k.split(".", 1)[1]: a for k, a in loaded.items() if k.startswith(name + ".")}
        back = type(r).from_state(state)
        for key, arr in r.to_state().items():
            np.testing.assert_array_equal(back.to_state()[key], arr)
    q = QuantileSketch.from_state(
        {k.split(".", 1)[1]: a for k, a in loaded.items() if k.startswith("q.")}
    )
    np.testing.assert_array_equal(q.quantile([0.1, 0.9]), reducers["q"].quantile([0.1, 0.9]))
    assert q.positions == 20


def test_pack_bytes_round_trip():
    blobs = [b"", b"\x00\x01", b"xyz" * 100]
    assert unpack_bytes(*pack_bytes(blobs)) == blobs


def test_finite_values_whose_float32_sum_overflows_are_still_finite():
    # 3e38 is a finite float32; forty of them sum to +Inf in float32. The
    # reducers' one finiteness check per batch must not take them for Inf:
    # brute force in float64 knows the answers.
    from multiviz.core.stats import RunningStats

    x = np.full((4, 2, 10), 3e38, np.float32)
    x[:, 1] = np.arange(40, dtype=np.float32).reshape(4, 10)
    with np.errstate(over="ignore"):
        assert np.isinf(x.sum())  # the premise
    s = RunningStats(topk=2).update(x)
    cs = s.channel_stats()
    assert cs.nonfinite_fraction.tolist() == [0.0, 0.0]
    assert cs.count.tolist() == [40, 40] and cs.positive_fraction.tolist() == [1.0, 39 / 40]
    np.testing.assert_allclose(cs.mean, [np.float64(np.float32(3e38)), 19.5], rtol=1e-12)
    np.testing.assert_allclose(cs.std, [0.0, np.arange(40).std()], rtol=1e-12, atol=1e-300)
    assert s.sketch.n.tolist() == [40, 40]  # every value in the sketches
    top = s.exemplars()
    assert top["valid"].all() and top["index"][:, 0].tolist() == [0, 1]  # ties: lowest index
    assert top["index"][:, 1].tolist() == [3, 2]


def test_float64_values_beyond_float32_stay_in_the_moments_and_out_of_the_sketch():
    # The sketches and top-k hold float32: a finite float64 1e39 becomes Inf
    # there and is left out, as NaN and Inf are; moments and counts see it.
    from multiviz.core.stats import RunningStats

    x = np.ones((3, 1, 4))
    x[1, 0, 2] = 1e39
    s = RunningStats(topk=3).update(x)
    cs = s.channel_stats()
    assert cs.nonfinite_fraction.tolist() == [0.0] and cs.max.tolist() == [1e39]
    np.testing.assert_allclose(cs.mean, [(11 + 1e39) / 12], rtol=1e-12)
    assert s.sketch.n.tolist() == [11]
    top = s.exemplars()
    assert top["index"][:, 0].tolist() == [0, 1, 2] and top["score"][:, 0].tolist() == [1, 1, 1]
