"""The backend contract: the verbs the framework-free core needs, and the one target check.

A backend adapts one framework. Everything it returns is NumPy in the
canonical layout (see :mod:`multiviz.core.records`), so nothing downstream
knows which framework produced an array.

Layer names: :meth:`Backend.capture` and :meth:`Backend.gradients` receive
plain layer names (a :attr:`~multiviz.core.records.LayerInfo.base`) and return
*every* call and output of each, keyed ``name``, ``name#k``, ``name[i]``;
:mod:`multiviz.core.names` resolves what the caller wrote and keeps what was
asked for, once, for every backend.

Targets: both adapters check ``target`` with :func:`check_target`,
:func:`class_indices` and :func:`check_scores`, so the same bad target gets
the same :class:`~multiviz.errors.TargetError`, word for word, whichever
framework runs the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from multiviz.core.records import LayerInfo
from multiviz.errors import TargetError

__all__ = [
    "HEADS",
    "Backend",
    "GradientResult",
    "Inputs",
    "Target",
    "check_scores",
    "check_target",
    "class_indices",
    "main_output",
    "read_inputs",
    "score_callable",
]

#: What a gradient is taken of. ``None``: each sample's top-scoring class;
#: an int, or ints of shape (N,): one class (or unit) per sample of the model's
#: main output (see :func:`main_output`); a callable: receives the model's
#: *whole* output as the model returns it — a tensor, a tuple, a list or a
#: dict of framework tensors, each output that ends in a softmax or a sigmoid
#: layer replaced by the logits entering it — and returns one score per
#: sample as a framework tensor of shape (N,). A class index needs a main
#: output of shape (N, classes); any other output needs a callable.
Target = np.ndarray | Callable[[Any], Any] | None

#: What a model applies to its scored logits: the activation of a final layer.
HEADS = ("softmax", "sigmoid")


@dataclass
class GradientResult:
    """What :meth:`Backend.gradients` returns (all NumPy, canonical layout).

    Attributes:
        output: the model's main output for the batch (:func:`main_output`),
            the logits where it ends in a softmax or a sigmoid layer, shape (N, ...).
        targets: the class index scored per sample, shape (N,), or ``None``
            when the target was a callable.
        scores: the scored value per sample, shape (N,).
        activations: layer name -> activation, as :meth:`Backend.capture` would.
        gradients: layer name -> d(sum of scores)/d(activation), same shapes.
        input_gradient: d(sum of scores)/d(input) in the input's own layout
            (NCHW for PyTorch, the model's input layout for Keras), or ``None``;
            for several inputs, one per input in the structure they were
            given in (:meth:`Inputs.pack`: a tuple, a list or a dict).
        head: the activation the model applies to ``output`` in a final layer
            (one of :data:`HEADS`: an ``nn.Softmax`` / ``nn.Sigmoid`` module,
            a Keras ``Softmax`` layer or ``activation="sigmoid"``), or
            ``None`` — a plain logit, score or regression value.
    """

    output: np.ndarray
    targets: np.ndarray | None
    scores: np.ndarray
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    gradients: dict[str, np.ndarray] = field(default_factory=dict)
    input_gradient: Any = None
    head: str | None = None


class Backend(Protocol):
    """What every framework adapter provides.

    Input ``x`` is the framework's native layout: NCHW for PyTorch, the model's
    input layout (normally NHWC) for Keras; a NumPy array or a framework tensor;
    for a model with several inputs, a tuple or a list of them (PyTorch passes
    them as positional arguments) or a dict (named inputs), read by
    :func:`read_inputs`.
    """

    name: str

    def owns(self, model: object) -> bool:
        """True when ``model`` belongs to this framework (decided from its type)."""

    def layers(self, model: Any, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
        """Every addressable layer, in model order.

        ``input_shape`` (one sample, no batch axis, the framework's layout) lets
        a backend that cannot know output shapes statically (PyTorch) fill them
        in from one forward pass on zeros.
        """

    def capture(self, model: Any, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One forward pass; every call and output of the named layers, canonical layout.

        ``names`` are layer names as :meth:`layers` reports them in
        :attr:`~multiviz.core.records.LayerInfo.base`. Keys are those names,
        with ``#k`` for the k-th extra call of a layer called several times,
        and ``[i]`` / ``[key]`` for layers with several outputs.
        """

    def forward(self, model: Any, x: Any) -> np.ndarray:
        """The model's output for ``x`` (inference mode, model unchanged)."""

    def gradients(
        self,
        model: Any,
        x: Any,
        names: Sequence[str],
        target: Target = None,
        wrt_input: bool = False,
        guided: bool | str = False,
    ) -> GradientResult:
        """Activations of ``names`` (every call and output) and gradients of the target score.

        ``target`` is checked with :func:`class_indices` / :func:`check_scores`.
        ``guided=True`` replaces every ReLU's backward pass with guided
        backpropagation's (Springenberg et al. 2015) for this call only;
        ``guided="deconvnet"`` with the deconvnet's (Zeiler & Fergus 2014:
        only positive gradients pass, whatever the forward input was).
        """

    def input_layout(self, model: Any) -> str:
        """``"channels_first"`` or ``"channels_last"``: the layout ``x`` must have."""

    def input_count(self, model: Any) -> int | None:
        """How many inputs the model takes, or ``None`` where that is not known.

        :func:`read_inputs` reads a caller's tuple or list with it.
        """


# --------------------------------------------------------------------------- the target check


def _as_array(target: Any) -> np.ndarray:
    """A NumPy view of an int, a sequence, an array or a framework tensor (duck-typed)."""
    if hasattr(target, "detach") and hasattr(target, "cpu"):  # a torch tensor
        target = target.detach().cpu().numpy()
    elif hasattr(target, "numpy") and not isinstance(target, np.ndarray):  # a TF tensor
        target = target.numpy()
    try:
        return np.asarray(target)
    except (TypeError, ValueError):  # ragged lists and the like
        return np.asarray(None)


def check_target(target: Any, n: int) -> np.ndarray | Callable[[Any], Any] | None:
    """``target`` checked against a batch of ``n``, before the model runs.

    Args:
        target: ``None``, a callable, an int, or ``n`` ints (a sequence, an
            array, a framework tensor; whole-number floats are accepted).
        n: the batch size.

    Returns:
        ``None``, the callable itself, or the class indices as int64 ``(n,)``.

    Raises:
        TargetError: anything else; the message says what is valid.

    Example:
        >>> check_target(2, 3).tolist(), check_target(None, 3)
        ([2, 2, 2], None)
        >>> check_target([1, 2], 3)
        Traceback (most recent call last):
        ...
        multiviz.errors.TargetError: `target` must hold one class index per sample, shape (3,), or be one int; received shape (2,).
    """
    if target is None or callable(target):
        return target
    arr = _as_array(target)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TargetError(
            "`target` must be None (each sample's top class), a class index, one class index "
            f"per sample, or a callable scoring the model's output; received target={_short(target)}."
        )
    if arr.ndim == 0:
        arr = np.full(n, int(arr), np.int64)
    if arr.shape != (n,):
        raise TargetError(
            f"`target` must hold one class index per sample, shape ({n},), or be one int; "
            f"received shape {arr.shape}."
        )
    if np.any(arr < 0):
        raise TargetError(f"`target` class indices must be >= 0; received target={arr.tolist()}.")
    return arr.astype(np.int64)


def main_output(out: Any, is_tensor: Callable[[Any], bool]) -> Any:
    """The tensor a class index scores: the output itself, or the one a structure stands for.

    A mapping's ``"logits"`` entry, else its first tensor; a tuple's or a
    list's first tensor (depth first). Both adapters pick it with this one
    rule, so a class index means the same output in every framework; any other
    output of a structure is scored with a callable target.

    Raises:
        TypeError: the output holds no tensor.

    Example:
        >>> is_array = lambda t: isinstance(t, np.ndarray)
        >>> main_output(({"aux": np.zeros(1), "logits": np.ones(2)}, np.zeros(3)), is_array)
        array([1., 1.])
    """
    if is_tensor(out):
        return out
    items: list[Any] = []
    if isinstance(out, Mapping):
        items = [out["logits"]] if "logits" in out else list(out.values())
    elif isinstance(out, (tuple, list)):
        items = list(out)
    for item in items:
        try:
            return main_output(item, is_tensor)
        except TypeError:
            continue
    raise TypeError(
        f"The model returned {type(out).__name__}, which holds no tensor; multiviz needs "
        "a tensor output (or a tuple, list or dict holding one)."
    )


def score_callable(
    target: Callable[[Any], Any], whole: Any, n: int, is_tensor: Callable[[Any], bool]
) -> Any:
    """``target(whole)``: a callable target applied to the whole output, its result checked.

    Args:
        target: the caller's callable.
        whole: the model's whole output (see :data:`Target`).
        n: the batch size.
        is_tensor: tells a framework tensor (one that gradients flow through)
            from anything else.

    Returns:
        What ``target`` returned: one score per sample.

    Raises:
        TargetError: the result is not one score per sample.
    """
    scores = target(whole)
    check_scores(scores, n, is_tensor=bool(is_tensor(scores)))
    return scores


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shown(shape: Sequence[int | None]) -> str:
    """An output shape with its batch axis as ``N``: the same text for every framework."""
    return "(" + ", ".join(["N", *(str(d) for d in shape[1:])]) + ")"


def class_indices(target: Any, n: int, output_shape: Sequence[int | None]) -> np.ndarray:
    """The class scored for each sample, for a target that is not a callable.

    Args:
        target: ``None``, an int or ``n`` ints (see :func:`check_target`).
        n: the batch size.
        output_shape: the shape of the model's (pre-softmax) output.

    Returns:
        int64 ``(n,)``; ``-1`` where the sample's top class is meant (``target=None``).

    Raises:
        TargetError: the output is not ``(N, classes)`` (summing a map silently
            would be a guess: the hint shows a callable), or an index is out of range.

    Example:
        >>> class_indices(None, 2, (2, 5)).tolist()
        [-1, -1]
        >>> class_indices(7, 2, (2, 5))
        Traceback (most recent call last):
        ...
        multiviz.errors.TargetError: `target` class indices must lie in [0, 4] for an output with 5 classes; received target=[7, 7].
    """
    checked = check_target(target, n)
    if len(output_shape) != 2:
        if len(output_shape) > 2:
            axes = tuple(range(1, len(output_shape) - 1))
            example = f"out[:, k].sum(axis={axes[0] if len(axes) == 1 else axes})"
        else:
            example = "out"
        raise TargetError(
            f"`target={_short(target)}` picks one class of an output of shape (N, classes); "
            f"this model's output has shape {_shown(output_shape)}.\n"
            f"hint: pass a callable returning one score per sample, e.g. target=lambda out: {example}"
        )
    if checked is None:
        return np.full(n, -1, np.int64)
    assert isinstance(checked, np.ndarray)
    k = output_shape[1]
    if k == 1 and checked.size and int(checked.max()) >= 1:
        same = bool(np.all(checked == checked[0]))
        shown = int(checked[0]) if same else _short(checked.tolist())
        raise TargetError(
            f"`target={shown}` picks a unit this output does not have: it has one "
            "unit (a sigmoid's logit or a regression value), so target=None or 0 scores it.\n"
            "hint: for the other class of a binary sigmoid head, pass target=lambda out: -out[:, 0]"
        )
    if k is not None and checked.size and int(checked.max()) >= int(k):
        raise TargetError(
            f"`target` class indices must lie in [0, {int(k) - 1}] for an output with {k} "
            f"classes; received target={checked.tolist()}."
        )
    return checked


def check_scores(scores: Any, n: int, is_tensor: bool = True) -> None:
    """Check what a callable target returned: one score per sample, a framework tensor.

    Raises:
        TargetError: not a tensor of shape ``(n,)`` (a sum over the batch, a
            whole map, a NumPy array that gradients cannot flow through).

    Example:
        >>> check_scores(np.zeros(()), 2)
        Traceback (most recent call last):
        ...
        multiviz.errors.TargetError: A callable `target` must return one score per sample, shape (2,), e.g. lambda out: out[:, 3], keeping the batch axis; received shape ().
    """
    shape = getattr(scores, "shape", None)
    if is_tensor and shape is not None and tuple(shape) == (n,):
        return
    got = f"shape {tuple(shape)}" if is_tensor and shape is not None else type(scores).__name__
    raise TargetError(
        f"A callable `target` must return one score per sample, shape ({n},), e.g. "
        f"lambda out: out[:, 3], keeping the batch axis; received {got}."
    )


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """A caller's input read as the model's inputs: one, several in order, or named.

    Attributes:
        parts: one array or tensor per model input, in order.
        kind: ``"one"``, ``"tuple"``, ``"list"`` or ``"dict"``: the structure given.
        names: a dict's keys, in the order given (empty otherwise).

    Example:
        >>> a, b = np.zeros((2, 3)), np.ones((2, 1))
        >>> inputs = read_inputs((a, b))
        >>> inputs.kind, len(inputs.parts), inputs.labels
        ('tuple', 2, ['input 0', 'input 1'])
        >>> type(inputs.pack([b, a])).__name__
        'tuple'
    """

    parts: tuple[Any, ...]
    kind: str = "one"
    names: tuple[str, ...] = ()

    def pack(self, parts: Sequence[Any]) -> Any:
        """``parts`` in the structure the caller gave: what a model is called with, or returned."""
        if self.kind == "one":
            return parts[0]
        if self.kind == "dict":
            return dict(zip(self.names, parts, strict=True))
        return tuple(parts) if self.kind == "tuple" else list(parts)

    @property
    def labels(self) -> list[str]:
        """How a message names each input: ``"input"``, ``"input 1"``, ``"input 'depth'"``."""
        if self.kind == "one":
            return ["input"]
        if self.kind == "dict":
            return [f"input {name!r}" for name in self.names]
        return [f"input {i}" for i in range(len(self.parts))]

    def key(self, index: int) -> int | str:
        """How a caller names input ``index``: its position, or its dict key."""
        return self.names[index] if self.kind == "dict" else index


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Mapping)


def read_inputs(x: Any, count: int | None = None) -> Inputs:
    """How ``x`` splits into a model's inputs: the one rule every backend and attribution share.

    Args:
        x: what the caller passed: an array or tensor; a tuple or list of them;
            a dict of them (named inputs).
        count: how many inputs the model takes, where the backend knows it
            (a Keras graph's inputs, a PyTorch ``forward``'s positional
            parameters); ``None`` when it does not.

    Returns:
        :class:`Inputs`. A dict is named inputs. A tuple or a list is several
        inputs when the model takes several (``count > 1``), or, with
        ``count`` unknown, when every item is an array or a tensor (PyTorch
        passes them as positional arguments). Anything else — one array, a
        nested list of numbers, a list of same-shaped images for a model with
        one input — is one input.

    Example:
        >>> read_inputs([np.zeros((2, 3)), np.zeros((2, 3))], count=1).kind
        'one'
        >>> read_inputs({"rgb": np.zeros((1, 3))}).names
        ('rgb',)
    """
    if isinstance(x, Mapping):
        return Inputs(tuple(x.values()), "dict", tuple(str(k) for k in x))
    if isinstance(x, (tuple, list)) and x:
        several = count > 1 if count is not None else all(_is_array(item) for item in x)
        if several:
            return Inputs(tuple(x), "tuple" if isinstance(x, tuple) else "list")
    return Inputs((x,))
