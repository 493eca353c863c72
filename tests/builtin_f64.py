"""The built-in CNN in float64 NumPy: an independent reference, and where float32 cannot decide.

Cross-framework tests compare two float32 computations of the same network.
Where the exact answer is a smooth function of the input they agree to float32
rounding; where it is not — a ReLU whose input is within rounding of 0, a 2x2
max-pool window whose two largest values are within rounding of each other —
the *gradient* jumps (it flows or not; it goes to one pixel or its neighbour),
and two correct float32 computations may give different gradients there.

The shapes data set is full of such places: its images are flat colour
regions, and the trained conv1 has edge detectors whose kernels sum to ~0 per
input channel with biases of ~1e-7 (channel 11: bias -1.5e-7, per-channel
kernel sums < 5e-8). On a flat region such a channel's pre-activation is
``bias + colour * sum(kernel)``, i.e. structurally 0 up to rounding, at the
ReLU's kink (float64: -1.24e-7; PyTorch rounds it below 0, TensorFlow to
+1.5e-7, so a max-pool window of zeros becomes a window with one positive
value and the gradient is routed to another pixel).

:func:`ambiguous` counts the places where float32 rounding can change the
gradient's path, from a float64 forward pass; :func:`textured_shapes` makes
inputs where there are none (tests assert it, so the inputs stay well posed
if the data or the weights change). Every function here is NumPy only, so any
test session can use it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import multiviz as mv
from multiviz.sources.builtin import builtin_weights

__all__ = ["ambiguous", "forward", "textured_shapes"]

CONVS = ("conv1", "conv2", "conv3")

#: A site is ambiguous when its margin (|pre-activation|, or the gap between a
#: pool window's two largest values) is at most TAU times the sum of the
#: magnitudes that were added up to make it (sum |w| |x| + |b|): a multiple of
#: float32's rounding of such a sum (about 6e-8 per term, 27 to 288 terms):
#: 3x the largest difference seen between two frameworks (1.1e-6 of that sum,
#: conv3, PyTorch vs TensorFlow, AVX2 CPU without oneDNN).
TAU = 3e-6


def _weights() -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in builtin_weights().items()}


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3, stride 1, one pixel of zero padding; NCHW, OIHW."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = sliding_window_view(padded, (3, 3), axis=(2, 3))  # (N, C, H, W, 3, 3)
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[None, :, None, None]


def _pool_windows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H // 2, W // 2, 4): the 2x2 windows, row-major inside."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return x.reshape(n, c, h // 2, w // 2, 4)


def forward(x: np.ndarray, with_sums: bool = False) -> dict[str, np.ndarray]:
    """Every layer of the built-in CNN (shipped weights) in float64.

    Args:
        x: ``(N, 3, H, W)`` images, channels first.
        with_sums: also return ``"|conv1|"``… : the sum of magnitudes added
            up to make each conv output (sum |w| |x| + |b|).

    Returns:
        layer name -> float64 array, canonical layout (as ``mv.capture``).
    """
    p = _weights()
    out: dict[str, np.ndarray] = {}
    h = np.asarray(x, np.float64)
    for i, name in enumerate(CONVS, 1):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]
        out[name] = _conv(h, w, b)
        if with_sums:
            out[f"|{name}|"] = _conv(np.abs(h), np.abs(w), np.abs(b))
        h = out[f"relu{i}"] = np.maximum(out[name], 0.0)
        if i < 3:
            h = out[f"pool{i}"] = _pool_windows(h).max(axis=-1)
    out["gap"] = h.mean(axis=(2, 3))
    out["fc"] = out["gap"] @ p["fc.weight"].T + p["fc.bias"]
    return out


def ambiguous(x: np.ndarray, tau: float = TAU) -> dict[str, int]:
    """Where float32 rounding may change the gradient's path, per layer.

    * ``pool1`` / ``pool2``: 2x2 windows whose largest pre-activation is
      within the margin of 0 (the ReLU kink: the gradient flows or not) or of
      the second largest (the gradient goes to one pixel or the other).
      Windows whose values are all clearly negative pass no gradient either
      way: not counted.
    * ``relu3``: pre-activations within the margin of 0 (no pooling follows:
      every position gets a gradient).

    Args:
        x: ``(N, 3, H, W)`` images, channels first.
        tau: the margin, relative to the sum of magnitudes (see :data:`TAU`).

    Returns:
        ``{"pool1": count, "pool2": count, "relu3": count}``; all zero: every
        gradient of the network at these inputs is decided by float32.
    """
    acts = forward(x, with_sums=True)
    counts = {}
    for i in (1, 2):
        v = _pool_windows(acts[f"conv{i}"])
        margin = tau * _pool_windows(acts[f"|conv{i}|"]).max(axis=-1)
        ordered = np.sort(v, axis=-1)
        top, second = ordered[..., -1], ordered[..., -2]
        kink = np.abs(top) <= margin
        tie = (top > margin) & (top - second <= margin)
        counts[f"pool{i}"] = int(np.sum(kink | tie))
    counts["relu3"] = int(np.sum(np.abs(acts["conv3"]) <= tau * acts["|conv3|"]))
    return counts


def textured_shapes(
    n: int, size: tuple[int, int], seed: int, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Shape images with texture: no flat region puts a channel on its kink.

    The shapes data set's images, squeezed to ``[0.1, 0.9]`` plus uniform noise
    in ``[-noise, noise]`` drawn from ``seed`` (so still in ``[0, 1]``).

    Returns:
        ``(images (n, 3, H, W) float32, labels (n,) int64)``.
    """
    data = mv.shapes_dataset(n, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    texture = rng.uniform(-noise, noise, data.images.shape)
    images = (0.1 + 0.8 * data.images + texture).astype(np.float32)
    return images, np.asarray(data.labels, np.int64)
