"""Capture plans: sub-models over a model's own symbolic outputs, built once.

For a Functional or Sequential model a capture is ONE multi-output
``keras.Model(model.inputs, [chosen outputs...])``: it reuses the user's layer
objects and their existing symbolic tensors (no layer is called, so no
inbound node is added to any user layer) and, being a graph from the inputs
to the chosen outputs, computes only what the deepest chosen layer needs.

A layer inside a nested model is not connected to the outer model's inputs,
so one sub-model cannot reach it. The plan composes instead: the outer
sub-model also outputs the nested model's input tensors, and a plan of the
nested model (recursively) maps them to the inner outputs. A layer with no
graph (a subclassed model, or a user-defined layer owning sublayers) is
reached by an :class:`EagerPlan`: its sublayers' ``call`` is wrapped on the
instance for the length of one call (see :mod:`.state`).

Plans are cached per model and per set of names in the model's bounded
least-recently-used cache (:mod:`multiviz.backends.cache`: a deleted model
frees its plans, ``mv.clear_cache`` frees them at once). On the TensorFlow
backend the plan runs inside one cached ``tf.function`` (``predict()`` would
pay its set-up on every call).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import keras

from multiviz.backends.cache import cached
from multiviz.backends.guard import undoing
from multiviz.backends.keras.layers import (
    LAST,
    STATE,
    Site,
    Step,
    graph_of,
    output_layout,
    read_time_layout,
)
from multiviz.backends.keras.state import call_layer, recording
from multiviz.core.names import owner

__all__ = ["EagerPlan", "GraphPlan", "Runner", "runner_for", "tf_function"]

Tensors = dict[str, Any]


class GraphPlan:
    """Outputs of chosen sites of one Functional graph, from that graph's inputs.

    Args:
        graph: a Functional model (a Sequential's inner one for a Sequential).
        items: ``(site, remaining path)`` pairs; the first step of each path is
            a layer call of ``graph``.
    """

    def __init__(self, graph: Any, items: Sequence[tuple[Site, tuple[Step, ...]]]) -> None:
        self.n_inputs = len(graph.inputs)
        outputs: list[Any] = []
        position: dict[int, int] = {}

        def output_slot(tensor: Any) -> int:
            if id(tensor) not in position:  # a Functional output list must not repeat
                position[id(tensor)] = len(outputs)
                outputs.append(tensor)
            return position[id(tensor)]

        self.top: list[tuple[str, int]] = []
        groups: dict[tuple[int, int], list[tuple[Site, tuple[Step, ...]]]] = {}
        heads: dict[tuple[int, int], Step] = {}
        for site, rest in items:
            layer, k = rest[0]
            node = layer._inbound_nodes[k]
            if len(rest) == 1:
                self.top.append((site.key, output_slot(node.outputs[site.output_index or 0])))
            else:
                groups.setdefault((id(layer), k), []).append((site, rest[1:]))
                heads[(id(layer), k)] = (layer, k)

        self.nested: list[tuple[Any, Any, list[int], GraphPlan | EagerPlan]] = []
        for gk, members in groups.items():
            layer, k = heads[gk]
            node = layer._inbound_nodes[k]
            slots = [output_slot(t) for t in node.input_tensors]
            inner = graph_of(layer)
            plan = GraphPlan(inner, members) if inner is not None else EagerPlan.from_items(members)
            self.nested.append((layer, node, slots, plan))

        inputs = graph.inputs[0] if self.n_inputs == 1 else list(graph.inputs)
        self.submodel = keras.Model(inputs, outputs, name=f"multiviz_{graph.name}")

    def __call__(self, inputs: Sequence[Any]) -> Tensors:
        args = inputs[0] if self.n_inputs == 1 else list(inputs)
        outs = self.submodel(args, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        result = {key: outs[slot] for key, slot in self.top}
        for layer, node, slots, plan in self.nested:
            values = [outs[s] for s in slots]
            if isinstance(plan, GraphPlan):
                result.update(plan(values))
            else:
                filled = {id(t): v for t, v in zip(node.input_tensors, values, strict=True)}
                call_args, call_kwargs = node.arguments.fill_in(filled)
                result.update(plan(layer, call_args, call_kwargs))
        return result


class EagerPlan:
    """Outputs of sublayers of a layer without a graph, recorded while it runs.

    Every call of a chosen sublayer is kept: ``"block/relu"``,
    ``"block/relu#1"``… in call order; several outputs as ``"[i]"``.
    """

    def __init__(self, targets: Sequence[tuple[Any, str]], per_frame: Sequence[str] = ()) -> None:
        # (sublayer, its name without "#k" / "[i]"): one entry per layer object
        self.targets = {id(layer): (layer, base) for layer, base in targets}
        # layers TimeDistributed calls once per time step: their T calls are one output
        self.per_frame = set(per_frame)

    @classmethod
    def from_items(cls, items: Sequence[tuple[Site, tuple[Step, ...]]]) -> EagerPlan:
        timed = [site.base for site, _ in items if read_time_layout(site.layout) is not None]
        return cls([(rest[-1][0], site.base) for site, rest in items], timed)

    def __call__(self, layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Tensors:
        return self.run(layer, args, kwargs)[1]

    def run(self, layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, Tensors]:
        """Call ``layer`` once; return its output and the named sublayer outputs."""
        return undoing(self._run, layer, args, kwargs)

    def _run(
        self, undo: ExitStack, layer: Any, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[Any, Tensors]:
        records = recording(undo, [t for t, _ in self.targets.values()])  # unwrapped by undo
        out = call_layer(layer, args, kwargs)
        return out, self.collect(records)

    def collect(self, records: dict[int, list[Any]]) -> Tensors:
        """Name the recorded outputs, every call of each layer.

        A layer that never ran gives nothing: :func:`multiviz.core.names.select`
        then tells a caller who named it that it did not run (a glob or a kind
        returns what ran).
        """
        result: Tensors = {}
        for lid, (_, base) in self.targets.items():
            calls = records.get(lid, [])
            if base in self.per_frame and calls:  # T calls on (N, ...): frames (N*T, ...)
                frames = keras.ops.stack([keras.tree.flatten(c)[0] for c in calls], axis=1)
                result[base] = keras.ops.reshape(frames, (-1, *keras.ops.shape(frames)[2:]))
                continue
            for j, out in enumerate(calls):
                name = base + (f"#{j}" if j else "")
                flat = keras.tree.flatten(out)
                if len(flat) == 1:
                    result[name] = flat[0]
                else:
                    result.update({f"{name}[{i}]": t for i, t in enumerate(flat)})
        return result


def build_plan(model: Any, sites: Sequence[Site]) -> GraphPlan | EagerPlan:
    """The plan that computes ``sites`` of ``model`` (graph if it has one)."""
    items = [(site, site.path) for site in sites]
    graph = graph_of(model)
    if graph is not None:
        return GraphPlan(graph, items)
    return EagerPlan.from_items(items)


class Runner:
    """A plan plus the callable that runs it (one ``tf.function`` on TensorFlow).

    The runner returns tensors in the canonical layout except for the channel
    axis of plain channels-last maps, which the copy to NumPy moves
    (:meth:`moved_on_host`).

    The runner holds no reference to the model (it is a value in a weak-keyed
    cache): the model is passed in on every call.
    """

    def __init__(self, model: Any, sites: Sequence[Site]) -> None:
        self.plan = build_plan(model, sites)
        self.layouts = {s.key: s.layout for s in sites}
        self.layouts.update({s.base: s.layout for s in sites if not s.in_graph})
        self.layers = {s.base: s.layer for s in sites if not s.in_graph}
        graph = graph_of(model)
        self.graph_ref = weakref.ref(graph) if graph is not None and graph is not model else None
        self._fn: Callable[..., Tensors] | None = None
        if isinstance(self.plan, GraphPlan) and keras.backend.backend() == "tensorflow":
            self._fn = tf_function(self.plan_call)
        #: on JAX, a flat graph plan (layers inside nested models are read by
        #: Python-side hooks): calls so far, and the plan jitted once the same
        #: layers come back, with the variables it reads
        self._jax = (
            keras.backend.backend() == "jax"
            and isinstance(self.plan, GraphPlan)
            and not self.plan.nested
        )
        self._calls = 0
        self._jitted: Callable[..., Tensors] | None = None
        self._variables: list[Any] = []

    def plan_call(self, inputs: Sequence[Any]) -> Tensors:
        assert isinstance(self.plan, GraphPlan)
        return self.canonical(self.plan(list(inputs)), keras.ops.shape(inputs[0])[0])

    def canonical(self, tensors: Tensors, batch: Any = None) -> Tensors:
        """Outputs in the canonical layout, but for plain channels-last maps.

        A recurrent layer's states ``(N, H)`` become ``(N, 1, H)``; maps of a
        layer run per frame become ``(N, T, ...)``. Plain channels-last maps
        are left as they are (:meth:`moved_on_host`): the copy to NumPy moves
        their axis.

        ``tensors`` is emptied as it goes: run eagerly (JAX, torch), each
        layer's original is freed once moved, so the originals and the moved
        copies never all coexist.
        """
        out = {}
        for key in list(tensors):
            t = tensors.pop(key)
            layout = self.layout_of(key)
            out[key] = t if self.moved_on_host(layout) else to_canonical(t, layout, batch)
        return out

    def layout_of(self, key: str) -> str | None:
        """The layout of the output ``key`` names (a site's, or a run-time call's)."""
        layout = self.layouts.get(key)
        if layout is None:  # "relu#1" of a layer found at run time
            read = owner(key, self.layouts)
            layout = self.layouts[read[0]] if read else None
            if read and read[0] in self.layers:  # "lstm[1]": which output of it
                index = output_index_of(read[1])
                layout = output_layout(self.layers[read[0]], index, layout)
        return layout

    def host_layout(self, key: str) -> str | None:
        """The layout the copy to NumPy still has to apply to output ``key``.

        :data:`LAST` for a plain channels-last map (returned as computed,
        :meth:`moved_on_host`), ``None`` for an output already canonical.
        """
        layout = self.layout_of(key)
        return layout if self.moved_on_host(layout) else None

    @staticmethod
    def moved_on_host(layout: str | None) -> bool:
        """Whether an output of ``layout`` comes back channels-last, to be moved in the copy.

        Plain channels-last maps come back as the framework computed them and
        move their channel axis in the one copy to NumPy
        (:func:`multiviz.core.transpose.channels_first_copy`), instead of a
        transpose in the framework and then a copy: in JAX's jitted plan the
        transposes alone cost 7% of a ResNet50 forward pass, and in a
        ``tf.function`` each transposed output is one more buffer alive.
        """
        return layout == LAST

    def __call__(self, model: Any, inputs: Sequence[Any]) -> Tensors:
        """Run the plan on ``inputs``; name -> tensor, canonical but for :meth:`host_layout`."""
        if isinstance(self.plan, EagerPlan):  # subclassed: run the model itself, eagerly
            args = (inputs[0] if len(inputs) == 1 else list(inputs),)
            return self.canonical(self.plan(model, args, {}), keras.ops.shape(inputs[0])[0])
        if self._fn is not None:
            return self._fn(list(inputs))
        if self._jax:
            self._calls += 1
            if self._calls >= JAX_JIT_AFTER:
                return self._jax_call(list(inputs))
        return _no_grad(lambda: self.plan_call(inputs))

    def _jax_call(self, inputs: list[Any]) -> Tensors:
        """The plan as one ``jax.jit`` function of the variables' values and the inputs.

        Run op by op, a Keras model on JAX costs well over its jitted forward
        pass (1.6x on ResNet50); jitted, about 1.16x (benchmarks/keras_backends.py).
        Compiling takes as long as compiling the forward pass (about
        15 s for ResNet50 on 2 CPU cores), so the first call with a layer set
        runs eagerly and the second compiles: one-off captures never wait for a
        compile, repeated ones (a scan, a benchmark) run at the compiled speed.
        The compiled function lives in the runner, so the bounded per-model
        cache (:mod:`multiviz.backends.cache`) bounds the compiled functions too.
        """
        import jax

        if self._jitted is None:
            assert isinstance(self.plan, GraphPlan)
            variables = self._variables = list(self.plan.submodel.variables)

            def pure(values: list[Any], xs: list[Any]) -> Tensors:
                with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                    return self.plan_call(xs)

            self._jitted = jax.jit(pure)
        return self._jitted([v.value for v in self._variables], inputs)

    def fresh(self, model: Any) -> bool:
        """False once a Sequential was rebuilt (its inner graph replaced)."""
        graph = graph_of(model)
        if self.graph_ref is None:
            return graph is None or graph is model
        return self.graph_ref() is graph


#: on Keras's JAX backend, the call with the same layer set from which capture is jitted
JAX_JIT_AFTER = 2


def to_canonical(t: Any, layout: str | None, batch: Any = None) -> Any:
    """One output tensor in the canonical layout (a backend tensor, moved in the graph).

    A layer run per frame by ``TimeDistributed`` gives ``(N*T, ...)``: each
    frame laid out, then ``(N, T, ...)`` (``T`` from the layout, else from
    ``batch``, the outer batch size).
    """
    timed = read_time_layout(layout)
    if timed is not None:
        steps, inner = timed
        frames = to_canonical(t, inner)
        rest = tuple(keras.ops.shape(frames)[1:])
        lead = (-1, steps) if steps is not None else (batch, -1)
        return keras.ops.reshape(frames, (*lead, *rest))
    rank = len(t.shape)
    if layout == LAST and 3 <= rank <= 5:
        return keras.ops.transpose(t, (0, rank - 1, *range(1, rank - 1)))
    if layout == STATE and rank == 2:
        return keras.ops.expand_dims(t, 1)
    return t


def output_index_of(suffix: str) -> int | None:
    """``"#1[2]"`` -> 2: which flat output a key's suffix names (``None`` for the whole)."""
    if "[" not in suffix:
        return None
    last = suffix[suffix.rindex("[") + 1 : -1]
    return int(last) if last.isdigit() else None


def _no_grad(fn: Callable[[], Tensors]) -> Tensors:
    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            return fn()
    return fn()


def runner_for(model: Any, sites: Sequence[Site]) -> Runner:
    """The cached runner for ``sites`` of ``model``, built on first use."""
    key = ("capture", tuple(sorted({s.key for s in sites})))
    return cached(model, key, lambda: Runner(model, sites), fresh=lambda r: r.fresh(model))


def tf_function(fn: Callable[..., Any]) -> Any:
    """``tf.function(fn)`` as multiviz compiles every step: no autograph, shapes relaxed.

    TensorFlow warns when several ``tf.function`` objects made from the same
    Python code trace often ("creating @tf.function repeatedly in a loop"):
    multiviz does make one per model and layer set, on purpose, and keeps a
    bounded number of them (:mod:`multiviz.backends.cache`), so that warning
    would only ever be about multiviz's own functions; it is switched off for them.
    """
    import tensorflow as tf

    compiled = tf.function(fn, autograph=False, reduce_retracing=True)
    if hasattr(compiled, "_omit_frequent_tracing_warning"):
        compiled._omit_frequent_tracing_warning = True
    return compiled
