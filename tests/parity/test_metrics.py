"""Parity metrics, without any framework: values computed by hand or from their
textbook definitions (CKA through HSIC with an explicit centring matrix)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from multiviz.parity.metrics import (
    array_metrics,
    cosine_similarity,
    features,
    linear_cka,
    max_abs_diff,
    pearson,
    relative_error,
)

# --------------------------------------------------------------------------- metrics


def test_max_abs_and_relative_error_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 2.0, 2.0, 6.0])
    assert max_abs_diff(a, b) == 2.0
    # ||a - b|| = sqrt(0 + 0 + 1 + 4) = sqrt(5); ||b|| = sqrt(1 + 4 + 4 + 36) = sqrt(45)
    assert relative_error(a, b) == pytest.approx(math.sqrt(5 / 45), rel=1e-12)


def test_relative_error_edge_cases():
    z = np.zeros((2, 3))
    assert relative_error(z, z) == 0.0
    assert relative_error(np.ones((2, 3)), z) == math.inf
    assert relative_error(z, np.ones((2, 3))) == 1.0  # all of the reference is missing
    assert max_abs_diff(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.zeros(3), np.zeros(4))


def test_cosine_and_pearson_of_known_vectors():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)
    assert cosine_similarity(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(24 / 25)
    # pearson is cosine after centring: [1,2,3] -> [-1,0,1]; [1,3,2] -> [-1,1,0]: 1/2
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    # affine maps do not change pearson (they do change cosine)
    x = np.array([0.3, -1.2, 2.5, 0.0, 4.1])
    assert pearson(x, 3 * x + 7) == pytest.approx(1.0)
    assert cosine_similarity(x, 3 * x + 7) < 0.99


def test_degenerate_similarities_are_defined():
    z = np.zeros(4)
    assert cosine_similarity(z, z) == 1.0
    assert cosine_similarity(z, np.ones(4)) == 0.0
    assert math.isnan(pearson(np.ones(4), np.arange(4.0)))
    assert math.isnan(linear_cka(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 2))))


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: HSIC with an explicit centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda p, q: np.trace(p @ h @ q @ h)  # noqa: E731
    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("n,p,q", [(40, 5, 7), (6, 30, 20)])  # feature form and Gram form
def test_linear_cka_matches_hsic_definition(n, p, q):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, p))
    y = x[:, :1] * 0.5 + rng.normal(size=(n, q))
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y), rel=1e-10)


def test_linear_cka_identity_orthogonal_and_scale_invariance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-12)  # centred: shifts vanish
    y = rng.normal(size=(60, 8))
    assert linear_cka(x, y) < 0.3  # unrelated representations
    # not invariant to a non-isotropic scaling of the features
    assert linear_cka(x, x * np.array([10.0, 1, 1, 1, 1, 1, 1, 0.1])) < 0.99


def test_cka_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(np.zeros((4, 2)), np.zeros((5, 2)))


def test_features_layouts():
    x = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    pos = features(x)
    assert pos.shape == (2 * 4 * 5, 3)
    # row (n, h, w) holds the channel vector x[n, :, h, w]
    assert np.array_equal(pos[1 * 20 + 2 * 5 + 3], x[1, :, 2, 3])
    samp = features(x, "sample")
    assert samp.shape == (2, 60) and np.array_equal(samp[1], x[1].ravel())
    assert features(np.zeros((2, 7))).shape == (2, 7)
    with pytest.raises(ValueError, match="mode"):
        features(x, "pixels")


def test_array_metrics_tolerance_matches_allclose():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 3, 4, 5))
    cand = ref + rng.normal(scale=1e-3, size=ref.shape)
    for atol, rtol in [(1e-2, 0.0), (1e-4, 1e-4), (0.0, 1e-1), (1e-5, 1e-5)]:
        m = array_metrics(cand, ref, atol=atol, rtol=rtol)
        assert (m.worst_excess <= 0) == np.allclose(cand, ref, atol=atol, rtol=rtol)


def test_array_metrics_nonfinite_masks():
    ref = np.array([[1.0, np.nan, np.inf, 4.0]])
    same = array_metrics(ref.copy(), ref)
    assert same.nonfinite_match and same.nonfinite_a == 2 and same.max_abs == 0.0
    moved = np.array([[1.0, np.inf, np.nan, 4.0]])
    assert not array_metrics(moved, ref).nonfinite_match
    sign = np.array([[1.0, np.nan, -np.inf, 4.0]])
    assert not array_metrics(sign, ref).nonfinite_match
    # finite parts still measured
    cand = np.array([[1.5, np.nan, np.inf, 4.0]])
    assert array_metrics(cand, ref).max_abs == 0.5


def test_parity_imports_no_framework_and_no_matplotlib():
    import subprocess

    code = (
        "import sys, multiviz.parity.compare, multiviz.parity.report, multiviz.parity.transfer, "
        "multiviz.parity.metrics, multiviz.parity.pairing; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
