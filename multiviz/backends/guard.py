"""What keeps a model as it was found: one lock per model, and an undo stack per call.

Every backend verb runs through :func:`guarded`:

* **One call at a time per model.** The model's own re-entrant lock
  (:func:`model_lock`) is held for the whole call, so two threads using
  multiviz on one model take turns: one thread's hooks, modes and patches are
  never seen by the other's pass, and no restore interleaves with another
  call's changes (train-mode BatchNorm statistics cannot move).
* **Every change is undone, even under Ctrl-C.** A verb registers the undo of
  each change on the call's :class:`~contextlib.ExitStack` *before* making the
  change (``undo.callback(setattr, module, "training", True)``, then
  ``module.training = False``), or makes and registers it in one expression
  (``undo.enter_context(module.register_forward_hook(hook))``). An undo is a
  builtin or a framework's own function — never a line of multiviz — so a
  ``KeyboardInterrupt`` cannot land half-way through one, and the stack runs
  every undo even when one of them raises, then re-raises. The stack is closed
  twice, at the end of the ``with`` block and again in ``finally``: an
  interrupt landing on the first of those two lines cannot skip both.

Hooks and patches that the changes install check which thread runs them
(:func:`this_thread`): a forward pass the user runs in another thread while
multiviz holds the model is neither recorded nor stopped nor guided. What
cannot be per thread is a module's ``training`` flag and a parameter's
``requires_grad``: such a pass runs in eval mode (and, during a gradient call,
with parameters frozen) — do not train a model in one thread while multiviz
explains it in another.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

__all__ = ["guarded", "locked", "model_lock", "this_thread", "undoing"]

T = TypeVar("T")

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_SHARED = threading.RLock()  # for a model that cannot be weakly referenced or hashed

#: the id of the running thread (``threading.get_ident``)
this_thread = threading.get_ident


def model_lock(model: Any) -> threading.RLock:
    """The re-entrant lock of ``model``: held by multiviz for each backend call on it.

    A user who changes a model between multiviz calls from several threads can
    hold it too, so that no multiviz call sees the change half-done.

    Example:
        >>> class Model:
        ...     pass
        >>> m = Model()
        >>> model_lock(m) is model_lock(m)
        True
    """
    # one atomic setdefault: no lock of our own, which an interrupt could leave held
    try:
        return _LOCKS.setdefault(model, threading.RLock())
    except TypeError:
        return _SHARED


def guarded(model: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(undo, *args, **kwargs)`` holding ``model``'s lock; every undo on ``undo`` run after.

    ``fn`` registers the undo of each change it makes to the model on
    ``undo`` (an :class:`~contextlib.ExitStack`) before making the change. The
    undos run newest first however ``fn`` ends — returning, raising, or
    interrupted at any line — and then the lock is released.

    Example:
        >>> class Model:
        ...     mode = "train"
        >>> m = Model()
        >>> def run(undo, model):
        ...     undo.callback(setattr, model, "mode", model.mode)  # the undo first
        ...     model.mode = "eval"
        ...     return model.mode
        >>> guarded(m, run, m), m.mode
        ('eval', 'train')
    """
    undo = ExitStack()
    try:
        with undo:
            undo.enter_context(model_lock(model))
            return fn(undo, *args, **kwargs)
    finally:
        undo.close()  # a no-op, unless an interrupt landed on the line that ends the `with`


def undoing(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(undo, *args, **kwargs)``, every undo registered on ``undo`` run after; no lock.

    For changes made for a part of a call that already holds the model's lock
    (a layer patched while one nested layer runs), with the same guarantee as
    :func:`guarded`.

    Example:
        >>> seen = []
        >>> def work(undo):
        ...     undo.callback(seen.append, "undone")  # registered before the change
        ...     return "done"
        >>> undoing(work), seen
        ('done', ['undone'])
    """
    undo = ExitStack()
    try:
        with undo:
            return fn(undo, *args, **kwargs)
    finally:
        undo.close()


def locked(verb: Callable[..., T]) -> Callable[..., T]:
    """Decorate a backend method ``verb(self, model, ...)`` to run holding ``model``'s lock.

    For a verb whose changes to the model are each made and undone inside it
    (with :func:`undoing`); a verb that registers changes for the whole call
    uses :func:`guarded` itself.

    Example:
        >>> class Backend:
        ...     @locked
        ...     def forward(self, model, x):
        ...         return model_lock(model)._is_owned(), x
        >>> class Model:
        ...     pass
        >>> Backend().forward(Model(), 3)
        (True, 3)
    """

    @functools.wraps(verb)
    def call(self: Any, model: Any, *args: Any, **kwargs: Any) -> T:
        return guarded(model, lambda undo: verb(self, model, *args, **kwargs))

    return call
