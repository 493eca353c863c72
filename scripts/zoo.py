"""The model zoo: ``mv.grad_cam(model, x)`` with no layer, checked on ~100 random-init models.

For each model (timm, torchvision, keras.applications and our Keras ViT, in
reduced configurations: depth 2 where the family allows, small and where
possible non-square inputs, random weights, nothing downloaded) the script

1. runs ``mv.grad_cam(model, x)`` with no layer and no callback (batch 2,
   seeded input) and reads the layer multiviz chose;
2. recomputes Grad-CAM at that same layer on its own: a forward hook (PyTorch)
   or a sub-model and ``tf.GradientTape`` (Keras) gives the layer's output and
   the gradient of the top logit; token outputs ``(N, T, C)`` are folded on the
   patch grid the script reads from the model's config (patch size and prefix
   token count), channels-last maps are found from the shape (two axes in the
   ratio of the input's sides), channel weights are the spatial means of the
   gradient, the map is ``ReLU(sum_k w_k A_k)``, upsampled bilinearly
   (``F.interpolate(align_corners=False)`` / ``tf.image.resize``) and min-max
   scaled per sample;
3. checks the layer's map varies over space and its gradient is not all zero.

A model is ``ok`` when all three hold and the two maps agree within ``--tol``.

Run it in pieces (one family per process; ``--threads 1`` on a shared machine)
and then write the table::

    python scripts/zoo.py --family timm_vit --json /tmp/zoo/timm_vit.json
    python scripts/zoo.py --family timm_cnn --json /tmp/zoo/timm_cnn.json
    python scripts/zoo.py --family torchvision --json /tmp/zoo/torchvision.json
    python scripts/zoo.py --family keras --json /tmp/zoo/keras.json
    python scripts/zoo.py --table /tmp/zoo/*.json --md docs/zoo.md --measured "..."

``--only NAME`` (repeatable) runs the named models only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("timm_vit", "timm_cnn", "torchvision", "keras")
TOL = 1e-4  # max abs difference of the two [0, 1]-scaled maps
SIGNED_TOL = 1e-3  # max abs difference of the signed maps, over the reference's largest magnitude


@dataclass
class Row:
    model: str
    framework: str
    family: str
    input_size: str
    layer: str = ""
    shape: str = ""
    kind: str = ""
    diff: float = math.nan
    signed_diff: float = math.nan
    seconds: float = math.nan
    status: str = ""
    note: str = ""


@dataclass
class Spec:
    name: str
    hw: tuple[int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # the row's model name, when one constructor appears twice


# ---------------------------------------------------------------------------------- the zoo


def _vit(name: str, hw: tuple[int, int] = (48, 80), label: str = "", **kw: Any) -> Spec:
    return Spec(name, hw, {"depth": 2, "img_size": hw, **kw}, label)


def timm_vit_specs() -> list[Spec]:
    """Transformers, hybrids and other token / channels-last models from timm."""
    return [
        _vit("vit_tiny_patch16_224"),
        _vit("vit_small_patch16_224", (64, 96)),
        _vit("vit_base_patch32_224", (64, 96)),
        _vit("vit_tiny_patch16_224", (64, 64), label="vit_tiny_patch16_224 (square)"),
        Spec("vit_tiny_patch16_224", (224, 224), {}, label="vit_tiny_patch16_224 (full size)"),
        _vit("deit_tiny_patch16_224"),
        _vit("deit_tiny_distilled_patch16_224"),
        _vit("deit3_small_patch16_224"),
        _vit("vit_small_patch14_reg4_dinov2", (42, 70)),
        _vit("vit_medium_patch16_gap_256"),
        _vit("vit_betwixt_patch16_reg4_gap_256"),
        _vit("vit_base_patch16_siglip_224"),
        _vit("flexivit_small"),
        Spec(
            "vit_tiny_patch16_224",
            (48, 80),
            {"depth": 2, "dynamic_img_size": True},
            label="vit_tiny_patch16_224 (dynamic_img_size)",
        ),
        _vit("vit_tiny_r_s16_p8_224", (64, 96)),
        _vit("vit_small_r26_s32_224", (64, 96)),
        _vit("eva02_tiny_patch14_224", (42, 70)),
        _vit("beit_base_patch16_224"),
        _vit("cait_xxs24_224"),
        Spec("xcit_nano_12_p16_224", (48, 80), {"depth": 2}),
        Spec("crossvit_tiny_240", (240, 240), {}),
        Spec("crossvit_9_240", (240, 240), {}),
        Spec("pit_ti_224", (64, 96), {"img_size": (64, 96)}),
        Spec("levit_128s", (64, 96), {"img_size": (64, 96)}),
        Spec("mixer_s16_224", (48, 80), {"img_size": (48, 80)}),
        Spec("resmlp_12_224", (48, 80), {"img_size": (48, 80)}),
        Spec("gmlp_ti16_224", (48, 80), {"img_size": (48, 80)}),
        Spec(
            "swin_tiny_patch4_window7_224",
            (56, 112),
            {"img_size": (56, 112), "depths": (2, 2, 2, 2)},
        ),
        Spec("swinv2_tiny_window8_256", (64, 128), {"img_size": (64, 128), "depths": (2, 2, 2, 2)}),
        Spec("maxvit_nano_rw_256", (64, 128), {"img_size": (64, 128)}),
        Spec("coatnet_nano_rw_224", (64, 96), {"img_size": (64, 96)}),
        Spec("convnext_atto", (64, 96), {"depths": (1, 1, 2, 1)}),
        Spec("convnextv2_atto", (64, 96), {}),
        Spec("convnext_atto", (64, 96), {"conv_mlp": True}, label="convnext_atto (conv_mlp)"),
        Spec("efficientformer_l1", (224, 224), {}),
        Spec("efficientformerv2_s0", (64, 64), {"img_size": 64}),
        Spec("poolformer_s12", (64, 96), {}),
        Spec("mobilevit_xxs", (64, 96), {}),
        Spec("mobilevitv2_050", (64, 96), {}),
        Spec("edgenext_xx_small", (64, 96), {}),
        Spec("fastvit_t8", (64, 96), {}),
        Spec("repvit_m1", (64, 96), {}),
        Spec("hiera_tiny_224", (224, 224), {}),
        Spec("davit_tiny", (64, 96), {}),
        Spec("focalnet_tiny_srf", (64, 96), {}),
        Spec("nest_tiny", (64, 64), {"img_size": 64}),
        Spec("gcvit_xxtiny", (64, 64), {"img_size": (64, 64)}),
        Spec("pvt_v2_b0", (64, 96), {}),
        Spec("twins_svt_small", (64, 96), {"img_size": (64, 96)}),
        Spec("tiny_vit_5m_224", (224, 224), {}),
        Spec("inception_next_tiny", (64, 96), {}),
        Spec("caformer_s18", (64, 96), {}),
    ]


def timm_cnn_specs() -> list[Spec]:
    """Convolutional networks from timm (full depth, small non-square inputs)."""
    names = [
        "resnet18", "resnet50", "resnet18d", "seresnext26d_32x4d", "resnext26ts",
        "efficientnet_b0", "efficientnet_lite0", "tf_efficientnet_b0", "efficientnetv2_rw_t",
        "mobilenetv2_050", "mobilenetv3_small_050", "mobilenetv4_conv_small", "mnasnet_small",
        "ghostnet_100", "regnetx_002", "regnety_002", "densenet121", "dla34", "dpn68",
        "vgg11", "xception41", "hrnet_w18_small", "cspdarknet53", "res2net50_26w_4s",
        "rexnet_100", "lcnet_050", "tinynet_e", "hgnetv2_b0", "repvgg_a0", "selecsls42b",
        "ese_vovnet19b_dw", "resnetv2_50x1_bit", "botnet26t_256", "halonet26t",
        "lambda_resnet26t", "nf_resnet26", "convmixer_768_32", "inception_v3",
    ]  # fmt: skip
    sizes = {
        "inception_v3": (96, 128),
        "botnet26t_256": (64, 64),
        "halonet26t": (256, 256),  # its local attention blocks need 8 | the last grid
        "lambda_resnet26t": (64, 64),
    }
    kwargs: dict[str, dict[str, Any]] = {
        "botnet26t_256": {"img_size": 64},
        "lambda_resnet26t": {},
        "convmixer_768_32": {},
    }
    return [Spec(n, sizes.get(n, (64, 96)), kwargs.get(n, {})) for n in names]


def torchvision_specs() -> list[Spec]:
    """torchvision classification models (random weights)."""
    rows = [
        ("alexnet", (64, 64)), ("alexnet", (64, 96)), ("vgg11", (64, 96)), ("resnet18", (64, 96)),
        ("resnet50", (64, 96)), ("resnext50_32x4d", (64, 96)), ("wide_resnet50_2", (64, 96)),
        ("densenet121", (64, 96)), ("squeezenet1_1", (64, 96)), ("mobilenet_v2", (64, 96)),
        ("mobilenet_v3_small", (64, 96)), ("mnasnet0_5", (64, 96)), ("shufflenet_v2_x0_5", (64, 96)),
        ("efficientnet_b0", (64, 96)), ("efficientnet_v2_s", (64, 96)), ("regnet_y_400mf", (64, 96)),
        ("regnet_x_400mf", (64, 96)), ("convnext_tiny", (64, 96)), ("googlenet", (64, 96)),
        ("inception_v3", (96, 128)), ("swin_t", (64, 96)), ("swin_v2_t", (64, 96)),
        ("maxvit_t", (224, 224)), ("vit_b_16", (64, 64)), ("vit_b_32", (64, 64)),
    ]  # fmt: skip
    out = []
    for name, hw in rows:
        kw: dict[str, Any] = {"num_classes": 10}
        if name in ("vit_b_16", "vit_b_32"):
            kw["image_size"] = hw[0]
        if name == "googlenet":
            kw.update(aux_logits=False, init_weights=False)
        if name == "inception_v3":
            kw.update(aux_logits=False, init_weights=False)
        if name == "maxvit_t":
            kw["input_size"] = hw
        label = f"{name} {hw[0]}x{hw[1]}" if name == "alexnet" else ""
        out.append(Spec(name, hw, kw, label))
    return out


def keras_specs() -> list[Spec]:
    """keras.applications (weights=None, no softmax needed: logits read from the last Dense)."""
    rows = [
        ("ResNet50", (64, 96)), ("ResNet50V2", (64, 96)), ("VGG16", (64, 96)),
        ("MobileNet", (64, 96)), ("MobileNetV2", (64, 96)), ("MobileNetV3Small", (64, 96)),
        ("DenseNet121", (64, 96)), ("EfficientNetB0", (64, 96)), ("EfficientNetV2B0", (64, 96)),
        ("ConvNeXtTiny", (64, 96)), ("Xception", (96, 128)), ("InceptionV3", (96, 128)),
        ("NASNetMobile", (96, 96)), ("MobileNetV3Large", (64, 96)),
    ]  # fmt: skip
    specs = [Spec(n, hw, {}) for n, hw in rows]
    specs.append(Spec("builtin_vit", (24, 40), {"patch": 4, "registers": 3}, "our ViT (registers)"))
    specs.append(Spec("builtin_vit", (32, 32), {"patch": 8}, "our ViT (square)"))
    return specs


# ----------------------------------------------------------------------------- the reference


def _normalize(maps: np.ndarray) -> np.ndarray:
    maps = maps.astype(np.float64)
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    return np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 0)


def _fold(
    act: np.ndarray,
    hw: tuple[int, int],
    grid: tuple[int, int] | None,
    prefix: int,
    nhwc: bool | None,
) -> tuple[np.ndarray, str]:
    """``act`` as ``(N, C, h, w)`` and what it was: a conv map, a token map, a channels-last map.

    ``nhwc``: the layout the framework stores rank-4 outputs in (Keras: True),
    or None to find it from the shape: the two axes whose ratio is the input's.
    """
    if act.ndim == 3:
        if grid is None:
            raise RuntimeError(f"token output {act.shape}: no patch grid in the model's config")
        h, w = grid
        if act.shape[1] == h * w + prefix:
            patches = act[:, prefix:]
        elif act.shape[1] == h * w:
            patches = act
        else:
            raise RuntimeError(f"token output {act.shape} does not fit grid {grid} + {prefix}")
        return patches.reshape(len(act), h, w, -1).transpose(0, 3, 1, 2), "token map"
    if act.ndim != 4:
        raise RuntimeError(f"rank-{act.ndim} output {act.shape}")
    if nhwc is None:
        nhwc = _looks_nhwc(act.shape, hw)
    if nhwc:
        return act.transpose(0, 3, 1, 2), "channels-last map"
    return act, "conv map"


def _looks_nhwc(shape: tuple[int, ...], hw: tuple[int, int]) -> bool:
    """Axes 1, 2 (not 2, 3) are the map's: their ratio is the input's, or only they can be."""
    ratio = hw[0] / hw[1]

    def fits(a: int, b: int) -> float:
        return abs(math.log(a / b) - math.log(ratio))

    first, last = fits(shape[1], shape[2]), fits(shape[2], shape[3])
    if first != last:
        return first < last
    raise RuntimeError(f"cannot tell the layout of {shape} from an input of {hw}")


def _signed(act: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``sum_k w_k A_k`` before the ReLU, at the layer's resolution, ``w_k`` the gradient's mean."""
    weights = grad.astype(np.float64).mean(axis=(2, 3))
    return (weights[:, :, None, None] * act.astype(np.float64)).sum(axis=1)


