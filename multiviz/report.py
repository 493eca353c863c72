"""A self-contained HTML report of what a CNN sees in one image.

:func:`html_report` captures every convolution layer (or the layers asked
for) in one forward pass and writes one HTML file: a model summary, the
prediction, the input with a Grad-CAM overlay, the layer-statistics figure,
and per layer its feature-map grid, its channel-mean map and a statistics
table; on request (``evaluation=``) also which attribution map to trust
(:func:`multiviz.evaluate`'s table and figure). Images are embedded as base64 PNG ``data:`` URIs and the CSS is
inline: the file makes no request, needs no JavaScript, and opens offline on a
laptop or a phone. Grids use the figure-free path
(:func:`multiviz.feature_map_image`), so a report over dozens of layers takes
seconds, not minutes.

Files are written atomically (:func:`write_atomic`): a temporary file in the
same folder, then :func:`os.replace` — an error never leaves half a file.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import multiviz as mv
from multiviz.core.names import owner, resolve
from multiviz.core.normalize import resolve_mode
from multiviz.core.params import names_parameters
from multiviz.core.views import plural
from multiviz.errors import InputShapeError

__all__ = ["ReportLayer", "html_report", "png_data_uri", "write_atomic"]

_TEMPLATE = "report.html.j2"
# a grid wider than this is shrunk (a report is read, not zoomed into) ...
_MAX_GRID_PX = 720
# ... and one narrower than this is enlarged by whole pixels
_MIN_GRID_PX = 360
_MIN_MAP_PX = 224
# up to this many distinct colours, an image is saved with a 256-colour palette
_NEAR_PALETTE = 264


@dataclass
class ReportLayer:
    """What the report shows for one layer (the template's view of it)."""

    name: str
    anchor: str
    type: str
    shape: tuple[int, ...]
    params: int
    grid_uri: str = ""
    grid_caption: str = ""
    aggregate_uri: str = ""
    aggregate_caption: str = ""
    stats: dict[str, str] = field(default_factory=dict)
    top_channels: list[tuple[int, str]] = field(default_factory=list)
    note: str = ""


@names_parameters
def html_report(
    model: Any,
    x: Any,
    *,
    display: np.ndarray | None = None,
    layers: str | Sequence[str] | None = None,
    title: str | None = None,
    source: str = "",
    image: str = "",
    class_names: Sequence[str] | None = None,
    preprocessing: str = "",
    max_maps: int = 64,
    cmap: str | None = None,
    cam: bool = True,
    evaluation: Any = None,
    notes: Sequence[str] = (),
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> str:
    """Build the HTML report of ``model`` on one input.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: one-sample batch in the framework's layout (``(1, C, H, W)`` for
            PyTorch, the model's layout for Keras); only the first sample is used.
        display: the image as a person sees it, uint8 ``(H, W, 3)`` (for the
            overlay). Default: ``x`` min-max scaled.
        layers: layer names or glob patterns; default every convolution layer.
        title: the page title; default names ``source``.
        source: where the model came from (shown in the summary).
        image: where the image came from (shown in the summary).
        class_names: names of the output classes, for the prediction table.
        preprocessing: one line on how the image was prepared.
        max_maps: feature maps per grid: past it, the most active channels
            (highest mean), each numbered on its tile.
        cmap: colormap of grids and channel-mean maps; default ``"viridis"``,
            ``"RdBu_r"`` centred on 0 for signed layers.
        cam: add a Grad-CAM overlay at the last convolution layer.
        evaluation: add a section "Which map to trust": an
            :class:`~multiviz.EvaluationReport` to show; ``True`` to run
            :func:`multiviz.evaluate` with its defaults on *every* sample of
            ``x``; or a dict of :func:`multiviz.evaluate`'s keyword arguments
            (``{"methods": [...], "metrics": [...], "boxes": ...}``).
            ``None`` (default): no section.
        notes: extra lines for the summary.
        progress: wraps the per-layer loop (e.g. ``tqdm``).

    Returns:
        The HTML text (UTF-8, self-contained).

    Raises:
        LayerNotFoundError: a name in ``layers`` matched nothing.
        InputShapeError: ``x`` does not fit the model.
        TypeError: ``evaluation`` is none of the accepted kinds.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                          # doctest: +SKIP
        >>> html = html_report(model, mv.sample_image()[None])          # doctest: +SKIP
        >>> write_atomic("report.html", html)                           # doctest: +SKIP
    """
    from multiviz.backends import get_backend

    evaluated = _evaluation_report(model, x, evaluation)
    backend = get_backend(model)
    infos = mv.layers(model)
    chosen = _chosen_layers(infos, layers)
    acts = mv.capture(model, x, chosen)
    output = np.asarray(mv.forward(model, x))
    display = _display_image(x, backend.input_layout(model)) if display is None else display
    shape = np.shape(display)
    if np.asarray(display).dtype.kind not in "biuf" or len(shape) not in (2, 3):
        raise InputShapeError(
            "`display` must be the image as a person sees it, (H, W, 3) or (H, W) numbers. "
            f"Received: {type(display).__name__} of shape {shape}"
        )
    by_name = {i.name: i for i in infos}
    by_layer = {i.base: i for i in reversed(infos)}  # a layer's first entry

    records = {r.name: r for r in mv.layer_stats(acts)}  # dead: over every input given
    sections: list[ReportLayer] = []
    anchors: set[str] = set()
    wrap = progress or (lambda items: items)
    for name in wrap(list(acts)):
        read = owner(name, by_layer)
        info = by_name.get(name) or (by_layer[read[0]] if read else None)
        section = _layer_section(name, acts[name][:1], info, records.get(name), max_maps, cmap)
        while section.anchor in anchors:  # "a.b" and "a-b" would share one anchor
            section.anchor += "-"
        anchors.add(section.anchor)
        sections.append(section)

    stats_uri = ""
    if records:
        stats_uri = _figure_uri(mv.plot_layer_stats(list(records.values())))
    cam_view = _cam_view(model, x, display, chosen, infos) if cam else None
    if cam_view and cam_view["layer"]:
        cam_view["anchor"] = next((s.anchor for s in sections if s.name == cam_view["layer"]), "")
    summary = _summary(infos, backend.name, source, image, x, preprocessing, notes)
    return _render(
        title=title
        or f"multiviz report — {source or type(model).__name__}"
        + (f" on {image}" if image else ""),
        summary=summary,
        prediction=_prediction(output, class_names),
        input_uri=png_data_uri(display),
        cam=cam_view,
        evaluation=_evaluation_view(evaluated) if evaluated is not None else None,
        stats_uri=stats_uri,
        layers=sections,
        cmap=cmap,
        preprocessing=preprocessing,
    )


# --------------------------------------------------------------------------- pieces


def _chosen_layers(infos: Sequence[Any], names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return resolve(None, infos, kind="conv")
    return resolve(names, infos)


def _layer_section(
    name: str,
    arr: np.ndarray,
    info: Any,
    record: Any,
    max_maps: int,
    cmap: str | None,
) -> ReportLayer:
    section = ReportLayer(
        name=name,
        anchor=_anchor(name),
        type=getattr(info, "type", "?"),
        shape=tuple(arr.shape[1:]),
        params=int(getattr(info, "params", 0)),
    )
    if record is not None:
        section.stats = _stats_row(record)
    one = arr[0]
    if one.ndim != 3:  # the report draws 2-D feature maps; vectors get statistics only
        section.note = f"Output shape {tuple(one.shape)} is not a stack of 2-D maps: no grid."
        return section
    channels, h, w = one.shape
    mode = resolve_mode(one)  # signed layers: one scale, 0 at the centre of a diverging map
    colors = cmap or ("RdBu_r" if mode == "symmetric" else "viridis")
    shown = min(channels, max_maps)
    # past max_maps, the most active channels (by mean), in channel order: every channel
    # the text names as "most active" is in the grid, numbered on its tile
    chosen = np.sort(mv.select_channels(one, top=shown)) if shown < channels else None
    per_row = int(np.ceil(np.sqrt(shown)))
    # shrink big maps by block averaging (the activations, not the colours) so
    # the grid stays near _MAX_GRID_PX and its PNG keeps the colormap's palette
    factor = max(1, int(np.ceil(per_row * (max(h, w) + 1) / _MAX_GRID_PX)))
    maps = _block_mean(one, factor)
    tile = max(maps.shape[1:]) * per_row
    upscale = max(1, _MIN_GRID_PX // max(tile, 1))
    grid = mv.feature_map_image(
        maps, channels=chosen, cmap=colors, normalize=mode, upscale=upscale, labels=True
    )
    section.grid_uri = png_data_uri(grid)
    which = (
        f"the {shown} most active of {channels} channels (highest mean), in channel order"
        if chosen is not None
        else f"all {plural(channels, 'channel')}"
    )
    reduced = f", shown at 1/{factor} resolution" if factor > 1 else ""
    scale = (
        "one scale for the layer, 0 at the white centre (blue below, red above)"
        if mode == "symmetric"
        else "each scaled to its own range"
    )
    section.grid_caption = (
        f"{which}, each {h}x{w}{reduced}; {scale}; colormap {colors}; "
        "the channel number is in each tile's top-left corner"
    )
    mean_map = mv.aggregate(one, "mean")  # (H, W), drawn as one tile
    mean_mode = resolve_mode(mean_map)
    mean_rgb = mv.feature_map_image(
        mean_map[None],
        cmap=cmap or ("RdBu_r" if mean_mode == "symmetric" else "viridis"),
        normalize=mean_mode,
        pad=0,
    )
    section.aggregate_uri = png_data_uri(_enlarge(mean_rgb, _MIN_MAP_PX))
    lo, hi = float(np.nanmin(mean_map)), float(np.nanmax(mean_map))
    section.aggregate_caption = f"Mean over channels, from {_fmt(lo)} to {_fmt(hi)}" + (
        "; 0 at the white centre (blue below, red above)." if mean_mode == "symmetric" else "."
    )
    per_channel = one.reshape(channels, -1).mean(axis=1)
    order = np.argsort(-per_channel, kind="stable")[:5]
    section.top_channels = [(int(c), _fmt(per_channel[c])) for c in order]
    return section


def _stats_row(record: Any) -> dict[str, str]:
    return {
        "mean": _fmt(record.mean),
        "std": _fmt(record.std),
        "min": _fmt(record.min),
        "max": _fmt(record.max),
        "median": _fmt(record.p50),
        "zeros": f"{100 * record.zero_fraction:.1f}%",
        "dead channels": f"{100 * record.dead_fraction:.1f}%",
        "saturated": "–"  # an unbounded activation cannot saturate
        if np.isnan(record.saturated_fraction)
        else f"{100 * record.saturated_fraction:.1f}%",
    }


def _cam_view(
    model: Any,
    x: Any,
    display: np.ndarray,
    chosen: Sequence[str],
    infos: Sequence[Any],
) -> dict[str, str]:
    """The Grad-CAM overlay at the last convolution layer, or a note saying why not."""
    convs = [i.name for i in infos if i.kind == "conv"]
    layer = convs[-1] if convs else (chosen[-1] if chosen else None)
    if layer is None:
        return _cam_note("Grad-CAM skipped: the model has no convolution layer.")
    try:
        heat = mv.grad_cam(model, x[:1], layer)
    except ImportError as err:
        return _cam_note(f"Grad-CAM skipped: attribution is not available ({err}).")
    except Exception as err:  # the report is still useful without the CAM
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _cam_note(f"Grad-CAM skipped at {layer!r}: {first[:300]}")
    overlay = mv.overlay_image(display, heat[0])  # opacity follows the map: the image stays
    return {"uri": png_data_uri(overlay), "layer": layer, "anchor": "", "note": ""}


def _cam_note(note: str) -> dict[str, str]:
    return {"uri": "", "layer": "", "anchor": "", "note": note}


def _evaluation_report(model: Any, x: Any, evaluation: Any) -> Any:
    """The :class:`~multiviz.EvaluationReport` that ``evaluation`` asks for, or ``None``."""
    from multiviz.evaluation.report import EvaluationReport

    if evaluation is None or evaluation is False:
        return None
    if isinstance(evaluation, EvaluationReport):
        return evaluation
    if evaluation is True:
        return mv.evaluate(model, x)
    if isinstance(evaluation, Mapping):
        return mv.evaluate(model, x, **evaluation)
    raise TypeError(
        "`evaluation` must be an EvaluationReport, True, a dict of mv.evaluate's keyword "
        f"arguments, or None. Received: evaluation={type(evaluation).__name__}"
    )


def _evaluation_view(report: Any) -> dict[str, Any]:
    """What the template's "Which map to trust" section shows (text only; autoescaped)."""
    from multiviz.evaluation.report import METRICS, RANDOMIZATION_LIMIT

    head, rows, best = report.table_cells()
    settings = report.settings
    facts = [("images", str(max((iv.n + iv.nonfinite for by in report.scores.values()
                                  for iv in by.values()), default=0)))]  # fmt: skip
    for key, label in (("layer", "CAM layer"), ("score", "score"), ("steps", "deletion steps")):
        if settings.get(key) is not None:
            facts.append((label, str(settings[key])))
    calls = settings.get("model_inputs_per_image_and_method") or {}
    for metric, n in calls.items():
        facts.append((f"model inputs per image and method ({metric})", f"{n:g}"))
    drawn = bool(report.curves or report.randomization)
    return {
        "head": head,
        "rows": rows,
        "best": best,
        "failing": report.failing_randomization(),
        "limit": RANDOMIZATION_LIMIT,
        "level": f"{report.level:.0%}",
        "metrics": [(m, METRICS[m]) for m in report.metrics],
        "facts": facts,
        "figure_uri": _figure_uri(report.plot()) if drawn else "",
    }


def _summary(
    infos: Sequence[Any],
    framework: str,
    source: str,
    image: str,
    x: Any,
    preprocessing: str,
    notes: Sequence[str],
) -> dict[str, Any]:
    leaves = [i for i in infos if i.kind != "container"]
    params = sum(int(i.params) for i in infos)
    rows = [
        ("model", source or "(in memory)"),
        ("framework", framework),
        ("layers", f"{len(leaves)} ({sum(i.kind == 'conv' for i in infos)} convolution)"),
        ("parameters", f"{params:,}"),
        ("input", " x ".join(str(d) for d in np.shape(x))),
    ]
    if image:
        rows.insert(1, ("image", image))
    if preprocessing:
        rows.append(("preprocessing", preprocessing))
    rows.append(("generated", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))
    return {"rows": rows, "notes": list(notes)}


def _prediction(output: np.ndarray, class_names: Sequence[str] | None) -> list[tuple[str, str]]:
    if output.ndim != 2 or output.shape[1] < 2:
        return []
    row = output[0].astype(np.float64)
    if not np.all(np.isfinite(row)):
        return []
    is_prob = np.all(row >= 0) and np.all(row <= 1) and abs(row.sum() - 1.0) < 1e-3
    probs = row if is_prob else np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    names = class_names if class_names is not None and len(class_names) == row.size else None
    top = np.argsort(-probs, kind="stable")[:5]
    return [(f"{names[k]} ({k})" if names else f"class {k}", f"{probs[k]:.3f}") for k in top]


def _display_image(x: Any, layout: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)[0]
    if layout == "channels_first":
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.rint(scaled[..., :3] * 255).astype(np.uint8)


# --------------------------------------------------------------------------- images


def png_data_uri(rgb: np.ndarray) -> str:
    """Encode a uint8 RGB array as a ``data:image/png;base64,...`` URI.

    Example:
        >>> png_data_uri(np.zeros((2, 3, 3), np.uint8))[:22]
        'data:image/png;base64,'
    """
    from PIL import Image

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    image = Image.fromarray(rgb)
    packed = (
        (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    )
    colors, index = np.unique(packed, return_inverse=True)
    if colors.size <= 256:  # colormapped images: an exact palette PNG is ~3x smaller
        image = Image.fromarray(index.reshape(packed.shape).astype(np.uint8))
        palette = np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=1)
        image.putpalette(palette.astype(np.uint8).ravel().tolist())
    elif colors.size <= _NEAR_PALETTE:
        # a 256-entry colormap plus the padding colour: merging the closest
        # neighbours of the colormap changes no colour visibly
        image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _block_mean(maps: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of each map (edges that do not fill a block are cut)."""
    if factor == 1:
        return maps
    c, h, w = maps.shape
    hh, ww = max(1, h // factor), max(1, w // factor)
    cut = maps[:, : hh * factor, : ww * factor]
    return cut.reshape(c, hh, factor, ww, factor).mean(axis=(2, 4), dtype=np.float64)


def _enlarge(rgb: np.ndarray, min_px: int) -> np.ndarray:
    factor = max(1, min_px // max(rgb.shape[:2]))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


def _anchor(name: str) -> str:
    return "layer-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def _fmt(v: float) -> str:
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


# --------------------------------------------------------------------------- HTML


def _render(**context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("multiviz", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    from multiviz import __version__

    return env.get_template(_TEMPLATE).render(version=__version__, **context)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` all at once: a temporary file, then :func:`os.replace`.

    On any error the temporary file is removed and ``path`` is left as it was
    (absent, or its old content). Missing parent folders are created.

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> p = write_atomic(os.path.join(tempfile.mkdtemp(), "a.txt"), "hi")
        >>> p.read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
