"""What attribution asks of a model: batched backend calls, targets, layer checks.

The math in :mod:`~multiviz.attribution.cam_math` and
:mod:`~multiviz.attribution.gradient_math` never sees a model. This module is
the only part of attribution that talks to a backend, and only through the
contract's verbs (:meth:`~multiviz.backends.contract.Backend.forward`,
:meth:`~multiviz.backends.contract.Backend.capture`,
:meth:`~multiviz.backends.contract.Backend.gradients`). Every call is split into
chunks of at most ``batch_size`` inputs, so memory stays bounded however many
samples, noisy copies, path points or masks a method needs. Layer names are
read by :mod:`multiviz.core.names`, targets checked by the contract
(:func:`~multiviz.backends.contract.check_target`), as everywhere else.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiviz.attribution.cam_math import softmax
from multiviz.attribution.maps import finish_maps, upsample_maps
from multiviz.backends import Backend, GradientResult, get_backend
from multiviz.backends.contract import check_target
from multiviz.core.layout import to_channels_first, to_channels_last
from multiviz.core.names import Request, requests, select
from multiviz.core.records import LayerInfo
from multiviz.core.tokens import ATTENTION, TokenGrid, fold_arrays, token_grid_arg
from multiviz.errors import (
    InputShapeError,
    LayerNotFoundError,
    NotSpatialLayerError,
    TokenGridError,
)

__all__ = [
    "BATCH_SIZE",
    "ModelCall",
    "as_numpy",
    "choose_layer",
    "chunks",
    "merge_results",
    "rows_of",
]

#: The default ``batch_size``: the most inputs sent to the backend in one call.
BATCH_SIZE = 32

#: A target after checking: None (top class), (N,) int64 class indices, or a callable.
Targets = np.ndarray | Callable[[Any], Any] | None


def as_numpy(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """A NumPy copy of ``x`` (array, list, or a framework tensor on any device).

    Duck-typed so that no framework is imported: a PyTorch tensor has
    ``detach``/``cpu``, a TensorFlow tensor has ``numpy``.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.array(x, dtype=dtype, copy=True)


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``.

    Example:
        >>> [(s.start, s.stop) for s in chunks(5, 2)]
        [(0, 2), (2, 4), (4, 5)]
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={size}")
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def merge_results(parts: Sequence[GradientResult]) -> GradientResult:
    """Concatenate the :class:`GradientResult` of consecutive chunks along the batch."""
    if len(parts) == 1:
        return parts[0]

    def cat(arrays: Sequence[np.ndarray | None]) -> np.ndarray | None:
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    first = parts[0]
    return GradientResult(
        output=np.concatenate([p.output for p in parts]),
        targets=cat([p.targets for p in parts]),
        scores=np.concatenate([p.scores for p in parts]),
        activations={
            k: np.concatenate([p.activations[k] for p in parts]) for k in first.activations
        },
        gradients={k: np.concatenate([p.gradients[k] for p in parts]) for k in first.gradients},
        input_gradient=cat([p.input_gradient for p in parts]),
    )


def _class_scores(output: Any) -> np.ndarray:
    """``(N, K, ...)`` model output -> ``(N, K)`` float64, extra axes summed."""
    out = np.asarray(output, np.float64)
    return out.reshape(out.shape[0], out.shape[1], -1).sum(axis=-1)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6 + 1e-5 * float(np.abs(b).max(initial=0.0))))


def rows_of(target: Targets, rows: np.ndarray) -> Targets:
    """The target of each of ``rows`` (class indices are indexed; a callable or None stays)."""
    return target[rows] if isinstance(target, np.ndarray) else target


