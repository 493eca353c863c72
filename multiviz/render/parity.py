"""Figures of a parity report: the error along the depth, and one pair side by side.

:func:`plot_parity` draws :meth:`ParityReport.plot
<multiviz.parity.report.ParityReport.plot>`; :func:`plot_comparison` both
sides' maps of one pair and their difference, from the arrays the report
keeps (no second forward pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multiviz.core.params import names_parameters
from multiviz.errors import LayerNotFoundError
from multiviz.parity.report import LayerParity, ParityReport, fmt_fixed, fmt_sci, fmt_shape
from multiviz.render.colors import get_cmap
from multiviz.render.figures import _root_figure
from multiviz.render.montage import montage

__all__ = ["plot_comparison", "plot_parity"]


def plot_parity(report: ParityReport, ax: Axes | None = None) -> Figure:
    """Error along the depth: max|diff| and relative error per pair, log scale.

    Shows the ``atol`` line, failing pairs ringed in red and the first
    divergence marked. Exact zeros (a log scale has no 0) are drawn as
    triangles on the bottom edge; shape mismatches as crosses on the top.

    Returns:
        The ``matplotlib.figure.Figure`` (the one ``ax`` belongs to, if given).

    Example:
        >>> from multiviz.parity.compare import compare_activations
        >>> a = {"x": np.ones((1, 3)), "y": np.ones((1, 3))}
        >>> fig = plot_parity(compare_activations(a, {"x": a["x"] + 1e-6, "y": a["y"]}))
        >>> fig.axes[0].get_yscale()
        'log'
    """
    if ax is None:
        fig = Figure(figsize=(max(6.0, 0.22 * len(report.rows) + 2.5), 4.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    x = np.arange(len(report.rows))
    max_abs = np.array([r.max_abs for r in report.rows], dtype=float)
    rel = np.array([r.rel_err for r in report.rows], dtype=float)
    ok = np.array([r.passed for r in report.rows], dtype=bool)
    values = np.concatenate([max_abs, rel, [report.atol]])
    positive = values[np.isfinite(values) & (values > 0)]
    lo = float(positive.min()) / 3 if positive.size else 1e-12
    hi = float(positive.max()) * 40 if positive.size else 1.0  # headroom for the label

    def shown(v: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(v) & (v > 0), v, np.nan)

    ax.plot(x, shown(max_abs), "-o", ms=3.5, lw=1.2, color="C0", label="max |diff|")
    ax.plot(x, shown(rel), "-s", ms=3.0, lw=1.0, color="C1", alpha=0.85, label="relative error")
    zero = max_abs == 0
    if zero.any():
        ax.plot(x[zero], np.full(zero.sum(), lo), "v", ms=6, color="C0", clip_on=False,
                label="exactly 0")  # fmt: skip
    missing = np.isnan(max_abs)
    if missing.any():
        ax.plot(x[missing], np.full(missing.sum(), hi), "x", ms=7, color="red", clip_on=False,
                label="shapes differ")  # fmt: skip
    if (~ok & ~missing).any():
        bad = ~ok & ~missing
        ax.plot(x[bad], max_abs[bad], "o", ms=7, mfc="none", mec="red", mew=1.5, label="FAIL")
    ax.axhline(report.atol, color="0.3", ls="--", lw=1, label=f"atol = {report.atol:g}")
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    first = report.first_divergence
    if first is not None:
        ax.axvline(first.index, color="red", lw=1, alpha=0.6)
        ax.annotate(
            f"first divergence: {first.name}",
            (first.index, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -4),
            textcoords="offset points",
            ha="right" if first.index > len(report.rows) / 2 else "left",
            va="top",
            color="red",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    ax.set_xticks(x)
    ax.set_xticklabels([r.name for r in report.rows], rotation=90, fontsize=7)
    ax.set_xlim(-0.5, max(len(report.rows) - 0.5, 0.5))
    ax.set_ylabel("error (log scale)")
    a, b = report.labels
    verdict = "all pass" if report.passed else f"{len(report.failures)} of {len(report.rows)} fail"
    ax.set_title(f"{b} vs {a} (reference), layer by layer: {verdict}")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    return fig


# --------------------------------------------------------------------------- pictures


@names_parameters
def plot_comparison(
    report: ParityReport,
    layer: str | int | None = None,
    *,
    sample: int = 0,
    channels: Sequence[int] | None = None,
    max_channels: int = 16,
    cmap: str = "viridis",
    diff_cmap: str = "RdBu_r",
) -> Figure:
    """Both sides' maps of one pair and their difference, in one figure.

    Three panels: the reference's maps, the candidate's on the same colour
    scale, and ``candidate - reference`` on a symmetric diverging scale
    (white = equal). Feature maps are tiled into one montage per panel;
    vectors are drawn as curves.

    Args:
        report: from :func:`compare` (it holds the arrays).
        layer: a pair by either side's name or by index; default the first
            divergence, or the last pair when everything passes.
        sample: which sample of the batch.
        channels: which channels to show; default the first ``max_channels``
            (for a failing pair: the channels with the largest differences).
        max_channels: at most this many channels when ``channels`` is ``None``.
        cmap, diff_cmap: colormaps for the maps and the difference.

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        LayerNotFoundError: no pair has that name.
        IndexError: ``sample`` is out of range.

    Example:
        >>> from multiviz.parity.compare import compare_activations
        >>> a = {"conv": np.random.default_rng(0).normal(size=(1, 4, 6, 8))}
        >>> b = {"conv": a["conv"] * 1.01}
        >>> fig = plot_comparison(compare_activations(a, b), "conv")
        >>> len(fig.axes) >= 3
        True
    """
    if not isinstance(report, ParityReport):
        raise TypeError(
            "`report` must be the ParityReport mv.compare returns. "
            f"Received: report of type {type(report).__name__}"
        )
    get_cmap(cmap, "cmap")
    get_cmap(diff_cmap, "diff_cmap")
    if not report.rows:
        raise LayerNotFoundError("The report has no compared pairs to plot.")
    if layer is None:
        row = report.first_divergence or report.rows[-1]
    else:
        try:
            row = report[layer]
        except LayerNotFoundError as err:
            raise LayerNotFoundError(f"`layer`: {err}") from None
    ref = np.asarray(report.activations[0][row.name], dtype=np.float32)
    cand = np.asarray(report.activations[1][row.name_b], dtype=np.float32)
    n = ref.shape[0]
    if not -n <= sample < n:
        raise IndexError(f"`sample` must be in [0, {n}). Received: sample={sample}")
    a, b = report.labels
    same = ref.size == cand.size and np.squeeze(ref).shape == np.squeeze(cand).shape
    if same and ref.shape != cand.shape:
        cand = cand.reshape(ref.shape)
    ra, rb = ref[sample], cand[sample]
    if ra.ndim > 3:  # volumes (C, D, H, W): stack the depth slices vertically
        ra, rb = (
            ra.reshape(ra.shape[0], -1, ra.shape[-1]),
            rb.reshape(rb.shape[0], -1, rb.shape[-1]),
        )
    if ra.ndim == 1 or not same:
        return _plot_vectors(row, ra.ravel(), rb.ravel(), same, (a, b))
    chosen = _choose_channels(ra, rb, channels, max_channels, row.passed)
    ma, mb = ra[chosen], rb[chosen]
    diff = mb - ma
    fig = Figure(figsize=(13.5, 5.0), layout="constrained")
    axes = fig.subplots(1, 3)
    finite = np.concatenate([ma[np.isfinite(ma)], mb[np.isfinite(mb)]])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    ncols = max(1, math.ceil(math.sqrt(len(chosen)))) if ma.ndim == 3 else 1
    panels = (
        (ma, f"{a}: {row.name}", cmap, (lo, hi), "activation"),
        (mb, f"{b}: {row.name_b}", cmap, (lo, hi), "activation"),
    )
    for ax, (maps, title, cm, (vmin, vmax), label) in zip(axes[:2], panels, strict=True):
        im = ax.imshow(
            montage(maps, ncols=ncols), cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
    span = span or max(report.atol, 1e-12)
    im = axes[2].imshow(
        montage(diff, ncols=ncols), cmap=diff_cmap, vmin=-span, vmax=span, interpolation="nearest"
    )
    axes[2].set_title(f"difference ({b} - {a})", fontsize=10)
    axes[2].set_axis_off()
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="difference")
    shown = ", ".join(str(c) for c in chosen[:12]) + (" ..." if len(chosen) > 12 else "")
    fig.suptitle(
        f"#{row.index} {row.label}: {row.status}, max|diff| {fmt_sci(row.max_abs)}, "
        f"rel err {fmt_sci(row.rel_err)}, cosine {fmt_fixed(row.cosine)}\n"
        f"sample {sample}, channels [{shown}] of {ra.shape[0]}",
        fontsize=10,
    )
    return fig


def _choose_channels(
    ra: np.ndarray, rb: np.ndarray, channels: Sequence[int] | None, k: int, passed: bool
) -> list[int]:
    c = ra.shape[0]
    if channels is not None:
        chosen = [int(i) for i in channels]
        bad = [i for i in chosen if not -c <= i < c]
        if bad:
            raise IndexError(f"`channels` must be in [0, {c}). Received: {bad}")
        return chosen
    if passed or c <= k:
        return list(range(min(c, k)))
    err = np.nan_to_num(np.abs(rb - ra), nan=np.inf).reshape(c, -1).max(axis=1)
    return sorted(int(i) for i in np.argsort(-err, kind="stable")[:k])


def _plot_vectors(
    row: LayerParity, va: np.ndarray, vb: np.ndarray, same: bool, labels: tuple[str, str]
) -> Figure:
    a, b = labels
    fig = Figure(figsize=(10.0, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=same)
    top.plot(va, lw=1.2, label=f"{a}: {row.name}")
    top.plot(vb, lw=1.0, ls="--", label=f"{b}: {row.name_b}")
    top.set_ylabel("value")
    top.legend(fontsize=8)
    if same:
        bottom.plot(vb - va, color="C3", lw=1.0)
        bottom.axhline(0, color="0.5", lw=0.8)
        bottom.set_ylabel(f"{b} - {a}")
        bottom.set_xlabel("feature (flattened, channels-first order)")
    else:
        bottom.text(0.5, 0.5, f"shapes differ: {fmt_shape(row.shape)} vs {fmt_shape(row.shape_b)}",
                    ha="center", va="center", transform=bottom.transAxes)  # fmt: skip
        bottom.set_axis_off()
    fig.suptitle(
        f"#{row.index} {row.label}: {row.status}, max|diff| {fmt_sci(row.max_abs)}, "
        f"rel err {fmt_sci(row.rel_err)}",
        fontsize=10,
    )
    return fig
