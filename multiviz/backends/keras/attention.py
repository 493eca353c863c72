"""Self-attention layers of a Keras model: their weights and where their input comes from.

The Keras counterpart of :mod:`multiviz.backends.torch.attention`, for
attention rollout: ``keras.layers.MultiHeadAttention`` layers are the
attention layers; their ``query``/``key``/``value``/``attention_output``
kernels are read into the canonical
:class:`~multiviz.core.attention.AttentionWeights`, and the layer feeding
their query is found in the Functional graph, so rollout captures that
layer's output as the attention's input (see
:meth:`multiviz.backends.keras.adapter.KerasBackend.attention_io`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from multiviz.backends.keras.inputs import to_numpy
from multiviz.backends.keras.layers import graph_of
from multiviz.core.attention import AttentionWeights
from multiviz.errors import UnsupportedAttentionError

__all__ = ["attention_layers", "read_attention"]


def read_attention(layer: Any) -> AttentionWeights:
    """The canonical weights of a ``keras.layers.MultiHeadAttention`` (self-attention).

    Raises:
        UnsupportedAttentionError: a gated or sliding-window attention, or custom attention axes.
    """
    name = f"Attention layer {layer.name!r} (MultiHeadAttention)"
    if getattr(layer, "_use_gate", False) or getattr(layer, "_sliding_window", None):
        raise UnsupportedAttentionError(
            f"{name} is gated or uses a sliding window; attention rollout supports plain "
            "softmax(q k^T / sqrt(d)) v attention."
        )
    axes = getattr(layer, "_attention_axes", None)
    if axes is not None and tuple(axes) not in ((1,), (-2,)):
        raise UnsupportedAttentionError(
            f"{name} attends over axes {axes}; attention rollout needs attention over tokens."
        )

    def dense(sub: Any) -> tuple[np.ndarray, np.ndarray | None]:
        w = [np.asarray(to_numpy(v), np.float64) for v in sub.weights]
        return w[0], (w[1] if len(w) > 1 else None)

    wq, bq = dense(layer.query_dense)
    wk, bk = dense(layer.key_dense)
    wv, bv = dense(layer.value_dense)
    wo, _ = dense(layer.output_dense)  # (heads, head_dim, C_out)
    return AttentionWeights(wq, wk, wv, wo, bq, bk, bv, scale=float(layer._inverse_sqrt_key_dim))


def attention_layers(model: Any) -> list[tuple[str, Any, str]]:
    """``(name, layer, query input's layer name)`` of each MultiHeadAttention, in graph order.

    Only top-level Functional graphs are searched (nested models: not yet).
    """
    graph = graph_of(model)
    found = []
    layers = graph.layers if graph is not None else getattr(model, "layers", [])
    for layer in layers:
        if not isinstance(layer, keras.layers.MultiHeadAttention):
            continue
        node = layer._inbound_nodes[0]
        query = node.arguments.args[0] if node.arguments.args else node.arguments.kwargs["query"]
        source = query._keras_history[0]
        found.append((layer.name, layer, source.name))
    return found
