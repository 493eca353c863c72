"""Checking and converting what a user passes as input to a Keras model.

Validation happens before anything runs, against ``model.inputs[0].shape``, so
a wrong input gets one clear message naming the fix: a missing batch axis
(``x[None]``), channels on the wrong axis (``mv.to_channels_last(x)``), or the
shape the model expects.

A failure while the model runs is re-raised as
:class:`~multiviz.errors.InputShapeError` (original error kept as
``__cause__``) only when it really is about the input's size: the model's own
graph, run symbolically (shape inference, no layer called), rejects the
input's shape but accepts the shape the model was built for — e.g. a
``Reshape`` that only fits one image size behind an input of unknown height.
Every other error (a ``tf.debugging`` assertion, a ``ValueError`` raised by a
custom layer, a model without a graph) propagates unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from multiviz.backends.keras.layers import LAST, graph_of
from multiviz.errors import InputShapeError, MultivizError

__all__ = ["check_shape", "host_view", "input_errors", "plain", "to_numpy", "to_tensor"]


def plain(x: Any) -> Any:
    """``x`` itself, or a NumPy copy of a torch tensor given to a non-torch Keras."""
    if hasattr(x, "detach") and keras.backend.backend() != "torch":
        return x.detach().cpu().numpy()
    return x


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor of the active Keras backend as a NumPy array, with no warning.

    ``keras.ops.convert_to_numpy``, except on the torch backend, where Keras
    calls ``np.array(tensor)`` and NumPy 2 warns that ``torch.Tensor.__array__``
    takes no ``copy`` keyword: there the tensor is detached and read directly.
    """
    if hasattr(tensor, "detach") and hasattr(tensor, "cpu"):  # Keras on torch
        t = tensor.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    return keras.ops.convert_to_numpy(tensor)


def host_view(tensor: Any) -> np.ndarray:
    """A tensor's values as NumPy, without a copy where the backend allows one.

    On JAX and TensorFlow a zero-copy, read-only view of the tensor's host
    buffer (a device tensor is fetched); on torch the detached CPU tensor's
    memory. Callers that return the array to a user copy it first.
    """
    if keras.backend.backend() in ("jax", "tensorflow") and not isinstance(tensor, np.ndarray):
        return np.asarray(tensor)
    return to_numpy(tensor)


def to_tensor(x: Any, dtype: str) -> Any:
    """``x`` as a tensor of the active Keras backend, cast to the input's dtype."""
    x = plain(x)
    if isinstance(x, (np.ndarray, list, tuple, float, int)):
        return keras.ops.convert_to_tensor(np.asarray(x, dtype=dtype))
    return keras.ops.cast(x, dtype)


def check_shape(
    model: Any,
    got: tuple[int, ...],
    want: tuple[int | None, ...],
    layout: str,
    label: str = "input",
) -> None:
    """Raise :class:`InputShapeError` naming the fix unless ``got`` fits ``want``.

    ``label`` names the input in a model with several (``"input 'depth'"``).

    Example:
        >>> class M:
        ...     name = "net"
        >>> check_shape(M(), (2, 3, 5, 7), (None, 5, 7, 3), "channels_last")
        Traceback (most recent call last):
        ...
        multiviz.errors.InputShapeError: Model 'net' expects input of shape (None, 5, 7, 3) (channels_last); received shape (2, 3, 5, 7). x looks channels-first: convert it with mv.to_channels_last(x).
    """

    def fits(a: Sequence[int], b: Sequence[int | None]) -> bool:
        return len(a) == len(b) and all(w is None or w == g for g, w in zip(a, b, strict=True))

    name, shown = model.name, tuple(want)
    what = "input" if label == "input" else label
    if fits(got, want):
        return
    one_channel = len(want) == len(got) + 1 and (want[-1] == 1 if layout == LAST else want[1] == 1)
    if one_channel:
        without = want[:-1] if layout == LAST else (want[0], *want[2:])
        one_channel = fits(got, without)
    if fits(got, want[1:]) and not one_channel:
        raise InputShapeError(
            f"Model {name!r} expects a batch of shape {shown} for its {what}; received one "
            f"sample of shape {got}. Add a batch axis: x[None]."
        )
    if one_channel:
        axis = "x[..., None]" if layout == LAST else "x[:, None]"
        fix = f"add the channel axis of one-channel images: {axis}"
        if fits(got, want[1:]):
            fix += "; if it is one image, add a batch axis instead: x[None]"
        raise InputShapeError(
            f"Model {name!r} expects its {what} of shape {shown} ({layout}, one channel); "
            f"received shape {got} without a channel axis.\nhint: {fix}"
        )
    if len(got) != len(want):
        raise InputShapeError(
            f"Model {name!r} expects its {what} of shape {shown} (batch first, {layout}); "
            f"received shape {got} ({len(got)} axes, expected {len(want)})."
        )
    channel = -1 if layout == LAST else 1
    hint = ""
    if want[channel] is not None and got[channel] != want[channel]:
        other = 1 if layout == LAST else -1
        if got[other] == want[channel]:
            fix = "mv.to_channels_last(x)" if layout == LAST else "mv.to_channels_first(x)"
            hint = f" x looks {'channels-first' if layout == LAST else 'channels-last'}: convert it with {fix}."
        else:
            hint = f" The model expects {want[channel]} channels on axis {channel}; x has {got[channel]}."
    raise InputShapeError(
        f"Model {name!r} expects {what} of shape {shown} ({layout}); received shape {got}.{hint}"
    )


