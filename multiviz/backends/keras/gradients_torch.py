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

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import keras

from multiviz.backends.contract import class_indices, score_callable
from multiviz.backends.keras.gradients import guided_rule, swap_relus
from multiviz.backends.keras.gradients_tf import (
    StepResult,
    graph_head,
    pick_scores,
    record_forward,
    scored_outputs,
)
from multiviz.backends.keras.layers import Site, graph_of

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
            if rule != "deconvnet":  # deconvnet (Zeiler & Fergus 2014): positive gradients
                keep = keep & (x > lower)
                if upper is not None:
                    keep = keep & (x < upper)
            return dy * keep.to(dy.dtype)

    return GuidedReLU.apply


def compute_gradients(
    undo: ExitStack,
    model: Any,
    x: Any,
    sites: Sequence[Site],
    target: Any,
    wrt_input: bool,
    guided: bool | str,
) -> tuple[StepResult, str | None]:
    """Activations of ``sites`` and gradients of the summed target score, on torch.

    ``x`` is one tensor, or a list of tensors for a model with several inputs
    (their gradients then come back as a list).

    Returns:
        The :data:`~.gradients_tf.StepResult` (logits, class index per sample
        or ``None``, scores, recorded tensors, their gradients, the input's
        gradient or ``None``) and the main output's head (``"softmax"``,
        ``"sigmoid"`` or ``None``).
    """
    import torch

    several = isinstance(x, (list, tuple))
    parts = list(x) if several else [x]
    n = int(parts[0].shape[0])
    graph = graph_of(model)
    if not callable(target) and graph is not None:  # a bad target fails before the model runs
        class_indices(target, n, tuple(graph_head(model)[1].shape))
    # private copies that require grad: the input is watched, as on TensorFlow
    watched = [p.detach().clone().requires_grad_(True) for p in parts]
    given = watched if several else watched[0]
    swap_relus(undo, model, guide, guided_rule(guided))  # swapped back when undo closes
    undo.enter_context(torch.enable_grad())
    whole, rec, heads = record_forward(model, given, sites)
    whole, logits, head = scored_outputs(whole, heads)
    if callable(target):
        scores, idx = score_callable(target, whole, n, keras.ops.is_tensor), None
    else:
        chosen = class_indices(target, n, tuple(logits.shape))
        scores, idx = pick_scores(logits, torch.as_tensor(chosen, device=logits.device))
    total = scores.sum()
    keys = list(rec)
    sources = [rec[k] for k in keys] + (watched if wrt_input else [])
    grads = torch.autograd.grad(total, sources, allow_unused=True) if sources else []
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads, strict=True)]
    by_key = dict(zip(keys, grads[: len(keys)], strict=True))
    detached = {k: v.detach() for k, v in rec.items()}
    input_grad = None
    if wrt_input:
        mine = grads[len(keys) :]
        input_grad = mine if several else mine[0]
    result = (logits.detach(), idx, scores.detach(), detached, by_key, input_grad)
    return result, head
