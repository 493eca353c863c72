"""Self-attention layers of a PyTorch model: their weights, inputs and output gradients.

What attention rollout needs (:mod:`multiviz.attribution.rollout_math`): for
every self-attention module, its projections in one canonical form, the
tokens it was given, and — for the gradient method — the gradient of the
target score at its output. The probabilities themselves are recomputed from
these in NumPy, so fused kernels (``F.scaled_dot_product_attention``, timm's
``fused_attn``, ``need_weights=False``) do not matter.

Readable: ``nn.MultiheadAttention`` with one packed ``in_proj_weight``, and
timm-style attention (a ``qkv`` linear, ``num_heads``, ``scale``, optional
``q_norm``/``k_norm`` LayerNorms, a ``proj`` linear). Window attention (Swin)
attends within shifted windows, not over the image's tokens: rollout is not
defined for it and it raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.torch.capture import capture_outputs
from multiviz.backends.torch.gradients import compute_gradients
from multiviz.backends.torch.tokens import attention_modules
from multiviz.core.attention import AttentionIO, AttentionWeights
from multiviz.errors import UnsupportedAttentionError

__all__ = ["attention_io", "read_attention"]


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().double().numpy()


def _layer_norm(norm: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray | None, float] | None:
    if isinstance(norm, nn.Identity):
        return None
    if isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) == 1:
        gamma = _np(norm.weight) if norm.weight is not None else np.ones(norm.normalized_shape)
        return gamma, _np(norm.bias), float(norm.eps)
    raise UnsupportedAttentionError(
        f"{where} normalizes q/k with {type(norm).__name__}; attention rollout recomputes "
        "attention with an nn.LayerNorm or no q/k norm only."
    )


def read_attention(name: str, module: nn.Module) -> AttentionWeights:
    """The canonical weights of one attention module.

    Raises:
        UnsupportedAttentionError: window attention, or an attention module
            whose computation is not ``softmax(q k^T * scale) v`` with readable
            projections (the message says which part).

    Example:
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> read_attention("attn", mha).wq.shape
        (8, 2, 4)
    """
    cls = type(module).__name__
    where = f"Attention layer {name!r} ({cls})"
    if "Window" in cls or hasattr(module, "window_size"):
        raise UnsupportedAttentionError(
            f"{where} is window attention (as in Swin): each token attends within its local "
            "window only, so attention rollout over the image's tokens is not defined for it."
            "\nhint: use a CAM method (mv.grad_cam) on this model instead."
        )
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise UnsupportedAttentionError(
                f"{where}: separate q/k/v projections, bias_k/bias_v or add_zero_attn are not "
                "supported by attention rollout."
            )
        return AttentionWeights.from_fused(
            _np(module.in_proj_weight),
            _np(module.in_proj_bias),
            _np(module.out_proj.weight),
            module.num_heads,
        )
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    if isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and hasattr(module, "num_heads"):
        extra = [
            part
            for part in ("norm", "gate", "rope")
            if getattr(module, part, None) is not None
            and not isinstance(getattr(module, part), nn.Identity)
        ]
        if extra or qkv.out_features != 3 * proj.in_features:
            raise UnsupportedAttentionError(
                f"{where} has {extra or 'a qkv projection of another width'}; attention rollout "
                "supports softmax(q k^T * scale) v followed by the output projection only."
            )
        heads = int(module.num_heads)
        return AttentionWeights.from_fused(
            _np(qkv.weight),
            _np(qkv.bias),
            _np(proj.weight),
            heads,
            scale=float(getattr(module, "scale", (proj.in_features // heads) ** -0.5)),
            q_norm=_layer_norm(getattr(module, "q_norm", nn.Identity()), where),
            k_norm=_layer_norm(getattr(module, "k_norm", nn.Identity()), where),
        )
    raise UnsupportedAttentionError(
        f"{where}: attention rollout reads nn.MultiheadAttention and timm-style attention "
        "(qkv, num_heads, proj) only."
    )


class _Inputs:
    """Forward pre-hooks keeping each attention module's query tokens, batch first."""

    def __init__(self, modules: Sequence[tuple[str, nn.Module]]) -> None:
        self.values: dict[str, torch.Tensor] = {}
        self.batch_first = {
            name: getattr(m, "batch_first", True) if isinstance(m, nn.MultiheadAttention) else True
            for name, m in modules
        }

    def hook(self, name: str):
        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else kwargs.get("query", kwargs.get("x"))
            if name not in self.values and isinstance(x, torch.Tensor):
                x = x.detach().to(torch.float32, copy=True)
                self.values[name] = x if self.batch_first[name] else x.transpose(0, 1)

        return record


def attention_io(model: nn.Module, x: torch.Tensor, target: Any = "none") -> AttentionIO:
    """One pass of ``x``: every attention module's weights and input (and output gradient).

    Args:
        model: the (unwrapped) module.
        x: the input on the model's device and dtype.
        target: ``"none"`` for no gradient (plain rollout), else a target as
            the backends' ``gradients`` takes it.

    Raises:
        UnsupportedAttentionError: the model has no attention module, or one
            that cannot be read (see :func:`read_attention`).
    """
    modules = attention_modules(model)
    if not modules:
        raise UnsupportedAttentionError(
            f"This {type(model).__name__} has no self-attention module (nn.MultiheadAttention "
            "or timm-style attention); attention rollout needs a vision transformer."
        )
    weights = [read_attention(name, m) for name, m in modules]
    inputs = _Inputs(modules)
    grads = targets = None
    last = modules[-1][0]
    parent_name = last.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else None
    with ExitStack() as stack:
        for name, m in modules:
            stack.enter_context(m.register_forward_pre_hook(inputs.hook(name), with_kwargs=True))
        if parent is not None:  # the block: its input is the residual stream
            inputs.batch_first["<residual>"] = inputs.batch_first[last]
            hook = inputs.hook("<residual>")
            stack.enter_context(parent.register_forward_pre_hook(hook, with_kwargs=True))
        if isinstance(target, str) and target == "none":
            capture_outputs(model, x, modules[-1:])
        else:
            result = compute_gradients(model, x, modules, target)
            grads = []
            for name, m in modules:
                g = result.gradients[name]
                if isinstance(m, nn.MultiheadAttention) and not m.batch_first:
                    g = np.swapaxes(g, 0, 1)
                grads.append(np.asarray(g, np.float64))
            targets = result.targets
    missing = [name for name, _ in modules if name not in inputs.values]
    if missing:
        raise UnsupportedAttentionError(
            f"Attention modules {missing} did not run (or got no tensor input) in this pass."
        )
    residual = inputs.values.get("<residual>")
    if residual is not None and residual.shape != inputs.values[last].shape:
        residual = None
    return AttentionIO(
        [name for name, _ in modules],
        weights,
        [inputs.values[name].cpu().numpy() for name, _ in modules],
        grads,
        targets,
        None if residual is None else residual.cpu().numpy(),
    )
