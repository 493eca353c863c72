"""The subcommands that draw pictures: ``multiviz maps`` and ``multiviz cam``.

Each checks its output options first, loads the model and images, computes
every picture, then writes them all.
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

__all__ = ["METHODS", "cmd_cam", "cmd_maps"]

# `cam --method` choices -> the multiviz function that computes them
METHODS = {
    "grad-cam": "grad_cam",
    "grad-cam++": "grad_cam_plus_plus",
    "layer-cam": "layer_cam",
    "score-cam": "score_cam",
    "cam": "cam",
    "saliency": "saliency",
    "smoothgrad": "saliency",
    "integrated-gradients": "integrated_gradients",
    "rollout": "attention_rollout",
    "grad-rollout": "attention_rollout",
}
_LAYERLESS = ("saliency", "smoothgrad", "integrated-gradients", "rollout", "grad-rollout")
# images are enlarged by whole pixels to about this size, so small inputs stay visible
_GRID_PX = 1024
_MIN_IMAGE_PX = 256


def cmd_maps(args: argparse.Namespace) -> int:
    """``multiviz maps MODEL IMAGE --layer NAME``: feature-map grids as images."""
    from multiviz.core.names import resolve

    fmt = check_image_output(args.output)
    check_cmap(args.cmap)
    loaded = model_from_args(args, "drawing feature maps")
    names = resolve(args.layer, mv.layers(loaded.model))
    batch = images_from_args(args, loaded)
    acts = mv.capture(loaded.model, batch.inputs, names)
    keys = list(acts)
    paths = output_paths(args.output, batch.names, keys)
    outputs = []
    jobs = [(i, j) for i in range(len(batch)) for j in range(len(keys))]
    for i, j in progress_bar(args, jobs, "maps"):
        arr = acts[keys[j]][i]
        if args.figure:
            fig = mv.plot_feature_maps(
                arr,
                max_maps=args.max_maps,
                cmap=args.cmap,
                normalize=args.normalize,
                title=f"{keys[j]} — {batch.names[i]}",
            )
            outputs.append((paths[i][j], encode_figure(fig, str(paths[i][j]))))
        else:
            rgb = mv.feature_map_image(
                arr,
                max_maps=args.max_maps,
                cmap=args.cmap,
                normalize=args.normalize,
                upscale=_grid_upscale(arr, args.max_maps),
            )
            outputs.append((paths[i][j], encode_image(rgb, fmt)))
    write_all(args, outputs)
    return EXIT_OK


def cmd_cam(args: argparse.Namespace) -> int:
    """``multiviz cam MODEL IMAGE --method grad-cam``: attribution overlays."""
    from multiviz.core.names import resolve

    fmt = check_image_output(args.output)
    check_cmap(args.cmap)
    loaded = model_from_args(args, args.method)
    infos = mv.layers(loaded.model)
    layer = None
    if args.method not in _LAYERLESS:
        if args.layer is not None:
            layer = resolve(args.layer, infos)[0]
        elif any(i.type.endswith("Attention") or i.type == "MultiheadAttention" for i in infos):
            print_note(args, "no --layer: a transformer; the layer is chosen automatically")
        else:
            convs = [i.name for i in infos if i.kind == "conv"]
            if not convs:
                raise UsageError(f"{loaded.spec.text} has no convolution layer; pass --layer NAME.")
            layer = convs[-1]
            print_note(
                args,
                f"{args.method} at the last convolution layer, {layer!r} (choose with --layer)",
            )
    elif args.layer is not None:
        print_note(
            args, f"--layer is ignored by {args.method}: it explains the input pixels directly"
        )
    batch = images_from_args(args, loaded)
    target = _target(args.target, loaded.class_names)
    fn = getattr(mv, METHODS[args.method])
    kwargs: dict[str, Any] = {"target": target}
    if args.method == "smoothgrad":
        kwargs["method"] = "smoothgrad"
    if args.method == "grad-rollout":
        kwargs["method"] = "grad"
    heat = (
        fn(loaded.model, batch.inputs, layer, **kwargs)
        if layer is not None
        else fn(loaded.model, batch.inputs, **kwargs)
    )
    output = np.asarray(mv.forward(loaded.model, batch.inputs))
    paths = output_paths(args.output, batch.names, [layer or args.method])
    outputs = []
    for i in progress_bar(args, range(len(batch)), args.method):
        rgb = mv.overlay_image(batch.display[i], heat[i], alpha=args.alpha, cmap=args.cmap)
        rgb = _enlarge(rgb, _MIN_IMAGE_PX)
        outputs.append((paths[i][0], encode_image(rgb, fmt)))
        if not args.quiet and output.ndim == 2:
            k = int(output[i].argmax()) if target is None else int(np.atleast_1d(target)[0])
            name = (
                f" ({loaded.class_names[k]})"
                if loaded.class_names and k < len(loaded.class_names)
                else ""
            )
            print(f"{batch.names[i]}: explained class {k}{name}")
    write_all(args, outputs)
    return EXIT_OK


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
