"""Gradients of a Keras model, on whichever backend Keras runs.

Where each Keras backend's gradient code lives (decided with the layout, so
that the Keras-backends work lands in place):

* ``gradients.py`` (this module): the entry the adapter calls,
  :func:`compute_gradients`, dispatching on ``keras.backend.backend()``; the
  same signature and return value for every backend.
* ``gradients_tf.py``: TensorFlow — ``tf.GradientTape``, cached
  ``tf.function`` steps, guided ReLUs through ``tf.custom_gradient``; with
  ``gradients_tf_fast.py``, the one-sub-model path for top-level layers.
* ``gradients_jax.py``: JAX — one pure function of (weights, input) through
  ``keras.StatelessScope`` (what ``model.stateless_call`` runs on), differentiated
  with ``jax.value_and_grad``, jitted and cached per (model, layers).
* ``gradients_torch.py``: Keras on the torch backend — the model's layers are
  ``nn.Module``s: ``torch.autograd.grad`` on the recorded layer outputs.

What does not depend on the backend — running a graph node by node while
recording chosen tensors (``record_forward``), reading the logits behind a
final softmax or sigmoid of each output (``logits_of``, ``scored_outputs``),
picking one class score per sample (``pick_scores``) — is written with
``keras.ops`` and lives in ``gradients_tf.py`` (it imports no TensorFlow); the
guided ReLUs are found in one place, :func:`relu_patches`, each backend
supplying its own backward rule. The target is checked once for all of them,
by the contract (:func:`multiviz.backends.contract.class_indices` for a class
index, :func:`~multiviz.backends.contract.score_callable` for a callable, which
receives the whole output; :func:`~multiviz.backends.contract.main_output`
says which output a class index scores).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import keras

from multiviz.backends.guard import undoing
from multiviz.backends.keras.layers import Site
from multiviz.backends.keras.state import swap
from multiviz.errors import MultivizError

__all__ = ["SUPPORTED", "compute_gradients", "guided_rule", "relu_patches", "swap_relus"]

#: Keras backend -> the module computing gradients on it
SUPPORTED: dict[str, str] = {
    "tensorflow": "gradients_tf",
    "jax": "gradients_jax",
    "torch": "gradients_torch",
}


def compute_gradients(
    model: Any,
    x: Any,
    sites: Sequence[Site],
    target: Any,
    wrt_input: bool,
    guided: bool | str,
) -> tuple[tuple[Any, Any, Any, dict[str, Any], dict[str, Any], Any], str | None]:
    """Activations of ``sites`` and the gradients of the summed target score.

    Args:
        model: the Keras model (left as it was found).
        x: the input, a tensor of the active Keras backend.
        sites: the chosen sites (every call and output of the chosen layers).
        target: see :data:`multiviz.backends.contract.Target`.
        wrt_input: also return d(score)/d(input).
        guided: guided backpropagation through every ReLU.

    Returns:
        ``((logits, class index per sample or None, scores, key -> tensor,
        key -> gradient, input gradient or None), head)``: tensors of the
        backend, and ``"softmax"`` / ``"sigmoid"`` / ``None``, what the model
        applies to the scored logits (:attr:`GradientResult.head`).

    Raises:
        MultivizError: Keras runs on a backend not supported yet.
    """
    backend = keras.backend.backend()
    if backend not in SUPPORTED:
        raise MultivizError(
            f"Gradients need Keras on TensorFlow, JAX or torch; this process runs Keras on "
            f"{backend!r}.\nhint: set KERAS_BACKEND to one of {sorted(SUPPORTED)} before "
            "importing keras; capture() and forward() work on every backend."
        )
    module = importlib.import_module(f"{__package__}.{SUPPORTED[backend]}")
    # each backend's step takes the call's undo stack first: what it changes
    # (guided ReLUs, grad mode) is put back however the call ends
    return undoing(module.compute_gradients, model, x, sites, target, wrt_input, guided)


# --------------------------------------------------------------------------- guided ReLUs

#: ``guide(forward, lower, upper, rule)`` -> a function computing ``forward(x)``
#: whose backward pass follows ``rule`` (``"guided"`` or ``"deconvnet"``)
Guide = Callable[[Callable[[Any], Any], float, "float | None", str], Callable[[Any], Any]]


def guided_rule(guided: bool | str) -> str | None:
    """``None`` (plain gradients), ``"guided"`` or ``"deconvnet"`` for a ``guided`` argument."""
    if not guided:
        return None
    return "deconvnet" if guided == "deconvnet" else "guided"


def _activation_name(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def relu_patches(model: Any, guide: Guide, rule: str) -> Iterator[tuple[Any, str, Any]]:
    """``(layer, attribute, replacement)`` for every ReLU of ``model`` (nested too).

    Guided backpropagation (Springenberg et al. 2015) and the deconvnet
    (Zeiler & Fergus 2014) change the backward pass of every ReLU: the
    ``activation`` of layers whose activation is relu / relu6, and ``call``
    of ``ReLU`` layers (their threshold and max value kept). ``guide`` makes
    the replacement with the backend's own custom-gradient machinery.
    """
    for layer in model._flatten_layers(include_self=True):
        name = _activation_name(layer)
        if name in ("relu", "relu6") and "activation" in layer.__dict__:
            upper = 6.0 if name == "relu6" else None
            yield layer, "activation", guide(layer.activation, 0.0, upper, rule)
        elif isinstance(layer, keras.layers.ReLU):
            relu = guide(
                layer.call,
                float(getattr(layer, "threshold", 0.0) or 0.0),
                None if getattr(layer, "max_value", None) is None else float(layer.max_value),
                rule,
            )
            yield layer, "call", _call_of(relu)


def _call_of(relu: Callable[[Any], Any]) -> Callable[..., Any]:
    def call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        return relu(inputs)

    return call


def swap_relus(undo: ExitStack, model: Any, guide: Guide, rule: str | None) -> None:
    """Every ReLU of ``model`` follows ``rule``'s backward pass until ``undo`` closes.

    ``rule=None`` changes nothing. Every replacement is made (by the backend's
    ``guide``) before the first swap, so no layer is looked at while another is
    already swapped; each swap serves the calling thread only (see
    :func:`.state.swap`).
    """
    if rule is None:
        return
    for layer, name, value in list(relu_patches(model, guide, rule)):
        swap(undo, layer, name, value)
