"""Does the map land on the object? Pointing game, energy pointing game, IoU. NumPy only.

Each metric compares a map ``(N, H, W)`` with the ground truth, a boolean
region ``(N, H, W)`` built from boxes or masks (:func:`regions_from`), and
gives one value per image; higher is better for all three.

* **Pointing game** (Zhang et al. 2016, "Top-down Neural Attention by
  Excitation Backprop", ECCV): a hit (1) when the map's maximum lies within
  ``tolerance`` pixels (15 in the paper) of the region, else a miss (0).
  Where several pixels share the maximum, the first in pixel (row-major)
  order is the one that points.
* **Energy-based pointing game** (Wang et al. 2020, "Score-CAM", CVPR
  workshops): the share of the map's total value that falls inside the
  region, ``sum(map * region) / sum(map)``; maps must be >= 0.
* **IoU**: the map thresholded at ``threshold`` times its maximum, compared
  with the region: ``|on & region| / |on | region|``.

An image whose map holds NaN or Inf, or whose region is empty, scores NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["boxes_to_masks", "energy_pointing_game", "iou", "pointing_game", "regions_from"]


def boxes_to_masks(boxes: Any, size: tuple[int, int]) -> np.ndarray:
    """Boolean masks ``(N, H, W)`` from boxes ``(x0, y0, x1, y1)`` in pixels.

    ``x`` is the column and ``y`` the row; starts inclusive, ends exclusive
    (``mask[y0:y1, x0:x1]``), as :func:`multiviz.shapes_dataset` gives them.
    Coordinates are clipped to the image; fractional ones are rounded.

    Args:
        boxes: ``(N, 4)`` (one box per image), or a sequence of ``N`` arrays
            ``(k_i, 4)`` (several boxes per image; the mask is their union).
        size: ``(H, W)``.

    Returns:
        bool ``(N, H, W)``.

    Raises:
        ValueError: a box that is not 4 numbers, or non-finite.

    Example:
        >>> boxes_to_masks(np.array([[1, 0, 3, 2]]), (3, 4)).astype(int).tolist()
        [[[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]]
    """
    h, w = int(size[0]), int(size[1])
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
        per_image: Sequence[Any] = [b[None] for b in boxes]
    else:
        per_image = list(boxes)
    out = np.zeros((len(per_image), h, w), bool)
    for i, group in enumerate(per_image):
        arr = np.asarray(group, np.float64).reshape(-1, 4) if np.size(group) else np.zeros((0, 4))
        if np.size(group) % 4 or not np.all(np.isfinite(arr)):
            raise ValueError(
                f"`boxes` must hold (x0, y0, x1, y1) boxes of finite numbers. Image {i} received "
                f"{np.asarray(group).tolist()!r}."
            )
        for x0, y0, x1, y1 in np.rint(arr).astype(np.int64):
            out[i, max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = True
    return out


def _numeric(boxes: Any) -> bool:
    """True when ``boxes`` reads as numbers: an array, or a list of number rows/arrays."""
    try:
        items = boxes if isinstance(boxes, Sequence) else [boxes]
        return all(np.asarray(b).dtype.kind in "biuf" for b in items)
    except (TypeError, ValueError):
        return False


def regions_from(
    boxes: Any = None, masks: Any = None, *, n: int, size: tuple[int, int]
) -> np.ndarray | None:
    """The ground-truth regions ``(N, H, W)`` bool from ``boxes`` or ``masks`` (not both).

    Returns ``None`` when neither is given.

    Raises:
        ValueError: both given, or a shape that does not fit ``n`` images of ``size``.

    Example:
        >>> regions_from(boxes=[[0, 0, 1, 1]], n=1, size=(2, 2)).sum()
        np.int64(1)
    """
    if boxes is not None and masks is not None:
        raise ValueError("Pass `boxes` or `masks`, not both.")
    if masks is not None:
        region = np.asarray(masks)
        if region.shape != (n, *size):
            raise ValueError(
                f"`masks` must be (N, H, W) = {(n, *size)}, one boolean mask per image at the "
                f"input's size. Received shape {region.shape}."
            )
        if region.dtype != bool:
            region = np.isfinite(region) & (region != 0)
        return region.copy()
    if boxes is not None:
        if isinstance(boxes, (str, bytes)) or not _numeric(boxes):
            raise ValueError(
                "`boxes` must be boxes (x0, y0, x1, y1) in pixels: an (N, 4) array, or a list of "
                f"N (k, 4) arrays. Received: boxes={boxes!r:.60}"
            )
        if isinstance(boxes, np.ndarray) or not isinstance(boxes, Sequence):
            boxes = np.asarray(boxes, np.float64)
            if boxes.ndim == 1:
                boxes = boxes[None]
        region = boxes_to_masks(boxes, size)
        if len(region) != n:
            raise ValueError(
                f"`boxes` gives {len(region)} images' boxes for {n} images. Pass one box "
                "(x0, y0, x1, y1) per image, as an (N, 4) array, or a list of (k, 4) arrays."
            )
        return region
    return None


def _check(maps: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(maps, np.float64)
    r = np.asarray(regions, bool)
    if m.ndim != 3 or r.shape != m.shape:
        raise ValueError(
            f"`maps` and the regions must both be (N, H, W) of the same shape. Received maps "
            f"{m.shape} and regions {r.shape}."
        )
    return m, r


def _undefined(m: np.ndarray, r: np.ndarray) -> np.ndarray:
    flat = m.reshape(len(m), -1)
    return ~np.isfinite(flat).all(axis=1) | ~r.reshape(len(r), -1).any(axis=1)


def pointing_game(maps: np.ndarray, regions: np.ndarray, tolerance: float = 15.0) -> np.ndarray:
    """1.0 where each map's maximum lies within ``tolerance`` pixels of the region, else 0.0.

    Zhang et al. (2016) counted a hit within 15 pixels of the annotation;
    ``tolerance=0`` asks for the maximum inside the region (as Quantus does).
    Distances are Euclidean between pixel centres.

    Args:
        maps: ``(N, H, W)``.
        regions: bool ``(N, H, W)`` (see :func:`regions_from`).
        tolerance: pixels, >= 0.

    Returns:
        float64 ``(N,)``: 1.0 hit, 0.0 miss, NaN for a non-finite map or an
        empty region.

    Example:
        >>> m = np.zeros((1, 5, 5)); m[0, 0, 4] = 1.0           # maximum at row 0, col 4
        >>> r = np.zeros((1, 5, 5), bool); r[0, 3, 4] = True    # region 3 pixels below
        >>> pointing_game(m, r, tolerance=2).tolist(), pointing_game(m, r, tolerance=3).tolist()
        ([0.0], [1.0])
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"`tolerance` must be a finite number >= 0. Received: {tolerance!r}")
    m, r = _check(maps, regions)
    n, _, w = m.shape
    out = np.full(n, np.nan)
    bad = _undefined(m, r)
    for i in np.flatnonzero(~bad):
        y, x = divmod(int(np.argmax(m[i].reshape(-1))), w)  # first maximum in pixel order
        ys, xs = np.nonzero(r[i])
        nearest = float(np.min((ys - y) ** 2 + (xs - x) ** 2))
        out[i] = 1.0 if nearest <= float(tolerance) ** 2 else 0.0
    return out


