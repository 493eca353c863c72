"""Which layer of one model corresponds to which layer of another.

Framework-free: works on :class:`LayerSpec` lists (name, kind, type and, for
layers with parameters, a signature built from the canonical parameter
shapes). Three ways to pair, chosen by ``pairs``:

* an explicit mapping — a dict ``{name_a: name_b}`` or a list of
  ``(name_a, name_b)`` tuples: exactly those pairs;
* ``"names"``: layers with the same name;
* ``"auto"``: ``"names"`` when every layer with parameters has a same-named
  twin with the same kind of parameters (two builds of one architecture, like
  multiviz's built-in model); otherwise by *structure*:

  1. layers with parameters are aligned in execution order by their
     signature — the operation (conv, dense, batchnorm) and the weight shape in
     PyTorch layout, so a Keras ``Conv2D`` kernel ``(3, 3, 64, 128)`` meets a
     PyTorch ``Conv2d`` weight ``(128, 64, 3, 3)`` — with a longest-common-
     subsequence match, which tolerates layers present on one side only;
  2. between two consecutive aligned layers, the parameter-free layers
     (activations, pools, flatten…) are paired by kind, in order, wherever both
     sides have the same number of that kind there; where the counts differ the
     pairing would be a guess, so those layers are reported instead.

Everything left over comes back in :attr:`Pairing.unpaired` with the reason.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from multiviz.core.weight_layouts import LayerParams, canonical_shapes
from multiviz.errors import LayerNotFoundError, closest

__all__ = ["LayerSpec", "Pair", "Pairing", "Unpaired", "pair_layers", "param_signature"]

PairsArg = str | Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class LayerSpec:
    """What pairing needs to know about one layer (or one call of a layer).

    Attributes:
        name: the layer's name (``"relu#1"`` for a second call).
        kind: the framework-neutral kind (``"conv"``, ``"activation"``…).
        type: the class name.
        signature: ``(op, weight shape in PyTorch layout)`` for a layer with
            parameters (see :func:`param_signature`), else ``None``.
    """

    name: str
    kind: str = "other"
    type: str = ""
    signature: tuple | None = None


@dataclass(frozen=True)
class Pair:
    """Layer ``a`` of the first model corresponds to layer ``b`` of the second.

    Attributes:
        a, b: the two names.
        how: ``"explicit"``, ``"name"`` or ``"structure"``.
        note: a caveat worth printing (empty when none).
    """

    a: str
    b: str
    how: str
    note: str = ""


@dataclass(frozen=True)
class Unpaired:
    """A layer that has no counterpart, and why.

    Attributes:
        side: ``0`` for the first model, ``1`` for the second.
        name: the layer's name.
        reason: why it was not paired, in a sentence.
    """

    side: int
    name: str
    reason: str


@dataclass
class Pairing:
    """The result of :func:`pair_layers`: pairs in the first model's order, and the rest."""

    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[Unpaired] = field(default_factory=list)
    strategy: str = ""

    def __str__(self) -> str:
        width = max((len(p.a) for p in self.pairs), default=1)
        lines = [f"Pairing ({self.strategy}): {len(self.pairs)} pairs"]
        lines += [
            f"  {p.a:<{width}}  <->  {p.b}" + (f"   ({p.note})" if p.note else "")
            for p in self.pairs
        ]
        if self.unpaired:
            lines.append(f"Unpaired ({len(self.unpaired)}):")
            lines += [f"  [{u.side}] {u.name}: {u.reason}" for u in self.unpaired]
        return "\n".join(lines)


def param_signature(p: LayerParams | None) -> tuple | None:
    """``(op, weight shape)`` in PyTorch layout, the key of structural pairing.

    Depthwise and ordinary convolutions share the op ``"conv"`` (a depthwise
    kernel is a grouped one); layers without parameters give ``None``; a
    layer with parameters of an unsupported type gives ``("unsupported:<type>",
    shapes)``, which pairs only with its own type.

    Example:
        >>> import numpy as np
        >>> param_signature(LayerParams("c", "Conv2D", "conv", "keras", {"kernel": np.zeros((3, 3, 8, 16))}))
        ('conv', (16, 8, 3, 3))
    """
    if p is None or not p.has_params:
        return None
    if p.op == "unsupported":
        return (f"unsupported:{p.type}", tuple(sorted((k, v.shape) for k, v in p.arrays.items())))
    shapes = canonical_shapes(p)
    op = "conv" if p.op == "depthwise" else p.op
    key = "weight" if "weight" in shapes else "running_mean"
    return (op, shapes.get(key, ()))


