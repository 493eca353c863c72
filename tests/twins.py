"""Twin models for the "no silent wrong answers" suites: one model, built in PyTorch and in Keras.

Each builder takes a framework name (``"torch"`` or ``"keras"``) and NumPy
weights given once in PyTorch's layout (conv OIHW, dense ``(out, in)``), so
the two twins compute the same function; next to it, a NumPy function
computes what the model's layers must output, by hand. Inputs are canonical
``(N, C, H, W)``; ``native(name, x)`` puts them in the framework's layout.
A builder imports its framework when called, so importing this module
imports none.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "calls_expected",
    "calls_net",
    "calls_weights",
    "native",
]


def native(name: str, x: np.ndarray) -> np.ndarray:
    """A canonical ``(N, C, H, W)`` batch in the framework's own layout."""
    if name == "keras" and np.ndim(x) == 4:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return np.ascontiguousarray(x)


def _conv1x1(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]


def _keras_conv(w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    return [np.transpose(w, (2, 3, 1, 0)), b]


# --------------------------------------------------------------------------- calls


def calls_weights(seed: int = 3) -> dict[str, np.ndarray]:
    """stem 1x1 conv (3 -> 4), enc 1x1 conv (4 -> 4), branch (never run), head dense (4 -> 2)."""
    rng = np.random.default_rng(seed)
    w = {
        "stem": rng.standard_normal((4, 3, 1, 1)),
        "enc": rng.standard_normal((4, 4, 1, 1)) * 0.5,
        "branch": rng.standard_normal((4, 4, 1, 1)),
        "head": rng.standard_normal((2, 4)),
    }
    w.update({f"{k}_b": rng.standard_normal(v.shape[0]) * 0.1 for k, v in list(w.items())})
    return {k: v.astype(np.float32) for k, v in w.items()}


def calls_expected(x: np.ndarray, w: dict[str, np.ndarray], calls: int) -> dict[str, np.ndarray]:
    """stem, then ``enc`` applied ``calls`` times (keys ``enc``, ``enc#1``…), gap, head; NumPy."""
    h = _conv1x1(x, w["stem"], w["stem_b"])
    out = {"stem": h}
    for k in range(calls):
        h = _conv1x1(h, w["enc"], w["enc_b"])
        out["enc" if k == 0 else f"enc#{k}"] = h
    out["head"] = h.mean(axis=(2, 3)) @ w["head"].T + w["head_b"]
    return out


def calls_net(name: str, w: dict[str, np.ndarray]) -> Any:
    """A subclassed model calling ``enc`` twice, three times once ``model.extra = True``.

    ``branch`` is a layer of the model that its forward pass never runs.
    """
    return _torch_calls_net(w) if name == "torch" else _keras_calls_net(w)


def _torch_calls_net(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    class CallsNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.enc = nn.Conv2d(4, 4, 1)
            self.branch = nn.Conv2d(4, 4, 1)
            self.head = nn.Linear(4, 2)
            self.extra = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.enc(self.enc(self.stem(x)))
            if self.extra:
                h = self.enc(h)
            return self.head(h.mean(dim=(2, 3)))

    net = CallsNet().eval()
    with torch.no_grad():
        for key in ("stem", "enc", "branch", "head"):
            getattr(net, key).weight.copy_(torch.as_tensor(w[key]))
            getattr(net, key).bias.copy_(torch.as_tensor(w[f"{key}_b"]))
    return net


@functools.cache
def _keras_calls_class() -> type:
    import keras

    class CallsNet(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="calls_net")
            self.stem = keras.layers.Conv2D(4, 1, name="stem")
            self.enc = keras.layers.Conv2D(4, 1, name="enc")
            self.branch = keras.layers.Conv2D(4, 1, name="branch")
            self.head = keras.layers.Dense(2, name="head")
            self.extra = False

        def call(self, x: Any) -> Any:
            h = self.enc(self.enc(self.stem(x)))
            if self.extra:
                h = self.enc(h)
            return self.head(keras.ops.mean(h, axis=(1, 2)))

    return CallsNet


def _keras_calls_net(w: dict[str, np.ndarray]) -> Any:
    net = _keras_calls_class()()
    net(np.zeros((1, 5, 6, 3), np.float32))
    net.branch.build((None, 5, 6, 4))
    for key in ("stem", "enc", "branch"):
        getattr(net, key).set_weights(_keras_conv(w[key], w[f"{key}_b"]))
    net.head.set_weights([w["head"].T, w["head_b"]])
    return net
