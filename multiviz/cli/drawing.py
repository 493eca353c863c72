"""The subcommands that draw pictures: ``multiviz maps`` and ``multiviz cam``.

Each checks its output options first, loads the model and images, computes
every picture, then writes them all. By default a picture is a titled
figure that says what it shows (layer, image, class, channel numbers, a
colorbar where the colours have one scale); ``--bare`` writes the picture
alone, pixel for pixel what :func:`multiviz.feature_map_image` /
:func:`multiviz.overlay_image` return.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

import multiviz as mv
from multiviz.cli.exit_codes import EXIT_OK
from multiviz.cli.inputs import images_from_args, model_from_args
from multiviz.cli.output import (
    check_cmap,
    check_image_output,
    encode_figure,
    encode_image,
    output_paths,
    print_note,
    progress_bar,
    write_all,
)
from multiviz.errors import UsageError

__all__ = ["AGGREGATIONS", "METHODS", "NORMALIZE", "REDUCE", "cmd_cam", "cmd_maps", "one_layer"]

# `cam --method` choices -> the method's name in multiviz.explain
METHODS = {
    "grad-cam": "grad_cam",
    "grad-cam++": "grad_cam_plus_plus",
    "layer-cam": "layer_cam",
    "score-cam": "score_cam",
    "cam": "cam",
    "saliency": "saliency",
    "grad-x-input": "grad_x_input",
    "smoothgrad": "smoothgrad",
    "integrated-gradients": "integrated_gradients",
    "guided-backprop": "guided_backprop",
    "guided-grad-cam": "guided_grad_cam",
    "deconvnet": "deconvnet",
    "rollout": "attention_rollout",
    "grad-rollout": "attention_rollout",
}
# the methods that read a layer (the others explain the input pixels)
_LAYER_METHODS = ("grad-cam", "grad-cam++", "layer-cam", "score-cam", "cam", "guided-grad-cam")
#: `--normalize` choices of `maps` (multiviz.normalize's modes)
NORMALIZE = ("auto", "map", "layer", "percentile", "symmetric", "none")
#: `--reduce` choices of `maps` (multiviz.aggregate's reductions)
REDUCE = ("mean", "max", "std", "l2", "sum")
#: `--aggregation` choices of `cam` (multiviz.attribution.maps.AGGREGATIONS)
AGGREGATIONS = ("max_abs", "abs_sum", "abs_mean", "sum", "mean", "l2", None)
# bare images are enlarged by whole pixels to about this size, so small inputs stay visible
_GRID_PX = 1024
_MIN_IMAGE_PX = 256


# --------------------------------------------------------------------------- maps


def cmd_maps(args: argparse.Namespace) -> int:
    """``multiviz maps MODEL IMAGE --layer NAME``: feature-map grids (or one reduced map)."""
    from multiviz.core.names import resolve

    fmt = check_image_output(args.output)
    if args.cmap is not None:
        check_cmap(args.cmap)
    if args.overlay and args.reduce is None:
        raise UsageError(
            "--overlay lays a reduced map over the image: add --reduce mean (or max, ...)."
        )
    if args.channels is not None and args.top is not None:
        raise UsageError("--channels and --top both choose channels: pass one of them.")
    loaded = model_from_args(args, "drawing feature maps")
    names = resolve(args.layer, mv.layers(loaded.model))
    batch = images_from_args(args, loaded)
    acts = mv.capture(loaded.model, batch.inputs, names)
    keys = list(acts)
    paths = output_paths(args.output, batch.names, keys)
    outputs = []
    jobs = [(i, j) for i in range(len(batch)) for j in range(len(keys))]
    for i, j in progress_bar(args, jobs, "maps"):
        arr, key = acts[keys[j]][i], keys[j]
        what = f"{key} on {batch.names[i]}"
        if args.reduce is not None:
            data = _reduced(args, arr, key, batch.display[i], what, fmt)
        else:
            channels = _channels(args, arr)
            if args.bare:
                rgb = mv.feature_map_image(
                    arr,
                    channels=channels,
                    max_maps=args.max_maps,
                    cmap=args.cmap,
                    normalize=args.normalize,
                    percentile=args.percentile,
                    ncols=args.ncols,
                    upscale=_grid_upscale(arr, args.max_maps),
                )
                data = encode_image(rgb, fmt)
            else:
                fig = mv.plot_feature_maps(
                    arr,
                    channels=channels,
                    max_maps=args.max_maps,
                    cmap=args.cmap,
                    normalize=args.normalize,
                    percentile=args.percentile,
                    ncols=args.ncols,
                    name=what,
                )
                data = encode_figure(fig, str(paths[i][j]))
        outputs.append((paths[i][j], data))
    write_all(args, outputs)
    return EXIT_OK


def _channels(args: argparse.Namespace, arr: np.ndarray) -> Any:
    if args.top is not None:
        return mv.select_channels(arr, top=args.top, by=args.by)
    return args.channels


def _reduced(
    args: argparse.Namespace, arr: np.ndarray, key: str, display: np.ndarray, what: str, fmt: str
) -> bytes:
    """One map per layer: the channels reduced (``--reduce``), alone or over the image."""
    channels = _channels(args, arr)
    agg = mv.aggregate(arr, args.reduce, channels)
    normalize = None if args.normalize == "auto" else args.normalize
    if args.overlay:
        if agg.ndim != 2:
            raise UsageError(
                f"--overlay needs 2-D maps; {key!r} gives {tuple(arr.shape)}. Drop --overlay."
            )
        if args.bare:
            rgb = mv.overlay_image(display, agg, cmap=args.cmap, normalize=normalize)
            return encode_image(_enlarge(rgb, _MIN_IMAGE_PX), fmt)
        fig = mv.plot_overlay(
            display,
            agg,
            cmap=args.cmap,
            normalize=normalize,
            colorbar=True,
            title=f"{what}: {args.reduce} over channels",
        )
        return encode_figure(fig, args.output)
    if args.bare:
        rgb = mv.feature_map_image(
            np.asarray(agg)[None], cmap=args.cmap, normalize=args.normalize, pad=0
        )
        return encode_image(_enlarge(rgb, _MIN_IMAGE_PX), fmt)
    fig = mv.plot_aggregate(
        arr, args.reduce, channels=channels, cmap=args.cmap, normalize=args.normalize, name=what
    )
    return encode_figure(fig, args.output)


# --------------------------------------------------------------------------- cam


def one_layer(text: str, infos: Any, option: str = "--layer") -> str:
    """The one layer ``text`` (a name or a glob pattern) names; several matches are an error.

    A command that uses one layer (``cam``, ``evaluate``) never picks the first
    of several matches silently: the error lists them (at most 5, then a count).

    Example:
        >>> from multiviz.core.records import LayerInfo
        >>> infos = [LayerInfo("conv1", "Conv2d", "conv"), LayerInfo("conv2", "Conv2d", "conv")]
        >>> one_layer("conv2", infos)
        'conv2'
        >>> one_layer("conv*", infos)
        Traceback (most recent call last):
        ...
        multiviz.errors.UsageError: --layer 'conv*' matches 2 layers (conv1, conv2); this command uses one.
        hint: pass one name, e.g. --layer conv1
    """
    from multiviz.core.names import resolve

    found = resolve(text, infos)
    if len(found) == 1:
        return found[0]
    shown = ", ".join(found[:5]) + (f", … {len(found) - 5} more" if len(found) > 5 else "")
    raise UsageError(
        f"{option} {text!r} matches {len(found)} layers ({shown}); this command uses one."
        f"\nhint: pass one name, e.g. {option} {found[0]}"
    )


def cmd_cam(args: argparse.Namespace) -> int:
    """``multiviz cam MODEL IMAGE --method grad-cam``: attribution maps over the images."""

    fmt = check_image_output(args.output)
    if args.cmap is not None:
        check_cmap(args.cmap)
    methods = list(dict.fromkeys(args.method or ["grad-cam"]))
    loaded = model_from_args(args, ", ".join(methods))
    infos = mv.layers(loaded.model)
    layer = None
    if any(m in _LAYER_METHODS for m in methods):
        if args.layer is not None:
            layer = one_layer(args.layer, infos)
        elif any(i.type.endswith("Attention") or i.type == "MultiheadAttention" for i in infos):
            print_note(args, "no --layer: a transformer; the layer is chosen automatically")
        else:
            convs = [i.name for i in infos if i.kind == "conv"]
            if not convs:
                raise UsageError(f"{loaded.spec.text} has no convolution layer; pass --layer NAME.")
            layer = convs[-1]
            print_note(
                args,
                f"{methods[0]} at the last convolution layer, {layer!r} (choose with --layer)",
            )
    elif args.layer is not None:
        print_note(
            args, f"--layer is ignored by {', '.join(methods)}: it explains the input pixels"
        )
    batch = images_from_args(args, loaded)
    target = _target(args.target, loaded.class_names)
    output = np.asarray(mv.forward(loaded.model, batch.inputs))
    if target is None and output.ndim == 2:  # every method explains the same class
        target = output.argmax(axis=1)
    maps = {
        m: _for_display(_attribution(args, m, loaded.model, batch.inputs, layer, target))
        for m in methods
    }
    paths = output_paths(args.output, batch.names, [layer or methods[0]])
    outputs = []
    for i in progress_bar(args, range(len(batch)), ", ".join(methods)):
        k = _class_of(target, i)
        about = _class_words(k, loaded.class_names)
        if args.bare:
            panels = [
                _bare_panel(args, batch.display[i], _pixel_clip(m, maps[m][i])) for m in methods
            ]
            data = encode_image(_side_by_side(panels), fmt)
        else:
            fig = mv.plot_explanations(
                batch.display[i],
                {_figure_key(m): maps[m][i : i + 1] for m in methods},
                layer=layer,
                alpha=args.alpha,
                cmap=args.cmap,
                blend=args.blend,
                size=3.2,
                title=f"{loaded.spec.text} on {batch.names[i]}: evidence for "
                f"{about or 'the output'}",
            )
            data = encode_figure(fig, str(paths[i][0]))
        outputs.append((paths[i][0], data))
        if not args.quiet and about:
            print(f"{batch.names[i]}: explained {about}")
    write_all(args, outputs)
    return EXIT_OK


def _attribution(
    args: argparse.Namespace, method: str, model: Any, x: Any, layer: str | None, target: Any
) -> np.ndarray:
    """One method's raw maps, ``(N, H, W)`` (``(N, C, H, W)`` for unaggregated guided ones).

    Raw (``normalize=False``): the picture scales them, signed maps centred on zero.
    """
    common: dict[str, Any] = {"target": target, "batch_size": args.batch_size, "normalize": False}
    how = {} if args.aggregation is None else {"aggregation": args.aggregation}
    name = METHODS[method]
    if name in ("saliency", "grad_x_input", "smoothgrad"):
        kind = {"saliency": "gradient"}.get(name, name)
        return mv.saliency(
            model, x, method=kind, samples=args.samples, noise=args.noise, seed=args.seed,
            **how, **common,
        )  # fmt: skip
    if name == "integrated_gradients":
        return mv.integrated_gradients(model, x, steps=args.steps, **how, **common)
    if name in ("guided_backprop", "deconvnet"):  # colour images unless aggregated
        return getattr(mv, name)(model, x, **how, **common)
    if name == "attention_rollout":  # a vision transformer's attention, no layer
        return mv.attention_rollout(
            model, x, "grad" if method == "grad-rollout" else "rollout", **common
        )
    fn = getattr(mv, name)
    if name == "guided_grad_cam":
        return fn(model, x, layer, **how, **common)
    return fn(model, x, layer, **common)


def _figure_key(method: str) -> str:
    """The name a figure titles ``method`` by: explain's name where it has one."""
    from multiviz.attribution.explain import TITLES

    return METHODS[method] if METHODS[method] in TITLES else method


