"""What attribution asks of a model: batched backend calls, inputs, targets, layer checks.

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

Inputs: what :func:`multiviz.capture` accepts, attribution accepts — one
array or tensor; a tuple or a list of them for a model with several inputs
(PyTorch passes them as positional arguments); a dict for named inputs
(:func:`~multiviz.backends.contract.read_inputs` reads it, for every backend).
Input-gradient methods give one map per input, in the structure the inputs
came in; CAM methods draw their maps over one image input, ``input_index``
(default: the first image-shaped one, ``(N, C, H, W)``).

Non-finite values (DESIGN.md): every array a backend returns is checked; a
sample where NaN or Inf appears — in an input, a layer, the output, a
gradient — gets a NaN map, never one scaled from its finite values, and one
:class:`~multiviz.errors.MultivizWarning` per call names the samples and
where it appeared first (:meth:`ModelCall.finish`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from multiviz.attribution.cam_math import sigmoid, softmax
from multiviz.attribution.maps import finish_maps, upsample_maps
from multiviz.backends import Backend, GradientResult, get_backend
from multiviz.backends.contract import Inputs, check_target, read_inputs
from multiviz.core.checks import check_number
from multiviz.core.layout import to_channels_first, to_channels_last
from multiviz.core.names import Request, requests, select
from multiviz.core.records import LayerInfo
from multiviz.core.tokens import ATTENTION, OTHER, TokenGrid, fold_arrays, token_grid_arg
from multiviz.errors import (
    AmbiguousLayerError,
    InputShapeError,
    LayerNotFoundError,
    MultivizError,
    MultivizWarning,
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
    "quiet_numpy",
    "rows_of",
]

#: The default ``batch_size``: the most inputs sent to the backend in one call.
BATCH_SIZE = 32

#: A target after checking: None (top class), (N,) int64 class indices, or a callable.
Targets = np.ndarray | Callable[[Any], Any] | None

F = TypeVar("F", bound=Callable[..., Any])


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
    size = int(check_number(size, "batch_size", low=1, integer=True))
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _cat(arrays: Sequence[Any]) -> Any:
    """Concatenate per-chunk arrays, or per-chunk structures of arrays part by part."""
    first = arrays[0]
    if first is None or any(a is None for a in arrays):
        return None
    if isinstance(first, Mapping):
        return {k: np.concatenate([a[k] for a in arrays]) for k in first}
    if isinstance(first, (tuple, list)):
        parts = [np.concatenate([a[i] for a in arrays]) for i in range(len(first))]
        return type(first)(parts)
    return np.concatenate(arrays)


def merge_results(parts: Sequence[GradientResult]) -> GradientResult:
    """Concatenate the :class:`GradientResult` of consecutive chunks along the batch."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return GradientResult(
        output=np.concatenate([p.output for p in parts]),
        targets=_cat([p.targets for p in parts]),
        scores=np.concatenate([p.scores for p in parts]),
        activations={
            k: np.concatenate([p.activations[k] for p in parts]) for k in first.activations
        },
        gradients={k: np.concatenate([p.gradients[k] for p in parts]) for k in first.gradients},
        input_gradient=_cat([p.input_gradient for p in parts]),
        head=first.head,
    )


def _class_scores(output: Any) -> np.ndarray:
    """``(N, K, ...)`` model output -> ``(N, K)`` float64, extra axes summed."""
    out = np.asarray(output, np.float64)
    return out.reshape(out.shape[0], out.shape[1], -1).sum(axis=-1)


def _probability(head: str | None, units: int) -> Callable[[np.ndarray], np.ndarray]:
    """Logits -> the model's probabilities: softmax, sigmoid, or (one plain unit) the value."""
    if head == "sigmoid":
        return sigmoid
    if units == 1 and head is None:
        return lambda values: np.asarray(values, np.float64)
    return softmax


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6 + 1e-5 * float(np.abs(b).max(initial=0.0))))


def rows_of(target: Targets, rows: np.ndarray) -> Targets:
    """The target of each of ``rows`` (class indices are indexed; a callable or None stays)."""
    return target[rows] if isinstance(target, np.ndarray) else target


# --------------------------------------------------------------------------- non-finite values

#: set while :func:`multiviz.explain` runs several methods: their reports are joined in one warning
_REPORTS: contextvars.ContextVar[dict[int, list[str]] | None] = contextvars.ContextVar(
    "multiviz_nonfinite_reports", default=None
)


