"""channel_stats / layer_stats against direct NumPy, and the streaming
accumulators against the one-shot computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multiviz import InputShapeError, LayerNotFoundError
from multiviz.core.records import Activations
from multiviz.core.stats import RunningLayerStats, RunningStats, channel_stats, layer_stats

RNG = np.random.default_rng(7)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)  # N, C, H, W all differ


# --------------------------------------------------------------------------- channel_stats


def test_channel_stats_over_batch_and_space_match_numpy():
    x = np.maximum(X, 0)
    x[:, 1] = 0.0  # a dead channel
    s = channel_stats(x)
    flat = np.moveaxis(x, 1, 0).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(s.mean, flat.mean(1), rtol=1e-6)
    np.testing.assert_allclose(s.std, flat.std(1), rtol=1e-6)
    np.testing.assert_allclose(s.min, flat.min(1))
    np.testing.assert_allclose(s.max, flat.max(1))
    np.testing.assert_allclose(s.zero_fraction, (flat == 0).mean(1))
    assert s.dead.tolist() == [False, True, False]
    assert s.count.tolist() == [40, 40, 40] and len(s) == 3


def test_channel_stats_eps_and_saturation_at_the_activation_bounds():
    x = np.array([[[0.0, 1e-4, 0.5, 6.0]], [[6.0, 5.995, 2.0, -1e-5]]])  # (C=2, H=1, W=4)
    s = channel_stats(x, eps=1e-3)
    assert s.zero_fraction.tolist() == [0.5, 0.25]
    assert np.isnan(s.saturated_fraction).all()  # unbounded: not reported
    # ReLU6 saturates within 1e-3 * 6 of 6: 6.0 and 5.995, not 2.0 or 0
    s = channel_stats(x, bounds=(6.0,))
    assert s.saturated_fraction.tolist() == [0.25, 0.5]
    # sigmoid: within 1e-3 of 0 or of 1
    sig = np.array([[[0.0, 0.0009, 0.5, 0.9995, 1.0, 0.002]]])
    assert channel_stats(sig, bounds=(0.0, 1.0)).saturated_fraction.tolist() == [4 / 6]


def test_positive_fraction_and_dead_over_every_input():
    x = np.zeros((3, 2, 2, 2))
    x[2, 0, 1, 1] = 0.5  # channel 0 is positive once, in the last input only
    x[:, 1] = -1.0  # channel 1 never is: dead, although nowhere zero
    s = channel_stats(x)
    assert s.positive_fraction.tolist() == [1 / 12, 0.0]
    assert s.fraction_positive is s.positive_fraction
    assert s.dead.tolist() == [False, True] and s.samples == 3
    assert channel_stats(x[:2]).dead.tolist() == [True, True]  # fewer inputs, other verdict


def test_constant_layer_is_dead_and_saturates_nothing():
    s = channel_stats(np.zeros((2, 3, 4)), bounds=(6.0,))
    assert s.saturated_fraction.tolist() == [0, 0] and s.dead.all()


def test_channel_stats_quantiles_from_the_sketch():
    x = RNG.normal(size=(1, 3, 4, 5))  # 20 values a channel: the sketch is exact
    s = channel_stats(x)
    want = np.quantile(
        np.moveaxis(x, 1, 0).reshape(3, -1), [0.25, 0.9], axis=1, method="inverted_cdf"
    )
    np.testing.assert_allclose(s.quantile([0.25, 0.9]), want.astype(np.float32))
    with pytest.raises(ValueError, match="without quantiles"):
        channel_stats(x, quantiles=False).quantile(0.5)


def test_channel_stats_leave_nonfinite_out_and_count_them():
    x = np.array([[[1.0, np.nan, 3.0, np.inf]], [[np.nan, np.nan, np.nan, np.nan]]])
    s = channel_stats(x)
    assert s.mean[0] == 2.0 and s.max[0] == 3.0 and s.std[0] == 1.0
    assert np.isnan(s.mean[1]) and np.isnan(s.min[1])
    assert s.nonfinite_fraction.tolist() == [0.5, 1.0]


def test_channel_stats_of_vectors_and_1d_maps():
    v = np.array([[1.0, 0.0], [3.0, 0.0]])  # (N=2, F=2)
    s = channel_stats(v, layout="NF")
    assert s.mean.tolist() == [2.0, 0.0] and s.dead.tolist() == [False, True]
    assert len(channel_stats(X[0, :, 0])) == 3  # (C, L)
    assert len(channel_stats(X[0, 0, 0])) == 5  # (F,): every feature a channel


# --------------------------------------------------------------------------- streaming


def _split(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(x, cuts)


def test_running_stats_batches_equal_one_shot():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(2.0, 3.0, size=(13, 4, 5, 6)), 0)
    x[:, 2] = 0.0
    one = channel_stats(x)
    acc = RunningStats()
    for b in _split(x, [1, 5, 6, 12]):
        acc.update(b)
    many = acc.channel_stats()
    for field in ("mean", "std", "l2", "min", "max", "zero_fraction", "positive_fraction"):
        np.testing.assert_allclose(getattr(many, field), getattr(one, field), rtol=1e-12)
    assert acc.samples == 13 and many.count.tolist() == one.count.tolist()


def test_merge_uses_chan_parallel_variance_exactly():
    rng = np.random.default_rng(4)
    # a large offset: naive sum-of-squares variance would lose all digits here
    x = 1e6 + rng.normal(size=(9, 3, 4, 2))
    a = RunningStats().update(x[:2]).update(x[2:4])
    b = RunningStats().update(x[4:])
    merged = a.merge(b).channel_stats()
    flat = np.moveaxis(x, 1, 0).reshape(3, -1)
    np.testing.assert_allclose(merged.mean, flat.mean(1), rtol=1e-14)
    np.testing.assert_allclose(merged.std, flat.std(1), rtol=1e-9)
    # Chan et al.: M2 = M2a + M2b + delta^2 * na * nb / n, by hand for channel 0
    fa, fb = np.moveaxis(x[:4], 1, 0)[0].ravel(), np.moveaxis(x[4:], 1, 0)[0].ravel()
    na, nb = fa.size, fb.size
    delta = fb.mean() - fa.mean()
    m2 = fa.var() * na + fb.var() * nb + delta**2 * na * nb / (na + nb)
    np.testing.assert_allclose(merged.std[0] ** 2, m2 / (na + nb), rtol=1e-9)


def test_merge_keeps_the_saturated_count_exact():
    x = np.zeros((4, 2, 1, 3))
    x[0, 0] = [6, 6, 1]  # at the bound in batch 0 ...
    x[3, 0] = [6, 2, 2]  # ... and again in batch 1
    x[1, 1] = [5, 5, 5]  # channel 1 never gets there
    a = RunningStats(bounds=(6.0,)).update(x[:2])
    b = RunningStats(bounds=(6.0,)).update(x[2:])
    s = a.merge(b).channel_stats()
    np.testing.assert_allclose(s.saturated_fraction, [3 / 12, 0.0])
    np.testing.assert_allclose(
        s.saturated_fraction, channel_stats(x, bounds=(6.0,)).saturated_fraction
    )


def test_running_stats_merge_order_does_not_matter():
    rng = np.random.default_rng(5)
    parts = [rng.normal(size=(k, 2, 3)) for k in (1, 4, 2)]  # (N, C, L)
    ab = RunningStats().update(parts[0]).merge(RunningStats().update(parts[1]).update(parts[2]))
    ba = RunningStats().update(parts[2]).merge(RunningStats().update(parts[1]).update(parts[0]))
    np.testing.assert_allclose(ab.channel_stats().std, ba.channel_stats().std, rtol=1e-12)


def test_streamed_percentiles_come_from_the_sketch_within_its_bound():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 2, 25, 25))  # 50 000 values
    exact = layer_stats({"x": x})["x"]
    acc = RunningStats()
    for b in np.split(x, 8):
        acc.update(b)
    approx = acc.layer_stats()
    assert exact.exact_percentiles and not approx.exact_percentiles
    np.testing.assert_allclose(exact.p50, np.median(x))
    np.testing.assert_allclose(exact.p99, np.percentile(x, 99))
    whole = acc.sketch.layer_sketch()  # the true ranks of the sketch's answers, within its bound
    for q, got in ((0.5, approx.p50), (0.99, approx.p99)):
        rank = float(np.mean(x <= got))
        assert (
            whole.get_rank_lower_bound(q, 3) - 1e-3
            <= rank
            <= whole.get_rank_upper_bound(q, 3) + 1e-3
        )
    assert approx.mean == pytest.approx(exact.mean, rel=1e-12)  # the rest stays exact
    # memory: a few kilobytes of sketch per channel, whatever the number of values
    assert all(s.num_retained < 2000 for s in acc.sketch.sketches)


def test_running_stats_errors():
    acc = RunningStats().update(np.zeros((2, 3, 4, 5)))
    with pytest.raises(InputShapeError, match=r"\(3, 4, 5\).*\(3, 4, 6\)"):
        acc.update(np.zeros((1, 3, 4, 6)))
    with pytest.raises(InputShapeError, match="batch"):
        RunningStats().update(np.zeros(5))
    with pytest.raises(ValueError, match="different settings"):
        acc.merge(RunningStats(eps=0.1).update(np.zeros((2, 3, 4, 5))))
    with pytest.raises(ValueError, match="no data"):
        RunningStats().channel_stats()


# --------------------------------------------------------------------------- layer_stats


def test_layer_stats_records_match_numpy():
    relu = np.maximum(RNG.normal(size=(3, 4, 5, 6)), 0)
    relu[:, 3] = 0.0  # dead channel
    relu[0, 0, 0, 0] = 0.0
    dense = RNG.normal(size=(3, 7))
    report = layer_stats(Activations({"conv.relu": relu, "fc": dense}, "torch"))
    rec = report["conv.relu"]
    assert rec.shape == (4, 5, 6) and rec.samples == 3
    assert rec.mean == pytest.approx(relu.mean()) and rec.std == pytest.approx(relu.std())
    assert (rec.min, rec.max) == (relu.min(), relu.max())
    assert rec.p50 == pytest.approx(np.percentile(relu, 50))
    assert rec.p01 == pytest.approx(np.percentile(relu, 1))
    assert rec.dead_fraction == 0.25
    assert rec.zero_fraction == pytest.approx((relu == 0).mean())
    assert np.isnan(rec.saturated_fraction)  # a ReLU is unbounded
    assert rec.positive_fraction == pytest.approx((relu > 0).mean())
    assert report[1].name == "fc" and report["fc"].shape == (7,)
    assert report[1].dead_fraction == np.mean((dense > 0).sum(axis=0) == 0)  # never > 0


def test_layer_stats_report_views():
    report = layer_stats({"a": np.ones((2, 3, 4, 5)), "b": np.zeros((2, 6))})
    assert len(report) == 2 and [r.name for r in report] == ["a", "b"]
    assert len(report[:1]) == 1
    text = repr(report)
    assert "LayerStatsReport(2 layers, 2 inputs)" in text and "3x4x5" in text and "100%" in text
    json.dumps(report.to_dict())  # plain data
    with pytest.raises(LayerNotFoundError, match="Did you mean 'a'"):
        report["A"]


def test_running_layer_stats_equal_one_shot():
    rng = np.random.default_rng(8)
    acts = {"c": np.maximum(rng.normal(size=(6, 3, 4, 5)), 0), "f": rng.normal(size=(6, 9))}
    one = layer_stats(acts)
    left, right = RunningLayerStats(), RunningLayerStats()
    for i in range(0, 4, 2):
        left.update({k: v[i : i + 2] for k, v in acts.items()})
    right.update({k: v[4:] for k, v in acts.items()})
    streamed = left.merge(right).result()
    for a, b in zip(one, streamed, strict=True):
        da, db = a.to_dict(), b.to_dict()
        for key in ("p01", "p50", "p99"):  # exact one-shot, sketched streaming
            values = np.sort(acts[a.name].ravel())
            below = np.searchsorted(values, db[key], "left") / values.size
            upto = np.searchsorted(values, db[key], "right") / values.size
            q = {"p01": 0.01, "p50": 0.5, "p99": 0.99}[key]
            assert below - 0.05 <= q <= upto + 0.05, key  # the value's rank interval meets q
        for key, value in da.items():
            if key in ("p01", "p50", "p99", "exact_percentiles"):
                continue
            if isinstance(value, float):
                assert db[key] == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), key
            else:
                assert db[key] == value, key


def test_channel_chunks_give_the_same_statistics(monkeypatch):
    import multiviz.core.stats as stats_module

    x = RNG.normal(size=(3, 5, 4, 2))
    whole = channel_stats(x)
    monkeypatch.setattr(stats_module, "_CHUNK", 10)  # one channel per float64 temporary
    chunked = channel_stats(x)
    for field in ("min", "max", "zero_fraction", "positive_fraction"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
    for field in ("mean", "std"):  # NumPy's pairwise sums group values by the chunk's shape
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-14)
