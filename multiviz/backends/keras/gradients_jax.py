"""Gradients of a class score w.r.t. chosen layer outputs, Keras on JAX.

JAX differentiates pure functions, so the forward pass is written as one: a
function of (trainable weights, non-trainable weights, input, perturbations)
that runs the model's graph node by node (:func:`.gradients_tf.record_forward`,
written with ``keras.ops``) inside ``keras.StatelessScope`` — what
``model.stateless_call`` runs on — so every variable is read from the
arguments, never from the model. A gradient with respect to a layer's output
is the gradient with respect to a zero perturbation added to that output (a
"tap"): ``d score / d (a + eps)`` at ``eps = 0``. The perturbations' shapes are
found by ``jax.eval_shape`` while tracing, so the whole step — forward, score,
backward — is one ``jax.jit``, compiled once per (model, layers,
``wrt_input``, rule) and input shape, and cached in the model's bounded cache.
New weights need no new compile: they are arguments.

A callable target is new Python code on every call: it runs un-jitted through
the same pure function. Guided backpropagation and the deconvnet swap every
ReLU for a ``jax.custom_vjp`` with their backward rule while the step is
traced (a guided step has its own cache entry and is only called inside the
swap, as on TensorFlow).

Only models with a graph can be tapped: on a subclassed model (no graph), or
for a layer reached below one, gradients with respect to layers raise a clear
error on JAX; input gradients (saliency and friends) work on every model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import keras

from multiviz.backends.cache import cached
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
from multiviz.errors import MultivizError

__all__ = ["JaxStep", "compute_gradients", "guide"]

#: ``score(whole output, main logits) -> (scores, class index or None)``
Score = Callable[[Any, Any], tuple[Any, Any]]


# --------------------------------------------------------------------------- guided


def guide(
    forward: Callable[[Any], Any], lower: float, upper: float | None, rule: str
) -> Callable[[Any], Any]:
    """``forward`` with the guided (or deconvnet) backward rule, as a ``jax.custom_vjp``."""
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def relu(x: Any) -> Any:
        return forward(x)

    def fwd(x: Any) -> tuple[Any, Any]:
        return forward(x), x

    def bwd(x: Any, dy: Any) -> tuple[Any]:
        keep = dy > 0
        if rule != "deconvnet":  # deconvnet (Zeiler & Fergus 2014): positive gradients, any input
            keep = keep & (x > lower)
            if upper is not None:
                keep = keep & (x < upper)
        return (jnp.where(keep, dy, jnp.zeros_like(dy)),)

    relu.defvjp(fwd, bwd)
    return relu


# --------------------------------------------------------------------------- one step


class JaxStep:
    """The pure forward pass of one (model, set of sites) and its jitted gradient step.

    Holds the model weakly (it is a value in the model's cache) and its
    variables strongly (their values are passed in on every call).
    """

    def __init__(self, model: Any, sites: Sequence[Site], wrt_input: bool) -> None:
        self.model_ref = weakref.ref(model)
        self.graph = graph_of(model)
        self.graph_ref = None if self.graph is None else weakref.ref(self.graph)
        self.sites = list(sites)
        self.wrt_input = wrt_input
        self.trainable = list(model.trainable_variables)
        self.frozen = list(model.non_trainable_variables)
        self._jitted: Callable[..., StepResult] | None = None
        #: the main output's head, learnt while tracing (a property of the model)
        self.head: str | None = None

    def fresh(self, model: Any) -> bool:
        """False once the model's graph or variables changed (a rebuilt Sequential)."""
        graph_ok = (self.graph_ref is None and graph_of(model) is None) or (
            self.graph_ref is not None and self.graph_ref() is graph_of(model)
        )
        return (
            graph_ok
            and list(map(id, model.trainable_variables)) == list(map(id, self.trainable))
            and list(map(id, model.non_trainable_variables)) == list(map(id, self.frozen))
        )

    def values(self) -> tuple[list[Any], list[Any]]:
        """The variables' current values: the step's first two arguments."""
        return [v.value for v in self.trainable], [v.value for v in self.frozen]

    def _forward(
        self, trainable: Any, frozen: Any, x: Any, eps: dict[str, Any] | None, score: Score
    ) -> tuple[Any, tuple[Any, Any, Any, dict[str, Any]]]:
        import jax.numpy as jnp

        mapping = list(zip(self.trainable, trainable, strict=True))
        mapping += list(zip(self.frozen, frozen, strict=True))
        tap = None if eps is None else (lambda key, value: value + eps[key])
        with keras.StatelessScope(state_mapping=mapping):
            whole, rec, heads = record_forward(self.model_ref(), x, self.sites, tap)
            whole, logits, self.head = scored_outputs(whole, heads)
            scores, idx = score(whole, logits)
        return jnp.sum(scores), (logits, idx, scores, rec)

    def run(self, trainable: Any, frozen: Any, x: Any, score: Score) -> StepResult:
        """Forward, score, and the gradients of the summed score (traceable)."""
        import jax
        import jax.numpy as jnp

        # the recorded tensors' shapes; the score is not needed for them (a
        # callable target is called once per call, by the pass below)
        def unscored(whole: Any, logits: Any) -> tuple[Any, Any]:
            return jnp.zeros(()), None

        shapes = jax.eval_shape(
            lambda t, f, x: self._forward(t, f, x, None, unscored)[1][3], trainable, frozen, x
        )
        eps = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}

        def total(x: Any, eps: dict[str, Any]) -> tuple[Any, Any]:
            return self._forward(trainable, frozen, x, eps, score)

        argnums = (0, 1) if self.wrt_input else 1
        (_, (logits, idx, scores, rec)), grads = jax.value_and_grad(
            total, argnums=argnums, has_aux=True
        )(x, eps)
        x_grad, by_key = grads if self.wrt_input else (None, grads)
        return logits, idx, scores, rec, by_key, x_grad

    def jitted(self) -> Callable[..., StepResult]:
        """``jax.jit(trainable, frozen, x, class_idx)``: the step for class-index targets."""
        if self._jitted is None:
            import jax

            def step(trainable: Any, frozen: Any, x: Any, idx: Any) -> StepResult:
                return self.run(
                    trainable, frozen, x, lambda whole, logits: pick_scores(logits, idx)
                )

            self._jitted = jax.jit(step)
        return self._jitted


