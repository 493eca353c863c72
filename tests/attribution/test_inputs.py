"""Several inputs (issue 12, kind 3), once per framework.

A model of two images — ``rgb`` (3 channels) and ``depth`` (1 channel), summed
after a 1x1 convolution each, then ReLU, pooling and a dense head — built with
the same weights in PyTorch (``forward(rgb, depth)``) and in Keras (inputs
``[rgb, depth]``, or named ``{"rgb", "depth"}``): ``tests/twins.py``.
Attribution takes what capture takes (a tuple, a list, a dict), gives one map
per input for input-gradient methods and draws CAM maps over the image input
``input_index`` chooses. The right values are NumPy by hand (closed forms of
a piecewise-linear net, Score-CAM's masks and forward passes written out).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.attribution.maps import normalize_maps
from multiviz.errors import InputShapeError
from tests.twins import HEADS_SIZE, inputs_expected, inputs_weights, native, two_inputs

H, W = HEADS_SIZE


@pytest.fixture
def fw(framework) -> str:
    """The framework's name, once per framework (the ``framework`` fixture's runs)."""
    return framework.name


def _pair(n: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, 3, H, W)).astype(np.float32),
        rng.standard_normal((n, 1, H, W)).astype(np.float32),
    )


def _given(fw: str, rgb: np.ndarray, depth: np.ndarray, structure: str):
    a, b = native(fw, rgb), native(fw, depth)
    if structure == "dict":
        return {"depth": b, "rgb": a}  # not in the model's order: matched by name
    return [a, b] if structure == "list" else (a, b)


def _grads(rgb, depth, w, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """d fc[cls] / d rgb and d depth: through the ReLU's mask and each 1x1 convolution."""
    active = inputs_expected(rgb, depth, w)["sum"] > 0
    per_unit = active * (w["fc"][cls] / (H * W))[None, :, None, None]
    return (
        np.einsum("nkhw,kc->nchw", per_unit, w["rgb"][:, :, 0, 0].astype(np.float64)),
        np.einsum("nkhw,kc->nchw", per_unit, w["depth"][:, :, 0, 0].astype(np.float64)),
    )


def _grad_cam(rgb, depth, w, cls: int) -> np.ndarray:
    relu = inputs_expected(rgb, depth, w)["relu"]
    return np.maximum(np.einsum("k,nkhw->nhw", w["fc"][cls] / (H * W), relu), 0.0)


@pytest.mark.parametrize("structure", ["tuple", "list", "dict"])
def test_attribution_takes_what_capture_takes(fw, structure):
    w = inputs_weights()
    rgb, depth = _pair()
    model = two_inputs(fw, w, named=structure == "dict")
    x = _given(fw, rgb, depth, structure)
    want = inputs_expected(rgb, depth, w)
    np.testing.assert_allclose(mv.capture(model, x, ["relu"])["relu"], want["relu"], atol=1e-5)
    got = mv.grad_cam(model, x, "relu", 1, normalize=False)
    np.testing.assert_allclose(got, _grad_cam(rgb, depth, w, 1), rtol=1e-4, atol=1e-6)
    maps = mv.saliency(model, x, 1, aggregation=None, normalize=False)
    g_rgb, g_depth = _grads(rgb, depth, w, 1)
    if structure == "dict":
        assert isinstance(maps, dict) and set(maps) == {"rgb", "depth"}
        got_rgb, got_depth = maps["rgb"], maps["depth"]
    else:
        assert isinstance(maps, tuple) and len(maps) == 2
        got_rgb, got_depth = maps
    np.testing.assert_allclose(got_rgb, g_rgb, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got_depth, g_depth, rtol=1e-4, atol=1e-7)


