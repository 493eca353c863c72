"""Temporary patches on Keras layer instances, always undone on the way out.

Two things attach to a user's layers for the length of one call, and both live
in context managers so that leaving the ``with`` block — normally or through
an exception — is the only way out, and the layer is left as it was found:

* :func:`recording` wraps ``call`` on chosen layer *instances* to keep what
  each call returns (the fallback for models without a symbolic graph). The
  wrapper is an instance attribute that shadows the class's method; on exit it
  is deleted again, so ``"call" not in layer.__dict__`` holds afterwards.
* :func:`swapped` sets attributes (``activation``, ``call``) to replacements
  and restores the originals (used by guided backpropagation and logits).

Attributes are set with ``object.__setattr__`` so Keras' attribute tracking
never sees the temporary values.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["call_layer", "recording", "swapped"]

_MISSING = object()


@contextlib.contextmanager
def swapped(patches: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``obj.name = value`` for each patch; restore every original on exit.

    An attribute that was not in the instance's ``__dict__`` before (a method
    looked up on the class) is deleted again rather than set back.
    """
    saved: list[tuple[Any, str, Any]] = []
    try:
        for obj, name, value in patches:
            saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
            object.__setattr__(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is _MISSING:
                object.__delattr__(obj, name)
            else:
                object.__setattr__(obj, name, old)


@contextlib.contextmanager
def recording(
    layers: Sequence[Any], inputs: dict[int, list[Any]] | None = None
) -> Iterator[dict[int, list[Any]]]:
    """Record the outputs of every call of ``layers`` while the block runs.

    Args:
        layers: the layer instances to watch.
        inputs: if given, also filled with ``id(layer) -> [first positional
            argument of each call]``.

    Yields:
        ``id(layer) -> [output of call 0, output of call 1, ...]``.
    """
    unique = list({id(layer): layer for layer in layers}.values())
    records: dict[int, list[Any]] = {id(layer): [] for layer in unique}
    patches = []
    for layer in unique:
        sink_in = None if inputs is None else inputs.setdefault(id(layer), [])
        patches.append((layer, "call", _recorder(layer.call, records[id(layer)], sink_in)))
    with swapped(patches):
        yield records


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