# ------------------------------------------------------------------------------- PyTorch


PROJECTIONS = ("patch_embed.proj", "conv_proj", "stem.proj")  # timm, torchvision, timm's MLPs


def _projection(model: Any) -> Any:
    """The convolution that cuts the image into patch tokens (its output's size is the grid)."""
    modules = dict(model.named_modules())
    return next((modules[n] for n in PROJECTIONS if n in modules), None)


def _prefix(model: Any) -> int:
    """Tokens before the patch tokens: timm's ``num_prefix_tokens``; torchvision's class token."""
    if hasattr(model, "num_prefix_tokens"):
        return int(model.num_prefix_tokens)
    return 1 if getattr(model, "class_token", None) is not None else 0


def torch_reference(model: Any, x: Any, layer: str, hw: tuple[int, int]) -> dict[str, Any]:
    """Grad-CAM at ``layer`` with plain autograd: the layer's output is cut out as a leaf."""
    import torch
    import torch.nn.functional as F

    name, _, call = layer.partition("#")
    want = int(call) if call else 0
    module = dict(model.named_modules())[name]
    seen: list[torch.Tensor] = []
    leaf: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: Any) -> Any:
        k = len(seen)
        seen.append(out)
        if k != want or not isinstance(out, torch.Tensor):
            return None
        leaf["a"] = out.detach().clone().requires_grad_(True)
        return leaf["a"].clone()  # later in-place ops change the clone, not the leaf

    grid: list[tuple[int, int]] = []
    handles = [module.register_forward_hook(hook)]
    projection = _projection(model)
    if projection is not None:  # the patch grid is the projection's output size
        handles.append(projection.register_forward_hook(
            lambda _m, _i, out: grid.append(tuple(out.shape[-2:])) if not grid else None
        ))  # fmt: skip
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    target = logits.argmax(dim=1)
    score = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, leaf["a"], allow_unused=True)
    act = leaf["a"].detach().numpy()
    grad = np.zeros_like(act) if grad is None else grad.numpy()
    patch_grid, prefix = (grid[0] if grid else None), _prefix(model)
    a, kind = _fold(act, hw, patch_grid, prefix, None)
    g, _ = _fold(grad, hw, patch_grid, prefix, None)
    signed = _signed(a, g)
    low = np.maximum(signed, 0.0)
    up = F.interpolate(
        torch.from_numpy(low)[:, None], size=hw, mode="bilinear", align_corners=False
    )
    return {
        "map": _normalize(up[:, 0].numpy()),
        "signed": signed,
        "act": a,
        "grad": g,
        "kind": kind,
        "shape": tuple(act.shape),
    }


