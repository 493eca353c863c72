"""The exceptions multiviz raises.

One base class, :class:`MultivizError`, so a caller can catch everything
multiviz says about bad input in one place; specific subclasses where a caller
would want to tell them apart. Every message says what was received, what is
valid, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

__all__ = [
    "BackendUnavailableError",
    "InputShapeError",
    "InputTypeError",
    "LayerNotFoundError",
    "MultivizError",
    "MultivizWarning",
    "TargetError",
    "UnsupportedModelError",
]


class MultivizError(Exception):
    """Base class of every error multiviz raises on purpose."""


class UnsupportedModelError(MultivizError, TypeError):
    """The object passed as a model is not one any backend can handle."""


class BackendUnavailableError(MultivizError, ImportError):
    """A framework that a call needs is not installed."""


class LayerNotFoundError(MultivizError, KeyError):
    """A layer name, pattern or kind matched no layer of the model."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class InputShapeError(MultivizError, ValueError):
    """The input's shape or layout does not fit the model."""


class InputTypeError(InputShapeError, TypeError):
    """The input is not an array the backend accepts (NumPy or a framework tensor)."""


class TargetError(MultivizError, ValueError):
    """``target`` does not fit the batch or the model's output."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates closest to ``name`` (difflib ratio).

    Example:
        >>> closest("layr1.conv", ["layer1.conv1", "fc", "layer2.conv1"], n=2)
        ['layer1.conv1', 'layer2.conv1']
    """
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not found:  # fall back to substring matches so short names still get hints
        low = name.lower()
        found = [c for c in candidates if low in c.lower() or c.lower() in low][:n]
    return found


def layer_hint(name: str, names: Collection[str]) -> str:
    """The end of a "no such layer" message: the closest names, and where to see all.

    Example:
        >>> layer_hint("conv", ["conv1", "fc"])
        " Closest layer names: ['conv1']. See mv.layers(model) for all 2."
    """
    near = closest(name, names)
    if near:
        return f" Closest layer names: {near}. See mv.layers(model) for all {len(names)}."
    return f" See mv.layers(model) for the {len(names)} layer names."


class MultivizWarning(UserWarning):
    """Something the caller should know about a result, that does not stop it (NaN maps…)."""
