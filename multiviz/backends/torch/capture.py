"""Capturing chosen modules' outputs with forward hooks, stopping as early as possible.

How early stop works: a forward pass only needs to go as far as the last call
of the last chosen module. How many times a module is called in one pass is
only known by running the pass, so the **first** capture of a given
(model, layers, input shape) runs the whole forward pass and remembers each
chosen module's call count. Later captures of the same combination raise a
private exception from the hook as soon as every chosen module has fired that
many times, and catch it: capturing ``conv1`` of a ResNet-50 then costs about
one convolution, not the network. Because a module's calls are counted, a
module reused in a pass (``"relu"``, ``"relu#1"``, ...) never loses a call.

The remembered counts belong to one *configuration* of the model: the key also
holds a fingerprint of every module's plain attributes (flags, numbers,
strings, small containers of them; other objects by identity) of every module
that is not one of torch.nn's own, and the children of its containers.
Switching on an attribute that adds calls (``model.extra = True``) changes the key, so the
next capture runs the whole pass again and counts anew. What no key can see
is control flow that depends on the input's *values* (``if x.mean() > 0``
deciding whether a module runs again): there the remembered counts are those
of the first input of that shape (docs/pitfalls.md, "Calls that did not
happen").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.cache import cached
from multiviz.backends.guard import this_thread
from multiviz.backends.torch.inputs import ModelInput, entry_check, input_shapes, run_model
from multiviz.backends.torch.state import eval_mode

__all__ = [
    "batch_first",
    "capture_outputs",
    "flatten_output",
    "output_shapes",
    "single_output",
    "snapshot",
]

Hook = Callable[[nn.Module, tuple[Any, ...], Any], Any]


class _StopForward(BaseException):
    """Raised from a hook once every chosen module has made all its calls.

    A ``BaseException`` so that a model's own ``except Exception`` cannot
    swallow it. It carries the recorder that raised it, and only that
    recorder's capture catches it; hooks raise it only in the thread that
    registered them, so a forward pass of another thread is never stopped.
    """


def flatten_output(
    key: str, out: Any, module: Any = None, _at: tuple[int, ...] = ()
) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors in a module's output, keyed ``key``, ``key[0]``, ``key[name]``...

    Non-tensor entries are skipped; nesting gives ``key[1][0]``. An
    ``nn.MultiheadAttention`` (``module``) called with ``need_weights=False``
    returns ``(output, None)``: one output, ``key``, as Keras names its
    ``MultiHeadAttention``'s. A recurrent module's outputs come with the
    batch axis first (:func:`batch_first`), as the layer is: a sequence
    ``(N, T, F)``, states ``(N, layers * directions, H)``.

    Example:
        >>> [k for k, _ in flatten_output("lstm", (torch.ones(1), (torch.ones(1), None)))]
        ['lstm[0]', 'lstm[1][0]']
        >>> mha = torch.nn.MultiheadAttention(2, 1)
        >>> [k for k, _ in flatten_output("attn", (torch.ones(1), None), mha)]
        ['attn']
    """
    if isinstance(out, torch.Tensor):
        yield key, batch_first(module, _at, out)
    elif single_output(out, module):
        yield key, out[0]
    elif isinstance(out, (tuple, list)):
        inner = module if isinstance(module, nn.RNNBase) else None
        for i, item in enumerate(out):
            yield from flatten_output(f"{key}[{i}]", item, inner, (*_at, i))
    elif isinstance(out, Mapping):
        for name, item in out.items():
            yield from flatten_output(f"{key}[{name}]", item)


