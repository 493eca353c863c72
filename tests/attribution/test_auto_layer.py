"""The automatic CAM layer skips a pooling or upsampling layer that only enlarges the map before it.

torchvision's AlexNet and VGG at 64x96 pool a 2x3 map up to 6x6 / 7x7 with
``AdaptiveAvgPool2d``; Grad-CAM there shows nothing the 2x3 map does not. The
same net in both frameworks: conv 3x3 -> ReLU -> max-pool 2 (a 4x6 map) ->
enlarge to 8x12 (PyTorch ``nn.Upsample`` or ``AdaptiveAvgPool2d``; Keras
``UpSampling2D``) -> flatten -> linear. The automatic choice must be the
max-pool's map: the right value is Grad-CAM at the pool written out by hand
(NumPy: the head's weights give the gradient in closed form).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from tests.twins import native

C, H, W, K = 4, 8, 12, 3  # channels, input height/width, classes


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": rng.standard_normal((C, 3, 3, 3)).astype(np.float32) * 0.5,
        "conv_b": rng.standard_normal(C).astype(np.float32) * 0.1,
        "fc_w": rng.standard_normal((K, C * H * W)).astype(np.float32) * 0.1,
        "fc_b": np.zeros(K, np.float32),
    }


def _build(name: str, w: dict[str, np.ndarray], enlarge: str):
    if name == "torch":
        import torch
        from torch import nn

        up = nn.Upsample(scale_factor=2) if enlarge == "upsample" else nn.AdaptiveAvgPool2d((H, W))
        conv, fc = nn.Conv2d(3, C, 3, padding=1), nn.Linear(C * H * W, K)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w["conv_w"]))
            conv.bias.copy_(torch.from_numpy(w["conv_b"]))
            fc.weight.copy_(torch.from_numpy(w["fc_w"]))
            fc.bias.copy_(torch.from_numpy(w["fc_b"]))
        model = nn.Sequential()
        for key, layer in [("conv", conv), ("relu", nn.ReLU()), ("pool", nn.MaxPool2d(2))]:
            model.add_module(key, layer)
        model.add_module("enlarge", up)
        model.add_module("flatten", nn.Flatten())
        model.add_module("fc", fc)
        return model.eval()
    import keras

    inp = keras.Input((H, W, 3))
    y = keras.layers.Conv2D(C, 3, padding="same", name="conv")(inp)
    y = keras.layers.ReLU(name="relu")(y)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    y = keras.layers.UpSampling2D(2, name="enlarge")(y)
    # PyTorch flattens (C, H, W); transpose first so the same fc weights apply
    y = keras.layers.Permute((3, 1, 2), name="to_chw")(y)
    y = keras.layers.Flatten(name="flatten")(y)
    y = keras.layers.Dense(K, name="fc")(y)
    model = keras.Model(inp, y)
    model.get_layer("conv").set_weights([np.transpose(w["conv_w"], (2, 3, 1, 0)), w["conv_b"]])
    model.get_layer("fc").set_weights([w["fc_w"].T, w["fc_b"]])
    return model


def _expected(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Grad-CAM at the max-pool, by hand: nearest-neighbour 2x enlargement, then the linear head."""
    n = len(x)
    pad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, C, H, W))
    for i in range(3):
        for j in range(3):
            conv += np.einsum(
                "oc,nchw->nohw", w["conv_w"][:, :, i, j], pad[:, :, i : i + H, j : j + W]
            )
    conv += w["conv_b"][None, :, None, None]
    pool = np.maximum(conv, 0).reshape(n, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))  # (N, C, 4, 6)
    logits = pool.repeat(2, axis=2).repeat(2, axis=3).reshape(n, -1) @ w["fc_w"].T.astype(
        np.float64
    )
    top = logits.argmax(axis=1)
    # d logit / d enlarged map = the row of fc_w; each pooled unit feeds a 2x2 block
    grad = w["fc_w"][top].reshape(n, C, H, W).astype(np.float64)
    grad = grad.reshape(n, C, H // 2, 2, W // 2, 2).sum(axis=(3, 5))
    cam = np.maximum(np.einsum("nc,nchw->nhw", grad.mean(axis=(2, 3)), pool), 0)
    return cam  # at the pool's resolution (4x6)


@pytest.mark.parametrize("enlarge", ["upsample", "adaptive"])
def test_a_layer_that_only_enlarges_the_map_is_not_chosen(framework, enlarge):
    if framework.name == "keras" and enlarge == "adaptive":
        pytest.skip("Keras has no adaptive pooling layer; UpSampling2D is its enlargement")
    w = _weights()
    x = np.random.default_rng(1).standard_normal((3, 3, H, W)).astype(np.float32)
    model = _build(framework.name, w, enlarge)
    xs = native(framework.name, x)
    auto = mv.grad_cam(model, xs, upsample=False, normalize=False)
    at_pool = mv.grad_cam(model, xs, layer="pool", upsample=False, normalize=False)
    np.testing.assert_allclose(auto, at_pool, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto, _expected(x, w), rtol=1e-4, atol=1e-5)
    assert auto.shape == (3, H // 2, W // 2)  # the enlarged 8x12 map was not taken


@pytest.mark.keras
def test_a_keras_permute_keeps_what_the_axes_are():
    """``Permute((3, 1, 2))`` of a channels-last map *is* that map channels-first.

    Captured, it equals the map before it (which multiviz moves channels-first
    itself), not that map transposed once more; a reordering that is not a
    layout change (rows and columns swapped) comes back as Keras gives it and
    is never taken as a CAM layer.
    """
    keras = pytest.importorskip("keras")
    model = _build("keras", _weights(), "upsample")
    x = native("keras", np.random.default_rng(2).standard_normal((2, 3, H, W)).astype(np.float32))
    acts = mv.capture(model, x, ["enlarge", "to_chw"])
    np.testing.assert_array_equal(acts["to_chw"], acts["enlarge"])  # (N, C, H, W) both
    inp = keras.Input((4, 6, 5))
    odd = keras.Model(inp, keras.layers.Permute((2, 1, 3), name="odd")(inp))
    z = np.random.default_rng(3).standard_normal((1, 4, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(mv.capture(odd, z, "odd")["odd"], np.transpose(z, (0, 2, 1, 3)))
