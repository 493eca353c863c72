"""Deconvnet (Zeiler & Fergus 2014) against a hand-written backward rule, in both frameworks.

A small dense ReLU network: x -> W1 -> ReLU -> W2 -> ReLU -> W3 -> logits. Its
backward pass is written out in NumPy: the deconvnet passes max(g, 0) back
through each ReLU whatever the forward input was; guided backpropagation
passes max(g, 0) only where the unit was active. The weights are drawn so
that some inactive unit receives a positive gradient, so the two rules differ.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

RNG = np.random.default_rng(0)
W1, B1 = RNG.normal(size=(8, 12)), RNG.normal(size=8) * 0.5
W2, B2 = RNG.normal(size=(6, 8)), RNG.normal(size=6) * 0.5
W3, B3 = RNG.normal(size=(3, 6)), np.zeros(3)
X = RNG.normal(size=(4, 1, 2, 6)).astype(np.float32)  # one channel: NCHW and NHWC flatten alike
TARGET = np.array([0, 1, 2, 1])


def reference(rule: str) -> np.ndarray:
    """d logit[target] / d x with the rule's ReLU backward, by hand."""
    out = []
    for x, t in zip(X.reshape(4, -1).astype(np.float64), TARGET, strict=True):
        z1 = W1 @ x + B1
        z2 = W2 @ np.maximum(z1, 0) + B2
        g = W3[t]  # d logit_t / d relu(z2)
        g = np.maximum(g, 0) * (1.0 if rule == "deconvnet" else (z2 > 0))
        g = W2.T @ g
        g = np.maximum(g, 0) * (1.0 if rule == "deconvnet" else (z1 > 0))
        out.append(W1.T @ g)
    return np.array(out).reshape(X.shape)


def test_the_two_rules_differ_on_this_network():
    assert np.abs(reference("deconvnet") - reference("guided")).max() > 0.1


@pytest.mark.torch
def test_torch_deconvnet_matches_the_hand_written_rule():
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)
    )
    with torch.no_grad():
        for layer, (w, b) in zip(model[1::2], ((W1, B1), (W2, B2), (W3, B3)), strict=True):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    model.eval()
    got = mv.deconvnet(model, X, TARGET, normalize=False)
    np.testing.assert_allclose(got, reference("deconvnet"), rtol=1e-5, atol=1e-5)
    guided = mv.guided_backprop(model, X, TARGET, normalize=False)
    np.testing.assert_allclose(guided, reference("guided"), rtol=1e-5, atol=1e-5)
    assert mv.deconvnet(model, X, TARGET, aggregation="max_abs").shape == (4, 2, 6)


@pytest.mark.keras
def test_keras_deconvnet_matches_the_hand_written_rule():
    import keras

    inputs = keras.Input((2, 6, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(8, activation="relu", name="d1")(h)
    h = keras.layers.Dense(6, name="d2")(h)
    h = keras.layers.ReLU()(h)  # a ReLU layer and a fused activation: both follow the rule
    outputs = keras.layers.Dense(3, name="d3")(h)
    model = keras.Model(inputs, outputs)
    for name, (w, b) in zip(("d1", "d2", "d3"), ((W1, B1), (W2, B2), (W3, B3)), strict=True):
        model.get_layer(name).set_weights([w.T, b])
    x = mv.to_channels_last(X)
    got = mv.deconvnet(model, x, TARGET, normalize=False)
    np.testing.assert_allclose(got, reference("deconvnet"), rtol=1e-5, atol=1e-5)
    guided = mv.guided_backprop(model, x, TARGET, normalize=False)
    np.testing.assert_allclose(guided, reference("guided"), rtol=1e-5, atol=1e-5)
