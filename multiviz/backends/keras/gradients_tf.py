"""Gradients of a class score w.r.t. chosen layer outputs (TensorFlow backend).

Why not the capture sub-model? Under ``tf.GradientTape`` a gradient reaches a
captured tensor only if the score was computed *from that tensor*. A
sub-model over a layer's symbolic output does that for top-level layers, but
a layer inside a nested model is captured by a separate sub-model of the
nested model while the outer graph recomputes the nested model as one op: the
score never sees the captured tensor. So gradients run the model's own graph
node by node (as ``Functional.call`` does), descending into the nested models
that hold a chosen layer, and record the chosen tensors on the way: one pass
over the full model (the score needs the output anyway), no layer called
symbolically, so no node is added to a user layer. For class-index targets
the pass and its gradient are traced once into a cached ``tf.function`` per
(model, layers, ``wrt_input``, guided) — attribution methods call it many
times; a callable target (new Python code every call) and subclassed models
run eagerly. Where every chosen layer is top-level, :mod:`.gradients_tf_fast` uses a
sub-model after all (the score is then computed from its outputs).

The score is taken on *logits*: an output that ends in a softmax or a
sigmoid (a ``Softmax`` / ``Activation("softmax")`` / ``Activation("sigmoid")``
layer, or a ``Dense`` / conv layer with ``activation="softmax"`` or
``"sigmoid"``, as every ``keras.applications`` classifier and every
``Dense(1, "sigmoid")`` binary head does) is scored on the activation's input,
resp. the layer's linear part computed from its kernel and bias (the layer
itself is not changed). Scoring probabilities instead would mix every class
into each gradient, and saturate. Each output of a model with several is
treated so; a callable target receives the whole output structure, a class
index scores the main output (:func:`multiviz.backends.contract.main_output`).

Guided backpropagation (Springenberg et al. 2015) swaps, for one call, every
ReLU's backward pass for ``grad * (x > 0) * (grad > 0)`` via
``tf.custom_gradient``: the ``activation`` attribute of layers whose
activation is relu / relu6, and ``call`` on ``ReLU`` layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import keras

from multiviz.backends.cache import cached
from multiviz.backends.contract import class_indices, main_output, score_callable
from multiviz.backends.guard import undoing
from multiviz.backends.keras.capture import EagerPlan, tf_function
from multiviz.backends.keras.gradients import guided_rule, swap_relus
from multiviz.backends.keras.layers import Site, Step, graph_of, node_index
from multiviz.backends.keras.state import call_layer, recording, swap

__all__ = [
    "compiled_step",
    "compute_gradients",
    "ends_in_head",
    "gradient_step",
    "graph_head",
    "head_name",
    "is_head_layer",
    "logits_of",
    "output_paths",
    "pick_scores",
    "record_forward",
    "scored_outputs",
    "whole_output",
]

_LOGITS_IN = "\x00logits-input-"  # + the output's flat index
#: activation name -> the head it makes (what turns logits into probabilities)
_HEAD_ACTIVATIONS = {"softmax": "softmax", "log_softmax": "softmax", "sigmoid": "sigmoid"}


@dataclass
class Want:
    """What to record in one graph: outputs of nodes, inputs of nodes, nested wants."""

    outputs: dict[tuple[int, int], list[tuple[str, int]]] = field(default_factory=dict)
    inputs: dict[tuple[int, int], str] = field(default_factory=dict)
    nested: dict[tuple[int, int], Want] = field(default_factory=dict)
    eager: list[tuple[Any, str]] = field(default_factory=list)  # below a graph-less layer


def _want_for(
    sites: Sequence[Site], logits_paths: Sequence[tuple[int, tuple[Step, ...]]] = ()
) -> Want:
    root = Want()
    for site in sites:
        want = root
        path = site.path
        for i, (layer, k) in enumerate(path):
            if k is None:  # graph-less from here: record by wrapping the target's call
                want.eager.append((path[-1][0], site.base))
                break
            key = (id(layer), k)
            if i == len(path) - 1:
                want.outputs.setdefault(key, []).append((site.key, site.output_index or 0))
            else:
                want = want.nested.setdefault(key, Want())
    for index, logits_path in logits_paths:
        want = root
        for layer, k in logits_path[:-1]:
            want = want.nested.setdefault((id(layer), k), Want())
        last, k = logits_path[-1]
        want.inputs[(id(last), k)] = f"{_LOGITS_IN}{index}"
    return root


def output_paths(model: Any) -> list[tuple[Step, ...]] | None:
    """For each flat output of a graph model, ``(layer, node)`` steps to the layer producing it."""
    graph = graph_of(model)
    if graph is None:
        return None
    paths = []
    for tensor in graph.outputs:
        path: tuple[Step, ...] = ()
        while True:
            op, k, index = tensor._keras_history
            path = (*path, (op, k))
            inner = graph_of(op)
            if inner is None:
                break
            tensor = inner.outputs[index]
        paths.append(path)
    return paths


def whole_output(graph: Any, flat: Sequence[Any]) -> Any:
    """The flat outputs of ``graph`` in the structure the model returns (as ``Functional.call``)."""
    struct = getattr(graph, "_outputs_struct", None)
    packed = keras.tree.pack_sequence_as(struct, list(flat)) if struct is not None else list(flat)
    if isinstance(packed, (list, tuple)) and len(packed) == 1:
        return packed[0]
    return packed


def _is_symbolic(t: Any) -> bool:
    return isinstance(t, keras.KerasTensor)


def graph_head(model: Any) -> tuple[int, Any, str | None]:
    """The main output of a graph model: its flat index, symbolic tensor, and head.

    The head is ``"softmax"`` / ``"sigmoid"`` when the layer producing it ends in one.
    """
    graph = graph_of(model)
    main = main_output(whole_output(graph, graph.outputs), _is_symbolic)
    index = next(i for i, t in enumerate(graph.outputs) if t is main)
    paths = output_paths(model) or []
    layer = paths[index][-1][0] if index < len(paths) else None
    return index, main, head_name(layer) if layer is not None else None


#: ``tap(key, tensor) -> tensor``: what flows on from a recorded site (JAX adds a
#: zero perturbation there, to differentiate with respect to it)
Tap = Callable[[str, Any], Any]


def record_forward(
    model: Any, x: Any, sites: Sequence[Site], tap: Tap | None = None
) -> tuple[Any, dict[str, Any], dict[int, tuple[Any, Any]]]:
    """Run ``model`` on ``x`` once, eagerly, recording the tensors of ``sites``.

    Args:
        tap: if given, each recorded tensor is replaced, for the rest of the
            pass, by ``tap(key, tensor)`` (and that is what is recorded).
            Only for models with a graph.

    Returns:
        ``(whole output, key -> tensor, heads)``: the output as the model
        returns it; ``heads`` maps ``id`` of each output that a softmax- or
        sigmoid-ending layer produced to ``(that layer, its input)``, so that
        :func:`scored_outputs` can score its logits.
    """
    graph = graph_of(model)
    if graph is None:
        return _record_eager_model(model, x, sites)
    paths = output_paths(model) or []
    ending = [(i, p) for i, p in enumerate(paths) if p and ends_in_head(p[-1][0])]
    want = _want_for(sites, ending)
    rec: dict[str, Any] = {}
    inputs = [x] if not isinstance(x, (list, tuple)) else list(x)
    outputs = _interpret(graph, inputs, want, rec, tap)
    heads = {}
    for i, path in ending:
        seen = rec.pop(f"{_LOGITS_IN}{i}", None)
        if seen is not None:
            heads[id(outputs[i])] = (path[-1][0], seen[0])
    return whole_output(graph, outputs), rec, heads


def _interpret(
    graph: Any, inputs: Sequence[Any], want: Want, rec: dict[str, Any], tap: Tap | None = None
) -> list[Any]:
    """Functional.call, one node at a time, recording what ``want`` asks for."""
    values = {id(t): v for t, v in zip(graph.inputs, inputs, strict=False)}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input:
                continue
            if any(id(t) not in values for t in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(values)
            key = (id(op), node_index(op, node))
            if key in want.inputs:
                rec[want.inputs[key]] = [values[id(t)] for t in node.input_tensors]
            if key in want.nested:
                outs = _run_nested(op, node, args, kwargs, values, want.nested[key], rec, tap)
            else:
                outs = call_layer(op, args, kwargs)
            flat = keras.tree.flatten(outs)
            for name, i in want.outputs.get(key, []):
                if tap is not None:
                    flat[i] = tap(name, flat[i])
                rec[name] = flat[i]
            for t, v in zip(node.outputs, flat, strict=False):
                values[id(t)] = v
    return [values[id(t)] for t in graph.outputs]


def _run_nested(
    op: Any,
    node: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    values: dict[int, Any],
    want: Want,
    rec: dict[str, Any],
    tap: Tap | None = None,
) -> Any:
    inner = graph_of(op)
    if inner is not None:
        outs = _interpret(inner, [values[id(t)] for t in node.input_tensors], want, rec, tap)
        return outs if len(outs) > 1 else outs[0]
    out, tensors = EagerPlan(want.eager).run(op, args, kwargs)
    rec.update(tensors)
    return out


def _record_eager_model(
    model: Any, x: Any, sites: Sequence[Site]
) -> tuple[Any, dict[str, Any], dict[int, tuple[Any, Any]]]:
    return undoing(_record_eager, model, x, sites)


def _record_eager(
    undo: ExitStack, model: Any, x: Any, sites: Sequence[Site]
) -> tuple[Any, dict[str, Any], dict[int, tuple[Any, Any]]]:
    # No graph: wrap the chosen layers, and every softmax- or sigmoid-ending layer
    # so that the ones producing the model's outputs can be recognised afterwards.
    plan = EagerPlan([(s.path[-1][0], s.base) for s in sites])
    ending = [layer for layer in model._flatten_layers(include_self=False) if ends_in_head(layer)]
    seen_in: dict[int, list[Any]] = {}
    seen_out = recording(undo, ending, inputs=seen_in)  # unwrapped when undo closes
    out, rec = plan.run(model, (x,), {})
    heads = {}
    for value in keras.tree.flatten(out):
        for layer in ending:
            for produced, arg in zip(seen_out[id(layer)], seen_in[id(layer)], strict=True):
                if produced is value:
                    heads[id(value)] = (layer, arg)
    return out, rec, heads


# --------------------------------------------------------------------------- logits


def _activation_name(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def is_head_layer(layer: Any) -> bool:
    """A layer that only turns logits into probabilities (``Softmax``, ``Activation("sigmoid")``)."""
    if isinstance(layer, keras.layers.Softmax):
        return True
    return (
        isinstance(layer, keras.layers.Activation) and _activation_name(layer) in _HEAD_ACTIVATIONS
    )


def head_name(layer: Any) -> str | None:
    """``"softmax"`` / ``"sigmoid"`` for a layer whose output ends in one, else ``None``."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    return _HEAD_ACTIVATIONS.get(_activation_name(layer))


