"""Token layers in Keras models: the patch grid.

The Keras counterpart of :mod:`multiviz.backends.torch.tokens`. The patch
grid is read from a layer that says it — one with ``grid`` and
``num_prefix_tokens`` attributes (multiviz's built-in ViT's
``TokenEmbedding``; any user layer may follow the same convention) — never
guessed from a token count. Which outputs are token layers is decided in
:func:`multiviz.backends.keras.layers.list_sites` from this grid.
"""

from __future__ import annotations

from typing import Any

import keras

from multiviz.core.tokens import TokenGrid

__all__ = ["model_token_grid"]


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out += _all_layers(layer)
    return out


def model_token_grid(model: Any) -> TokenGrid | None:
    """The patch grid a layer of ``model`` declares (``grid``, ``num_prefix_tokens``), or None."""
    for layer in _all_layers(model):
        grid = getattr(layer, "grid", None)
        prefix = getattr(layer, "num_prefix_tokens", None)
        if grid is not None and isinstance(prefix, int):
            registers = int(getattr(layer, "registers", 0) or 0)
            return TokenGrid((int(grid[0]), int(grid[1])), prefix, registers)
    return None
