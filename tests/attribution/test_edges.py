"""Edges (issue 10, item 7): a batch of zero samples, and gradients that overflow.

A batch of zero images must give empty results shaped like a full batch's —
what the same call gives for one image, with the first axis 0 — from every
attribution method, ``mv.explain``, ``mv.capture`` and ``mv.forward``, in
both frameworks (the built-in CNN). The right shapes are the one-image
results' own, computed in the same test. Before, every method raised a bare
``IndexError`` and Keras's capture/forward raised TensorFlow's multi-line error.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.attribution.explain import METHODS

CALLS = {
    "saliency": lambda m, x: mv.saliency(m, x),
    "grad_x_input": lambda m, x: mv.saliency(m, x, method="grad_x_input"),
    "smoothgrad": lambda m, x: mv.saliency(m, x, method="smoothgrad", samples=2),
    "integrated_gradients": lambda m, x: mv.integrated_gradients(m, x, steps=4),
    "integrated_gradients_delta": lambda m, x: mv.integrated_gradients(
        m, x, steps=4, return_delta=True
    ),
    "guided_backprop": lambda m, x: mv.guided_backprop(m, x),
    "guided_backprop_channels": lambda m, x: mv.guided_backprop(m, x, aggregation=None),
    "deconvnet": lambda m, x: mv.deconvnet(m, x),
    "cam": lambda m, x: mv.cam(m, x, "relu3"),
    "grad_cam": lambda m, x: mv.grad_cam(m, x, "conv3"),
    "grad_cam_at_layer_size": lambda m, x: mv.grad_cam(m, x, "conv3", upsample=False),
    "grad_cam_plus_plus": lambda m, x: mv.grad_cam_plus_plus(m, x, "conv3"),
    "layer_cam": lambda m, x: mv.layer_cam(m, x, "conv3"),
    "score_cam": lambda m, x: mv.score_cam(m, x, "conv3"),
    "guided_grad_cam": lambda m, x: mv.guided_grad_cam(m, x, "conv3"),
    "target_list": lambda m, x: mv.grad_cam(m, x, "conv3", target=[] if len(x) == 0 else [1]),
}


def test_every_method_of_the_registry_is_in_the_table():
    assert set(METHODS) <= set(CALLS)


def _shapes(result):
    if isinstance(result, tuple):
        return tuple(_shapes(r) for r in result)
    return np.asarray(result).shape


def _batch(framework, n):
    x = mv.sample_image(seed=3, size=(32, 40))[None].repeat(max(n, 1), 0)[:n]
    return framework.native(x)  # (N, 3, H, W) or (N, H, W, 3)


@pytest.mark.parametrize("name", list(CALLS))
def test_zero_images_give_empty_maps_of_the_right_shape(framework, builtin, name):
    one = CALLS[name](builtin, _batch(framework, 1))
    none = CALLS[name](builtin, _batch(framework, 0))
    want = _shapes(one)
    got = _shapes(none)
    flat_want = want if isinstance(want[0], tuple) else (want,)
    flat_got = got if isinstance(got[0], tuple) else (got,)
    for w, g in zip(flat_want, flat_got, strict=True):
        assert g == (0, *w[1:]), (name, got, want)


def test_explain_of_zero_images(framework, builtin):
    one = mv.explain(builtin, _batch(framework, 1), ["grad_cam", "saliency"], "conv3")
    none = mv.explain(builtin, _batch(framework, 0), ["grad_cam", "saliency"], "conv3")
    assert type(none) is type(one) and list(none) == list(one)
    for k in one:
        assert none[k].shape == (0, *one[k].shape[1:])
    assert none.image.shape == (0, *one.image.shape[1:]) and none.layer == one.layer


def test_capture_and_forward_of_zero_images(framework, builtin):
    one = mv.capture(builtin, _batch(framework, 1))
    none = mv.capture(builtin, _batch(framework, 0))
    assert list(none) == list(one)
    for k in one:
        assert none[k].shape == (0, *one[k].shape[1:]) and none[k].dtype == np.float32
    out = mv.forward(builtin, _batch(framework, 0))
    assert out.shape == (0, *mv.forward(builtin, _batch(framework, 1)).shape[1:])


@pytest.mark.torch
def test_zero_images_as_a_torch_tensor(builtin_torch):
    import torch

    x = torch.zeros((0, 3, 32, 40))
    assert mv.grad_cam(builtin_torch, x, "conv3").shape == (0, 32, 40)
    assert mv.capture(builtin_torch, x, ["conv1"])["conv1"].shape[0] == 0


# --------------------------------------------------------------------------- overflowing gradients


@pytest.mark.parametrize(
    "method", ["guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad"]
)
def test_overflowing_input_gradients_follow_the_nonfinite_policy_with_default_scaling(
    framework, method
):
    """Maps documented in [0, 1] (the default ``normalize=True``): the overflowing
    sample's map is all NaN (DESIGN.md's policy), never NaN inside a finite-looking
    map, and the other sample's map is the closed form's: zero gradient where the
    ReLU is off, so an all-zero map (the deconvnet's backward pass ignores the
    forward ReLU, so there both samples overflow)."""
    import warnings

    from tests.twins import HEADS_SIZE, native, overflow_net

    rng = np.random.default_rng(1)
    x = (1e-30 * rng.uniform(1.0, 2.0, (2, 3, *HEADS_SIZE))).astype(np.float32)
    x[0] *= -1  # the ReLU is off for sample 0
    fw = framework.name
    model = overflow_net(fw)
    call = {
        "guided_backprop": lambda v: mv.guided_backprop(model, v),
        "deconvnet": lambda v: mv.deconvnet(model, v),
        "integrated_gradients": lambda v: mv.integrated_gradients(model, v, steps=4),
        "smoothgrad": lambda v: mv.saliency(model, v, method="smoothgrad", samples=2, noise=0.0),
    }[method]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = call(native(fw, x))
    assert [type(s.message) for s in seen] == [mv.MultivizWarning], [str(s.message) for s in seen]
    if method == "deconvnet":
        # the deconvnet's backward ReLU keeps positive gradients whatever the input's sign
        # (Zeiler & Fergus 2014): the fc weight's 1e20 reaches the input in both samples
        assert np.isnan(out).all()
        return
    assert np.isnan(out[1]).all(), method
    assert np.isfinite(out[0]).all() and np.all(out[0] == 0.0), method
    assert "sample 1," in str(seen[0].message)