def ends_in_head(layer: Any) -> bool:
    """True for a layer whose output ends in a softmax or a sigmoid."""
    return head_name(layer) is not None


def logits_of(output: Any, head: tuple[Any, Any] | None) -> Any:
    """The logits behind ``output``: before its final softmax or sigmoid (``output`` if none)."""
    if head is None:
        return output
    layer, x = head
    if is_head_layer(layer):
        return x
    if not ends_in_head(layer):
        return output
    ops = keras.ops
    if isinstance(layer, keras.layers.Dense):
        y = ops.matmul(x, layer.kernel)
        return y if layer.bias is None else ops.add(y, layer.bias)
    if hasattr(layer, "convolution_op") and hasattr(layer, "kernel"):
        y = layer.convolution_op(x, layer.kernel)
        if getattr(layer, "use_bias", False):
            rank = len(y.shape)
            if layer.data_format == "channels_last":
                shape = (1,) * (rank - 1) + (-1,)
            else:
                shape = (1, -1) + (1,) * (rank - 2)
            y = ops.add(y, ops.reshape(layer.bias, shape))
        return y
    # any other layer with such an activation: its call with the activation
    # switched off for this one call
    return undoing(_linear_call, layer, x)


def _linear_call(undo: ExitStack, layer: Any, x: Any) -> Any:
    swap(undo, layer, "activation", keras.activations.linear)
    return layer(x)


