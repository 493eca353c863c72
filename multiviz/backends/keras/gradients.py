"""Gradients of a Keras model, on whichever backend Keras runs.

Where each Keras backend's gradient code lives (decided with the layout, so
that the Keras-backends work lands in place):

* ``gradients.py`` (this module): the entry the adapter calls,
  :func:`compute_gradients`, dispatching on ``keras.backend.backend()``; the
  same signature and return value for every backend.
* ``gradients_tf.py``: TensorFlow — ``tf.GradientTape``, cached
  ``tf.function`` steps, guided ReLUs through ``tf.custom_gradient``; with
  ``gradients_tf_fast.py``, the one-sub-model path for top-level layers.
* ``gradients_jax.py``: JAX — ``jax.vjp`` over a stateless call, to come.
* ``gradients_torch.py``: Keras on the torch backend — ``torch.autograd.grad``,
  to come.

What does not depend on the backend — running a graph node by node while
recording chosen tensors (``record_forward``), reading the logits behind a
final softmax or sigmoid of each output (``logits_of``, ``scored_outputs``),
picking one class score per sample (``pick_scores``) — is written with
``keras.ops`` and lives in ``gradients_tf.py`` today; it moves here when the
second backend needs it. The target is checked once for all of them, by the
contract (:func:`multiviz.backends.contract.class_indices` for a class index,
:func:`~multiviz.backends.contract.score_callable` for a callable, which
receives the whole output; :func:`~multiviz.backends.contract.main_output`
says which output a class index scores).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import keras

from multiviz.backends.keras.layers import Site
from multiviz.errors import MultivizError

__all__ = ["SUPPORTED", "compute_gradients"]

#: Keras backend -> the module computing gradients on it
SUPPORTED: dict[str, str] = {"tensorflow": "gradients_tf"}


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
            "Gradients need Keras on the TensorFlow backend (tf.GradientTape). This "
            f"process runs Keras on {backend!r}. Set KERAS_BACKEND=tensorflow before "
            "importing keras; capture() and forward() work on every backend."
        )
    module = importlib.import_module(f"{__package__}.{SUPPORTED[backend]}")
    return module.compute_gradients(model, x, sites, target, wrt_input, guided)
