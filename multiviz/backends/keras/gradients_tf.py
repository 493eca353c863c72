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

The score is taken on *logits*: a model that ends in a softmax (a
``Softmax`` / ``Activation("softmax")`` layer, or a ``Dense`` / conv layer with
``activation="softmax"``, as every ``keras.applications`` classifier does) is
scored on the softmax's input, resp. the layer's linear part computed from its
kernel and bias (the layer itself is not changed). Scoring probabilities
instead would mix every class into each gradient.

Guided backpropagation (Springenberg et al. 2015) swaps, for one call, every
ReLU's backward pass for ``grad * (x > 0) * (grad > 0)`` via
``tf.custom_gradient``: the ``activation`` attribute of layers whose
activation is relu / relu6, and ``call`` on ``ReLU`` layers.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from multiviz.backends.contract import check_scores, class_indices
from multiviz.backends.keras.capture import EagerPlan
from multiviz.backends.keras.layers import Site, Step, graph_of, node_index
from multiviz.backends.keras.state import call_layer, recording, swapped

__all__ = [
    "callable_scores",
    "compiled_step",
    "compute_gradients",
    "ends_in_softmax",
    "gradient_step",
    "guided_relus",
    "is_softmax_layer",
    "logits_of",
    "output_path",
    "pick_scores",
    "record_forward",
]

_LOGITS_IN = "\x00logits-input"


@dataclass
class Want:
    """What to record in one graph: outputs of nodes, inputs of nodes, nested wants."""

    outputs: dict[tuple[int, int], list[tuple[str, int]]] = field(default_factory=dict)
    inputs: dict[tuple[int, int], str] = field(default_factory=dict)
    nested: dict[tuple[int, int], Want] = field(default_factory=dict)
    eager: list[tuple[Any, str]] = field(default_factory=list)  # below a graph-less layer


def _want_for(sites: Sequence[Site], logits_path: tuple[Step, ...] | None) -> Want:
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
    if logits_path:
        want = root
        for layer, k in logits_path[:-1]:
            want = want.nested.setdefault((id(layer), k), Want())
        last, k = logits_path[-1]
        want.inputs[(id(last), k)] = _LOGITS_IN
    return root


def output_path(model: Any) -> tuple[Step, ...] | None:
    """``(layer, node)`` steps to the layer that produces the model's (first) output."""
    graph = graph_of(model)
    if graph is None:
        return None
    path: tuple[Step, ...] = ()
    tensor = graph.outputs[0]
    while True:
        op, k, index = tensor._keras_history
        path = (*path, (op, k))
        inner = graph_of(op)
        if inner is None:
            return path
        tensor = inner.outputs[index]


#: ``tap(key, tensor) -> tensor``: what flows on from a recorded site (JAX adds a
#: zero perturbation there, to differentiate with respect to it)
Tap = Callable[[str, Any], Any]


def record_forward(
    model: Any, x: Any, sites: Sequence[Site], tap: Tap | None = None
) -> tuple[Any, dict[str, Any], tuple[Any, Any] | None]:
    """Run ``model`` on ``x`` once, eagerly, recording the tensors of ``sites``.

    Args:
        tap: if given, each recorded tensor is replaced, for the rest of the
            pass, by ``tap(key, tensor)`` (and that is what is recorded).
            Only for models with a graph.

    Returns:
        ``(first output, key -> tensor, (output layer, its input) or None)``;
        the last item lets :func:`logits_of` undo a final softmax.
    """
    graph = graph_of(model)
    if graph is None:
        return _record_eager_model(model, x, sites)
    path = output_path(model)
    want = _want_for(sites, path)
    rec: dict[str, Any] = {}
    inputs = [x] if not isinstance(x, (list, tuple)) else list(x)
    outputs = _interpret(graph, inputs, want, rec, tap)
    head = (path[-1][0], rec.pop(_LOGITS_IN)[0]) if path and _LOGITS_IN in rec else None
    return outputs[0], rec, head


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
) -> tuple[Any, dict[str, Any], tuple[Any, Any] | None]:
    # No graph: wrap the chosen layers, and every softmax-ending layer so that
    # the one producing the model's output can be recognised afterwards.
    plan = EagerPlan([(s.path[-1][0], s.base) for s in sites])
    heads = [layer for layer in model._flatten_layers(include_self=False) if ends_in_softmax(layer)]
    seen_in: dict[int, list[Any]] = {}
    with recording(heads, inputs=seen_in) as seen_out:
        out, rec = plan.run(model, (x,), {})
    first = keras.tree.flatten(out)[0]
    for layer in heads:
        for value, arg in zip(seen_out[id(layer)], seen_in[id(layer)], strict=True):
            if value is first:
                return first, rec, (layer, arg)
    return first, rec, None


