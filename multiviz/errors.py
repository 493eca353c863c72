"""Every exception and warning multiviz raises, in one tree, and the closest-name hints.

One base class, :class:`MultivizError`, so a caller can catch everything
multiviz says about bad input in one place; specific subclasses where a caller
would want to tell them apart. Each also derives from the built-in exception a
caller would expect (``ValueError`` for a bad value, ``KeyError`` for a missing
name, ``ImportError`` for a missing framework). Every message says what was
received, what is valid, and how to fix it.

::

    MultivizError
    ├── UnsupportedModelError (TypeError)     the model is no framework's
    ├── BackendUnavailableError (ImportError) a framework is not installed
    ├── LayerNotFoundError (KeyError)         a layer name, pattern or kind matched nothing
    │   └── AmbiguousLayerError (ValueError)  a pattern matched several layers where one is needed
    ├── InputShapeError (ValueError)          the input does not fit the model
    │   └── InputTypeError (TypeError)        the input is not an array
    ├── TargetError (ValueError)              `target` does not fit the batch or the output
    ├── NotSpatialLayerError (ValueError)     a CAM layer does not output (N, C, H, W)
    ├── CamHeadError (ValueError)             CAM needs pooling and a dense head
    ├── TokenGridError (ValueError)           a ViT's patch grid is unknown or does not fit
    ├── UnsupportedAttentionError (ValueError) attention rollout cannot read an attention layer
    ├── TransferError (ValueError)            weights cannot be converted or copied
    ├── ImageError (ValueError)               an image file or array cannot be read
    ├── WeightsFileError (ValueError)         the built-in model's weights file
    ├── ModelLoadError (ValueError)           a model spec or file cannot be loaded
    │   └── UnsafeFileError                   loading would run code stored in the file
    ├── NoNetworkError (RuntimeError)         pretrained weights could not be downloaded
    ├── UsageError (ValueError)               the command line itself is wrong
    ├── NumberError (ValueError)              a number is NaN, infinite, or out of range
    ├── ModelsDifferError                     `multiviz compare` found the models differ
    └── ScanFileError (ValueError)            a file is not a saved scan, or does not fit this one

    MultivizWarning (UserWarning)             something the caller should know, not an error
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

__all__ = [
    "AmbiguousLayerError",
    "BackendUnavailableError",
    "CamHeadError",
    "ImageError",
    "InputShapeError",
    "InputTypeError",
    "LayerNotFoundError",
    "ModelLoadError",
    "ModelsDifferError",
    "MultivizError",
    "MultivizWarning",
    "NoNetworkError",
    "NotSpatialLayerError",
    "NumberError",
    "ScanFileError",
    "TargetError",
    "TokenGridError",
    "TransferError",
    "UnsafeFileError",
    "UnsupportedAttentionError",
    "UnsupportedModelError",
    "UsageError",
    "WeightsFileError",
]


class MultivizError(Exception):
    """Base class of every error multiviz raises on purpose."""


# --------------------------------------------------------------------------- models, frameworks


class UnsupportedModelError(MultivizError, TypeError):
    """The object passed as a model is not one any backend can handle."""


class BackendUnavailableError(MultivizError, ImportError):
    """A framework that a call needs is not installed."""


# --------------------------------------------------------------------------- layers, inputs, targets


class LayerNotFoundError(MultivizError, KeyError):
    """A layer name, pattern or kind matched no layer of the model."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class AmbiguousLayerError(LayerNotFoundError, ValueError):
    """A layer pattern matched several layers where a call uses exactly one.

    A :class:`LayerNotFoundError` (the layer the caller meant is not known), and
    a ``ValueError`` too, as the value given matches more than one name.
    """


class InputShapeError(MultivizError, ValueError):
    """The input's shape or layout does not fit the model."""


class InputTypeError(InputShapeError, TypeError):
    """The input is not an array the backend accepts (NumPy or a framework tensor)."""


class TargetError(MultivizError, ValueError):
    """``target`` does not fit the batch or the model's output."""


# --------------------------------------------------------------------------- attribution


class NotSpatialLayerError(MultivizError, ValueError):
    """The layer a CAM method was given does not output a spatial map ``(N, C, H, W)``."""


class CamHeadError(MultivizError, ValueError):
    """The model's head is not what CAM needs: global average pooling, then a dense layer."""


# --------------------------------------------------------------------------- weights, files, sources


class TokenGridError(MultivizError, ValueError):
    """A token layer's patch grid is unknown, or does not fit its token count."""


class UnsupportedAttentionError(MultivizError, ValueError):
    """An attention layer whose probabilities multiviz cannot recompute (or no attention at all)."""


class TransferError(MultivizError, ValueError):
    """Weights cannot be converted or copied between two layers."""


class ImageError(MultivizError, ValueError):
    """An image file is missing, unreadable, or holds something that is not an image."""


class WeightsFileError(MultivizError, ValueError):
    """A weights file for the built-in model is missing, unreadable or does not fit."""


class ModelLoadError(MultivizError, ValueError):
    """A model spec or file cannot be loaded; the message says why and what to pass instead."""


class UnsafeFileError(ModelLoadError):
    """Loading the file would run code stored in it; pass ``unsafe=True`` only for a trusted file."""


class NoNetworkError(MultivizError, RuntimeError):
    """Pretrained weights had to be downloaded and the download failed."""


# --------------------------------------------------------------------------- the command line


class UsageError(MultivizError, ValueError):
    """The command line itself is wrong (an unknown option, a bad value)."""


class NumberError(MultivizError, ValueError):
    """A numeric argument or option is NaN, infinite, not a number, or out of its range."""


class ModelsDifferError(MultivizError):
    """``multiviz compare`` ran, and the models disagree beyond the tolerance."""


class ScanFileError(MultivizError, ValueError):
    """A file is not a saved scan, or a scan cannot continue or merge with another."""


# --------------------------------------------------------------------------- hints


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
