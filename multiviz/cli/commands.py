"""The subcommands that print or write reports: ``layers``, ``report``, ``compare``, ``demo``.

The drawing subcommands, ``maps`` and ``cam``, are in :mod:`multiviz.cli.drawing`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import multiviz as mv
from multiviz.cli.exit_codes import EXIT_OK
from multiviz.cli.inputs import (
    framework_logs_hidden,
    images_from_args,
    images_from_sources,
    model_from_args,
    require_capture,
)
from multiviz.cli.output import check_cmap, print_note, print_written, progress_bar
from multiviz.errors import ModelsDifferError, MultivizError, UsageError

__all__ = [
    "batch_preprocessing",
    "cmd_compare",
    "cmd_demo",
    "cmd_layers",
    "cmd_report",
    "cmd_stats",
]


def cmd_layers(args: argparse.Namespace) -> int:
    """``multiviz layers MODEL [--kind KIND]``: print the layer table (no weights needed)."""
    loaded = model_from_args(args, needs_weights=False)
    infos = None
    size = loaded.preprocess.size
    if loaded.framework == "torch" and size is not None and loaded.capturable:
        try:  # PyTorch knows output shapes only after a forward pass
            infos = mv.layers(loaded.model, args.kind, input_shape=(3, *size))
        except MultivizError:
            infos = None
    if infos is None:
        infos = mv.layers(loaded.model, args.kind)
    rows = [("name", "type", "kind", "output shape", "params")]
    for info in infos:
        shape = "" if info.shape is None else _shape_text(info.shape)
        rows.append((info.name, info.type, info.kind, shape, f"{info.params:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for k, row in enumerate(rows):
        print(
            "  ".join(
                c.rjust(w) if i == 4 else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    params = sum(i.params for i in infos)
    print(f"{len(infos)} layers, {params:,} parameters ({loaded.description})")
    return EXIT_OK


def _shape_text(shape: Sequence[int | None]) -> str:
    """``(None, 16, None, None)`` -> ``'Nx16x?x?'``: the batch axis, then unknown sizes."""
    return "x".join(["N", *("?" if d is None else str(d) for d in shape[1:])])


def cmd_report(args: argparse.Namespace) -> int:
    """``multiviz report MODEL IMAGE -o report.html``: the self-contained HTML report."""
    from multiviz.report import html_report, write_atomic

    if args.cmap is not None:
        check_cmap(args.cmap)
    if args.evaluate:
        from multiviz.cli.evaluate import check_evaluation_args

        check_evaluation_args(args)
    loaded = model_from_args(args, "a report of its layers")
    batch, originals = images_from_sources(args, loaded, [args.image])
    notes = list(loaded.notes)
    if len(batch) > 1:
        shown = f"{len(batch)} images given; this report shows the first, {batch.names[0]}"
        notes.append(shown + (", and evaluates the maps on all." if args.evaluate else "."))
        print_note(args, notes[-1])
    evaluation = None
    if args.evaluate:
        from multiviz.cli.evaluate import evaluation_kwargs

        kwargs = evaluation_kwargs(args, loaded, batch, originals)
        print_note(args, f"evaluating {', '.join(kwargs['methods'])} on {len(batch)} image(s)")
        evaluation = mv.evaluate(loaded.model, batch.inputs, **kwargs)
    html = html_report(
        loaded.model,
        batch.inputs[:1],
        display=batch.display[0],
        layers=args.layers,
        source=loaded.spec.text,
        image=batch.names[0],
        class_names=loaded.class_names,
        preprocessing=batch_preprocessing(loaded, args),
        max_maps=args.max_maps,
        cmap=args.cmap,
        cam=not args.no_cam,
        evaluation=evaluation,
        notes=notes,
        progress=lambda items: progress_bar(args, items, "report"),
    )
    write_atomic(args.output, html)
    print_written(args, [Path(args.output)])
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """``multiviz stats MODEL IMAGE -o stats.png``: the layer-statistics figure and table."""
    from multiviz.cli.output import check_image_output, encode_figure, write_all
    from multiviz.core.names import resolve

    check_image_output(args.output)
    loaded = model_from_args(args, "statistics of its layers")
    names = None
    if args.layers is not None or args.kind is not None:
        names = resolve(args.layers, mv.layers(loaded.model), kind=args.kind)
    batch = images_from_args(args, loaded)
    acts = mv.capture(loaded.model, batch.inputs, names)
    report = mv.layer_stats(acts)
    title = (
        f"{loaded.spec.text}: activation statistics per layer, input at the top "
        f"({len(batch)} image{'s' if len(batch) != 1 else ''})"
    )
    fig = mv.plot_layer_stats(report, title=title)
    if not args.quiet:
        print(report.table())
    write_all(args, [(Path(args.output), encode_figure(fig, args.output))])
    return EXIT_OK


def batch_preprocessing(loaded: Any, args: argparse.Namespace) -> str:
    """What was done to the image, exactly, and why: the report's preprocessing line."""
    prep = loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )
    changed = [
        opt
        for opt, given in (
            ("--size", args.size is not None),
            ("--mean", args.mean is not None),
            ("--std", args.std is not None),
            ("--no-normalize", args.no_normalize),
        )
        if given
    ]
    why = f"as asked by {', '.join(changed)}" if changed else _RECIPE_NOTES.get(loaded.spec.kind)
    return prep.describe() + (f" ({why})" if why else "")