def test_input_gradient_methods_give_one_map_per_input(fw):
    w = inputs_weights()
    rgb, depth = _pair()
    model, x = two_inputs(fw, w), _given(fw, rgb, depth, "tuple")
    g_rgb, g_depth = _grads(rgb, depth, w, 0)
    # gradient x input, aggregated over each input's channels (max |.|)
    sal = mv.saliency(model, x, 0, method="grad_x_input", normalize=False)
    np.testing.assert_allclose(sal[0], np.abs(g_rgb * rgb).max(axis=1), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(sal[1], np.abs(g_depth * depth).max(axis=1), rtol=1e-4, atol=1e-7)
    # Integrated Gradients: both inputs walk the path from zero together (trapezoid rule)
    steps = 8
    alphas = np.linspace(0.0, 1.0, steps)
    quad = np.full(steps, 1.0 / (steps - 1))
    quad[[0, -1]] /= 2
    mean = [np.zeros_like(rgb, np.float64), np.zeros_like(depth, np.float64)]
    for a, q in zip(alphas, quad, strict=True):
        for acc, g in zip(mean, _grads(a * rgb, a * depth, w, 0), strict=True):
            acc += q * g
    ig = mv.integrated_gradients(
        model, x, 0, steps=steps, aggregation=None, normalize=False, return_delta=True
    )
    np.testing.assert_allclose(ig[0][0], rgb * mean[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ig[0][1], depth * mean[1], rtol=1e-4, atol=1e-6)
    logits = inputs_expected(rgb, depth, w)["fc"][:, 0]
    zero = inputs_expected(0 * rgb, 0 * depth, w)["fc"][:, 0]
    total = (rgb * mean[0]).reshape(3, -1).sum(1) + (depth * mean[1]).reshape(3, -1).sum(1)
    np.testing.assert_allclose(ig[1], total - (logits - zero), atol=1e-4)


def test_score_cam_masks_the_input_it_is_told(fw):
    w = inputs_weights()
    rgb, depth = _pair()
    model, x = two_inputs(fw, w), _given(fw, rgb, depth, "tuple")
    acts = inputs_expected(rgb, depth, w)["relu"]
    for index in (0, 1):
        scores = np.zeros(acts.shape[:2])
        cls = inputs_expected(rgb, depth, w)["fc"].argmax(axis=1)
        for n in range(3):
            for k in range(4):
                a = acts[n, k]
                if a.max() - a.min() <= 1e-5 * np.abs(acts[n]).max():
                    continue
                mask = (a - a.min()) / (a.max() - a.min())
                r, d = rgb[n : n + 1], depth[n : n + 1]
                r, d = (r * mask, d) if index == 0 else (r, d * mask)
                logits = inputs_expected(r, d, w)["fc"][0]
                e = np.exp(logits - logits.max())
                scores[n, k] = (e / e.sum())[cls[n]]
        want = np.maximum(np.einsum("nk,nkhw->nhw", scores, acts), 0.0)
        got = mv.score_cam(model, x, "relu", normalize=False, input_index=index)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_explain_draws_every_map_over_the_chosen_input(fw):
    w = inputs_weights()
    rgb, depth = _pair()
    model, x = two_inputs(fw, w), _given(fw, rgb, depth, "tuple")
    ex = mv.explain(model, x, ["grad_cam", "saliency"], "relu", 1, input_index=1)
    np.testing.assert_allclose(
        ex["grad_cam"], normalize_maps(_grad_cam(rgb, depth, w, 1)), atol=1e-4
    )
    g_depth = _grads(rgb, depth, w, 1)[1]
    np.testing.assert_allclose(
        ex["saliency"], normalize_maps(np.abs(g_depth).max(axis=1)), atol=1e-4
    )
    assert ex.image.shape == (3, H, W, 1)  # the depth images, under the maps


def test_the_advice_for_one_array_given_to_a_model_of_two(fw):
    w = inputs_weights()
    rgb, depth = _pair()
    model = two_inputs(fw, w)
    with pytest.raises(InputShapeError) as info:
        mv.saliency(model, native(fw, rgb))
    first, hint = str(info.value).splitlines()
    assert len(first) <= 200 and hint.startswith("hint: ")
    assert "np.asarray" not in str(info.value)
    if fw == "torch":
        assert "forward takes 2 inputs (rgb, depth)" in first
        assert "x=(rgb, depth)" in hint
    else:
        assert "takes 2 inputs ['rgb', 'depth']" in first
    # the advice works
    assert len(mv.saliency(model, (native(fw, rgb), native(fw, depth)))) == 2
    with pytest.raises(InputShapeError, match=r"share their batch size"):
        mv.grad_cam(model, (native(fw, rgb), native(fw, depth[:2])), "relu")
