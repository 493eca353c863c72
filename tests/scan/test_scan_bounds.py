"""Saturation is read off the layer: bounded activations in both frameworks, fused ones in Keras.

The expected fractions are counted by hand on the captured arrays with the
definition (within 1e-3 * max(1, |b|) of a bound b).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv


def _saturated(a: np.ndarray, bounds: tuple[float, ...]) -> float:
    return float(sum(np.abs(a - b) <= 1e-3 * max(1.0, abs(b)) for b in bounds).mean())


@pytest.mark.torch
def test_torch_bounded_activations_report_their_bounds_and_saturation():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU6(),
        nn.Conv2d(4, 2, 1),
        nn.Sigmoid(),
        nn.Conv2d(2, 2, 1),
        nn.Tanh(),
        nn.ReLU(),
    ).eval()
    with torch.no_grad():
        model[0].weight.mul_(20.0)  # push many values past 6
        model[2].weight.mul_(10.0)
    infos = {i.name: i for i in mv.layers(model)}
    assert infos["1"].bounds == (6.0,) and infos["3"].bounds == (0.0, 1.0)
    assert infos["5"].bounds == (-1.0, 1.0) and infos["6"].bounds is None
    assert infos["0"].kernel == (3, 3) and infos["0"].padding == ((0, 0), (0, 0))
    x = torch.rand(4, 3, 9, 10)
    acts = mv.capture(model, x)
    report = mv.layer_stats(acts)
    for name, bounds in (("1", (6.0,)), ("3", (0.0, 1.0)), ("5", (-1.0, 1.0))):
        assert report[name].saturated_fraction == pytest.approx(_saturated(acts[name], bounds))
    assert report["1"].saturated_fraction > 0.01  # some values reach 6
    assert np.isnan(report["6"].saturated_fraction) and np.isnan(report["0"].saturated_fraction)
    scan = mv.scan(model, x, ["1"], progress=False)
    per_channel = [_saturated(acts["1"][:, c], (6.0,)) for c in range(4)]
    np.testing.assert_allclose(scan.stats("1").saturated_fraction, per_channel)


@pytest.mark.keras
def test_keras_fused_activation_is_recognised():
    import keras

    inputs = keras.Input((9, 10, 3))
    h = keras.layers.Conv2D(
        4, 3, activation="relu6", name="c6", kernel_initializer=keras.initializers.Constant(0.5)
    )(inputs)
    h = keras.layers.Dense(3, activation="sigmoid", name="d")(h)
    h = keras.layers.ReLU(max_value=6.0, name="r6")(h)
    out = keras.layers.Conv2D(2, 1, strides=2, padding="same", name="plain")(h)
    model = keras.Model(inputs, out)
    infos = {i.name: i for i in mv.layers(model)}
    assert infos["c6"].bounds == (6.0,) and infos["d"].bounds == (0.0, 1.0)
    assert infos["r6"].bounds == (6.0,) and infos["plain"].bounds is None
    assert infos["plain"].stride == (2, 2) and infos["plain"].padding == "same"
    x = np.random.default_rng(0).random((3, 9, 10, 3)).astype(np.float32) * 3
    acts = mv.capture(model, x)
    report = mv.layer_stats(acts)
    assert report["c6"].saturated_fraction == pytest.approx(_saturated(acts["c6"], (6.0,)))
    assert report["c6"].saturated_fraction > 0.5  # 27 inputs * 0.5 * up to 3: mostly past 6
    assert np.isnan(report["plain"].saturated_fraction)
