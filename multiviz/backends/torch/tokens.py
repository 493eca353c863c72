"""What each PyTorch layer's output is: a map, a channels-last map, tokens, attention internals.

The layout of a layer's output is decided by what the layer is and what it
was given, never by which axis happens to be small (see DESIGN.md, "Layouts
by what a layer is"). One forward pass with a hook on every module follows
each tensor from the model's input (an ``(N, C, H, W)`` image):

* convolutions, pooling and ``*2d`` norms output channels-first maps;
* ``nn.Linear`` and ``nn.LayerNorm`` act on the last axis, so on a rank-4
  tensor they output a channels-last ``(N, H, W, C)`` map (Swin stages,
  ConvNeXt's inner MLP); a ``Permute`` module (torchvision) moves the layout
  with its axes;
* any other module returning a tensor it was given, or one of the same shape
  as its one rank-4 input, keeps that input's layout;
* rank-3 ``(N, T, C)`` outputs are token layers where the model's patch grid
  is known and ``T`` is its token count (``prefix + h*w``), or its patch count
  (``h*w``: the patch embedding's output, before the prefix is added);
* rank-4 outputs of modules inside an attention module (timm's ``q_norm``
  ``(N, heads, T, head_dim)``, attention probabilities after ``attn_drop``) are
  attention internals: never an image.

The patch grid is read from the model (:func:`model_token_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn

from multiviz.backends.cache import lookup, store
from multiviz.backends.guard import guarded, this_thread
from multiviz.backends.torch.capture import flatten_output
from multiviz.backends.torch.inputs import (
    ModelInput,
    entry_check,
    run_model,
    sample_shapes,
    tensors_of,
)
from multiviz.backends.torch.layers import CONV_TYPES
from multiviz.backends.torch.state import eval_mode
from multiviz.core.tokens import ATTENTION, FIRST, LAST, OTHER, PATCHES, TOKENS, TokenGrid

__all__ = [
    "LayoutTracker",
    "attention_modules",
    "is_attention",
    "keep_tracker",
    "known_tracker",
    "layer_layouts",
    "model_token_grid",
]


_POOLS = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
)
_FIRST_TYPES = (*CONV_TYPES, *_POOLS, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.Upsample)


def is_attention(module: nn.Module) -> bool:
    """True for a self-attention module: ``nn.MultiheadAttention``, timm's ``Attention``…

    Recognized by type (``nn.MultiheadAttention``), by timm's and others'
    convention (``num_heads`` and the projections: one ``qkv``, or ``q`` with
    ``kv`` (timm's ``AttentionPoolLatent``, PVT) or with ``k`` and ``v``
    (CaiT's ``ClassAttn``)), or by a class name ending in ``Attention``.
    Their internals (per-head queries, keys, values, attention matrices) are
    never read as images.

    Example:
        >>> is_attention(nn.MultiheadAttention(8, 2)), is_attention(nn.Linear(2, 2))
        (True, False)
    """
    if isinstance(module, nn.MultiheadAttention):
        return True
    if hasattr(module, "num_heads"):
        has = [hasattr(module, part) for part in ("qkv", "q", "kv", "k", "v")]
        qkv, q, kv, k, v = has
        if qkv or (q and (kv or (k and v))):
            return True
    return type(module).__name__.endswith("Attention")


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention module, outermost only, in model order."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if name and is_attention(module) and not any(name.startswith(f + ".") for f, _ in found):
            found.append((name, module))
    return found


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def model_token_grid(model: nn.Module, input_hw: Sequence[int]) -> TokenGrid | None:
    """The patch grid of ``model`` at input size ``(H, W)``, or ``None`` if it has none.

    Read from, in order:

    * a submodule with ``grid`` and ``num_prefix_tokens`` (multiviz's built-in ViT);
    * timm's vision transformers: ``patch_embed`` (``dynamic_feat_size`` or
      ``grid_size``), ``num_prefix_tokens``, ``num_reg_tokens``, ``global_pool``;
    * timm's MLP models (MLP-Mixer, ResMLP, gMLP): a ``stem`` patch
      embedding that flattens to tokens, no prefix tokens;
    * torchvision's ``VisionTransformer``: ``conv_proj`` (kernel = stride =
      patch size) and its class token.

    Example:
        >>> model_token_grid(nn.Linear(2, 2), (8, 8)) is None
        True
    """
    h, w = (int(v) for v in input_hw)
    for module in model.modules():
        grid = getattr(module, "grid", None)
        prefix = getattr(module, "num_prefix_tokens", None)
        if grid is not None and isinstance(prefix, int) and not hasattr(module, "patch_embed"):
            registers = prefix - 1 if getattr(module, "cls_token", None) is not None else 0
            return TokenGrid(_pair(grid), prefix, registers=registers)
    embed = getattr(model, "patch_embed", None)
    prefix = getattr(model, "num_prefix_tokens", None)
    stem = getattr(model, "stem", None)
    if embed is None and prefix is None and _flat_patch_embed(stem):
        embed, prefix = stem, 0  # timm's MLP-Mixer, ResMLP, gMLP: patch tokens only
    if embed is not None and isinstance(prefix, int):
        if hasattr(embed, "dynamic_feat_size") and (
            getattr(model, "dynamic_img_size", False) or getattr(embed, "img_size", None) is None
        ):
            grid = embed.dynamic_feat_size((h, w))
        elif getattr(embed, "grid_size", None) is not None:
            grid = embed.grid_size
        else:
            return None
        registers = int(getattr(model, "num_reg_tokens", 0) or 0)
        pooled = getattr(model, "global_pool", "token") in ("token", "")
        has_cls = bool(getattr(model, "has_class_token", prefix > registers))
        return TokenGrid(_pair(grid), prefix, registers, class_token=has_cls and pooled)
    conv = getattr(model, "conv_proj", None)
    if isinstance(conv, nn.Conv2d) and getattr(model, "class_token", None) is not None:
        ph, pw = _pair(conv.stride)
        return TokenGrid((h // ph, w // pw), prefix=1)
    return None


def _flat_patch_embed(module: Any) -> bool:
    """timm's ``PatchEmbed`` that outputs tokens: ``patch_size``, ``grid_size`` and ``flatten``."""
    return (
        module is not None
        and getattr(module, "patch_size", None) is not None
        and getattr(module, "grid_size", None) is not None
        and getattr(module, "flatten", False) is True
    )


def _layout_of_module(module: nn.Module, rank: int, given: str | None) -> str | None:
    """The layout a rank-4 output of ``module`` has, from its type and its input's layout."""
    fmt = str(getattr(module, "output_fmt", ""))  # timm's declared output format
    if fmt.endswith("NHWC"):
        return LAST
    if fmt.endswith("NCHW"):
        return FIRST
    if isinstance(module, nn.modules.normalization.LayerNorm) or isinstance(module, nn.Linear):
        return FIRST if type(module).__name__.endswith("2d") else LAST
    if isinstance(module, _FIRST_TYPES) or type(module).__name__.endswith("2d"):
        return FIRST
    dims = getattr(module, "dims", None)
    if type(module).__name__ == "Permute" and given in (FIRST, LAST) and dims is not None:
        dims = tuple(int(d) for d in dims)
        if dims == (0, 2, 3, 1):
            return LAST if given == FIRST else None
        if dims == (0, 3, 1, 2):
            return FIRST if given == LAST else None
    return None


def _inherit_from_parents(
    layouts: dict[str, str], guessed: dict[str, tuple[int, ...]], shapes: dict[str, tuple[int, ...]]
) -> None:
    """A layer nothing said anything about takes the layout of its nearest ancestor of its shape.

    timm's ``PatchEmbed`` with ``output_fmt="NHWC"`` permutes inside its
    ``forward`` and then calls ``norm`` (often ``nn.Identity``) on the result:
    the norm's output is what the patch embedding outputs.
    """
    for name, shape in guessed.items():
        parts = name.split(".")
        for k in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:k])
            if parent in guessed or shapes.get(parent) != shape:
                continue
            if layouts.get(parent) in (FIRST, LAST):
                layouts[name] = layouts[parent]
                break


