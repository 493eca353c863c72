"""The public capture API: list layers, capture their outputs, run the model.

These functions pick the backend from the model's type and return NumPy.
The same call works on a PyTorch ``nn.Module`` (input NCHW) and on a Keras 3
model (input in the model's layout, normally NHWC).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multiviz.backends import get_backend
from multiviz.core.names import layers_of, owner, requests, resolve, select
from multiviz.core.params import names_parameters
from multiviz.core.records import Activations, LayerInfo, LayerTable
from multiviz.core.tokens import TokenGrid, fold_arrays, high_norm_tokens, token_grid_arg
from multiviz.errors import InputShapeError, LayerNotFoundError, MultivizWarning

__all__ = ["capture", "forward", "layers"]


@names_parameters
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
    if input_shape is not None and not _is_shape(input_shape):
        raise InputShapeError(
            "`input_shape` must be one sample's shape as whole numbers, e.g. (3, 224, 224), or a "
            f"tuple of such shapes for several inputs. Received: input_shape={input_shape!r}"
        )
    infos = get_backend(model).layers(model, input_shape=input_shape)
    if kind is None:
        return LayerTable(infos)
    keep = set(resolve(None, infos, kind=kind))
    return LayerTable(i for i in infos if i.name in keep)


@names_parameters
def capture(
    model: Any,
    x: Any,
    names: str | Sequence[str] | None = None,
    *,
    kind: str | Sequence[str] | None = None,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
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
        token_grid: ``(h, w)``, the patch grid of a vision transformer whose
            grid multiviz cannot read from the model (it reads timm's,
            torchvision's and its own built-in ViT's).
        prefix_tokens: with ``token_grid``: tokens before the patch tokens
            (class, distillation, register tokens; default 1).

    Returns:
        :class:`~multiviz.Activations`: name -> float32 NumPy copy in the
        canonical layout ``(N, C, H, W)`` / ``(N, C, L)`` / ``(N, F)``. A
        vision transformer's token layer ``(N, prefix + h*w, C)`` comes back as
        its ``(N, C, h, w)`` patch map, its prefix tokens in
        ``acts.prefix[name]`` ``(N, P, C)``; channels-last maps (Swin stages)
        come back channels first. Patch tokens whose norm exceeds 4x their
        image's median are listed in ``acts.artifacts[name]`` and named in
        one :class:`~multiviz.MultivizWarning` (Darcet et al. 2024).

    Raises:
        LayerNotFoundError: a name matched no layer (closest names listed), or a
            layer named explicitly did not run / ran fewer times than ``#k`` says.
        InputShapeError: ``x`` does not fit the model (expected shape named).
        TokenGridError: ``token_grid`` / ``prefix_tokens`` are malformed or do
            not fit the token layers' count.
        UnsupportedModelError: ``model`` is neither PyTorch nor Keras.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")          # doctest: +SKIP
        >>> acts = mv.capture(model, mv.sample_image()[None], ["conv1"])  # doctest: +SKIP
        >>> acts["conv1"].shape                        # doctest: +SKIP
        (1, 16, 64, 64)
    """
    backend = get_backend(model)
    given = token_grid_arg(token_grid, prefix_tokens)
    infos = backend.layers(model)
    try:
        asked = requests(names, infos, kind=kind)
    except LayerNotFoundError as err:
        why = getattr(backend, "unreachable", None)
        reason = why(model, names) if why is not None else None
        if reason is None:
            raise
        raise LayerNotFoundError(reason) from err
    arrays = select(backend.capture(model, x, layers_of(asked)), asked)
    keep, prefix, artifacts = fold_token_layers(backend, model, x, arrays, given)
    return Activations(
        keep, backend.name, bounds=_bounds(keep, infos), prefix=prefix, artifacts=artifacts
    )


def _bounds(arrays: Mapping[str, Any], infos: Sequence[LayerInfo]) -> dict:
    """Key -> saturation bounds of the layer it came from, for bounded layers."""
    by_base = {i.base: i.bounds for i in infos if i.bounds is not None}
    out = {}
    for key in arrays:
        found = owner(key, by_base) if by_base else None
        if found is not None:
            out[key] = by_base[found[0]]
    return out


def fold_token_layers(
    backend: Any, model: Any, x: Any, arrays: dict[str, np.ndarray], given: TokenGrid | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Token layers among ``arrays`` folded to maps, their prefix tokens, their high-norm tokens.

    One :class:`~multiviz.MultivizWarning` names the high-norm tokens, if any.
    """
    if not hasattr(backend, "layouts") or not any(np.ndim(a) == 3 for a in arrays.values()):
        return arrays, {}, {}
    size = _input_size(backend, model, x)
    grid = given or (backend.token_grid(model, size) if size else None)
    if grid is None:
        return arrays, {}, {}
    folded, prefix = fold_arrays(arrays, backend.layouts(model, x, grid), grid)
    artifacts = {
        k: found
        for k, a in folded.items()
        if k in prefix or (a is not arrays[k] and a.ndim == 4)
        if len(found := high_norm_tokens(a))
    }
    if artifacts:
        shown = "; ".join(
            f"{k}: "
            + ", ".join(f"sample {n} patch ({r}, {c})" for n, r, c in v[:4].tolist())
            + (f" and {len(v) - 4} more" if len(v) > 4 else "")
            for k, v in list(artifacts.items())[:4]
        )
        warnings.warn(
            f"High-norm artifact tokens (norm > 4x the image's median patch-token norm; "
            f"Darcet et al. 2024) in {shown}. They are listed in acts.artifacts.",
            MultivizWarning,
            stacklevel=3,
        )
    return folded, prefix, artifacts


def _input_size(backend: Any, model: Any, x: Any) -> tuple[int, int] | None:
    shape = tuple(int(d) for d in getattr(x, "shape", ()))
    if len(shape) != 4:
        return None
    return shape[2:4] if backend.input_layout(model) == "channels_first" else shape[1:3]


@names_parameters
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


def _is_shape(shape: Any) -> bool:
    """A shape ``(3, 224, 224)``, or a tuple of shapes (several inputs)."""
    if not isinstance(shape, (tuple, list)) or not shape:
        return False
    if all(isinstance(d, (tuple, list)) for d in shape):
        return all(_is_shape(d) for d in shape)
    return all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape)