def quiet_numpy(fn: F) -> F:
    """Run ``fn`` with NumPy's floating-point warnings off.

    NaN and Inf are checked and reported by multiviz itself (one
    :class:`~multiviz.errors.MultivizWarning` naming samples and places); an
    ``invalid value encountered`` from inside the arithmetic would only repeat
    it without saying where.
    """

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return quiet  # type: ignore[return-value]


def empty_batch(fn: F) -> F:
    """Give a batch of zero samples an empty result of the right shape.

    The call runs on one all-zero stand-in sample of the same structure (see
    :mod:`multiviz.core.empty`) and zero rows of every array it returns are
    kept: ``(0, H, W)`` maps, ``(0,)`` deltas. A ``target`` or ``baseline``
    given per sample (length 0) is dropped for the stand-in.
    """
    import inspect

    from multiviz.core.empty import batch_length, cut, stand_in

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let the function say what is wrong
        x = bound.arguments.get("x")
        if x is None or batch_length(x) != 0:
            return fn(*args, **kwargs)
        bound.arguments["x"] = stand_in(x)
        for name in ("target", "baseline"):
            given = bound.arguments.get(name)
            if _per_sample_and_empty(given):
                bound.arguments[name] = None
        return cut(fn(*bound.args, **bound.kwargs))

    return call  # type: ignore[return-value]


def _per_sample_and_empty(value: Any) -> bool:
    if value is None or callable(value) or isinstance(value, (str, bytes, int, float)):
        return False
    try:
        return len(value) == 0
    except TypeError:
        return False


@contextlib.contextmanager
def one_report() -> Iterator[dict[int, list[str]]]:
    """Join the non-finite reports of every call inside the block into one warning at its end."""
    if _REPORTS.get() is not None:  # an outer block reports
        yield _REPORTS.get()  # type: ignore[misc]
        return
    found: dict[int, list[str]] = {}
    token = _REPORTS.set(found)
    try:
        yield found
    finally:
        _REPORTS.reset(token)
    if found:
        _warn(found)


