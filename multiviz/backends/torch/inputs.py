"""Getting an input into a PyTorch model, and saying clearly when it does not fit.

The input is copied onto the model's device and floating dtype, so neither the
caller's array nor tensor can be changed by an in-place op inside the model. A
model whose ``forward`` takes several inputs gets a tuple or a list of them as
positional arguments, a dict as keyword arguments (read by the contract's
:func:`~multiviz.backends.contract.read_inputs`).
Its shape is checked where it matters — at the first convolution or linear
layer the model actually runs — and a shape error from deeper in the forward
pass is re-raised as :class:`~multiviz.errors.InputShapeError` naming the fix.
"""

from __future__ import annotations

import inspect
import itertools
import re
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.contract import Inputs, read_inputs
from multiviz.backends.contract import main_output as contract_main_output
from multiviz.backends.guard import this_thread
from multiviz.backends.torch.layers import CONV_TYPES
from multiviz.errors import InputShapeError, InputTypeError

__all__ = [
    "ModelInput",
    "entry_check",
    "entry_layer",
    "first_rows",
    "input_count",
    "input_shapes",
    "main_output",
    "model_device_dtype",
    "run_model",
    "sample_shapes",
    "tensors_of",
    "to_model_input",
    "to_numpy",
]

#: what :func:`to_model_input` returns: one tensor, or several as the caller structured them
ModelInput = torch.Tensor | Inputs

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


def input_count(model: nn.Module) -> int | None:
    """How many positional inputs ``model.forward`` takes, or ``None`` if that is open.

    ``None`` for ``forward(*args)`` and for a ``forward`` with optional
    positional parameters (``forward(x, mask=None)``): then a tuple or list
    of arrays is read as several inputs, anything else as one.

    Example:
        >>> input_count(nn.Linear(2, 2)), input_count(nn.Bilinear(2, 2, 1))
        (1, 2)
    """
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if any(p.kind == p.VAR_POSITIONAL or p.default is not p.empty for p in positional):
        return None
    return len(positional)


def to_model_input(x: Any, model: nn.Module) -> ModelInput:
    """A private copy of ``x`` on the model's device, in its floating dtype.

    Integer input stays integer when the model starts with an embedding. A
    tuple, list or dict of arrays for a model taking several inputs comes back
    as :class:`~multiviz.backends.contract.Inputs` of such copies.

    Raises:
        InputTypeError: ``x`` (or one of several inputs) is not a NumPy array or a tensor.
        InputShapeError: ``x`` is a scalar.

    Example:
        >>> to_model_input(np.zeros((1, 3), np.float64), nn.Linear(3, 2)).dtype
        torch.float32
    """
    inputs = read_inputs(x, input_count(model))
    if inputs.kind == "one":
        return _to_tensor(inputs.parts[0], model, None)
    labels = inputs.labels
    parts = tuple(
        _to_tensor(p, model, label) for p, label in zip(inputs.parts, labels, strict=True)
    )
    return Inputs(parts, inputs.kind, inputs.names)


def tensors_of(x: ModelInput) -> tuple[torch.Tensor, ...]:
    """The tensors of a model input, in order."""
    return x.parts if isinstance(x, Inputs) else (x,)


def first_rows(x: ModelInput, rows: int = 1) -> ModelInput:
    """The first ``rows`` samples of a model input (of each of several inputs)."""
    if isinstance(x, Inputs):
        return Inputs(tuple(t[:rows] for t in x.parts), x.kind, x.names)
    return x[:rows]


def sample_shapes(x: ModelInput) -> tuple[int, ...] | tuple[tuple[int, ...], ...]:
    """One sample's shape (without the batch axis); for several inputs, one per input."""
    if isinstance(x, Inputs):
        return tuple(tuple(t.shape[1:]) for t in x.parts)
    return tuple(x.shape[1:])


def input_shapes(x: ModelInput) -> tuple[tuple[int, ...], ...]:
    """The shape of each tensor of a model input (one shape for one input)."""
    return tuple(tuple(t.shape) for t in tensors_of(x))


def _shown(x: ModelInput) -> str:
    shapes = input_shapes(x)
    return str(shapes[0]) if len(shapes) == 1 else ", ".join(map(str, shapes))


