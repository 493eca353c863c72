"""Walking a Keras 3 model: every addressable output ("site"), its name and layout.

A *site* is one output tensor of one layer call that a user can ask for by
name. Names follow what the user wrote:

* ``"conv1"`` — a layer of the top-level model;
* ``"relu#1"`` — the second call of a layer called several times (one site per
  call node of this graph, in call order);
* ``"split[0]"`` — the first output of a layer with several outputs;
* ``"encoder/conv1"`` — a layer inside a nested model used as a layer (the
  nested model itself is a site too, of kind ``"container"``); recursively
  ``"a/b/c"``, and ``"encoder#1/conv1"`` for the second call of a shared
  nested model.

Functional and Sequential models have a symbolic graph, so every site is a
``(layer, node)`` pair and its output shape is known statically. Subclassed
models (and user-defined layers that own sublayers) have no graph: their
sublayers are listed from the layer tree and found at run time.

Channel order is explicit data: a layer's layout comes from its own
``data_format`` (or a BatchNormalization / GroupNormalization ``axis``);
layers without one inherit the layout of the nearest upstream layer that has
one, and the global ``keras.config.image_data_format()`` decides when nothing
upstream does. Shapes are never inspected to guess it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras

__all__ = [
    "Site",
    "Step",
    "bounds_of",
    "canonical_shape",
    "geometry_of",
    "graph_of",
    "list_sites",
    "node_index",
    "sublayers",
]

LAST, FIRST = "channels_last", "channels_first"
#: a 4-D output whose axes are not an image's (a ``Permute`` that is neither
#: channels-last -> first nor back): returned as Keras gives it, never a map
OTHER = "other"
#: a recurrent layer's sequence (N, T, F) and its states, laid out (N, 1, H) (see core.layout)
SEQUENCE, STATE = "sequence", "state"
#: a layer inside ``TimeDistributed``: ``"time_maps:T:<its own layout>"`` (T ``?`` if unknown);
#: its outputs, one per frame ``(N*T, ...)``, are laid out ``(N, T, C, H, W)``
TIME = "time_maps"


def time_layout(inner: str, steps: int | None) -> str:
    """The layout of a layer run per time step by ``TimeDistributed`` (see :data:`TIME`)."""
    return f"{TIME}:{steps if steps is not None else '?'}:{inner}"


def read_time_layout(layout: str | None) -> tuple[int | None, str] | None:
    """``(T, inner layout)`` of a :func:`time_layout` string, else ``None``.

    Example:
        >>> read_time_layout(time_layout("channels_last", 5)), read_time_layout("channels_last")
        ((5, 'channels_last'), None)
    """
    if not layout or not layout.startswith(TIME + ":"):
        return None
    _, steps, inner = layout.split(":", 2)
    return (None if steps == "?" else int(steps)), inner


#: One step of a site's path: a layer and the index of its call node in the
#: parent graph (``None`` below a layer that has no graph: found at run time).
Step = tuple[Any, "int | None"]

_KINDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Conv1D",
            "Conv2D",
            "Conv3D",
            "DepthwiseConv1D",
            "DepthwiseConv2D",
            "SeparableConv1D",
            "SeparableConv2D",
            "Conv1DTranspose",
            "Conv2DTranspose",
            "Conv3DTranspose",
        ),
        "conv",
    ),
    **dict.fromkeys(("Dense", "EinsumDense"), "dense"),
    **dict.fromkeys(
        (
            "BatchNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "RMSNormalization",
            "UnitNormalization",
        ),
        "norm",
    ),
    **dict.fromkeys(("Activation", "ReLU", "Softmax", "LeakyReLU", "PReLU", "ELU"), "activation"),
}
# layers whose `axis` names the channel axis (the layout is read from it)
_AXIS_LAYOUT = ("BatchNormalization", "GroupNormalization")


@dataclass(frozen=True, eq=False)
class Site:
    """One addressable output of a model.

    Attributes:
        key: the name a user passes (``"enc/conv#1[0]"``).
        base: the layer's name without the call and output suffix
            (``"enc/conv"``): what :meth:`KerasBackend.capture` is asked for.
        layer: the Keras layer that produces it.
        path: ``(layer, node index)`` steps from the top-level graph down to
            ``layer``; the node index is ``None`` below a layer without a graph.
        output_index: which flat output of the call, ``None`` for one output.
        layout: ``"channels_last"`` or ``"channels_first"``.
        shape: the output shape in the layer's own layout, ``None`` if unknown.
    """

    key: str
    base: str
    layer: Any
    path: tuple[Step, ...]
    output_index: int | None
    layout: str
    shape: tuple[int | None, ...] | None

    @property
    def in_graph(self) -> bool:
        """True when the whole path is made of graph nodes (known statically)."""
        return all(k is not None for _, k in self.path)

    @property
    def kind(self) -> str:
        return kind_of(self.layer)

    @property
    def type(self) -> str:
        return type(self.layer).__name__


# --------------------------------------------------------------------------- types


def graph_of(layer: Any) -> Any | None:
    """The Functional graph behind ``layer``: itself, a Sequential's inner one, or None."""
    if not isinstance(layer, keras.Model):
        return None
    if isinstance(layer, keras.Sequential):
        return layer._functional  # None until the Sequential is built
    if isinstance(getattr(layer, "_nodes_by_depth", None), dict):
        return layer
    return None