# why each kind of model source gets the preprocessing it gets (said in reports)
_SAVED = (
    "a saved model does not record how its training images were prepared: multiviz resizes to "
    "the model's input size and feeds values in [0, 1]; pass --mean/--std (or --size) if it "
    "expects otherwise"
)
_RECIPE_NOTES = {
    "builtin": "the built-in model's training recipe",
    "torchvision": "torchvision's recipe for these weights (weights.transforms())",
    "keras_app": "the preprocess_input of this keras.applications family",
    "keras_file": _SAVED,
    "torch_export": _SAVED,
    "torchscript": _SAVED,
    "torch_pickle": _SAVED,
}


def cmd_compare(args: argparse.Namespace) -> int:
    """``multiviz compare A B IMAGE`` / ``multiviz compare builtin [IMAGE]``."""
    from multiviz.sources.images import load_images, preprocess_images
    from multiviz.sources.models import load_model, parse_spec

    specs = list(args.specs)
    _import_torch_first()
    weights = args.weights or "default"
    if specs[0] in ("builtin", "builtin-vit") and len(specs) <= 2:
        if args.framework is not None:
            raise UsageError(
                "compare builtin runs the built-in model in both frameworks: drop --framework "
                "(or name two models: compare builtin keras:NAME IMAGE --framework torch)."
            )
        # torch before TensorFlow, always
        first = load_model(specs[0], framework="torch", weights=weights)
        with framework_logs_hidden(not args.debug):
            models = [first, load_model(specs[0], framework="keras", weights=weights)]
        image = specs[1] if len(specs) == 2 else None
    elif len(specs) == 3:
        parsed = [parse_spec(s, args.framework if s == "builtin" else None) for s in specs[:2]]
        if specs[0] == specs[1] == "builtin" and args.framework is None:
            parsed[1] = parse_spec("builtin", "keras")  # the two frameworks, as `compare builtin`
            parsed[0] = parse_spec("builtin", "torch")
        # PyTorch must be imported before TensorFlow in one process: load torch models first
        order = sorted(range(2), key=lambda k: parsed[k].framework != "torch")
        loaded: dict[int, Any] = {}
        for k in order:
            with framework_logs_hidden(parsed[k].framework == "keras" and not args.debug):
                loaded[k] = load_model(
                    parsed[k],
                    weights=weights if parsed[k].kind in _WEIGHTED else "default",
                    arch=args.arch if parsed[k].kind == "torch_pickle" else None,
                    unsafe=args.unsafe_load,
                )
        models = [loaded[0], loaded[1]]
        image = specs[2]
    else:
        raise UsageError(
            f"compare takes MODEL_A MODEL_B IMAGE, or builtin [IMAGE]. Received {len(specs)} "
            f"argument(s): {' '.join(specs)}"
        )
    for m in models:
        require_capture(m, "a layer-by-layer comparison")
    prep = _compare_preprocess(models, args)
    if image is None:
        from multiviz.sources.shapes_dataset import sample_image

        batch = preprocess_images(
            [np.moveaxis(sample_image(seed=args.seed), 0, -1)],
            prep,
            [f"sample_image(seed={args.seed})"],
        )
    else:
        batch = load_images(image, prep, max_pixels=args.max_pixels)
    report = mv.compare(
        models[0].model, models[1].model, batch.inputs, atol=args.atol, rtol=args.rtol
    )
    print(str(report))
    if args.json:
        from multiviz.report import write_atomic

        write_atomic(args.json, report.to_json())
        print_written(args, [Path(args.json)])
    if not report.passed:
        first = report.first_divergence
        where = f" first at layer {first.name!r}" if first is not None else ""
        raise ModelsDifferError(
            f"the models disagree beyond atol={args.atol}, rtol={args.rtol}{where}. "
            "See the table above; loosen --atol/--rtol if the difference is expected."
        )
    return EXIT_OK


# the model kinds --weights applies to (the others hold their own weights)
_WEIGHTED = ("builtin", "torchvision", "keras_app")


def _import_torch_first() -> None:
    """Import torch and torchvision before TensorFlow: the other order can crash the process."""
    import importlib.util

    for name in ("torch", "torchvision"):
        if importlib.util.find_spec(name) is not None:
            __import__(name)


def _compare_preprocess(models: Sequence[Any], args: argparse.Namespace) -> Any:
    """The reference model's recipe, at the size a model fixes (both get the same pixels)."""
    prep = models[0].preprocess
    for m in models:
        shape = m.input_shape
        if args.size is None and shape is not None and len(shape) == 3:
            spatial = shape[:2] if m.preprocess.layout == "channels_last" else shape[1:]
            if None not in spatial:
                prep = prep.override(size=(int(spatial[0]), int(spatial[1])))
                break
    return prep.override(
        size=args.size,
        mean=args.mean,
        std=args.std,
        normalize=not args.no_normalize,
        layout="channels_first",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """``multiviz demo [--out DIR]``: run :func:`multiviz.demo.run_demo`."""
    from multiviz.demo import run_demo

    # in the order it happens: what the model says, each file as it is written, "Done" last
    log: Callable[[str], None] = (lambda s: None) if args.quiet else print
    from multiviz.demo import available_frameworks

    frameworks = args.framework or available_frameworks()
    if "torch" in frameworks:
        import torch  # noqa: F401  (before TensorFlow, always)
    if "keras" in frameworks and "keras" in available_frameworks():
        with framework_logs_hidden(not args.debug):
            import keras  # (TensorFlow's start-up lines go to fd 2)

            # the runtime starts (and probes for GPUs, logging to fd 2) at the first operation
            keras.ops.convert_to_numpy(keras.ops.zeros((1,)))
    run_demo(args.out, args.framework, log=log, progress=False if args.quiet else None)
    return EXIT_OK