def pair_layers(
    a: Sequence[LayerSpec],
    b: Sequence[LayerSpec],
    pairs: PairsArg = "auto",
    labels: tuple[str, str] = ("first", "second"),
) -> Pairing:
    """Pair the layers of two models.

    Args:
        a, b: each model's layers, in execution order.
        pairs: ``"auto"``, ``"names"``, a dict ``{name_a: name_b}`` or a list
            of ``(name_a, name_b)`` tuples (see the module docstring).
        labels: how to call the two models in reasons (``("torch", "keras")``).

    Returns:
        A :class:`Pairing`.

    Raises:
        LayerNotFoundError: an explicit mapping names a layer that is not there.
        ValueError: ``pairs`` is a string other than ``"auto"`` / ``"names"``.

    Example:
        >>> a = [LayerSpec("conv1", "conv", "Conv2d", ("conv", (8, 3, 3, 3))),
        ...      LayerSpec("relu", "activation", "ReLU")]
        >>> b = [LayerSpec("pad", "other", "ZeroPadding2D"),
        ...      LayerSpec("c1", "conv", "Conv2D", ("conv", (8, 3, 3, 3))),
        ...      LayerSpec("act", "activation", "ReLU")]
        >>> [(p.a, p.b) for p in pair_layers(a, b).pairs]
        [('conv1', 'c1'), ('relu', 'act')]
    """
    if isinstance(pairs, str):
        if pairs not in ("auto", "names"):
            raise ValueError(
                "`pairs` must be 'auto', 'names', a dict {name_a: name_b} or a list of "
                f"(name_a, name_b) tuples. Received: pairs={pairs!r}"
            )
        if pairs == "names" or _names_agree(a, b):
            return _by_name(a, b, labels)
        return _by_structure(a, b, labels)
    return _explicit(a, b, pairs, labels)


# --------------------------------------------------------------------------- strategies


def _names_agree(a: Sequence[LayerSpec], b: Sequence[LayerSpec]) -> bool:
    pa = {s.name: s.signature[0] for s in a if s.signature}
    pb = {s.name: s.signature[0] for s in b if s.signature}
    if pa or pb:
        return pa == pb
    return bool(a) and {s.name for s in a} == {s.name for s in b}


def _by_name(a: Sequence[LayerSpec], b: Sequence[LayerSpec], labels: tuple[str, str]) -> Pairing:
    names_b = {s.name for s in b}
    names_a = {s.name for s in a}
    out = Pairing(strategy="names")
    for s in a:
        if s.name in names_b:
            out.pairs.append(Pair(s.name, s.name, "name"))
        else:
            out.unpaired.append(Unpaired(0, s.name, f"no layer named {s.name!r} in {labels[1]}"))
    out.unpaired += [
        Unpaired(1, s.name, f"no layer named {s.name!r} in {labels[0]}")
        for s in b
        if s.name not in names_a
    ]
    return out


def _explicit(
    a: Sequence[LayerSpec], b: Sequence[LayerSpec], pairs: PairsArg, labels: tuple[str, str]
) -> Pairing:
    items = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
    for side, specs, names in ((0, a, [p[0] for p in items]), (1, b, [p[1] for p in items])):
        known = [s.name for s in specs]
        for n in names:
            if n not in known:
                near = closest(n, known)
                raise LayerNotFoundError(
                    f"`pairs` names {n!r}, which is not a layer of the {labels[side]} model."
                    + (f" Closest: {near}." if near else f" Layers: {known[:12]}…")
                )
    order = {s.name: k for k, s in enumerate(a)}
    items.sort(key=lambda p: order[p[0]])
    used_a, used_b = {p[0] for p in items}, {p[1] for p in items}
    out = Pairing([Pair(x, y, "explicit") for x, y in items], strategy="explicit")
    out.unpaired += [Unpaired(0, s.name, "not in `pairs`") for s in a if s.name not in used_a]
    out.unpaired += [Unpaired(1, s.name, "not in `pairs`") for s in b if s.name not in used_b]
    return out


