"""Deletion and insertion curves (Petsiuk et al. 2018, RISE): NumPy only.

A map claims that some pixels matter more than others. The *deletion* test
removes pixels in the map's order, most relevant first, and scores the model
after each step: a faithful map makes the score fall fast, so a small area
under the curve is good. The *insertion* test starts from an image with the
evidence removed and puts pixels back in the same order: a faithful map makes
the score rise fast, so a large area is good.

    V. Petsiuk, A. Das, K. Saenko. "RISE: Randomized Input Sampling for
    Explanation of Black-box Models." BMVC 2018.

The model is only ever seen through a *scorer*: ``score(inputs, rows)``
receives a batch of perturbed images ``(n, C, H, W)`` float32, channels first,
and ``rows`` ``(n,)`` int64, the index of the original image each one comes
from (so the scorer knows which class to score), and returns ``(n,)`` scores.
:func:`multiviz.evaluate` builds one from a model through the backends; the
tests build one from a closed-form function.

Conventions:

* maps are ``(N, H, W)``, one value per pixel, at the images' size; every
  channel of a pixel is removed together;
* pixels are ordered by map value, most relevant first, **ties broken by
  pixel index** (row-major), so the same map gives the same order everywhere;
* step ``k`` of ``steps`` has the first ``(k * H * W) // steps`` pixels of
  that order removed (deletion) or inserted (insertion); the curve has
  ``steps + 1`` points, from ``k = 0`` to ``k = steps``;
* the area under a curve is the trapezoidal rule over the fraction of pixels,
  ``0`` to ``1`` (:func:`auc`);
* an image whose map holds NaN or Inf gets a NaN curve and costs no model call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "MODES",
    "SUBSTRATES",
    "Scorer",
    "auc",
    "gaussian_blur",
    "make_substrate",
    "perturbation_curves",
    "pixel_order",
    "pixel_ranks",
    "removed_counts",
]

#: ``score(inputs, rows) -> scores``: inputs ``(n, C, H, W)`` float32 channels
#: first, rows ``(n,)`` int64 (which original image each input comes from),
#: scores ``(n,)``.
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: What replaces a removed pixel: a blurred copy of the image, the image's mean
#: colour, or zeros (in the units the model takes, e.g. after normalization).
SUBSTRATES: tuple[str, ...] = ("blur", "mean", "zeros")

#: The two curves: remove pixels from the image, or insert them into the substrate.
MODES: tuple[str, ...] = ("deletion", "insertion")


def pixel_order(maps: np.ndarray, descending: bool = True) -> np.ndarray:
    """Pixel indices (row-major) of each map, most relevant first; ties by pixel index.

    Args:
        maps: ``(N, H, W)`` relevance maps (any real dtype).
        descending: ``True`` orders from the largest value (most relevant
            first); ``False`` from the smallest (least relevant first). Ties
            are broken by the smaller pixel index first in both cases.

    Returns:
        int64 ``(N, H * W)``.

    Example:
        >>> pixel_order(np.array([[[0.5, 0.9], [0.5, 0.1]]])).tolist()
        [[1, 0, 2, 3]]
        >>> pixel_order(np.array([[[0.5, 0.9], [0.5, 0.1]]]), descending=False).tolist()
        [[3, 0, 2, 1]]
    """
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    key = -flat if descending else flat
    return np.argsort(key, axis=1, kind="stable").astype(np.int64)


def pixel_ranks(maps: np.ndarray, descending: bool = True) -> np.ndarray:
    """The position of each pixel in :func:`pixel_order`, ``(N, H * W)`` int64.

    ``ranks[i, p] < n`` selects the first ``n`` pixels of image ``i``'s order.

    Example:
        >>> pixel_ranks(np.array([[[0.5, 0.9], [0.5, 0.1]]])).tolist()
        [[1, 0, 2, 3]]
    """
    order = pixel_order(maps, descending)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1], dtype=np.int64)[None], axis=1)
    return ranks


def removed_counts(pixels: int, steps: int) -> np.ndarray:
    """Pixels removed (or inserted) after each step: ``(k * pixels) // steps``, ``k = 0..steps``.

    Example:
        >>> removed_counts(10, 4).tolist()
        [0, 2, 5, 7, 10]
    """
    return (np.arange(steps + 1, dtype=np.int64) * int(pixels)) // int(steps)


def auc(curves: np.ndarray) -> np.ndarray:
    """Area under curves sampled at evenly spaced fractions ``0..1`` (trapezoidal rule).

    Args:
        curves: ``(..., K)`` with ``K >= 2`` points at fractions ``k / (K - 1)``.

    Returns:
        float64 ``(...)``; NaN where a curve holds NaN.

    Example:
        >>> float(auc(np.array([1.0, 0.5, 0.0])))     # a straight line from 1 to 0
        0.5
    """
    c = np.asarray(curves, np.float64)
    if c.shape[-1] < 2:
        raise ValueError(f"A curve needs at least 2 points. Received shape {c.shape}.")
    inner = c[..., 1:-1].sum(axis=-1)
    return (0.5 * (c[..., 0] + c[..., -1]) + inner) / (c.shape[-1] - 1)


def gaussian_blur(images: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Blur each channel with a Gaussian of ``sigma`` pixels (truncated at 3 sigma).

    Borders are mirrored (``np.pad(mode="reflect")``), so the image edge is
    not darkened. RISE's insertion substrate (the paper used sigma 5 px).

    Args:
        images: ``(N, C, H, W)``.
        sigma: the standard deviation in pixels, > 0.

    Returns:
        float32, same shape.

    Example:
        >>> flat = np.full((1, 2, 5, 6), 0.25, np.float32)
        >>> bool(np.allclose(gaussian_blur(flat, 2.0), 0.25))
        True
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`blur_sigma` must be a positive finite number. Received: {sigma!r}")
    x = np.asarray(images, np.float64)
    radius = max(1, math.ceil(3.0 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (-2, -1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="reflect") if x.shape[axis] > 1 else np.pad(x, pad, "edge")
        n = x.shape[axis]
        out = np.zeros_like(x)
        for j, w in enumerate(kernel):
            out += w * np.take(padded, np.arange(j, j + n), axis=axis)
        x = out
    return x.astype(np.float32)


def make_substrate(images: np.ndarray, kind: str, blur_sigma: float = 5.0) -> np.ndarray:
    """What replaces removed pixels: ``"blur"``, ``"mean"`` (per image and channel) or ``"zeros"``.

    Args:
        images: ``(N, C, H, W)`` channels first.
        kind: one of :data:`SUBSTRATES`.
        blur_sigma: the Gaussian's standard deviation for ``"blur"``, pixels.

    Returns:
        float32 ``(N, C, H, W)``.

    Raises:
        ValueError: unknown ``kind``.

    Example:
        >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
        >>> make_substrate(x, "mean")[0, :, 0, 0].tolist()
        [1.5, 5.5]
    """
    x = np.asarray(images, np.float32)
    if kind == "zeros":
        return np.zeros_like(x)
    if kind == "mean":
        mean = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
        return np.broadcast_to(mean, x.shape).astype(np.float32)
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    raise ValueError(f"`substrate` must be one of {list(SUBSTRATES)}. Received: substrate={kind!r}")


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def perturbation_curves(
    images: np.ndarray,
    maps: np.ndarray,
    score: Scorer,
    *,
    mode: str = "deletion",
    substrate: np.ndarray,
    steps: int = 50,
    batch_size: int = 32,
    start: np.ndarray | None = None,
    end: np.ndarray | None = None,
) -> np.ndarray:
    """Score the images as pixels are removed (or inserted) in each map's order.

    Step ``k`` (``0..steps``) uses the first ``(k * H * W) // steps`` pixels
    of :func:`pixel_order`. For ``"deletion"`` those pixels take the
    substrate's values and the rest keep the image's; for ``"insertion"`` it is
    the other way round. Perturbed copies are made ``batch_size`` at a time,
    across images and steps, so ``score`` sees full batches and memory stays
    bounded.

    Args:
        images: ``(N, C, H, W)`` float, channels first, as the scorer takes them.
        maps: ``(N, H, W)`` relevance maps at the images' size.
        score: the :data:`Scorer`.
        mode: ``"deletion"`` or ``"insertion"``.
        substrate: ``(N, C, H, W)``, e.g. from :func:`make_substrate`.
        steps: number of steps, >= 1 (the curve has ``steps + 1`` points).
        batch_size: the most inputs passed to ``score`` at once.
        start, end: the scores at ``k = 0`` and ``k = steps``, ``(N,)``, when
            the caller already has them (they do not depend on the map: the
            clean image and the substrate); those steps then cost no call.

    Returns:
        float64 ``(N, steps + 1)``; rows of non-finite maps are NaN.

    Raises:
        ValueError: shapes that do not fit, unknown ``mode``, ``steps < 1``.

    Example:
        A linear "model" scoring the sum of the first channel; deleting to
        zeros in the map's order removes the brightest pixels first:

        >>> x = np.array([[[[4.0, 3.0], [2.0, 1.0]]]], np.float32)   # (1, 1, 2, 2)
        >>> linear = lambda inputs, rows: inputs[:, 0].sum(axis=(1, 2))
        >>> perturbation_curves(x, x[:, 0], linear, substrate=np.zeros_like(x), steps=4).tolist()
        [[10.0, 6.0, 3.0, 1.0, 0.0]]
    """
    x = np.asarray(images, np.float32)
    m = np.asarray(maps)
    sub = np.asarray(substrate, np.float32)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}. Received: mode={mode!r}")
    if x.ndim != 4:
        raise ValueError(f"`images` must be (N, C, H, W). Received shape {x.shape}.")
    n, _, h, w = x.shape
    if m.shape != (n, h, w):
        raise ValueError(
            f"`maps` must be (N, H, W) = {(n, h, w)} to match the images. Received shape {m.shape}."
        )
    if sub.shape != x.shape:
        raise ValueError(
            f"`substrate` must have the images' shape {x.shape}. Received {sub.shape}."
        )
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be a positive int. Received: steps={steps!r}")
    steps = int(steps)
    counts = removed_counts(h * w, steps)
    curves = np.full((n, steps + 1), np.nan)
    finite = np.isfinite(m.reshape(n, -1)).all(axis=1)
    if start is not None:
        curves[:, 0] = np.asarray(start, np.float64)
    if end is not None:
        curves[:, steps] = np.asarray(end, np.float64)
    curves[~finite] = np.nan
    ranks = pixel_ranks(np.where(np.isfinite(m), m, 0.0))
    todo_k = [k for k in range(steps + 1) if not (k == 0 and start is not None)]
    todo_k = [k for k in todo_k if not (k == steps and end is not None)]
    rows = np.repeat(np.flatnonzero(finite), len(todo_k))
    ks = np.tile(np.asarray(todo_k, np.int64), int(finite.sum()))
    for s in _chunks(len(rows), max(1, int(batch_size))):
        r, k = rows[s], ks[s]
        chosen = (ranks[r] < counts[k][:, None]).reshape(len(r), 1, h, w)
        if mode == "deletion":
            batch = np.where(chosen, sub[r], x[r])
        else:
            batch = np.where(chosen, x[r], sub[r])
        values = np.asarray(score(batch, r), np.float64).reshape(-1)
        if values.shape != (len(r),):
            raise ValueError(
                f"The scorer returned shape {values.shape} for {len(r)} inputs; it must return "
                "one score per input."
            )
        curves[r, k] = values
    return curves
