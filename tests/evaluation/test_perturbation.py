"""Deletion and insertion curves against closed-form answers on linear "models".

For a linear scorer f(x) = sum_{c,p} w[c,p] x[c,p] the contribution of pixel p
is c_p = sum_c w[c,p] x[c,p]. Deleting to zeros the first n pixels of an order
leaves f = total - (sum of their contributions): every point of the deletion
curve can be written down, and the true contributions as the map give the
lowest curve of all orders (the n largest have the largest sum).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from multiviz.evaluation.perturbation import (
    auc,
    gaussian_blur,
    make_substrate,
    perturbation_curves,
    pixel_order,
    pixel_ranks,
    removed_counts,
)

H, W, C = 4, 5, 3  # shapes where C, H and W all differ


def linear_scorer(weights: np.ndarray, calls: list[int] | None = None):
    """f(x)[i] = sum(weights[rows[i]] * x[i]): one weight array (C, H, W) per image."""

    def score(inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(len(rows))
        return (weights[rows] * inputs.astype(np.float64)).sum(axis=(1, 2, 3))

    return score


def test_deletion_curve_of_a_linear_model_is_total_minus_the_removed_contributions():
    rng = np.random.default_rng(1)
    # contributions 1..20 at scrambled pixels: channel 0 carries them, the others add 0
    contrib = rng.permutation(np.arange(1, H * W + 1, dtype=np.float64)).reshape(H, W)
    x = np.ones((1, C, H, W), np.float32)
    w = np.zeros((1, C, H, W))
    w[0, 0] = contrib
    curve = perturbation_curves(
        x, contrib[None], linear_scorer(w), substrate=np.zeros_like(x), steps=4
    )[0]
    # 5 pixels per step, largest first: 210, 210-(20+19+18+17+16), ... by hand
    assert curve.tolist() == [210.0, 120.0, 55.0, 15.0, 0.0]
    assert auc(curve) == pytest.approx((105.0 + 120.0 + 55.0 + 15.0 + 0.0) / 4)


def test_insertion_curve_of_a_linear_model_adds_the_inserted_contributions_to_the_substrate():
    rng = np.random.default_rng(2)
    x = rng.random((2, C, H, W)).astype(np.float32)
    w = rng.normal(size=(2, C, H, W))
    sub = make_substrate(x, "mean")
    maps = rng.random((2, H, W))
    steps = 5
    curves = perturbation_curves(
        x, maps, linear_scorer(w), mode="insertion", substrate=sub, steps=steps
    )
    counts = removed_counts(H * W, steps)
    gain = (w * (x.astype(np.float64) - sub)).sum(axis=1).reshape(2, -1)  # per pixel
    base = (w * sub).sum(axis=(1, 2, 3))
    order = pixel_order(maps)
    for i in range(2):
        expected = [base[i] + gain[i, order[i, :n]].sum() for n in counts]
        np.testing.assert_allclose(curves[i], expected, rtol=1e-9, atol=1e-9)


def test_the_true_contributions_give_the_lowest_deletion_auc_of_any_order():
    rng = np.random.default_rng(3)
    x = rng.random((1, C, H, W)).astype(np.float32)
    w = rng.normal(size=(1, C, H, W))
    truth = (w * x).sum(axis=1)  # c_p
    score = linear_scorer(w)
    zeros = np.zeros_like(x)
    best = auc(perturbation_curves(x, truth, score, substrate=zeros, steps=H * W))[0]
    worst = auc(perturbation_curves(x, -truth, score, substrate=zeros, steps=H * W))[0]
    for _ in range(20):
        other = rng.random((1, H, W))
        a = auc(perturbation_curves(x, other, score, substrate=zeros, steps=H * W))[0]
        assert best - 1e-9 <= a <= worst + 1e-9
    assert best < worst


def test_ties_are_broken_by_pixel_index():
    flat = np.zeros((1, 2, 3))  # every pixel tied
    assert pixel_order(flat).tolist() == [[0, 1, 2, 3, 4, 5]]
    m = np.array([[[1.0, 2.0, 2.0], [1.0, 2.0, 0.0]]])
    assert pixel_order(m).tolist() == [[1, 2, 4, 0, 3, 5]]
    assert pixel_order(m, descending=False).tolist() == [[5, 0, 3, 1, 2, 4]]
    assert pixel_ranks(m).tolist() == [[3, 0, 1, 4, 2, 5]]
    # the deletion curve follows that order: pixel values 1..6 in a single-channel image
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 1, 2, 3)
    curve = perturbation_curves(
        x, np.zeros((1, 2, 3)), linear_scorer(np.ones((1, 1, 2, 3))), substrate=0 * x, steps=6
    )[0]
    assert curve.tolist() == [21.0, 20.0, 18.0, 15.0, 11.0, 6.0, 0.0]


def test_batches_cross_images_and_steps_and_the_result_does_not_depend_on_batch_size():
    rng = np.random.default_rng(4)
    x = rng.random((3, C, H, W)).astype(np.float32)
    w = rng.normal(size=(3, C, H, W))
    maps = rng.random((3, H, W))
    sub = make_substrate(x, "blur", blur_sigma=1.0)
    results, calls = [], []
    for bs in (1, 7, 64):
        seen: list[int] = []
        results.append(
            perturbation_curves(
                x, maps, linear_scorer(w, seen), substrate=sub, steps=10, batch_size=bs
            )
        )
        calls.append(seen)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    total = 3 * 11
    assert [len(c) for c in calls] == [total, math.ceil(total / 7), 1]
    assert all(max(c) <= bs for c, bs in zip(calls, (1, 7, 64), strict=True))


def test_known_end_points_cost_no_call_and_give_the_same_curve():
    rng = np.random.default_rng(5)
    x = rng.random((2, C, H, W)).astype(np.float32)
    w = rng.normal(size=(2, C, H, W))
    maps = rng.random((2, H, W))
    zeros = np.zeros_like(x)
    full = perturbation_curves(x, maps, linear_scorer(w), substrate=zeros, steps=4)
    seen: list[int] = []
    start = (w * x).sum(axis=(1, 2, 3))
    shared = perturbation_curves(
        x, maps, linear_scorer(w, seen), substrate=zeros, steps=4, start=start, end=np.zeros(2)
    )
    np.testing.assert_allclose(shared, full, rtol=1e-6, atol=1e-6)
    assert sum(seen) == 2 * 3  # only the three inner steps per image


def test_a_non_finite_map_gives_a_nan_curve_and_costs_no_call():
    x = np.ones((2, 1, 3, 3), np.float32)
    maps = np.ones((2, 3, 3))
    maps[1, 0, 0] = np.nan
    seen: list[int] = []
    curves = perturbation_curves(
        x, maps, linear_scorer(np.ones((2, 1, 3, 3)), seen), substrate=0 * x, steps=3
    )
    assert np.isfinite(curves[0]).all() and np.isnan(curves[1]).all()
    assert sum(seen) == 4


def test_auc_is_the_trapezoid_rule_on_zero_to_one():
    assert auc(np.array([0.0, 1.0])) == pytest.approx(0.5)
    t = np.linspace(0, 1, 101)
    assert auc(t**2) == pytest.approx(1 / 3, abs=1e-4)
    assert np.isnan(auc(np.array([1.0, np.nan, 0.0])))
    with pytest.raises(ValueError, match="at least 2 points"):
        auc(np.array([1.0]))


def test_substrates():
    rng = np.random.default_rng(6)
    x = rng.random((2, C, 9, 11)).astype(np.float32)
    np.testing.assert_array_equal(make_substrate(x, "zeros"), 0.0)
    mean = make_substrate(x, "mean")
    np.testing.assert_allclose(mean[:, :, 3, 4], x.mean(axis=(2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"`substrate` must be one of \['blur', 'mean', 'zeros'\]"):
        make_substrate(x, "grey")


def test_blur_of_an_impulse_is_the_normalized_gaussian():
    sigma = 2.0
    x = np.zeros((1, 1, 41, 41), np.float32)
    x[0, 0, 20, 20] = 1.0
    out = gaussian_blur(x, sigma)[0, 0].astype(np.float64)
    t = np.arange(-6, 7)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    expected = np.zeros((41, 41))
    expected[14:27, 14:27] = np.outer(g, g)  # radius ceil(3 sigma) = 6
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # a constant image stays constant, edges included (mirrored borders)
    np.testing.assert_allclose(gaussian_blur(np.full((1, 2, 5, 7), 0.3), 3.0), 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="blur_sigma"):
        gaussian_blur(x, 0.0)


def test_bad_arguments_name_the_parameter():
    x = np.zeros((1, 1, 3, 3), np.float32)
    score = linear_scorer(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="`maps` must be"):
        perturbation_curves(x, np.zeros((1, 4, 3)), score, substrate=x)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        perturbation_curves(x, np.zeros((1, 3, 3)), score, substrate=x, steps=0)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        perturbation_curves(x, np.zeros((1, 3, 3)), score, substrate=x, mode="flip")
    with pytest.raises(ValueError, match="one score per input"):
        perturbation_curves(x, np.zeros((1, 3, 3)), lambda i, r: np.zeros(2), substrate=x)
