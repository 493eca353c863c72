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
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from multiviz.errors import (
    ImageError,
    InputShapeError,
    LayerNotFoundError,
    NotSpatialLayerError,
    UnsupportedModelError,
)

__all__ = ["names_parameters"]

F = TypeVar("F", bound=Callable[..., Any])

#: parameters that hold layer names, in the order a message is matched against them
_LAYER_PARAMS = ("layer", "pool_layer", "names", "layers")
#: parameters that hold a model
_MODEL_PARAMS = ("model", "model_a", "model_b", "source", "target", "randomized_model")


def _quoted(value: Any) -> list[str]:
    if isinstance(value, str):
        return [repr(value)]
    if isinstance(value, (list, tuple)):
        return [repr(v) for v in value if isinstance(v, str)]
    return []


def _param_for(err: Exception, bound: inspect.BoundArguments) -> str | None:
    args = bound.arguments
    if isinstance(err, UnsupportedModelError):  # the parameter whose value is not a model
        from multiviz.backends import get_backend

        for p in _MODEL_PARAMS:
            if p in args and p in bound.signature.parameters and args[p] is not None:
                try:
                    get_backend(args[p])
                except UnsupportedModelError:
                    return p
        return None
    first = str(err.args[0]).split("\n", 1)[0] if err.args else ""
    if isinstance(err, ImageError):  # the parameter holding the path the message quotes
        for p, value in args.items():
            if isinstance(value, (str, os.PathLike)) and repr(str(value)) in first:
                return p
        return None
    if isinstance(err, (LayerNotFoundError, NotSpatialLayerError)) or type(err) is TypeError:
        present = [p for p in _LAYER_PARAMS if p in bound.signature.parameters]
        for p in present:
            if any(q in first for q in _quoted(args.get(p))):
                return p
        return present[0] if len(present) == 1 or type(err) is TypeError else None
    if isinstance(err, InputShapeError) and "x" in bound.signature.parameters:
        return "x"
    return None


def _prefix(err: Exception, param: str, own: Any) -> None:
    if not err.args or not isinstance(err.args[0], str):
        return
    text = err.args[0]
    first = text.split("\n", 1)[0]
    for other in (*_LAYER_PARAMS, *_MODEL_PARAMS, "x"):  # named by a function called inside
        if other != param and other not in own and f"`{other}`" in first:
            err.args = (text.replace(f"`{other}`", f"`{param}`", 1), *err.args[1:])
            return
    if "`" in first or f"{param}=" in first:
        return
    err.args = (f"`{param}`: {text}", *err.args[1:])


_NUMBERS = {"int", "float", "None", "tuple[int, int]", "tuple[float, float]"}


def _kind(annotation: Any) -> str | None:
    """``"bool"`` / ``"bool?"`` (or None) / ``"number"`` for the annotations checked on entry."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = {p.strip() for p in text.split("|")}
    if parts == {"bool"}:
        return "bool"
    if parts == {"bool", "None"}:
        return "bool?"
    if parts & {"int", "float"} and parts <= _NUMBERS:
        return "number"
    if "Sequence[str]" in parts and parts <= {"Sequence[str]", "None"}:
        return "strings" + ("?" if "None" in parts else "")
    if len(parts) == 2 and "None" in parts and any(p.startswith("Callable[") for p in parts):
        return "callable?"
    if "os.PathLike" in parts and parts <= {"str", "os.PathLike", "None"}:
        return "path?"
    return None


def _check_flags(
    signature: inspect.Signature, flags: dict[str, str], args: Any, kwargs: dict[str, Any]
) -> None:
    """Types a string can never be: a flag annotated ``bool``, a number ``int`` / ``float``.

    ``normalize="per_map"`` would otherwise read as True, and ``steps="8"``
    fail deep inside with a message about ``str`` and ``int``.

    Raises:
        ValueError: a flag that is not a bool (as ``check_options`` raises for ``relu``).
        TypeError: any other, naming the parameter, what it takes and what was received.
    """
    try:
        bound = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        return  # Python's own message for a wrong call
    for name, kind in flags.items():
        if name not in bound:
            continue
        value = bound[name]
        if kind.startswith("bool") and not (
            isinstance(value, (bool, np.bool_)) or (kind == "bool?" and value is None)
        ):
            took = "True, False or None" if kind == "bool?" else "True or False"
            # a ValueError, as the attribution functions' own check of relu / reduce
            raise ValueError(f"`{name}` must be {took}. Received: {name}={value!r:.60}")
        if value is None and kind.endswith("?"):
            continue
        if kind.startswith("strings") and (
            isinstance(value, (str, bytes))
            or not isinstance(value, (list, tuple, np.ndarray))
            or not all(isinstance(v, str) for v in value)
        ):
            raise TypeError(f"`{name}` must be a list of strings. Received: {name}={value!r:.60}")
        if kind == "callable?" and not callable(value):
            raise TypeError(
                f"`{name}` must be a function (e.g. tqdm.tqdm) or None. Received: {name}={value!r:.60}"
            )
        if kind == "path?" and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"`{name}` must be a path or None. Received: {name}={value!r:.60}")
        if kind == "number" and isinstance(value, (str, bytes)):
            raise TypeError(
                f"`{name}` must be a number, not a string. Received: {name}={value!r:.60}"
            )


def names_parameters(func: F) -> F:
    """Wrap a public function so that deep errors name the caller's parameter."""
    signature = inspect.signature(func)

    flags = {n: _kind(p.annotation) for n, p in signature.parameters.items()}
    flags = {n: k for n, k in flags.items() if k is not None}

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if flags:
            _check_flags(signature, flags, args, kwargs)
        try:
            return func(*args, **kwargs)
        except (
            LayerNotFoundError,
            NotSpatialLayerError,
            InputShapeError,
            UnsupportedModelError,
            ImageError,
            TypeError,
        ) as err:
            if isinstance(err, TypeError) and not isinstance(
                err, (UnsupportedModelError, InputShapeError)
            ):
                if type(err) is not TypeError or not str(err).startswith("Layer names"):
                    raise
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                raise err from None
            param = _param_for(err, bound)
            if param is not None:
                _prefix(err, param, signature.parameters)
            raise

    return wrapper  # type: ignore[return-value]
