"""The public capture API: list layers, capture their outputs, run the model.

These functions pick the backend from the model's type and return NumPy.
The same call works on a PyTorch ``nn.Module`` (input NCHW) and on a Keras 3
model (input in the model's layout, normally NHWC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multiviz.backends import get_backend
from multiviz.core.names import layers_of, owner, requests, resolve, select
from multiviz.core.records import Activations, LayerInfo, LayerTable

__all__ = ["capture", "forward", "layers"]


def layers(
    model: Any,
    kind: str | Sequence[str] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> LayerTable:
    """List the layers of ``model`` that :func:`capture` can address.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        kind: keep only layers of this kind (``"conv"``, ``"dense"``, ``"norm"``,
            ``"activation"``, ``"pool"``, ``"container"``, ``"other"``).
        input_shape: one sample's shape without the batch axis, in the
            framework's layout (``(3, 224, 224)`` for PyTorch). PyTorch output
            shapes are only known after a forward pass: pass this to fill them
            in from one pass on zeros. Keras knows them without it.

    Returns:
        A :class:`~multiviz.core.records.LayerTable`: a list with one
        :class:`~multiviz.LayerInfo` per layer, in model order, with its
        output shape in the canonical layout where it is known; it prints as
        a table.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")          # doctest: +SKIP
        >>> [l.name for l in mv.layers(model, kind="conv")]  # doctest: +SKIP
        ['conv1', 'conv2', 'conv3']
    """
    infos = get_backend(model).layers(model, input_shape=input_shape)
    if kind is None:
        return LayerTable(infos)
    keep = set(resolve(None, infos, kind=kind))
    return LayerTable(i for i in infos if i.name in keep)


def capture(
    model: Any,
    x: Any,
    names: str | Sequence[str] | None = None,
    *,
    kind: str | Sequence[str] | None = None,
) -> Activations:
    """Run ``x`` through ``model`` once and return the chosen layers' outputs.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch in the framework's input layout — ``(N, C, H, W)`` for
            PyTorch, the model's input layout (normally ``(N, H, W, C)``) for
            Keras — as a NumPy array or a framework tensor.
        names: layer names, glob patterns (``"layer*.conv2"``), or ``None`` for
            every non-container layer. A layer called several times in one pass
            comes back once per call (``"relu"``, ``"relu#1"``…); a layer with
            several outputs as ``"name[0]"``, ``"name[1]"``….
        kind: keep only layers of this kind, e.g. ``kind="conv"``.

    Returns:
        :class:`~multiviz.Activations`: name -> float32 NumPy copy in the
        canonical layout ``(N, C, H, W)`` / ``(N, C, L)`` / ``(N, F)``.

    Raises:
        LayerNotFoundError: a name matched no layer (closest names listed), or a
            layer named explicitly did not run / ran fewer times than ``#k`` says.
        InputShapeError: ``x`` does not fit the model (expected shape named).
        UnsupportedModelError: ``model`` is neither PyTorch nor Keras.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")          # doctest: +SKIP
        >>> acts = mv.capture(model, mv.sample_image()[None], ["conv1"])  # doctest: +SKIP
        >>> acts["conv1"].shape                        # doctest: +SKIP
        (1, 16, 64, 64)
    """
    backend = get_backend(model)
    infos = backend.layers(model)
    asked = requests(names, infos, kind=kind)
    arrays = select(backend.capture(model, x, layers_of(asked)), asked)
    return Activations(arrays, backend.name, bounds=_bounds(arrays, infos))


def _bounds(arrays: Mapping[str, Any], infos: Sequence[LayerInfo]) -> dict:
    """Key -> saturation bounds of the layer it came from, for bounded layers."""
    by_base = {i.base: i.bounds for i in infos if i.bounds is not None}
    out = {}
    for key in arrays:
        found = owner(key, by_base) if by_base else None
        if found is not None:
            out[key] = by_base[found[0]]
    return out


def forward(model: Any, x: Any) -> np.ndarray:
    """Run the model in inference mode and return its output as NumPy.

    The model is left exactly as it was (mode, gradients, weights).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("keras")          # doctest: +SKIP
        >>> mv.forward(model, mv.to_channels_last(mv.sample_image()[None])).shape  # doctest: +SKIP
        (1, 4)
    """
    return get_backend(model).forward(model, x)
