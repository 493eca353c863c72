"""Errors raised deep inside a call name the parameter the caller used (DESIGN.md, errors).

A layer name is looked up, and an input checked, far below the public
function that received it; the message written there cannot know whether
the caller called it ``layer``, ``names``, ``layers`` or ``pool_layer``.
:func:`names_parameters` wraps a public function: a :class:`LayerNotFoundError`
or :class:`NotSpatialLayerError` is prefixed with the parameter whose value
it quotes, an :class:`InputShapeError` about the input with `` `x` ``. A
message that already names a parameter (a backtick) is left alone.

Example:
    >>> from multiviz.errors import LayerNotFoundError
    >>> @names_parameters
    ... def grad_cam(model, x, layer=None):
    ...     raise LayerNotFoundError(f"No layer named {layer!r}.")
    >>> grad_cam(None, None, layer="conv9")
    Traceback (most recent call last):
    ...
    multiviz.errors.LayerNotFoundError: `layer`: No layer named 'conv9'.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from multiviz.errors import InputShapeError, LayerNotFoundError, NotSpatialLayerError

__all__ = ["names_parameters"]

F = TypeVar("F", bound=Callable[..., Any])

#: parameters that hold layer names, in the order a message is matched against them
_LAYER_PARAMS = ("layer", "pool_layer", "names", "layers")


def _quoted(value: Any) -> list[str]:
    if isinstance(value, str):
        return [repr(value)]
    if isinstance(value, (list, tuple)):
        return [repr(v) for v in value if isinstance(v, str)]
    return []


def _param_for(err: Exception, bound: inspect.BoundArguments) -> str | None:
    args = bound.arguments
    first = str(err.args[0]).split("\n", 1)[0] if err.args else ""
    if isinstance(err, (LayerNotFoundError, NotSpatialLayerError)) or type(err) is TypeError:
        present = [p for p in _LAYER_PARAMS if p in bound.signature.parameters]
        for p in present:
            if any(q in first for q in _quoted(args.get(p))):
                return p
        return present[0] if len(present) == 1 or type(err) is TypeError else None
    if isinstance(err, InputShapeError) and "x" in bound.signature.parameters:
        return "x"
    return None


def _prefix(err: Exception, param: str) -> None:
    if not err.args or not isinstance(err.args[0], str):
        return
    first = err.args[0].split("\n", 1)[0]
    if "`" in first or f"{param}=" in first:
        return
    err.args = (f"`{param}`: {err.args[0]}", *err.args[1:])


def names_parameters(func: F) -> F:
    """Wrap a public function so that deep errors name the caller's parameter."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (LayerNotFoundError, NotSpatialLayerError, InputShapeError, TypeError) as err:
            if type(err) is TypeError and not str(err).startswith("Layer names"):
                raise
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                raise err from None
            param = _param_for(err, bound)
            if param is not None:
                _prefix(err, param)
            raise

    return wrapper  # type: ignore[return-value]
