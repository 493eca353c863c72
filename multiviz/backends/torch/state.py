"""Temporary changes to a PyTorch model, each undone exactly on the way out.

Each function here makes its changes for the length of one backend call and
registers their undo on the call's undo stack (an
:class:`~contextlib.ExitStack`, see :mod:`multiviz.backends.guard`): the undo
of each change *before* the change, and as a builtin or a torch function (not
a line of multiviz), so that however the call ends — an error, or a
``KeyboardInterrupt`` landing on any line — each module's own ``training``
flag and each parameter's own ``requires_grad`` are put back exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["eval_mode", "frozen_parameters", "guided_relus"]


def eval_mode(model: nn.Module, undo: ExitStack) -> None:
    """Every module in eval mode until ``undo`` closes; each module's own flag restored then.

    The flags are set directly rather than through ``model.eval()``, so a
    ``train()`` override with side effects is not triggered on the way in
    without its counterpart on the way out; a model already in eval mode is
    not touched at all.

    Example:
        >>> from contextlib import ExitStack
        >>> net = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()).train()
        >>> net[1].eval()
        Dropout(p=0.5, inplace=False)
        >>> with ExitStack() as undo:
        ...     eval_mode(net, undo)
        ...     [m.training for m in net.modules()]
        [False, False, False]
        >>> [m.training for m in net.modules()]
        [True, True, False]
    """
    for m in model.modules():
        if m.training:
            undo.callback(setattr, m, "training", True)  # the undo before the change
            m.training = False


def frozen_parameters(model: nn.Module, undo: ExitStack) -> None:
    """``requires_grad=False`` on every parameter until ``undo`` closes; each flag restored then.

    Gradients are then taken only where multiviz starts a graph (the input or
    a chosen layer), and no parameter gradient is ever computed.

    Example:
        >>> from contextlib import ExitStack
        >>> net = nn.Linear(2, 2)
        >>> _ = net.bias.requires_grad_(False)
        >>> with ExitStack() as undo:
        ...     frozen_parameters(net, undo)
        ...     net.weight.requires_grad
        False
        >>> net.weight.requires_grad, net.bias.requires_grad
        (True, False)
    """
    for p in model.parameters():
        if p.requires_grad:
            undo.callback(p.requires_grad_, True)  # the undo before the change
            p.requires_grad_(False)


class _GuidedReLU(torch.autograd.Function):
    """ReLU (or ReLU6: ``upper=6``) forward; guided backpropagation's rule backward.

    The gradient passed down is ``max(grad, 0)`` where the unit was active
    (``0 < out < upper``) and 0 elsewhere (Springenberg et al. 2015): only
    positive gradients, through active units. With ``rule="deconvnet"`` it is
    ``max(grad, 0)`` whatever the forward input was (Zeiler & Fergus 2014).
    ``inplace=True`` rewrites the input, as ``relu_`` does.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, inplace: bool, upper: float | None, rule: str = "guided"
    ) -> torch.Tensor:
        if inplace:
            out = x.clamp_(min=0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0, max=upper)
        ctx.save_for_backward(out)
        ctx.upper = upper
        ctx.rule = rule
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        if ctx.rule == "deconvnet":
            return grad.clamp(min=0), None, None, None
        (out,) = ctx.saved_tensors
        active = out > 0
        if ctx.upper is not None:
            active &= out < ctx.upper
        return grad.clamp(min=0) * active, None, None, None


Arg = Callable[[int, str, Any], Any]  # arg(position, keyword, default) of one call


def _relu_entry_points() -> dict[Any, Callable[[Arg], tuple[bool, float | None] | None]]:
    """Every ReLU entry point -> how to read ``(inplace, upper)`` off its call.

    ``F.relu`` is what ``nn.ReLU`` calls, ``F.hardtanh`` with ``min_val=0`` what
    ``nn.ReLU6`` calls; a reader returns None for a call that is no ReLU.
    """
    F = torch.nn.functional

    def fixed(inplace: bool) -> Callable[[Arg], tuple[bool, None]]:
        return lambda arg: (inplace, None)

    def hardtanh(arg: Arg) -> tuple[bool, float] | None:
        if arg(1, "min_val", -1.0) != 0:
            return None
        return bool(arg(3, "inplace", False)), float(arg(2, "max_val", 1.0))

    return {
        torch.relu: fixed(False),
        torch.Tensor.relu: fixed(False),
        torch.relu_: fixed(True),
        torch.Tensor.relu_: fixed(True),
        F.relu_: fixed(True),
        F.relu: lambda arg: (bool(arg(1, "inplace", False)), None),
        F.relu6: lambda arg: (bool(arg(1, "inplace", False)), 6.0),
        F.hardtanh: hardtanh,
    }


class _GuidedReLUMode(TorchFunctionMode):
    """Routes every ReLU call on a tensor that needs a gradient through ``_GuidedReLU``."""

    def __init__(self, rule: str = "guided") -> None:
        super().__init__()
        self.relus = _relu_entry_points()
        self.rule = rule

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        read = self.relus.get(func)
        if read is None:
            return func(*args, **kwargs)

        def arg(i: int, name: str, default: Any) -> Any:
            return args[i] if len(args) > i else kwargs.get(name, default)

        x, call = arg(0, "input", None), read(arg)
        if call is None or not (
            isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled()
        ):
            return func(*args, **kwargs)
        return _GuidedReLU.apply(x, *call, self.rule)


def guided_relus(undo: ExitStack, rule: str = "guided") -> None:
    """Guided backpropagation through every ReLU and ReLU6 this thread runs until ``undo`` closes.

    ``rule="deconvnet"`` uses the deconvnet's backward rule instead (only
    positive gradients, whatever the forward input: Zeiler & Fergus 2014).

    Catches ``nn.ReLU`` / ``nn.ReLU6`` modules and ``F.relu`` /
    ``torch.relu`` / ``Tensor.relu`` / ``F.relu6`` calls alike (in place or
    not), through a ``TorchFunctionMode``: no module is changed, and the mode
    is the calling thread's own (PyTorch keeps the mode stack per thread), so
    another thread's forward pass is not guided.

    Example:
        >>> from contextlib import ExitStack
        >>> x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
        >>> with ExitStack() as undo:
        ...     guided_relus(undo)
        ...     y = torch.relu(x)
        >>> y.backward(torch.tensor([5.0, -4.0, 1.0]))
        >>> x.grad  # negative input, negative gradient: both blocked
        tensor([0., 0., 1.])
    """
    undo.enter_context(_GuidedReLUMode(rule))  # entered and its exit registered in one step
