"""Copy weights between a PyTorch and a Keras model, layouts converted.

:func:`transfer_weights` reads both models' per-layer parameters (through
``multiviz.backends.torch.weights`` / ``keras.weights``), pairs the layers
(:mod:`multiviz.parity.pairing`), converts every array through the canonical PyTorch
layout (:mod:`multiviz.core.weight_layouts`), checks everything — shapes, layer types, and
the settings that change what a layer computes — and only then writes. On any
error nothing has been written.

BatchNorm settings are not weights but change the output: ``eps`` must match
(PyTorch defaults to 1e-5, Keras to 1e-3), so a mismatch is an error unless
``check_config=False``. ``momentum`` means opposite things — PyTorch updates
``running = (1 - m) * running + m * batch``, Keras ``moving = k * moving +
(1 - k) * batch``, so ``m = 1 - k`` — and only matters for training; a
mismatch (PyTorch's default 0.1 is Keras's 0.9, Keras defaults to 0.99) is
reported in the result's notes, not an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiviz.backends import get_backend, plugin
from multiviz.core.params import names_parameters
from multiviz.core.weight_layouts import LayerParams, from_canonical, to_canonical
from multiviz.errors import TransferError
from multiviz.parity.pairing import (
    LayerSpec,
    Pair,
    PairsArg,
    Unpaired,
    pair_layers,
    param_signature,
)

__all__ = ["TransferReport", "read_params", "transfer_weights"]

_FAMILY = {
    "conv": "conv",
    "depthwise": "conv",
    "dense": "dense",
    "batchnorm": "batchnorm",
    "layernorm": "layernorm",
    "mha": "mha",
    "tokens": "tokens",
}


def _weights_backend(model: Any) -> Any:
    return plugin(get_backend(model).name, "weights")


def read_params(model: Any) -> list[LayerParams]:
    """Every layer's parameters, through the model's weights backend.

    Example:
        >>> import multiviz as mv
        >>> [p.name for p in read_params(mv.builtin_model("torch")) if p.has_params]  # doctest: +SKIP
        ['conv1', 'conv2', 'conv3', 'fc']
    """
    return _weights_backend(model).read(model)


def _write(model: Any, updates: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    _weights_backend(model).write(model, updates)


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did (or, with ``dry_run=True``, would do).

    Attributes:
        pairs: the layer pairs whose parameters were copied.
        skipped: layers with parameters left untouched (``strict=False`` only).
        notes: caveats per pair: identity bias filled in, momentum differences…
        frameworks: ``(source framework, target framework)``.
        written: False for a dry run.
        weightless: explicit pairs of two layers without parameters (a ReLU,
            a pooling), skipped: nothing to copy. The same ``pairs`` mapping
            can then serve :func:`transfer_weights` and ``compare``.
    """

    pairs: list[Pair] = field(default_factory=list)
    skipped: list[Unpaired] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frameworks: tuple[str, str] = ("", "")
    written: bool = True
    weightless: list[Pair] = field(default_factory=list)

    def __str__(self) -> str:
        verb = "copied" if self.written else "would copy (dry run)"
        src, dst = self.frameworks
        lines = [f"TransferReport {src} -> {dst}: {verb} {len(self.pairs)} layers"]
        width = max((len(p.a) for p in self.pairs), default=1)
        lines += [f"  {p.a:<{width}}  ->  {p.b}" for p in self.pairs]
        if self.skipped:
            lines.append(f"Skipped ({len(self.skipped)}):")
            lines += [f"  {u.name}: {u.reason}" for u in self.skipped]
        if self.weightless:
            lines.append(f"Without parameters, nothing to copy ({len(self.weightless)}):")
            lines += [f"  {p.a}  ->  {p.b}" for p in self.weightless]
        if self.notes:
            lines.append("Notes:")
            lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "source": self.frameworks[0],
            "target": self.frameworks[1],
            "written": self.written,
            "pairs": [[p.a, p.b] for p in self.pairs],
            "skipped": [{"side": u.side, "name": u.name, "reason": u.reason} for u in self.skipped],
            "weightless": [[p.a, p.b] for p in self.weightless],
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)


def _unsupported_message(p: LayerParams) -> str:
    try:
        to_canonical(p)
    except TransferError as err:
        return str(err)
    return f"{p.name!r} cannot be transferred"


def _spec(p: LayerParams) -> LayerSpec:
    return LayerSpec(p.name, p.op, p.type, param_signature(p))


def _momentum_as_torch(p: LayerParams) -> float | None:
    m = p.config.get("momentum")
    if m is None:
        return None
    return float(m) if p.framework == "torch" else 1.0 - float(m)


_MOMENTUM_NOTE = "BatchNorm momentum differs: "


def _momentum_text(p: LayerParams) -> str:
    m = p.config.get("momentum")
    if p.framework == "torch":
        return f"momentum={m}" + ("" if m is None else f" (= Keras momentum {1 - m:.6g})")
    return f"momentum={m:.6g} (= PyTorch momentum {1 - m:.6g})"


