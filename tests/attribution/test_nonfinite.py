"""Non-finite values (issue 12, kind 5), once per framework.

One NaN pixel in one sample, and an input gradient that overflows float32
while the output stays finite: the sample's map is NaN (never a clean-looking
map made of its finite values), one ``mv.MultivizWarning`` names the sample
and where NaN/Inf appeared first, no NumPy ``RuntimeWarning`` reaches the
caller, and every other sample's map is the right one — the closed form of
the twin nets of ``tests/twins.py`` (1x1 convolution, ReLU, pooling, one
unit), written out in NumPy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multiviz as mv
from tests.twins import HEADS_SIZE, heads_expected, heads_weights, native, overflow_net, unit_head

H, W = HEADS_SIZE


@pytest.fixture
def fw(framework) -> str:
    """The framework's name, once per framework (the ``framework`` fixture's runs)."""
    return framework.name


def _x(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((3, 3, H, W)).astype(np.float32)
    x[1, 2, 3, 4] = np.nan
    return x


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _closed_forms(x: np.ndarray, w: dict) -> dict[str, np.ndarray]:
    """Raw maps of the unit head for every method, NumPy (rows of NaN input are NaN)."""
    out = heads_expected(x, w)
    relu, conv, row = out["relu"], out["conv"], w["u"][0].astype(np.float64)
    grad_act = np.broadcast_to((row / (H * W))[None, :, None, None], relu.shape)
    in_grad = np.einsum("nkhw,kc->nchw", (conv > 0) * grad_act, w["conv"][:, :, 0, 0])
    maps = {
        "grad_cam": np.maximum(np.einsum("nk,nkhw->nhw", grad_act.mean(axis=(2, 3)), relu), 0),
        "layer_cam": np.maximum((np.maximum(grad_act, 0) * relu).sum(axis=1), 0),
        "saliency": np.abs(in_grad).max(axis=1),
    }
    scores = np.zeros(relu.shape[:2])
    for n in range(len(x)):
        for k in range(relu.shape[1]):
            a = relu[n, k]
            if not np.isfinite(a).all() or a.max() - a.min() <= 1e-5 * np.abs(relu[n]).max():
                continue
            mask = (a - a.min()) / (a.max() - a.min())
            scores[n, k] = _sigmoid(heads_expected(x[n : n + 1] * mask, w)["u"][0, 0])
    maps["score_cam"] = np.maximum(np.einsum("nk,nkhw->nhw", scores, relu), 0)
    return maps


METHODS = {
    "grad_cam": lambda m, x: mv.grad_cam(m, x, "relu", normalize=False),
    "layer_cam": lambda m, x: mv.layer_cam(m, x, "relu", normalize=False),
    "saliency": lambda m, x: mv.saliency(m, x, normalize=False),
    "score_cam": lambda m, x: mv.score_cam(m, x, "relu", normalize=False),
}


def _run(fn):
    """``fn()`` and every warning it raised (all of them, not filtered)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn()
    return out, seen


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_nan_pixel_makes_that_samples_map_nan_and_is_reported(fw, method):
    w = heads_weights()
    x = _x()
    out, seen = _run(lambda: METHODS[method](unit_head(fw, w), native(fw, x)))
    assert np.isnan(out[1]).all()
    want = _closed_forms(x, w)[method]
    np.testing.assert_allclose(out[[0, 2]], want[[0, 2]], rtol=1e-4, atol=1e-6)
    assert [type(s.message) for s in seen] == [mv.MultivizWarning], [str(s.message) for s in seen]
    message = str(seen[0].message)
    assert "sample 1," in message and "first in the input" in message
    assert seen[0].filename == __file__  # points at the caller's line, not inside multiviz


def test_scaled_maps_and_explain_too(fw):
    w = heads_weights()
    x = _x()
    for fn in (
        lambda m, z: mv.grad_cam(m, z, "relu"),
        lambda m, z: mv.integrated_gradients(m, z, steps=4),
        lambda m, z: mv.guided_backprop(m, z, aggregation="max_abs"),
        lambda m, z: mv.saliency(m, z, method="smoothgrad", samples=2),
    ):
        out, seen = _run(lambda fn=fn: fn(unit_head(fw, w), native(fw, x)))
        assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
        assert out[[0, 2]].max() == pytest.approx(1.0) and out[[0, 2]].min() >= 0.0
        assert [type(s.message) for s in seen] == [mv.MultivizWarning]
    ex, seen = _run(
        lambda: mv.explain(
            unit_head(fw, w), native(fw, x), ["grad_cam", "score_cam", "saliency"], "relu"
        )
    )
    assert all(np.isnan(m[1]).all() and np.isfinite(m[[0, 2]]).all() for m in ex.values())
    assert len(seen) == 1 and "sample 1," in str(seen[0].message)  # one warning for the call
    acts = mv.capture(unit_head(fw, w), native(fw, x), ["conv"])["conv"]
    assert np.isnan(acts[1]).any() and np.isfinite(acts[[0, 2]]).all()  # capture passes NaN through


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "integrated_gradients"])
def test_an_input_gradient_that_overflows_is_reported(fw, method):
    rng = np.random.default_rng(1)
    x = (1e-30 * rng.uniform(1.0, 2.0, (2, 3, H, W))).astype(np.float32)
    x[0] *= -1  # the ReLU is off for sample 0: a zero gradient there, finite
    model = overflow_net(fw)
    assert np.isfinite(mv.forward(model, native(fw, x))).all()  # the output itself is finite
    fn = {
        "saliency": lambda: mv.saliency(model, native(fw, x), normalize=False),
        "guided_backprop": lambda: mv.guided_backprop(model, native(fw, x), normalize=False),
        "integrated_gradients": lambda: mv.integrated_gradients(
            model, native(fw, x), steps=4, normalize=False
        ),
    }[method]
    out, seen = _run(fn)
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[0], 0.0)  # closed form: the inactive ReLU passes nothing
    assert [type(s.message) for s in seen] == [mv.MultivizWarning]
    assert "sample 1," in str(seen[0].message)
    assert "the gradient of the input" in str(seen[0].message)
