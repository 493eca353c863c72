"""Choosing layers: exact names, glob patterns and layer kinds.

A request is resolved against the list of :class:`~multiviz.LayerInfo` a
backend reports, in the model's own order. Unknown names fail with the closest
real names in the message.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from multiviz.activations import LayerInfo
from multiviz.errors import LayerNotFoundError, layer_hint

__all__ = ["KINDS", "resolve", "split_suffix"]

KINDS = ("conv", "dense", "norm", "activation", "pool", "container", "other")

# "relu#1" (second call of a module) and "split[0]" (first output of a layer)
_SUFFIX = re.compile(r"^(?P<base>.+?)(?P<suffix>(#\d+)?(\[[^\]]+\])*)$")


def split_suffix(key: str) -> tuple[str, str]:
    """Split ``"block.relu#1"`` into ``("block.relu", "#1")``.

    Example:
        >>> split_suffix("block.relu#1")
        ('block.relu', '#1')
        >>> split_suffix("lstm[0]")
        ('lstm', '[0]')
    """
    m = _SUFFIX.match(key)
    assert m is not None
    return m.group("base"), m.group("suffix")


def _is_pattern(s: str) -> bool:
    return any(ch in s for ch in "*?[") and not s.endswith("]")


def resolve(
    requested: str | Sequence[str] | None,
    infos: Sequence[LayerInfo],
    kind: str | Sequence[str] | None = None,
) -> list[str]:
    """Resolve names, glob patterns and kinds to layer names, in model order.

    Args:
        requested: a layer name, a glob pattern (``"layer*.conv2"``), or a list
            of them. ``None`` with ``kind=None`` means every layer that is not a
            container.
        infos: the layers the backend reported.
        kind: keep only layers of this kind (or kinds), e.g. ``"conv"``.

    Returns:
        Layer names (with any ``#k`` / ``[i]`` suffix the user wrote kept), in
        model order, without duplicates.

    Raises:
        LayerNotFoundError: a name or pattern matched nothing; the message lists
            the closest real names.
        ValueError: ``kind`` is not one of :data:`KINDS`.

    Example:
        >>> infos = [LayerInfo("conv1", "Conv2d", "conv"), LayerInfo("fc", "Linear", "dense")]
        >>> resolve(["fc", "conv*"], infos)
        ['conv1', 'fc']
        >>> resolve(None, infos, kind="dense")
        ['fc']
    """
    names = [i.name for i in infos]
    order = {n: k for k, n in enumerate(names)}
    for k, n in enumerate(names):  # "split" addresses a layer listed as "split[0]", "split[1]"
        order.setdefault(split_suffix(n)[0], k)
    kinds = _check_kinds(kind)

    if requested is None:
        chosen = [i.name for i in infos if (i.kind in kinds if kinds else i.kind != "container")]
        if not chosen:
            raise LayerNotFoundError(
                f"No layer of kind {sorted(kinds)} in this model. "
                f"Kinds present: {sorted({i.kind for i in infos})}."
            )
        return chosen

    if isinstance(requested, str):
        requested = [requested]
    found: list[str] = []
    for item in requested:
        if not isinstance(item, str):
            raise TypeError(
                f"Layer names must be strings. Received: {item!r} ({type(item).__name__}). "
                "Pass the layer's name as listed by mv.layers(model)."
            )
        if _is_pattern(item):
            hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise LayerNotFoundError(
                    f"Pattern {item!r} matched no layer."
                    + layer_hint(item.replace("*", "").replace("?", ""), names)
                )
            found.extend(hits)
            continue
        base, _ = split_suffix(item)
        if item in order or base in order:
            found.append(item)
            continue
        raise LayerNotFoundError(f"No layer named {item!r}." + layer_hint(item, names))

    if kinds:
        found = [n for n in found if _kind_of(n, infos) in kinds]
    seen: set[str] = set()
    unique = [n for n in found if not (n in seen or seen.add(n))]
    return sorted(unique, key=lambda n: (order.get(split_suffix(n)[0], len(order)), n))


def _check_kinds(kind: str | Sequence[str] | None) -> set[str]:
    if kind is None:
        return set()
    kinds = {kind} if isinstance(kind, str) else set(kind)
    bad = kinds - set(KINDS)
    if bad:
        raise ValueError(f"`kind` must be one of {list(KINDS)}. Received: kind={sorted(bad)}")
    return kinds


def _kind_of(name: str, infos: Sequence[LayerInfo]) -> str:
    base = split_suffix(name)[0]
    return next((i.kind for i in infos if i.name in (name, base)), "other")
