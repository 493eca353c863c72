"""The fast gradient path: one cached sub-model of a Functional / Sequential model.

When every chosen layer is a top-level layer of a model with a symbolic graph
(Functional, or a built Sequential; not a subclass that overrides ``call``),
gradients need no node-by-node interpretation (see :mod:`.gradients_tf` for
why nested layers do). One
``keras.Model(model.inputs, [chosen outputs..., score source])`` over the
model's own symbolic tensors computes, under ``tf.GradientTape``, both the
chosen activations and the tensor the score is read from — so the score is
computed *from* the recorded tensors and the tape reaches them:

* the score sources are the model's outputs, each one, when its layer ends
  in a softmax or a sigmoid, replaced by that layer's input: the logits
  themselves behind a ``Softmax`` / ``Activation("sigmoid")`` layer, or the
  input of a ``Dense`` / conv layer with such an ``activation``, whose linear
  part is then computed from its kernel and bias
  (:func:`.gradients_tf.logits_of`, shared with the general path); a
  callable target receives them in the model's output structure, a class
  index scores the main one;
* the input is watched only when its gradient is asked for, so Grad-CAM
  backpropagates from the score to the chosen layer and no further.

Building the sub-model calls no layer (no inbound node is added to a user
layer). It is built once per (model, chosen layers) and kept in the model's
bounded cache (:mod:`multiviz.backends.cache`), like capture's sub-models. Class-index targets run in one ``tf.function`` per
(sub-model, ``wrt_input``, ``guided``) with the class indices as a tensor
argument, so a new target value does not retrace. A guided and a plain trace
are cached apart: a trace keeps whatever ReLU the layers held while it was
traced, so the guided one is only ever called inside
:func:`.gradients.swap_relus`. Callable targets use the same sub-model
eagerly.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import keras

from multiviz.backends.cache import cached
from multiviz.backends.contract import main_output
from multiviz.backends.keras.capture import tf_function
from multiviz.backends.keras.gradients_tf import (
    Score,
    StepResult,
    ends_in_head,
    graph_head,
    is_head_layer,
    logits_of,
    output_paths,
    pick_scores,
    whole_output,
)
from multiviz.backends.keras.layers import Site, graph_of

__all__ = ["FastStep", "fast_step", "fast_step_for"]

#: switch the fast path off (tests compare it with the general path)
ENABLED = True


def _plain_call(model: Any) -> bool:
    # A subclass that overrides `call` may do anything its graph does not show.
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - other Keras versions
        return False
    if isinstance(model, keras.Sequential):
        return type(model).call is keras.Sequential.call
    return isinstance(model, Functional) and type(model).call is Functional.call


def eligible(model: Any, sites: Sequence[Site]) -> bool:
    """True when the fast path computes exactly what the general path does."""
    if not ENABLED or not _plain_call(model) or graph_of(model) is None:
        return False
    if not all(s.in_graph and len(s.path) == 1 for s in sites):
        return False
    paths = output_paths(model)
    if not paths or not all(paths):
        return False
    # a softmax inside a nested model: the logits are not a tensor of this graph
    return all(len(p) == 1 or not ends_in_head(p[-1][0]) for p in paths)


class FastStep:
    """The sub-model for one (model, set of chosen sites) and its compiled steps.

    Holds no reference to the model (it is a value in a weak-keyed cache);
    it does hold the user's layers, as the sub-model does.
    """

    def __init__(self, model: Any, sites: Sequence[Site]) -> None:
        graph = graph_of(model)
        self.graph_ref = weakref.ref(graph)
        outputs: list[Any] = []
        slot: dict[int, int] = {}

        def add(tensor: Any) -> int:
            if id(tensor) not in slot:  # a Functional output list must not repeat
                slot[id(tensor)] = len(outputs)
                outputs.append(tensor)
            return slot[id(tensor)]

        self.slots: list[tuple[str, int]] = []
        for site in sites:
            layer, k = site.path[0]
            node = layer._inbound_nodes[k]
            self.slots.append((site.key, add(node.outputs[site.output_index or 0])))
        # one score source per flat output: behind a softmax / sigmoid, the head's input
        self.sources: list[tuple[int, Any]] = []
        for tensor, path in zip(graph.outputs, output_paths(model) or [], strict=True):
            head, k = path[0]
            if len(path) == 1 and ends_in_head(head):
                self.sources.append((add(head._inbound_nodes[k].input_tensors[0]), head))
            else:
                self.sources.append((add(tensor), None))
        self.head = graph_head(model)[2]
        inputs = graph.inputs[0] if len(graph.inputs) == 1 else list(graph.inputs)
        self.submodel = keras.Model(inputs, outputs, name=f"multiviz_grad_{graph.name}")
        self._compiled: dict[tuple[bool, bool], Callable[[Any, Any], StepResult]] = {}

    def fresh(self, model: Any) -> bool:
        """False once a Sequential was rebuilt (its inner graph replaced)."""
        return self.graph_ref() is graph_of(model)

    def run(self, x: Any, score: Score, wrt_input: bool) -> StepResult:
        """Forward under a tape, score the logits, differentiate the summed score."""
        import tensorflow as tf

        graph = self.graph_ref()
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)  # every op from x on is recorded; only asked-for gradients run
            outs = self.submodel(x, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            flat = [self._logits(outs[slot], head) for slot, head in self.sources]
            whole = whole_output(graph, flat)
            logits = main_output(whole, keras.ops.is_tensor)
            scores, idx = score(whole, logits)
            total = tf.reduce_sum(scores)
        rec = {key: outs[s] for key, s in self.slots}
        sources = [outs[s] for _, s in self.slots] + ([x] if wrt_input else [])
        grads = tape.gradient(total, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        by_key = {key: g for (key, _), g in zip(self.slots, grads, strict=False)}
        return logits, idx, scores, rec, by_key, grads[-1] if wrt_input else None

    @staticmethod
    def _logits(source: Any, head: Any) -> Any:
        if head is None or is_head_layer(head):
            return source
        return logits_of(None, (head, source))

    def compiled(self, wrt_input: bool, guided: bool | str) -> Callable[[Any, Any], StepResult]:
        """``tf.function(x, class_idx)``; a guided one must run while ``swap_relus`` has the ReLUs swapped."""
        key = (wrt_input, guided)
        fn = self._compiled.get(key)
        if fn is None:

            def step(x: Any, idx: Any) -> StepResult:
                return self.run(x, lambda whole, logits: pick_scores(logits, idx), wrt_input)

            fn = self._compiled[key] = tf_function(step)
        return fn


def fast_step_for(model: Any, sites: Sequence[Site]) -> FastStep:
    """The cached :class:`FastStep` of ``sites`` of ``model``, built on first use."""
    key = ("fast_gradients", tuple(sorted({s.key for s in sites})))
    return cached(model, key, lambda: FastStep(model, sites), fresh=lambda f: f.fresh(model))


def fast_step(model: Any, sites: Sequence[Site]) -> FastStep | None:
    """The fast step for ``sites`` of ``model``, or ``None`` where it does not apply."""
    return fast_step_for(model, sites) if eligible(model, sites) else None