def scored_outputs(whole: Any, heads: dict[int, tuple[Any, Any]]) -> tuple[Any, Any, str | None]:
    """The whole output with logits for probabilities, its main output, and that one's head.

    Every output in ``heads`` is replaced by :func:`logits_of`; the main
    output is the contract's (:func:`~multiviz.backends.contract.main_output`).
    """
    if keras.ops.is_tensor(whole):
        flat, pack = [whole], None
    else:
        flat, pack = keras.tree.flatten(whole), whole
    behind: dict[int, str | None] = {}
    logits_flat = []
    for value in flat:
        head = heads.get(id(value))
        logits = logits_of(value, head)
        if head is not None:
            behind[id(logits)] = head_name(head[0])
        logits_flat.append(logits)
    new = logits_flat[0] if pack is None else keras.tree.pack_sequence_as(pack, logits_flat)
    main = main_output(new, keras.ops.is_tensor)
    return new, main, behind.get(id(main))


# --------------------------------------------------------------------------- scores


def pick_scores(logits: Any, idx: Any) -> tuple[Any, Any]:
    """``logits[n, idx[n]]`` per sample, ``idx == -1`` replaced by the argmax."""
    ops = keras.ops
    # the indices' own integer type: int64 on TensorFlow, int32 on JAX without x64
    top = ops.cast(ops.argmax(logits, axis=1), keras.backend.standardize_dtype(idx.dtype))
    idx = ops.where(idx < 0, top, idx)
    return ops.take_along_axis(logits, idx[:, None], axis=1)[:, 0], idx


