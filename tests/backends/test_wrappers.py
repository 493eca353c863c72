"""Layers inside Keras wrappers are addressable (issue 12, kind 7).

A functional per-frame CNN inside ``TimeDistributed`` (then an LSTM): its
layers are listed as ``td/fconv``... and captured as ``(N, T, C, H, W)``. The
right value: the per-frame CNN run by hand on the frames ``x.reshape(N*T,
...)``, laid out in NumPy; and the same convolution in PyTorch with the same
weights. ``Bidirectional``'s forward and backward layers are addressable too,
checked against the same LSTM run alone.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

pytestmark = pytest.mark.keras

N, T, S = 2, 5, 8  # batch, time steps, frame size


def _model():
    import keras

    frame = keras.Input((S, S, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="fconv")(frame)
    h = keras.layers.ReLU(name="frelu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="fgap")(h)
    cnn = keras.Model(frame, h, name="cnn")
    inp = keras.Input((T, S, S, 3))
    y = keras.layers.TimeDistributed(cnn, name="td")(inp)
    y = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="bi")(y)
    y = keras.layers.LSTM(3, name="lstm")(y)
    return keras.Model(inp, keras.layers.Dense(2, name="fc")(y)), cnn


def _x() -> np.ndarray:
    return np.random.default_rng(0).random((N, T, S, S, 3)).astype(np.float32)


def test_layers_inside_time_distributed_are_listed_and_captured():
    import keras

    model, cnn = _model()
    listed = {i.name: i.shape for i in mv.layers(model)}
    assert listed["td/fconv"] == (None, T, 4, S, S) and listed["td/fgap"] == (None, T, 4)
    x = _x()
    acts = mv.capture(model, x, ["td/fconv", "td/frelu", "td"])
    # by hand: the per-frame CNN on the N*T frames, back to (N, T, C, H, W)
    inner = keras.Model(cnn.input, cnn.get_layer("fconv").output)
    frames = keras.ops.convert_to_numpy(inner(x.reshape(N * T, S, S, 3)))  # (N*T, S, S, 4)
    want = np.moveaxis(frames, -1, 1).reshape(N, T, 4, S, S)
    np.testing.assert_allclose(acts["td/fconv"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["td/frelu"], np.maximum(want, 0), rtol=1e-5, atol=1e-6)
    assert acts["td"].shape == (N, T, 4)  # the wrapper itself: a sequence
    # statistics count each time step as a sample; a picture asks for a time step
    rec = mv.layer_stats(acts)["td/fconv"]
    assert rec.samples == N * T and rec.shape == (4, S, S)
    np.testing.assert_allclose(
        [rec.mean, rec.min, rec.max], [want.mean(), want.min(), want.max()], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(mv.InputShapeError, match=r"Pick a time step"):
        mv.plot_feature_maps(acts["td/fconv"])
    assert len(mv.plot_feature_maps(acts["td/fconv"][:, 2]).axes) >= 1


@pytest.mark.both
def test_time_distributed_maps_match_pytorch_frame_by_frame():
    import torch

    model, _ = _model()
    kernel, bias = model.get_layer("td").layer.get_layer("fconv").get_weights()
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1))))
        conv.bias.copy_(torch.from_numpy(bias))
    x = _x()
    frames = np.moveaxis(x.reshape(N * T, S, S, 3), -1, 1)  # (N*T, 3, S, S)
    torch_maps = mv.capture(torch.nn.Sequential(conv).eval(), frames, ["0"])["0"]
    got = mv.capture(model, x, ["td/fconv"])["td/fconv"]
    np.testing.assert_allclose(got, torch_maps.reshape(N, T, 4, S, S), rtol=1e-5, atol=1e-5)


def test_bidirectional_forward_and_backward_layers_are_addressable():
    import keras

    model, _ = _model()
    bi = model.get_layer("bi")
    fwd, bwd = f"bi/{bi.forward_layer.name}", f"bi/{bi.backward_layer.name}"
    assert {fwd, bwd} <= {i.name for i in mv.layers(model)}
    x = _x()
    acts = mv.capture(model, x, [fwd, bwd, "td", "bi"])
    seq = acts["td"]  # (N, T, 4): what bi receives
    np.testing.assert_allclose(
        acts[fwd], keras.ops.convert_to_numpy(bi.forward_layer(seq)), rtol=1e-5, atol=1e-6
    )
    back = keras.ops.convert_to_numpy(
        bi.backward_layer(seq)
    )  # reversed in time, as the layer returns it
    np.testing.assert_allclose(acts[bwd], back, rtol=1e-5, atol=1e-6)
    # Bidirectional concatenates forward and the backward flipped back in time
    merged = np.concatenate([acts[fwd], back[:, ::-1]], axis=-1)
    np.testing.assert_allclose(acts["bi"], merged, rtol=1e-5, atol=1e-6)
    assert keras.ops.shape(acts["bi"]) == (N, T, 12)


def test_an_unknown_number_of_time_steps_is_explained():
    import keras

    frame = keras.Input((S, S, 3))
    cnn = keras.Model(frame, keras.layers.Conv2D(2, 3, name="fconv")(frame))
    inp = keras.Input((None, S, S, 3))
    model = keras.Model(inp, keras.layers.TimeDistributed(cnn, name="td")(inp))
    with pytest.raises(mv.LayerNotFoundError) as info:
        mv.capture(model, _x(), ["td/fconv"])
    text = str(info.value)
    assert "TimeDistributed" in text and "time steps" in text and "'td'" in text