@contextlib.contextmanager
def input_errors(model: Any, x: Any) -> Iterator[None]:
    """Re-raise a failure caused by the input's size as InputShapeError, cause kept.

    ``x`` is the input, or a list with one input per graph input (in the graph's order).

    Any other exception leaves the block unchanged (see the module docstring).
    """
    try:
        yield
    except MultivizError:
        raise
    except Exception as err:
        if not (_may_be_shape_error(err) and _rejects_input_shape(model, x)):
            raise
        graph = graph_of(model)
        shapes = [tuple(r.shape) for r in graph.inputs]
        want = shapes[0] if len(shapes) == 1 else ", ".join(map(str, shapes))
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        got = _shapes(model, x)
        shown = got[0] if len(got) == 1 else ", ".join(map(str, got))
        raise InputShapeError(
            f"Running model {model.name!r} on input of shape {shown} "
            f"failed: {first} The model's layers do not accept this input size; it was built "
            f"for input shape {want}. Resize x to a size the model accepts."
        ) from err


def _values(model: Any, x: Any) -> list[Any]:
    graph = graph_of(model)
    several = isinstance(x, (list, tuple)) and graph is not None and len(graph.inputs) > 1
    return list(x) if several else [x]


def _shapes(model: Any, x: Any) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in np.shape(plain(v))) for v in _values(model, x)]


def _may_be_shape_error(err: Exception) -> bool:
    if isinstance(err, ValueError):
        return True
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return isinstance(err, tf.errors.InvalidArgumentError)
    return False


def _rejects_input_shape(model: Any, x: Any) -> bool:
    """True when shape inference fails for ``x``'s shape but not for the declared one."""
    graph = graph_of(model)
    if graph is None:  # no graph to ask: the error cannot be pinned on the input
        return False
    refs = list(graph.inputs)
    got = _shapes(model, x)
    if len(got) != len(refs):
        return False
    declared = [tuple(r.shape) for r in refs]
    return not _infers(graph, got) and _infers(graph, declared)


def _infers(graph: Any, shapes: Sequence[tuple[int | None, ...]]) -> bool:
    # Shape inference through the graph: every op's compute_output_spec, no
    # layer is called (no node is added), nothing is computed.
    specs = [keras.KerasTensor(s, dtype=r.dtype) for s, r in zip(shapes, graph.inputs, strict=True)]
    run = getattr(graph, "_run_through_graph", None)
    try:
        if run is not None:  # the long road even for the declared shapes
            run(specs, operation_fn=lambda op: op.compute_output_spec)
        else:  # pragma: no cover - other Keras versions
            graph.compute_output_spec(specs[0] if len(specs) == 1 else specs)
    except Exception:
        return False
    return True
