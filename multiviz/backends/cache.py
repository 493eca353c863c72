"""One bounded least-recently-used cache per model, for everything a backend compiles.

A backend that builds something costly for a model — a Keras sub-model over a
set of layers, a ``tf.function`` step, a JAX jit, PyTorch's per-layer-set
call counts — keeps it here, and nowhere else. Each model gets its own cache
of at most :func:`cache_size` entries (16 unless set): when a new entry would
exceed it, the entry used least recently is dropped, so capturing 500
different layer sets costs the memory of 16, not of 500. The cache holds its
models weakly: a model that is deleted frees its entries.

:func:`clear_cache` (public as ``mv.clear_cache``) frees the entries of one
model, or of every model.

How a backend uses it::

    runner = cached(model, ("capture", layer_keys), lambda: Runner(model, sites),
                    fresh=lambda r: r.fresh(model))

An entry must not hold a strong reference to its model (the cache would keep
the model alive): hold a :func:`weakref.ref` where a compiled function needs it.

The cache takes no lock of its own (a ``KeyboardInterrupt`` landing inside a
``with lock:`` block could leave the lock held for good): each step is one
atomic operation on a dictionary, and the backends call it while holding the
model's lock (:mod:`multiviz.backends.guard`), so one model's entries are
never built twice at once. An interrupt can at worst leave an entry out.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["cache_size", "cached", "clear_cache", "entries", "lookup", "set_cache_size", "store"]

T = TypeVar("T")

#: entries per model unless :func:`set_cache_size` says otherwise
DEFAULT_SIZE = 16

_CACHES: weakref.WeakKeyDictionary[Any, OrderedDict[Hashable, Any]] = weakref.WeakKeyDictionary()
_SIZE = [DEFAULT_SIZE]
_ABSENT = object()


def cache_size() -> int:
    """How many compiled entries each model keeps at most.

    Example:
        >>> cache_size() >= 1
        True
    """
    return _SIZE[0]


def set_cache_size(size: int) -> int:
    """Keep at most ``size`` compiled entries per model; return the previous size.

    Caches already larger drop their least recently used entries at once.

    Args:
        size: a whole number >= 1.

    Raises:
        ValueError: ``size`` is not a whole number >= 1.

    Example:
        >>> old = set_cache_size(4)
        >>> cache_size()
        4
        >>> _ = set_cache_size(old)
        >>> set_cache_size(0)
        Traceback (most recent call last):
        ...
        ValueError: `size` must be a whole number >= 1. Received: size=0
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"`size` must be a whole number >= 1. Received: size={size!r}")
    old, _SIZE[0] = _SIZE[0], size
    for per_model in list(_CACHES.values()):
        _trim(per_model)
    return old


def cached(
    model: Any,
    key: Hashable,
    build: Callable[[], T],
    fresh: Callable[[T], bool] | None = None,
) -> T:
    """The entry ``key`` of ``model``'s cache, built with ``build()`` when absent or stale.

    Args:
        model: the model the entry belongs to (held weakly).
        key: what the entry is, e.g. ``("capture", ("conv1", "fc"))``; the
            first item names the kind of entry by convention.
        build: makes the entry; called outside the cache's lock.
        fresh: ``fresh(entry)`` is False when the entry no longer fits the
            model (a Sequential rebuilt since); it is then built again.

    Returns:
        The entry, now the most recently used one of ``model``.

    Example:
        >>> class Model:
        ...     pass
        >>> m = Model()
        >>> cached(m, ("demo", 1), lambda: [1])
        [1]
        >>> cached(m, ("demo", 1), lambda: [2])  # cached: not built again
        [1]
    """
    entry = lookup(model, key, _ABSENT)
    if entry is not _ABSENT and (fresh is None or fresh(entry)):
        return entry  # type: ignore[no-any-return]
    entry = build()
    store(model, key, entry)
    return entry


def lookup(model: Any, key: Hashable, default: Any = None) -> Any:
    """The entry ``key`` of ``model``'s cache, now the most recently used; ``default`` if absent.

    Example:
        >>> class Model:
        ...     pass
        >>> m = Model()
        >>> store(m, ("demo", 3), "three")
        >>> lookup(m, ("demo", 3)), lookup(m, ("demo", 4))
        ('three', None)
    """
    try:
        per_model = _CACHES.get(model)
    except TypeError:
        return default
    entry = _ABSENT if per_model is None else per_model.get(key, _ABSENT)
    if entry is _ABSENT:
        return default
    _touch(per_model, key)  # type: ignore[arg-type]
    return entry


def store(model: Any, key: Hashable, entry: Any) -> None:
    """Keep ``entry`` as ``key`` of ``model``'s cache (the most recently used; the oldest may go)."""
    try:
        per_model = _CACHES.setdefault(model, OrderedDict())
    except TypeError:  # an unhashable or not weakly referenceable model: no cache
        return
    per_model[key] = entry
    _touch(per_model, key)
    _trim(per_model)


def entries(model: Any, kind: str | None = None) -> dict[Hashable, Any]:
    """The entries ``model`` holds now (of one ``kind``: the key's first item), oldest first.

    For tests and for seeing what a model keeps.

    Example:
        >>> class Model:
        ...     pass
        >>> m = Model()
        >>> _ = cached(m, ("a", 1), lambda: "x"), cached(m, ("b", 2), lambda: "y")
        >>> entries(m, "b")
        {('b', 2): 'y'}
    """
    try:
        per_model = dict(_CACHES.get(model) or {})
    except TypeError:
        return {}
    if kind is None:
        return per_model
    return {k: v for k, v in per_model.items() if isinstance(k, tuple) and k[:1] == (kind,)}


def clear_cache(model: Any | None = None) -> None:
    """Free what multiviz compiled and cached for ``model``, or for every model.

    multiviz keeps, per model, at most :func:`cache_size` compiled runners (Keras
    sub-models, ``tf.function`` steps, JAX jits; PyTorch's per-layer-set call
    counts), least recently used dropped first; this frees them now. The next
    call on the model builds what it needs again.

    Args:
        model: a model, or ``None`` for every model.

    Example:
        >>> import multiviz as mv
        >>> mv.clear_cache()
    """
    if model is None:
        _CACHES.clear()
        return
    from multiviz.backends import get_backend

    get_backend(model)  # refuses what is not a model, naming `model`
    try:
        _CACHES.pop(model, None)
    except TypeError:  # never cached
        pass


def _touch(per_model: OrderedDict[Hashable, Any], key: Hashable) -> None:
    try:
        per_model.move_to_end(key)  # now the most recently used
    except KeyError:  # dropped meanwhile by another model's call trimming: nothing to do
        pass


def _trim(per_model: OrderedDict[Hashable, Any]) -> None:
    while len(per_model) > _SIZE[0]:
        try:
            per_model.popitem(last=False)  # the least recently used
        except KeyError:
            return
