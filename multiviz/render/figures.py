"""matplotlib figures: feature-map grids, aggregate maps, overlays, layer statistics, attribution maps.

Every function returns a ``matplotlib.figure.Figure``. Without ``ax=`` it
makes its own ``Figure()`` (object-oriented API: no pyplot, nothing left in a
global figure list); with ``ax=`` it draws there and returns that axes'
figure. A grid of maps is ONE ``imshow`` of a NumPy montage, never one axes
per map.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from multiviz.attribution.maps import normalize_maps as scale_each_sample
from multiviz.core.layout import infer_layout, take_sample, to_channels_last
from multiviz.core.normalize import NormInfo
from multiviz.core.normalize import normalize as normalize_maps
from multiviz.core.reduce import aggregate
from multiviz.core.stats import LayerStats, layer_stats
from multiviz.render.colors import background_color, default_cmap, get_cmap
from multiviz.render.montage import Tiling, montage, tiling, vector_grid_shape
from multiviz.render.rgb import MapSelection, overlay, select_maps

__all__ = [
    "plot_aggregate",
    "plot_explanations",
    "plot_feature_maps",
    "plot_layer_stats",
    "plot_overlay",
]

DPI = 100
#: how each normalization mode reads in a title
_MODE_WORDS = {
    "map": "each map scaled to its own min-max",
    "layer": "one scale for all maps",
    "percentile": "one scale, clipped at percentiles",
    "symmetric": "0 at the centre colour, scaled by max |v|",
    "none": "values clipped to [0, 1]",
}
_LABEL_STROKE = [patheffects.withStroke(linewidth=1.6, foreground="black")]
#: above this many tiles, a grid of consecutive channels is labelled on its axes
#: (row start, column offset) instead of tile by tile: 500 labels cost seconds
MAX_TILE_LABELS = 128
MIN_LABEL_PX = 14  # tiles drawn smaller than this get no label of their own
TARGET_PX, MAX_PX, MIN_WIDTH_IN = 700, 1000, 4.5


# --------------------------------------------------------------------------- helpers


def _root_figure(ax: Axes) -> Figure:
    get = getattr(ax, "get_figure", None)
    try:
        fig = get(root=True) if get is not None else ax.figure
    except TypeError:  # matplotlib < 3.10: no `root`
        fig = ax.figure
    return fig


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return _root_figure(ax), ax
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _image_figsize(
    shape: tuple[int, int], long_side: tuple[float, float] = (5.0, 10.0), extra_w: float = 0.0
) -> tuple[float, float]:
    """Figure size that shows a ``shape`` image large enough, keeping its aspect."""
    h, w = max(shape[0], 1), max(shape[1], 1)
    long_in = float(np.clip(max(h, w) / 40.0, *long_side))
    fw, fh = long_in * w / max(h, w), long_in * h / max(h, w)
    return max(fw, 4.5) + extra_w, max(fh, 2.0) + 0.6  # room for the title


def _display_scale(shape: tuple[int, int]) -> float:
    """Screen pixels per montage pixel: a whole number (crisp) up to 1000 px, else less."""
    long_px = max(shape[0], shape[1], 1)
    if long_px > MAX_PX:
        return MAX_PX / long_px
    return float(max(1, min(round(TARGET_PX / long_px), MAX_PX // long_px)))


def _grid_figure(
    image_in: tuple[float, float], *, ticks: bool, colorbar: bool
) -> tuple[Figure, Axes, Axes | None]:
    """A Figure laid out by hand around one image: no layout engine, so drawing
    stays cheap however many tiles the image holds."""
    iw, ih = image_in
    left, bottom = (0.75, 0.5) if ticks else (0.1, 0.1)
    top = 0.55  # a two-line title
    right = 0.1 + (1.35 if colorbar else 0.0)
    width = left + iw + right
    if width < MIN_WIDTH_IN:  # room for the title: centre the image
        extra = (MIN_WIDTH_IN - width) / 2
        left, right, width = left + extra, right + extra, MIN_WIDTH_IN
    height = bottom + ih + top
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, iw / width, ih / height))
    cax = None
    if colorbar:
        box = ((left + iw + 0.15) / width, bottom / height, 0.18 / width, ih / height)
        cax = fig.add_axes(box)
    return fig, ax, cax


def _axes_pixels(ax: Axes) -> tuple[float, float]:
    fig = _root_figure(ax)
    box = ax.get_position()
    return box.width * fig.get_figwidth() * fig.dpi, box.height * fig.get_figheight() * fig.dpi


def _colorbar(
    fig: Figure,
    ax: Axes,
    cmap: Colormap,
    info: NormInfo | None,
    label: str | None = None,
    cax: Axes | None = None,
) -> None:
    """A colorbar in real units when one range was used, else in scaled units."""
    rng = info.common_range() if info is not None else None
    if rng is None or (info is not None and info.mode == "map" and info.constant.size > 1):
        lo, hi = 0.0, 1.0
        label = label or "scaled value (each map: 0 = its min, 1 = its max)"
    else:
        lo, hi = rng
        if lo == hi:  # a flat layer: drawn at the middle colour, which is its value
            lo, hi = lo - 0.5, hi + 0.5
        label = label or "activation"
    extend = "both" if info is not None and info.mode == "percentile" else "neither"
    sm = ScalarMappable(norm=Normalize(lo, hi), cmap=cmap)
    if cax is not None:
        fig.colorbar(sm, cax=cax, label=label, extend=extend)
    else:
        fig.colorbar(sm, ax=ax, shrink=0.85, label=label, extend=extend)


def _title(sel: MapSelection, what: str) -> str:
    shown = len(sel.channels)
    head = f"{shown} of {sel.total} {what}" if shown < sel.total else f"{sel.total} {what}"
    if sel.sample is not None:
        head += f", sample {sel.sample}"
    return f"{head}\n{_MODE_WORDS.get(sel.mode, sel.mode)}"


def _label(sel: MapSelection, channel: int) -> str:
    flags = sel.info.flags(int(channel))
    return f"#{channel}" + (f" {flags}" if flags else "")


# --------------------------------------------------------------------------- feature maps


def plot_feature_maps(
    maps: np.ndarray,
    *,
    sample: int = 0,
    max_maps: int | None = None,
    channels: Sequence[int] | np.ndarray | None = None,
    cmap: str | Colormap | None = None,
    normalize: str = "map",
    percentile: Sequence[float] = (1, 99),
    ncols: int | None = None,
    pad: int = 1,
    labels: bool = True,
    colorbar: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
    layout: str | None = None,
) -> Figure:
    """Draw feature maps as one labelled montage (one ``imshow``).

    Args:
        maps: ``(C, H, W)``, ``(N, C, H, W)`` (``sample`` picks one), ``(C, L)``
            (drawn as stacked horizontal strips, channel numbers on the y axis),
            ``(F,)`` (a vector, wrapped row-major into a near-square grid,
            indices on the axes), or an entry of :class:`~multiviz.Activations`.
        sample: index into the batch axis, when there is one.
        max_maps: draw at most this many maps (the title says how many of how many).
        channels: which channels, in which order (e.g. from
            :func:`multiviz.select_channels`); default all.
        cmap: colormap; default ``"gray"``, ``"RdBu_r"`` with ``normalize="symmetric"``.
        normalize: scaling mode (:func:`multiviz.normalize`).
        percentile: for ``normalize="percentile"``.
        ncols: tiles per row (default near-square).
        pad: background pixels between tiles.
        labels: show channel numbers: on each tile (``"#12"``), with a flag for
            special maps (``"#12 const"``, ``"nan"``, ``"inf"``, in orange). A
            grid of more than 128 consecutive channels is labelled on its axes
            instead (row start + column offset; flagged tiles keep their own
            label), which keeps it readable and fast. Tiles drawn too small to
            hold a label get none.
        colorbar: add a colorbar — in real activation units for the one-range
            modes (``"layer"``, ``"percentile"``, ``"symmetric"``, ``"none"``),
            in scaled units for ``"map"``.
        title: figure title; default says what is shown and how it is scaled.
        ax: draw into this axes instead of a new figure.
        layout: ``"NCL"`` / ``"NF"`` for batches of 1-D maps / vectors.

    Returns:
        The Figure (``ax``'s figure when ``ax`` is given).

    Raises:
        ValueError: bad mode, colormap or channels.
        InputShapeError: the array's rank is not a canonical layout.

    Example:
        >>> fig = plot_feature_maps(np.random.rand(2, 16, 12, 10), sample=1, max_maps=8)
        >>> len(fig.axes[0].images), len(fig.axes[0].texts)
        (1, 8)
    """
    sel = select_maps(
        maps,
        sample=sample,
        channels=channels,
        max_maps=max_maps,
        normalize=normalize,
        percentile=percentile,
        layout=layout,
    )
    cm = get_cmap(cmap or default_cmap(normalize))
    bg = np.array(background_color(cm)) / 255.0
    if sel.layout == "F":
        pad = 0  # one tile: a border adds nothing, and tick positions stay simple
    grid = montage(sel.values, ncols=ncols, pad=pad, layout=sel.layout)
    t = tiling(sel.values, ncols=ncols, pad=pad, layout=sel.layout)
    strips = sel.layout == "CL" and t.grid[1] == 1
    tiles = not strips and sel.layout != "F"

    scale = _display_scale(grid.shape) if ax is None else _fit_scale(ax, grid.shape)
    how = _label_style(sel, t, scale) if (tiles and labels) else "none"
    if ax is not None:
        fig, cax = _root_figure(ax), None
    elif strips:
        image_in = (6.5, float(np.clip(0.25 * t.count + 0.5, 2.0, 9.0)))
        fig, ax, cax = _grid_figure(image_in, ticks=True, colorbar=colorbar)
    else:
        image_in = (grid.shape[1] * scale / DPI, grid.shape[0] * scale / DPI)
        ticks = sel.layout == "F" or how == "axes"
        fig, ax, cax = _grid_figure(image_in, ticks=ticks, colorbar=colorbar)

    h, w = grid.shape
    # 1-D strips: x in data coordinates is the position along L (the border shifted out)
    x0 = -t.pad - 0.5 if strips else -0.5
    ax.imshow(
        grid,
        cmap=cm.with_extremes(bad=bg),
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        extent=(x0, x0 + w, h - 0.5, -0.5),
        aspect="auto" if strips else "equal",
    )
    if strips:
        _strip_axes(ax, sel, t)
    elif sel.layout == "F":
        _vector_axes(ax, sel)
    else:
        _tile_labels(ax, sel, t, scale, how)
    if colorbar:
        _colorbar(fig, ax, cm, sel.info, cax=cax)
    if title is None:
        what = {"CHW": "channels", "CL": "1-D channels"}.get(sel.layout, "features")
        title = _vector_title(sel) if sel.layout == "F" else _title(sel, what)
    ax.set_title(title, fontsize=10)
    return fig


def _fit_scale(ax: Axes, shape: tuple[int, int]) -> float:
    """Screen pixels per montage pixel when the montage fills ``ax`` (equal aspect)."""
    ax_w, ax_h = _axes_pixels(ax)
    return min(ax_w / max(shape[1], 1), ax_h / max(shape[0], 1))


def _label_style(sel: MapSelection, t: Tiling, scale: float) -> str:
    """``"tiles"`` (a label on each tile), ``"axes"`` (row start / column offset
    on the axes, for big grids of consecutive channels) or ``"none"``."""
    ch = sel.channels
    consecutive = len(ch) > 1 and bool(np.all(np.diff(ch) == 1))
    readable = min(t.tile) * scale >= MIN_LABEL_PX
    if consecutive and t.grid[1] > 1 and (len(ch) > MAX_TILE_LABELS or not readable):
        return "axes"
    return "tiles" if readable else "none"


def _tile_labels(ax: Axes, sel: MapSelection, t: Tiling, scale: float, how: str) -> None:
    """Channel numbers: on each tile, or on the axes (+ on flagged tiles only)."""
    flagged = sel.info.constant | sel.info.has_nan | sel.info.has_inf
    if how == "axes":
        _row_column_axes(ax, sel, t)
        chosen = [i for i, ch in enumerate(sel.channels) if flagged[ch]][:MAX_TILE_LABELS]
        if min(t.tile) * scale < MIN_LABEL_PX:
            chosen = []
    else:
        ax.set_axis_off()
        chosen = list(range(len(sel.channels))) if how == "tiles" else []
    if not chosen:
        return
    size = float(np.clip(0.2 * min(t.tile) * scale * 72.0 / DPI, 4.0, 9.0))
    for i in chosen:
        ch = int(sel.channels[i])
        y, x = t.origin(i)
        ax.text(
            x - 0.5 + 1.0 / scale,
            y - 0.5 + 1.0 / scale,
            _label(sel, ch),
            fontsize=size,
            color="#ffb000" if flagged[ch] else "white",
            ha="left",
            va="top",
            path_effects=_LABEL_STROKE,
        )


def _row_column_axes(ax: Axes, sel: MapSelection, t: Tiling) -> None:
    """Big grids: channel = the row's first channel (y axis) + column offset (x axis)."""
    (h, w), (rows, cols), p = t.tile, t.grid, t.pad
    ystep = max(1, math.ceil(rows / 32))
    xstep = max(1, math.ceil(cols / 32))
    ax.set_yticks([p + r * (h + p) + (h - 1) / 2 for r in range(0, rows, ystep)])
    ax.set_yticklabels([f"#{sel.channels[r * cols]}" for r in range(0, rows, ystep)], fontsize=7)
    ax.set_xticks([p + c * (w + p) + (w - 1) / 2 for c in range(0, cols, xstep)])
    ax.set_xticklabels([f"+{c}" for c in range(0, cols, xstep)], fontsize=7)
    ax.tick_params(length=0, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("channel = row start + column offset", fontsize=8)


def _strip_axes(ax: Axes, sel: MapSelection, t: Tiling) -> None:
    """Axes for stacked 1-D strips: channel numbers on y, position along L on x."""
    step = max(1, math.ceil(len(sel.channels) / 40))
    rows = range(0, len(sel.channels), step)
    ax.set_yticks([t.origin(i)[0] + (t.tile[0] - 1) / 2 for i in rows])
    ax.set_yticklabels([_label(sel, int(sel.channels[i])) for i in rows], fontsize=7)
    ax.set_ylabel("channel")
    ax.set_xlabel("position")


def _vector_axes(ax: Axes, sel: MapSelection) -> None:
    """Axes for a wrapped vector: row starts on the y axis, column offsets on x."""
    rows, cols = vector_grid_shape(len(sel.values))
    ystep = max(1, math.ceil(rows / 16))
    xstep = max(1, math.ceil(cols / 16))
    ax.set_yticks(list(range(0, rows, ystep)))
    ax.set_yticklabels([str(r * cols) for r in range(0, rows, ystep)], fontsize=7)
    ax.set_xticks(list(range(0, cols, xstep)))
    ax.set_xticklabels([f"+{c}" for c in range(0, cols, xstep)], fontsize=7)
    ax.set_ylabel("feature index (row start)")
    ax.set_xlabel("offset in row")


def _vector_title(sel: MapSelection) -> str:
    rows, cols = vector_grid_shape(len(sel.values))
    head = f"vector of {sel.total} features"
    if len(sel.values) < sel.total:
        head = f"{len(sel.values)} of {sel.total} features"
    if sel.sample is not None:
        head += f", sample {sel.sample}"
    flags = sel.info.flags(())
    return (
        f"{head} ({'; '.join([flags] if flags else [])}{'; ' if flags else ''}"
        f"row-major in a {rows}x{cols} grid)\n"
        + ("scaled to its min-max" if sel.mode == "map" else _MODE_WORDS.get(sel.mode, sel.mode))
    )


# --------------------------------------------------------------------------- aggregate


def plot_aggregate(
    maps: np.ndarray,
    reduce: str = "mean",
    *,
    cmap: str | Colormap = "plasma",
    sample: int = 0,
    channels: Sequence[int] | np.ndarray | None = None,
    colorbar: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
    layout: str | None = None,
) -> Figure:
    """Draw the channels of one sample reduced to one map (mean, max, std, l2, sum).

    2-D maps give an image with a colorbar in real units; 1-D maps a line
    over position; a vector its values with the reduction as a horizontal line.

    Args:
        maps: ``(C, H, W)``, ``(N, C, H, W)`` (``sample`` picks one),
            ``(C, L)`` or ``(F,)``.
        reduce: ``"mean"``, ``"max"``, ``"std"``, ``"l2"`` or ``"sum"`` over channels.
        cmap: colormap of the 2-D map.
        sample: index into the batch axis, when there is one.
        channels: reduce over these channels only.
        colorbar: add a colorbar (2-D maps).
        title: default names the reduction and the channel count.
        ax: draw into this axes.
        layout: ``"NCL"`` / ``"NF"`` for batches of 1-D maps / vectors.

    Returns:
        The Figure.

    Example:
        >>> fig = plot_aggregate(np.random.rand(8, 12, 10), "max")
        >>> len(fig.axes[0].images)
        1
    """
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    batched = lay.startswith("N")
    arr, lay = take_sample(arr, lay, sample)
    agg = aggregate(arr, reduce, channels, layout=lay)
    n_ch = arr.shape[0] if channels is None else len(channels)
    where = f", sample {sample}" if batched else ""
    if lay == "CHW":
        scaled, info = normalize_maps(agg[None], "layer", return_info=True)
        fig, ax = _figure_and_axes(
            ax, _image_figsize(agg.shape, (4.0, 6.0), 1.2 if colorbar else 0)
        )
        cm = get_cmap(cmap)
        ax.imshow(scaled[0], cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_axis_off()
        if colorbar:
            _colorbar(fig, ax, cm, info, label=f"{reduce} over channels")
        default = f"{reduce} over {n_ch} channels{where}"
    elif lay == "CL":
        fig, ax = _figure_and_axes(ax, (6.0, 3.0))
        ax.plot(np.arange(agg.shape[0]), agg, lw=1.2)
        ax.set_xlabel("position")
        ax.set_ylabel(f"{reduce} over channels")
        ax.grid(alpha=0.3)
        default = f"{reduce} over {n_ch} channels (1-D){where}"
    else:  # a vector: its values, and their reduction
        fig, ax = _figure_and_axes(ax, (6.0, 3.0))
        idx = np.arange(arr.shape[0]) if channels is None else np.asarray(channels)
        ax.plot(np.arange(len(idx)), arr[idx], drawstyle="steps-mid", lw=1.0, label="features")
        value = float(agg)
        ax.axhline(value, color="C3", lw=1.2, label=f"{reduce} = {value:.4g}")
        ax.set_xlabel("feature")
        ax.set_ylabel("value")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        default = f"{reduce} over {len(idx)} features{where}"
    ax.set_title(default if title is None else title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- overlay


def plot_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.5,
    cmap: str | Colormap = "jet",
    normalize: str = "map",
    percentile: Sequence[float] = (1, 99),
    colorbar: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw a heatmap (a CAM, an aggregate map) over an image.

    The picture is :func:`multiviz.render.rgb.overlay_image`, drawn with one
    ``imshow``; the optional colorbar shows the heatmap's own values.

    Args:
        image: ``(H, W, 3)`` uint8 or float in [0, 1], or ``(H, W)`` grey.
            Channels-first ``(3, H, W)`` raises (use ``mv.to_channels_last``).
        heatmap: ``(h, w)``, upsampled bilinearly to the image's size.
        alpha: weight of the heatmap colour.
        cmap: colormap of the heatmap.
        normalize: how the heatmap is scaled (:func:`multiviz.normalize`).
        percentile: for ``normalize="percentile"``.
        colorbar: add a colorbar of the heatmap's values.
        title: axes title.
        ax: draw into this axes.

    Returns:
        The Figure.

    Raises:
        InputShapeError: channels-first or batched image, heatmap not 2-D.

    Example:
        >>> fig = plot_overlay(np.zeros((32, 40, 3)), np.random.rand(4, 5))
        >>> len(fig.axes[0].images)
        1
    """
    rgb, info = overlay(
        image, heatmap, alpha=alpha, cmap=cmap, normalize=normalize, percentile=percentile
    )
    size = _image_figsize(rgb.shape[:2], (4.0, 6.0), 1.2 if colorbar else 0.0)
    fig, ax = _figure_and_axes(ax, size)
    ax.imshow(rgb, interpolation="antialiased")
    ax.set_axis_off()
    if colorbar:
        _colorbar(fig, ax, get_cmap(cmap), info, label="heatmap value")
    if title is not None:
        ax.set_title(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- layer statistics


def plot_layer_stats(
    activations_or_stats: Mapping[str, np.ndarray] | Iterable[LayerStats],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    eps: float = 0.0,
    bounds: Mapping[str, Sequence[float] | None] | None = None,
) -> Figure:
    """Per-layer activation ranges and dead / saturated fractions along depth.

    Top: each layer's 1st-99th percentile band, median, mean, min and max —
    ranges that shrink towards 0 with depth are vanishing activations. Bottom:
    fraction of dead channels (never > 0 over every input), of saturated
    values (at a bounded activation's bound; see :mod:`multiviz.core.stats`)
    and of zeros. With ``ax=`` both
    go on one axes, the fractions on a right-hand axis.

    Args:
        activations_or_stats: captured activations (layer name -> batch
            array; statistics are computed with :func:`multiviz.layer_stats`),
            or the records of :func:`multiviz.layer_stats` /
            :class:`multiviz.core.reduce.RunningLayerStats`.
        ax: draw into this axes.
        title: default says how many samples the statistics cover.
        eps: a value counts as zero when ``|v| <= eps`` (activations only).
        bounds: layer name -> bounds of its activation, for layers the
            activations do not know (activations only).

    Returns:
        The Figure.

    Raises:
        ValueError: no layers.

    Example:
        >>> acts = {"c1": np.random.rand(2, 4, 6, 5), "c2": np.random.rand(2, 8, 3, 2)}
        >>> fig = plot_layer_stats(acts)
        >>> [a.get_ylabel() for a in fig.axes]
        ['activation value', 'fraction']
    """
    if isinstance(activations_or_stats, Mapping):
        records = list(layer_stats(activations_or_stats, eps=eps, bounds=bounds))
    else:
        records = list(activations_or_stats)
    if not records:
        raise ValueError("plot_layer_stats needs at least one layer. Received none.")
    n = len(records)
    x = np.arange(n)
    col = {name: np.array([getattr(r, name) for r in records], dtype=np.float64) for name in (
        "min", "p01", "p50", "p99", "max", "mean", "dead_fraction", "saturated_fraction",
        "zero_fraction", "nonfinite_fraction",
    )}  # fmt: skip

    if ax is None:
        fig = Figure(figsize=(max(6.0, 0.32 * n + 2.5), 6.0), dpi=DPI, layout="constrained")
        ax_r, ax_f = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        twin = False
    else:
        fig, ax_r = _root_figure(ax), ax
        ax_f = ax.twinx()
        twin = True

    # ranges
    ax_r.fill_between(x, col["p01"], col["p99"], color="C0", alpha=0.25, lw=0, label="1st-99th pct")
    ax_r.plot(x, col["p50"], "o-", color="C0", ms=3, lw=1.2, label="median")
    ax_r.plot(x, col["mean"], "--", color="C2", lw=1.0, label="mean")
    ax_r.plot(x, col["max"], "^", color="0.35", ms=4, ls="none", label="max")
    ax_r.plot(x, col["min"], "v", color="0.35", ms=4, ls="none", label="min")
    ax_r.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    linthresh = _symlog_threshold(col["min"], col["max"])
    if linthresh is not None:
        ax_r.set_yscale("symlog", linthresh=linthresh)
    if np.nanmin(np.r_[col["min"], 0.0]) >= 0:  # nothing negative: no empty lower half
        ax_r.set_ylim(bottom=-0.5 * linthresh if linthresh is not None else None)
    ax_r.set_ylabel("activation value" + (" (symlog)" if linthresh is not None else ""))
    ax_r.grid(alpha=0.3)
    if twin:
        ax_r.legend(fontsize=7, loc="upper left", ncols=2)
    else:
        ax_r.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=5, frameon=False)

    # fractions
    inputs = max(r.samples for r in records)
    parts = [("dead_fraction", f"dead channels (never > 0 over {inputs} inputs)", "C3"),
             ("saturated_fraction", "saturated values", "C1"),
             ("zero_fraction", "zero values", "0.55")]  # fmt: skip
    if np.nansum(col["nonfinite_fraction"]) > 0:
        parts.append(("nonfinite_fraction", "NaN/Inf", "C4"))
    width = 0.8 / len(parts)
    for k, (key, label, color) in enumerate(parts):
        if twin:
            ax_f.plot(x, col[key], "s-", color=color, ms=3, lw=1.0, label=label)
        else:
            ax_f.bar(
                x + (k - (len(parts) - 1) / 2) * width, col[key], width, color=color, label=label
            )
    ax_f.set_ylim(0.0, 1.05)
    ax_f.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_f.set_ylabel("fraction")
    if twin:
        ax_f.legend(fontsize=7, loc="upper right")
    else:
        ax_f.legend(
            fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=len(parts), frameon=False
        )
    if not twin:
        ax_f.grid(alpha=0.3, axis="y")

    bottom = ax_r if twin else ax_f
    step = max(1, math.ceil(n / 40))
    bottom.set_xticks(x[::step])
    bottom.set_xticklabels(
        [records[i].name for i in x[::step]], rotation=45, ha="right", fontsize=8
    )
    bottom.set_xlabel("layer (input -> output)")
    if title is None:
        samples = records[0].samples
        title = f"Activation statistics per layer ({samples} sample{'s' if samples != 1 else ''})"
    if twin:
        ax_r.set_title(title, fontsize=10)
    else:
        fig.suptitle(title, fontsize=11)
    return fig


def _symlog_threshold(lo: np.ndarray, hi: np.ndarray) -> float | None:
    """A symlog threshold when layer ranges span over two decades, else ``None``."""
    scale = np.fmax(np.abs(lo), np.abs(hi))
    scale = scale[np.isfinite(scale) & (scale > 0)]
    if scale.size < 2 or scale.max() / scale.min() < 100.0:
        return None
    return float(10.0 ** np.floor(np.log10(scale.min() / 10.0)))


# --------------------------------------------------------------------------- attribution maps


def plot_explanations(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    sample: int = 0,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    size: float = 2.6,
) -> Figure:
    """One row: the image, then each method's map laid over it, titled.

    Args:
        image: channels-last display image(s): ``(H, W)``, ``(H, W, C)`` or a
            batch ``(N, H, W, C)`` (then ``sample`` picks one). Floats are
            shown as they are where they lie in ``[0, 1]``, else min-max scaled.
        maps: method name -> ``(N, H, W)`` maps (e.g. :func:`multiviz.explain`'s
            result); a ``(N, C, H, W)`` entry (guided backprop without
            aggregation) is drawn as a colour image instead of an overlay.
        sample: which sample of the batch to draw.
        alpha: the heatmap's opacity over the image.
        cmap: the heatmap's matplotlib colormap.
        size: the side of one panel, in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot; save it with
        ``fig.savefig(...)``).

    Example:
        >>> heat = np.zeros((1, 8, 8)); heat[0, 2:5, 3:6] = 1.0
        >>> fig = plot_explanations(np.full((8, 8, 3), 0.5), {"grad_cam": heat})
        >>> [ax.get_title() for ax in fig.axes]
        ['Input', 'Grad-CAM']
    """
    from multiviz.attribution.explain import TITLES  # each method's name for a title

    img = np.asarray(image)
    if img.ndim == 4:
        img = img[sample]
    img = _displayable(img)
    fig = Figure(figsize=(size * (1 + len(maps)), size + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 1 + len(maps)))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
    axes[0].set_title("Input")
    for ax, (name, batch) in zip(axes[1:], maps.items(), strict=True):
        m = np.asarray(batch)
        m = m[sample] if m.ndim in (3, 4) else m
        if m.ndim == 3:  # (C, H, W): a per-channel attribution shown as an image
            ax.imshow(_displayable(to_channels_last(scale_each_sample(m[None]))[0]))
        else:
            _overlay(ax, img, m, alpha, cmap)
        ax.set_title(TITLES.get(name, name))
    for ax in axes:
        ax.set_axis_off()
    return fig


def _displayable(img: np.ndarray) -> np.ndarray:
    """An image matplotlib shows as meant: (H, W) or (H, W, 3|4), floats in [0, 1]."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = np.nan_to_num(img.astype(np.float32))
    if img.size and (img.min() < 0.0 or img.max() > 1.0):
        img = scale_each_sample(img[None])[0]
    return img


def _overlay(ax: Axes, img: np.ndarray, heat: np.ndarray, alpha: float, cmap: str) -> None:
    """The heatmap blended over the image, drawn by :func:`plot_overlay`.

    Maps already in ``[0, 1]`` are drawn as they are (an all-zero map stays
    "cold"); raw maps are min-max scaled first.
    """
    heat = np.nan_to_num(np.asarray(heat, np.float32))
    scaled = heat.size > 0 and heat.min() >= 0.0 and heat.max() <= 1.0
    plot_overlay(img, heat, alpha=alpha, cmap=cmap, normalize="none" if scaled else "map", ax=ax)
