"""The Keras 3 backend: what only Keras has — names, layouts, nesting, fallbacks, gradients.

The contract every backend keeps (verbs, invariants, errors) is checked once
for both frameworks in ``tests/backends/test_contract.py``; this file adds
Keras's own cases: static shapes, layouts read from layers, Sequential and
nested models, shared layers, subclassed models, the cached sub-models and
the fast gradient path, ``keras.applications``, other Keras backends.
Expected values are computed independently: NumPy on hand-set weights, the
nested model run on its own, finite differences in float64, closed-form
gradients of small nets. Shapes use H=5, W=7, C=3 (all different) so a
layout bug cannot hide.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

pytestmark = [pytest.mark.keras, pytest.mark.tensorflow]  # TensorFlow's APIs throughout

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import multiviz as mv  # noqa: E402
from multiviz.backends import get_backend  # noqa: E402
from multiviz.backends.cache import entries  # noqa: E402
from multiviz.backends.keras.adapter import KerasBackend  # noqa: E402
from multiviz.errors import (  # noqa: E402
    InputShapeError,
    LayerNotFoundError,
    MultivizError,
)
from tests.frameworks import kit  # noqa: E402

H, W, C = 5, 7, 3
rng = np.random.default_rng(0)


@pytest.fixture
def backend() -> KerasBackend:
    return KerasBackend()


def _x(n: int = 2) -> np.ndarray:
    return rng.standard_normal((n, H, W, C)).astype(np.float32)


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


# ----------------------------------------------------------------- model builders


def _hand_weights() -> dict[str, np.ndarray]:
    return {
        "conv_w": rng.standard_normal((1, 1, C, 4)).astype(np.float32),
        "conv_b": rng.standard_normal(4).astype(np.float32),
        "fc_w": rng.standard_normal((4, 2)).astype(np.float32),
        "fc_b": rng.standard_normal(2).astype(np.float32),
    }


def _set(model, w: dict[str, np.ndarray]) -> None:
    model.get_layer("conv").set_weights([w["conv_w"], w["conv_b"]])
    model.get_layer("fc").set_weights([w["fc_w"], w["fc_b"]])


def _layers_1x1():
    return [
        keras.layers.Conv2D(4, 1, name="conv"),
        keras.layers.ReLU(name="relu"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(2, name="fc"),
    ]


def _functional_1x1(w):
    inp = keras.Input((H, W, C))
    y = inp
    for layer in _layers_1x1():
        y = layer(y)
    model = keras.Model(inp, y, name="net")
    _set(model, w)
    return model


def _expected_1x1(x: np.ndarray, w) -> dict[str, np.ndarray]:
    conv = np.einsum("nhwc,cd->ndhw", x, w["conv_w"][0, 0]) + w["conv_b"][None, :, None, None]
    relu = _relu(conv)
    gap = relu.mean(axis=(2, 3))
    return {"conv": conv, "relu": relu, "gap": gap, "fc": gap @ w["fc_w"] + w["fc_b"]}


KIT = kit("keras")  # what a capture must leave untouched (shared with the contract)
_snapshot = KIT.state


def _assert_same(before: dict, after: dict) -> None:
    KIT.assert_same(before, after)


# ----------------------------------------------------------------- basics


def test_layers_know_canonical_shapes_without_running_the_model(backend):
    # the names, kinds and shapes themselves are the contract's; Keras knows shapes statically
    infos = backend.layers(_functional_1x1(_hand_weights()))
    assert infos[0].shape == (None, 4, H, W)  # channels first, batch None
    assert infos[1].shape == (None, 4, H, W)  # ReLU inherits conv's layout
    assert infos[3].shape == (None, 2)


def test_channels_first_layers_are_not_transposed(backend):
    # A separable 1x1 conv (depthwise scale 1, then pointwise `wgt`) is the
    # plain 1x1 conv `wgt`. Not Conv2D itself: TensorFlow's CPU kernel runs
    # NCHW only with oneDNN, which TensorFlow enables only on CPUs with
    # AVX-512 VNNI / BF16 / AMX ("only supports the NHWC tensor format on the
    # CPU" elsewhere, in the user's own model(x) too). For separable convs
    # Keras itself transposes to NHWC and back on a CPU; the layer still takes
    # and returns channels_first, which is what is tested here.
    inp = keras.Input((C, H, W))
    y = keras.layers.SeparableConv2D(4, 1, data_format="channels_first", name="conv")(inp)
    y = keras.layers.ReLU(name="relu")(y)  # inherits channels_first from conv
    model = keras.Model(inp, y)
    wgt = rng.standard_normal((1, 1, C, 4)).astype(np.float32)
    ones = np.ones((1, 1, C, 1), np.float32)
    model.get_layer("conv").set_weights([ones, wgt, np.zeros(4, np.float32)])
    x = rng.standard_normal((2, C, H, W)).astype(np.float32)
    assert backend.input_layout(model) == "channels_first"
    acts = backend.capture(model, x, ["conv", "relu"])
    np.testing.assert_allclose(acts["conv"], np.einsum("nchw,cd->ndhw", x, wgt[0, 0]), atol=1e-5)
    np.testing.assert_allclose(acts["relu"], _relu(acts["conv"]), atol=1e-6)
    assert [i.shape for i in backend.layers(model)] == [(None, 4, H, W)] * 2


def test_batchnorm_axis_declares_the_layout(backend):
    inp = keras.Input((H, W, C))
    y = keras.layers.Permute((3, 1, 2), name="to_nchw")(inp)  # no data_format of its own
    y = keras.layers.BatchNormalization(axis=1, name="bn")(y)  # axis 1: channels first
    model = keras.Model(inp, y)
    x = _x()
    bn = backend.capture(model, x, ["bn"])["bn"]
    expected = np.transpose(x, (0, 3, 1, 2)) / np.sqrt(1.0 + 1e-3)  # fresh BN, inference
    np.testing.assert_allclose(bn, expected, rtol=1e-5, atol=1e-5)
    assert backend.input_layout(model) == keras.config.image_data_format()


# ----------------------------------------------------------------- Sequential


def test_sequential_built(backend):
    w = _hand_weights()
    model = keras.Sequential([keras.Input((H, W, C)), *_layers_1x1()])
    _set(model, w)
    x = _x()
    assert [i.name for i in backend.layers(model)] == ["conv", "relu", "gap", "fc"]
    acts = backend.capture(model, x, ["conv", "fc"])
    expected = _expected_1x1(x, w)
    np.testing.assert_allclose(acts["conv"], expected["conv"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["fc"], expected["fc"], rtol=1e-5, atol=1e-5)


def test_sequential_unbuilt_is_built_from_x_like_a_first_call(backend):
    model = keras.Sequential(_layers_1x1())
    assert not model.built
    infos = backend.layers(model)  # names known before build, shapes not
    assert [i.name for i in infos] == ["conv", "relu", "gap", "fc"]
    assert all(i.shape is None for i in infos)
    x = _x()
    acts = mv.capture(model, x, ["conv", "fc"])
    assert model.built
    w = {
        "conv_w": model.get_layer("conv").get_weights()[0],
        "conv_b": model.get_layer("conv").get_weights()[1],
        "fc_w": model.get_layer("fc").get_weights()[0],
        "fc_b": model.get_layer("fc").get_weights()[1],
    }
    expected = _expected_1x1(x, w)
    np.testing.assert_allclose(acts["conv"], expected["conv"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["fc"], expected["fc"], rtol=1e-5, atol=1e-5)
    # built with a free batch axis: another batch size works too
    assert backend.capture(model, _x(3), ["fc"])["fc"].shape == (3, 2)
    assert backend.layers(model)[0].shape == (None, 4, H, W)


def test_sequential_unbuilt_layers_with_input_shape(backend):
    model = keras.Sequential(_layers_1x1())
    infos = backend.layers(model, input_shape=(H, W, C))
    assert infos[0].shape == (None, 4, H, W) and infos[-1].shape == (None, 2)


# ----------------------------------------------------------------- nesting, sharing


def _two_level_nested():
    i_in = keras.Input((H, W, 4))
    i_out = keras.layers.ReLU(name="irelu")(keras.layers.Conv2D(2, 1, name="iconv")(i_in))
    inner = keras.Model(i_in, i_out, name="inner")
    m_in = keras.Input((H, W, 4))
    m_out = inner(keras.layers.Conv2D(4, 1, name="mconv")(m_in))
    mid = keras.Model(m_in, m_out, name="mid")
    inp = keras.Input((H, W, C))
    y = keras.layers.Conv2D(4, 1, name="conv")(inp)
    y = mid(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    out = keras.layers.Dense(3, name="fc")(y)
    return keras.Model(inp, out, name="outer"), mid, inner


def test_nested_names_and_values_equal_inner_model_run_alone(backend):
    model, mid, inner = _two_level_nested()
    names = [i.name for i in backend.layers(model)]
    assert names == [
        "conv",
        "mid",
        "mid/mconv",
        "mid/inner",
        "mid/inner/iconv",
        "mid/inner/irelu",
        "gap",
        "fc",
    ]
    assert {i.name: i.kind for i in backend.layers(model)}["mid/inner"] == "container"
    x = _x()
    acts = mv.capture(model, x, ["mid/inner/iconv", "mid/inner", "mid/mconv", "fc"])
    # independent reference: the layers and the inner model run by hand, eagerly
    conv = model.get_layer("conv")(x)
    mconv = mid.get_layer("mconv")(conv)
    iconv = inner.get_layer("iconv")(mconv)
    to_nchw = mv.to_channels_first
    np.testing.assert_allclose(acts["mid/mconv"], to_nchw(np.asarray(mconv)), atol=1e-5)
    np.testing.assert_allclose(acts["mid/inner/iconv"], to_nchw(np.asarray(iconv)), atol=1e-5)
    np.testing.assert_allclose(acts["mid/inner"], to_nchw(np.asarray(inner(mconv))), atol=1e-5)
    np.testing.assert_allclose(acts["fc"], np.asarray(model(x)), atol=1e-5)


def test_sequential_of_models_transfer_learning_pattern(backend):
    base_in = keras.Input((H, W, C))
    base = keras.Model(base_in, keras.layers.Conv2D(4, 1, name="bconv")(base_in), name="base")
    model = keras.Sequential(
        [keras.Input((H, W, C)), base, keras.layers.Flatten(name="flat"), keras.layers.Dense(2)]
    )
    x = _x()
    acts = backend.capture(model, x, ["base/bconv", "flat"])
    np.testing.assert_allclose(
        acts["base/bconv"], mv.to_channels_first(np.asarray(base(x))), atol=1e-5
    )
    np.testing.assert_allclose(acts["flat"], np.asarray(base(x)).reshape(2, -1), atol=1e-5)


def test_shared_layer_one_name_per_call(backend):
    w = rng.standard_normal((1, 1, C, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    inp = keras.Input((H, W, C))
    shared = keras.layers.Conv2D(4, 1, name="shared")
    a = shared(inp)
    doubled = keras.layers.Rescaling(2.0, name="double")(inp)
    c = shared(doubled)
    model = keras.Model(inp, keras.layers.Add(name="add")([a, c]))
    shared.set_weights([w, b])
    names = [i.name for i in backend.layers(model)]
    assert sorted(names) == ["add", "double", "shared", "shared#1"]
    assert names.index("shared#1") == names.index("shared") + 1  # calls follow each other
    x = _x()
    acts = mv.capture(model, x, ["shared", "shared#1"])
    lin = np.einsum("nhwc,cd->ndhw", x, w[0, 0])
    bias = b[None, :, None, None]
    np.testing.assert_allclose(acts["shared"], lin + bias, atol=1e-5)
    np.testing.assert_allclose(acts["shared#1"], 2 * lin + bias, atol=1e-5)
    assert list(mv.capture(model, x, ["shared#1"])) == ["shared#1"]


def test_shared_nested_model_second_call(backend):
    e_in = keras.Input((H, W, C))
    enc = keras.Model(e_in, keras.layers.Conv2D(2, 1, name="ic")(e_in), name="enc")
    inp = keras.Input((H, W, C))
    twice = keras.layers.Rescaling(2.0, name="double")(inp)
    model = keras.Model(inp, keras.layers.Add(name="add")([enc(inp), enc(twice)]))
    names = [i.name for i in backend.layers(model)]
    assert {"enc", "enc/ic", "enc#1", "enc#1/ic"} <= set(names)
    x = _x()
    acts = mv.capture(model, x, ["enc/ic", "enc#1/ic"])
    np.testing.assert_allclose(acts["enc/ic"], mv.to_channels_first(np.asarray(enc(x))), atol=1e-5)
    np.testing.assert_allclose(
        acts["enc#1/ic"], mv.to_channels_first(np.asarray(enc(2 * x))), atol=1e-5
    )


class _Split(keras.layers.Layer):
    """Two outputs: the input and its negation."""

    def call(self, x):
        return x * 1.0, -x


def test_multi_output_layer(backend):
    inp = keras.Input((H, W, C))
    a, b = _Split(name="split")(inp)
    model = keras.Model(inp, keras.layers.Concatenate(name="cat")([a, b]))
    infos = backend.layers(model)
    assert [i.name for i in infos] == ["split[0]", "split[1]", "cat"]
    assert infos[0].shape == (None, C, H, W)
    x = _x()
    acts = backend.capture(model, x, ["split"])
    np.testing.assert_allclose(acts["split[0]"], mv.to_channels_first(x))
    np.testing.assert_allclose(acts["split[1]"], -mv.to_channels_first(x))
    assert list(mv.capture(model, x, ["split[1]"])) == ["split[1]"]


# ----------------------------------------------------------------- subclassed fallback


class _Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 1, name="conv")
        self.relu = keras.layers.ReLU(name="relu")
        self.fc = keras.layers.Dense(2, name="fc")
        self.unused = keras.layers.Dense(1, name="unused")
        self.fail = False

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.fc.build((None, 4))
        self.unused.build((None, 4))

    def call(self, x):
        y = self.relu(self.conv(x))
        y = self.relu(y - 1.0)  # second call of the same layer
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(keras.ops.mean(y, axis=(1, 2)))


def test_subclassed_fallback_values_and_restoration(backend):
    model = _Net()
    x = _x()
    model(x)  # build
    w = {
        "conv_w": model.conv.get_weights()[0],
        "conv_b": model.conv.get_weights()[1],
        "fc_w": model.fc.get_weights()[0],
        "fc_b": model.fc.get_weights()[1],
    }
    names = [i.name for i in backend.layers(model)]
    assert names == ["conv", "relu", "fc", "unused"]
    acts = mv.capture(model, x, ["conv", "relu", "fc"])
    conv = _expected_1x1(x, w)["conv"]
    relu1 = _relu(_relu(conv) - 1.0)
    np.testing.assert_allclose(acts["conv"], conv, atol=1e-5)
    np.testing.assert_allclose(acts["relu"], _relu(conv), atol=1e-5)
    np.testing.assert_allclose(acts["relu#1"], relu1, atol=1e-5)
    np.testing.assert_allclose(
        acts["fc"], relu1.mean(axis=(2, 3)) @ w["fc_w"] + w["fc_b"], atol=1e-5
    )
    layers = model._flatten_layers(include_self=True)
    assert all("call" not in layer.__dict__ for layer in layers)
    # restored also when the forward pass raises
    model.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        backend.capture(model, x, ["conv"])
    assert all("call" not in layer.__dict__ for layer in layers)


def test_subclassed_shapes_from_one_pass_and_unreachable_layer(backend):
    model = _Net()
    infos = backend.layers(model, input_shape=(H, W, C))
    assert [(i.name, i.shape) for i in infos[:3]] == [
        ("conv", (None, 4, H, W)),
        ("relu", (None, 4, H, W)),
        ("relu#1", (None, 4, H, W)),
    ]
    assert backend.capture(model, _x(), ["unused"]) == {}  # a backend returns what ran
    with pytest.raises(LayerNotFoundError, match=r"'unused' did not run .*0 calls"):
        mv.capture(model, _x(), ["unused"])


def test_subclassed_block_inside_functional(backend):
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 1, name="bconv")

        def call(self, x):
            return keras.ops.relu(self.conv(x))

    inp = keras.Input((H, W, C))
    block = Block(name="block")
    model = keras.Model(inp, keras.layers.Dense(2, name="fc")(block(inp)))
    assert [i.name for i in backend.layers(model)] == ["block", "block/bconv", "fc"]
    x = _x()
    acts = backend.capture(model, x, ["block/bconv"])
    np.testing.assert_allclose(
        acts["block/bconv"], mv.to_channels_first(np.asarray(block.conv(x))), atol=1e-5
    )
    assert "call" not in block.conv.__dict__


# ----------------------------------------------------------------- invariants


def test_model_left_unchanged(backend):
    model, _, _ = _two_level_nested()
    x = _x()
    before = _snapshot(model)
    backend.capture(model, x, ["conv", "mid/inner/iconv", "fc"])
    backend.forward(model, x)
    backend.gradients(model, x, ["mid/inner/iconv"], wrt_input=True, guided=True)
    _assert_same(before, _snapshot(model))


def test_submodel_built_once_and_reused(backend):
    model = _functional_1x1(_hand_weights())
    x = _x()
    backend.capture(model, x, ["conv", "gap"])
    runners = entries(model, "capture")
    assert len(runners) == 1
    (runner,) = runners.values()
    sub = runner.plan.submodel
    backend.capture(model, _x(3), ["gap", "conv"])  # same set, other order and batch
    assert entries(model, "capture")[("capture", ("conv", "gap"))] is runner
    assert runner.plan.submodel is sub
    backend.capture(model, x, ["relu"])
    assert len(entries(model, "capture")) == 2


def test_cache_does_not_keep_the_model_alive(backend):
    model = _functional_1x1(_hand_weights())
    backend.capture(model, _x(), ["conv"])
    backend.forward(model, _x())
    backend.gradients(model, _x(), ["conv"], wrt_input=True)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


class _Spy(keras.layers.Layer):
    """Counts how often its op runs (a py_function: it only runs when executed)."""

    runs = 0

    def call(self, x):
        def tick(v):
            _Spy.runs += 1
            return v

        y = tf.py_function(tick, [x], x.dtype)
        y.set_shape(x.shape)
        return y


def test_capture_stops_at_the_deepest_chosen_layer(backend):
    inp = keras.Input((H, W, C))
    y = keras.layers.Conv2D(4, 1, name="conv")(inp)
    y = _Spy(name="spy")(y)
    model = keras.Model(inp, keras.layers.ReLU(name="after")(y))
    x = _x()
    _Spy.runs = 0
    backend.capture(model, x, ["conv"])
    backend.capture(model, x, ["conv"])
    assert _Spy.runs == 0  # nothing after "conv" was executed
    backend.capture(model, x, ["after"])
    assert _Spy.runs == 1


# ----------------------------------------------------------------- errors


class _Fails(keras.layers.Layer):
    """Identity that raises a non-shape ValueError once ``armed`` (after the model is built)."""

    armed = False

    def call(self, x):
        if self.armed:
            raise ValueError("custom layer refuses: calibration table missing")
        return x


class _NonNegative(keras.layers.Layer):
    """Identity with a tf.debugging assertion on the values (fails at run time)."""

    def call(self, x):
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="neg!")]):
            return tf.identity(x)


def _failing_net(layer):
    inp = keras.Input((H, W, C))
    y = keras.layers.Conv2D(4, 1, activation="relu", name="conv")(inp)
    y = layer(keras.layers.Conv2D(4, 1, name="mid")(y))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inp, keras.layers.Dense(2, name="fc")(y))


@pytest.mark.parametrize("verb", ["capture", "forward", "gradients", "guided", "callable"])
def test_errors_inside_the_model_propagate_unchanged(backend, verb):
    fails = _Fails(name="fails")
    model = _failing_net(fails)
    fails.armed = True
    asserting = _failing_net(_NonNegative(name="nonneg"))
    x = _x()

    def run(m):
        if verb == "capture":
            return backend.capture(m, x, ["gap"])
        if verb == "forward":
            return backend.forward(m, x)
        target = (lambda out: out[:, 0]) if verb == "callable" else 0
        return backend.gradients(m, x, ["mid"], target, wrt_input=True, guided=verb == "guided")

    before = _snapshot(model)
    with pytest.raises(ValueError, match="calibration table missing") as info:
        run(model)
    assert not isinstance(info.value, InputShapeError)
    _assert_same(before, _snapshot(model))  # guided ReLUs swapped back
    before = _snapshot(asserting)
    with pytest.raises(tf.errors.InvalidArgumentError, match="neg!") as info:
        run(asserting)
    assert not isinstance(info.value, MultivizError)
    _assert_same(before, _snapshot(asserting))


def test_subclassed_model_errors_propagate_unchanged(backend):
    class Broken(keras.Model):
        def call(self, x):
            raise ValueError("broken on purpose")

    with pytest.raises(ValueError, match="broken on purpose") as info:
        backend.forward(Broken(), _x())
    assert not isinstance(info.value, MultivizError)


# ----------------------------------------------------------------- gradients


def _tanh_net(nested: bool):
    """float64 net: conv -> [nested: enc(conv, tanh)] / conv(tanh) -> flatten -> dense."""
    kw = {"dtype": "float64"}
    inp = keras.Input((4, 5, 3), dtype="float64")
    y = keras.layers.Conv2D(3, 3, padding="same", name="c0", **kw)(inp)
    if nested:
        e_in = keras.Input((4, 5, 3), dtype="float64")
        e_mid = keras.layers.Conv2D(2, 1, name="ic", **kw)(e_in)
        enc = keras.Model(e_in, keras.layers.Activation("tanh", name="it", **kw)(e_mid), name="enc")
        y = enc(y)
    else:
        y = keras.layers.Conv2D(2, 1, name="ic", **kw)(y)
        y = keras.layers.Activation("tanh", name="it", **kw)(y)
    y = keras.layers.Flatten(name="flat", **kw)(y)
    return keras.Model(inp, keras.layers.Dense(3, name="fc", **kw)(y))


@pytest.mark.parametrize("nested", [True])  # a plain graph: tests/backends/test_contract.py
def test_gradients_match_closed_form_and_finite_differences(backend, nested):
    model = _tanh_net(nested)
    prefix = "enc/" if nested else ""
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 3))
    target = np.array([0, 2])
    res = backend.gradients(model, x, [prefix + "ic"], target=target, wrt_input=True)
    logits = np.asarray(model(x))
    np.testing.assert_allclose(res.output, logits, rtol=1e-5)
    np.testing.assert_allclose(res.scores, logits[[0, 1], target], rtol=1e-5)
    assert res.targets.tolist() == [0, 2]
    # closed form: d score / d ic = W_fc[:, t] (as H, W, C) * (1 - tanh(ic)^2), canonical
    fc_w = model.get_layer("fc").get_weights()[0]
    ic = res.activations[prefix + "ic"]  # (N, 2, 4, 5)
    for n, t in enumerate(target):
        upstream = mv.to_channels_first(fc_w[:, t].reshape(1, 4, 5, 2))[0]
        np.testing.assert_allclose(
            res.gradients[prefix + "ic"][n],
            upstream * (1 - np.tanh(ic[n]) ** 2),
            rtol=1e-4,
            atol=1e-6,
        )

    # finite differences on the float64 model w.r.t. the input (NHWC)
    def total(z):
        out = np.asarray(model(z))
        return out[0, target[0]] + out[1, target[1]]

    eps, numeric = 1e-6, np.zeros_like(x)
    for idx in [(0, 0, 0, 0), (0, 3, 4, 2), (1, 2, 1, 1), (1, 1, 3, 0)]:
        step = np.zeros_like(x)
        step[idx] = eps
        numeric[idx] = (total(x + step) - total(x - step)) / (2 * eps)
        np.testing.assert_allclose(res.input_gradient[idx], numeric[idx], rtol=1e-4, atol=1e-7)
    assert res.input_gradient.shape == x.shape  # the model's own input layout


@pytest.mark.parametrize("head", ["dense", "activation", "nested"])
def test_softmax_models_are_scored_on_logits(backend, head):
    inp = keras.Input((6,))
    fc = keras.layers.Dense(4, name="fc", activation="softmax" if head == "dense" else None)
    if head == "nested":  # the softmax sits inside a nested model
        h_in = keras.Input((6,))
        out = keras.Model(h_in, keras.layers.Softmax(name="sm")(fc(h_in)), name="head")(inp)
    else:
        y = fc(inp)
        out = y if head == "dense" else keras.layers.Activation("softmax", name="sm")(y)
    model = keras.Model(inp, out)
    w, b = rng.standard_normal((6, 4)), rng.standard_normal(4)
    fc.set_weights([w, b])
    x = rng.standard_normal((3, 6)).astype(np.float32)
    res = backend.gradients(model, x, [], target=1, wrt_input=True)
    logits = x @ w + b
    np.testing.assert_allclose(res.output, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.scores, logits[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.input_gradient, np.tile(w[:, 1], (3, 1)), rtol=1e-5)
    assert fc.activation.__name__ == ("softmax" if head == "dense" else "linear")


@pytest.mark.parametrize("relu", ["activation"])  # a ReLU layer: tests/backends/test_contract.py
def test_guided_backprop_hand_computed_and_restored(backend, relu):
    inp = keras.Input((4,))
    if relu == "activation":
        hidden = keras.layers.Dense(3, activation="relu", name="h")
        y = hidden(inp)
        patched = (hidden, "activation")
    else:
        hidden = keras.layers.Dense(3, name="h")
        act = keras.layers.ReLU(name="r")
        y = act(hidden(inp))
        patched = (act, "call")
    out_layer = keras.layers.Dense(2, name="out")
    model = keras.Model(inp, out_layer(y))
    w1 = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    w2 = np.array([[1.0, -1.0], [-2.0, 1.0], [0.5, 0.5]])
    hidden.set_weights([w1, np.zeros(3)])
    out_layer.set_weights([w2, np.zeros(2)])
    x = np.array([[1.0, 0.5, 0.2, 0.3]], np.float32)
    z = x @ w1  # [[1.6, 1.2, 0.5]]: every unit active
    g = w2[:, 0]  # d score / d relu output, target 0: [1, -2, 0.5]
    plain = backend.gradients(model, x, [], target=0, wrt_input=True).input_gradient
    np.testing.assert_allclose(plain[0], w1 @ (g * (z[0] > 0)), rtol=1e-5)
    layer, attr = patched
    before = layer.__dict__.get(attr)
    guided = backend.gradients(model, x, [], target=0, wrt_input=True, guided=True).input_gradient
    np.testing.assert_allclose(guided[0], w1 @ (g * (z[0] > 0) * (g > 0)), rtol=1e-5)
    assert layer.__dict__.get(attr) is before  # restored (a ReLU layer's call: not there)
    again = backend.gradients(model, x, [], target=0, wrt_input=True).input_gradient
    np.testing.assert_allclose(again, plain, rtol=1e-6)


class _SoftNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.h = keras.layers.Dense(3, activation="tanh", name="h")
        self.out = keras.layers.Dense(2, activation="softmax", name="out")

    def build(self, input_shape):
        self.h.build(input_shape)
        self.out.build((None, 3))

    def call(self, x):
        return self.out(self.h(x))


def test_subclassed_gradients_on_logits(backend):
    model = _SoftNet()
    model.build((None, 4))
    w1, b1 = rng.standard_normal((4, 3)), rng.standard_normal(3)
    w2, b2 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    model.h.set_weights([w1, b1])
    model.out.set_weights([w2, b2])
    x = rng.standard_normal((2, 4)).astype(np.float32)
    res = backend.gradients(model, x, ["h"], target=1, wrt_input=True)
    a = np.tanh(x @ w1 + b1)
    np.testing.assert_allclose(res.output, a @ w2 + b2, rtol=1e-5, atol=1e-5)  # logits
    np.testing.assert_allclose(res.gradients["h"], np.tile(w2[:, 1], (2, 1)), rtol=1e-5)
    np.testing.assert_allclose(res.input_gradient, (w2[:, 1] * (1 - a**2)) @ w1.T, rtol=1e-4)
    assert all("call" not in layer.__dict__ for layer in model._flatten_layers())


# ----------------------------------------------------------------- the fast gradient path


def _grad_net(head: str):
    """conv -> relu (layer) -> conv(relu act) -> gap -> dense head, per ``head``:

    ``"linear"`` (logits out), ``"dense"`` (Dense with softmax), ``"activation"``
    (Dense then Activation("softmax")), ``"conv"`` (a 1x1 conv with softmax, then
    a flatten: the score is read behind a layer that is not the output one).
    """
    inp = keras.Input((H, W, C))
    y = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    y = keras.layers.ReLU(name="r1")(y)
    y = keras.layers.Conv2D(6, 1, activation="relu", name="c2")(y)
    if head == "conv":
        y = keras.layers.Conv2D(3, 1, activation="softmax", name="out")(y)
        out = keras.layers.Flatten(name="flat")(y)
    else:
        y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
        act = "softmax" if head == "dense" else None
        out = keras.layers.Dense(5, activation=act, name="fc")(y)
        if head == "activation":
            out = keras.layers.Activation("softmax", name="sm")(out)
    return keras.Model(inp, out, name=f"grad_{head}")


def _both_paths(backend, model, x, names, monkeypatch, **kw):
    from multiviz.backends.keras import gradients_tf_fast as _keras_fast

    fast = backend.gradients(model, x, names, **kw)
    monkeypatch.setattr(_keras_fast, "ENABLED", False)
    general = backend.gradients(model, x, names, **kw)
    monkeypatch.setattr(_keras_fast, "ENABLED", True)
    return fast, general


def _assert_results_equal(a, b) -> None:
    np.testing.assert_allclose(a.output, b.output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert (a.targets is None) == (b.targets is None)
    if a.targets is not None:
        np.testing.assert_array_equal(a.targets, b.targets)
    assert list(a.activations) == list(b.activations)
    assert list(a.gradients) == list(b.gradients)
    for key in a.activations:
        np.testing.assert_allclose(a.activations[key], b.activations[key], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.gradients[key], b.gradients[key], rtol=1e-5, atol=1e-7)
    assert (a.input_gradient is None) == (b.input_gradient is None)
    if a.input_gradient is not None:
        np.testing.assert_allclose(a.input_gradient, b.input_gradient, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("head", ["linear", "dense", "activation", "conv"])
@pytest.mark.parametrize(
    "kw",
    [
        {"target": np.array([1, 2])},
        {"target": None, "wrt_input": True},
        {"target": 0, "wrt_input": True, "guided": True},
    ],
    ids=["classes", "top-input", "guided"],
)
def test_fast_path_equals_general_path(backend, monkeypatch, head, kw):

    model = _grad_net(head)
    x = _x()
    if head == "conv":  # an output of shape (N, H*W*3): class indices still apply
        kw = {**kw, "target": None if kw["target"] is None else np.array([4, 9])}
    names = ["c1", "r1", "c2"] + ([] if head == "conv" else ["fc"])
    fast, general = _both_paths(backend, model, x, names, monkeypatch, **kw)
    _assert_results_equal(fast, general)
    assert any(np.abs(g).max() > 0 for g in fast.gradients.values() if g.ndim == 4)
    (step,) = entries(model, "fast_gradients").values()  # the fast path ran, on one sub-model
    assert isinstance(step.submodel, keras.Model)
    assert step.submodel is not model


def test_fast_path_scores_on_logits(backend):
    model = _grad_net("dense")
    x = _x()
    res = backend.gradients(model, x, ["gap"], target=3)
    w, b = model.get_layer("fc").get_weights()
    gap = res.activations["gap"]
    np.testing.assert_allclose(res.output, gap @ w + b, rtol=1e-5, atol=1e-6)  # logits
    np.testing.assert_allclose(res.gradients["gap"], np.tile(w[:, 3], (2, 1)), rtol=1e-5)
    assert res.input_gradient is None


def test_fast_path_callable_target_and_no_layers(backend, monkeypatch):
    model = _grad_net("activation")
    x = _x()
    fast, general = _both_paths(
        backend, model, x, ["c2"], monkeypatch, target=lambda out: out[:, 1] - out[:, 4]
    )
    _assert_results_equal(fast, general)
    fast, general = _both_paths(backend, model, x, [], monkeypatch, target=None)
    _assert_results_equal(fast, general)  # the scored forward attribution uses


def test_fast_path_one_submodel_per_layer_set_and_target_does_not_retrace(backend):

    model = _grad_net("linear")
    x = _x()
    backend.gradients(model, x, ["c2", "c1"], target=0)
    (step,) = entries(model, "fast_gradients").values()
    fn = step.compiled(False, False)
    backend.gradients(model, x, ["c1", "c2"], target=np.array([3, 1]))
    assert list(entries(model, "fast_gradients").values()) == [step]
    assert step.compiled(False, False) is fn
    assert fn.experimental_get_tracing_count() == 1  # a new class index is a new tensor value


def test_fast_path_only_for_top_level_layers_of_plain_graph_models(backend):

    model, _, _ = _two_level_nested()
    backend.gradients(model, _x(), ["mid/inner/iconv"], target=0)
    assert not entries(model, "fast_gradients")  # nested layer: the general path
    backend.gradients(model, _x(), ["conv"], target=0)
    assert len(entries(model, "fast_gradients")) == 1

    class Custom(keras.Model):  # a Functional subclass that changes `call`
        def call(self, inputs, training=None):
            return super().call(inputs, training=training) * 2.0

    inp = keras.Input((4,))
    custom = Custom(inp, keras.layers.Dense(2, name="d")(inp))
    res = backend.gradients(custom, np.ones((1, 4), np.float32), ["d"], target=0)
    assert not entries(custom, "fast_gradients")
    w = custom.get_layer("d").get_weights()[0]
    np.testing.assert_allclose(res.gradients["d"], [[1.0, 0.0]])  # graph-scored, as before
    np.testing.assert_allclose(res.output, np.ones((1, 4)) @ w, rtol=1e-5, atol=1e-6)


class _BombGrad(keras.layers.Layer):
    """Identity whose backward pass fails when it is executed.

    The failing op (a gather one element past the end, the index computed
    from the data so that tracing cannot see it) is stateless, so a compiled step leaves it out unless a requested
    gradient needs it.
    """

    def call(self, x):
        @tf.custom_gradient
        def ident(v):
            def grad(dy):
                flat = tf.reshape(dy, [-1])
                past_end = tf.size(dy) + tf.cast(tf.reduce_max(tf.abs(dy)) * 0.0, tf.int32)
                return dy + 0.0 * tf.gather(flat, past_end)  # out of range: fails when run

            return tf.identity(v), grad

        return ident(x)


@pytest.mark.parametrize("fast", [True, False])
def test_backprop_stops_at_the_chosen_layer(backend, monkeypatch, fast):
    from multiviz.backends.keras import gradients_tf_fast as _keras_fast

    monkeypatch.setattr(_keras_fast, "ENABLED", fast)
    inp = keras.Input((H, W, C))
    y = _BombGrad(name="bomb")(keras.layers.Conv2D(4, 1, name="c0")(inp))
    y = keras.layers.Conv2D(2, 1, name="c1")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(inp, keras.layers.Dense(3, name="fc")(y))
    x = _x()
    res = backend.gradients(model, x, ["c1"], target=1)  # Grad-CAM: no input gradient
    w = model.get_layer("fc").get_weights()[0]
    expected = np.broadcast_to(w[:, 1][None, :, None, None] / (H * W), (2, 2, H, W))
    np.testing.assert_allclose(res.gradients["c1"], expected, rtol=1e-5)
    assert bool(entries(model, "fast_gradients")) is fast
    with pytest.raises(tf.errors.InvalidArgumentError):  # the backward pass reaches "bomb"
        backend.gradients(model, x, ["c1"], target=1, wrt_input=True)


def test_gradients_reach_layers_of_a_frozen_model(backend):
    # nothing trainable: the tape must still record the ops behind the chosen layer
    model = _grad_net("dense")
    model.trainable = False
    res = backend.gradients(model, _x(), ["gap"], target=2)
    w = model.get_layer("fc").get_weights()[0]
    np.testing.assert_allclose(res.gradients["gap"], np.tile(w[:, 2], (2, 1)), rtol=1e-5)


def test_fast_path_leaves_the_model_unchanged(backend):
    model = _grad_net("activation")
    x = _x()
    before = _snapshot(model)
    for guided in (False, True, False):
        backend.gradients(model, x, ["c1", "c2"], target=0, wrt_input=True, guided=guided)
        backend.gradients(model, x, ["sm"], target=lambda out: out[:, 0], guided=guided)
    _assert_same(before, _snapshot(model))
    plain = backend.gradients(model, x, ["c1"], target=0).gradients["c1"]
    guided = backend.gradients(model, x, ["c1"], target=0, guided=True).gradients["c1"]
    assert not np.allclose(plain, guided)  # the guided trace is a trace of its own
    again = backend.gradients(model, x, ["c1"], target=0).gradients["c1"]
    np.testing.assert_array_equal(plain, again)


# ----------------------------------------------------------------- keras.applications


@pytest.fixture(scope="module")
def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)


@pytest.fixture(scope="module")
def mobilenet_v2():
    return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["resnet50", "mobilenet_v2"])
def test_applications_every_layer_in_one_capture(request, fixture):
    model = request.getfixturevalue(fixture)
    size = model.inputs[0].shape[1]
    infos = mv.layers(model)
    assert len(infos) == len(model.layers) - 1  # all but the InputLayer
    x = np.random.default_rng(4).random((2, size, size, 3), dtype=np.float32)
    acts = mv.capture(model, x, [i.name for i in infos])
    assert list(acts) == [i.name for i in infos]
    for info in infos:
        assert acts[info.name].shape == (2, *info.shape[1:]), info.name
        assert np.isfinite(acts[info.name]).all(), info.name
    reference = np.asarray(model(x, training=False))  # eager Keras, no tf.function
    np.testing.assert_allclose(acts[infos[-1].name], reference, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_applications_gradients_on_logits(mobilenet_v2):
    backend = get_backend(mobilenet_v2)
    x = np.random.default_rng(5).random((1, 96, 96, 3), dtype=np.float32)
    res = backend.gradients(mobilenet_v2, x, ["out_relu"])
    pooled = backend.capture(mobilenet_v2, x, ["global_average_pooling2d"])
    pooled = next(iter(pooled.values()))
    w, b = mobilenet_v2.get_layer("predictions").get_weights()
    np.testing.assert_allclose(res.output, pooled @ w + b, rtol=1e-4, atol=1e-6)
    assert res.gradients["out_relu"].shape == res.activations["out_relu"].shape == (1, 1280, 3, 3)


# ----------------------------------------------------------------- other Keras backends


OTHER_BACKEND_SCRIPT = textwrap.dedent(
    """
    import os, sys
    if sys.argv[1] == "torch":
        import torch  # noqa: F401  (before keras)
    import keras, numpy as np
    import multiviz as mv
    from multiviz.backends import get_backend
    from multiviz.errors import MultivizError
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    inp = keras.Input((5, 7, 3))
    conv = keras.layers.Conv2D(4, 1, name="conv")
    model = keras.Model(inp, keras.layers.ReLU(name="relu")(conv(inp)))
    assert get_backend(model).name == "keras"
    assert [i.name for i in mv.layers(model)] == ["conv", "relu"]
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype("float32")
    acts = mv.capture(model, x, ["conv", "relu"])
    w, b = conv.get_weights()
    want = np.einsum("nhwc,cd->ndhw", x, w[0, 0]) + b[None, :, None, None]
    np.testing.assert_allclose(acts["conv"], want, atol=1e-5)
    np.testing.assert_allclose(acts["relu"], np.maximum(want, 0), atol=1e-5)
    np.testing.assert_allclose(mv.forward(model, x), np.maximum(want, 0).transpose(0, 2, 3, 1), atol=1e-5)
    # gradients of sum(relu(conv)): 1 where conv > 0 at the layer; w @ that at the input
    res = get_backend(model).gradients(
        model, x, ["conv"], target=lambda out: keras.ops.sum(out, axis=(1, 2, 3)), wrt_input=True
    )
    np.testing.assert_allclose(res.gradients["conv"], (want > 0).astype("float32"), atol=1e-6)
    dx = np.einsum("ndhw,cd->nhwc", (want > 0).astype("float32"), w[0, 0])
    np.testing.assert_allclose(res.input_gradient, dx, atol=1e-5)
    print("ok")
    """
)


def _run_on_keras_backend(name: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND_SCRIPT, name],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.both  # needs torch too: runs in the `both` session
def test_capture_on_the_torch_keras_backend():
    _run_on_keras_backend("torch")


@pytest.mark.slow
@pytest.mark.jax  # the tensorflow session installs JAX for this
def test_capture_on_the_jax_keras_backend():
    _run_on_keras_backend("jax")
