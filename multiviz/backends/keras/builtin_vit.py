"""The multiviz built-in ViT in Keras 3.

The same network as :mod:`multiviz.backends.torch.builtin_vit`, layer for layer
and name for name (see :mod:`multiviz.sources.builtin_vit`), channels-last input, as a
Functional model of Keras's own layers — ``Conv2D``, ``LayerNormalization``,
``MultiHeadAttention``, ``Dense``, ``Add`` — and two small layers of ours:
:class:`TokenEmbedding` and :class:`ClassTokenPool`. The residual sums are
``Add`` layers named ``blocks.{i}.add`` (after attention) and ``blocks.{i}``
(the block's output, the same tensor as PyTorch's ``blocks.{i}`` module).
Weights are stored once, in PyTorch layout; :func:`build` converts them. Use
:func:`multiviz.builtin_model` with ``arch="vit"`` rather than this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from multiviz.sources.builtin_vit import ViTConfig, check_vit_weights

__all__ = ["ClassTokenPool", "TokenEmbedding", "build"]


@keras.saving.register_keras_serializable(package="multiviz")
class TokenEmbedding(keras.layers.Layer):
    """``(N, h, w, dim)`` patch map -> ``(N, prefix + h*w, dim)`` tokens.

    Patch tokens row by row; the class token and the register tokens in front;
    the position embedding added to the class and patch tokens (timm's
    order). Weights: ``cls_token`` ``(1, 1, dim)``, ``pos_embed``
    ``(1, 1 + h*w, dim)``, ``reg_token`` ``(1, registers, dim)`` if any.

    Attributes:
        grid: ``(h, w)``, the patch grid.
        num_prefix_tokens: ``1 + registers``.
    """

    def __init__(self, grid: tuple[int, int], registers: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid = (int(grid[0]), int(grid[1]))
        self.registers = int(registers)
        self.num_prefix_tokens = 1 + self.registers

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        h, w = self.grid
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.cls_token = self.add_weight(shape=(1, 1, dim), initializer=init, name="cls_token")
        self.pos_embed = self.add_weight(
            shape=(1, 1 + h * w, dim), initializer=init, name="pos_embed"
        )
        self.reg_token = (
            self.add_weight(shape=(1, self.registers, dim), initializer=init, name="reg_token")
            if self.registers
            else None
        )

    def call(self, x):
        ops = keras.ops
        n = ops.shape(x)[0]
        h, w = self.grid
        dim = ops.shape(x)[-1]
        x = ops.reshape(x, (n, h * w, dim))  # row by row, as torch's flatten(2)
        cls = ops.broadcast_to(self.cls_token, (n, 1, dim))
        x = ops.concatenate([cls, x], axis=1) + self.pos_embed
        if self.reg_token is not None:
            reg = ops.broadcast_to(self.reg_token, (n, self.registers, dim))
            x = ops.concatenate([x[:, :1], reg, x[:, 1:]], axis=1)
        return x

    def compute_output_shape(self, input_shape):
        h, w = self.grid
        return (input_shape[0], self.num_prefix_tokens + h * w, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "grid": list(self.grid), "registers": self.registers}


@keras.saving.register_keras_serializable(package="multiviz")
class ClassTokenPool(keras.layers.Layer):
    """``(N, T, dim) -> (N, dim)``: the class token (token 0)."""

    def call(self, x):
        return x[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def build(
    weights: Mapping[str, np.ndarray] | None = None, config: ViTConfig | None = None
) -> keras.Model:
    """Build the Functional model, loading PyTorch-layout ``weights`` if given.

    Input ``(N, H, W, 3)`` channels-last at the config's image size; output
    ``(N, classes)`` logits (no softmax).

    Args:
        weights: PyTorch ``state_dict`` key -> NumPy array (see
            :func:`multiviz.sources.builtin_vit.vit_weight_shapes`); ``None`` keeps
            Keras's random init.
        config: the architecture (default: the shipped model's).

    Returns:
        The ``keras.Model`` (call it with ``training=False``, the default).
    """
    config = config or ViTConfig()
    d, eps = config.dim, config.eps
    inputs = keras.Input(shape=(*config.image_size, 3), name="image")
    x = keras.layers.Conv2D(d, config.patch, strides=config.patch, name="patch_embed")(inputs)
    x = TokenEmbedding(config.grid, config.registers, name="tokens")(x)
    for i in range(config.depth):
        b = f"blocks.{i}"
        h = keras.layers.LayerNormalization(epsilon=eps, name=f"{b}.norm1")(x)
        h = keras.layers.MultiHeadAttention(config.heads, d // config.heads, name=f"{b}.attn")(h, h)
        x = keras.layers.Add(name=f"{b}.add")([x, h])
        h = keras.layers.LayerNormalization(epsilon=eps, name=f"{b}.norm2")(x)
        h = keras.layers.Dense(config.mlp, name=f"{b}.mlp.fc1")(h)
        h = keras.layers.Activation("gelu", name=f"{b}.mlp.act")(h)  # exact (erf) GELU
        h = keras.layers.Dense(d, name=f"{b}.mlp.fc2")(h)
        x = keras.layers.Add(name=b)([x, h])
    x = keras.layers.LayerNormalization(epsilon=eps, name="norm")(x)
    x = ClassTokenPool(name="pool")(x)
    outputs = keras.layers.Dense(config.classes, name="head")(x)
    model = keras.Model(inputs, outputs, name="multiviz_builtin_vit")
    if weights is not None:
        _load(model, check_vit_weights(dict(weights), config), config)
    return model


def _load(model: keras.Model, w: dict[str, np.ndarray], config: ViTConfig) -> None:
    d, heads = config.dim, config.heads
    hd = d // heads

    def dense(name: str) -> list[np.ndarray]:
        return [w[f"{name}.weight"].T, w[f"{name}.bias"]]

    def norm(name: str) -> list[np.ndarray]:
        return [w[f"{name}.weight"], w[f"{name}.bias"]]

    model.get_layer("patch_embed").set_weights(
        [w["patch_embed.weight"].transpose(2, 3, 1, 0), w["patch_embed.bias"]]
    )
    tokens = [w["tokens.cls_token"], w["tokens.pos_embed"]]
    if config.registers:
        tokens.append(w["tokens.reg_token"])
    model.get_layer("tokens").set_weights(tokens)
    for i in range(config.depth):
        b = f"blocks.{i}"
        for part in ("norm1", "norm2"):
            model.get_layer(f"{b}.{part}").set_weights(norm(f"{b}.{part}"))
        fused = "in_proj_weight" if config.attention == "mha" else "qkv.weight"
        w_in = w[f"{b}.attn.{fused}"]
        b_in = w[f"{b}.attn.{fused.replace('weight', 'bias')}"]
        mha = []
        for k in range(3):  # query, key, value: rows k*d:(k+1)*d, head by head
            rows = slice(k * d, (k + 1) * d)
            mha += [w_in[rows].T.reshape(d, heads, hd), b_in[rows].reshape(heads, hd)]
        out = "out_proj" if config.attention == "mha" else "proj"
        w_out = w[f"{b}.attn.{out}.weight"]  # (d, heads*hd)
        mha += [w_out.T.reshape(heads, hd, d), w[f"{b}.attn.{out}.bias"]]
        model.get_layer(f"{b}.attn").set_weights(mha)
        model.get_layer(f"{b}.mlp.fc1").set_weights(dense(f"{b}.mlp.fc1"))
        model.get_layer(f"{b}.mlp.fc2").set_weights(dense(f"{b}.mlp.fc2"))
    model.get_layer("norm").set_weights(norm("norm"))
    model.get_layer("head").set_weights(dense("head"))