# --------------------------------------------------------------------------- logits


def _activation_name(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def is_softmax_layer(layer: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax"


def ends_in_softmax(layer: Any) -> bool:
    return is_softmax_layer(layer) or _activation_name(layer) == "softmax"


def logits_of(output: Any, head: tuple[Any, Any] | None) -> Any:
    """The pre-softmax scores behind ``output`` (``output`` itself if no softmax)."""
    if head is None:
        return output
    layer, x = head
    if is_softmax_layer(layer):
        return x
    if _activation_name(layer) != "softmax":
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
    # any other layer with activation="softmax": its call with the activation
    # switched off for this one call
    with swapped([(layer, "activation", keras.activations.linear)]):
        return layer(x)


# --------------------------------------------------------------------------- scores


def pick_scores(logits: Any, idx: Any) -> tuple[Any, Any]:
    """``logits[n, idx[n]]`` per sample, ``idx == -1`` replaced by the argmax."""
    ops = keras.ops
    # the indices' own integer type: int64 on TensorFlow, int32 on JAX without x64
    top = ops.cast(ops.argmax(logits, axis=1), keras.backend.standardize_dtype(idx.dtype))
    idx = ops.where(idx < 0, top, idx)
    return ops.take_along_axis(logits, idx[:, None], axis=1)[:, 0], idx


def callable_scores(logits: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(logits)``, checked by the contract to be one score per sample."""
    scores = fn(logits)
    check_scores(scores, int(logits.shape[0]), is_tensor=keras.ops.is_tensor(scores))
    return scores


# --------------------------------------------------------------------------- one step

#: logits, class index per sample (or None), scores, activations, their
#: gradients, the input gradient
StepResult = tuple[Any, Any, Any, dict[str, Any], dict[str, Any], Any]


def gradient_step(
    model: Any,
    x: Any,
    sites: Sequence[Site],
    score: Callable[[Any], tuple[Any, Any]],
    wrt_input: bool = True,
) -> StepResult:
    """Forward under a tape, score the logits, differentiate the summed score.

    The input's gradient (the last item) is computed only when ``wrt_input``:
    otherwise backpropagation stops at the chosen layers. (The input is
    watched either way, so that the tape records the ops between the chosen
    layers and the score even where no weight is trainable.)
    """
    import tensorflow as tf

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)  # every op from x on is recorded; only asked-for gradients run
        out, rec, head = record_forward(model, x, sites)
        logits = logits_of(out, head)
        scores, idx = score(logits)
        total = tf.reduce_sum(scores)
    keys = list(rec)
    grads = tape.gradient(
        total,
        [rec[k] for k in keys] + ([x] if wrt_input else []),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    by_key = dict(zip(keys, grads[: len(keys)], strict=True))
    return logits, idx, scores, rec, by_key, grads[-1] if wrt_input else None


_STEPS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


def compiled_step(
    model: Any, sites: Sequence[Site], guided: bool | str, wrt_input: bool = True
) -> Callable[[Any, Any], StepResult]:
    """A cached ``tf.function(x, class_idx)`` running :func:`gradient_step`.

    Only for graph models and class-index targets (a callable target is new
    Python code every call: it runs eagerly). A guided step is traced while
    the guided ReLUs are swapped in: call it inside :func:`guided_relus`.
    """
    import tensorflow as tf

    graph = graph_of(model)
    key = (tuple(sorted(s.key for s in sites)), guided, wrt_input)
    per_model = _STEPS.setdefault(model, {})
    cached = per_model.get(key)
    if cached is not None and cached[0]() is graph:
        return cached[1]
    ref = weakref.ref(model)  # the cache must not keep the model alive
    chosen = list(sites)

    def step(x: Any, idx: Any) -> StepResult:
        return gradient_step(ref(), x, chosen, lambda logits: pick_scores(logits, idx), wrt_input)

    fn = tf.function(step, autograph=False, reduce_retracing=True)
    per_model[key] = (weakref.ref(graph), fn)
    return fn


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


def _guided_call(layer: Any, rule: str) -> Callable[..., Any]:
    relu = _guided(
        layer.call,
        float(getattr(layer, "threshold", 0.0) or 0.0),
        None if getattr(layer, "max_value", None) is None else float(layer.max_value),
        rule,
    )

    def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        return relu(inputs)

    return call


def _relu_patches(model: Any, rule: str) -> Iterator[tuple[Any, str, Any]]:
    for layer in model._flatten_layers(include_self=True):
        name = _activation_name(layer)
        if name in ("relu", "relu6") and "activation" in layer.__dict__:
            upper = 6.0 if name == "relu6" else None
            yield layer, "activation", _guided(layer.activation, 0.0, upper, rule)
        elif isinstance(layer, keras.layers.ReLU):
            yield layer, "call", _guided_call(layer, rule)


def guided_relus(model: Any, rule: str = "guided") -> Any:
    """Context manager: guided-backprop ReLUs in ``model`` (all nested layers).

    ``rule="deconvnet"``: the deconvnet's backward rule (Zeiler & Fergus 2014).
    """
    return swapped(list(_relu_patches(model, rule)))


# --------------------------------------------------------------------------- the entry


def compute_gradients(
    model: Any,
    x: Any,
    sites: Sequence[Site],
    target: Any,
    wrt_input: bool,
    guided: bool | str,
) -> StepResult:
    """Activations of ``sites`` and gradients of the summed target score, on TensorFlow.

    Picks the cheapest correct route: the fast sub-model path
    (:mod:`.gradients_tf_fast`) when every site is a top-level layer of a
    graph model, else the node-by-node pass; for class-index targets one
    cached ``tf.function``, for a callable target (new Python code every
    call) or a subclassed model an eager pass. The target is checked by the
    contract (:func:`~multiviz.backends.contract.class_indices`), as for PyTorch.

    Returns:
        logits, class index per sample (or ``None``), scores, recorded
        tensors, their gradients and the input's gradient (or ``None``).
    """
    import tensorflow as tf

    from multiviz.backends.keras.gradients_tf_fast import fast_step  # it builds on this module

    x_t = tf.identity(x)
    n = int(x_t.shape[0])
    graph = graph_of(model)
    fast = fast_step(model, sites)  # top-level layers of a graph model: one sub-model
    rule = "deconvnet" if guided == "deconvnet" else "guided"
    with guided_relus(model, rule) if guided else contextlib.nullcontext():
        if callable(target):  # new Python code every call: eager

            def scored(logits: Any) -> tuple[Any, Any]:
                return callable_scores(logits, target), None

            if fast is not None:
                return fast.run(x_t, scored, wrt_input)
            return gradient_step(model, x_t, sites, scored, wrt_input)
        if graph is not None:  # one cached tf.function, class indices as a tensor
            idx = tf.constant(class_indices(target, n, tuple(graph.outputs[0].shape)))
            if fast is not None:
                return fast.compiled(wrt_input, guided)(x_t, idx)
            return compiled_step(model, sites, guided, wrt_input)(x_t, idx)

        # subclassed: eager; the output shape is known once it ran
        def score(logits: Any) -> tuple[Any, Any]:
            idx = class_indices(target, n, tuple(logits.shape))
            return pick_scores(logits, keras.ops.convert_to_tensor(idx))

        return gradient_step(model, x_t, sites, score, wrt_input)
