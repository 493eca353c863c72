"""Per-layer parameters without a framework, and their layout conversions.

A weights backend (``multiviz.backends.torch.weights`` / ``keras.weights``)
reads each layer into a :class:`LayerParams`: the layer's own arrays under the
framework's own names and layout, plus the few settings that decide how they
convert. This module turns them into one *canonical* form — PyTorch's layout
and names, chosen because it is the one that keeps channels first — and back:

==================  ==========================  ===================================
op                  PyTorch (canonical)         Keras
==================  ==========================  ===================================
conv (rank r)       weight ``(O, I/g, *k)``     kernel ``(*k, I/g, O)``
depthwise           weight ``(C*m, 1, *k)``     DepthwiseConv kernel ``(*k, C, m)``
dense               weight ``(out, in)``        kernel ``(in, out)``
dense after         columns in ``C, H, W``      rows in ``H, W, C`` order (the
Flatten             order                       flatten of a channels-last map)
batchnorm           weight, bias,               gamma, beta,
                    running_mean, running_var   moving_mean, moving_variance
layernorm           weight, bias                gamma, beta
mha (self-          in_proj_weight ``(3D, D)``  MultiHeadAttention ``query``/``key``/
attention)          (rows q, k, v; heads in     ``value`` kernels ``(D, H, d)``,
                    order), in_proj_bias,       biases ``(H, d)``,
                    out_proj.weight ``(D, Hd)``  ``attention_output`` kernel
                    (timm: qkv.*, proj.*)       ``(H, d, D)``
tokens              cls_token, pos_embed,       the same names and shapes
                    reg_token
==================  ==========================  ===================================

A depthwise convolution is a grouped convolution with ``groups == C``; its
output channel ``c*m + j`` is input channel ``c``'s ``j``-th filter in both
frameworks, which is what makes the reshape above exact. Every conversion is a
transpose or reshape: values are copied bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiviz.errors import TransferError

__all__ = [
    "SUPPORTED",
    "LayerParams",
    "canonical_shapes",
    "from_canonical",
    "to_canonical",
]

#: What can be converted, by framework: the layer types, for error messages.
SUPPORTED = {
    "torch": "Conv1d/2d/3d (incl. grouped and depthwise), Linear, BatchNorm1d/2d/3d, "
    "LayerNorm, MultiheadAttention, timm-style attention (qkv, proj), class/position tokens",
    "keras": "Conv1D/2D/3D (incl. groups), DepthwiseConv1D/2D, Dense, BatchNormalization, "
    "LayerNormalization, MultiHeadAttention, class/position tokens",
}

# self-attention: canonical (nn.MultiheadAttention) names, and timm's for the same arrays
_MHA = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
_TIMM_MHA = dict(zip(("qkv.weight", "qkv.bias", "proj.weight", "proj.bias"), _MHA, strict=True))
_KERAS_LN = {"gamma": "weight", "beta": "bias"}

_KERAS_BN = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


@dataclass
class LayerParams:
    """One layer's parameters as its framework holds them.

    Attributes:
        name: the layer's name (as :func:`multiviz.layers` lists it).
        type: the class name (``"Conv2d"``, ``"DepthwiseConv2D"``…).
        op: ``"conv"``, ``"depthwise"``, ``"dense"``, ``"batchnorm"``,
            ``"layernorm"``, ``"mha"``, ``"tokens"``; ``"none"``
            for a layer without parameters; ``"unsupported"`` for a layer that
            has parameters multiviz cannot convert.
        framework: ``"torch"`` or ``"keras"``.
        arrays: native parameter name -> NumPy copy in the native layout
            (``"kernel"``, ``"bias"``, ``"gamma"``…; ``"weight"``, ``"running_var"``…).
        config: settings that matter for conversion and checks: ``rank``
            (spatial dims), ``groups``, ``stride``, ``dilation``, ``eps``,
            ``momentum`` (native meaning), ``flatten_from`` (Keras Dense fed by a
            channels-last Flatten: the flattened ``(*spatial, C)``),
            ``activation`` (Keras fused activation), ``channels_axis_ok``.

    Example:
        >>> p = LayerParams("fc", "Dense", "dense", "keras", {"kernel": np.zeros((3, 2))})
        >>> canonical_shapes(p)
        {'weight': (2, 3)}
    """

    name: str
    type: str
    op: str
    framework: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def has_params(self) -> bool:
        """True when the layer owns parameter arrays."""
        return bool(self.arrays)


# --------------------------------------------------------------------------- keras <-> canonical


def _keras_conv_to_torch(kernel: np.ndarray) -> np.ndarray:
    r = kernel.ndim - 2  # (*k, I, O) -> (O, I, *k)
    return np.ascontiguousarray(np.transpose(kernel, (r + 1, r, *range(r))))


def _torch_conv_to_keras(weight: np.ndarray) -> np.ndarray:
    r = weight.ndim - 2  # (O, I, *k) -> (*k, I, O)
    return np.ascontiguousarray(np.transpose(weight, (*range(2, r + 2), 1, 0)))


def _keras_depthwise_to_torch(kernel: np.ndarray) -> np.ndarray:
    r = kernel.ndim - 2  # (*k, C, m) -> (C, m, *k) -> (C*m, 1, *k)
    cm = np.transpose(kernel, (r, r + 1, *range(r)))
    c, m = cm.shape[:2]
    return np.ascontiguousarray(cm.reshape(c * m, 1, *cm.shape[2:]))


def _torch_depthwise_to_keras(weight: np.ndarray, channels: int) -> np.ndarray:
    r = weight.ndim - 2  # (C*m, 1, *k) -> (C, m, *k) -> (*k, C, m)
    m = weight.shape[0] // channels
    cm = weight.reshape(channels, m, *weight.shape[2:])
    return np.ascontiguousarray(np.transpose(cm, (*range(2, r + 2), 0, 1)))


def _keras_dense_to_torch(kernel: np.ndarray, flatten_from: tuple[int, ...] | None) -> np.ndarray:
    weight = kernel.T  # (in, out) -> (out, in)
    if flatten_from:  # rows ordered (*spatial, C): reorder the columns to (C, *spatial)
        out = weight.shape[0]
        weight = np.moveaxis(weight.reshape(out, *flatten_from), -1, 1).reshape(out, -1)
    return np.ascontiguousarray(weight)


def _torch_dense_to_keras(weight: np.ndarray, flatten_from: tuple[int, ...] | None) -> np.ndarray:
    if flatten_from:  # columns ordered (C, *spatial) -> (*spatial, C)
        out, c = weight.shape[0], flatten_from[-1]
        weight = np.moveaxis(weight.reshape(out, c, *flatten_from[:-1]), 1, -1).reshape(out, -1)
    return np.ascontiguousarray(weight.T)


def to_canonical(p: LayerParams) -> dict[str, np.ndarray]:
    """The layer's arrays in PyTorch names and layout.

    Args:
        p: a layer read by a weights backend, with ``op`` other than
            ``"unsupported"``.

    Returns:
        ``{"weight", "bias"}`` for conv/depthwise/dense (bias only if the layer
        has one); ``{"weight", "bias", "running_mean", "running_var"}`` for
        batchnorm (``weight``/``bias`` only if affine). Parameter-free: ``{}``.

    Raises:
        TransferError: the layer's type is not supported.

    Example:
        >>> k = np.arange(24.0).reshape(2, 3, 4, 1)   # Keras (kh, kw, I, O)
        >>> p = LayerParams("c", "Conv2D", "conv", "keras", {"kernel": k})
        >>> to_canonical(p)["weight"].shape
        (1, 4, 2, 3)
    """
    if p.op == "unsupported":
        raise TransferError(
            f"Layer {p.name!r} ({p.type}, {p.framework}) has parameters "
            f"{sorted(p.arrays)} that multiviz cannot convert. Supported {p.framework} layers: "
            f"{SUPPORTED[p.framework]}. Copy this layer's weights by hand, or leave it out of `pairs`."
        )
    if p.framework == "torch" or not p.arrays:
        out = {k: v for k, v in p.arrays.items() if k != "num_batches_tracked"}
        return {_TIMM_MHA.get(k, k): v for k, v in out.items()} if p.op == "mha" else out
    a = p.arrays
    if p.op == "tokens":
        return {k: v.copy() for k, v in a.items()}
    if p.op == "layernorm":
        return {_KERAS_LN[k]: v.copy() for k, v in a.items()}
    if p.op == "mha":
        return _keras_mha_to_torch(a)
    out: dict[str, np.ndarray] = {}
    if p.op == "conv":
        out["weight"] = _keras_conv_to_torch(a["kernel"])
    elif p.op == "depthwise":
        out["weight"] = _keras_depthwise_to_torch(a["kernel"])
    elif p.op == "dense":
        out["weight"] = _keras_dense_to_torch(a["kernel"], p.config.get("flatten_from"))
    elif p.op == "batchnorm":
        return {_KERAS_BN[k]: v.copy() for k, v in a.items()}
    if "bias" in a:
        out["bias"] = a["bias"].copy()
    return out


def _keras_mha_to_torch(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras MultiHeadAttention kernels -> nn.MultiheadAttention's packed arrays."""
    c, heads, d = a["query/kernel"].shape
    rows = [a[f"{part}/kernel"].reshape(c, heads * d).T for part in ("query", "key", "value")]
    out = {"in_proj_weight": np.ascontiguousarray(np.concatenate(rows))}
    if "query/bias" in a:
        out["in_proj_bias"] = np.concatenate(
            [a[f"{part}/bias"].reshape(-1) for part in ("query", "key", "value")]
        )
    w_out = a["attention_output/kernel"]  # (heads, d, C_out)
    out["out_proj.weight"] = np.ascontiguousarray(w_out.reshape(heads * d, -1).T)
    if "attention_output/bias" in a:
        out["out_proj.bias"] = a["attention_output/bias"].copy()
    return out


