"""Spearman and SSIM against closed forms.

* Without ties, Spearman's rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)), d the rank
  differences (Spearman 1904): an independent formula from the one coded.
* For two constant maps a and b, every window has zero variance, so SSIM is
  (2ab + C1) / (a^2 + b^2 + C1) exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.evaluation.randomization import redraw, similarities
from multiviz.evaluation.similarity import rankdata, spearman, ssim


def test_rankdata_averages_ties():
    assert rankdata(np.array([3.0, 1.0, 4.0, 1.0, 5.0])).tolist() == [3.0, 1.5, 4.0, 1.5, 5.0]
    assert rankdata(np.array([[2.0, 2.0, 2.0]])).tolist() == [[2.0, 2.0, 2.0]]


def test_spearman_matches_the_rank_difference_formula():
    rng = np.random.default_rng(0)
    a = rng.random((5, 6, 7))
    b = a + rng.normal(0, 0.3, a.shape)
    n = 42
    ra = rankdata(a.reshape(5, -1))
    rb = rankdata(b.reshape(5, -1))
    expected = 1 - 6 * ((ra - rb) ** 2).sum(axis=1) / (n * (n * n - 1))
    np.testing.assert_allclose(spearman(a, b), expected, atol=1e-12)


def test_spearman_special_cases():
    a = np.arange(12.0).reshape(1, 3, 4)
    assert spearman(a, np.exp(a)).tolist() == [1.0]  # any increasing transform
    assert spearman(a, -a).tolist() == [-1.0]
    assert spearman(a, np.zeros_like(a)).tolist() == [0.0]  # a flat map shares no ordering
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    assert np.isnan(spearman(bad, a)[0])


def test_ssim_of_constant_maps_is_the_luminance_term():
    a, b = 0.3, 0.8
    c1 = (0.01 * 1.0) ** 2
    out = ssim(np.full((1, 9, 8), a), np.full((1, 9, 8), b))
    assert out[0] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


def test_ssim_is_one_for_equal_maps_symmetric_and_lower_for_noise():
    rng = np.random.default_rng(1)
    a = rng.random((3, 16, 12))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    np.testing.assert_allclose(ssim(a, a), 1.0)
    np.testing.assert_allclose(ssim(a, b), ssim(b, a), rtol=1e-12)
    assert np.all(ssim(a, b) < 0.9)
    with pytest.raises(ValueError, match="win_size"):
        ssim(a[:, :5, :5], a[:, :5, :5])


def test_similarities_and_redraw():
    rng = np.random.default_rng(2)
    m = rng.random((4, 10, 10))
    rho, s = similarities(m, m[:, ::-1, :])
    assert rho.shape == s.shape == (4,) and np.all(rho < 0.5)
    small = similarities(m[:, :5, :5], m[:, :5, :5])
    assert small[0].tolist() == [1.0] * 4 and np.isnan(small[1]).all()
    arrays = {"weight": rng.normal(0, 0.2, (64, 32, 3, 3)), "bias": np.zeros(64)}
    new = redraw(arrays, ("weight", "bias", "missing"), np.random.default_rng(3))
    assert sorted(new) == ["bias", "weight"]
    rms = np.sqrt(np.mean(arrays["weight"] ** 2))
    assert new["weight"].std() == pytest.approx(rms, rel=0.03)
    assert abs(np.corrcoef(new["weight"].ravel(), arrays["weight"].ravel())[0, 1]) < 0.05
    again = redraw(arrays, ("weight", "bias"), np.random.default_rng(3))
    np.testing.assert_array_equal(new["weight"], again["weight"])
