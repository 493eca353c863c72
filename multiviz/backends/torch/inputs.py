"""Getting an input into a PyTorch model, and saying clearly when it does not fit.

The input is copied onto the model's device and floating dtype, so neither the
caller's array nor tensor can be changed by an in-place op inside the model.
Its shape is checked where it matters — at the first convolution or linear
layer the model actually runs — and a shape error from deeper in the forward
pass is re-raised as :class:`~multiviz.errors.InputShapeError` naming the fix.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.contract import main_output as contract_main_output
from multiviz.backends.torch.layers import CONV_TYPES
from multiviz.errors import InputShapeError, InputTypeError

__all__ = [
    "entry_check",
    "entry_layer",
    "main_output",
    "model_device_dtype",
    "run_model",
    "to_model_input",
    "to_numpy",
]

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
# RuntimeError messages from torch that are about the input's shape
_SHAPE_WORDS = re.compile(r"shape|size|dimension|channel|mat1|mat2|\dD\b|expected.*input", re.I)


def model_device_dtype(model: nn.Module) -> tuple[torch.device | None, torch.dtype]:
    """The device of the first parameter or buffer, and the first floating dtype.

    Returns ``(None, torch.float32)`` for a model with neither: such a model
    runs wherever its input is.

    Example:
        >>> model_device_dtype(nn.Linear(2, 2).double())
        (device(type='cpu'), torch.float64)
    """
    device = None
    for t in itertools.chain(model.parameters(), model.buffers()):
        device = device or t.device
        if t.is_floating_point():
            return device, t.dtype
    return device, torch.float32


def to_model_input(x: Any, model: nn.Module) -> torch.Tensor:
    """A private copy of ``x`` on the model's device, in its floating dtype.

    Integer input stays integer when the model starts with an embedding.

    Raises:
        InputTypeError: ``x`` is not a NumPy array or a tensor.
        InputShapeError: ``x`` is a scalar.

    Example:
        >>> to_model_input(np.zeros((1, 3), np.float64), nn.Linear(3, 2)).dtype
        torch.float32
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise InputTypeError(
                f"The input must hold numbers. Received a NumPy array of dtype {x.dtype}. "
                "Convert it with x.astype(np.float32)."
            )
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("=")))
    else:
        raise InputTypeError(
            f"The input must be a NumPy array or a torch.Tensor. Received {type(x).__name__}. "
            "Convert it with np.asarray(x) (an image as (N, C, H, W), see mv.to_channels_first)."
        )
    if t.ndim == 0:
        raise InputShapeError(
            "The input is a scalar. Pass a batch, e.g. (N, C, H, W) for a 2-D CNN."
        )
    device, dtype = model_device_dtype(model)
    keep_integer = not t.is_floating_point() and _starts_with_embedding(model)
    return t.to(device=device or t.device, dtype=None if keep_integer else dtype, copy=True)


def _starts_with_embedding(model: nn.Module) -> bool:
    owner = next((m for m in model.modules() if next(m.parameters(False), None) is not None), None)
    return isinstance(owner, (nn.Embedding, nn.EmbeddingBag))


def _expected(module: nn.Module) -> str:
    if isinstance(module, CONV_TYPES):
        return f"(N, {module.in_channels}, {_SPATIAL.get(len(module.kernel_size), '...')})"
    return f"(N, {module.in_features})"


def _entry_message(name: str, module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """Why ``shape`` cannot enter ``module``, with the fix; ``None`` when it can."""
    where = (
        f"The model's first layer {name!r} ({type(module).__name__}) expects {_expected(module)}"
    )
    if isinstance(module, nn.Linear):
        if module.in_features and shape[-1] != module.in_features:
            return f"{where}. Received shape {shape}: {shape[-1]} features on the last axis."
        return None
    channels, rank = module.in_channels, len(module.kernel_size) + 2
    if not channels:  # a lazy convolution: any channel count is fine
        return None
    if len(shape) == rank - 1:
        fix = f"Add a batch axis: x[None] -> {(1, *shape)}"
        if channels == 1 and shape[0] != 1:
            fix += f", or for a batch of one-channel images a channel axis: x[:, None] -> {(shape[0], 1, *shape[1:])}"
        elif shape[-1] == channels and shape[0] != channels:
            fix += "; it also looks channels-last, so use mv.to_channels_first(x[None])"
        return f"{where}. Received shape {shape}, one sample without a batch axis. {fix}."
    if len(shape) != rank:
        return f"{where}: a {rank}-D batch. Received a {len(shape)}-D input of shape {shape}."
    if shape[1] != channels:
        if shape[-1] == channels:
            fix = "It looks channels-last; convert it with mv.to_channels_first(x)."
        else:
            fix = f"Pass a batch with {channels} channels on axis 1."
        return f"{where}. Received shape {shape}, {shape[1]} channels on axis 1. {fix}"
    return None


def entry_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The layer an input meets first: the first convolution, else the first linear layer.

    Example:
        >>> entry_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
        ('1', Linear(in_features=4, out_features=2, bias=True))
    """
    named = [(n or "(root)", m) for n, m in model.named_modules()]
    for kinds in (CONV_TYPES, (nn.Linear,)):
        found = next(((n, m) for n, m in named if isinstance(m, kinds)), None)
        if found:
            return found
    return None


@contextmanager
def entry_check(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Check ``x`` where it meets the model's :func:`entry_layer`.

    A forward pre-hook on that layer (removed on exit) looks at its first
    call, and only when it receives ``x``'s shape unchanged: then the message
    can speak about ``x`` itself. Anything else is left to PyTorch, whose
    shape errors :func:`run_model` rewords.

    Raises:
        InputShapeError: from the forward pass, when ``x`` cannot enter that layer.
    """
    entry = entry_layer(model)
    if entry is None:
        yield
        return
    name, module = entry
    shape = tuple(x.shape)

    def check(module: nn.Module, args: tuple[Any, ...]) -> None:
        handle.remove()  # one look is enough; a reused layer then runs hook-free
        if args and isinstance(args[0], torch.Tensor) and tuple(args[0].shape) == shape:
            message = _entry_message(name, module, shape)
            if message:
                raise InputShapeError(message)

    handle = module.register_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def run_model(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``, with a shape ``RuntimeError`` re-raised as :class:`InputShapeError`.

    Raises:
        InputShapeError: the forward pass failed on the input's shape; the
            original error is the ``__cause__``.
    """
    try:
        return model(x)
    except RuntimeError as err:
        if not _SHAPE_WORDS.search(str(err)):
            raise
        entry = entry_layer(model)
        hint = (
            f" Its first layer {entry[0]!r} ({type(entry[1]).__name__}) expects {_expected(entry[1])}."
            if entry
            else ""
        )
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputShapeError(
            f"The input of shape {tuple(x.shape)} does not fit the model: {first_line}.{hint} "
            "Check the batch axis, the channel order (PyTorch takes channels first) and the "
            "spatial size the model was built for; mv.layers(model, input_shape=...) shows "
            "every layer's output shape."
        ) from err


def main_output(out: Any) -> torch.Tensor:
    """The tensor a model's output stands for: itself, ``["logits"]``, or the first tensor.

    The contract's one rule (:func:`multiviz.backends.contract.main_output`).

    Raises:
        TypeError: the output holds no tensor.
    """
    return contract_main_output(out, lambda t: isinstance(t, torch.Tensor))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy of ``t`` (from any device).

    Example:
        >>> to_numpy(torch.ones(2, dtype=torch.float64))
        array([1., 1.], dtype=float32)
    """
    return t.detach().to(device="cpu", dtype=torch.float32, copy=True).numpy()