def sublayers(layer: Any) -> list[Any]:
    """Direct sublayers of a model or of a user-defined layer that owns layers.

    Keras' own composite layers (``MultiHeadAttention``, ``Bidirectional``…)
    are treated as leaves: their internals are not what a user addresses.
    """
    if not isinstance(layer, keras.Model) and _is_builtin(layer):
        return []
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return list(getattr(layer, "layers", []))
    found = flatten(include_self=False, recursive=False)
    return [c for c in found if not isinstance(c, keras.layers.InputLayer)]


def _is_builtin(layer: Any) -> bool:
    return type(layer).__module__.split(".")[0] == "keras"


def kind_of(layer: Any) -> str:
    """The framework-neutral kind of a layer, from the names of its classes."""
    if isinstance(layer, keras.Model):
        return "container"
    for cls in type(layer).__mro__:
        if cls.__module__.split(".")[0] != "keras":
            continue
        if cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
        if "Pooling" in cls.__name__:
            return "pool"
    return "other"


def own_params(layer: Any) -> int:
    """Parameters a layer owns directly (those of its sublayers excluded)."""
    total = _count(layer.weights)
    for child in sublayers(layer):
        total -= _count(child.weights)
    return max(total, 0)


def _count(weights: Sequence[Any]) -> int:
    n = 0
    for w in weights:
        size = 1
        for d in w.shape:
            size *= int(d)
        n += size
    return n


def node_index(layer: Any, node: Any) -> int:
    """Index of ``node`` in ``layer._inbound_nodes`` (identity, not equality)."""
    for k, candidate in enumerate(layer._inbound_nodes):
        if candidate is node:
            return k
    raise LookupError(f"node {node!r} is not a call node of layer {layer.name!r}")


def graph_layer_nodes(graph: Any) -> Iterator[tuple[Any, int, Any]]:
    """``(layer, node index, node)`` for every layer call in ``graph``, model order.

    A layer shared with another model has nodes outside this graph: only the
    nodes of this graph are yielded, in call order.
    """
    in_graph = {id(n) for nodes in graph._nodes_by_depth.values() for n in nodes}
    for layer in graph.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        for k, node in enumerate(layer._inbound_nodes):
            if id(node) in in_graph:
                yield layer, k, node


# --------------------------------------------------------------------------- layouts


def _axis_layout(layer: Any, rank: int) -> str | None:
    axis = getattr(layer, "axis", None)
    if not isinstance(axis, int) or rank < 3:
        return None
    axis %= rank
    return LAST if axis == rank - 1 else FIRST if axis == 1 else None