def _summarize(notes: list[str]) -> list[str]:
    """One line for the momentum differences (they usually affect every BatchNorm)."""
    momentum = [n[len(_MOMENTUM_NOTE) :] for n in notes if n.startswith(_MOMENTUM_NOTE)]
    rest = [n for n in notes if not n.startswith(_MOMENTUM_NOTE)]
    if momentum:
        more = f" (and {len(momentum) - 1} more pairs)" if len(momentum) > 1 else ""
        rest.append(
            f"{_MOMENTUM_NOTE}{momentum[0]}{more}. Keras momentum k is PyTorch momentum 1 - k; "
            "it only changes how training updates the running statistics."
        )
    return rest


def _check_config(src: LayerParams, dst: LayerParams, notes: list[str]) -> list[str]:
    """Problems that make the two layers compute different things (errors), and notes."""
    problems = []
    where = f"{src.framework} {src.name!r} -> {dst.framework} {dst.name!r}"
    if _FAMILY.get(src.op) == "batchnorm":
        e_src, e_dst = src.config["eps"], dst.config["eps"]
        if not math.isclose(e_src, e_dst, rel_tol=1e-6):
            fix = {
                "keras": f"BatchNormalization(epsilon={e_src:g})",
                "torch": f"{dst.type}(..., eps={e_src:g})",
            }[dst.framework]
            problems.append(
                f"{where}: BatchNorm epsilon differs ({src.framework} {e_src:g}, "
                f"{dst.framework} {e_dst:g}; PyTorch defaults to 1e-5, Keras to 1e-3), so the "
                f"outputs would differ. Build the {dst.framework} layer with {fix}, or pass "
                "check_config=False to copy the weights anyway."
            )
        m_src, m_dst = _momentum_as_torch(src), _momentum_as_torch(dst)
        if m_src is None or m_dst is None or not math.isclose(m_src, m_dst, rel_tol=1e-6):
            notes.append(f"{_MOMENTUM_NOTE}{where}: {_momentum_text(src)} vs {_momentum_text(dst)}")
    if _FAMILY.get(src.op) == "layernorm":
        e_src, e_dst = src.config["eps"], dst.config["eps"]
        if not math.isclose(e_src, e_dst, rel_tol=1e-6):
            problems.append(
                f"{where}: LayerNorm epsilon differs ({src.framework} {e_src:g}, {dst.framework} "
                f"{e_dst:g}; PyTorch defaults to 1e-5, Keras to 1e-3), so the outputs would "
                "differ. Build both with the same epsilon, or pass check_config=False."
            )
    if _FAMILY.get(src.op) == "mha" and src.config.get("heads") != dst.config.get("heads"):
        problems.append(
            f"{where}: the attention layers have {src.config.get('heads')} and "
            f"{dst.config.get('heads')} heads; the same weights split into other heads compute "
            "another function. Build both with the same number of heads."
        )
    if _FAMILY.get(src.op) == "conv":
        for key in ("stride", "dilation"):
            if tuple(src.config.get(key, ())) != tuple(dst.config.get(key, ())):
                problems.append(
                    f"{where}: {key} differs ({src.config.get(key)} vs {dst.config.get(key)}). "
                    "The layers do not compute the same function; fix the port, or pass "
                    "check_config=False."
                )
    act = dst.config.get("activation") or src.config.get("activation")
    if act:
        notes.append(f"{where}: the Keras layer applies activation={act!r} inside itself.")
    return problems