def _torch_mha_to_keras(src: dict[str, np.ndarray], target: LayerParams) -> dict[str, np.ndarray]:
    c, heads, d = target.arrays["query/kernel"].shape
    w_in = src["in_proj_weight"]  # (3 * heads * d, C)
    out = {}
    for k, part in enumerate(("query", "key", "value")):
        rows = slice(k * heads * d, (k + 1) * heads * d)
        out[f"{part}/kernel"] = np.ascontiguousarray(w_in[rows].T.reshape(c, heads, d))
        if "in_proj_bias" in src:
            out[f"{part}/bias"] = src["in_proj_bias"][rows].reshape(heads, d)
    w_out = src["out_proj.weight"]  # (C_out, heads * d)
    out["attention_output/kernel"] = np.ascontiguousarray(w_out.T.reshape(heads, d, -1))
    if "out_proj.bias" in src:
        out["attention_output/bias"] = src["out_proj.bias"]
    return out


def canonical_shapes(p: LayerParams) -> dict[str, tuple[int, ...]]:
    """Shapes of :func:`to_canonical`'s arrays (``{}`` when unsupported).

    Example:
        >>> p = LayerParams("bn", "BatchNorm2d", "batchnorm", "torch", {"weight": np.ones(3)})
        >>> canonical_shapes(p)
        {'weight': (3,)}
    """
    if p.op == "unsupported":
        return {}
    return {k: tuple(v.shape) for k, v in to_canonical(p).items()}