def _for_display(maps: np.ndarray) -> np.ndarray:
    """Raw maps as the pictures show them: a signed sample stays raw (drawn centred
    on zero), a non-negative one is scaled to [0, 1] by its min and max (a
    constant map becomes 0: nothing to show)."""
    from multiviz.attribution.maps import normalize_maps

    if maps.ndim != 3:  # (N, C, H, W): colour attributions, scaled when drawn
        return maps
    out = maps.astype(np.float32, copy=True)
    for i in range(len(out)):
        if not np.any(out[i] < 0):
            out[i] = normalize_maps(out[i][None])[0]
    return out


def _pixel_clip(method: str, heat: np.ndarray) -> np.ndarray:
    """Pixel-level maps with their top 1% of magnitudes clipped, as the figures draw them."""
    from multiviz.attribution.maps import clip_outliers

    return heat if method in _LAYER_METHODS or heat.ndim != 2 else clip_outliers(heat)


def _bare_panel(args: argparse.Namespace, display: np.ndarray, heat: np.ndarray) -> np.ndarray:
    if heat.ndim == 3:  # a colour attribution (guided backprop): shown as an image
        lo, hi = float(np.nanmin(heat)), float(np.nanmax(heat))
        scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
        rgb = np.rint(np.moveaxis(np.nan_to_num(scaled), 0, -1) * 255).astype(np.uint8)
    else:
        rgb = mv.overlay_image(display, heat, alpha=args.alpha, cmap=args.cmap, blend=args.blend)
    return _enlarge(rgb, _MIN_IMAGE_PX)