def build_torch(family: str, spec: Spec) -> Any:
    if family == "torchvision":
        import torchvision

        return getattr(torchvision.models, spec.name)(weights=None, **spec.kwargs)
    import timm

    return timm.create_model(spec.name, pretrained=False, num_classes=10, **spec.kwargs)


def wake_head(model: Any) -> str:
    """Give a zero-initialized classifier (torchvision's ViT) random weights: else no gradient.

    Returns a note for the table, or ``""`` when the last linear layer was not all zero.
    """
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears or bool(linears[-1].weight.detach().any()):
        return ""
    with torch.no_grad():
        linears[-1].weight.normal_(0.0, 0.02)
    return "zero-initialized head given random weights"


# ---------------------------------------------------------------------------------- Keras


def build_keras(spec: Spec) -> Any:
    import keras

    if spec.name == "builtin_vit":
        from multiviz.backends.keras.builtin_vit import build
        from multiviz.sources.builtin_vit import ViTConfig

        config = ViTConfig(image_size=spec.hw, dim=16, depth=2, heads=2, mlp=24, **spec.kwargs)
        return build(None, config)
    ctor = getattr(keras.applications, spec.name)
    return ctor(weights=None, input_shape=(*spec.hw, 3), classes=10, **spec.kwargs)


def keras_reference(model: Any, x: np.ndarray, layer: str, hw: tuple[int, int]) -> dict[str, Any]:
    """Grad-CAM at ``layer`` with ``tf.GradientTape``; the logits before the final softmax.

    A sub-model outputs the layer and the last layer's input; the tape
    differentiates the top logit (a last Dense's ``features @ kernel + bias``,
    or a last Activation's input) by the layer's output.
    """
    import keras
    import tensorflow as tf

    head = model.layers[-1]
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, head.input])
    with tf.GradientTape() as tape:
        act, features = sub(tf.constant(x), training=False)
        if isinstance(head, keras.layers.Dense):  # its activation (softmax) left out
            logits = tf.matmul(features, head.kernel) + head.bias
        else:  # a final Activation (softmax): its input
            logits = features
        target = tf.argmax(logits, axis=1)
        score = tf.reduce_sum(tf.gather(logits, target, batch_dims=1))
    grad = tape.gradient(score, act)
    act_np = act.numpy()
    grad_np = np.zeros_like(act_np) if grad is None else grad.numpy()
    grid, prefix = _keras_grid(model, hw)
    a, kind = _fold(act_np, hw, grid, prefix, act_np.ndim == 4)
    g, _ = _fold(grad_np, hw, grid, prefix, act_np.ndim == 4)
    signed = _signed(a, g)
    low = np.maximum(signed, 0.0)
    up = tf.image.resize(low[..., None].astype(np.float32), hw, method="bilinear").numpy()[..., 0]
    return {
        "map": _normalize(up),
        "signed": signed,
        "act": a,
        "grad": g,
        "kind": kind,
        "shape": act_np.shape,
    }


