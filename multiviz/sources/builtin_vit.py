"""The multiviz built-in ViT: a tiny vision transformer that ships with the package.

"multiviz built-in ViT" classifies the images of :mod:`multiviz.sources.shapes_dataset`
(circle, square, triangle, cross), like the built-in CNN, and is defined
identically in PyTorch and Keras 3 (our own code, no model hub), with the same
layer names —

    patch_embed → tokens → blocks.{i}.{norm1, attn, norm2, mlp.fc1, mlp.act, mlp.fc2} → norm → pool → head

``patch_embed`` is a ``patch x patch`` convolution with stride ``patch`` (a
64x64 image becomes an 8x8 grid of 8-pixel patches); ``tokens`` flattens the
grid row by row into patch tokens, puts the class token (and any register
tokens, Darcet et al. 2024) in front and adds the learned position embedding
to the class and patch tokens; each of the ``depth`` pre-norm blocks is
``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` with multi-head
self-attention (``nn.MultiheadAttention`` / Keras ``MultiHeadAttention``) and
a GELU MLP; ``pool`` takes the class token after the final ``norm``; ``head``
gives 4 logits (no softmax). Token layers output ``(N, prefix + h*w, dim)``
tokens in the order ``[class, registers…, patches row by row]`` (timm's
order). The trained weights are one framework-neutral file,
``multiviz/data/builtin_vit.npz``, in PyTorch layout, read with
``allow_pickle=False``; ``scripts/train_builtin_vit.py`` wrote them.

This module imports no framework.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["VIT_WEIGHTS_PATH", "ViTConfig", "check_vit_weights", "vit_weight_shapes", "vit_weights"]

#: Where the shipped weights live.
VIT_WEIGHTS_PATH: Path = Path(__file__).parent.parent / "data" / "builtin_vit.npz"


@dataclass(frozen=True)
class ViTConfig:
    """The shape of a built-in-style ViT.

    Attributes:
        image_size: input ``(H, W)`` in pixels; each a multiple of ``patch``.
        patch: patch side in pixels (the patch embedding's kernel and stride).
        dim: token width.
        depth: number of transformer blocks.
        heads: attention heads (``dim`` must be a multiple).
        mlp: hidden width of each block's MLP.
        classes: output logits.
        registers: register tokens after the class token (no position embedding).
        eps: LayerNorm epsilon (both frameworks).
        attention: the PyTorch attention module: ``"mha"`` (``nn.MultiheadAttention``,
            weights ``in_proj_weight``/``out_proj``) or ``"qkv"`` (timm-style: a
            ``qkv`` and a ``proj`` linear, ``F.scaled_dot_product_attention``).
            The Keras model is the same either way.

    Example:
        >>> ViTConfig().grid, ViTConfig().prefix
        ((8, 8), 1)
    """

    image_size: tuple[int, int] = (64, 64)
    patch: int = 8
    dim: int = 32
    depth: int = 4
    heads: int = 4
    mlp: int = 64
    classes: int = 4
    registers: int = 0
    eps: float = 1e-6
    attention: str = "mha"

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.image_size)
        object.__setattr__(self, "image_size", (h, w))
        if self.patch < 1 or h % self.patch or w % self.patch:
            raise ValueError(
                f"`image_size` must be multiples of `patch`. Received: image_size={(h, w)}, "
                f"patch={self.patch}"
            )
        if self.attention not in ("mha", "qkv"):
            raise ValueError(
                f"`attention` must be 'mha' or 'qkv'. Received: attention={self.attention!r}"
            )
        if self.dim % self.heads:
            raise ValueError(
                f"`dim` must be a multiple of `heads`. Received: dim={self.dim}, heads={self.heads}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """Patch tokens per column and per row: ``(H // patch, W // patch)``."""
        return self.image_size[0] // self.patch, self.image_size[1] // self.patch

    @property
    def prefix(self) -> int:
        """Tokens before the patch tokens: the class token and the registers."""
        return 1 + self.registers

    def to_dict(self) -> dict:
        """JSON-ready fields (``image_size`` as a list)."""
        out = asdict(self)
        out["image_size"] = list(self.image_size)
        return out


def vit_weight_shapes(config: ViTConfig | None = None) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape in PyTorch layout (conv OIHW, linear (out, in)).

    Names are the PyTorch model's ``state_dict`` keys; the Keras model's layers
    carry the same names before the last dot.

    Example:
        >>> shapes = vit_weight_shapes()
        >>> shapes["patch_embed.weight"], shapes["tokens.pos_embed"], shapes["blocks.0.attn.in_proj_weight"]
        ((32, 3, 8, 8), (1, 65, 32), (96, 32))
    """
    config = config or ViTConfig()
    c, d, m = config.dim, config.dim, config.mlp
    h, w = config.grid
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.weight": (c, 3, config.patch, config.patch),
        "patch_embed.bias": (c,),
        "tokens.cls_token": (1, 1, d),
        "tokens.pos_embed": (1, 1 + h * w, d),
    }
    if config.registers:
        shapes["tokens.reg_token"] = (1, config.registers, d)
    for i in range(config.depth):
        b = f"blocks.{i}"
        shapes |= {
            f"{b}.norm1.weight": (d,),
            f"{b}.norm1.bias": (d,),
            **_attention_shapes(f"{b}.attn", d, config.attention),
            f"{b}.norm2.weight": (d,),
            f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (m, d),
            f"{b}.mlp.fc1.bias": (m,),
            f"{b}.mlp.fc2.weight": (d, m),
            f"{b}.mlp.fc2.bias": (d,),
        }
    shapes |= {
        "norm.weight": (d,),
        "norm.bias": (d,),
        "head.weight": (config.classes, d),
        "head.bias": (config.classes,),
    }
    return shapes


def _attention_shapes(prefix: str, d: int, attention: str) -> dict[str, tuple[int, ...]]:
    w_in, b_in, w_out, b_out = (
        ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
        if attention == "mha"
        else ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")
    )
    return {
        f"{prefix}.{w_in}": (3 * d, d),
        f"{prefix}.{b_in}": (3 * d,),
        f"{prefix}.{w_out}": (d, d),
        f"{prefix}.{b_out}": (d,),
    }


def vit_weights(weights: str | os.PathLike = "builtin") -> dict[str, np.ndarray]:
    """The built-in ViT's parameters, PyTorch layout, from the shipped file or an ``.npz``.

    Raises:
        WeightsFileError: the file is missing, unreadable, or does not fit.

    Example:
        >>> vit_weights()["blocks.0.attn.in_proj_weight"].shape
        (96, 32)
    """
    from multiviz.errors import WeightsFileError
    from multiviz.sources.builtin import _open

    path = VIT_WEIGHTS_PATH if str(weights) == "builtin" else Path(weights)
    with _open(path) as npz:
        try:
            arrays = {k: np.asarray(npz[k], np.float32) for k in npz.files if k != "meta"}
        except (ValueError, TypeError) as err:  # object arrays need pickle: refused
            raise WeightsFileError(
                f"{str(path)!r} holds arrays that are not plain numbers."
            ) from err
    try:
        return check_vit_weights(arrays, ViTConfig())
    except ValueError as err:
        raise WeightsFileError(
            f"{str(path)!r} does not hold the built-in ViT's weights: {err}"
        ) from err


def check_vit_weights(weights: dict[str, np.ndarray], config: ViTConfig) -> dict[str, np.ndarray]:
    """``weights`` as float32 arrays, checked against :func:`vit_weight_shapes`.

    Raises:
        ValueError: a parameter is missing or has the wrong shape (all listed).

    Example:
        >>> cfg = ViTConfig(depth=1)
        >>> w = {k: np.zeros(s) for k, s in vit_weight_shapes(cfg).items()}
        >>> check_vit_weights(w, cfg)["head.bias"].dtype
        dtype('float32')
    """
    shapes = vit_weight_shapes(config)
    missing = [k for k in shapes if k not in weights]
    arrays = {k: np.asarray(weights[k], np.float32) for k in shapes if k in weights}
    wrong = {k: a.shape for k, a in arrays.items() if a.shape != shapes[k]}
    if missing or wrong:
        raise ValueError(
            f"ViT weights do not fit {config}: missing {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, wrong shapes {wrong} "
            f"(expected { ({k: shapes[k] for k in wrong}) })."
        )
    return arrays