def batch_first(module: Any, position: tuple[int, ...], t: torch.Tensor) -> torch.Tensor:
    """A recurrent module's output or state, batch axis first, as the layer *is*.

    ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` return ``(output, h_n)`` (an LSTM:
    ``(output, (h_n, c_n))``): the output is ``(T, N, F)`` unless
    ``batch_first=True``, and the states are ``(layers * directions, N, H)``
    whatever ``batch_first`` says. multiviz returns a sequence as ``(N, T, F)``
    and states as ``(N, layers * directions, H)``, the layouts Keras's
    recurrent layers have too (DESIGN.md, "Layouts by what a layer is").
    Unbatched calls (2-D) are left alone; anything else passes through.

    Example:
        >>> gru = torch.nn.GRU(3, 4, num_layers=2)
        >>> out, h = gru(torch.zeros(5, 2, 3))                  # T=5, N=2
        >>> batch_first(gru, (0,), out).shape, batch_first(gru, (1,), h).shape
        (torch.Size([2, 5, 4]), torch.Size([2, 2, 4]))
    """
    if not isinstance(module, nn.RNNBase) or t.ndim != 3 or not position:
        return t
    if position == (0,):
        return t if module.batch_first else t.transpose(0, 1).contiguous()
    return t.transpose(0, 1).contiguous() if position[0] == 1 else t


def single_output(out: Any, module: Any) -> bool:
    """True for an ``nn.MultiheadAttention``'s ``(output, None)``: one output."""
    return (
        isinstance(module, nn.MultiheadAttention)
        and isinstance(out, tuple)
        and len(out) > 1
        and isinstance(out[0], torch.Tensor)
        and all(item is None for item in out[1:])
    )


def snapshot(t: torch.Tensor) -> torch.Tensor | None:
    """A float32 copy of ``t`` on its own device, or ``None`` for a tensor we cannot show.

    Always a copy: ``.detach().cpu()`` of a CPU tensor is a view, which a later
    in-place op (``ReLU(inplace=True)``) would rewrite. The copy stays on the
    device until the pass ends, so a GPU pass is not synchronised per layer.
    """
    if t.is_complex() or t.layout != torch.strided:
        return None
    return t.detach().to(dtype=torch.float32, copy=True)


class _Recorder:
    """Forward hooks that keep chosen modules' outputs and count their calls."""

    def __init__(self, names: Sequence[str], expected: dict[str, int] | None) -> None:
        self.thread = this_thread()  # passes of other threads are not recorded
        self.calls = dict.fromkeys(names, 0)
        self.outputs: dict[str, torch.Tensor] = {}
        self.expected = expected
        self.pending = {n for n, c in (expected or {}).items() if c > 0}

    def hook(self, name: str) -> Hook:
        def record(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if this_thread() != self.thread:
                return
            k = self.calls[name]
            self.calls[name] = k + 1
            for key, t in flatten_output(name if k == 0 else f"{name}#{k}", out, module):
                copy = snapshot(t)
                if copy is not None:
                    self.outputs[key] = copy
            if self.expected is not None and name in self.pending:
                if k + 1 >= self.expected[name]:
                    self.pending.discard(name)
                    if not self.pending:
                        raise _StopForward(self)

        return record

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.ascontiguousarray(t.cpu().numpy()) for key, t in self.outputs.items()}


# attributes every nn.Module has that do not steer its forward pass (hooks, registries)
_INTERNALS = frozenset(
    {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}
)
_PLAIN = (bool, int, float, str, bytes, type(None))
_TORCH_NN = "torch.nn."