def is_recurrent(layer: Any) -> bool:
    """A recurrent layer (``LSTM``, ``GRU``, ``SimpleRNN``, ``RNN``, ``Bidirectional``)."""
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


def own_layout(layer: Any, rank: int) -> str | None:
    """The layout a layer declares itself, or ``None`` when it declares none.

    A recurrent layer and an ``Embedding`` declare a sequence ``(N, T, F)``:
    what *is* a sequence is never transposed like a channels-last map, and the
    layers after it inherit that.
    """
    fmt = getattr(layer, "data_format", None)
    if fmt in (LAST, FIRST):
        return fmt
    if is_recurrent(layer) or isinstance(layer, keras.layers.Embedding):
        return SEQUENCE
    if any(c.__name__ in _AXIS_LAYOUT for c in type(layer).__mro__):
        return _axis_layout(layer, rank)
    return None


def _rank(tensor: Any) -> int:
    return len(tensor.shape)


def node_layout(node: Any, outer: tuple[Any, ...] = ()) -> str:
    """The layout of a graph node's outputs (nearest upstream declaration).

    ``outer`` is the chain of enclosing nested-model nodes, outermost first: a
    search that reaches a nested graph's input continues in the parent graph.
    With no declaration upstream, a rank-3 output is a sequence ``(N, T, F)``
    (a ``Dense`` applied to a sequence input); maps fall back to
    ``keras.config.image_data_format()``.
    """
    found = _search_upstream(node, outer)
    if found is None and node.outputs and _rank(node.outputs[0]) == 3:
        return SEQUENCE
    return found or keras.config.image_data_format()


def output_layout(layer: Any, index: int | None, layout: str) -> str:
    """The layout of output ``index`` of ``layer``: a recurrent layer's states are :data:`STATE`."""
    if index and is_recurrent(layer):
        return STATE
    return layout


def _permuted(dims: tuple[int, ...], before: str) -> str:
    """The layout after ``Permute(dims)`` of a map laid out ``before``.

    ``Permute((3, 1, 2))`` of a channels-last map is a channels-first map (a
    port's usual step before ``Flatten``, to match PyTorch's order), and
    ``(2, 3, 1)`` the way back; any other reordering is :data:`OTHER`.
    """
    if dims == (1, 2, 3):
        return before
    if (before, dims) in ((LAST, (3, 1, 2)), (FIRST, (2, 3, 1))):
        return FIRST if before == LAST else LAST
    return OTHER


def _search_upstream(node: Any, outer: tuple[Any, ...]) -> str | None:
    queue: collections.deque[tuple[Any, tuple[Any, ...]]] = collections.deque([(node, outer)])
    seen: set[int] = set()
    while queue:
        current, chain = queue.popleft()
        if id(current) in seen:
            continue
        seen.add(id(current))
        op = current.operation
        if current.is_input or isinstance(op, keras.layers.InputLayer):
            if chain:  # leave the nested graph through the node that called it
                queue.extend((p, chain[:-1]) for p in chain[-1].parent_nodes)
            continue
        rank = _rank(current.outputs[0]) if current.outputs else 0
        if isinstance(op, keras.layers.Permute) and rank == 4 and current.parent_nodes:
            return _permuted(tuple(op.dims), node_layout(current.parent_nodes[0], chain))
        fmt = own_layout(op, rank)
        if fmt is None and graph_of(op) is not None:
            fmt = _nested_output_layout(graph_of(op))
        if fmt is not None:
            return fmt
        queue.extend((p, chain) for p in current.parent_nodes)
    return None


def _nested_output_layout(graph: Any) -> str | None:
    # the layout a nested model's output was produced in, searched inside it only
    for tensor in graph.outputs:
        op, k, _ = tensor._keras_history
        found = _search_upstream(op._inbound_nodes[k], ())
        if found:
            return found
    return None