@dataclass
class ModelCall:
    """One model and one input batch, with the facts attribution needs about them.

    Attributes:
        model: the user's model.
        x: the batch as given (framework layout; NumPy or a framework tensor).
        backend: the adapter chosen from the model's type.
        layout: ``"channels_first"`` or ``"channels_last"``, from the backend.
        batch_size: the most inputs sent to the backend in one call.
    """

    model: Any
    x: Any
    backend: Backend
    layout: str
    batch_size: int
    _infos: list[LayerInfo] | None = field(default=None, repr=False)
    _requests: dict[str, Request] = field(default_factory=dict, repr=False)
    given_grid: TokenGrid | None = None

    @classmethod
    def make(
        cls,
        model: Any,
        x: Any,
        batch_size: int,
        token_grid: Sequence[int] | None = None,
        prefix_tokens: int | None = None,
    ) -> ModelCall:
        """Pick the backend and check that ``x`` is a batch of images.

        ``token_grid`` / ``prefix_tokens``: a vision transformer's patch grid,
        for a model the backend cannot read it from (see :func:`multiviz.capture`).
        """
        given = token_grid_arg(token_grid, prefix_tokens)
        backend = get_backend(model)
        layout = backend.input_layout(model)
        if isinstance(x, (list, tuple)):
            x = np.asarray(x, np.float32)
        shape = tuple(int(d) for d in x.shape)
        if len(shape) != 4:
            want = "(N, C, H, W)" if layout == "channels_first" else "(N, H, W, C)"
            raise InputShapeError(
                f"Attribution maps need a batch of images {want} ({layout}, as the model takes "
                f"them). Received shape {shape}. For one image, add a batch axis: x[None]."
            )
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
        return cls(model, x, backend, layout, int(batch_size), given_grid=given)

    # -- the input -----------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Samples in the batch."""
        return int(self.x.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """The input's spatial size ``(H, W)``."""
        shape = tuple(int(d) for d in self.x.shape)
        return shape[2:4] if self.layout == "channels_first" else shape[1:3]

    def canonical(self, native: np.ndarray) -> np.ndarray:
        """An input-layout array (input, input gradient) in channels-first layout."""
        native = np.asarray(native)
        return native if self.layout == "channels_first" else to_channels_first(native)

    def native(self, canonical: np.ndarray) -> np.ndarray:
        """A channels-first array in the layout the model takes."""
        canonical = np.asarray(canonical, np.float32)
        return canonical if self.layout == "channels_first" else to_channels_last(canonical)

    def input_gradient(self, result: GradientResult) -> np.ndarray:
        """The result's input gradient, channels first, float64."""
        assert result.input_gradient is not None
        return self.canonical(result.input_gradient).astype(np.float64)

    def at_input(self, low: np.ndarray, normalize: bool) -> np.ndarray:
        """Upsample ``(N, h, w)`` maps to the input's size, then scale them if asked."""
        return finish_maps(upsample_maps(np.asarray(low, np.float32), self.size), normalize)

    def x_canonical(self) -> np.ndarray:
        """The input batch as a channels-first float32 NumPy array."""
        return self.canonical(as_numpy(self.x))

    # -- targets -------------------------------------------------------------------------------

    def check_target(self, target: Any) -> Targets:
        """``None``, a callable, or ``(N,)`` int64 class indices from an int or a sequence.

        The contract's check (:func:`~multiviz.backends.contract.check_target`),
        up front, before any backend call.

        Raises:
            TargetError: the target is not an int, ``N`` ints, a callable or None.
        """
        return check_target(target, self.n)

    def fixed_target(self, target: Targets) -> Targets:
        """Replace ``None`` by the class the model scores highest for each clean sample.

        Methods that score perturbed copies of the input (SmoothGrad, Integrated
        Gradients, Score-CAM) must explain the clean input's class, not whatever
        each copy happens to score highest. The backend decides what "top
        class" means (for a segmentation output: the largest summed map).
        """
        if target is not None:
            return target
        result = self.scored_forward(self.x, None)
        assert result.targets is not None
        return result.targets.astype(np.int64)

    # -- backend calls, in chunks --------------------------------------------------------------

    def gradients(
        self,
        names: Sequence[str],
        target: Targets,
        *,
        wrt_input: bool = False,
        guided: bool | str = False,
        inputs: np.ndarray | None = None,
    ) -> GradientResult:
        """``backend.gradients`` over the batch (or ``inputs``), ``batch_size`` at a time.

        Args:
            names: layers whose activations and gradients to return.
            target: as from :meth:`check_target`; a class array is sliced per chunk.
            wrt_input: also return the gradient with respect to the input.
            guided: guided backpropagation through every ReLU.
            inputs: other inputs in the model's layout (noisy copies, path
                points); default the batch ``x``. ``target`` then needs one
                entry per row of ``inputs``.
        """
        data = self.x if inputs is None else inputs
        layers = list(dict.fromkeys(self.request(n).layer for n in names))
        parts = []
        for s in chunks(int(data.shape[0]), self.batch_size):
            t = target[s] if isinstance(target, np.ndarray) else target
            parts.append(
                self.backend.gradients(
                    self.model, data[s], layers, t, wrt_input=wrt_input, guided=guided
                )
            )
        result = merge_results(parts)
        if names:
            result.activations = self.fold(result.activations)
            result.gradients = self.fold(result.gradients)
        return result

    # -- token layers --------------------------------------------------------------------------

    @property
    def grid(self) -> TokenGrid | None:
        """The patch grid: the caller's, else the one the backend reads from the model."""
        if self.given_grid is not None:
            return self.given_grid
        reader = getattr(self.backend, "token_grid", None)
        return reader(self.model, self.size) if reader is not None else None

    def fold(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Token layers ``(N, T, C)`` among ``arrays`` as ``(N, C, h, w)`` patch maps."""
        if not any(np.ndim(a) == 3 for a in arrays.values()):
            return arrays
        grid = self.grid
        if grid is None:
            return arrays
        return fold_arrays(arrays, self.backend.layouts(self.model, self.x, grid), grid)[0]

    def scored_forward(self, inputs: Any, target: Targets) -> GradientResult:
        """The pre-softmax output and the target's score per row of ``inputs``; no gradient.

        ``backend.gradients`` with no layer and no input gradient is a forward
        pass that also scores the target — on the logits where the model ends
        in a softmax (``backend.forward`` returns the probabilities), and with a
        callable target applied to a framework tensor.
        """
        return self.gradients([], target, inputs=inputs)

    def class_probabilities(self) -> Callable[[np.ndarray], np.ndarray]:
        """A function from inputs to the softmax of the model's logits, ``(n, classes)``.

        ``backend.forward`` is each framework's fastest inference path (compiled
        in Keras), but a model ending in a softmax returns probabilities there,
        while :meth:`scored_forward` returns the logits before it. Which one
        ``forward`` gives is checked once, on up to ``batch_size`` clean
        inputs: its logits get a softmax here, its probabilities are used as
        they are, and anything else (a log-softmax, a map per pixel) falls
        back to the scored pass's logits. An output with axes beyond
        ``(N, classes)`` is summed over them first, as the backends score it.
        """
        probe = self.x[: min(self.n, self.batch_size)]
        logits = _class_scores(self.scored_forward(probe, None).output)
        plain = _class_scores(self.backend.forward(self.model, probe))

        def via_forward(inputs: np.ndarray) -> np.ndarray:
            return _class_scores(self.backend.forward(self.model, inputs))

        if plain.shape == logits.shape and _close(plain, logits):
            return lambda inputs: softmax(via_forward(inputs))
        if plain.shape == logits.shape and _close(plain, softmax(logits)):
            return via_forward
        return lambda inputs: softmax(_class_scores(self.scored_forward(inputs, None).output))

    def capture(self, name: str) -> np.ndarray:
        """One layer's output for the batch, canonical layout."""
        layer = self.request(name).layer
        parts = [
            self.pick(self.fold(self.backend.capture(self.model, self.x[s], [layer])), name)
            for s in chunks(self.n, self.batch_size)
        ]
        return np.concatenate(parts)

    # -- layers --------------------------------------------------------------------------------

    def layer_infos(self, with_shapes: bool = False) -> list[LayerInfo]:
        """The model's layers; ``with_shapes`` fills in output shapes from one sample's shape."""
        if not with_shapes:
            if self._infos is None:
                self._infos = self.backend.layers(self.model)
            return self._infos
        shape = tuple(int(d) for d in self.x.shape[1:])
        return self.backend.layers(self.model, input_shape=shape)

    def request(self, name: str, method: str = "Attribution") -> Request:
        """What ``name`` (one layer, call or output) asks a backend for, read once.

        Raises:
            LayerNotFoundError: no such layer (closest names in the message).
            ValueError: ``name`` matches several layers.
        """
        if name not in self._requests:
            found = requests(name, self.layer_infos())
            if len(found) != 1:
                keys = [r.key for r in found]
                raise ValueError(
                    f"{method} needs exactly one layer; layer={name!r} matches {len(keys)}: "
                    f"{keys[:8]}{' …' if len(keys) > 8 else ''}. Pass one of them."
                )
            self._requests[name] = self._requests[found[0].key] = found[0]
        return self._requests[name]

    def pick(self, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
        """The array of ``name`` among what a backend returned (every call and output).

        A layer name without ``#k`` means its first call.

        Raises:
            LayerNotFoundError: the layer did not run, ``#k`` names a call that
                did not happen, or the layer has several outputs and ``name``
                picks none of them.
        """
        got = select(arrays, [self.request(name)])
        if name in got:
            return got[name]
        if len(got) == 1:
            return next(iter(got.values()))
        raise LayerNotFoundError(
            f"Layer {name!r} gave {len(got)} outputs ({', '.join(list(got)[:6])}); "
            f"pass one of them, e.g. layer={next(iter(got))!r}."
        )

    def resolve_layer(self, layer: str | None, method: str) -> str:
        """The one layer ``layer`` names; ``None`` picks the last spatial layer.

        The named layer is never swapped for another: a pattern matching
        several layers is an error, and so (later, see :meth:`spatial`) is a
        layer whose output is not a spatial map.

        Raises:
            LayerNotFoundError: no such layer (closest names in the message).
            ValueError: ``layer`` matches several layers.
        """
        if layer is None:
            return choose_layer(self, None, method)
        if not isinstance(layer, str):
            raise TypeError(
                f"`layer` must be one layer name (a str). Received: {layer!r}. "
                "See mv.layers(model) for the names."
            )
        return self.request(layer, method).key

    def spatial(self, arrays: dict[str, np.ndarray], name: str, method: str) -> np.ndarray:
        """``arrays[name]``, checked to be a map ``(N, C, h, w)`` with more than one pixel.

        Raises:
            NotSpatialLayerError: it is a vector, a 1-D map or a 1x1 map; the
                message lists the model's last spatial layers.
        """
        arr = self.pick(arrays, name)
        if arr.ndim == 4 and arr.shape[2] * arr.shape[3] > 1:
            return arr
        shape = tuple(arr.shape)
        if arr.ndim == 3 and self.grid is None and self._has_attention():
            raise TokenGridError(
                f"{method}: layer {name!r} outputs tokens {shape} and this "
                f"{type(self.model).__name__}'s patch grid cannot be read. Received: "
                "token_grid=None.\nhint: pass token_grid=(h, w) and prefix_tokens=P (tokens "
                "before the patch tokens) to fold them into a map."
            )
        what = "a 1x1 map" if arr.ndim == 4 else f"a rank-{arr.ndim} array, not (N, C, H, W)"
        try:
            candidates = spatial_layers(self.layer_infos(with_shapes=True))[-5:]
        except Exception:  # the hint must not hide the real error
            candidates = []
        hint = f" Spatial layers near the end of this model: {candidates}." if candidates else ""
        raise NotSpatialLayerError(
            f"{method} needs a layer whose output is a spatial map (N, C, H, W); layer {name!r} "
            f"outputs shape {shape}, {what}. Pass a convolutional layer (or its activation), "
            f"usually the last one.{hint}"
        )

    def _has_attention(self) -> bool:
        return any(_is_attention_type(i.type) for i in self.layer_infos())


def _is_attention_type(type_name: str) -> bool:
    return type_name.endswith("Attention") or type_name in ("MultiheadAttention",)


def _is_spatial(info: LayerInfo) -> bool:
    shape = info.shape
    if info.layout == ATTENTION or shape is None or len(shape) != 4:
        return False
    h, w = shape[2], shape[3]
    return h is None or w is None or h * w > 1


def spatial_layers(infos: Sequence[LayerInfo]) -> list[str]:
    """Names of the layers known to output maps larger than 1x1, in model order."""
    return [i.name for i in infos if _is_spatial(i)]


# model -> {(input shape, grid): chosen layer}
_CHOSEN: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()
_PROBE = 8  # candidate layers checked per gradient pass


def choose_layer(call: ModelCall, target: Targets, method: str) -> str:
    """The layer a CAM method uses when none is given: the last map that reaches the target.

    Candidates are the layers with a spatial output (maps, and token layers
    folded on the model's patch grid; never attention internals nor layers
    inside an attention module), last first, a block before its own layers
    (see :func:`default_layer`). One gradient pass on the first few samples
    checks up to 8 of them at a time; the first whose map varies over space
    and whose gradient is not all zero is chosen. That skips, in a ViT that
    reads its class token, the last block's output and the final norm (after
    the last attention, nothing carries a patch token to the class token: an
    all-zero gradient), stopping at the last block's first norm; and in a CNN
    a pooled map upsampled again (torchvision's AlexNet at 64 px: ``avgpool``
    repeats a 1x1 map six times each way). The choice is cached per model
    and input shape.

    Raises:
        NotSpatialLayerError: no layer outputs a spatial map; or none reaches the target.
    """
    key = (tuple(int(d) for d in call.x.shape[1:]), call.given_grid)
    per_model = _CHOSEN.get(call.model)
    if per_model is not None and key in per_model:
        return per_model[key]
    infos = call.layer_infos(with_shapes=True)
    candidates = _candidates(infos, method)
    probe = call.x[: min(call.n, 2)]
    chosen = None
    for start in range(0, len(candidates), _PROBE):
        names = candidates[start : start + _PROBE]
        result = call.gradients(names, rows_of(target, np.arange(len(probe))), inputs=probe)
        for name in names:
            act, grad = call.pick(result.activations, name), call.pick(result.gradients, name)
            if act.ndim == 4 and _varies(act) and bool(np.any(grad != 0)):
                chosen = name
                break
        if chosen is not None:
            break
    if chosen is None:
        raise NotSpatialLayerError(
            f"{method}: no spatial layer of this model has a map that varies over space and "
            f"reaches the target (tried {candidates[:5]}…). Pass layer= explicitly."
        )
    try:
        _CHOSEN.setdefault(call.model, {})[key] = chosen
    except TypeError:  # a model that cannot be weakly referenced: no cache
        pass
    return chosen


def _varies(act: np.ndarray) -> bool:
    """Some channel of some sample is not constant over its map."""
    flat = act.reshape(act.shape[0], act.shape[1], -1).astype(np.float64)
    spread = flat.max(axis=2) - flat.min(axis=2)
    scale = np.abs(flat).max(initial=0.0)
    return bool(np.any(spread > 1e-6 * max(scale, 1e-30)))


def _candidates(infos: Sequence[LayerInfo], method: str) -> list[str]:
    attention = [i.name for i in infos if _is_attention_type(i.type)]

    def inside(name: str) -> bool:
        return any(name.startswith(a + sep) for a in attention for sep in "./")

    spatial = [i for i in infos if _is_spatial(i) and not inside(i.name)]
    if not spatial:
        default_layer(infos, method)  # raises the "no spatial layer" error
    first = default_layer(spatial, method)
    rest = [i.name for i in reversed(spatial) if i.name != first]
    return [first, *rest]


def default_layer(infos: Sequence[LayerInfo], method: str) -> str:
    """The last layer that outputs a spatial map — the usual choice for CAM methods.

    Where that layer sits inside blocks that also output maps (PyTorch's
    ``layer4`` holding ``layer4.2`` holding ``layer4.2.relu``), the outermost
    block is chosen: its output is the last map computed, while an inner module
    may run more than once (a ResNet block calls its ``relu`` three times).
    "Last" is the order the backend lists layers in (registration order for
    PyTorch); pass ``layer=`` where that is not the order they run in.

    Raises:
        NotSpatialLayerError: no layer reports a spatial output shape.
    """
    spatial = [i for i in infos if _is_spatial(i)]
    if not spatial:
        raise NotSpatialLayerError(
            f"{method} needs a layer that outputs a spatial map (N, C, H, W), and no layer of "
            "this model reports one. Pass layer= explicitly (see mv.layers(model))."
        )
    last = spatial[-1]
    for info in spatial:  # model order: outermost ancestors come first
        if any(last.name.startswith(info.name + sep) for sep in "./"):
            return info.name
    return last.name
