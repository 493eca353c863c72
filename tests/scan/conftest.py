"""Shared pieces of the scan tests: small data, brute-force references, the planted unit."""

from __future__ import annotations

import numpy as np
import pytest


def unit_patches(maps: np.ndarray) -> np.ndarray:
    """3x3 'same' patches of ``(N, C, H, W)`` maps as ``(N, H*W, C*9)``, OIHW order (c, dy, dx)."""
    n, c, h, w = maps.shape
    q = np.pad(maps, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([q[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], 2)
    return cols.reshape(n, c * 9, h * w).transpose(0, 2, 1)


def fit_planted_filters(relu3: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> tuple:
    """One 3x3 filter per shape class on the built-in CNN's relu3 maps (64 x 16 x 16).

    Ridge regression, closed form: a unit at (i, j) of the 16x16 grid should
    output 1 where the pixel at its receptive field's centre (4i+2, 4j+2)
    lies on a shape of the class, 0 elsewhere. Returns OIHW weights
    ``(4, 64, 3, 3)`` and biases ``(4,)``.
    """
    x = unit_patches(relu3.astype(np.float64)).reshape(-1, 64 * 9)
    centre = masks[:, 2::4, 2::4].reshape(len(masks), -1)  # (N, 256)
    y = np.stack([(centre & (labels[:, None] == c)).reshape(-1) for c in range(4)], 1)
    a = np.hstack([x, np.ones((len(x), 1))])
    coef = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ y.astype(np.float64))
    weights = coef[:-1].T.reshape(4, 64, 3, 3).astype(np.float32)
    return weights, coef[-1].astype(np.float32)


@pytest.fixture(scope="session")
def planted_filters():
    """The planted filters, fitted on a training split no scan test reads (seed 11)."""
    torch = pytest.importorskip("torch")
    import multiviz as mv

    model = mv.builtin_model("torch")
    train = mv.shapes_dataset(512, seed=11)
    relu3 = mv.capture(model, torch.from_numpy(train.images), ["relu3"])["relu3"]
    return fit_planted_filters(relu3, train.masks, train.labels)


def planted_torch(weights: np.ndarray, bias: np.ndarray):
    """The built-in CNN up to relu3, then ``planted``: a 3x3 conv with the planted filters."""
    from collections import OrderedDict

    import torch
    from torch import nn

    import multiviz as mv

    base = mv.builtin_model("torch")
    conv = nn.Conv2d(64, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights))
        conv.bias.copy_(torch.from_numpy(bias))
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3"]
    return nn.Sequential(
        OrderedDict([*((n, getattr(base, n)) for n in names), ("planted", conv)])
    ).eval()


def planted_keras(weights: np.ndarray, bias: np.ndarray):
    """The same network in Keras (HWIO kernel)."""
    import keras

    import multiviz as mv

    base = mv.builtin_model("keras")
    layer = keras.layers.Conv2D(4, 3, padding="same", name="planted")
    out = layer(base.get_layer("relu3").output)
    model = keras.Model(base.inputs, out, name="planted_cnn")
    layer.set_weights([np.transpose(weights, (2, 3, 1, 0)), bias])
    return model


@pytest.fixture(scope="session")
def planted_torch_model(planted_filters):
    """The planted network in PyTorch."""
    return planted_torch(*planted_filters)


@pytest.fixture(scope="session")
def planted_keras_model(planted_filters):
    """The planted network in Keras."""
    return planted_keras(*planted_filters)