# --------------------------------------------------------------------------- one step

#: logits (the main output), class index per sample (or None), scores,
#: activations, their gradients, the input gradient
StepResult = tuple[Any, Any, Any, dict[str, Any], dict[str, Any], Any]

#: what a score function gets: the whole output (logits swapped in) and its main output
Score = Callable[[Any, Any], tuple[Any, Any]]


def gradient_step(
    model: Any,
    x: Any,
    sites: Sequence[Site],
    score: Score,
    wrt_input: bool = True,
) -> tuple[StepResult, str | None]:
    """Forward under a tape, score the logits, differentiate the summed score.

    The input's gradient (the last item) is computed only when ``wrt_input``:
    otherwise backpropagation stops at the chosen layers. (The input is
    watched either way, so that the tape records the ops between the chosen
    layers and the score even where no weight is trainable.)

    Returns:
        The :data:`StepResult`, and the main output's head (``"softmax"``,
        ``"sigmoid"`` or ``None``).
    """
    import tensorflow as tf

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)  # every op from x on is recorded; only asked-for gradients run
        whole, rec, heads = record_forward(model, x, sites)
        whole, logits, head = scored_outputs(whole, heads)
        scores, idx = score(whole, logits)
        total = tf.reduce_sum(scores)
    keys = list(rec)
    grads = tape.gradient(
        total,
        [rec[k] for k in keys] + ([x] if wrt_input else []),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    by_key = dict(zip(keys, grads[: len(keys)], strict=True))
    return (logits, idx, scores, rec, by_key, grads[-1] if wrt_input else None), head


def compiled_step(
    model: Any, sites: Sequence[Site], guided: bool | str, wrt_input: bool = True
) -> Callable[[Any, Any], StepResult]:
    """A cached ``tf.function(x, class_idx)`` running :func:`gradient_step`.

    Only for graph models and class-index targets (a callable target is new
    Python code every call: it runs eagerly). A guided step is traced while
    the guided ReLUs are swapped in: call it after
    :func:`~.gradients.swap_relus`, before its undo stack closes.
    Cached in the model's bounded cache (:mod:`multiviz.backends.cache`).
    """
    graph = graph_of(model)
    key = ("gradient_step", tuple(sorted(s.key for s in sites)), guided, wrt_input)

    def build() -> tuple[Any, Any]:
        ref = weakref.ref(model)  # the cache must not keep the model alive
        chosen = list(sites)

        def step(x: Any, idx: Any) -> StepResult:
            return gradient_step(
                ref(), x, chosen, lambda whole, logits: pick_scores(logits, idx), wrt_input
            )[0]

        return weakref.ref(graph), tf_function(step)

    return cached(model, key, build, fresh=lambda entry: entry[0]() is graph)[1]


# --------------------------------------------------------------------------- guided


def _guided(
    forward: Callable[[Any], Any], lower: float, upper: float | None, rule: str = "guided"
) -> Callable:
    import tensorflow as tf

    @tf.custom_gradient
    def guided_relu(x: Any) -> Any:
        y = forward(x)

        def grad(dy: Any) -> Any:
            if rule == "deconvnet":  # Zeiler & Fergus 2014: positive gradients, any input
                return dy * tf.cast(dy > 0, dy.dtype)
            keep = tf.cast(dy > 0, dy.dtype) * tf.cast(x > lower, dy.dtype)
            if upper is not None:
                keep *= tf.cast(x < upper, dy.dtype)
            return dy * keep

        return y, grad

    return guided_relu


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
    """Activations of ``sites`` and gradients of the summed target score, on TensorFlow.

    Picks the cheapest correct route: the fast sub-model path
    (:mod:`.gradients_tf_fast`) when every site is a top-level layer of a
    graph model, else the node-by-node pass; for class-index targets one
    cached ``tf.function``, for a callable target (new Python code every
    call) or a subclassed model an eager pass. The target is checked by the
    contract (:func:`~multiviz.backends.contract.class_indices`,
    :func:`~multiviz.backends.contract.score_callable`), as for PyTorch.

    Returns:
        The :data:`StepResult` (logits, class index per sample or ``None``,
        scores, recorded tensors, their gradients, the input's gradient or
        ``None``) and the main output's head.
    """
    import tensorflow as tf

    from multiviz.backends.keras.gradients_tf_fast import fast_step  # it builds on this module

    x_t = [tf.identity(p) for p in x] if isinstance(x, (list, tuple)) else tf.identity(x)
    n = int((x_t[0] if isinstance(x_t, list) else x_t).shape[0])
    graph = graph_of(model)
    fast = fast_step(model, sites)  # top-level layers of a graph model: one sub-model
    swap_relus(undo, model, _guided, guided_rule(guided))  # swapped back when undo closes
    if callable(target):  # new Python code every call: eager

        def scored(whole: Any, logits: Any) -> tuple[Any, Any]:
            return score_callable(target, whole, n, keras.ops.is_tensor), None

        if fast is not None:
            return fast.run(x_t, scored, wrt_input), fast.head
        return gradient_step(model, x_t, sites, scored, wrt_input)
    if graph is not None:  # one cached tf.function, class indices as a tensor
        _, main, head = graph_head(model)
        idx = tf.constant(class_indices(target, n, tuple(main.shape)))
        if fast is not None:
            return fast.compiled(wrt_input, guided)(x_t, idx), head
        return compiled_step(model, sites, guided, wrt_input)(x_t, idx), head

    # subclassed: eager; the output shape is known once it ran
    def score(whole: Any, logits: Any) -> tuple[Any, Any]:
        idx = class_indices(target, n, tuple(logits.shape))
        return pick_scores(logits, keras.ops.convert_to_tensor(idx))

    return gradient_step(model, x_t, sites, score, wrt_input)