def canonical_shape(
    shape: Sequence[int | None] | None, layout: str
) -> tuple[int | None, ...] | None:
    """Move the channel axis of a channels-last shape to position 1 (ranks 3-5).

    The batch axis is reported as ``None``.

    Example:
        >>> canonical_shape((None, 8, 9, 3), "channels_last")
        (None, 3, 8, 9)
        >>> canonical_shape((None, 10), "channels_last")
        (None, 10)
        >>> canonical_shape((None, 7, 16), "sequence"), canonical_shape((None, 16), "state")
        ((None, 7, 16), (None, 1, 16))
    """
    if shape is None:
        return None
    shape = tuple(None if d is None else int(d) for d in shape)
    timed = read_time_layout(layout)
    if timed is not None and len(shape) >= 2:  # (None, T, frame...) -> (None, T, C, H, W)
        frame = canonical_shape((None, *shape[2:]), timed[1]) or (None,)
        return (None, shape[1], *frame[1:])
    if layout == STATE and len(shape) == 2:
        return (None, 1, shape[1])
    if layout == LAST and 3 <= len(shape) <= 5:
        return (None, shape[-1], *shape[1:-1])
    return (None, *shape[1:]) if shape else shape


# --------------------------------------------------------------------------- listing


def list_sites(model: Any) -> list[Site]:
    """Every site of ``model``, in model order (InputLayers excluded).

    In a model that declares its patch grid (a layer with ``grid`` and
    ``num_prefix_tokens``, see :mod:`multiviz.backends.keras.tokens`), a
    rank-3 output with the grid's token (or patch) count is a token layer:
    its layout is ``"tokens"`` (``"patches"``) and it is never transposed.
    """
    graph = graph_of(model)
    if graph is not None:
        sites = list(_graph_sites(graph, "", (), ()))
    else:  # subclassed, or a Sequential not built yet: the layer tree, found at run time
        sites = list(_eager_sites(model, "", (), keras.config.image_data_format()))
    from multiviz.backends.keras.tokens import model_token_grid

    grid = model_token_grid(model)
    if grid is None:
        return sites
    return [_token_site(s, grid) for s in sites]


def _token_site(site: Site, grid: Any) -> Site:
    from multiviz.core.tokens import PATCHES, TOKENS

    shape = site.shape
    if shape is None or len(shape) != 3 or shape[1] not in (grid.tokens, grid.patches):
        return site
    layout = TOKENS if shape[1] == grid.tokens else PATCHES
    return dataclasses.replace(site, layout=layout)


def _graph_sites(
    graph: Any, prefix: str, path: tuple[Step, ...], outer: tuple[Any, ...]
) -> Iterator[Site]:
    occurrences: dict[int, int] = collections.defaultdict(int)
    for layer, k, node in graph_layer_nodes(graph):
        occ = occurrences[id(layer)]
        occurrences[id(layer)] += 1
        base = prefix + layer.name
        name = base + (f"#{occ}" if occ else "")
        here = (*path, (layer, k))
        layout = node_layout(node, outer)
        multi = len(node.outputs) > 1
        for i, tensor in enumerate(node.outputs):
            yield Site(
                key=name + (f"[{i}]" if multi else ""),
                base=base,
                layer=layer,
                path=here,
                output_index=i if multi else None,
                layout=output_layout(layer, i, layout),
                shape=tuple(tensor.shape),
            )
        inner = graph_of(layer)
        if inner is not None:
            yield from _graph_sites(inner, name + "/", here, (*outer, node))
        elif isinstance(layer, keras.layers.TimeDistributed):
            steps = node.outputs[0].shape[1] if node.outputs else None
            yield from _time_distributed_sites(layer, name + "/", here, steps)
        elif isinstance(layer, keras.layers.Bidirectional):
            yield from _bidirectional_sites(layer, name + "/", here)
        else:
            yield from _eager_sites(layer, name + "/", here, layout)


