"""The same weights in PyTorch and in Keras give the same attribution maps.

The built-in CNN is defined identically in both frameworks and loads one
weights file. Every method's maps — scaled to [0, 1] and raw — must agree to
float32 tolerance; SmoothGrad's noise is drawn in NumPy from one seed in the
channels-first layout, so both frameworks see the same noisy images.

The inputs are chosen so that the answer is well defined (see
``tests/builtin_f64.py``). A gradient jumps where a ReLU's input is within
rounding of 0 or a max-pool window's two largest values are within rounding of
each other; two correct float32 computations may then route it differently.
The shapes data set's flat colour regions put trained edge detectors exactly
there (a zero-sum kernel on a flat region gives ``bias`` ~ -1e-7), so the
images here are textured, and a float64 pass asserts that no place within 3x
float32's rounding of a kink or a tie remains. Methods that evaluate
gradients at many points (SmoothGrad's noisy copies, Integrated Gradients'
path) meet such places by chance — about one per 48x40 image at float32's
resolution — so they are compared on float64 builds of the same weights, where
rounding is 1e-16 and the answer is decided.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.both

import multiviz as mv  # noqa: E402
from multiviz.core.layout import to_channels_last  # noqa: E402
from tests import builtin_f64  # noqa: E402

ATOL = 1e-4  # on maps scaled to [0, 1]
#: textured shape images whose gradients float32 decides (asserted below)
SEED, SIZE = 36, (48, 40)

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
#: methods taking gradients at points other than the images: compared in float64
MANY_POINTS = {"smoothgrad", "integrated_gradients"}


def float64_models():
    """The built-in CNN, shipped weights, computing in float64 in both frameworks."""
    import keras

    from multiviz.backends.keras.builtin import build
    from multiviz.sources.builtin import builtin_weights

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        keras_model = build(builtin_weights())
    finally:
        keras.config.set_dtype_policy(policy)
    return mv.builtin_model("torch").double(), keras_model


@pytest.fixture(scope="module")
def models():
    return mv.builtin_model("torch"), mv.builtin_model("keras")


@pytest.fixture(scope="module")
def models64():
    return float64_models()


@pytest.fixture(scope="module")
def data():
    images, labels = builtin_f64.textured_shapes(4, SIZE, SEED)
    return images, labels


def test_inputs_are_well_posed(data):
    """No ReLU input or max-pool tie within 3x float32's rounding; a clear top class."""
    images, _ = data
    assert builtin_f64.ambiguous(images) == {"pool1": 0, "pool2": 0, "relu3": 0}
    logits = np.sort(builtin_f64.forward(images)["fc"], axis=1)
    assert np.all(logits[:, -1] - logits[:, -2] > 0.1)  # target=None picks one class


@pytest.mark.parametrize("method", sorted(METHODS))
def test_torch_and_keras_give_the_same_maps(models, models64, data, method):
    torch_model, keras_model = models64 if method in MANY_POINTS else models
    x, labels = data
    for target in (None, labels):
        a = METHODS[method](torch_model, x, target)
        b = METHODS[method](keras_model, to_channels_last(x), target)
        assert a.shape == b.shape and a.shape[0] == len(x)
        assert a.shape[-2:] == ((SIZE[0] // 2, SIZE[1] // 2) if "at_the_layer" in method else SIZE)
        np.testing.assert_allclose(a, b, atol=ATOL, err_msg=f"{method}, target={target}")
        assert a.max() > 0.5  # not trivially equal


@pytest.mark.parametrize(
    "method", ["grad_cam", "score_cam", "integrated_gradients", "guided_backprop"]
)
def test_raw_values_agree_too(models, models64, data, method):
    torch_model, keras_model = models64 if method in MANY_POINTS else models
    fns = {
        "grad_cam": lambda m, x: mv.grad_cam(m, x, "relu3", normalize=False),
        "score_cam": lambda m, x: mv.score_cam(m, x, "relu3", normalize=False, batch_size=64),
        "integrated_gradients": lambda m, x: mv.integrated_gradients(
            m, x, steps=12, normalize=False
        ),
        "guided_backprop": lambda m, x: mv.guided_backprop(m, x, normalize=False),
    }
    x, _ = data
    a = fns[method](torch_model, x)
    b = fns[method](keras_model, to_channels_last(x))
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max())


def test_float32_and_float64_agree_where_float32_decides(models, models64, data):
    """The float64 builds are the same network: one-point methods agree with float32."""
    x, _ = data
    for m32, m64, native in zip(models, models64, (x, to_channels_last(x)), strict=True):
        np.testing.assert_allclose(mv.saliency(m32, native), mv.saliency(m64, native), atol=ATOL)


def test_explain_agrees(models64, data):
    torch_model, keras_model = models64  # SmoothGrad's noisy copies: see the module docstring
    x, _ = data
    methods = ["grad_cam", "layer_cam", "saliency", "score_cam", "smoothgrad"]
    a = mv.explain(torch_model, x, methods, "relu3", samples=4)
    b = mv.explain(keras_model, to_channels_last(x), methods, "relu3", samples=4)
    assert list(a) == list(b) == methods
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    for m in methods:
        np.testing.assert_allclose(a[m], b[m], atol=ATOL, err_msg=m)
