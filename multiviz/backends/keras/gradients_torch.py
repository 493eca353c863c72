"""Gradients of a class score w.r.t. chosen layer outputs, Keras on torch.

On its torch backend a Keras model is an ``nn.Module`` and its layers' outputs
are ordinary autograd tensors. One eager pass runs the model's graph node by
node (:func:`.gradients_tf.record_forward`, written with ``keras.ops``) under
``torch.enable_grad()`` on a private copy of the input that requires grad,
recording the chosen layers' outputs; ``torch.autograd.grad`` then
differentiates the summed score with respect to them (and to the input when
asked). ``autograd.grad`` returns the gradients instead of accumulating them:
no weight's ``.grad`` is touched, and no ``requires_grad`` flag is changed.
Subclassed models (no graph) record their layers by wrapping ``call`` for the
one pass, as on TensorFlow.

Guided backpropagation and the deconvnet swap every ReLU for a
``torch.autograd.Function`` with their backward rule, for the one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from multiviz.backends.contract import class_indices
from multiviz.backends.keras.gradients import guided_rule, relu_patches
from multiviz.backends.keras.gradients_tf import (
    StepResult,
    callable_scores,
    logits_of,
    pick_scores,
    record_forward,
)
from multiviz.backends.keras.layers import Site, graph_of
from multiviz.backends.keras.state import swapped

__all__ = ["compute_gradients", "guide"]


def guide(
    forward: Callable[[Any], Any], lower: float, upper: float | None, rule: str
) -> Callable[[Any], Any]:
    """``forward`` with the guided (or deconvnet) backward rule, as an autograd Function."""
    import torch

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return forward(x)

        @staticmethod
        def backward(ctx: Any, dy: Any) -> Any:
            (x,) = ctx.saved_tensors
            keep = dy > 0
            if (
                rule != "deconvnet"
            ):  # deconvnet (Zeiler & Fergus 2014): positive gradients, any input
                keep = keep & (x > lower)
                if upper is not None:
                    keep = keep & (x < upper)
            return dy * keep.to(dy.dtype)

    return GuidedReLU.apply


def guided_relus(model: Any, rule: str | None) -> Any:
    """Context manager: every ReLU of ``model`` follows ``rule``'s backward pass."""
    if rule is None:
        return contextlib.nullcontext()
    return swapped(list(relu_patches(model, guide, rule)))


def compute_gradients(
    model: Any,
    x: Any,
    sites: Sequence[Site],
    target: Any,
    wrt_input: bool,
    guided: bool | str,
) -> StepResult:
    """Activations of ``sites`` and gradients of the summed target score, on torch.

    Returns:
        logits, class index per sample (or ``None``), scores, recorded
        tensors, their gradients and the input's gradient (or ``None``).
    """
    import torch

    n = int(x.shape[0])
    graph = graph_of(model)
    if not callable(target) and graph is not None:  # a bad target fails before the model runs
        class_indices(target, n, tuple(graph.outputs[0].shape))
    x_t = x.detach().clone().requires_grad_(True)  # the input is watched, as on TensorFlow
    with guided_relus(model, guided_rule(guided)), torch.enable_grad():
        out, rec, head = record_forward(model, x_t, sites)
        logits = logits_of(out, head)
        if callable(target):
            scores, idx = callable_scores(logits, target), None
        else:
            chosen = class_indices(target, n, tuple(logits.shape))
            scores, idx = pick_scores(logits, torch.as_tensor(chosen, device=logits.device))
        total = scores.sum()
    keys = list(rec)
    sources = [rec[k] for k in keys] + ([x_t] if wrt_input else [])
    grads = torch.autograd.grad(total, sources, allow_unused=True) if sources else []
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads, strict=True)]
    by_key = dict(zip(keys, grads[: len(keys)], strict=True))
    detached = {k: v.detach() for k, v in rec.items()}
    return logits.detach(), idx, scores.detach(), detached, by_key, grads[-1] if wrt_input else None
