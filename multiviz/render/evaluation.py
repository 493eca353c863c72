"""The figure of an :class:`~multiviz.evaluation.report.EvaluationReport`.

Top row: the mean deletion and insertion curves of each method (the score as
pixels are removed or put back in the map's order) and ROAD's MoRF/LeRF
curves. Middle: the randomization cascade, each method's mean rank
correlation with its original map as layers are randomized from the top
down. Bottom: the cascade as pictures — one image's map, trained, then after
each step — tiled in NumPy and drawn with one ``imshow``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["plot_evaluation"]

_CURVES = (
    ("deletion", "Deletion", "pixels removed"),
    ("insertion", "Insertion", "pixels inserted"),
    ("road", "ROAD", "pixels imputed (%)"),
)


def _cascade_tiles(cascades: dict[str, Any], max_steps: int) -> tuple[np.ndarray, list[str], list]:
    """One array: a row per method, original then up to ``max_steps`` cascade steps."""
    rows, labels = [], []
    layers: list[str] = []
    for method, c in cascades.items():
        if c.original is None or c.cascade_maps is None:
            continue
        steps = np.arange(len(c.layers))
        if len(steps) > max_steps:
            steps = np.unique(np.linspace(0, len(c.layers) - 1, max_steps).round().astype(int))
        rows.append([c.original, *(c.cascade_maps[k] for k in steps)])
        labels.append(method)
        layers = ["trained", *(f"+{c.layers[k]}" for k in steps)]
    if not rows:
        return np.zeros((0, 0)), [], []
    h, w = rows[0][0].shape
    pad = max(1, h // 16)
    cols = len(rows[0])
    out = np.full((len(rows) * (h + pad) - pad, cols * (w + pad) - pad), np.nan)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return out, labels, layers


def plot_evaluation(report: Any, *, max_steps: int = 8, size: float = 3.2) -> Figure:
    """Draw a report's curves and randomization cascade; returns a ``Figure``.

    Args:
        report: an :class:`~multiviz.evaluation.report.EvaluationReport`.
        max_steps: the most cascade steps drawn as pictures (evenly chosen).
        size: the height of one panel row, inches.

    Example:
        >>> from multiviz.evaluation.report import EvaluationReport
        >>> r = EvaluationReport.from_values({"a": {"deletion": np.array([0.2, 0.3])}},
        ...     curves={"a": {"deletion": np.array([[1.0, 0.5, 0.0], [1.0, 0.2, 0.0]])}})
        >>> [ax.get_title() for ax in plot_evaluation(r).axes]
        ['Deletion (lower is better)']
    """
    curve_panels = [
        spec
        for spec in _CURVES
        if any(
            spec[0] in c or (spec[0] == "road" and "road_morf" in c) for c in report.curves.values()
        )
    ]
    cascades = dict(report.randomization)
    tiles, tile_rows, tile_cols = _cascade_tiles(cascades, max_steps)
    n_rows = (1 if curve_panels else 0) + (1 if cascades else 0) + (1 if tile_rows else 0)
    width = max(3, len(curve_panels), 1) * size * 1.25
    tile_height = size * max(1.0, 0.55 * len(tile_rows))
    heights = [size] * (n_rows - (1 if tile_rows else 0)) + ([tile_height] if tile_rows else [])
    fig = Figure(figsize=(width, max(sum(heights), 1.0) + 0.3), layout="constrained")
    if n_rows == 0:
        fig.text(0.5, 0.5, "nothing to draw", ha="center")
        return fig
    grid = fig.add_gridspec(n_rows, max(len(curve_panels), 1), height_ratios=heights)
    row = 0
    colors = {m: f"C{k % 10}" for k, m in enumerate(report.methods)}
    # one legend, on the first panel: a method's colour is the same in every panel
    handles = [Line2D([], [], color=colors[m], label=m) for m in report.methods]
    if curve_panels:
        for col, (key, title, xlabel) in enumerate(curve_panels):
            ax = fig.add_subplot(grid[row, col])
            for method, by in report.curves.items():
                if key == "road":
                    pct = np.asarray(report.settings.get("percentages", []), float)
                    for part, style in (("road_morf", "-"), ("road_lerf", "--")):
                        if part in by and len(pct) == by[part].shape[1]:
                            mean = np.nanmean(by[part], axis=0)
                            ax.plot(pct, mean, style, color=colors[method])
                elif key in by:
                    c = by[key]
                    frac = np.linspace(0, 1, c.shape[1])
                    ax.plot(frac, np.nanmean(c, axis=0), color=colors[method])
            better = "lower" if key == "deletion" else "higher"
            if key == "road":
                ax.set_title("ROAD: MoRF (solid) vs LeRF (dashed)")
            else:
                ax.set_title(f"{title} ({better} is better)")
                ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(str(report.settings.get("score", "score")))
            ax.grid(True, alpha=0.3)
            if col == 0:
                ax.legend(handles=handles, fontsize=7)
        row += 1
    if cascades:
        ax = fig.add_subplot(grid[row, :])
        labels: list[str] = []
        for method, c in cascades.items():
            steps = np.arange(len(c.layers) + 1)
            rho = np.concatenate([[1.0], np.nanmean(c.cascading_spearman, axis=1)])
            ax.plot(steps, rho, "-o", ms=3, color=colors.get(method))
            if np.isfinite(c.cascading_ssim).any():
                s = np.concatenate([[1.0], np.nanmean(c.cascading_ssim, axis=1)])
                ax.plot(steps, s, ":", color=colors.get(method))
            labels = ["trained", *c.layers]
        ax.axhline(0.5, color="0.4", ls="--", lw=1)
        ax.set_xticks(np.arange(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("similarity to the trained map")
        ax.set_title(
            "Cascading randomization, top layer first: Spearman (solid), SSIM (dotted); "
            "a method ending above the dashed line fails"
        )
        ax.grid(True, alpha=0.3)
        if not curve_panels:
            ax.legend(handles=handles, fontsize=7)
        row += 1
    if tile_rows:
        ax = fig.add_subplot(grid[row, :])
        ax.imshow(np.ma.masked_invalid(tiles), cmap="jet", vmin=0.0, vmax=1.0)
        h = (tiles.shape[0] + 1) / len(tile_rows)
        w = (tiles.shape[1] + 1) / len(tile_cols)
        ax.set_yticks((np.arange(len(tile_rows)) + 0.5) * h)
        ax.set_yticklabels(tile_rows, fontsize=8)
        ax.set_xticks((np.arange(len(tile_cols)) + 0.5) * w)
        ax.set_xticklabels(tile_cols, fontsize=7, rotation=30)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title("First image's map as layers are randomized (cascading)")
    return fig
