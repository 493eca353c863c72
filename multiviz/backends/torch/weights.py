"""Read and write per-layer parameters of a PyTorch model.

Used by :func:`multiviz.transfer_weights` and :func:`multiviz.compare`; the
layout conversion itself is framework-free (:mod:`multiviz.core.weight_layouts`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from multiviz.core.weight_layouts import LayerParams

__all__ = ["copy_model", "read", "write"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# an attention module's arrays, under its own names (nn.MultiheadAttention's, timm's)
_ATTENTION_ARRAYS = {
    "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
    "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
}  # fmt: skip


def _is_timm_attention(module: nn.Module) -> bool:
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    return (
        isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and hasattr(module, "num_heads")
    )


def _op(module: nn.Module) -> str:
    own = dict(module.named_parameters(recurse=False))
    if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
        return "mha"
    if _is_timm_attention(module):
        return "mha"
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return "layernorm"
    if own and set(own) <= {"cls_token", "pos_embed", "reg_token"}:
        return "tokens"
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, _BN) and module.track_running_stats:
        return "batchnorm"
    return "unsupported" if own else "none"


def _config(module: nn.Module) -> dict:
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "rank": len(module.kernel_size),
            "groups": module.groups,
            "stride": tuple(module.stride),
            "dilation": tuple(module.dilation),
        }
    if isinstance(module, nn.LayerNorm):
        return {"eps": float(module.eps)}
    if isinstance(module, nn.MultiheadAttention) or _is_timm_attention(module):
        return {"heads": int(module.num_heads)}
    if isinstance(module, _BN):
        # torch: running = (1 - momentum) * running + momentum * batch; None = cumulative mean
        return {"eps": float(module.eps), "momentum": module.momentum}
    return {}


def read(model: nn.Module) -> list[LayerParams]:
    """Every leaf module (and any module owning parameters), in definition order.

    Returns:
        One :class:`~multiviz.core.weight_layouts.LayerParams` per module: its own
        parameters and buffers as float NumPy copies (``num_batches_tracked``
        left out), ``op`` saying how they convert.

    Example:
        >>> [p.name for p in read(torch.nn.Sequential(torch.nn.Linear(2, 3)))]  # doctest: +SKIP
        ['0']
    """
    out = []
    inside: list[str] = []  # attention modules read whole: their projections are not layers
    for name, module in model.named_modules():
        if any(name.startswith(a + ".") for a in inside):
            continue
        own = dict(module.named_parameters(recurse=False))
        own.update(
            (k, b) for k, b in module.named_buffers(recurse=False) if k != "num_batches_tracked"
        )
        if _op(module) == "mha":
            inside.append(name)
            own = {k: v for k, v in module.named_parameters() if k in _ATTENTION_ARRAYS}
        elif not name or (next(module.children(), None) is not None and not own):
            continue  # the root, or a pure container
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in own.items() if v is not None}
        out.append(
            LayerParams(name, type(module).__name__, _op(module), "torch", arrays, _config(module))
        )
    return out


def write(model: nn.Module, updates: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Copy arrays into the model's parameters and buffers, all or nothing.

    Args:
        model: the model to write to.
        updates: module name -> {parameter or buffer name -> array in PyTorch
            layout and the tensor's exact shape}. Checked by the caller;
            this only copies (casting to the tensor's dtype and device).

    Raises:
        KeyError: a module or tensor name does not exist (nothing written).
    """
    modules = dict(model.named_modules())
    targets = []
    for name, arrays in updates.items():
        module = modules[name]
        for key, value in arrays.items():
            owner, _, leaf = key.rpartition(".")  # "out_proj.weight": a child's tensor
            tensor = getattr(module.get_submodule(owner) if owner else module, leaf)
            if not isinstance(tensor, torch.Tensor):
                raise KeyError(f"{name}.{key} is not a tensor of {type(module).__name__}")
            targets.append((tensor, value))
    with torch.no_grad():
        saved = [t.detach().clone() for t, _ in targets]
        try:
            for tensor, value in targets:
                tensor.copy_(torch.as_tensor(np.ascontiguousarray(value)))
        except BaseException:
            for (tensor, _), old in zip(targets, saved, strict=True):
                tensor.copy_(old)
            raise


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` (``copy.deepcopy``), to change without touching it.

    Its parameters, buffers and modes are copies; writing to the copy leaves
    ``model`` as it was. Used by methods that randomize weights (sanity checks).

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> twin = copy_model(net)
        >>> twin.weight.data_ptr() != net.weight.data_ptr()
        True
    """
    return copy.deepcopy(model)