def _user_stacklevel() -> int:
    """How many frames up the first one outside multiviz is (for ``warnings.warn``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("multiviz"):
        frame, level = frame.f_back, level + 1
    return level


def _warn(found: Mapping[int, Sequence[str]]) -> None:
    samples = sorted(found)
    places: list[str] = []
    for n in samples:
        places += [p for p in found[n] if p not in places]
    shown = ", ".join(map(str, samples[:10])) + (" …" if len(samples) > 10 else "")
    which = f"sample {shown}" if len(samples) == 1 else f"samples [{shown}]"
    also = ", ".join(places[1:4]) + (" …" if len(places) > 4 else "")
    where = places[0] + (f" (then also {also})" if also else "")
    maps = "its map is" if len(samples) == 1 else "their maps are"
    warnings.warn(
        f"NaN or Inf for {which}, first in {where}; {maps} NaN, not drawn from the "
        "finite values (see docs/pitfalls.md, Non-finite values).",
        MultivizWarning,
        stacklevel=_user_stacklevel(),
    )


def _is_image(part: Any) -> bool:
    """An image batch ``(N, C, H, W)`` / ``(N, H, W, C)``, or a video ``(N, T, ...)`` of them."""
    return len(_shape(part)) in (4, 5)


def _shape(part: Any) -> tuple[int, ...]:
    return (
        tuple(int(d) for d in np.shape(part))
        if not hasattr(part, "shape")
        else tuple(int(d) for d in part.shape)
    )


def _take(part: Any, rows: Any) -> Any:
    """Rows of one input (a NumPy array or a framework tensor)."""
    if isinstance(rows, slice) or not hasattr(part, "detach"):
        return part[rows]
    return part[np.asarray(rows)]


@dataclass
class ModelCall:
    """One model and one input batch, with the facts attribution needs about them.

    Attributes:
        model: the user's model.
        x: the input as given (framework layout; NumPy or a framework tensor;
            a tuple, list or dict of them for several inputs).
        backend: the adapter chosen from the model's type.
        layout: ``"channels_first"`` or ``"channels_last"``, from the backend.
        batch_size: the most inputs sent to the backend in one call.
        inputs: ``x`` read as the model's inputs (:class:`~multiviz.backends.contract.Inputs`).
        image: which input maps are drawn over (its position), or ``None``
            when no input is an image batch.
    """

    model: Any
    x: Any
    backend: Backend
    layout: str
    batch_size: int
    inputs: Inputs = field(default_factory=lambda: Inputs(()), repr=False)
    image: int | None = None
    _infos: list[LayerInfo] | None = field(default=None, repr=False)
    _requests: dict[str, Request] = field(default_factory=dict, repr=False)
    given_grid: TokenGrid | None = None
    _bad: dict[int, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def make(
        cls,
        model: Any,
        x: Any,
        batch_size: int,
        token_grid: Sequence[int] | None = None,
        prefix_tokens: int | None = None,
        *,
        input_index: int | str | None = None,
    ) -> ModelCall:
        """Pick the backend, read ``x`` as the model's inputs, and choose the image input.

        ``token_grid`` / ``prefix_tokens``: a vision transformer's patch grid,
        for a model the backend cannot read it from (see :func:`multiviz.capture`).

        Raises:
            InputShapeError: the inputs do not share a batch size; one input is
                not an image batch (the backend's own check says how to fix
                it); ``input_index`` names no image input.
            ValueError: ``batch_size`` is not a positive int.
        """
        check_number(batch_size, "batch_size", low=1, integer=True)
        given = token_grid_arg(token_grid, prefix_tokens)
        backend = get_backend(model)
        layout = backend.input_layout(model)
        count = getattr(backend, "input_count", lambda m: None)(model)
        inputs = read_inputs(x, count)
        parts = tuple(
            np.asarray(p, np.float32) if isinstance(p, (list, tuple, int, float)) else p
            for p in inputs.parts
        )
        inputs = Inputs(parts, inputs.kind, inputs.names)
        if inputs.kind == "one":
            x = parts[0]
        sizes = {_shape(p)[0] if _shape(p) else None for p in parts}
        if len(sizes) != 1 or None in sizes:
            shapes = ", ".join(
                f"{label} {_shape(p)}" for label, p in zip(inputs.labels, parts, strict=True)
            )
            raise InputShapeError(
                f"The inputs must share their batch size (axis 0); received {shapes}."
            )
        call = cls(model, x, backend, layout, int(batch_size), inputs=inputs, given_grid=given)
        call.image = call._image_input(input_index)
        return call

    def _image_input(self, input_index: int | str | None) -> int | None:
        parts, labels = self.inputs.parts, self.inputs.labels
        if input_index is not None:
            keys = [self.inputs.key(i) for i in range(len(parts))]
            if input_index not in keys:
                raise InputShapeError(
                    f"`input_index` must name one of the model's inputs {keys}. "
                    f"Received: input_index={input_index!r}"
                )
            index = keys.index(input_index)
            if not _is_image(parts[index]):
                raise InputShapeError(
                    f"`input_index={input_index!r}` names {labels[index]} of shape "
                    f"{_shape(parts[index])}, not an image batch {self._want()}."
                )
            return index
        for index, part in enumerate(parts):
            if _is_image(part):
                return index
        if self.inputs.kind == "one":
            self._not_an_image(parts[0])
        return None

    def _want(self) -> str:
        return "(N, C, H, W)" if self.layout == "channels_first" else "(N, H, W, C)"

    def _not_an_image(self, part: Any) -> None:
        """Let the backend say why ``part`` does not fit (it knows the model), else say it here."""
        shape = _shape(part)
        if len(shape) >= 1 and shape[0] > 0:
            # the backend checks the shape before computing anything, and names the fix
            try:
                self.backend.forward(self.model, part)
            except MultivizError:
                raise
            except Exception:  # no check of its own: the message below says what is needed
                pass
        channel = "x[:, None]" if self.layout == "channels_first" else "x[..., None]"
        hint = (
            f"\nhint: if x is one image, add a batch axis: x[None]; if it is a batch of "
            f"one-channel images, add a channel axis: {channel}"
            if len(shape) == 3
            else ""
        )
        raise InputShapeError(
            f"Attribution maps are drawn over a batch of images {self._want()} ({self.layout}, as "
            f"the model takes them); received an input of shape {shape}.{hint}"
        )

    # -- the input -----------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Samples in the batch."""
        return _shape(self.inputs.parts[0])[0]

    @property
    def several(self) -> bool:
        """True for a model given several inputs."""
        return self.inputs.kind != "one"

    @property
    def size(self) -> tuple[int, int]:
        """The spatial size ``(H, W)`` of the image input maps are drawn over.

        Raises:
            InputShapeError: no input is an image batch.
        """
        if self.image is None:
            raise self._no_image()
        shape = _shape(self.inputs.parts[self.image])[(1 if self.frames else 0) :]
        return shape[2:4] if self.layout == "channels_first" else shape[1:3]

    @property
    def frames(self) -> int | None:
        """``T`` when the image input is a video ``(N, T, ...)``: maps are then per frame.

        A video is a batch of ``N`` clips of ``T`` frames, each frame an image
        in the model's layout: ``(N, T, C, H, W)`` channels first (a PyTorch
        module folding ``T`` into the batch), ``(N, T, H, W, C)`` channels
        last (a Keras ``TimeDistributed`` CNN). Maps are ``(N, T, H, W)``.
        """
        if self.image is None:
            return None
        shape = _shape(self.inputs.parts[self.image])
        return shape[1] if len(shape) == 5 else None

    def refuse_video(self, method: str, why: str, hint: str | None = None) -> None:
        """Raise for a method that has no per-frame form, saying why and what to use.

        Raises:
            InputShapeError: the image input is a video ``(N, T, ...)``.
        """
        if self.frames is None:
            return
        raise InputShapeError(
            f"`x`: {method} does not apply to a video (N, T, ...) with T={self.frames}: {why}."
            "\nhint: "
            + (
                hint
                or "mv.grad_cam, mv.grad_cam_plus_plus or mv.layer_cam on a layer of the "
                "per-frame network give one map per frame, (N, T, H, W)."
            )
        )

    def per_frame(self, arr: np.ndarray, name: str, method: str) -> np.ndarray:
        """A layer's array on a video input as one map per frame ``(N*T, C, h, w)``.

        Takes ``(N, T, C, h, w)`` (a layer inside Keras's ``TimeDistributed``)
        or ``(N*T, C, h, w)`` (a PyTorch module run on the frames folded into
        the batch); anything else is no per-frame map.

        Raises:
            NotSpatialLayerError: the layer's output has no row per frame.
        """
        steps = self.frames
        if steps is None:
            return arr
        if arr.ndim == 5 and arr.shape[1] == steps:
            return arr.reshape(-1, *arr.shape[2:])
        if arr.ndim == 4 and arr.shape[0] == self.n * steps:
            return arr
        raise NotSpatialLayerError(
            f"{method} on a video (N, T, ...) with T={steps} needs a layer run once per frame, "
            f"(N, T, C, h, w) or (N*T, C, h, w); layer {name!r} outputs shape {tuple(arr.shape)}."
            "\nhint: pass a convolutional layer of the per-frame network (e.g. 'td/conv' inside "
            "a TimeDistributed 'td'); see mv.layers(model)."
        )

    def _no_image(self) -> InputShapeError:
        shapes = ", ".join(
            f"{label} {_shape(p)}"
            for label, p in zip(self.inputs.labels, self.inputs.parts, strict=True)
        )
        return InputShapeError(
            f"This method draws its maps over an image input {self._want()}; none of the "
            f"model's inputs is one ({shapes})."
        )

    def canonical(self, native: np.ndarray) -> np.ndarray:
        """An image in the model's layout (input, input gradient) in channels-first layout.

        A video ``(N, T, H, W, C)`` becomes ``(N, T, C, H, W)``.
        """
        native = np.asarray(native)
        if self.layout == "channels_first":
            return native
        if native.ndim == 5:
            return np.ascontiguousarray(np.moveaxis(native, -1, 2))
        return to_channels_first(native)

    def _to_native(self, canonical: np.ndarray) -> np.ndarray:
        canonical = np.asarray(canonical, np.float32)
        if self.layout == "channels_first":
            return canonical
        if canonical.ndim == 5:
            return np.ascontiguousarray(np.moveaxis(canonical, 2, -1))
        return to_channels_last(canonical)

    def native(self, canonical: np.ndarray, rows: Any = None) -> Any:
        """Channels-first images as the model's input (the image input replaced).

        For several inputs, the others are their rows ``rows`` of the batch
        (default: all of them, in order), so the result is a whole input for
        the model.
        """
        image = self._to_native(canonical)
        if not self.several:
            return image
        rows = slice(None) if rows is None else rows
        parts = [
            image if i == self.image else _take(p, rows) for i, p in enumerate(self.inputs.parts)
        ]
        return self.inputs.pack(parts)

    def parts_canonical(self) -> list[np.ndarray]:
        """Every input as a float32 NumPy array, image batches channels first."""
        return [
            self.canonical(as_numpy(p)) if _is_image(p) else as_numpy(p) for p in self.inputs.parts
        ]

    def native_parts(self, canonical: Sequence[np.ndarray]) -> Any:
        """Inputs as :meth:`parts_canonical` gives them, back in the model's layout and structure."""
        parts = [
            self._to_native(c) if _is_image(c) else np.asarray(c, np.float32) for c in canonical
        ]
        return self.inputs.pack(parts)

    def input_gradients(self, result: GradientResult) -> list[np.ndarray]:
        """The result's gradient for every input, image batches channels first, float64."""
        grads = result.input_gradient
        assert grads is not None
        if not self.several:
            flat = [grads]
        elif isinstance(grads, Mapping):
            flat = [grads[k] for k in self.inputs.names]
        else:
            flat = list(grads)
        return [
            (self.canonical(g) if np.ndim(g) in (4, 5) else np.asarray(g)).astype(np.float64)
            for g in flat
        ]

    def input_gradient(self, result: GradientResult) -> np.ndarray:
        """The gradient for the image input, channels first, float64."""
        return self.input_gradients(result)[self.image if self.image is not None else 0]

    def as_given(self, maps: Sequence[Any]) -> Any:
        """One map per input in the caller's structure: a tuple for a tuple or list, a dict."""
        if not self.several:
            return maps[0]
        if self.inputs.kind == "dict":
            return dict(zip(self.inputs.names, maps, strict=True))
        return tuple(maps)

    def at_input(
        self, low: np.ndarray, normalize: bool, upsample: str | bool = "bilinear"
    ) -> np.ndarray:
        """Upsample ``(N, h, w)`` (or ``(N, K, h, w)``) maps to the image input's size, then scale them if asked.

        ``upsample``: ``"bilinear"``, ``"nearest"``, or ``False`` (kept at the
        layer's resolution); see :func:`~multiviz.attribution.maps.upsample_maps`.
        """
        low = np.asarray(low, np.float32)
        if self.frames is not None:  # one map per frame (N*T, ...) -> (N, T, ...)
            low = low.reshape(self.n, self.frames, *low.shape[1:])
        up = upsample_maps(low, self.size, upsample)
        return finish_maps(up, normalize)

    def x_canonical(self) -> np.ndarray:
        """The image input as a channels-first float32 NumPy array."""
        if self.image is None:
            raise self._no_image()
        return self.canonical(as_numpy(self.inputs.parts[self.image]))

    def rows(self, data: Any, rows: Any) -> Any:
        """Rows ``rows`` of a whole input (one array, or several in their structure)."""
        if not self.several:
            return _take(data, rows)
        read = read_inputs(data, len(self.inputs.parts))
        return read.pack([_take(p, rows) for p in read.parts])

    def _length(self, data: Any) -> int:
        if not self.several:
            return _shape(data)[0]
        return _shape(read_inputs(data, len(self.inputs.parts)).parts[0])[0]

    # -- non-finite values ---------------------------------------------------------------------

    def note(self, where: str, values: Any, rows: Any = None) -> None:
        """Remember the samples whose ``values`` (one row each) hold NaN or Inf.

        Args:
            where: how a message names the place (``"layer 'relu3'"``, ``"the output"``).
            values: an array with one row per item.
            rows: the sample each row belongs to (default: row ``i`` is sample ``i``).
        """
        arr = np.asarray(values)
        if arr.dtype.kind not in "fc" or arr.size == 0:
            return
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if not bad.any():
            return
        samples = np.arange(len(arr)) if rows is None else np.asarray(rows)
        if self.frames and len(arr) == len(samples) * self.frames != len(samples):
            samples = np.repeat(samples, self.frames)  # a per-frame layer's (N*T, ...) rows
        elif rows is None and self.frames and len(arr) == self.n * self.frames:
            samples = np.repeat(np.arange(self.n), self.frames)
        for sample in np.unique(samples[bad]):
            places = self._bad.setdefault(int(sample), [])
            if where not in places:
                places.append(where)

    def note_result(self, result: GradientResult, data: Any, rows: Any = None) -> None:
        """Check what one backend call saw and returned: inputs, layers, output, gradients."""
        read = read_inputs(data, len(self.inputs.parts)) if self.several else Inputs((data,))
        for label, part in zip(self.inputs.labels, read.parts, strict=True):
            if hasattr(part, "dtype") and getattr(part.dtype, "kind", "f") in "fc":
                self.note(f"the {label}", as_numpy(part), rows)
        for key, value in result.activations.items():
            self.note(f"layer {key!r}", value, rows)
        self.note("the output", result.output, rows)
        self.note("the score", result.scores, rows)
        for key, value in result.gradients.items():
            self.note(f"the gradient at {key!r}", value, rows)
        if result.input_gradient is not None:
            grads = result.input_gradient
            flat = (
                list(grads.values())
                if isinstance(grads, Mapping)
                else (list(grads) if isinstance(grads, (tuple, list)) else [grads])
            )
            labels = self.inputs.labels if len(flat) > 1 else ["input"]
            for label, g in zip(labels, flat, strict=True):
                self.note(f"the gradient of the {label}", g, rows)

    def finish(self, maps: Any) -> Any:
        """Set the maps of samples where NaN or Inf appeared to NaN, and say so once.

        ``maps`` is one array ``(N, ...)``, or a tuple / dict of them (one per
        input). Inside :func:`one_report` the report joins the block's one
        warning; otherwise it is a :class:`~multiviz.errors.MultivizWarning` now.
        """
        if not self._bad:
            return maps
        rows = np.array(sorted(self._bad))

        def blank(arr: np.ndarray) -> np.ndarray:
            arr = np.array(arr, dtype=np.result_type(arr, np.float32), copy=True)
            arr[rows] = np.nan
            return arr

        if isinstance(maps, Mapping):
            out: Any = {k: blank(v) for k, v in maps.items()}
        elif isinstance(maps, tuple):
            out = tuple(blank(v) for v in maps)
        else:
            out = blank(maps)
        reports = _REPORTS.get()
        if reports is None:
            _warn(self._bad)
        else:
            for sample, places in self._bad.items():
                mine = reports.setdefault(sample, [])
                mine += [p for p in places if p not in mine]
        return out

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
        inputs: Any = None,
        rows: Any = None,
    ) -> GradientResult:
        """``backend.gradients`` over the batch (or ``inputs``), ``batch_size`` at a time.

        Every array the backend returns is checked for NaN and Inf
        (:meth:`note_result`), so :meth:`finish` can blank the samples.

        Args:
            names: layers whose activations and gradients to return.
            target: as from :meth:`check_target`; a class array is sliced per chunk.
            wrt_input: also return the gradient with respect to the input(s).
            guided: guided backpropagation through every ReLU.
            inputs: other inputs in the model's layout and structure (noisy
                copies, path points, masked images); default the batch ``x``.
                ``target`` then needs one entry per row of ``inputs``.
            rows: the sample each row of ``inputs`` belongs to (for the
                non-finite report); default row ``i`` is sample ``i``.
        """
        data = self.x if inputs is None else inputs
        layers = list(dict.fromkeys(self.request(n).layer for n in names))
        parts = []
        for s in chunks(self._length(data), self.batch_size):
            t = target[s] if isinstance(target, np.ndarray) else target
            piece = self.rows(data, s)
            result = self.backend.gradients(
                self.model, piece, layers, t, wrt_input=wrt_input, guided=guided
            )
            samples = np.arange(s.start, s.stop) if rows is None else np.asarray(rows)[s]
            self.note_result(result, piece, samples)
            parts.append(result)
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

    def scored_forward(self, inputs: Any, target: Targets, rows: Any = None) -> GradientResult:
        """The pre-softmax output and the target's score per row of ``inputs``; no gradient.

        ``backend.gradients`` with no layer and no input gradient is a forward
        pass that also scores the target — on the logits where the model ends
        in a softmax (``backend.forward`` returns the probabilities), and with a
        callable target applied to framework tensors.
        """
        return self.gradients([], target, inputs=inputs, rows=rows)

    def class_probabilities(self) -> Callable[[Any], np.ndarray]:
        """A function from inputs to the model's probability of each class, ``(n, classes)``.

        What Score-CAM weights a channel by (Wang et al. 2020): the softmax of
        the logits for a multi-class output (also for a model that ends in no
        softmax, as in the paper); the sigmoid of each logit where the output
        ends in a sigmoid layer (a one-unit binary head, or a multi-label
        one); the unit's own value for a one-unit output without one (a
        regression head: a softmax over one value is always 1, and would
        weight every channel alike).

        ``backend.forward`` is each framework's fastest inference path
        (compiled in Keras), but a model ending in a softmax or a sigmoid
        returns probabilities there, while :meth:`scored_forward` returns the
        logits before it. Which one ``forward`` gives is checked once, on up
        to ``batch_size`` clean inputs: its logits are turned into
        probabilities here, its probabilities are used as they are, and
        anything else (a log-softmax, a map per pixel) falls back to the
        scored pass's logits. An output with axes beyond ``(N, classes)`` is
        summed over them first, as the backends score it.
        """
        probe = self.rows(self.x, slice(0, min(self.n, self.batch_size)))
        scored = self.scored_forward(probe, None)
        logits = _class_scores(scored.output)
        probability = _probability(scored.head, logits.shape[1])
        plain = _class_scores(self.backend.forward(self.model, probe))

        def via_forward(inputs: Any) -> np.ndarray:
            return _class_scores(self.backend.forward(self.model, inputs))

        if plain.shape == logits.shape and _close(plain, probability(logits)):
            return via_forward
        if plain.shape == logits.shape and _close(plain, logits):
            return lambda inputs: probability(via_forward(inputs))
        return lambda inputs: probability(
            _class_scores(self.backend.gradients(self.model, inputs, [], None).output)
        )

    def capture(self, name: str) -> np.ndarray:
        """One layer's output for the batch, canonical layout (checked for NaN and Inf)."""
        layer = self.request(name).layer
        parts = []
        for s in chunks(self.n, self.batch_size):
            found = self.fold(self.backend.capture(self.model, self.rows(self.x, s), [layer]))
            piece = self.pick(found, name)
            self.note(f"layer {name!r}", piece, np.arange(s.start, s.stop))
            parts.append(piece)
        return np.concatenate(parts)

    # -- layers --------------------------------------------------------------------------------

    def layer_infos(self, with_shapes: bool = False) -> list[LayerInfo]:
        """The model's layers; ``with_shapes`` fills in output shapes from one sample's shape."""
        if not with_shapes:
            if self._infos is None:
                self._infos = self.backend.layers(self.model)
            return self._infos
        shapes = tuple(_shape(p)[1:] for p in self.inputs.parts)
        return self.backend.layers(self.model, input_shape=shapes if self.several else shapes[0])

    def request(self, name: str, method: str = "Attribution", param: str = "layer") -> Request:
        """What ``name`` (one layer, call or output) asks a backend for, read once.

        ``param`` is the caller's parameter that gave ``name`` (for the error).

        Raises:
            LayerNotFoundError: no such layer (closest names in the message).
            AmbiguousLayerError: ``name`` matches several layers (all listed,
                up to 5, then a count).
        """
        if name not in self._requests:
            found = requests(name, self.layer_infos())
            if len(found) != 1:
                keys = [r.key for r in found]
                shown = ", ".join(keys[:5]) + (f", … {len(keys) - 5} more" if len(keys) > 5 else "")
                raise AmbiguousLayerError(
                    f"{method} uses one layer; {param}={name!r} matches {len(keys)} ({shown})."
                    f"\nhint: pass one name, e.g. {param}={keys[0]!r}"
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
            AmbiguousLayerError: ``layer`` matches several layers.
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
        arr = self.per_frame(self.pick(arrays, name), name, method)
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
        near = f": spatial layers near the end: {candidates}" if candidates else ""
        raise NotSpatialLayerError(
            f"{method} needs a layer whose output is a spatial map (N, C, H, W); layer {name!r} "
            f"outputs shape {shape}, {what}.\nhint: pass a convolutional layer (or its "
            f"activation), usually the last one{near}"
        )

    def _has_attention(self) -> bool:
        return any(_is_attention_type(i.type) for i in self.layer_infos())


def _is_attention_type(type_name: str) -> bool:
    return type_name.endswith("Attention") or type_name in ("MultiheadAttention",)


def _is_spatial(info: LayerInfo) -> bool:
    shape = info.shape
    if info.layout in (ATTENTION, OTHER) or shape is None or len(shape) != 4:
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
    repeats a 1x1 map six times each way). A pooling or upsampling layer whose
    map is larger than the map before it (AlexNet and VGG at 64x96 pool a 2x3
    map up to 6x6 or 7x7) is no candidate: it only resamples that map. The
    choice is cached per model and input shape.

    Raises:
        NotSpatialLayerError: no layer outputs a spatial map; or none reaches the
            target (the message says so when the gradient is zero at every
            candidate: a score that depends on no layer, as from an all-zero
            classifier).
    """
    key = (tuple(_shape(p)[1:] for p in call.inputs.parts), call.given_grid)
    per_model = _CHOSEN.get(call.model)
    if per_model is not None and key in per_model:
        return per_model[key]
    infos = call.layer_infos(with_shapes=True)
    if call.frames is not None:  # a video: a layer inside TimeDistributed maps each frame
        infos = [_one_frame(i, call.frames) for i in infos]
    candidates = _candidates(infos, method)
    probe = call.rows(call.x, slice(0, min(call.n, 2)))
    chosen = None
    examined, reached = 0, False  # candidates looked at; some gradient not all zero
    for start in range(0, len(candidates), _PROBE):
        names = candidates[start : start + _PROBE]
        rows = np.arange(min(call.n, 2))
        result = call.gradients(names, rows_of(target, rows), inputs=probe, rows=rows)
        for name in names:
            act, grad = call.pick(result.activations, name), call.pick(result.gradients, name)
            if call.frames is not None:  # one map per frame, or no candidate
                if not (act.ndim == 5 or len(act) == len(rows) * call.frames):
                    continue
                act = act.reshape(-1, *act.shape[2:]) if act.ndim == 5 else act
            nonzero = bool(np.any(grad != 0))
            examined, reached = examined + 1, reached or nonzero
            if act.ndim == 4 and _varies(act) and nonzero:
                chosen = name
                break
        if chosen is not None:
            break
    if chosen is None and examined == len(candidates) and not reached:
        raise NotSpatialLayerError(
            f"{method}: the top class's gradient is zero at all {examined} spatial layers "
            f"of this {type(call.model).__name__}: its score depends on none of them, so no layer "
            "can be chosen.\nhint: a classifier whose weights are all zero (torchvision's ViT "
            "starts its head at zero) does this; give it weights."
        )
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


def _one_frame(info: LayerInfo, steps: int) -> LayerInfo:
    """A layer run per frame ``(None, T, C, H, W)`` read as one frame's map ``(None, C, H, W)``."""
    shape = info.shape
    if shape is not None and len(shape) == 5 and shape[1] == steps:
        return dataclasses.replace(info, shape=(shape[0], *shape[2:]))
    return info


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
    # a Permute or Reshape's 4-D output is not laid out as an image (Keras's
    # Permute((3, 1, 2)) before Flatten, to match PyTorch's flattening order)
    spatial = [i for i in spatial if i.type.lower() not in _REARRANGES] or spatial
    spatial = [
        i for k, i in enumerate(spatial) if not (k and _only_enlarges(i, spatial[k - 1]))
    ] or spatial
    first = default_layer(spatial, method)
    rest = [i.name for i in reversed(spatial) if i.name != first]
    return [first, *rest]


_REARRANGES = frozenset({"permute", "reshape"})


def _only_enlarges(info: LayerInfo, before: LayerInfo) -> bool:
    """A pooling or upsampling layer whose map is larger than the map computed before it.

    Such a layer adds no spatial information: torchvision's AlexNet and VGG at
    64x96 pool a 2x3 map up to 6x6 or 7x7 (``AdaptiveAvgPool2d``), and a
    Grad-CAM there only shows the smaller map resampled. The automatic choice
    takes the layer before it.
    """
    if not (info.kind == "pool" or "upsampl" in info.type.lower()):
        return False
    area, earlier = _area(info.shape), _area(before.shape)
    return area is not None and earlier is not None and area > earlier


def _area(shape: tuple[Any, ...] | None) -> int | None:
    if shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None:
        return None
    return int(shape[2]) * int(shape[3])


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
