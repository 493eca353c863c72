"""The layer-key grammar: naming a layer, one call of it, or one of its outputs.

A *key* names one array a capture returns:

===============  ==================================================================
``conv1``        a layer: a PyTorch module's name (``layer2.1.conv2``), a Keras
                 layer's name (``outer/inner`` inside a nested model)
``relu#1``       the second call of a layer called several times in one pass
                 (``relu`` is the first)
``split[0]``     the first output of a layer with several outputs (``[name]`` for a
                 dict output; nesting gives ``split[1][0]``)
``relu#1[0]``    both
``layer*.conv``  a glob pattern over the layer names (with ``kind=``: layer kinds)
===============  ==================================================================

What a name means, in precedence order: an exact layer name always wins (a
layer literally named ``conv[3x3]`` is that layer, not output ``3x3`` of
``conv``); then a layer name followed by ``#k`` and/or ``[i]`` (the longest
layer name that reads that way); then glob patterns and kinds.

This module is the only one that reads a key. A request is resolved once,
against the layers a backend lists (:func:`requests`), into
:class:`Request` records; a backend is asked for plain layer names
(:func:`layers_of`) and returns *every* call and output of each, keyed as
that name plus ``#k`` / ``[i]``; :func:`select` then keeps what was asked
for. An explicit name whose layer did not run, or a ``#k`` beyond the calls
that happened, is an error; globs and kinds return what ran.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from multiviz.core.records import LayerInfo
from multiviz.errors import LayerNotFoundError, layer_hint

__all__ = [
    "KINDS",
    "Request",
    "layers_of",
    "owner",
    "requests",
    "resolve",
    "select",
    "split_suffix",
    "suffix_order",
]

KINDS = ("conv", "dense", "norm", "activation", "pool", "container", "other")

# what may follow a layer name: "#k" (a call), then any number of "[i]" (outputs)
_SUFFIX = re.compile(r"(?:#(\d+))?((?:\[[^\]]+\])*)")
# "relu#1" / "split[0]" read without the model's layer names: the shortest stem
_TRAILING = re.compile(r"^(?P<base>.+?)(?P<suffix>(#\d+)?(\[[^\]]+\])*)$")

T = TypeVar("T")


def _is_suffix(text: str) -> bool:
    return _SUFFIX.fullmatch(text) is not None


def split_suffix(key: str) -> tuple[str, str]:
    """Split ``"block.relu#1"`` into ``("block.relu", "#1")``, without the model's layer names.

    The shortest reading: a layer literally named ``conv[3x3]`` comes back as
    ``("conv", "[3x3]")``. Where the layer names are known, :func:`owner` is exact.

    Example:
        >>> split_suffix("block.relu#1")
        ('block.relu', '#1')
        >>> split_suffix("lstm[0]")
        ('lstm', '[0]')
    """
    m = _TRAILING.match(key)
    assert m is not None
    return m.group("base"), m.group("suffix")


def owner(key: str, layers: Collection[str]) -> tuple[str, str] | None:
    """The layer of ``layers`` that ``key`` names, and the rest of the key.

    An exact layer name wins; otherwise the longest layer name that ``key``
    extends by a valid suffix (``#k`` and/or ``[i]``…).

    Returns:
        ``(layer, suffix)``, or ``None`` when ``key`` belongs to none of ``layers``.

    Example:
        >>> owner("relu#1[0]", {"relu", "fc"})
        ('relu', '#1[0]')
        >>> owner("conv[3x3]", {"conv", "conv[3x3]"})
        ('conv[3x3]', '')
        >>> owner("conv7", {"conv"}) is None
        True
    """
    if key in layers:
        return key, ""
    for i in range(len(key) - 1, 0, -1):  # longest layer name first
        if key[i] in "#[" and key[:i] in layers and _is_suffix(key[i:]):
            return key[:i], key[i:]
    return None


def suffix_order(suffix: str) -> tuple[int, tuple[str, ...]]:
    """A sort key for the keys of one layer: call number, then outputs (numbers as numbers).

    Example:
        >>> sorted(["#1", "[1]", "", "[0]", "#1[0]"], key=suffix_order)
        ['', '[0]', '[1]', '#1', '#1[0]']
    """
    m = _SUFFIX.fullmatch(suffix)
    if m is None:
        return (0, (suffix,))
    outputs = tuple(
        f"{int(o):012d}" if o.isdigit() else o for o in re.findall(r"\[([^\]]+)\]", m[2])
    )
    return (int(m[1] or 0), outputs)


@dataclass(frozen=True)
class Request:
    """One thing a caller asked for, resolved against the model's layers.

    Attributes:
        key: the key as written (``"relu#1"``), or the listed name for a
            glob or kind match.
        layer: the layer name a backend is asked for (``"relu"``).
        suffix: which of its calls and outputs: ``""`` (all), ``"#k"``,
            ``"[i]"``, ``"#k[i]"``.
        explicit: named by the caller, not matched by a pattern or a kind: it
            is an error when nothing of it comes back.

    Example:
        >>> r = Request("relu#1", "relu", "#1", True)
        >>> [r.wants(s) for s in ("", "#1", "#1[0]", "#10")]
        [False, True, True, False]
    """

    key: str
    layer: str
    suffix: str = ""
    explicit: bool = True

    def wants(self, suffix: str) -> bool:
        """True for the suffix of a returned key (relative to :attr:`layer`) that this asks for."""
        if not self.suffix or suffix == self.suffix:
            return True
        return suffix.startswith(self.suffix) and suffix[len(self.suffix)] == "["


def _is_pattern(s: str) -> bool:
    return any(ch in s for ch in "*?[") and not s.endswith("]")


def _listed(info: LayerInfo, explicit: bool, key: str | None = None) -> Request:
    return Request(key or info.name, info.base, info.name[len(info.base) :], explicit)


def requests(
    requested: str | Sequence[str] | None,
    infos: Sequence[LayerInfo],
    kind: str | Sequence[str] | None = None,
) -> list[Request]:
    """Resolve names, suffixes, glob patterns and kinds against the layers a backend lists.

    Args:
        requested: a key, a glob pattern (``"layer*.conv2"``), or a list of
            them. ``None`` with ``kind=None`` means every layer that is not a
            container.
        infos: the layers the backend reported (:meth:`Backend.layers`).
        kind: keep only layers of this kind (or kinds), e.g. ``"conv"``.

    Returns:
        One :class:`Request` per thing asked for, in model order, without duplicates.

    Raises:
        LayerNotFoundError: a name or pattern matched nothing; the message lists
            the closest real names.
        ValueError: ``kind`` is not one of :data:`KINDS`.
        TypeError: a name is not a string.

    Example:
        >>> infos = [LayerInfo("conv1", "Conv2d", "conv"), LayerInfo("relu", "ReLU", "activation")]
        >>> [(r.layer, r.suffix) for r in requests(["relu#1", "conv*"], infos)]
        [('conv1', ''), ('relu', '#1')]
    """
    names = [i.name for i in infos]
    by_name = {i.name: i for i in infos}
    layers = {i.base for i in infos}
    order: dict[str, int] = {}
    for k, i in enumerate(infos):
        order.setdefault(i.name, k)
        order.setdefault(i.base, k)  # "split" addresses a layer listed as "split[0]", "split[1]"
    kinds = _check_kinds(kind)

    if requested is None:
        chosen = [i for i in infos if (i.kind in kinds if kinds else i.kind != "container")]
        if not chosen:
            raise LayerNotFoundError(
                f"No layer of kind {sorted(kinds)} in this model. "
                f"Kinds present: {sorted({i.kind for i in infos})}."
            )
        return [_listed(i, explicit=False) for i in chosen]

    if isinstance(requested, str):
        requested = [requested]
    if not isinstance(requested, (list, tuple)):
        raise TypeError(
            f"Layer names must be a string or a list of strings. Received: {requested!r} "
            f"({type(requested).__name__})."
        )
    found: list[Request] = []
    for item in requested:
        if not isinstance(item, str):
            raise TypeError(
                f"Layer names must be strings. Received: {item!r} ({type(item).__name__}). "
                "Pass the layer's name as listed by mv.layers(model)."
            )
        if item in by_name:  # an exact name always wins
            found.append(_listed(by_name[item], explicit=True))
            continue
        read = owner(item, layers)  # a layer name, then "#k" / "[i]"
        if read is not None:
            found.append(Request(item, read[0], read[1], explicit=True))
            continue
        if _is_pattern(item):
            hits = [by_name[n] for n in names if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise LayerNotFoundError(
                    f"Pattern {item!r} matched no layer."
                    + layer_hint(item.replace("*", "").replace("?", ""), names)
                )
            found.extend(_listed(i, explicit=False) for i in hits)
            continue
        raise LayerNotFoundError(f"No layer named {item!r}." + layer_hint(item, names))

    if kinds:
        found = [r for r in found if _kind_of(r, by_name, infos) in kinds]
    seen: set[str] = set()
    unique = [r for r in found if not (r.key in seen or seen.add(r.key))]
    return sorted(unique, key=lambda r: (order.get(r.key, order.get(r.layer, len(order))), r.key))


def resolve(
    requested: str | Sequence[str] | None,
    infos: Sequence[LayerInfo],
    kind: str | Sequence[str] | None = None,
) -> list[str]:
    """The keys :func:`requests` resolves ``requested`` to, in model order.

    Example:
        >>> infos = [LayerInfo("conv1", "Conv2d", "conv"), LayerInfo("fc", "Linear", "dense")]
        >>> resolve(["fc", "conv*"], infos)
        ['conv1', 'fc']
        >>> resolve(None, infos, kind="dense")
        ['fc']
    """
    return [r.key for r in requests(requested, infos, kind)]


def layers_of(asked: Iterable[Request]) -> list[str]:
    """The layer names to ask a backend for, each once, in order.

    Example:
        >>> layers_of([Request("relu", "relu"), Request("relu#1", "relu", "#1")])
        ['relu']
    """
    return list(dict.fromkeys(r.layer for r in asked))


def select(arrays: Mapping[str, T], asked: Sequence[Request]) -> dict[str, T]:
    """Keep the keys a backend returned that ``asked`` asks for, in the backend's order.

    Args:
        arrays: key -> value, every call and output of the layers of ``asked``.
        asked: what the caller asked for.

    Returns:
        The kept entries.

    Raises:
        LayerNotFoundError: an explicit request got nothing — its layer did not
            run, or ``#k`` / ``[i]`` names a call or output that did not happen;
            the message says what did.

    Example:
        >>> got = {"relu": 1, "relu#1": 2, "fc": 3}
        >>> select(got, [Request("relu#1", "relu", "#1"), Request("fc", "fc")])
        {'relu#1': 2, 'fc': 3}
    """
    layers = {r.layer for r in asked}
    by_layer: dict[str, list[Request]] = {}
    for r in asked:
        by_layer.setdefault(r.layer, []).append(r)
    kept: dict[str, T] = {}
    ran: dict[str, list[str]] = {}
    served: set[Request] = set()
    for key, value in arrays.items():
        read = owner(key, layers)
        if read is None:
            continue
        layer, suffix = read
        ran.setdefault(layer, []).append(key)
        for r in by_layer[layer]:
            if r.wants(suffix):
                kept[key] = value
                served.add(r)
    for r in asked:
        if r.explicit and r not in served:
            raise LayerNotFoundError(_missing(r, ran.get(r.layer, [])))
    return kept


def _missing(r: Request, ran: list[str]) -> str:
    if not ran:
        return (
            f"Layer {r.layer!r} did not run in this forward pass (0 calls), so {r.key!r} has "
            "no output.\nhint: a branch the input does not take, or a layer run without its own "
            "__call__ (module.forward(x) in PyTorch, layer.call(x) in Keras), cannot be captured."
        )
    calls = len({suffix_order(k[len(r.layer) :])[0] for k in ran})
    shown = ", ".join(ran[:6]) + (" …" if len(ran) > 6 else "")
    return (
        f"No output {r.key!r}: layer {r.layer!r} ran {calls} time{'s' if calls != 1 else ''} "
        f"in this forward pass.\nhint: it gave {shown}; pass one of those."
    )


def _check_kinds(kind: str | Sequence[str] | None) -> set[str]:
    if kind is None:
        return set()
    kinds = {kind} if isinstance(kind, str) else set(kind)
    bad = kinds - set(KINDS)
    if bad:
        raise ValueError(f"`kind` must be one of {list(KINDS)}. Received: kind={sorted(bad)}")
    return kinds


def _kind_of(r: Request, by_name: Mapping[str, LayerInfo], infos: Sequence[LayerInfo]) -> str:
    if r.key in by_name:
        return by_name[r.key].kind
    return next((i.kind for i in infos if i.base == r.layer), "other")