def step_for(model: Any, sites: Sequence[Site], wrt_input: bool, rule: str | None) -> JaxStep:
    """The cached :class:`JaxStep` of ``sites`` of ``model``, built on first use."""
    key = ("jax-gradients", tuple(sorted({s.key for s in sites})), wrt_input, rule)
    return cached(model, key, lambda: JaxStep(model, sites, wrt_input), lambda s: s.fresh(model))


# --------------------------------------------------------------------------- the entry


def compute_gradients(
    undo: ExitStack,
    model: Any,
    x: Any,
    sites: Sequence[Site],
    target: Any,
    wrt_input: bool,
    guided: bool | str,
) -> tuple[StepResult, str | None]:
    """Activations of ``sites`` and gradients of the summed target score, on JAX.

    ``x`` is one array, or a list of arrays for a model with several inputs
    (their gradients then come back as a list).

    Returns:
        The :data:`~.gradients_tf.StepResult` (logits, class index per sample
        or ``None``, scores, recorded tensors, their gradients, the input's
        gradient or ``None``) and the main output's head (``"softmax"``,
        ``"sigmoid"`` or ``None``).

    Raises:
        MultivizError: a layer's gradient is asked of a model without a graph.
    """
    import jax.numpy as jnp

    untappable = [s.key for s in sites if graph_of(model) is None or not s.in_graph]
    if untappable:
        raise MultivizError(
            f"Layer gradients on Keras's JAX backend need a model with a graph (Functional or "
            f"Sequential); {untappable[:5]} of {model.name!r} are reached by running Python "
            "code.\nhint: input gradients (mv.saliency, mv.integrated_gradients) work on "
            "every model; or run Keras on TensorFlow or torch (KERAS_BACKEND)."
        )
    rule = guided_rule(guided)
    step = step_for(model, sites, wrt_input, rule)
    x = list(x) if isinstance(x, (list, tuple)) else x
    n = int((x[0] if isinstance(x, list) else x).shape[0])
    trainable, frozen = step.values()
    swap_relus(undo, model, guide, rule)  # swapped back when undo closes
    if callable(target):  # new Python code every call: not jitted

        def scored(whole: Any, logits: Any) -> tuple[Any, Any]:
            return score_callable(target, whole, n, keras.ops.is_tensor), None

        return step.run(trainable, frozen, x, scored), step.head
    graph = graph_of(model)
    if graph is None:  # subclassed: not jitted; the output shape is known once it ran

        def score(whole: Any, logits: Any) -> tuple[Any, Any]:
            idx = class_indices(target, n, tuple(logits.shape))
            return pick_scores(logits, jnp.asarray(idx))

        return step.run(trainable, frozen, x, score), step.head
    _, main, head = graph_head(model)
    idx = jnp.asarray(class_indices(target, n, tuple(main.shape)))
    return step.jitted()(trainable, frozen, x, idx), head