def _to_tensor(x: Any, model: nn.Module, label: str | None) -> torch.Tensor:
    what = "The input" if label is None else f"The model's {label}"
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise InputTypeError(
                f"{what} must hold numbers. Received a NumPy array of dtype {x.dtype}.\n"
                "hint: convert it with x.astype(np.float32)"
            )
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("=")))
    else:
        raise InputTypeError(
            f"{what} must be a NumPy array or a torch.Tensor. Received {type(x).__name__}.\n"
            "hint: convert it with np.asarray(x): a batch of images is one array "
            "(N, C, H, W), see mv.to_channels_first"
        )
    if t.ndim == 0:
        raise InputShapeError(f"{what} is a scalar. Pass a batch, e.g. (N, C, H, W) for a 2-D CNN.")
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
        fixes = []
        if channels == 1 and shape[0] != 1:
            fixes.append(
                "a batch of one-channel images needs a channel axis: "
                f"x[:, None] -> {(shape[0], 1, *shape[1:])}"
            )
        if shape[0] == channels:
            fixes.append(f"one image needs a batch axis: x[None] -> {(1, *shape)}")
        elif shape[-1] == channels:
            fixes.append("one channels-last image: mv.to_channels_first(x[None])")
        if not fixes:
            return f"{where}: a {rank}-D batch. Received a {len(shape)}-D input of shape {shape}."
        return f"{where}. Received shape {shape}, {len(shape)} axes.\nhint: " + "; ".join(fixes)
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


def entry_check(model: nn.Module, x: ModelInput, undo: ExitStack) -> None:
    """Check ``x`` where it meets the model's :func:`entry_layer`, until ``undo`` closes.

    A forward pre-hook on that layer (removed when ``undo`` closes) looks at
    its first call in this thread, and only when it receives ``x``'s shape
    unchanged: then the message can speak about ``x`` itself. Anything else is
    left to PyTorch, whose shape errors :func:`run_model` rewords. Calls from
    other threads are not looked at. Several inputs are not checked here
    (which of them reaches the entry layer is the model's business).

    Raises:
        InputShapeError: from the forward pass, when ``x`` cannot enter that layer.
    """
    entry = entry_layer(model)
    if entry is None or isinstance(x, Inputs):
        return
    name, module = entry
    shape = tuple(x.shape)
    owner = this_thread()
    looked: list[bool] = []

    def check(module: nn.Module, args: tuple[Any, ...]) -> None:
        if looked or this_thread() != owner:  # one look is enough; other threads: none
            return
        looked.append(True)
        if args and isinstance(args[0], torch.Tensor) and tuple(args[0].shape) == shape:
            message = _entry_message(name, module, shape)
            if message:
                raise InputShapeError(message)

    undo.enter_context(module.register_forward_pre_hook(check))  # added, undo registered


def run_model(model: nn.Module, x: ModelInput) -> Any:
    """``model(x)`` — ``model(*x)`` / ``model(**x)`` for several inputs — with clear errors.

    Raises:
        InputShapeError: the forward pass failed on the input's shape, or the
            model takes another number of inputs than it was given; the
            original error is the ``__cause__``.
    """
    try:
        if isinstance(x, Inputs):
            if x.kind == "dict":
                return model(**x.pack(x.parts))
            return model(*x.parts)
        return model(x)
    except TypeError as err:
        message = _arity_message(model, x, err)
        if message is None:
            raise
        raise InputShapeError(message) from err
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
            f"The input of shape {_shown(x)} does not fit the model: {first_line}.{hint} "
            "Check the batch axis, the channel order (PyTorch takes channels first) and the "
            "spatial size the model was built for; mv.layers(model, input_shape=...) shows "
            "every layer's output shape."
        ) from err


_ARITY = re.compile(r"forward\(\) (missing \d+ required positional|takes \d+ positional)")


def _arity_message(model: nn.Module, x: ModelInput, err: TypeError) -> str | None:
    """The message for a ``forward`` given the wrong number of inputs, or ``None``."""
    if not _ARITY.search(str(err)):
        return None
    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    given = len(tensors_of(x))
    takes = f"{len(params)} inputs ({', '.join(params)})" if params else "another number of inputs"
    example = "(" + ", ".join(params) + ")" if len(params) > 1 else "(a, b)"
    return (
        f"{type(model).__name__}.forward takes {takes}; received {given} "
        f"{'input' if given == 1 else 'inputs'}.\n"
        f"hint: pass a tuple with one array per input, in forward's order: x={example}"
    )


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