def _side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of one height in a row, ``gap`` white pixels apart."""
    if len(panels) == 1:
        return panels[0]
    h = max(p.shape[0] for p in panels)
    parts = []
    for k, p in enumerate(panels):
        if k:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(parts, axis=1)


def _class_of(target: Any, i: int) -> int | None:
    if target is None or callable(target):
        return None
    t = np.atleast_1d(np.asarray(target))
    return int(t[i] if t.size > 1 else t[0])


def _class_words(k: int | None, class_names: Sequence[str] | None) -> str:
    if k is None:
        return ""
    name = f" ({class_names[k]})" if class_names and 0 <= k < len(class_names) else ""
    return f"class {k}{name}"


def _grid_upscale(arr: np.ndarray, max_maps: int) -> int:
    """Whole-pixel enlargement that brings a grid of small maps near _GRID_PX wide."""
    if arr.ndim != 3:
        return 1
    per_row = int(np.ceil(np.sqrt(min(arr.shape[0], max_maps))))
    return max(1, _GRID_PX // (per_row * (arr.shape[-1] + 1)))


def _enlarge(rgb: np.ndarray, min_px: int) -> np.ndarray:
    """Repeat pixels so the shorter side reaches ``min_px`` (a 64x64 input is hard to see)."""
    factor = max(1, min_px // max(1, min(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


def _target(text: str | None, class_names: Sequence[str] | None) -> int | None:
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    if class_names is not None:
        lowered = [c.lower() for c in class_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        from multiviz.errors import closest

        near = closest(text, class_names, n=3)
        raise UsageError(
            f"No class named {text!r}."
            + (f" Did you mean {near}?" if near else "")
            + " Pass a class index or one of the model's class names."
        )
    raise UsageError(
        f"--target {text!r} is not a class index, and this model has no class names. Pass a number."
    )