def _describe(sig: tuple) -> str:
    return f"{sig[0]} layer with weight shape {sig[1]} (PyTorch layout)"


def _by_structure(
    a: Sequence[LayerSpec], b: Sequence[LayerSpec], labels: tuple[str, str]
) -> Pairing:
    out = Pairing(strategy="structure")
    pa = [i for i, s in enumerate(a) if s.signature]
    pb = [j for j, s in enumerate(b) if s.signature]
    anchors: list[tuple[int, int, str]] = []
    matcher = difflib.SequenceMatcher(
        None, [a[i].signature for i in pa], [b[j].signature for j in pb], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            anchors += [(i, j, "") for i, j in zip(pa[i1:i2], pb[j1:j2], strict=True)]
            continue
        ia, jb = pa[i1:i2], pb[j1:j2]
        same_ops = len(ia) == len(jb) and all(
            a[i].signature[0] == b[j].signature[0] for i, j in zip(ia, jb, strict=True)
        )
        if same_ops:  # same layers in the same order, shapes differ: pair, and say so
            anchors += [
                (i, j, f"parameter shapes differ: {a[i].signature[1]} vs {b[j].signature[1]}")
                for i, j in zip(ia, jb, strict=True)
            ]
            continue
        for i in ia:
            out.unpaired.append(
                Unpaired(
                    0, a[i].name, f"no {_describe(a[i].signature)} at this point in {labels[1]}"
                )
            )
        for j in jb:
            out.unpaired.append(
                Unpaired(
                    1, b[j].name, f"no {_describe(b[j].signature)} at this point in {labels[0]}"
                )
            )
    pairs = [(i, j, note) for i, j, note in anchors]
    bounds = [(-1, -1), *[(i, j) for i, j, _ in anchors], (len(a), len(b))]
    for (i0, j0), (i1, j1) in itertools.pairwise(bounds):
        where = _where(a, i0, i1)
        gap_a = [i for i in range(i0 + 1, i1) if not a[i].signature]
        gap_b = [j for j in range(j0 + 1, j1) if not b[j].signature]
        for key in dict.fromkeys([_key(a[i]) for i in gap_a] + [_key(b[j]) for j in gap_b]):
            la = [i for i in gap_a if _key(a[i]) == key]
            lb = [j for j in gap_b if _key(b[j]) == key]
            if len(la) == len(lb):
                pairs += [(i, j, "") for i, j in zip(la, lb, strict=True)]
                continue
            if not la or not lb:
                side, names, other = (0, la, labels[1]) if la else (1, lb, labels[0])
                specs = a if side == 0 else b
                out.unpaired += [
                    Unpaired(side, specs[k].name, f"no {key} layer in {other} {where}")
                    for k in names
                ]
                continue
            reason = (
                f"ambiguous: {len(la)} {key} layers in {labels[0]} but {len(lb)} in {labels[1]} "
                f"{where}; pair them with `pairs=`"
            )
            out.unpaired += [Unpaired(0, a[i].name, reason) for i in la]
            out.unpaired += [Unpaired(1, b[j].name, reason) for j in lb]
    pairs.sort()
    out.pairs = [Pair(a[i].name, b[j].name, "structure", note) for i, j, note in pairs]
    return out


def _key(s: LayerSpec) -> str:
    """What parameter-free layers must share to be paired: their kind, or for
    ``"other"`` their type without the dimension suffix (``Flatten``, ``Add``…)."""
    if s.kind != "other":
        return s.kind
    return re.sub(r"[123]d$", "", s.type.lower()) or "other"


def _where(a: Sequence[LayerSpec], i0: int, i1: int) -> str:
    if i0 < 0 and i1 >= len(a):
        return "anywhere"
    if i0 < 0:
        return f"before {a[i1].name!r}"
    if i1 >= len(a):
        return f"after {a[i0].name!r}"
    return f"between {a[i0].name!r} and {a[i1].name!r}"
