"""Temporary patches on Keras layer instances, always undone on the way out.

Two things attach to a user's layers for the length of one call:

* :func:`recording` wraps ``call`` on chosen layer *instances* to keep what
  each call returns (the fallback for models without a symbolic graph). The
  wrapper is an instance attribute that shadows the class's method; on exit it
  is deleted again, so ``"call" not in layer.__dict__`` holds afterwards.
* :func:`swap` sets an attribute (``activation``, ``call``) to a replacement
  and restores the original (used by guided backpropagation and logits).

Each registers its undo on the call's undo stack (an
:class:`~contextlib.ExitStack`, see :mod:`multiviz.backends.guard`) *before*
it patches, and the undo is a builtin (``dict.__setitem__`` / ``dict.pop`` on
the layer's ``__dict__``), not a line of multiviz: however the call ends — an
error, or a ``KeyboardInterrupt`` landing on any line — the layer is left as
it was found. Attributes are written to the instance's ``__dict__`` so Keras'
attribute tracking never sees the temporary values.

A patched attribute serves only the thread that patched it: a forward pass
the user runs in another thread meanwhile gets the original (not recorded, not
guided).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from multiviz.backends.guard import this_thread

__all__ = ["call_layer", "recording", "swap"]


def swap(undo: ExitStack, obj: Any, name: str, value: Any) -> None:
    """``obj.name = value`` in the calling thread until ``undo`` closes; then the original.

    ``value`` serves the thread that swapped it in; other threads calling
    ``obj.name`` meanwhile get the original. An attribute that was not in the
    instance's ``__dict__`` before (a method looked up on the class) is
    deleted again rather than set back.

    Example:
        >>> from contextlib import ExitStack
        >>> class Layer:
        ...     def call(self, x):
        ...         return x
        >>> layer = Layer()
        >>> with ExitStack() as undo:
        ...     swap(undo, layer, "call", lambda x: -x)
        ...     layer.call(2)
        -2
        >>> layer.call(2), "call" in layer.__dict__
        (2, False)
    """
    attrs = obj.__dict__
    original = getattr(obj, name)
    if name in attrs:  # the undo before the change: a builtin, no line of multiviz
        undo.callback(attrs.__setitem__, name, attrs[name])
    else:
        undo.callback(attrs.pop, name, None)
    attrs[name] = _for_this_thread(value, original) if callable(original) else value


def _for_this_thread(patched: Callable[..., Any], original: Callable[..., Any]) -> Any:
    owner = this_thread()

    def call(*args: Any, **kwargs: Any) -> Any:
        if this_thread() != owner:
            return original(*args, **kwargs)
        return patched(*args, **kwargs)

    for attr in ("__name__", "__qualname__", "__doc__"):  # Keras reads activation.__name__
        if hasattr(original, attr):
            setattr(call, attr, getattr(original, attr))
    return call


def recording(
    undo: ExitStack, layers: Sequence[Any], inputs: dict[int, list[Any]] | None = None
) -> dict[int, list[Any]]:
    """Record the outputs of every call of ``layers`` until ``undo`` closes.

    Args:
        undo: where the unwrapping is registered.
        layers: the layer instances to watch.
        inputs: if given, also filled with ``id(layer) -> [first positional
            argument of each call]``.

    Returns:
        ``id(layer) -> [output of call 0, output of call 1, ...]``, filled as
        the layers run (in the calling thread only).
    """
    unique = list({id(layer): layer for layer in layers}.values())
    records: dict[int, list[Any]] = {id(layer): [] for layer in unique}
    for layer in unique:
        sink_in = None if inputs is None else inputs.setdefault(id(layer), [])
        swap(undo, layer, "call", _recorder(layer.call, records[id(layer)], sink_in))
    return records


def _recorder(
    call: Callable[..., Any], sink: list[Any], sink_in: list[Any] | None
) -> Callable[..., Any]:
    def call_and_record(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        if _in_symbolic_scope():  # Keras building the model by shape inference
            return out
        sink.append(out)
        if sink_in is not None:
            sink_in.append(args[0] if args else next(iter(kwargs.values()), None))
        return out

    return call_and_record


def _in_symbolic_scope() -> bool:
    # A model's first call builds it by tracing `call` on symbolic tensors
    # (compute_output_spec); those are not outputs to record. No public API.
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # pragma: no cover - other Keras versions
        return False
    return bool(in_symbolic_scope())


def call_layer(layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Call ``layer(*args, **kwargs)`` in inference mode (``training=False``).

    ``training`` is only passed to layers whose ``call`` accepts it, like
    Keras' own Functional models do.
    """
    if _takes_training(layer):
        kwargs = {**kwargs, "training": False}
    return layer(*args, **kwargs)


def _takes_training(layer: Any) -> bool:
    flag = getattr(layer, "_call_has_training_arg", None)
    if isinstance(flag, bool):
        return flag
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
