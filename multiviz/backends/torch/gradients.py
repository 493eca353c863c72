"""Gradients of a target score with respect to chosen layers and the input.

What attribution needs from PyTorch, computed with ``torch.autograd.grad`` so
no parameter's ``.grad`` is ever touched. The graph is kept small: every
parameter is frozen for the call, and unless the input's gradient is wanted
the graph starts at the first chosen layer that runs.

Each chosen module's hook keeps the module's own output tensor ``out`` and
returns ``out.clone()`` to the rest of the network. An in-place op downstream
(``ReLU(inplace=True)``) then changes the clone, never ``out``, and the
gradient with respect to ``out`` is exactly d(score) / d(layer output).

A model whose output ends in ``nn.Softmax`` / ``nn.LogSoftmax`` /
``nn.Sigmoid`` is scored on that module's input (the logits): gradients of a
saturated probability vanish. Every such module's call is watched, so each
output of a model that returns a tuple, a list or a dict is replaced by its
logits where it has them; a callable target receives that whole structure,
a class index scores its main output (:func:`~multiviz.backends.contract.main_output`).
A ``torch.sigmoid`` / ``F.softmax`` called inside ``forward`` is no module and
cannot be seen: such a model is scored on its probabilities.
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
    Inputs,
    Target,
    class_indices,
    main_output,
    score_callable,
)
from multiviz.backends.guard import this_thread
from multiviz.backends.torch.capture import batch_first, single_output, snapshot
from multiviz.backends.torch.inputs import ModelInput, entry_check, run_model, tensors_of, to_numpy
from multiviz.backends.torch.layers import head_kind
from multiviz.backends.torch.state import eval_mode, frozen_parameters, guided_relus

__all__ = ["compute_gradients", "score", "scored_outputs"]


def _map_tensors(
    key: str,
    out: Any,
    fn: Callable[[str, torch.Tensor], torch.Tensor],
    module: Any = None,
    views: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    _at: tuple[int, ...] = (),
) -> Any:
    """``out`` with ``fn(key, t)`` applied to each tensor, keys as in ``flatten_output``.

    ``views``, if given, is filled with key -> how to lay that tensor out for
    the caller (a recurrent module's batch-first view, see ``batch_first``).
    """
    if isinstance(out, torch.Tensor):
        if views is not None and isinstance(module, nn.RNNBase):
            views[key] = lambda t, m=module, at=_at: batch_first(m, at, t)
        return fn(key, out)
    if single_output(out, module):  # MultiheadAttention's (output, None): one output
        return (fn(key, out[0]), *out[1:])
    if isinstance(out, (tuple, list)):
        inner = module if isinstance(module, nn.RNNBase) else None
        items = [
            _map_tensors(f"{key}[{i}]", item, fn, inner, views, (*_at, i))
            for i, item in enumerate(out)
        ]
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
    """Hooks that keep chosen outputs in the graph and remember what each head module received."""

    def __init__(self) -> None:
        self.thread = this_thread()  # passes of other threads are left alone
        self.live: dict[str, torch.Tensor] = {}  # key -> tensor the gradient is taken for
        self.values: dict[str, torch.Tensor] = {}  # key -> float32 copy at hook time
        self.calls: dict[str, int] = {}
        self.views: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}  # key -> batch first
        # id(output of a softmax / sigmoid module) -> (that output, its input, "softmax"...);
        # the output is held so that its id cannot be reused by another tensor in the pass
        self.heads: dict[int, tuple[torch.Tensor, torch.Tensor, str]] = {}

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
            if this_thread() != self.thread:
                return None
            k = self.calls.get(name, 0)
            self.calls[name] = k + 1
            return _map_tensors(name if k == 0 else f"{name}#{k}", out, keep, module, self.views)

        return hook

    def head_hook(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if this_thread() != self.thread:  # passes of other threads are left alone
            return
        kind = head_kind(module)
        x = args[0] if args else None
        if kind and isinstance(out, torch.Tensor) and isinstance(x, torch.Tensor):
            if x.shape == out.shape:
                self.heads[id(out)] = (out, x, kind)


def _is_tensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor)


def _per_input(x: ModelInput, grads: list[np.ndarray]) -> Any:
    """One gradient per input, in the structure the inputs came in (one array for one)."""
    return x.pack(grads) if isinstance(x, Inputs) else grads[0]


def scored_outputs(out: Any, watcher: _Watcher) -> tuple[Any, torch.Tensor, str | None]:
    """The whole output with logits for probabilities, its main output, and that one's head.

    Returns:
        ``(whole, main, head)``: the model's output structure with every tensor
        a softmax / sigmoid module produced replaced by that module's input;
        the main output (:func:`~multiviz.backends.contract.main_output`) of
        it; and ``"softmax"`` / ``"sigmoid"`` when the main output was behind
        one, else ``None``.
    """
    behind: dict[int, str] = {}

    def logits(key: str, t: torch.Tensor) -> torch.Tensor:
        found = watcher.heads.get(id(t))
        if found is None or found[0] is not t:
            return t
        behind[id(found[1])] = found[2]
        return found[1]

    whole = _map_tensors("", out, logits)
    main = main_output(whole, _is_tensor)
    return whole, main, behind.get(id(main))


def score(
    output: torch.Tensor, target: Target, whole: Any = None
) -> tuple[torch.Tensor, np.ndarray | None]:
    """One score per sample, and the class scored per sample (``None`` for a callable).

    Args:
        output: the main output (logits), ``(N, classes)`` for a class index.
        target: see :data:`~multiviz.backends.contract.Target`.
        whole: the model's whole output, which a callable target receives;
            default ``output``.

    The target is checked by the contract (:func:`~multiviz.backends.contract.class_indices`,
    :func:`~multiviz.backends.contract.score_callable`), as the Keras backend checks it.

    Raises:
        TargetError: ``target`` does not fit the batch or the output.

    Example:
        >>> s, t = score(torch.tensor([[1.0, 3.0], [5.0, 2.0]]), None)
        >>> s.tolist(), t.tolist()
        ([3.0, 5.0], [1, 0])
    """
    n = output.shape[0]
    if callable(target):
        scores = score_callable(target, output if whole is None else whole, n, _is_tensor)
        return scores, None
    idx = torch.as_tensor(class_indices(target, n, tuple(output.shape)), device=output.device)
    index = torch.where(idx < 0, output.argmax(dim=1), idx)
    scores = output.gather(1, index[:, None])[:, 0]
    return scores, index.cpu().numpy().astype(np.int64)


def compute_gradients(
    undo: ExitStack,
    model: nn.Module,
    x: ModelInput,
    chosen: Sequence[tuple[str, nn.Module]],
    target: Target = None,
    wrt_input: bool = False,
    guided: bool | str = False,
    tracker: Any = None,
) -> GradientResult:
    """Activations of ``chosen`` and d(sum of per-sample scores) with respect to each.

    Args:
        undo: the call's undo stack (run this through
            :func:`multiviz.backends.guard.guarded`).
        model: the module; left exactly as found (modes, ``requires_grad``,
            ``.grad``, hooks) when ``undo`` closes, also when something raises.
        x: the input, a private copy on the model's device and dtype (several
            inputs as :class:`~multiviz.backends.contract.Inputs`).
        chosen: (name, module) pairs.
        target: see :data:`multiviz.backends.contract.Target`.
        wrt_input: also return d(score)/d(input) (one per input, in the
            structure the inputs came in).
        guided: guided backpropagation through every ReLU (module or function);
            ``"deconvnet"``: the deconvnet's rule instead.
        tracker: a layout tracker to ride along the pass (see
            :func:`~multiviz.backends.torch.capture.capture_outputs`), or ``None``.

    Returns:
        A :class:`GradientResult` of float32 NumPy arrays.
    """
    inputs = tensors_of(x)
    for t in inputs:
        t.requires_grad_(wrt_input)
    watcher = _Watcher()
    eval_mode(model, undo)
    frozen_parameters(model, undo)
    undo.enter_context(torch.enable_grad())
    entry_check(model, x, undo)
    if guided:  # first, so a chosen ReLU's gradient is the one arriving from above
        guided_relus(undo, "deconvnet" if guided == "deconvnet" else "guided")
    for name, module in chosen:
        undo.enter_context(module.register_forward_hook(watcher.chosen_hook(name)))
    for module in model.modules():  # after the chosen hooks: they see the clones
        if head_kind(module):
            undo.enter_context(module.register_forward_hook(watcher.head_hook))
    if tracker is not None:
        tracker.enter(undo)
    whole, output, head = scored_outputs(run_model(model, x), watcher)
    if tracker is not None:
        tracker.complete = True
    scores, targets = score(output, target, whole)
    wrt = [*watcher.live.values(), *(inputs if wrt_input else ())]
    grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
    if wrt and scores.requires_grad:
        grads = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    by_tensor = dict(zip(map(id, wrt), grads, strict=True))

    def grad_of(t: torch.Tensor) -> np.ndarray:
        g = by_tensor.get(id(t))
        return to_numpy(g) if g is not None else np.zeros(tuple(t.shape), np.float32)

    def laid_out(key: str, t: torch.Tensor) -> torch.Tensor:
        view = watcher.views.get(key)
        return view(t) if view is not None else t

    def grad_laid_out(key: str, t: torch.Tensor) -> np.ndarray:
        g = by_tensor.get(id(t))
        g = torch.zeros_like(t) if g is None else g
        return to_numpy(laid_out(key, g))

    return GradientResult(
        output=to_numpy(output),
        targets=targets,
        scores=to_numpy(scores),
        activations={
            k: np.ascontiguousarray(laid_out(k, v).cpu().numpy()) for k, v in watcher.values.items()
        },
        gradients={k: grad_laid_out(k, watcher.live.get(k, v)) for k, v in watcher.values.items()},
        input_gradient=_per_input(x, [grad_of(t) for t in inputs]) if wrt_input else None,
        head=head,
    )
