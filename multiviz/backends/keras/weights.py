"""Read and write per-layer parameters of a Keras 3 model.

Used by :func:`multiviz.transfer_weights` and :func:`multiviz.compare`; the
layout conversion itself is framework-free (:mod:`multiviz.core.weight_layouts`). Layers of
nested models are named ``"outer/inner"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np

from multiviz.core.weight_layouts import LayerParams
from multiviz.errors import UnsupportedModelError

__all__ = ["copy_model", "execution_order", "read", "write"]

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def execution_order(model: Any) -> list[Any]:
    """``model.layers`` re-sorted the way a forward function would run them.

    Keras lists a Functional model's layers by depth, which interleaves
    parallel branches (a ResNet shortcut convolution lands between the main
    path's last conv and its batch norm). PyTorch modules run in the order the
    ``forward`` code calls them, which normally follows one path to its end
    before the next. To make the two comparable this walks the graph
    topologically, always continuing with a consumer of the layer just placed
    when one is ready, and otherwise with the earliest ready layer in Keras's
    order (which puts the longer branch first). Sequential models and graphs
    whose nodes cannot be read keep Keras's order.
    """
    layers = list(model.layers)
    try:
        nodes = [n for ns in model._nodes_by_depth.values() for n in ns]
    except AttributeError:
        return layers
    position = {id(layer): k for k, layer in enumerate(layers)}
    parents: dict[int, set[int]] = {id(layer): set() for layer in layers}
    for node in nodes:
        if id(node.operation) in parents:
            parents[id(node.operation)].update(
                id(p.operation) for p in node.parent_nodes if id(p.operation) in parents
            )
    placed: list[Any] = []
    done: set[int] = set()
    while len(placed) < len(layers):
        ready = [lay for lay in layers if id(lay) not in done and parents[id(lay)] <= done]
        if not ready:  # a cycle cannot happen in Keras; keep the rest as listed
            placed += [lay for lay in layers if id(lay) not in done]
            break
        last = id(placed[-1]) if placed else None
        follow = [lay for lay in ready if last in parents[id(lay)]]
        pick = min(follow or ready, key=lambda lay: position[id(lay)])
        placed.append(pick)
        done.add(id(pick))
    return placed


def _walk(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for layer in execution_order(model):
        name = prefix + layer.name
        if isinstance(layer, keras.Model) or (hasattr(layer, "layers") and layer.layers):
            yield from _walk(layer, name + "/")
        else:
            yield name, layer


def _var_name(variable: Any, layer: Any = None) -> str:
    parts = getattr(variable, "path", variable.name).split(":")[0].split("/")
    if isinstance(layer, keras.layers.MultiHeadAttention):  # "query/kernel", …
        return "/".join(parts[-2:])
    name = parts[-1]
    return "kernel" if name == "depthwise_kernel" else name


def _flatten_source(layer: Any) -> tuple[int, ...] | None:
    """``(*spatial, C)`` when ``layer``'s input is a channels-last Flatten of a feature map."""
    try:
        producer = layer.input._keras_history.operation
    except (AttributeError, ValueError):  # a shared layer, or not connected
        return None
    if not isinstance(producer, keras.layers.Flatten):
        return None
    shape = tuple(producer.input.shape)[1:]
    if len(shape) < 2 or getattr(producer, "data_format", "channels_last") != "channels_last":
        return None
    return tuple(int(s) for s in shape) if all(s is not None for s in shape) else None


def _op(layer: Any) -> str:
    if isinstance(layer, _DEPTHWISE):
        return "depthwise"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batchnorm"
    if isinstance(layer, keras.layers.LayerNormalization):
        return "layernorm"
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return "mha"
    names = {_var_name(v) for v in layer.weights}
    if names and names <= {"cls_token", "pos_embed", "reg_token"}:
        return "tokens"
    return "unsupported" if layer.weights else "none"


def _config(layer: Any, op: str) -> dict:
    cfg: dict[str, Any] = {}
    if op in ("conv", "depthwise"):
        cfg.update(
            rank=len(layer.kernel_size),
            groups=getattr(layer, "groups", 1),
            stride=tuple(layer.strides),
            dilation=tuple(layer.dilation_rate),
            data_format=layer.data_format,
        )
    if op == "dense":
        cfg["flatten_from"] = _flatten_source(layer)
    if op == "layernorm":
        cfg["eps"] = float(layer.epsilon)
    if op == "mha":
        cfg["heads"] = int(layer.num_heads)
    if op == "batchnorm":
        # keras: moving = momentum * moving + (1 - momentum) * batch
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        cfg.update(eps=float(layer.epsilon), momentum=float(layer.momentum), axis=axis)
    activation = getattr(layer, "activation", None)
    if activation is not None and op in ("conv", "depthwise", "dense"):
        act = getattr(activation, "__name__", str(activation))
        if act != "linear":
            cfg["activation"] = act
    if isinstance(layer, keras.layers.Flatten):
        try:
            cfg["input_shape"] = tuple(layer.input.shape)[1:]
            cfg["data_format"] = layer.data_format
        except (AttributeError, ValueError):
            pass
    return cfg


def read(model: Any) -> list[LayerParams]:
    """Every layer (nested models flattened), in the model's layer order.

    Returns:
        One :class:`~multiviz.core.weight_layouts.LayerParams` per layer: its variables as
        NumPy copies under their short names (``"kernel"``, ``"gamma"``,
        ``"moving_variance"``…), ``op`` saying how they convert.

    Example:
        >>> [p.op for p in read(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))]  # doctest: +SKIP
        ['dense']
    """
    out = []
    for name, layer in _walk(model):
        op = _op(layer)
        arrays = {_var_name(v, layer): np.array(v.numpy(), copy=True) for v in layer.weights}
        out.append(LayerParams(name, type(layer).__name__, op, "keras", arrays, _config(layer, op)))
    return out


def write(model: Any, updates: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Assign arrays to the layers' variables, all or nothing.

    Args:
        model: the model to write to.
        updates: layer name (``"outer/inner"`` when nested) -> {short variable
            name -> array in Keras layout with the variable's exact shape}.
            Checked by the caller; this only assigns.

    Raises:
        KeyError: a layer or variable name does not exist (nothing written).
    """
    layers = dict(_walk(model))
    targets = []
    for name, arrays in updates.items():
        variables = {_var_name(v, layers[name]): v for v in layers[name].weights}
        for key, value in arrays.items():
            targets.append((variables[key], value))
    saved = [np.array(v.numpy(), copy=True) for v, _ in targets]
    try:
        for variable, value in targets:
            variable.assign(np.asarray(value))
    except BaseException:
        for (variable, _), old in zip(targets, saved, strict=True):
            variable.assign(old)
        raise


def copy_model(model: Any) -> Any:
    """An independent copy of ``model`` with the same layer names and weights.

    ``keras.models.clone_model`` (new layers and variables, same structure
    and names), then the weights copied over; writing to the copy leaves
    ``model`` as it was. Used by methods that randomize weights (sanity checks).

    Raises:
        UnsupportedModelError: the model cannot be cloned (a subclassed model
            without ``get_config``); the message says what to do.

    Example:
        >>> net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])  # doctest: +SKIP
        >>> twin = copy_model(net)                                                       # doctest: +SKIP
        >>> twin.get_layer("d").kernel is net.get_layer("d").kernel                      # doctest: +SKIP
        False
    """
    try:
        twin = keras.models.clone_model(model)
    except Exception as err:  # subclassed models without a config cannot be cloned
        raise UnsupportedModelError(
            f"Cannot copy this Keras model to randomize its weights ({type(err).__name__}: "
            f"{err}). Build it as a Functional or Sequential model, or give it get_config()."
        ) from err
    twin.set_weights(model.get_weights())
    return twin