def _time_distributed_sites(
    wrapper: Any, prefix: str, path: tuple[Step, ...], steps: int | None
) -> Iterator[Site]:
    """The layers of the per-frame model inside ``TimeDistributed``: ``td/fconv``.

    Found at run time (the wrapper calls its model on ``(N*T, ...)``); laid out
    ``(N, T, C, H, W)`` (:data:`TIME`). A wrapped single layer is the wrapper's
    own output and has no inner name.
    """
    inner = graph_of(wrapper.layer)
    if inner is None or steps is None:  # unknown T: Keras vectorizes the call, nothing to record
        return
    for site in _graph_sites(inner, prefix, (), ()):
        shape = None if site.shape is None else (None, steps, *site.shape[1:])
        yield Site(
            site.key,
            site.base,
            site.layer,
            path + tuple((layer, None) for layer, _ in site.path),
            site.output_index,
            time_layout(site.layout, steps),
            shape,
        )


def _bidirectional_sites(wrapper: Any, prefix: str, path: tuple[Step, ...]) -> Iterator[Site]:
    """The forward and backward recurrent layers of ``Bidirectional``: ``bi/forward_lstm``.

    Found at run time; each output as that layer returns it (the backward
    layer's sequence in reversed time, as Keras computes it before
    ``Bidirectional`` flips and merges it).
    """
    for child in (wrapper.forward_layer, wrapper.backward_layer):
        name = prefix + child.name
        yield Site(name, name, child, (*path, (child, None)), None, SEQUENCE, None)


def _eager_sites(layer: Any, prefix: str, path: tuple[Step, ...], layout: str) -> Iterator[Site]:
    # No graph: sublayers in the order the layer tracks them; a sublayer
    # without a layout of its own inherits the one seen last before it.
    for child in sublayers(layer):
        here = (*path, (child, None))
        layout = own_layout(child, 4) or layout
        name = prefix + child.name
        yield Site(name, name, child, here, None, layout, None)
        inner = graph_of(child)
        if inner is not None:
            yield from _graph_sites_below_eager(inner, name + "/", here)
        else:
            yield from _eager_sites(child, name + "/", here, layout)


def _graph_sites_below_eager(graph: Any, prefix: str, path: tuple[Step, ...]) -> Iterator[Site]:
    # A Functional model inside a subclassed one: its layers are found at run
    # time like any other sublayer, but their layouts and shapes are known.
    for site in _graph_sites(graph, prefix, (), ()):
        yield Site(
            site.key,
            site.base,
            site.layer,
            path + tuple((layer, None) for layer, _ in site.path),
            site.output_index,
            site.layout,
            None,
        )


# --------------------------------------------------------------------------- geometry


# 2-D layers that slide a window over the grid (transposed convolutions upsample: left out)
_WINDOWED_2D = (
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "MaxPooling2D",
    "AveragePooling2D",
)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def geometry_of(layer: Any) -> dict:
    """``kernel``, ``stride``, ``padding``, ``dilation`` of a 2-D windowed layer, else ``{}``.

    Padding is Keras's own word, ``"same"`` or ``"valid"`` (TensorFlow's rule
    places the extra pixel of an odd total after the input).
    """
    if type(layer).__name__ not in _WINDOWED_2D or not _is_builtin(layer):
        return {}
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if kernel is None:
        return {}
    kernel = _pair(kernel)
    stride = _pair(getattr(layer, "strides", None) or kernel)
    padding = str(getattr(layer, "padding", "valid")).lower()
    dilation = _pair(getattr(layer, "dilation_rate", 1) or 1)
    return {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}


# activation name -> the values it saturates at (see multiviz.core.stats)
_BOUNDS: dict[str, tuple[float, ...]] = {
    "relu6": (6.0,),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
}


def bounds_of(layer: Any) -> tuple[float, ...] | None:
    """Where a layer's output saturates: its own bounded activation, or one fused into it.

    ``Activation("sigmoid")``, ``ReLU(max_value=6)``, ``Conv2D(...,
    activation="relu6")``, ``Dense(..., activation="tanh")``; ``None`` for an
    unbounded layer.
    """
    if type(layer).__name__ == "ReLU" and _is_builtin(layer):
        top = getattr(layer, "max_value", None)
        return (float(top),) if top is not None else None
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", None) if callable(fn) else None
    return _BOUNDS.get(name) if isinstance(name, str) else None