def from_canonical(canonical: dict[str, np.ndarray], target: LayerParams) -> dict[str, np.ndarray]:
    """Convert canonical arrays into ``target``'s native names, layout and dtypes.

    Every native array of ``target`` gets a value: a bias or batchnorm
    ``weight``/``bias`` the source does not have is filled with the identity
    (zeros / ones). A source array the target has no place for is an error,
    unless it is that identity anyway (an all-zero bias, say).

    Args:
        canonical: arrays as :func:`to_canonical` returns them.
        target: the layer to write to, as its backend read it.

    Returns:
        Native name -> array with exactly the target's current shape and dtype.

    Raises:
        TransferError: the shapes do not fit, or a parameter has nowhere to go.

    Example:
        >>> t = LayerParams("fc", "Dense", "dense", "keras",
        ...                 {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros(2, np.float32)})
        >>> new = from_canonical({"weight": np.ones((2, 3))}, t)
        >>> new["kernel"].shape, new["bias"].tolist()
        ((3, 2), [0.0, 0.0])
    """
    if target.op == "unsupported":
        to_canonical(target)  # raises the message naming what is supported
    src = dict(canonical)
    current = to_canonical(target)
    identity = (
        {"bias": 0.0, "weight": 1.0}
        if target.op in ("batchnorm", "layernorm")
        else {"bias": 0.0, "in_proj_bias": 0.0, "out_proj.bias": 0.0}
    )
    for key in set(current) - set(src):
        if key not in identity:
            raise TransferError(
                f"Layer {target.name!r} ({target.type}) needs {key!r}, which the source layer "
                f"does not have (source has {sorted(src)})."
            )
        src[key] = np.full(current[key].shape, identity[key], current[key].dtype)
    for key in set(src) - set(current):
        if key in identity and np.all(src[key] == identity[key]):
            del src[key]
            continue
        raise TransferError(
            f"The source layer has {key!r} but {target.name!r} ({target.type}) has no place "
            f"for it (it has {sorted(current)}). Build the target with "
            + ("bias=True / use_bias=True" if key == "bias" else "affine=True / center=scale=True")
            + " so the two layers compute the same function."
        )
    for key, arr in src.items():
        if tuple(arr.shape) != tuple(current[key].shape):
            raise TransferError(
                f"Shape mismatch for {target.name!r}.{key} ({target.type}): the source has "
                f"{tuple(arr.shape)}, the target {tuple(current[key].shape)} (both in PyTorch "
                "layout). The two layers are not the same: check channels, kernel size and groups, "
                "or pair the layers explicitly with `pairs=`."
            )
    if target.framework == "torch":
        native = src
        if target.op == "mha" and "qkv.weight" in target.arrays:  # timm-style names
            back = {v: k for k, v in _TIMM_MHA.items()}
            native = {back.get(k, k): v for k, v in src.items()}
    else:
        native = _canonical_to_keras(src, target)
    return {
        k: np.asarray(native[k]).astype(target.arrays[k].dtype, copy=False)
        for k in target.arrays
        if k in native
    }


def _canonical_to_keras(src: dict[str, np.ndarray], target: LayerParams) -> dict[str, np.ndarray]:
    if target.op == "batchnorm":
        back = {v: k for k, v in _KERAS_BN.items()}
        return {back[k]: v for k, v in src.items()}
    if target.op == "layernorm":
        back = {v: k for k, v in _KERAS_LN.items()}
        return {back[k]: v for k, v in src.items()}
    if target.op == "tokens":
        return dict(src)
    if target.op == "mha":
        return _torch_mha_to_keras(src, target)
    out = {k: v for k, v in src.items() if k == "bias"}
    w = src["weight"]
    if target.op == "conv":
        out["kernel"] = _torch_conv_to_keras(w)
    elif target.op == "depthwise":
        out["kernel"] = _torch_depthwise_to_keras(w, target.arrays["kernel"].shape[-2])
    elif target.op == "dense":
        out["kernel"] = _torch_dense_to_keras(w, target.config.get("flatten_from"))
    return out
