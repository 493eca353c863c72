"""Figures of a data-set scan: exemplar montages and Network Dissection results.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot.
An exemplar montage is one NumPy array of crops and one ``imshow``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure

__all__ = ["exemplar_montage", "plot_dissection", "plot_exemplar_grid"]

DPI = 100
_STROKE = [patheffects.withStroke(linewidth=1.5, foreground="black")]


def exemplar_montage(crops: np.ndarray, pad: int = 2) -> np.ndarray:
    """Tile ``(rows, k, s, s, 3)`` crops into one ``(H, W, 3)`` image with white gutters.

    Example:
        >>> exemplar_montage(np.zeros((2, 3, 4, 4, 3))).shape
        (14, 20, 3)
    """
    rows, k, s = crops.shape[:3]
    out = np.ones((pad + rows * (s + pad), pad + k * (s + pad), 3), np.float32)
    for r in range(rows):
        for c in range(k):
            y, x = pad + r * (s + pad), pad + c * (s + pad)
            out[y : y + s, x : x + s] = crops[r, c]
    return out


def plot_exemplar_grid(
    crops: np.ndarray,
    channels: Sequence[int],
    exemplars: Sequence[Sequence[Any]],
    *,
    title: str = "",
    pad: int = 2,
) -> Figure:
    """One row per channel, its exemplars' receptive-field crops left to right.

    Args:
        crops: float32 ``(rows, k, s, s, 3)`` in ``[0, 1]``.
        channels: the channel of each row (its label).
        exemplars: per row, the :class:`~multiviz.scanning.record.Exemplar`
            records drawn (their input index and score label each tile).
        title: the figure's title.
        pad: gutter between crops in pixels.

    Returns:
        A Figure: crops at their own pixel size (at least 1.5x when small).
    """
    rows, _, s = crops.shape[:3]
    image = exemplar_montage(crops, pad)
    scale = max(1.0, 96.0 / max(s, 1))  # crops of at least ~96 screen pixels
    iw, ih = image.shape[1] * scale / DPI, image.shape[0] * scale / DPI
    left, top, bottom, right = 0.75, 0.6, 0.15, 0.15
    width, height = left + iw + right, bottom + ih + top
    fig = Figure(figsize=(max(width, 4.0), height), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, iw / width, ih / height))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + r * (s + pad) + s / 2 for r in range(rows)])
    ax.set_yticklabels([f"ch {c}" for c in channels])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if s >= 40:  # room for a label on each tile
        for r, row in enumerate(exemplars):
            for c, ex in enumerate(row):
                ax.text(
                    pad + c * (s + pad) + 2,
                    pad + r * (s + pad) + s - 3,
                    f"#{ex.index} {ex.score:.3g}",
                    color="white",
                    fontsize=6.5,
                    path_effects=_STROKE,
                )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    return fig


def plot_dissection(dissection: Any, *, top: int = 12) -> Figure:
    """Network Dissection at a glance: detectors per concept, and the best units.

    Left: for each layer, how many units detect each concept (IoU above the
    detector threshold). Right: the ``top`` units by IoU, with their concept.

    Args:
        dissection: a :class:`~multiviz.scanning.dissection.Dissection`.
        top: how many units the right panel lists.
    """
    layers = list(dissection)
    concepts = list(dissection.concepts)
    fig = Figure(figsize=(10, 3.2 + 0.15 * max(len(concepts), top)), dpi=DPI, layout="constrained")
    ax_counts, ax_units = fig.subplots(1, 2, width_ratios=(1, 1.3))
    width = 0.8 / max(len(layers), 1)
    y = np.arange(len(concepts))
    for i, name in enumerate(layers):
        d = dissection[name]
        counts = [int(((d.best_concept == c) & d.detectors).sum()) for c in range(len(concepts))]
        ax_counts.barh(y + i * width, counts, height=width, label=name)
    ax_counts.set_yticks(y + width * (len(layers) - 1) / 2, concepts)
    ax_counts.invert_yaxis()
    ax_counts.set_xlabel(f"units with IoU > {dissection.detector_iou:g}")
    ax_counts.set_title("detectors per concept")
    if len(layers) > 1:
        ax_counts.legend(fontsize=8)
    rows = sorted(
        (
            (float(d.best_iou[u]), name, int(u), concepts[int(d.best_concept[u])])
            for name in layers
            for d in [dissection[name]]
            for u in range(len(d.best_iou))
        ),
        reverse=True,
    )[:top]
    labels = [f"{name} unit {u}: {c}" for _, name, u, c in rows]
    ax_units.barh(np.arange(len(rows)), [r[0] for r in rows], color="C2")
    ax_units.axvline(dissection.detector_iou, color="0.3", lw=1, ls="--")
    ax_units.set_yticks(np.arange(len(rows)), labels, fontsize=8)
    ax_units.invert_yaxis()
    ax_units.set_xlabel("IoU with the concept's masks")
    ax_units.set_title(f"best {len(rows)} units")
    fig.suptitle(
        f"Network Dissection over {dissection.samples} inputs "
        f"(threshold: top {dissection.top_quantile:.1%} of each unit's values)",
        fontsize=10,
    )
    return fig
