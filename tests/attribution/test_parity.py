"""The same weights in PyTorch and in Keras give the same attribution maps.

The built-in CNN is defined identically in both frameworks and loads one
weights file. Every method's maps — scaled to [0, 1] and raw — must agree to
float32 tolerance; SmoothGrad's noise is drawn in NumPy from one seed in the
channels-first layout, so both frameworks see the same noisy images.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.both

import multiviz as mv  # noqa: E402
from multiviz.core.layout import to_channels_last  # noqa: E402

ATOL = 1e-4  # on maps scaled to [0, 1]

METHODS = {
    "saliency": lambda m, x, t: mv.saliency(m, x, t),
    "grad_x_input": lambda m, x, t: mv.saliency(m, x, t, method="grad_x_input"),
    "smoothgrad": lambda m, x, t: mv.saliency(m, x, t, method="smoothgrad", samples=6, seed=3),
    "integrated_gradients": lambda m, x, t: mv.integrated_gradients(m, x, t, steps=12),
    "guided_backprop": lambda m, x, t: mv.guided_backprop(m, x, t),
    "deconvnet": lambda m, x, t: mv.deconvnet(m, x, t),
    "cam": lambda m, x, t: mv.cam(m, x, "relu3", t),
    "grad_cam": lambda m, x, t: mv.grad_cam(m, x, "relu3", t),
    "grad_cam_conv3": lambda m, x, t: mv.grad_cam(m, x, "conv3", t),
    "grad_cam_plus_plus": lambda m, x, t: mv.grad_cam_plus_plus(m, x, "relu3", t),
    "layer_cam": lambda m, x, t: mv.layer_cam(m, x, "relu2", t),
    "score_cam": lambda m, x, t: mv.score_cam(m, x, "relu3", t, batch_size=64),
    "guided_grad_cam": lambda m, x, t: mv.guided_grad_cam(m, x, "relu3", t),
    # the CAM options (relu, reduce, upsample)
    "grad_cam_signed": lambda m, x, t: mv.grad_cam(m, x, "conv3", t, relu=False),
    "grad_cam_terms": lambda m, x, t: mv.grad_cam(m, x, "relu3", t, reduce=False),
    "grad_cam_nearest": lambda m, x, t: mv.grad_cam(m, x, "relu3", t, upsample="nearest"),
    "grad_cam_at_the_layer": lambda m, x, t: mv.grad_cam(m, x, "relu2", t, upsample=False),
    "layer_cam_terms": lambda m, x, t: mv.layer_cam(m, x, "relu2", t, reduce=False),
    "cam_signed": lambda m, x, t: mv.cam(m, x, "relu3", t, relu=False, upsample="nearest"),
    "score_cam_signed_terms": lambda m, x, t: mv.score_cam(
        m, x, "conv3", t, relu=False, reduce=False, batch_size=64
    ),
    "guided_grad_cam_signed": lambda m, x, t: mv.guided_grad_cam(
        m, x, "conv3", t, relu=False, upsample="nearest"
    ),
}


@pytest.fixture(scope="module")
def models():
    return mv.builtin_model("torch"), mv.builtin_model("keras")


@pytest.fixture(scope="module")
def data():
    return mv.shapes_dataset(4, size=(48, 40), seed=11)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_torch_and_keras_give_the_same_maps(models, data, method):
    torch_model, keras_model = models
    x = data.images
    for target in (None, data.labels):
        a = METHODS[method](torch_model, x, target)
        b = METHODS[method](keras_model, to_channels_last(x), target)
        assert a.shape == b.shape and a.shape[0] == len(x)
        assert a.shape[-2:] == ((24, 20) if "at_the_layer" in method else (48, 40))
        np.testing.assert_allclose(a, b, atol=ATOL, err_msg=f"{method}, target={target}")
        assert a.max() > 0.5  # not trivially equal


@pytest.mark.parametrize(
    "method", ["grad_cam", "score_cam", "integrated_gradients", "guided_backprop"]
)
def test_raw_values_agree_too(models, data, method):
    torch_model, keras_model = models
    fns = {
        "grad_cam": lambda m, x: mv.grad_cam(m, x, "relu3", normalize=False),
        "score_cam": lambda m, x: mv.score_cam(m, x, "relu3", normalize=False, batch_size=64),
        "integrated_gradients": lambda m, x: mv.integrated_gradients(
            m, x, steps=12, normalize=False
        ),
        "guided_backprop": lambda m, x: mv.guided_backprop(m, x, normalize=False),
    }
    a = fns[method](torch_model, data.images)
    b = fns[method](keras_model, to_channels_last(data.images))
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max())


def test_explain_agrees(models, data):
    torch_model, keras_model = models
    methods = ["grad_cam", "layer_cam", "saliency", "score_cam", "smoothgrad"]
    a = mv.explain(torch_model, data.images, methods, "relu3", samples=4)
    b = mv.explain(keras_model, to_channels_last(data.images), methods, "relu3", samples=4)
    assert list(a) == list(b) == methods
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    for m in methods:
        np.testing.assert_allclose(a[m], b[m], atol=ATOL, err_msg=m)
