"""Gradients of a target score with respect to chosen layers and the input.

What attribution needs from PyTorch, computed with ``torch.autograd.grad`` so
no parameter's ``.grad`` is ever touched. The graph is kept small: every
parameter is frozen for the call, and unless the input's gradient is wanted
the graph starts at the first chosen layer that runs.

Each chosen module's hook keeps the module's own output tensor ``out`` and
returns ``out.clone()`` to the rest of the network. An in-place op downstream
(``ReLU(inplace=True)``) then changes the clone, never ``out``, and the
gradient with respect to ``out`` is exactly d(score) / d(layer output).

A model that ends in ``nn.Softmax`` / ``nn.LogSoftmax`` is scored on the
softmax's input (the logits): gradients of a saturated probability vanish.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.contract import (
    GradientResult,
    Target,
    check_scores,
    class_indices,
)
from multiviz.backends.torch.capture import single_output, snapshot
from multiviz.backends.torch.inputs import entry_check, main_output, run_model, to_numpy
from multiviz.backends.torch.layers import is_softmax
from multiviz.backends.torch.state import eval_mode, frozen_parameters, guided_relus

__all__ = ["compute_gradients", "score"]


def _map_tensors(
    key: str, out: Any, fn: Callable[[str, torch.Tensor], torch.Tensor], module: Any = None
) -> Any:
    """``out`` with ``fn(key, t)`` applied to each tensor, keys as in ``flatten_output``."""
    if isinstance(out, torch.Tensor):
        return fn(key, out)
    if single_output(out, module):  # MultiheadAttention's (output, None): one output
        return (fn(key, out[0]), *out[1:])
    if isinstance(out, (tuple, list)):
        items = [_map_tensors(f"{key}[{i}]", item, fn) for i, item in enumerate(out)]
        if hasattr(out, "_fields"):  # a namedtuple
            return type(out)(*items)
        return type(out)(items)
    if isinstance(out, Mapping):
        mapped = {k: _map_tensors(f"{key}[{k}]", v, fn) for k, v in out.items()}
        try:
            return type(out)(mapped)
        except TypeError:
            return mapped
    return out


class _Watcher:
    """Hooks that keep chosen outputs in the graph and remember the last leaf module."""

    def __init__(self) -> None:
        self.live: dict[str, torch.Tensor] = {}  # key -> tensor the gradient is taken for
        self.values: dict[str, torch.Tensor] = {}  # key -> float32 copy at hook time
        self.calls: dict[str, int] = {}
        self.last: tuple[nn.Module, Any] | None = None  # (leaf module, its first input)

    def chosen_hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
        def keep(key: str, t: torch.Tensor) -> torch.Tensor:
            copy = snapshot(t)
            if copy is None:
                return t
            self.values[key] = copy
            if not t.is_floating_point():
                return t
            if not t.requires_grad:  # no graph before this layer: start one here
                t = t.detach().requires_grad_(True)
            self.live[key] = t
            return t.clone()

        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
            k = self.calls.get(name, 0)
            self.calls[name] = k + 1
            return _map_tensors(name if k == 0 else f"{name}#{k}", out, keep, module)

        return hook

    def leaf_hook(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        self.last = (module, args[0] if args else None)


def _scored_output(out: Any, watcher: _Watcher) -> torch.Tensor:
    """The model's output, or the logits entering a final softmax."""
    output = main_output(out)
    if watcher.last is not None and is_softmax(watcher.last[0]):
        logits = watcher.last[1]
        if isinstance(logits, torch.Tensor) and logits.shape == output.shape:
            return logits
    return output


def score(output: torch.Tensor, target: Target) -> tuple[torch.Tensor, np.ndarray | None]:
    """One score per sample, and the class scored per sample (``None`` for a callable).

    The target is checked by the contract (:func:`~multiviz.backends.contract.class_indices`,
    :func:`~multiviz.backends.contract.check_scores`), as the Keras backend checks it.

    Raises:
        TargetError: ``target`` does not fit the batch or the output.

    Example:
        >>> s, t = score(torch.tensor([[1.0, 3.0], [5.0, 2.0]]), None)
        >>> s.tolist(), t.tolist()
        ([3.0, 5.0], [1, 0])
    """
    n = output.shape[0]
    if callable(target):
        scores = target(output)
        check_scores(scores, n, is_tensor=isinstance(scores, torch.Tensor))
        return scores, None
    idx = torch.as_tensor(class_indices(target, n, tuple(output.shape)), device=output.device)
    index = torch.where(idx < 0, output.argmax(dim=1), idx)
    scores = output.gather(1, index[:, None])[:, 0]
    return scores, index.cpu().numpy().astype(np.int64)


def compute_gradients(
    model: nn.Module,
    x: torch.Tensor,
    chosen: Sequence[tuple[str, nn.Module]],
    target: Target = None,
    wrt_input: bool = False,
    guided: bool | str = False,
    tracker: Any = None,
) -> GradientResult:
    """Activations of ``chosen`` and d(sum of per-sample scores) with respect to each.

    Args:
        model: the module; left exactly as found (modes, ``requires_grad``,
            ``.grad``, hooks), also when something raises.
        x: the input, a private copy on the model's device and dtype.
        chosen: (name, module) pairs.
        target: see :data:`multiviz.backends.contract.Target`.
        wrt_input: also return d(score)/d(input).
        guided: guided backpropagation through every ReLU (module or function);
            ``"deconvnet"``: the deconvnet's rule instead.
        tracker: a layout tracker to ride along the pass (see
            :func:`~multiviz.backends.torch.capture.capture_outputs`), or ``None``.

    Returns:
        A :class:`GradientResult` of float32 NumPy arrays.
    """
    x = x.requires_grad_(wrt_input)
    watcher = _Watcher()
    with ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(frozen_parameters(model))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(entry_check(model, x))
        if guided:  # first, so a chosen ReLU's gradient is the one arriving from above
            stack.enter_context(guided_relus("deconvnet" if guided == "deconvnet" else "guided"))
        for name, module in chosen:
            stack.enter_context(module.register_forward_hook(watcher.chosen_hook(name)))
        for module in model.modules():
            if next(module.children(), None) is None:
                stack.enter_context(module.register_forward_hook(watcher.leaf_hook))
        if tracker is not None:
            tracker.enter(stack)
        output = _scored_output(run_model(model, x), watcher)
        if tracker is not None:
            tracker.complete = True
        scores, targets = score(output, target)
        wrt = [*watcher.live.values(), *([x] if wrt_input else [])]
        grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
        if wrt and scores.requires_grad:
            grads = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    by_tensor = dict(zip(map(id, wrt), grads, strict=True))

    def grad_of(t: torch.Tensor) -> np.ndarray:
        g = by_tensor.get(id(t))
        return to_numpy(g) if g is not None else np.zeros(tuple(t.shape), np.float32)

    return GradientResult(
        output=to_numpy(output),
        targets=targets,
        scores=to_numpy(scores),
        activations={k: v.cpu().numpy() for k, v in watcher.values.items()},
        gradients={k: grad_of(watcher.live.get(k, v)) for k, v in watcher.values.items()},
        input_gradient=grad_of(x) if wrt_input else None,
    )