def energy_pointing_game(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The share of each map's total value inside the region, in ``[0, 1]``.

    Args:
        maps: ``(N, H, W)``, every value >= 0 (e.g. maps scaled to ``[0, 1]``).
        regions: bool ``(N, H, W)``.

    Returns:
        float64 ``(N,)``; NaN for a non-finite or all-zero map, or an empty region.

    Raises:
        ValueError: a map has negative values (energy needs a non-negative map).

    Example:
        >>> m = np.array([[[3.0, 1.0], [0.0, 0.0]]])
        >>> energy_pointing_game(m, np.array([[[True, False], [False, False]]])).tolist()
        [0.75]
    """
    m, r = _check(maps, regions)
    bad = _undefined(m, r)
    if np.any(m[~bad] < 0):
        raise ValueError(
            "energy_pointing_game needs maps with values >= 0 (the energy is the map's sum); "
            f"received a minimum of {float(np.min(m[~bad])):.4g}. Pass maps scaled to [0, 1]."
        )
    total = np.where(bad, np.nan, m.reshape(len(m), -1).sum(axis=1))
    inside = np.where(bad, np.nan, (m * r).reshape(len(m), -1).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def iou(maps: np.ndarray, regions: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Intersection over union of ``map >= threshold * max(map)`` with the region.

    Args:
        maps: ``(N, H, W)``.
        regions: bool ``(N, H, W)``.
        threshold: a fraction of each map's maximum, in ``[0, 1]``.

    Returns:
        float64 ``(N,)`` in ``[0, 1]``; NaN for a non-finite map or an empty region.

    Example:
        >>> m = np.array([[[1.0, 0.8], [0.2, 0.0]]])
        >>> r = np.array([[[True, False], [True, False]]])
        >>> iou(m, r, threshold=0.5).round(4).tolist()              # on: (0,0), (0,1)
        [0.3333]
    """
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"`threshold` must be a number in [0, 1]. Received: {threshold!r}")
    m, r = _check(maps, regions)
    bad = _undefined(m, r)
    flat = np.where(np.isfinite(m), m, 0.0).reshape(len(m), -1)
    on = flat >= float(threshold) * flat.max(axis=1, keepdims=True)
    reg = r.reshape(len(r), -1)
    inter = (on & reg).sum(axis=1)
    union = (on | reg).sum(axis=1)
    out = inter / np.maximum(union, 1)
    return np.where(bad, np.nan, out).astype(np.float64)
