"""Gradients on whichever backend Keras runs: the model is left as it was found.

Runs in every session with Keras (TensorFlow, ``keras_jax``, ``keras_torch``),
each on its own backend. The contract suite (``test_contract.py``) checks the
verbs' numbers and the state snapshot on every backend; this file adds what a
backend's own gradient machinery could leave behind: the ReLUs swapped for
guided backpropagation (an instance attribute ``activation`` / ``call``), a
weight's ``.grad`` or ``requires_grad`` on torch, a weight changed through a
stale compiled step on JAX — also when the call raises, or is interrupted
(``KeyboardInterrupt``) half way through.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.backends import get_backend

pytestmark = pytest.mark.keras

keras = pytest.importorskip("keras")


def _state(model):
    """Everything gradients could change: weights, flags, instance attributes of layers."""
    layers = list(model._flatten_layers(include_self=True))
    state = {
        "weights": [np.array(w) for w in model.get_weights()],
        "trainable": [(layer.name, layer.trainable) for layer in layers],
        "patched": [layer.name for layer in layers if "call" in layer.__dict__],
        "activation": [(layer.name, getattr(layer, "activation", None)) for layer in layers],
    }
    if keras.backend.backend() == "torch":
        state["torch"] = [(v.value.requires_grad, v.value.grad is None) for v in model.variables]
    return state


def _same(a, b):
    assert a.keys() == b.keys()
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_array_equal(wa, wb)
    for k in a:
        if k != "weights":
            assert a[k] == b[k], k


def _model():
    inp = keras.Input((8, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(5, 3, name="conv2")(h))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="fc")(h))
    model.get_layer("conv2").trainable = False  # a frozen layer must stay frozen
    return model


X = np.random.default_rng(0).standard_normal((2, 8, 6, 3)).astype(np.float32)


@pytest.mark.parametrize("guided", [False, True, "deconvnet"])
def test_gradients_leave_the_model_as_found(guided):
    model = _model()
    before = _state(model)
    res = get_backend(model).gradients(model, X, ["conv", "relu"], wrt_input=True, guided=guided)
    assert np.abs(res.input_gradient).max() > 0
    _same(before, _state(model))


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_call_that_raises_or_is_interrupted_leaves_the_model_as_found(error):
    model = _model()
    before = _state(model)

    def target(out):  # runs inside the guided pass, after the ReLUs were swapped
        raise error("stop here")

    with pytest.raises(error, match="stop here"):
        get_backend(model).gradients(model, X, ["conv"], target=target, guided=True)
    _same(before, _state(model))
    # and the next call is plain: guided and plain input gradients differ here
    plain = mv.saliency(model, X, 0, normalize=False, aggregation=None)
    guided = mv.guided_backprop(model, X, 0, normalize=False, aggregation=None)
    assert not np.allclose(plain, guided)
    np.testing.assert_allclose(mv.saliency(model, X, 0, normalize=False, aggregation=None), plain)


def test_new_weights_give_new_gradients():
    """A cached compiled step reads the weights on every call (JAX: they are arguments)."""
    model = _model()
    first = get_backend(model).gradients(model, X, ["conv"], target=0).gradients["conv"]
    fc = model.get_layer("fc")
    kernel, bias = fc.get_weights()
    fc.set_weights([2.0 * kernel, bias])
    second = get_backend(model).gradients(model, X, ["conv"], target=0).gradients["conv"]
    np.testing.assert_allclose(second, 2.0 * first, rtol=1e-5, atol=1e-7)


def test_captured_arrays_are_the_users():
    model = _model()
    first = mv.capture(model, X, ["conv", "relu"])
    for value in first.values():
        assert value.flags.writeable and value.flags.c_contiguous
    kept = {k: v.copy() for k, v in first.items()}
    for value in first.values():
        value[...] = -7.0
    again = mv.capture(model, X, ["conv", "relu"])
    for k, v in again.items():
        np.testing.assert_array_equal(v, kept[k])


def test_repeated_captures_give_the_same_arrays_and_follow_new_weights():
    """On JAX a layer set's second capture is jitted: the same numbers, the current weights.

    A 1x1 convolution and a ReLU, by hand in NumPy: ``relu(x @ w + b)``. Three
    captures (the first eager, the others compiled on JAX), then new weights:
    the compiled capture reads the variables' values on every call, so it must
    follow them, not keep the values it was traced with. Every backend runs it.
    """
    rng = np.random.default_rng(0)
    inp = keras.Input((5, 7, 3))
    out = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(4, 1, name="conv")(inp))
    model = keras.Model(inp, out)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)

    def by_hand(w, b):
        return np.moveaxis(np.maximum(np.einsum("nhwc,ck->nhwk", x, w[0, 0]) + b, 0), -1, 1)

    w, b = model.get_layer("conv").get_weights()
    first = mv.capture(model, x, ["conv", "relu"])
    again = [mv.capture(model, x, ["conv", "relu"]) for _ in range(2)]
    for acts in [first, *again]:
        np.testing.assert_allclose(acts["relu"], by_hand(w, b), rtol=1e-5, atol=1e-6)
    again[0]["relu"][:] = -1  # the user's array: writable, shared with no later capture
    np.testing.assert_allclose(again[1]["relu"], by_hand(w, b), rtol=1e-5, atol=1e-6)
    w2, b2 = rng.standard_normal(w.shape).astype(np.float32), np.ones_like(b)
    model.get_layer("conv").set_weights([w2, b2])
    np.testing.assert_allclose(
        mv.capture(model, x, ["conv", "relu"])["relu"], by_hand(w2, b2), rtol=1e-5, atol=1e-6
    )
