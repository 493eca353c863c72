"""The multiviz built-in CNN in Keras 3.

The same network as :mod:`multiviz.backends.torch.builtin`, layer for layer and
name for name, channels-last. Weights are stored once, in PyTorch layout;
:func:`build` converts them (conv OIHW -> HWIO, dense (out, in) -> (in, out)).
Use :func:`multiviz.builtin_model` rather than this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

__all__ = ["build"]

_CONVS = (("conv1", 16), ("conv2", 32), ("conv3", 64))


def build(weights: Mapping[str, np.ndarray] | None = None, num_classes: int = 4) -> keras.Model:
    """Build the Functional model, loading PyTorch-layout ``weights`` if given.

    Input ``(N, H, W, 3)`` channels-last with any ``H, W`` of at least 4;
    output ``(N, 4)`` logits (no softmax). Layer names match the PyTorch
    version: conv1, relu1, pool1, conv2, relu2, pool2, conv3, relu3, gap, fc.

    Args:
        weights: ``"conv1.weight"`` (OIHW), ``"conv1.bias"``, …, ``"fc.weight"``
            ((out, in)) -> NumPy array; ``None`` keeps Keras's random init.

    Returns:
        The ``keras.Model`` (call it with ``training=False``, the default).
    """
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = inputs
    for k, (name, filters) in enumerate(_CONVS, start=1):
        # 3x3, stride 1, "same": one pixel of zero padding on every side, as in torch
        x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
        x = keras.layers.ReLU(name=f"relu{k}")(x)
        if k < len(_CONVS):
            x = keras.layers.MaxPooling2D(2, 2, name=f"pool{k}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    model = keras.Model(inputs, outputs, name="multiviz_builtin_cnn")
    if weights is not None:
        for name, _ in _CONVS:
            kernel = np.transpose(np.asarray(weights[f"{name}.weight"], np.float32), (2, 3, 1, 0))
            model.get_layer(name).set_weights([kernel, np.asarray(weights[f"{name}.bias"])])
        model.get_layer("fc").set_weights(
            [np.asarray(weights["fc.weight"], np.float32).T, np.asarray(weights["fc.bias"])]
        )
    return model