@names_parameters
def transfer_weights(
    source: Any,
    target: Any,
    pairs: PairsArg = "auto",
    *,
    check_config: bool = True,
    strict: bool = True,
    dry_run: bool = False,
) -> TransferReport:
    """Copy every paired layer's parameters from ``source`` into ``target``.

    Works both ways (PyTorch -> Keras and Keras -> PyTorch; also between two
    models of one framework). Supported: convolutions (1-D/2-D/3-D, grouped,
    depthwise — PyTorch ``Conv2d(groups=C)`` weight ``(C*m, 1, kh, kw)`` <->
    Keras ``DepthwiseConv2D`` kernel ``(kh, kw, C, m)``), ``Linear`` <->
    ``Dense`` (including the row order of a Dense fed by a channels-last
    ``Flatten``, read from the Keras graph), and BatchNorm (gamma, beta,
    running mean and variance). Run the PyTorch model in ``eval()`` mode to
    compare outputs afterwards.

    Args:
        source: the model to copy from (``torch.nn.Module`` or Keras model).
        target: the model to copy into; it must already be built.
        pairs: ``"auto"`` (names if they agree, else structure: execution
            order, layer kind and parameter shapes), ``"names"``, or an
            explicit mapping ``{source_name: target_name}`` / list of tuples.
            See :mod:`multiviz.parity.pairing`. An explicit pair of two
            layers without parameters (``{"relu1": "relu1"}``, as ``compare``
            takes) is skipped and listed in :attr:`TransferReport.weightless`.
        check_config: refuse to copy between layers whose settings make them
            compute different things: BatchNorm ``eps``, conv stride/dilation.
        strict: every layer with parameters on either side must be paired
            (with ``pairs="auto"``); ``False`` copies what pairs and lists the
            rest in :attr:`TransferReport.skipped`.
        dry_run: check everything, write nothing.

    Returns:
        A :class:`TransferReport` (printable; ``to_dict()``).

    Raises:
        TransferError: a layer cannot be transferred (unsupported type, shape
            mismatch, settings differ, layers left unpaired); every problem is
            listed, and the target is left unchanged.
        LayerNotFoundError: an explicit pair names a missing layer.

    Example:
        >>> import multiviz as mv
        >>> torch_model, keras_model = mv.builtin_model("torch"), mv.builtin_model("keras")  # doctest: +SKIP
        >>> print(mv.transfer_weights(torch_model, keras_model))  # doctest: +SKIP
        TransferReport torch -> keras: copied 4 layers
        ...
    """
    src_all, dst_all = read_params(source), read_params(target)
    src_params = [p for p in src_all if p.has_params]
    dst_params = [p for p in dst_all if p.has_params]
    labels = (get_backend(source).name, get_backend(target).name)
    if labels[0] == labels[1]:
        labels = (f"source {labels[0]}", f"target {labels[1]}")
    pairs, weightless = _without_weightless(pairs, src_all, dst_all, labels)
    pairing = pair_layers(
        [_spec(p) for p in src_params], [_spec(p) for p in dst_params], pairs, labels
    )
    by_src = {p.name: p for p in src_params}
    by_dst = {p.name: p for p in dst_params}

    problems: list[str] = []
    notes: list[str] = []
    explicit = not isinstance(pairs, str)
    if not explicit and strict:
        for u in pairing.unpaired:
            layer = (by_src if u.side == 0 else by_dst)[u.name]
            if layer.op == "unsupported":
                problems.append(_unsupported_message(layer))
            else:
                problems.append(
                    f"{labels[u.side]} layer {u.name!r} could not be paired: {u.reason}"
                )
    updates: dict[str, dict[str, np.ndarray]] = {}
    for pair in pairing.pairs:
        src, dst = by_src.get(pair.a), by_dst.get(pair.b)
        if src is None or dst is None:
            missing, side = (pair.a, 0) if src is None else (pair.b, 1)
            problems.append(f"{labels[side]} layer {missing!r} has no parameters to transfer.")
            continue
        try:
            if _FAMILY.get(src.op) != _FAMILY.get(dst.op):
                to_canonical(src), to_canonical(dst)  # an unsupported side raises its own message
                raise TransferError(
                    f"{labels[0]} {src.name!r} ({src.type}) and {labels[1]} {dst.name!r} "
                    f"({dst.type}) are different operations ({src.op} vs {dst.op})."
                )
            if check_config:
                problems += _check_config(src, dst, notes)
            updates[dst.name] = from_canonical(to_canonical(src), dst)
        except TransferError as err:
            problems.append(str(err))
    if problems:
        head = f"transfer_weights found {len(problems)} problem(s); nothing was written:"
        raise TransferError("\n  - ".join([head, *problems]))
    if not dry_run:
        _write(target, updates)
    skipped = [] if explicit else list(pairing.unpaired)
    return TransferReport(
        pairing.pairs, skipped, _summarize(notes), labels, not dry_run, weightless
    )


def _without_weightless(
    pairs: PairsArg,
    src: Sequence[LayerParams],
    dst: Sequence[LayerParams],
    labels: tuple[str, str],
) -> tuple[PairsArg, list[Pair]]:
    """An explicit ``pairs`` without its pairs of two weightless layers, and those pairs.

    A pair of a weightless layer with one that has parameters is an error
    (the two layers cannot compute the same thing).
    """
    if isinstance(pairs, str):
        return pairs, []
    items = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
    has_a = {p.name: p.has_params for p in src}
    has_b = {p.name: p.has_params for p in dst}
    kept, weightless = [], []
    for a, b in items:
        if has_a.get(a) is False and has_b.get(b) is False:
            weightless.append(Pair(a, b, "explicit"))
        elif (has_a.get(a) is False and b in has_b) or (has_b.get(b) is False and a in has_a):
            empty, side = (a, 0) if has_a.get(a) is False else (b, 1)
            other = b if side == 0 else a
            raise TransferError(
                f"`pairs` pairs {labels[side]} {empty!r}, which has no parameters, with "
                f"{other!r}, which has: they cannot compute the same thing. Received: ({a!r}, {b!r})"
            )
        else:
            kept.append((a, b))
    return kept, weightless