def _keras_grid(model: Any, hw: tuple[int, int]) -> tuple[tuple[int, int] | None, int]:
    try:
        embed = model.get_layer("patch_embed")
        tokens = model.get_layer("tokens")
    except ValueError:
        return None, 0
    p = embed.strides[0], embed.strides[1]
    return (hw[0] // p[0], hw[1] // p[1]), 1 + int(tokens.registers)


# ------------------------------------------------------------------------------ one model


def check(row: Row, ref: dict[str, Any], got: np.ndarray, signed: np.ndarray, tol: float) -> None:
    """Fill ``row``'s differences and status from the reference and multiviz's two maps.

    ``got``: the default map (ReLU, upsampled, scaled to [0, 1]); ``signed``:
    the map with ``relu=False, normalize=False, upsample=False``, compared
    relative to the reference's largest magnitude (so a map the ReLU zeroes,
    or one the scaling hides, is still checked).
    """
    act, grad = ref["act"], ref["grad"]
    flat = act.reshape(act.shape[0], act.shape[1], -1)
    varies = bool(
        np.any(flat.max(axis=2) - flat.min(axis=2) > 1e-6 * max(np.abs(flat).max(), 1e-30))
    )
    reaches = bool(np.any(grad != 0))
    row.diff = float(np.abs(ref["map"] - got.astype(np.float64)).max())
    scale = max(float(np.abs(ref["signed"]).max()), 1e-30)
    if signed.shape == ref["signed"].shape:
        row.signed_diff = float(np.abs(ref["signed"] - signed).max()) / scale
    problems = []
    if not varies:
        problems.append("layer map constant over space")
    if not reaches:
        problems.append("gradient all zero")
    if not row.diff <= tol:
        problems.append(f"map differs ({row.diff:.2g})")
    if not row.signed_diff <= SIGNED_TOL:
        problems.append(f"signed map differs ({row.signed_diff:.2g}, shape {signed.shape})")
    if float(np.ptp(ref["map"])) == 0.0:
        row.note = ", ".join(filter(None, [row.note, "Grad-CAM map all zero after the ReLU"]))
    row.status = "ok" if not problems else "FAIL: " + "; ".join(problems)


def run_one(family: str, spec: Spec, tol: float) -> Row:
    import multiviz as mv
    from multiviz.attribution.model_call import _CHOSEN

    framework = "keras" if family == "keras" else "torch"
    row = Row(spec.label or spec.name, framework, family, f"{spec.hw[0]}x{spec.hw[1]}")
    try:
        rng = np.random.default_rng(0)
        if framework == "torch":
            import torch

            torch.manual_seed(0)
            model = build_torch(family, spec).eval()
            row.note = wake_head(model)
            x_np = rng.standard_normal((2, 3, *spec.hw), dtype=np.float32)
            x = torch.from_numpy(x_np)
        else:
            import keras

            keras.utils.set_random_seed(0)
            model = build_keras(spec)
            x = rng.standard_normal((2, *spec.hw, 3), dtype=np.float32)
        start = time.perf_counter()
        got = mv.grad_cam(model, x)
        row.seconds = time.perf_counter() - start
        layer = next(iter(_CHOSEN[model].values()))
        row.layer = layer
        signed = mv.grad_cam(model, x, relu=False, normalize=False, upsample=False)
        if framework == "torch":
            ref = torch_reference(model, x, layer, spec.hw)
        else:
            ref = keras_reference(model, x, layer, spec.hw)
        row.shape = "x".join(str(s) for s in ref["shape"][1:])
        row.kind = ref["kind"]
        check(row, ref, got, np.asarray(signed, np.float64), tol)
    except Exception as exc:  # a row per failure; the zoo goes on
        row.status = f"error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
        if os.environ.get("ZOO_TRACE"):
            traceback.print_exc()
    return row


# ---------------------------------------------------------------------------------- output


PAGE = """# Model zoo: Grad-CAM with no layer

`mv.grad_cam(model, x)` with no `layer` and no callback picks the last layer
whose map varies over space and whose gradient reaches the target (see
[Transformers](transformers.md)). This page is the check of that promise on
about a hundred random-init models: timm (vision transformers with class,
distillation and register tokens, hybrids, Swin, ConvNeXt, MLP models and
CNNs), torchvision classification models and `keras.applications` plus our
Keras ViT, in reduced configurations (depth 2 where the family allows, small
and where possible non-square inputs, random weights; one full-size ViT).

For each model, `scripts/zoo.py` runs `mv.grad_cam(model, x)` (batch 2,
seeded input), reads the layer multiviz chose, and computes Grad-CAM at that
same layer on its own: a forward hook (PyTorch) or a sub-model and
`tf.GradientTape` (Keras) gives the layer's output and the gradient of the top
logit; token outputs `(N, T, C)` are folded on the grid the script reads from
the size of the patch projection's output, after the model's prefix tokens;
channels-last maps are told from the shape (the two axes in the ratio of the
input's sides); channel weights are the gradient's spatial means; the map is
`ReLU(sum_k w_k A_k)`, upsampled bilinearly (`F.interpolate(align_corners=False)`,
`tf.image.resize`) and min-max scaled per sample. A row is `ok` when the two
maps agree within 1e-4 (max abs difference, maps in [0, 1]), the signed
maps at the layer's resolution (`relu=False, normalize=False, upsample=False`:
`sum_k w_k A_k`, which the ReLU and the scaling cannot hide) agree within 1e-3
of the reference's largest magnitude, the layer's map varies over space and
its gradient is not all zero.

```bash
python scripts/zoo.py --family timm_vit --json /tmp/zoo/timm_vit.json   # and timm_cnn, torchvision, keras
python scripts/zoo.py --table /tmp/zoo/*.json --md docs/zoo.md
```

"kind" says what the chosen layer outputs: a conv map `(N, C, h, w)`, a token
map (tokens `(N, T, C)` folded on the patch grid), or a channels-last map
`(N, h, w, C)` (Swin stages; every Keras map). The time is the whole
`mv.grad_cam` call on a loaded 2-core machine, including the one-time layer
choice (a gradient pass over up to 8 candidate layers at a time).

"""


NOTES = """
## Reading the table

* "Correct" is the map at the layer multiviz chose. Where a model's token
  layers cannot be folded into one patch grid, the last map that can is
  chosen, and it may be early in the network: CrossViT (two branches with two
  grids: the second branch's patch projection), Hiera (tokens in its unrolled
  mask-unit order, not raster order: the patch projection), LeViT (token
  stages that shrink the grid, with no patch grid to read: its convolutional
  stem). Pass `layer=` (and `token_grid=` / `prefix_tokens=`) there.
* Where a CNN's adaptive average pooling enlarges a small map (torchvision's
  AlexNet and VGG at 64x96: a 2x3 map pooled to 6x6 or 7x7), the pooled map
  varies over space and is chosen; at 64x64 AlexNet's map is 1x1 and
  `avgpool` only repeats it, so `features.11` is chosen.
* Models that start with a zero classifier (torchvision's ViT; timm's MLP-Mixer, ResMLP, gMLP, Hiera)
  have no gradient anywhere until trained; the script gives that layer random
  weights and says so in the status column. multiviz itself refuses such a
  model with an error naming the cause.
* The Keras rows read the logits before the final softmax (the last Dense's
  `features @ kernel + bias`, or a final Activation's input), as multiviz does.
"""


def markdown(rows: list[Row], page: bool = False, measured: str = "") -> str:
    ok = sum(r.status == "ok" for r in rows)
    lines = [
        *([PAGE] if page else []),
        f"{len(rows)} models, {ok} correct." + (f" {measured}" if measured else ""),
        "",
        "| model | framework | input | chosen layer | layer output | kind | max abs diff "
        "| signed rel. diff | s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "" if math.isnan(r.diff) else f"{r.diff:.1e}"
        sdiff = "" if math.isnan(r.signed_diff) else f"{r.signed_diff:.1e}"
        secs = "" if math.isnan(r.seconds) else f"{r.seconds:.2f}"
        status = r.status + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.model} | {r.framework} | {r.input_size} | `{r.layer}` | {r.shape} | {r.kind} "
            f"| {diff} | {sdiff} | {secs} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n" + (NOTES if page else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, action="append")
    parser.add_argument("--only", action="append", help="run only these models (name or label)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--table", nargs="+", type=Path, help="JSON files to merge into one table")
    parser.add_argument("--md", type=Path, help="write the Markdown table here")
    parser.add_argument("--measured", default="", help="where and when, for the page")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tol", type=float, default=TOL)
    args = parser.parse_args(argv)
    if args.table:
        rows = [Row(**r) for p in args.table for r in json.loads(p.read_text())]
    else:
        rows = run_families(args.family or list(FAMILIES), args.only, args.threads, args.tol)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    text = markdown(rows)
    if args.md:
        args.md.write_text(markdown(rows, page=True, measured=args.measured))
    print(text)
    return 0 if all(r.status == "ok" for r in rows) else 1


def run_families(
    families: list[str], only: list[str] | None, threads: int, tol: float
) -> list[Row]:
    specs = {
        "timm_vit": timm_vit_specs,
        "timm_cnn": timm_cnn_specs,
        "torchvision": torchvision_specs,
        "keras": keras_specs,
    }
    if any(f != "keras" for f in families):
        import torch

        torch.set_num_threads(threads)
    if "keras" in families:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    rows = []
    for family in families:
        for spec in specs[family]():
            if only and spec.name not in only and spec.label not in only:
                continue
            row = run_one(family, spec, tol)
            print(f"{row.model:45s} {row.seconds:6.2f}s {row.layer:35s} {row.status}", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
