"""ROAD's noisy linear imputation against independently known answers.

* One removed pixel takes the weighted mean of its eight neighbours (1/6
  direct, 1/12 diagonal): a number computed by hand.
* A linear ramp a + b*row + c*col equals the weighted mean of its neighbours
  at every interior pixel (the stencil is symmetric), so imputing any region
  away from the border must give the ramp back exactly.
* On a small image the same equations are built as a dense matrix and solved
  with np.linalg.solve: the multigrid-preconditioned solver must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.evaluation.road import noisy_linear_imputation, road_curves

_OFFSETS = [
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
]


def dense_imputation(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference: the imputation system assembled as a dense matrix, one channel (H, W)."""
    h, w = mask.shape
    unknown = list(zip(*np.nonzero(mask), strict=True))
    index = {p: k for k, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for k, (y, x) in enumerate(unknown):
        for (dy, dx), wt in _OFFSETS:
            qy, qx = y + dy, x + dx
            if not (0 <= qy < h and 0 <= qx < w):
                continue
            a[k, k] += wt
            if mask[qy, qx]:
                a[k, index[(qy, qx)]] -= wt
            else:
                b[k] += wt * img[qy, qx]
    out = img.astype(np.float64).copy()
    out[mask] = np.linalg.solve(a, b)
    return out


def test_one_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 99.0, 6.0], [7.0, 8.0, 19.0]], np.float32)[None, None]
    mask = np.zeros((1, 3, 3), bool)
    mask[0, 1, 1] = True
    # by hand: (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 19) / 12 = 20/6 + 30/12 = 5.8333...
    out = noisy_linear_imputation(x, mask, noise=0.0)
    assert out[0, 0, 1, 1] == pytest.approx(20 / 6 + 30 / 12, rel=1e-6)
    np.testing.assert_array_equal(out[0, 0][~mask[0]], x[0, 0][~mask[0]])


def test_a_linear_ramp_is_imputed_exactly_away_from_the_border():
    h, w = 40, 56
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = np.stack([0.2 + 0.01 * rows - 0.005 * cols, 0.7 - 0.002 * rows, 0.003 * cols])
    yy, xx = np.mgrid[0:h, 0:w]
    blob = (yy - 20) ** 2 / 15**2 + (xx - 30) ** 2 / 22**2 < 1  # a large hole, off the border
    scattered = np.random.default_rng(0).random((h, w)) < 0.6
    scattered[[0, -1]] = False
    scattered[:, [0, -1]] = False
    masks = np.stack([blob, scattered])
    out = noisy_linear_imputation(np.stack([ramp, ramp]).astype(np.float32), masks, noise=0.0)
    np.testing.assert_allclose(out, np.stack([ramp, ramp]), atol=2e-5)


def test_the_solver_agrees_with_a_dense_solve_of_the_same_equations():
    rng = np.random.default_rng(1)
    h, w = 13, 11  # odd sizes: the multigrid pads
    img = rng.random((2, 2, h, w)).astype(np.float32)
    masks = np.stack([rng.random((h, w)) < 0.5, np.zeros((h, w), bool)])
    masks[1, 2:11, 1:9] = True  # a block touching nothing, then one touching the border
    masks[1, 0, :5] = True
    out = noisy_linear_imputation(img, masks, noise=0.0)
    for i in range(2):
        for c in range(2):
            ref = dense_imputation(img[i, c].astype(np.float64), masks[i])
            np.testing.assert_allclose(out[i, c], ref, atol=1e-5)


def test_noise_lands_only_on_imputed_pixels_with_the_asked_spread():
    rng = np.random.default_rng(2)
    x = rng.random((1, 3, 64, 64)).astype(np.float32)
    mask = rng.random((1, 64, 64)) < 0.5
    clean = noisy_linear_imputation(x, mask, noise=0.0)
    noisy = noisy_linear_imputation(x, mask, noise=0.05, rngs=[np.random.default_rng(7)])
    diff = (noisy - clean)[0]
    np.testing.assert_array_equal(diff[:, ~mask[0]], 0.0)
    assert diff[:, mask[0]].std() == pytest.approx(0.05, rel=0.05)
    again = noisy_linear_imputation(x, mask, noise=0.05, rngs=[np.random.default_rng(7)])
    np.testing.assert_array_equal(noisy, again)


def test_road_curves_on_a_linear_model_and_batch_independence():
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 16, 12)).astype(np.float32)
    weight = rng.random((3, 16, 12))

    def score(inputs, rows):
        return (weight * inputs).sum(axis=(1, 2, 3))

    truth = (weight * x).sum(axis=1)  # each pixel's contribution
    morf, lerf = road_curves(x, truth, score, percentages=[10, 50, 90], batch_size=4)
    assert morf.shape == lerf.shape == (2, 3)
    assert np.all(morf < lerf)  # removing the largest contributions hurts most
    again = road_curves(x, truth, score, percentages=[10, 50, 90], batch_size=1)
    np.testing.assert_allclose(again[0], morf, rtol=1e-6)
    np.testing.assert_allclose(again[1], lerf, rtol=1e-6)


def test_road_rejects_removing_everything_and_non_finite_maps_are_nan():
    x = np.ones((2, 1, 4, 4), np.float32)
    maps = np.ones((2, 4, 4))
    maps[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"`percentages` must be numbers in \(0, 100\)"):
        road_curves(x, maps, lambda i, r: i.sum(axis=(1, 2, 3)), percentages=[50, 100])
    morf, lerf = road_curves(x, maps, lambda i, r: i.sum(axis=(1, 2, 3)), percentages=[50])
    assert np.isfinite(morf[0]).all() and np.isnan(morf[1]).all() and np.isnan(lerf[1]).all()
    with pytest.raises(ValueError, match="at least one kept pixel"):
        noisy_linear_imputation(x, np.ones((2, 4, 4), bool))
