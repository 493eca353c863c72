"""Temporary changes to a PyTorch model, each undone exactly on the way out.

Every function here is a context manager: leaving it — normally or through an
exception — is the only way out, and it puts back precisely what it found
(each module's own ``training`` flag, each parameter's own ``requires_grad``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["eval_mode", "frozen_parameters", "guided_relus"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode; each module's own flag restored afterwards.

    The flags are set directly rather than through ``model.eval()``, so a
    ``train()`` override with side effects is not triggered on the way in
    without its counterpart on the way out; a model already in eval mode is
    not touched at all.

    Example:
        >>> net = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()).train()
        >>> net[1].eval()
        Dropout(p=0.5, inplace=False)
        >>> with eval_mode(net):
        ...     [m.training for m in net.modules()]
        [False, False, False]
        >>> [m.training for m in net.modules()]
        [True, True, False]
    """
    changed = [m for m in model.modules() if m.training]
    try:
        for m in changed:
            m.training = False
        yield
    finally:
        for m in changed:
            m.training = True


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """``requires_grad=False`` on every parameter; each flag restored afterwards.

    Gradients are then taken only where multiviz starts a graph (the input or
    a chosen layer), and no parameter gradient is ever computed.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> _ = net.bias.requires_grad_(False)
        >>> with frozen_parameters(net):
        ...     net.weight.requires_grad
        False
        >>> net.weight.requires_grad, net.bias.requires_grad
        (True, False)
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class _GuidedReLUGrad(torch.autograd.Function):
    """Identity forward; guided backpropagation's rule backward.

    Applied to a ReLU's output ``out``: the gradient passed down is
    ``grad * (out > 0) * (grad > 0)`` (Springenberg et al. 2015) — only
    positive gradients through units that were active.
    """

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(out)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return grad * (out > 0) * (grad > 0)


def _guide(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
    if isinstance(out, torch.Tensor) and out.requires_grad:
        return _GuidedReLUGrad.apply(out)
    return None


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[None]:
    """Guided backpropagation through every ``nn.ReLU`` module, for this block only.

    Only ``nn.ReLU`` modules are guided: a ``torch.relu`` / ``F.relu`` call
    inside a ``forward()`` method has no module to hook and keeps its plain
    gradient.
    """
    with ExitStack() as stack:
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                stack.enter_context(module.register_forward_hook(_guide))
        yield
