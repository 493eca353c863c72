"""The multiviz built-in ViT in PyTorch.

The same network as :mod:`multiviz.backends.keras.builtin_vit`, layer for layer
and name for name (see :mod:`multiviz.sources.builtin_vit` for the architecture). Use
:func:`multiviz.builtin_model` with ``arch="vit"`` rather than this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from multiviz.sources.builtin_vit import ViTConfig, check_vit_weights

__all__ = [
    "Attention",
    "Block",
    "ClassTokenPool",
    "Mlp",
    "TokenEmbedding",
    "ViT",
    "build",
    "state_arrays",
]


class TokenEmbedding(nn.Module):
    """``(N, dim, h, w)`` patch map -> ``(N, prefix + h*w, dim)`` tokens.

    Patch tokens come row by row (``h`` outer, ``w`` inner); the class token and
    the register tokens go in front, in that order; the position embedding is
    added to the class and patch tokens, not to the registers (as in timm).
    """

    def __init__(self, dim: int, grid: tuple[int, int], registers: int = 0) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix_tokens = 1 + registers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], dim))
        self.reg_token = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.grid:
            raise ValueError(
                f"This ViT was built for a {self.grid[0]}x{self.grid[1]} patch grid; the input "
                f"gives {x.shape[2]}x{x.shape[3]} patches. Resize the input to the model's size."
            )
        n = x.shape[0]
        x = x.flatten(2).transpose(1, 2)  # (N, h*w, dim), row by row
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1) + self.pos_embed
        if self.reg_token is not None:
            x = torch.cat([x[:, :1], self.reg_token.expand(n, -1, -1), x[:, 1:]], dim=1)
        return x


class Mlp(nn.Module):
    """``fc1 -> act (exact GELU) -> fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """timm-style self-attention: one ``qkv`` linear, fused attention, a ``proj`` linear.

    The attention probabilities are never materialized
    (``F.scaled_dot_product_attention``), as in timm with ``fused_attn``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, eps=config.eps)
        self.attn: nn.Module = (
            nn.MultiheadAttention(config.dim, config.heads, batch_first=True)
            if config.attention == "mha"
            else Attention(config.dim, config.heads)
        )
        self.norm2 = nn.LayerNorm(config.dim, eps=config.eps)
        self.mlp = Mlp(config.dim, config.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if isinstance(self.attn, nn.MultiheadAttention):
            x = x + self.attn(h, h, h, need_weights=False)[0]
        else:
            x = x + self.attn(h)
        return x + self.mlp(self.norm2(x))


class ClassTokenPool(nn.Module):
    """``(N, T, dim) -> (N, dim)``: the class token (token 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class ViT(nn.Module):
    """The built-in ViT: ``(N, 3, H, W)`` images to ``(N, classes)`` logits.

    Attributes:
        config: the :class:`~multiviz.sources.builtin_vit.ViTConfig` it was built from.
    """

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        config = config or ViTConfig()
        self.config = config
        self.patch_embed = nn.Conv2d(3, config.dim, config.patch, stride=config.patch)
        self.tokens = TokenEmbedding(config.dim, config.grid, config.registers)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.eps)
        self.pool = ClassTokenPool()
        self.head = nn.Linear(config.dim, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(self.patch_embed(x))
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(self.norm(x)))


def build(weights: Mapping[str, np.ndarray] | None = None, config: ViTConfig | None = None) -> ViT:
    """Build the network in eval mode, loading PyTorch-layout ``weights`` if given.

    Args:
        weights: ``state_dict`` key -> NumPy array (see
            :func:`multiviz.sources.builtin_vit.vit_weight_shapes`); ``None`` keeps
            PyTorch's random init (with truncated-normal tokens, std 0.02).
        config: the architecture (default: the shipped model's).

    Returns:
        The model, float32, on the CPU, in eval mode.
    """
    config = config or ViTConfig()
    model = ViT(config)
    if weights is None:
        with torch.no_grad():
            for p in (model.tokens.cls_token, model.tokens.pos_embed, model.tokens.reg_token):
                if p is not None:
                    nn.init.trunc_normal_(p, std=0.02)
    else:
        arrays = check_vit_weights(dict(weights), config)
        model.load_state_dict({k: torch.from_numpy(a.copy()) for k, a in arrays.items()})
    return model.eval()


def state_arrays(model: ViT) -> dict[str, np.ndarray]:
    """The model's parameters as PyTorch-layout float32 NumPy arrays (for saving)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