def _summary(value: Any) -> Any:
    """A hashable stand-in for an attribute's value: itself when plain, else identity."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list, set, frozenset)) and len(value) <= 32:
        if all(isinstance(v, _PLAIN) for v in value):
            return (
                type(value).__name__,
                tuple(sorted(value, key=repr))
                if isinstance(value, (set, frozenset))
                else tuple(value),
            )
    if isinstance(value, dict) and len(value) <= 32:
        if all(isinstance(v, _PLAIN) and isinstance(k, _PLAIN) for k, v in value.items()):
            return ("dict", tuple(value.items()))
    size = len(value) if isinstance(value, (tuple, list, set, frozenset, dict)) else -1
    return (type(value).__name__, id(value), size)


def configuration(model: nn.Module) -> int:
    """A fingerprint of every module's plain attributes: what may steer ``forward``.

    Of ``torch.nn``'s own modules only the containers count, by their children
    (a ``Sequential`` that grows a child calls one more module); the others'
    ``forward`` calls no module depending on an attribute. Two passes of the
    same input shape call the same modules the same number of times unless the
    control flow reads something else: a flag or number on a module of the
    user's (``model.extra = True``) is in the fingerprint; values of the input
    are not (see the module docstring).

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.ReLU())
        ...         self.extra = False
        >>> net = Net()
        >>> before = configuration(net)
        >>> net.extra = True
        >>> configuration(net) == before
        False
    """
    items = []
    for module in model.modules():
        if type(module).__module__.startswith(_TORCH_NN):
            if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                items.append((id(module), tuple(map(id, module._modules.values()))))
            continue  # torch's own layers: their calls do not depend on their attributes
        for key, value in vars(module).items():
            if key in _INTERNALS or "hook" in key:
                continue
            items.append((id(module), key, _summary(value)))
    return hash(tuple(items))


class _CallCounts(dict[str, int]):
    """``{layer name: calls per forward pass}``; empty until a whole pass counted them."""


def _cache_key(
    model: nn.Module, chosen: Sequence[tuple[str, nn.Module]], x: ModelInput
) -> tuple[Any, ...]:
    return (
        "call_counts",
        tuple(n for n, _ in chosen),
        tuple(id(m) for _, m in chosen),
        input_shapes(x),
        configuration(model),
    )


def capture_outputs(
    undo: ExitStack,
    model: nn.Module,
    x: ModelInput,
    chosen: Sequence[tuple[str, nn.Module]],
    tracker: Any = None,
) -> dict[str, np.ndarray]:
    """One inference pass of ``x``; the chosen modules' outputs as float32 NumPy copies.

    The model runs under ``torch.no_grad()`` with every module in eval mode;
    hooks and modes are restored when ``undo`` closes, however the pass ends
    (run it through :func:`multiviz.backends.guard.guarded`). See the module
    docstring for when the pass stops early.

    Args:
        undo: the call's undo stack.
        model: the module.
        x: the input, already on the model's device and dtype (several inputs
            as :class:`~multiviz.backends.contract.Inputs`).
        chosen: (name, module) pairs to record.
        tracker: a :class:`~multiviz.backends.torch.tokens.LayoutTracker` to
            ride along the pass (its ``complete`` says whether the pass ran to
            the end), or ``None``.

    Returns:
        Output key -> array, in the order the modules ran.
    """
    # kept in the model's bounded cache (multiviz.backends.cache) with everything compiled
    known = cached(model, _cache_key(model, chosen, x), _CallCounts)
    recorder = _Recorder([n for n, _ in chosen], dict(known) or None)
    eval_mode(model, undo)
    undo.enter_context(torch.no_grad())
    entry_check(model, x, undo)
    for name, module in chosen:
        undo.enter_context(module.register_forward_hook(recorder.hook(name)))
    if tracker is not None:  # after the recorder: a stop leaves the tracker's hooks unrun
        tracker.enter(undo)
    finished = False
    try:
        run_model(model, x)
        finished = True
    except _StopForward as stop:
        if stop.args[0] is not recorder:  # another capture's: not ours to catch
            raise
    if tracker is not None:
        tracker.complete = finished
    if finished and recorder.expected is None:
        known.update(recorder.calls)
    return recorder.arrays()


def output_shapes(
    undo: ExitStack, model: nn.Module, x: ModelInput
) -> dict[str, tuple[int | None, ...]]:
    """Each module's output shape on its first call, batch axis as ``None``.

    Modules whose output is not one tensor get no entry. Hooks and modes are
    restored when ``undo`` closes (see :func:`capture_outputs`).
    """
    shapes: dict[str, tuple[int | None, ...]] = {}
    owner = this_thread()

    def hook(name: str) -> Hook:
        def record(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if this_thread() != owner:
                return
            if isinstance(out, torch.Tensor) and out.ndim and name not in shapes:
                shapes[name] = (None, *out.shape[1:])

        return record

    eval_mode(model, undo)
    undo.enter_context(torch.no_grad())
    entry_check(model, x, undo)
    for name, module in model.named_modules():
        if name:
            undo.enter_context(module.register_forward_hook(hook(name)))
    run_model(model, x)
    return shapes