Found = tuple[dict[str, str], dict[str, tuple[int | None, ...]]]


class LayoutTracker:
    """Forward hooks on every module that follow each output's layout through one pass.

    The hooks can ride along any pass (:func:`capture_outputs`,
    :func:`compute_gradients`): :meth:`enter` registers them on an
    ``ExitStack``. Token layers are told apart afterwards, for a given grid,
    by :meth:`layouts`, so one pass serves every grid.
    """

    def __init__(self, model: nn.Module, x: ModelInput) -> None:
        self.model: nn.Module | None = model
        self.complete = True  # a finished tracker from the cache; False while riding a pass
        self.base: dict[str, str] = {}  # key -> FIRST / LAST / ATTENTION / OTHER
        self.raw: dict[str, tuple[int | None, ...]] = {}
        self.inside: set[str] = set()  # keys of outputs inside an attention module
        self._known: dict[int, str] = {}  # id(tensor) -> layout, tensors kept alive in _keep
        self._keep: list[torch.Tensor] = list(tensors_of(x))
        for t in self._keep:  # the caller's images are channels first
            self._known[id(t)] = FIRST
        self._seen: set[str] = set()
        self._guessed: dict[str, tuple[int, ...]] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._inside_names: set[str] = set()
        for name, _ in attention_modules(model):
            self._inside_names |= {n for n, _ in model.named_modules() if n.startswith(name + ".")}

    def enter(self, stack: ExitStack) -> None:
        """Register the hooks for the duration of ``stack`` (they follow this thread's pass only)."""
        assert self.model is not None, "a finished tracker cannot ride another pass"
        self._thread = this_thread()
        for name, module in self.model.named_modules():
            if name:
                stack.enter_context(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name in self._seen or this_thread() != self._thread:
                return
            self._seen.add(name)
            for k, (key, t) in enumerate(flatten_output(name, out, module)):
                if k > 0 and is_attention(module):  # attention weights, not tokens
                    layout = ATTENTION
                else:
                    layout = self._layout(name, module, args, t)
                if key == name:
                    self._shapes[name] = tuple(t.shape)
                if t.ndim == 4:  # only maps' layouts are looked up again
                    self._known[id(t)] = layout
                    self._keep.append(t)
                self.base[key] = layout
                self.raw[key] = (None, *t.shape[1:])
                if name in self._inside_names:
                    self.inside.add(key)

        return record

    def _layout(self, name: str, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor):
        if out.ndim != 4:
            return OTHER
        if name in self._inside_names:
            return ATTENTION
        inputs = [a for a in args if isinstance(a, torch.Tensor) and a.ndim == 4]
        given = self._known.get(id(inputs[0])) if len(inputs) == 1 else None
        layout = _layout_of_module(module, 4, given)
        if layout is not None:
            return layout
        if id(out) in self._known:  # a container returning its last child's output
            return self._known[id(out)]
        if given is not None and tuple(inputs[0].shape) == tuple(out.shape):
            return given
        self._guessed[name] = tuple(out.shape)
        return FIRST

    def finish(self) -> None:
        """Settle the guesses and let go of the tensors and the model."""
        _inherit_from_parents(self.base, self._guessed, self._shapes)
        self._keep.clear()
        self._known.clear()
        self.model = None

    def layouts(self, grid: TokenGrid | None) -> dict[str, str]:
        """Key -> layout, rank-3 outputs on ``grid`` as :data:`TOKENS` / :data:`PATCHES`."""
        if grid is None:
            return dict(self.base)
        out = {}
        for key, layout in self.base.items():
            shape = self.raw[key]
            if layout == OTHER and len(shape) == 3 and key not in self.inside:
                if shape[1] == grid.tokens:
                    layout = TOKENS
                elif shape[1] == grid.patches:
                    layout = PATCHES
            out[key] = layout
        return out


def known_tracker(model: nn.Module, x: ModelInput) -> LayoutTracker | None:
    """The finished tracker of an earlier pass with ``x``'s sample shape, if any.

    Finished trackers live in the model's bounded cache (:mod:`multiviz.backends.cache`).
    """
    return lookup(model, ("layouts", sample_shapes(x)))


def keep_tracker(model: nn.Module, x: ModelInput, tracker: LayoutTracker) -> None:
    """Remember a tracker whose pass ran the whole model."""
    tracker.finish()  # the cache must not keep the model alive
    tracker.complete = True
    store(model, ("layouts", sample_shapes(x)), tracker)


def layer_layouts(model: nn.Module, x: ModelInput, grid: TokenGrid | None = None) -> Found:
    """The layout and shape of each module's first-call outputs (one hooked pass, cached).

    Args:
        model: the (unwrapped) module.
        x: an input batch (its shape is what matters; one sample is enough).
        grid: the model's (or the caller's) patch grid, if any.

    Returns:
        ``(layouts, shapes)``: output key (``name``, or ``name[i]`` for a tuple
        output, as capture names them) -> one of :data:`FIRST`, :data:`LAST`,
        :data:`TOKENS`, :data:`PATCHES`, :data:`ATTENTION`, :data:`OTHER`; and
        key -> the raw output shape, batch axis ``None``. Modules that did not
        run are absent.
    """
    tracker = known_tracker(model, x)
    if tracker is None:
        tracker = LayoutTracker(model, x)
        tracker.complete = False
        guarded(model, _track, model, x, tracker)
        keep_tracker(model, x, tracker)
    return tracker.layouts(grid), dict(tracker.raw)


def _track(undo: ExitStack, model: nn.Module, x: torch.Tensor, tracker: LayoutTracker) -> None:
    eval_mode(model, undo)
    undo.enter_context(torch.no_grad())
    entry_check(model, x, undo)
    tracker.enter(undo)
    run_model(model, x)
