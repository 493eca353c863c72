"""Attribution maps on Keras models: values against independent references.

References: float64 finite differences on a small channels-last net (C, H
and W all different), the closed-form math applied to those numerical
gradients, the Dense kernel itself for CAM, the same batch one sample at a
time, and the same model with a softmax appended. Also: the model is left as
found by every method, also when its forward pass raises.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import multiviz as mv  # noqa: E402
from multiviz.attribution import cam_math  # noqa: E402
from multiviz.attribution.errors import CamHeadError, NotSpatialLayerError  # noqa: E402
from multiviz.layout import to_channels_first, to_channels_last  # noqa: E402
from multiviz.resize import resize_bilinear  # noqa: E402

pytestmark = pytest.mark.keras

SIZE = (7, 9)  # input H, W; 3 channels; the CAM layer "feat" is (5, 4, 5) channels-first


def tiny_net():
    """conv(3->4) relu conv(4->5, stride 2) "feat" | relu gap fc(5->3), float64."""
    keras.utils.set_random_seed(1)
    f64 = {"dtype": "float64"}
    inp = keras.Input((*SIZE, 3), dtype="float64")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1", **f64)(inp)
    h = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="feat", **f64)(h)
    h = keras.layers.ReLU(name="relu", **f64)(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap", **f64)(h)
    out = keras.layers.Dense(3, name="fc", **f64)(h)
    return keras.Model(inp, out)


def tiny_input(n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *SIZE, 3))


def numeric_grad(f, a, h=1e-6):
    """d sum(f(a)) / da by central differences, float64 NumPy."""
    a = np.array(a, np.float64)
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        up = f(a).sum()
        a[idx] = old - h
        down = f(a).sum()
        a[idx] = old
        g[idx] = (up - down) / (2 * h)
    return g


def input_grad_fd(net, x, h=1e-6):
    """d logit_1 / d x per sample by central differences, all perturbations in one batch."""
    grads = np.zeros_like(x)
    d = x[0].size
    steps = h * np.eye(d).reshape(d, *x.shape[1:])
    for i in range(len(x)):
        batch = np.concatenate([x[i] + steps, x[i] - steps])
        out = net(batch).numpy()[:, 1]
        grads[i] = ((out[:d] - out[d:]) / (2 * h)).reshape(x.shape[1:])
    return grads


@pytest.fixture(scope="module")
def builtin():
    return mv.builtin_model("keras")


@pytest.fixture(scope="module")
def shapes():
    return to_channels_last(mv.shapes_dataset(3, size=32, seed=5).images)


# --------------------------------------------------------------------------- against finite differences


def test_cam_family_matches_finite_difference_gradients():
    net, x = tiny_net(), tiny_input()
    cls = np.array([2, 0])
    feat = keras.Model(net.input, net.get_layer("feat").output)(x).numpy()  # (2, 4, 5, 5) NHWC
    kernel, bias = (w.astype(np.float64) for w in net.get_layer("fc").get_weights())

    def head(a):  # relu -> gap -> fc, in NumPy, channels-last
        return (np.maximum(a, 0).mean(axis=(1, 2)) @ kernel + bias)[[0, 1], cls]

    acts = to_channels_first(feat)
    grads = to_channels_first(numeric_grad(head, feat))
    for fn, formula in (
        (mv.grad_cam, cam_math.grad_cam_map),
        (mv.grad_cam_plus_plus, cam_math.grad_cam_plus_plus_map),
        (mv.layer_cam, cam_math.layer_cam_map),
    ):
        want = resize_bilinear(formula(acts, grads), SIZE)
        got = fn(net, x, "feat", cls, normalize=False)
        assert got.shape == (2, *SIZE)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert (want > 0).any() and (want == 0).any()  # the ReLU was exercised


def test_saliency_matches_finite_differences():
    net, x = tiny_net(), tiny_input()
    want = input_grad_fd(net, x)  # (2, 7, 9, 3)
    got = mv.saliency(net, x, 1, aggregation=None, normalize=False)
    assert got.shape == (2, 3, *SIZE)  # canonical layout: channels first
    np.testing.assert_allclose(got, to_channels_first(want), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness(builtin):
    x = to_channels_last(mv.shapes_dataset(4, size=32, seed=2).images)
    maps, delta = mv.integrated_gradients(builtin, x, steps=64, normalize=False, return_delta=True)
    logits = builtin(np.concatenate([x, np.zeros_like(x)])).numpy()
    cls = logits[:4].argmax(axis=1)
    gap = logits[np.arange(4), cls] - logits[4 + np.arange(4), cls]
    total = maps.reshape(4, -1).sum(axis=1)
    print("IG completeness, relative error:", np.abs(total - gap) / np.abs(gap))
    np.testing.assert_allclose(total, gap, rtol=0.05, atol=1e-3 * np.abs(gap).max())
    np.testing.assert_allclose(delta, total - gap, atol=1e-3)


def test_cam_gradient_route_equals_the_dense_kernel(builtin, shapes):
    w = builtin.get_layer("fc").get_weights()[0].T  # (classes, 64)
    for target in (None, [3, 1, 0]):
        by_grad = mv.cam(builtin, shapes, "relu3", target, normalize=False)
        by_weights = mv.cam(builtin, shapes, "relu3", target, fc_weights=w, normalize=False)
        np.testing.assert_allclose(by_grad, by_weights, rtol=1e-4, atol=1e-5)
    with pytest.raises(CamHeadError, match="spatial mean"):
        mv.cam(builtin, shapes, "conv3")


# --------------------------------------------------------------------------- targets


METHODS = {
    "grad_cam": lambda m, x, t: mv.grad_cam(m, x, "relu3", t),
    "grad_cam_plus_plus": lambda m, x, t: mv.grad_cam_plus_plus(m, x, "relu3", t),
    "layer_cam": lambda m, x, t: mv.layer_cam(m, x, "relu2", t),
    "cam": lambda m, x, t: mv.cam(m, x, "relu3", t),
    "score_cam": lambda m, x, t: mv.score_cam(m, x, "relu3", t, batch_size=64),
    "saliency": lambda m, x, t: mv.saliency(m, x, t),
    "grad_x_input": lambda m, x, t: mv.saliency(m, x, t, method="grad_x_input"),
    "integrated_gradients": lambda m, x, t: mv.integrated_gradients(m, x, t, steps=8),
    "guided_backprop": lambda m, x, t: mv.guided_backprop(m, x, t),
    "guided_grad_cam": lambda m, x, t: mv.guided_grad_cam(m, x, "relu3", t),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_per_sample_targets_equal_separate_calls(builtin, shapes, method):
    fn = METHODS[method]
    targets = np.array([3, 0, 2])
    batch = fn(builtin, shapes, targets)
    for i, t in enumerate(targets):
        np.testing.assert_allclose(batch[i], fn(builtin, shapes[i : i + 1], int(t))[0], atol=1e-5)


def test_callable_target(builtin, shapes):
    np.testing.assert_allclose(
        mv.grad_cam(builtin, shapes, "relu3", lambda out: out[:, 2]),
        mv.grad_cam(builtin, shapes, "relu3", 2),
    )
    combo = mv.saliency(
        builtin, shapes, lambda out: 2 * out[:, 1] - out[:, 0], aggregation=None, normalize=False
    )
    one = mv.saliency(builtin, shapes, 1, aggregation=None, normalize=False)
    zero = mv.saliency(builtin, shapes, 0, aggregation=None, normalize=False)
    np.testing.assert_allclose(combo, 2 * one - zero, rtol=1e-4, atol=1e-5 * np.abs(combo).max())


def test_a_model_ending_in_softmax_is_explained_on_its_logits(builtin, shapes):
    soft = keras.Model(builtin.input, keras.layers.Softmax(name="probs")(builtin.output))
    for fn in (mv.grad_cam, mv.score_cam, mv.cam):
        np.testing.assert_allclose(
            fn(soft, shapes, "relu3"), fn(builtin, shapes, "relu3"), atol=1e-5
        )


def test_layer_must_be_spatial_and_is_never_swapped(builtin, shapes):
    for layer in ("gap", "fc"):
        with pytest.raises(NotSpatialLayerError, match=f"'{layer}'") as info:
            mv.grad_cam(builtin, shapes, layer)
        assert "relu3" in str(info.value)
    np.testing.assert_array_equal(
        mv.grad_cam(builtin, shapes), mv.grad_cam(builtin, shapes, "relu3")
    )


# --------------------------------------------------------------------------- the model is left alone


class Tripwire(keras.layers.Layer):
    """Identity that fails at run time (eager or traced) when the image holds a NaN."""

    def call(self, x):
        return tf.debugging.assert_all_finite(x, "tripwire: non-finite activation")


def _model_with_tripwire():
    weights = mv.builtin_model("keras")
    inp = keras.Input((None, None, 3))
    h = Tripwire(name="tripwire")(inp)
    for k, filters in enumerate((16, 32, 64), start=1):
        h = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{k}")(h)
        h = keras.layers.ReLU(name=f"relu{k}")(h)
        if k < 3:
            h = keras.layers.MaxPooling2D(2, name=f"pool{k}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="fc")(h))
    model.set_weights(weights.get_weights())
    return model


def state(model):
    return {
        "weights": [w.copy() for w in model.get_weights()],
        "layers": {
            layer.name: (
                layer.trainable,
                getattr(layer, "activation", None),
                "call" in vars(layer),
                len(getattr(layer, "_inbound_nodes", [])),
            )
            for layer in model.layers
        },
        "trainable": model.trainable,
        "outputs": list(model.outputs),
    }


def assert_same(before, after):
    assert before["layers"] == after["layers"]
    assert before["trainable"] == after["trainable"]
    assert all(a is b for a, b in zip(before["outputs"], after["outputs"], strict=True))
    for a, b in zip(before["weights"], after["weights"], strict=True):
        np.testing.assert_array_equal(a, b)


ALL = {
    **METHODS,
    "smoothgrad": lambda m, x, t: mv.saliency(m, x, t, method="smoothgrad", samples=3),
    "explain": lambda m, x, t: mv.explain(m, x, ["grad_cam", "score_cam", "saliency"], "relu3", t),
}


@pytest.mark.parametrize("method", sorted(ALL))
def test_model_is_unchanged_also_when_forward_raises(method):
    model = _model_with_tripwire()
    model.get_layer("conv2").trainable = False
    before = state(model)
    x = to_channels_last(mv.shapes_dataset(2, size=32).images)
    ALL[method](model, x, None)
    assert_same(before, state(model))
    bad = x.copy()
    bad[0, 3, 4, 0] = np.nan
    with pytest.raises(Exception) as info:
        ALL[method](model, bad, 1)
    assert "tripwire" in str(info.value) + str(info.value.__cause__)
    assert_same(before, state(model))
