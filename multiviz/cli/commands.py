"""The subcommands that print or write reports: ``layers``, ``report``, ``compare``, ``demo``.

The drawing subcommands, ``maps`` and ``cam``, are in :mod:`multiviz.cli.drawing`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import multiviz as mv
from multiviz.cli.exit_codes import EXIT_OK
from multiviz.cli.inputs import (
    framework_logs_hidden,
    images_from_sources,
    model_from_args,
    require_capture,
)
from multiviz.cli.output import check_cmap, print_note, print_written, progress_bar
from multiviz.errors import ModelsDifferError, MultivizError, UsageError

__all__ = ["batch_preprocessing", "cmd_compare", "cmd_demo", "cmd_layers", "cmd_report"]


def cmd_layers(args: argparse.Namespace) -> int:
    """``multiviz layers MODEL [--kind KIND]``: print the layer table."""
    loaded = model_from_args(args)
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


def batch_preprocessing(loaded: Any, args: argparse.Namespace) -> str:
    """The preprocessing line of the report, with the command-line overrides applied."""
    return loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    ).describe()


def cmd_compare(args: argparse.Namespace) -> int:
    """``multiviz compare A B IMAGE`` / ``multiviz compare builtin [IMAGE]``."""
    from multiviz.sources.images import load_images, preprocess_images
    from multiviz.sources.models import load_model, parse_spec

    specs = list(args.specs)
    _import_torch_first()
    if specs[0] == "builtin" and len(specs) <= 2:
        first = load_model("builtin", framework="torch")  # torch before TensorFlow, always
        with framework_logs_hidden(not args.debug):
            models = [first, load_model("builtin", framework="keras")]
        image = specs[1] if len(specs) == 2 else None
    elif len(specs) == 3:
        parsed = [parse_spec(s) for s in specs[:2]]
        # PyTorch must be imported before TensorFlow in one process: load torch models first
        order = sorted(range(2), key=lambda k: parsed[k].framework != "torch")
        loaded: dict[int, Any] = {}
        for k in order:
            with framework_logs_hidden(parsed[k].framework == "keras" and not args.debug):
                loaded[k] = load_model(
                    parsed[k],
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
        batch = load_images(image, prep)
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

    log: Callable[[str], None] = (
        (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    )
    from multiviz.demo import available_frameworks

    frameworks = args.framework or available_frameworks()
    if "torch" in frameworks:
        import torch  # noqa: F401  (before TensorFlow, always)
    if "keras" in frameworks and "keras" in available_frameworks():
        with framework_logs_hidden(not args.debug):
            import keras  # noqa: F401  (TensorFlow's start-up lines go to fd 2)
    files = run_demo(args.out, args.framework, log=log)
    print_written(args, [p for paths in files.values() for p in paths])
    return EXIT_OK
