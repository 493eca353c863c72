"""The same layer, the same layout (issue 12, kind 6): sequences and recurrent states.

A 2-layer bidirectional LSTM, a GRU and a dense head, built with the same
weights in PyTorch and in Keras (``tests/twins.py``; the PyTorch LSTM runs
time first, ``batch_first=False``). Whatever the framework returns them as,
multiviz gives a sequence as ``(N, T, F)`` and recurrent states as
``(N, layers * directions, H)``. Right values: each framework's own call of
the layer, laid out by hand; then the other framework (``mv.compare`` passes
the faithful port, the gradients agree).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.backends import get_backend
from tests.twins import RNN_SIZES, rnn_net, rnn_weights

T, F, H, G = (RNN_SIZES[k] for k in "TFHG")


def _x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, T, F)).astype(np.float32)


@pytest.mark.torch
def test_pytorch_sequences_and_states_come_batch_first():
    import torch

    net, x = rnn_net("torch", rnn_weights()), _x()
    acts = mv.capture(net, x, ["lstm", "gru"])
    assert list(acts) == ["lstm[0]", "lstm[1][0]", "lstm[1][1]", "gru[0]", "gru[1]"]
    with torch.no_grad():
        y, (h, c) = net.lstm(torch.as_tensor(x).transpose(0, 1))  # (T, N, 2H), (4, N, H)
        z, state = net.gru(y.transpose(0, 1))
    np.testing.assert_allclose(acts["lstm[0]"], y.transpose(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts["lstm[1][0]"], h.transpose(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts["lstm[1][1]"], c.transpose(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts["gru[0]"], z.numpy(), atol=1e-6)  # batch_first already
    np.testing.assert_allclose(acts["gru[1]"], state.transpose(0, 1).numpy(), atol=1e-6)
    assert acts["lstm[1][0]"].shape == (2, 4, H)  # (N, layers * directions, H)
    grads = get_backend(net).gradients(net, x, ["lstm", "gru"], target=0)
    assert {k: v.shape for k, v in grads.gradients.items()} == {k: v.shape for k, v in acts.items()}


@pytest.mark.keras
def test_keras_sequences_are_not_transposed_and_states_get_their_axis():
    import keras

    net, x = rnn_net("keras", rnn_weights()), _x()
    acts = mv.capture(net, x, ["bi1", "bi2", "gru"])
    assert list(acts) == ["bi1", "bi2", "gru[0]", "gru[1]"]
    direct = keras.Model(net.input, [net.get_layer("bi2").output, *net.get_layer("gru").output])
    y, z, state = (keras.ops.convert_to_numpy(t) for t in direct(x))
    np.testing.assert_allclose(acts["bi2"], y, atol=1e-6)  # (N, T, 2H), as the layer gives it
    np.testing.assert_allclose(acts["gru[0]"], z, atol=1e-6)
    np.testing.assert_allclose(acts["gru[1]"], state[:, None], atol=1e-6)  # (N, 1, G)
    shapes = {i.name: i.shape for i in mv.layers(net)}
    assert shapes["bi2"] == (None, T, 2 * H) and shapes["gru[1]"] == (None, 1, G)
    grads = get_backend(net).gradients(net, x, ["bi2", "gru"], target=0)
    assert grads.gradients["bi2"].shape == (2, T, 2 * H)
    assert grads.gradients["gru[1]"].shape == (2, 1, G)


@pytest.mark.both
def test_a_faithful_recurrent_port_passes_compare():
    w = rnn_weights()
    tm, km = rnn_net("torch", w), rnn_net("keras", w)
    x = _x(3)
    np.testing.assert_allclose(mv.forward(tm, x), mv.forward(km, x), rtol=1e-5, atol=1e-5)
    pairs = {"lstm[0]": "bi2", "gru[0]": "gru[0]", "gru[1]": "gru[1]", "fc": "fc"}
    report = mv.compare(tm, km, x, pairs)  # (N, T, F) is a sequence in both: not transposed
    assert report.passed, str(report)
    assert [r.shape for r in report.rows] == [(3, T, 2 * H), (3, T, G), (3, 1, G), (3, 2)]
    # the same gradients, laid out the same way, for the same weights
    ga = get_backend(tm).gradients(tm, x, ["gru"], target=1)
    gb = get_backend(km).gradients(km, x, ["gru"], target=1)
    for key in ("gru[0]", "gru[1]"):
        np.testing.assert_allclose(ga.gradients[key], gb.gradients[key], rtol=1e-4, atol=1e-6)
