"""matplotlib figures: feature-map grids, aggregate maps, overlays, layer statistics, attribution maps.

Every function returns a ``matplotlib.figure.Figure``. Without ``ax=`` it
makes its own ``Figure()`` (object-oriented API: no pyplot, nothing left in a
global figure list); with ``ax=`` it draws there and returns that axes'
figure. A grid of maps is ONE ``imshow`` of a NumPy montage, never one axes
per map.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from multiviz.attribution.maps import clip_outliers
from multiviz.attribution.maps import normalize_maps as scale_each_sample
from multiviz.core.layout import infer_layout, take_sample, to_channels_last
from multiviz.core.normalize import NormInfo, check_mode, resolve_mode
from multiviz.core.normalize import normalize as normalize_maps
from multiviz.core.params import names_parameters
from multiviz.core.reduce import aggregate
from multiviz.core.stats import LayerStats, layer_stats
from multiviz.core.views import plural
from multiviz.render.colors import background_color, default_cmap, get_cmap
from multiviz.render.montage import Tiling, montage, tiling, vector_grid_shape
from multiviz.render.rgb import MapSelection, overlay, overlay_style, select_maps

__all__ = [
    "figure_png",
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
MIN_LABEL_PT = 4.0  # the smallest number drawn on a tile
FLAG_COLOR = "#ffb000"  # special maps: constant, NaN, Inf
TARGET_PX, MAX_PX, MIN_WIDTH_IN = 700, 1000, 4.5


# --------------------------------------------------------------------------- helpers


def _root_figure(ax: Axes) -> Figure:
    from matplotlib.axes import Axes as AxesType

    if not isinstance(ax, AxesType):
        raise TypeError(
            f"`ax` must be a matplotlib Axes (fig.add_subplot()) or None. Received: ax={ax!r:.60}"
        )
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
    head = f"{shown} of {plural(sel.total, what)}" if shown < sel.total else plural(shown, what)
    if sel.sample is not None:
        head += f", sample {sel.sample}"
    how = _MODE_WORDS.get(sel.mode, sel.mode)
    info = sel.info
    special = int(np.sum((info.constant | info.has_nan | info.has_inf)[sel.channels]))
    if special:
        how += f"; orange frame: {plural(special, 'special map')} (constant, NaN or Inf)"
    return f"{head}\n{how}"


def _label(sel: MapSelection, channel: int) -> str:
    flags = sel.info.flags(int(channel))
    return f"#{channel}" + (f" {flags}" if flags else "")


def figure_png(fig: Figure, dpi: float = DPI) -> bytes:
    """A figure as PNG bytes (what a record's ``_repr_png_`` returns).

    Example:
        >>> figure_png(Figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- feature maps


@names_parameters
def plot_feature_maps(
    maps: np.ndarray,
    *,
    sample: int = 0,
    max_maps: int | None = None,
    channels: Sequence[int] | np.ndarray | None = None,
    cmap: str | Colormap | None = None,
    normalize: str = "auto",
    percentile: Sequence[float] = (1, 99),
    ncols: int | None = None,
    pad: int = 1,
    labels: bool = True,
    colorbar: bool | None = None,
    title: str | None = None,
    name: str | None = None,
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
        cmap: colormap; default ``"gray"``, or ``"RdBu_r"`` (diverging, 0 at
            its white centre) when the scaling is symmetric.
        normalize: scaling mode (:func:`multiviz.normalize`); default
            ``"auto"``: ``"symmetric"`` when the sample holds negative values
            (signed maps, drawn centred on zero with one scale), else ``"map"``.
        percentile: for ``normalize="percentile"``.
        ncols: tiles per row (default near-square).
        pad: background pixels between tiles.
        labels: show channel numbers: on each tile (``"#12"``), sized to fit
            it; a special map (constant, NaN, Inf) gets an orange frame and,
            where the tile has room, the word (``"#12 const"``). A grid of more
            than 128 consecutive channels is numbered on its axes instead (row
            start + column offset), which keeps it readable and fast. Tiles
            drawn too small to hold a number get none.
        colorbar: add a colorbar in real activation units; default ``None``
            adds one whenever the tiles share one scale (every mode but
            ``"map"``). ``True`` with ``"map"`` shows scaled units.
        title: figure title; default says what is shown and how it is scaled.
        name: what the maps are (a layer name): the default title starts with it.
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
    cm = get_cmap(cmap or default_cmap(sel.mode))
    if colorbar is None:  # a colorbar whenever the tiles share one scale
        colorbar = sel.info.common_range() is not None
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
        what = {"CHW": "channel", "CL": "1-D channel"}.get(sel.layout, "feature")
        title = _vector_title(sel) if sel.layout == "F" else _title(sel, what)
        if name:
            title = f"{name}: {title}"
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
    """Channel numbers: on each tile, or on the axes; special maps framed in orange.

    A number is sized to fit inside its tile (height and width); the flag
    word ("const", "nan", "inf") is added only where it fits too, and the
    orange frame marks a special map at any tile size.
    """
    flagged = sel.info.constant | sel.info.has_nan | sel.info.has_inf
    special = [i for i, ch in enumerate(sel.channels) if flagged[ch]]
    if how == "axes":
        _row_column_axes(ax, sel, t)
        chosen = special[:MAX_TILE_LABELS]
    else:
        ax.set_axis_off()
        chosen = list(range(len(sel.channels))) if how == "tiles" else []
    if special:
        _frames(ax, t, special)
    (h, w), px = t.tile, 1.0 / scale
    for i in chosen:
        ch = int(sel.channels[i])
        text = _fitting_label(sel, ch, h * scale, w * scale)
        if text is None:
            continue
        y, x = t.origin(i)
        ax.text(
            x - 0.5 + px,
            y - 0.5 + px,
            text[0],
            fontsize=text[1],
            color=FLAG_COLOR if flagged[ch] else "white",
            ha="left",
            va="top",
            path_effects=_LABEL_STROKE,
        )


def _fitting_label(
    sel: MapSelection, channel: int, h_px: float, w_px: float
) -> tuple[str, float] | None:
    """The longest label of ``channel`` that fits a tile of ``h_px`` x ``w_px``
    screen pixels, with its font size in points; ``None`` if not even the number fits."""
    flags = sel.info.flags(channel)
    candidates = [f"#{channel} {flags}", f"#{channel}"] if flags else [f"#{channel}"]
    for text in candidates:
        # DejaVu Sans: about 0.65 em per character, 1.2 em of line height
        size_px = min(0.22 * h_px, 9.0 * DPI / 72.0, 0.9 * w_px / (0.65 * len(text)))
        size_pt = size_px * 72.0 / DPI
        if size_pt >= MIN_LABEL_PT:
            return text, float(size_pt)
    return None


def _frames(ax: Axes, t: Tiling, tiles: Sequence[int]) -> None:
    """One orange frame around each of ``tiles`` (one collection: cheap for hundreds)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    (h, w) = t.tile
    boxes = []
    for i in tiles:
        y, x = t.origin(i)
        boxes.append(Rectangle((x - 0.5, y - 0.5), w, h))
    ax.add_collection(
        PatchCollection(boxes, facecolor="none", edgecolor=FLAG_COLOR, linewidth=1.2, zorder=3)
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


@names_parameters
def plot_aggregate(
    maps: np.ndarray,
    reduce: str = "mean",
    *,
    cmap: str | Colormap | None = None,
    normalize: str = "auto",
    sample: int = 0,
    channels: Sequence[int] | np.ndarray | None = None,
    colorbar: bool = True,
    title: str | None = None,
    name: str | None = None,
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
        cmap: colormap of the 2-D map; default ``"plasma"``, or ``"RdBu_r"``
            (diverging, 0 at its white centre) for a signed map.
        normalize: how the 2-D map is scaled to colours; default ``"auto"``:
            ``"symmetric"`` (0 at the centre colour, ``±max|v|`` at the ends)
            when the map has negative values, else its min to max.
        sample: index into the batch axis, when there is one.
        channels: reduce over these channels only.
        colorbar: add a colorbar (2-D maps).
        title: default names the reduction and the channel count.
        name: what the maps are (a layer name): the default title starts with it.
        ax: draw into this axes.
        layout: ``"NCL"`` / ``"NF"`` for batches of 1-D maps / vectors.

    Returns:
        The Figure.

    Example:
        >>> fig = plot_aggregate(np.random.rand(8, 12, 10), "max")
        >>> len(fig.axes[0].images)
        1
    """
    check_mode(normalize, "normalize")
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    batched = lay.startswith("N")
    arr, lay = take_sample(arr, lay, sample)
    agg = aggregate(arr, reduce, channels, layout=lay)
    n_ch = arr.shape[0] if channels is None else len(channels)
    where = f", sample {sample}" if batched else ""
    if lay == "CHW":
        mode = resolve_mode(agg, normalize)
        scaled, info = normalize_maps(
            agg[None], "layer" if mode == "map" else mode, return_info=True
        )
        fig, ax = _figure_and_axes(
            ax, _image_figsize(agg.shape, (4.0, 6.0), 1.2 if colorbar else 0)
        )
        cm = get_cmap(cmap or ("RdBu_r" if mode == "symmetric" else "plasma"))
        ax.imshow(scaled[0], cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_axis_off()
        if colorbar:
            _colorbar(fig, ax, cm, info, label=f"{reduce} over channels")
        default = f"{reduce} over {plural(n_ch, 'channel')}{where}"
        if mode == "symmetric":
            default += "\n0 at the white centre colour"
    elif lay == "CL":
        fig, ax = _figure_and_axes(ax, (6.0, 3.0))
        ax.plot(np.arange(agg.shape[0]), agg, lw=1.2)
        ax.set_xlabel("position")
        ax.set_ylabel(f"{reduce} over channels")
        ax.grid(alpha=0.3)
        default = f"{reduce} over {plural(n_ch, 'channel')} (1-D){where}"
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
        default = f"{reduce} over {plural(len(idx), 'feature')}{where}"
    if name:
        default = f"{name}: {default}"
    ax.set_title(default if title is None else title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- overlay


@names_parameters
def plot_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float | None = None,
    cmap: str | Colormap | None = None,
    normalize: str | None = None,
    percentile: Sequence[float] = (1, 99),
    blend: str = "value",
    colorbar: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw a heatmap (a CAM, an aggregate map) over an image.

    The picture is :func:`multiviz.render.rgb.overlay_image`, drawn with one
    ``imshow``; the optional colorbar shows the heatmap's own values. By
    default the heatmap's opacity follows its value (the image shows through
    where the map is low) in ``"turbo"`` (``"RdBu_r"`` for a signed map);
    ``blend="uniform"`` gives the classic look (``"jet"`` at opacity 0.5).

    Args:
        image: ``(H, W, 3)`` uint8 or float in [0, 1], or ``(H, W)`` grey.
            Channels-first ``(3, H, W)`` raises (use ``mv.to_channels_last``).
        heatmap: ``(h, w)``, upsampled bilinearly to the image's size.
        alpha: the heatmap's largest opacity (default 0.6; 0.5 with ``"uniform"``).
        cmap: colormap of the heatmap (default: see above).
        normalize: how the heatmap is scaled (:func:`multiviz.normalize`);
            default ``"symmetric"`` for a signed map, else ``"map"``.
        percentile: for ``normalize="percentile"``.
        blend: ``"value"`` or ``"uniform"`` (:func:`multiviz.overlay_image`).
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
    cmap, mode, alpha = overlay_style(
        np.asarray(heatmap), blend=blend, cmap=cmap, normalize=normalize, alpha=alpha
    )
    rgb, info = overlay(
        image,
        heatmap,
        alpha=alpha,
        cmap=cmap,
        normalize=mode,
        percentile=percentile,
        blend=blend,
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


@names_parameters
def plot_layer_stats(
    activations_or_stats: Mapping[str, np.ndarray] | Iterable[LayerStats],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    eps: float = 0.0,
    bounds: Mapping[str, Sequence[float] | None] | None = None,
) -> Figure:
    """Per-layer activation ranges and dead / saturated / zero fractions, input at the top.

    Layers run down the vertical axis, one row each, so a name fits on every
    row however deep the network. Left: each layer's min-max whisker, its
    1st-99th percentile bar, median (dot) and mean (tick) — ranges that shrink
    towards 0 with depth are vanishing activations; the value axis is linear,
    or symmetric-log with its linear zone taken from the data's percentiles
    when values span many decades (at most about 8 decades shown). Right: the
    fraction of dead channels (never > 0 over every input), of saturated
    values (at a bounded activation's bound; see :mod:`multiviz.core.stats`;
    no bar where the layer has none) and of zeros per layer.
    Past 150 layers, rows are numbered by block (consecutive layers sharing a
    name prefix, shaded alternately) instead of one label per row; 500 layers
    fit in 2,500 x 6,000 pixels. With ``ax=`` both go on one axes, the
    fractions on a twin axis along the top.

    Args:
        activations_or_stats: captured activations (layer name -> batch
            array; statistics are computed with :func:`multiviz.layer_stats`),
            or the records of :func:`multiviz.layer_stats` /
            :class:`multiviz.RunningLayerStats`.
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
        A ReLU layer (zeros, some dead channels) and a sigmoid layer, whose
        bounds 0 and 1 the plain activations do not carry:

        >>> x = np.random.default_rng(0).normal(size=(2, 4, 6, 5))
        >>> acts = {"relu": np.maximum(x, 0), "sigmoid": 1 / (1 + np.exp(-8 * x))}
        >>> fig = plot_layer_stats(acts, bounds={"sigmoid": (0.0, 1.0)})
        >>> [a.get_xlabel() for a in fig.axes]
        ['activation value', 'fraction']
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['relu', 'sigmoid']
        >>> [t.get_text() for t in fig.legends[0].get_texts()][-3:]
        ['dead channels (never > 0 over 2 inputs)', 'saturated values', 'zero values']

        Random values in [0, 1) have no zeros, dead channels or bound: one
        panel, and the title says so.

        >>> fig = plot_layer_stats({"c1": np.random.rand(2, 4, 6, 5)})
        >>> len(fig.axes), fig.get_suptitle().splitlines()[-1]
        (1, 'no dead channels, zero values or saturated values in any layer')
    """
    if isinstance(activations_or_stats, Mapping):
        records = list(layer_stats(activations_or_stats, eps=eps, bounds=bounds))
    else:
        given = activations_or_stats
        records = list(given) if isinstance(given, Iterable) and not isinstance(given, str) else []
        if not all(isinstance(r, LayerStats) for r in records) or isinstance(given, str):
            raise TypeError(
                "`activations_or_stats` must be activations (layer name -> array) or what "
                f"mv.layer_stats returns. Received: {type(activations_or_stats).__name__}"
            )
    if not records:
        raise ValueError("plot_layer_stats needs at least one layer. Received none.")
    n = len(records)
    y = np.arange(n)
    col = {name: np.array([getattr(r, name, np.nan) for r in records], dtype=np.float64) for name in (
        "min", "p01", "p50", "p99", "max", "mean", "dead_fraction", "saturated_fraction",
        "zero_fraction", "nonfinite_fraction",
    )}  # fmt: skip
    names = [r.name for r in records]
    groups = _layer_groups(names) if n > MAX_ROW_LABELS else []
    samples = max(r.samples for r in records)
    parts = [("dead_fraction", f"dead channels (never > 0 over {plural(samples, 'input')})", "C3"),
             ("saturated_fraction", "saturated values", "C1"),
             ("zero_fraction", "zero values", "0.45"),
             ("nonfinite_fraction", "NaN/Inf", "C4")]  # fmt: skip
    unbounded = not np.isfinite(col["saturated_fraction"]).any()  # no layer can saturate
    measured = [p for p in parts if np.nan_to_num(col[p[0]]).max() > 0]
    if measured:  # dead, zero, saturated (where a layer can saturate), NaN/Inf (where any)
        parts = [
            p
            for p in parts
            if p[0] in ("dead_fraction", "zero_fraction")
            or (p[0] == "saturated_fraction" and not unbounded)
            or p in measured
        ]
    else:
        parts = []  # nothing to show: no empty panel

    twin = ax is not None
    if twin:
        fig, ax_r = _root_figure(ax), ax
        ax_f = ax.twiny() if parts else None
    else:
        fig, ax_r, ax_f = _stats_figure(n, names, groups, fractions=bool(parts))

    # ranges: whisker min-max, bar p01-p99, median, mean
    ax_r.hlines(y, col["min"], col["max"], color="0.55", lw=0.8, label="min to max", zorder=2)
    bar_h = 0.7 if n <= MAX_ROW_LABELS else 1.0
    ax_r.barh(
        y, col["p99"] - col["p01"], left=col["p01"], height=bar_h, color="C0", alpha=0.35,
        lw=0, label="1st-99th percentile", zorder=2,
    )  # fmt: skip
    dot = 3.5 if n <= MAX_ROW_LABELS else 1.5
    ax_r.plot(col["p50"], y, "o", color="C0", ms=dot, ls="none", label="median", zorder=3)
    ax_r.plot(col["mean"], y, "|", color="C2", ms=2 * dot + 2, mew=1.2, ls="none", label="mean",
              zorder=3)  # fmt: skip
    ax_r.axvline(0.0, color="0.35", lw=0.7, zorder=1)
    linthresh = _symlog_threshold(col)
    xlabel = "activation value"
    if linthresh is not None:
        ax_r.set_xscale("symlog", linthresh=linthresh, linscale=1.0)
        _limit_decades(ax_r, col, linthresh)
        _decade_ticks(ax_r, linthresh)
        inside = int(np.sum(np.fmax(np.abs(col["min"]), np.abs(col["max"])) < linthresh))
        xlabel += f" (symmetric log, linear within ±1e{round(math.log10(linthresh))}"
        xlabel += f"; {plural(inside, 'layer')} wholly inside)" if inside else ")"
    ax_r.set_xlabel(xlabel)
    ax_r.grid(alpha=0.3, axis="x")

    # fractions
    # past MAX_BARS rows are thin: each layer's bars fill its row, one stripe per fraction
    width = (0.8 if n <= MAX_BARS else 1.0) / max(len(parts), 1)
    for k, (key, label, color) in enumerate(parts):
        if not twin:
            offset = (k - (len(parts) - 1) / 2) * width
            ax_f.barh(y + offset, np.nan_to_num(col[key]), width, color=color, label=label, lw=0)
        else:
            ax_f.plot(col[key], y, "-", drawstyle="steps-mid", color=color, lw=1.0, label=label)
    if ax_f is not None:
        ax_f.set_xlim(0.0, 1.02)
        ax_f.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax_f.set_xlabel("fraction" + ("\n(no layer can saturate)" if unbounded else ""))
        ax_f.grid(alpha=0.3, axis="x")
        ax_f.set_ylim(n - 0.5, -0.5)
    ax_r.set_ylim(n - 0.5, -0.5)  # the input at the top
    _label_rows(
        ax_r,
        names,
        groups,
        shade=[a for a in (ax_r, ax_f) if a is not None and not (twin and a is ax_f)],
    )
    if ax_f is not None and not twin:
        ax_f.tick_params(axis="y", left=False, labelleft=False)
    if title is None:
        title = f"Activation statistics per layer, input at the top ({plural(samples, 'sample')})"
    if not parts:
        title += "\nno dead channels, zero values or saturated values in any layer"
    if twin:
        ax_r.legend(fontsize=7, loc="lower right")
        if ax_f is not None:
            ax_f.legend(fontsize=7, loc="upper right")
        ax_r.set_title(title, fontsize=10)
    else:
        axes = [a for a in (ax_r, ax_f) if a is not None]
        handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
        labels = [lb for a in axes for lb in a.get_legend_handles_labels()[1]]
        fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
        fig.suptitle(title, fontsize=11)
    return fig


#: up to this many layers, every row gets its name; beyond, blocks do
MAX_ROW_LABELS = 150
#: up to this many layers, fractions are bars with a gap between rows; beyond, stripes
MAX_BARS = 40
#: the most decades of |value| a symlog axis spans
MAX_DECADES = 7.0


def _stats_figure(
    n: int, names: Sequence[str], groups: Sequence[tuple[int, int, str]], fractions: bool
) -> tuple[Figure, Axes, Axes | None]:
    """The figure, sized by the layer count: one readable row per layer."""
    row_px = 13.0 if n <= 60 else 10.0 if n <= MAX_ROW_LABELS else float(np.clip(5200 / n, 3, 10))
    labels = names if not groups else [g[2] for g in groups]
    label_px = 6.2 * max((len(t) for t in labels), default=4) + 30
    height = (n * row_px + 190) / DPI
    width = (label_px + 620 + (300 if fractions else 0)) / DPI
    fig = Figure(figsize=(max(width, 6.0), max(height, 4.0)), dpi=DPI, layout="constrained")
    if not fractions:
        return fig, fig.add_subplot(), None
    ax_r, ax_f = fig.subplots(1, 2, sharey=True, width_ratios=[2.2, 1])
    return fig, ax_r, ax_f


def _label_rows(
    ax: Axes, names: Sequence[str], groups: Sequence[tuple[int, int, str]], shade: Sequence[Axes]
) -> None:
    """One label per row, or one per block with the blocks shaded alternately."""
    n = len(names)
    if not groups:
        ax.set_yticks(np.arange(n))
        ax.set_yticklabels(names, fontsize=8 if n <= 60 else 6.5)
        ax.set_ylabel("layer (input at the top)")
        return
    ticks, labels = [], []
    for k, (start, stop, label) in enumerate(groups):
        if k % 2:
            for a in shade:
                a.axhspan(start - 0.5, stop - 0.5, color="0.9", lw=0, zorder=0)
        ticks.append((start + stop - 1) / 2)
        labels.append(f"{label} ({stop - start})")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.tick_params(axis="y", length=0)
    ax.set_ylabel(f"{plural(n, 'layer')} in {plural(len(groups), 'block')} (input at the top)")


def _layer_groups(
    names: Sequence[str], max_groups: int = 60, target: float = 8.0
) -> list[tuple[int, int, str]]:
    """Runs of consecutive layers that share a name prefix: ``(start, stop, prefix)``.

    Names are split at ``.``, ``/`` and ``_`` (``features.3.0.block.1`` ->
    ``features``, ``features.3``, ``features.3.0``...; ``block_3_expand`` ->
    ``block``, ``block_3``...). Of the prefix lengths that give at most
    ``max_groups`` runs, the one whose runs hold about ``target`` layers on
    average wins (ratio nearest 1 on a log scale), unless one of its runs
    holds more than a quarter of the layers (``block (142)`` of 155 names
    says nothing) while another length avoids that.

    Example:
        >>> _layer_groups(["a.0.x", "a.0.y", "a.1.x", "b"], target=1.5)
        [(0, 2, 'a.0'), (2, 3, 'a.1'), (3, 4, 'b')]
    """
    n = len(names)
    tokens = [list(re.finditer(r"[^./_]+", name)) for name in names]
    best: list[tuple[int, int, str]] = [(0, n, "")]
    best_cost = math.inf
    for depth in range(1, max((len(t) for t in tokens), default=0) + 1):
        runs: list[list] = []  # [start, stop, label, key]
        for i, (name, toks) in enumerate(zip(names, tokens, strict=True)):
            key = tuple(m.group() for m in toks[:depth])
            if runs and runs[-1][3] == key:
                runs[-1][1] = i + 1
            else:
                label = name[: toks[min(depth, len(toks)) - 1].end()] if toks else name
                runs.append([i, i + 1, label, key])
        if len(runs) > max_groups:
            break
        if depth > 1 and len(runs) <= len(best):  # a deeper prefix only if it splits more
            continue
        largest = max(stop - start for start, stop, _, _ in runs)
        cost = abs(math.log(n / len(runs) / target))
        cost += 100.0 if largest > max(n / 4, 2 * target) else 0.0
        if cost < best_cost:
            best, best_cost = [(a, b, label) for a, b, label, _ in runs], cost
    return best


def _symlog_threshold(col: Mapping[str, np.ndarray]) -> float | None:
    """The linear zone of a symlog value axis, or ``None`` for a linear axis.

    Taken from the data: the 10th percentile, over the layers, of each
    layer's spread ``max(|p01|, |p99|)`` (zeros left out), rounded down to a
    power of ten and kept within :data:`MAX_DECADES` of the largest value —
    so a few near-zero layers do not stretch the axis over dozens of
    decades. Linear when the spreads span less than two decades.
    """
    typical = np.fmax(np.abs(col["p01"]), np.abs(col["p99"]))  # each layer's spread
    typical = typical[np.isfinite(typical) & (typical > 0)]
    top = np.abs(np.concatenate([col["min"], col["max"]]))
    top = top[np.isfinite(top)]
    if typical.size < 2 or not top.size:
        return None
    hi = max(float(top.max()), float(typical.max()))
    lo = float(np.percentile(typical, 10))
    if hi / lo < 100.0:
        return None
    lin = 10.0 ** np.floor(np.log10(lo))
    return float(max(lin, 10.0 ** (np.ceil(np.log10(hi)) - MAX_DECADES)))


def _decade_ticks(ax: Axes, linthresh: float, label_px: float = 48.0) -> None:
    """Labelled powers of ten every ``k`` decades so that labels never run together.

    Counted from ``±linthresh`` (the edge of the linear zone is always
    labelled) outwards; the decades in between keep an unlabelled tick.
    """
    lo, hi = ax.get_xlim()
    e0 = round(math.log10(linthresh))
    sides = [(1.0, e) for e in range(e0, int(np.floor(np.log10(hi))) + 1)] if hi > 0 else []
    sides += [(-1.0, e) for e in range(e0, int(np.floor(np.log10(-lo))) + 1)] if lo < 0 else []
    budget = max(int(_axes_pixels(ax)[0] // label_px), 3)
    step = 1
    while 1 + sum(1 for _, e in sides if (e - e0) % step == 0) > budget:
        step += 1
    major = [0.0] + [sign * 10.0**e for sign, e in sides if (e - e0) % step == 0]
    minor = [sign * 10.0**e for sign, e in sides if (e - e0) % step]
    ax.set_xticks(sorted(major))
    ax.set_xticks(sorted(minor), minor=True)
    ax.set_xlim(lo, hi)


def _limit_decades(ax: Axes, col: Mapping[str, np.ndarray], linthresh: float) -> None:
    """Symmetric limits a little past the data, on a symlog axis."""
    lo = float(np.nanmin(np.r_[col["min"], 0.0]))
    hi = float(np.nanmax(np.r_[col["max"], 0.0]))
    pad = 1.6
    ax.set_xlim(lo * pad if lo < 0 else -0.5 * linthresh, hi * pad if hi > 0 else 0.5 * linthresh)


# --------------------------------------------------------------------------- attribution maps


@names_parameters
def plot_explanations(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    sample: int = 0,
    *,
    layer: str | None = None,
    target: int | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float | None = None,
    cmap: str | None = None,
    blend: str = "value",
    size: float = 2.6,
    title: str | None = None,
) -> Figure:
    """One row: the image, then each method's map laid over it, titled.

    Each panel is titled with its method, and the layer for the methods that
    read one (CAM, Grad-CAM, Score-CAM…); the figure's title says which class
    is explained. Overlays follow :func:`multiviz.overlay_image`: by default
    the heatmap's opacity follows its value, so the image stays readable.
    Pixel-level maps (saliency, SmoothGrad, Integrated Gradients…) are drawn
    with their top 1% of magnitudes clipped (:func:`~multiviz.attribution.maps.clip_outliers`),
    as Captum does, since a few extreme pixels would otherwise hide the rest.

    Args:
        image: channels-last display image(s): ``(H, W)``, ``(H, W, C)`` or a
            batch ``(N, H, W, C)`` (then ``sample`` picks one). Floats are
            shown as they are where they lie in ``[0, 1]``, else min-max scaled.
        maps: method name -> ``(N, H, W)`` maps (e.g. :func:`multiviz.explain`'s
            result); a ``(N, C, H, W)`` entry (guided backprop without
            aggregation) is drawn as a colour image instead of an overlay.
        sample: which sample of the batch to draw.
        layer: the layer the layer-based methods used (named in their titles).
        target: the class explained (named in the figure's title).
        class_names: names of the classes, to name ``target``.
        alpha: the heatmap's largest opacity (see :func:`multiviz.overlay_image`).
        cmap: the heatmap's colormap (default ``"turbo"``; ``"RdBu_r"`` for
            a signed map; ``"jet"`` with ``blend="uniform"``).
        blend: ``"value"`` (default) or ``"uniform"`` (the classic look).
        size: the side of one panel, in inches.
        title: the figure's title; default names the class and the sample.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot; save it with
        ``fig.savefig(...)``).

    Example:
        >>> heat = np.zeros((1, 8, 8)); heat[0, 2:5, 3:6] = 1.0
        >>> fig = plot_explanations(np.full((8, 8, 3), 0.5), {"grad_cam": heat}, layer="conv3")
        >>> [ax.get_title() for ax in fig.axes]
        ['Input', 'Grad-CAM\\nat conv3']
    """
    from multiviz.attribution.explain import LAYER_METHODS, TITLES  # names for titles

    if not isinstance(maps, Mapping):
        raise TypeError(
            "`maps` must be a dict of method name -> map (what mv.explain returns). "
            f"Received: maps of type {type(maps).__name__}"
        )
    img = np.asarray(image)
    if img.dtype.kind not in "biuf":
        raise TypeError(
            f"`image` must be an array of numbers (H, W, C) or (N, H, W, C). Received: {image!r:.60}"
        )
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (a str) or None. Received: layer={layer!r}")
    if img.ndim == 4:
        if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
            raise TypeError(f"`sample` must be an int. Received: sample={sample!r:.60}")
        if not -len(img) <= sample < len(img):
            raise IndexError(
                f"`sample` must be in [0, {len(img)}), a sample of the batch. Received: sample={sample}"
            )
        img = img[sample]
    img = _displayable(img)
    fig = Figure(figsize=(size * (1 + len(maps)), size + 0.75), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 1 + len(maps)))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
    axes[0].set_title("Input")
    for ax, (name, batch) in zip(axes[1:], maps.items(), strict=True):
        m = np.asarray(batch)
        m = m[sample] if m.ndim in (3, 4) else m
        if m.ndim == 3:  # (C, H, W): a per-channel attribution shown as an image
            ax.imshow(_displayable(to_channels_last(scale_each_sample(m[None]))[0]))
        elif name in LAYER_METHODS:
            _overlay(ax, img, m, alpha, cmap, blend)
        else:  # sparse pixel maps: the top 1% of magnitudes clipped, or little shows
            _overlay(ax, img, clip_outliers(m), alpha, cmap, blend)
        head = TITLES.get(name, name)
        ax.set_title(f"{head}\nat {layer}" if layer and name in LAYER_METHODS else head)
    for ax in axes:
        ax.set_axis_off()
    if title is None:
        title = _explained(target, class_names, sample if np.asarray(image).ndim == 4 else None)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


def _explained(target: int | None, class_names: Sequence[str] | None, sample: int | None) -> str:
    """``"Evidence for class 2 (triangle), sample 0"``."""
    if target is None:
        return ""
    k = int(target)
    name = f" ({class_names[k]})" if class_names is not None and 0 <= k < len(class_names) else ""
    return f"Evidence for class {k}{name}" + (f", sample {sample}" if sample is not None else "")


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


def _overlay(
    ax: Axes, img: np.ndarray, heat: np.ndarray, alpha: float | None, cmap: str | None, blend: str
) -> None:
    """The heatmap blended over the image, drawn by :func:`plot_overlay`.

    A non-negative map is divided by its maximum (0 stays clear, an all-zero
    map stays "cold"); a signed one is scaled symmetrically (0 clear).
    """
    heat = np.nan_to_num(np.asarray(heat, np.float32))
    signed = heat.size > 0 and heat.min() < 0.0
    if not signed and heat.size and heat.max() > 0:
        heat = heat / heat.max()
    plot_overlay(
        img,
        heat,
        alpha=alpha,
        cmap=cmap,
        normalize=None if signed else "none",
        blend=blend,
        ax=ax,
    )
