"""``multiviz evaluate MODEL IMAGES… --method … --metric …``: which attribution map to trust.

Runs :func:`multiviz.evaluate` on the images and prints the report's table
(methods × metrics, each a mean with a bootstrap interval; ``--json PATH``
writes it as JSON too, ``--json -`` prints only the JSON) and writes the
figure (``-o evaluation.png``: deletion/insertion/ROAD curves, the
randomization cascade).

Localization metrics need the object's place in each image:

* ``--boxes FILE``: a JSON object ``{"image name": [x0, y0, x1, y1]}`` (or a
  list of boxes per name, or a JSON list in the images' order), or a CSV file
  with rows ``image,x0,y0,x1,y1`` (several rows per image allowed; a header
  row is skipped). Pixels of the original image, ``x`` the column, ends
  exclusive; they are moved through the same resize and crop as the image.
* ``--masks DIR``: one mask image per image, with the same file stem
  (``cat.jpg`` -> ``cat.png``); nonzero pixels are the object.

The evaluation options (``--method``, ``--metric``, ``--layer``, ``--boxes``…)
are one option group, shared with ``multiviz report --evaluate``
(:func:`add_evaluation_options`).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EVALUATION_GROUP",
    "METHOD_NAMES",
    "add_evaluate_parser",
    "add_evaluation_options",
    "check_evaluation_args",
    "cmd_evaluate",
    "evaluation_kwargs",
]

EVALUATION_GROUP = "evaluation options"

#: ``--method`` names (as ``multiviz cam`` spells them) -> :func:`multiviz.explain`'s names.
METHOD_NAMES = {
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
    "deconvnet": "deconvnet",
    "guided-grad-cam": "guided_grad_cam",
}
_DEFAULT_METHODS = ("grad-cam", "saliency")
_FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def add_evaluate_parser(add: Any, model_args: argparse.ArgumentParser) -> None:
    """Register the ``evaluate`` subcommand (``add(name, help, parents)`` makes a subparser)."""
    from multiviz.cli.parser import _add_preprocessing_args

    p = add(
        "evaluate",
        "Score attribution methods (faithfulness, localization, sanity checks) on images and "
        "say which map to trust: a table with intervals, and a figure.",
        [model_args],
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders of them, or .npy arrays"
    )
    _add_preprocessing_args(p)
    add_evaluation_options(p)
    p.add_argument(
        "-o",
        "--output",
        default="evaluation.png",
        metavar="PATH",
        help="the figure to write: curves and randomization cascade (default: evaluation.png; "
        ".png, .pdf, .svg or .jpg)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the table as JSON ({method: {metric: {value, low, high}}}); "
        "- prints it instead of the text table",
    )
    p.set_defaults(run=cmd_evaluate)


def _unlisted(group: Any) -> None:
    """Make every argument added to ``group`` from now on hidden from ``--help``."""
    add = group.add_argument

    def add_hidden(*args: Any, **kwargs: Any) -> Any:
        kwargs["help"] = argparse.SUPPRESS
        return add(*args, **kwargs)

    group.add_argument = add_hidden


def add_evaluation_options(p: argparse.ArgumentParser, listed: bool = True) -> None:
    """The options of :func:`multiviz.evaluate`, as one group (``evaluate`` and ``report``).

    ``listed=False`` accepts them without listing them in ``--help`` (``report``
    points to ``multiviz evaluate --help``, so they are described once).
    """
    from multiviz.cli.parser import _any_int, _positive_int, _unit_float, add_batch_size

    g = p.add_argument_group(EVALUATION_GROUP)
    if not listed:
        _unlisted(g)
    g.add_argument(
        "--method",
        action="append",
        type=_method,
        metavar="METHOD",
        help=f"one of {', '.join(METHOD_NAMES)} (repeatable; default: grad-cam and saliency)",
    )
    g.add_argument(
        "--metric",
        action="append",
        type=_metric,
        metavar="METRIC",
        help="one of deletion, insertion, road, pointing-game, energy-pointing-game, iou, "
        "randomization, data-randomization (repeatable; default: every one the other options "
        "allow)",
    )
    g.add_argument(
        "--layer", metavar="NAME", help="the CAM methods' layer (default: the last spatial layer)"
    )
    g.add_argument(
        "--target",
        metavar="CLASS",
        help="class index or name explained in every image (default: each image's top class)",
    )
    regions = g.add_mutually_exclusive_group()
    regions.add_argument(
        "--boxes",
        metavar="FILE",
        help='object boxes for the localization metrics: JSON {"image.png": [x0, y0, x1, y1], '
        "...} (or several boxes per image) or CSV rows image,x0,y0,x1,y1, in the original "
        "image's pixels (they follow its resize and crop)",
    )
    regions.add_argument(
        "--masks", metavar="DIR", help="object masks: one image per image, same file stem"
    )
    g.add_argument(
        "--randomized-model",
        metavar="MODEL",
        help="for data-randomization: the same architecture trained on permuted labels "
        "(loaded as MODEL is, with --framework/--arch)",
    )
    g.add_argument(
        "--randomized-weights",
        metavar="none|default|PATH",
        help="the --randomized-model's weights (as --weights)",
    )
    g.add_argument(
        "--score",
        choices=("probability", "logit"),
        default="probability",
        help="what deletion, insertion and ROAD score (default: the target's probability)",
    )
    g.add_argument(
        "--substrate",
        choices=("blur", "mean", "zeros"),
        help="what replaces removed pixels (default: zeros for deletion, blur for insertion)",
    )
    g.add_argument(
        "--steps", type=_positive_int, default=50, metavar="N", help="deletion steps (default: 50)"
    )
    g.add_argument(
        "--percentages",
        type=_percentages,
        metavar="P,P,...",
        help="ROAD's removal percentages, each in (0, 100) (default: 10,20,...,90)",
    )
    g.add_argument(
        "--tolerance",
        type=_nonnegative,
        default=15.0,
        metavar="PX",
        help="the pointing game's tolerance in pixels (default: 15)",
    )
    g.add_argument(
        "--iou-threshold",
        type=_unit_float,
        default=0.5,
        metavar="T",
        help="IoU's threshold, a fraction of the map's maximum (default: 0.5)",
    )
    g.add_argument(
        "--no-independent",
        action="store_true",
        help="randomization: only the cascade, not each layer on its own (half the cost)",
    )
    g.add_argument(
        "--resamples",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="bootstrap resamples (default: 2000)",
    )
    g.add_argument(
        "--seed", type=_any_int, default=0, help="every random draw (noise, weights, bootstrap)"
    )
    add_batch_size(g)


def _method(text: str) -> str:
    key = text.strip().lower()
    if key in METHOD_NAMES:
        return METHOD_NAMES[key]
    if key in METHOD_NAMES.values():  # the API's spelling is accepted too
        return key
    raise argparse.ArgumentTypeError(
        f"unknown method {text!r}; choose from {', '.join(METHOD_NAMES)}"
    )


def _metric(text: str) -> str:
    from multiviz.evaluation.report import METRICS

    key = text.strip().lower().replace("-", "_")
    if key not in METRICS:
        names = ", ".join(m.replace("_", "-") for m in METRICS)
        raise argparse.ArgumentTypeError(f"unknown metric {text!r}; choose from {names}")
    return key


def _percentages(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers in (0, 100), got {text!r}"
        ) from None
    if not values or any(not 0.0 < v < 100.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers in (0, 100), got {text!r}")
    return values


def _nonnegative(text: str) -> float:
    from multiviz.cli.parser import _nonnegative_float

    return _nonnegative_float(text)


# --------------------------------------------------------------------------- running


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate, print the table (or JSON), write the figure (and JSON file)."""
    from multiviz.cli.exit_codes import EXIT_OK
    from multiviz.cli.inputs import images_from_sources, model_from_args
    from multiviz.cli.output import encode_figure, print_note, print_written, write_all
    from multiviz.report import write_atomic

    _check_figure_output(args.output)
    check_evaluation_args(args)
    loaded = model_from_args(args, "evaluating attribution maps")
    batch, originals = images_from_sources(args, loaded, args.images)
    kwargs = evaluation_kwargs(args, loaded, batch, originals)
    print_note(
        args,
        f"evaluating {', '.join(kwargs['methods'])} on {len(batch)} image(s); "
        "randomization reruns every method once per layer",
    )
    import multiviz as mv

    report = mv.evaluate(loaded.model, batch.inputs, **kwargs)
    layer = report.settings.get("layer")
    if layer is not None and args.layer is None:
        print_note(args, f"CAM methods at {layer!r}, the last spatial layer (choose with --layer)")
    if args.json == "-":
        print(report.to_json())
    else:
        print(report.table())
    outputs = []
    if report.curves or report.randomization:
        outputs.append((Path(args.output), encode_figure(report.plot(), args.output)))
    else:
        print_note(args, "no curves or randomization to draw: no figure written")
    if args.json and args.json != "-":
        write_atomic(args.json, report.to_json() + "\n")
        print_written(args, [Path(args.json)])
    write_all(args, outputs)
    return EXIT_OK


def evaluation_kwargs(
    args: argparse.Namespace, loaded: Any, batch: Any, originals: Sequence[np.ndarray]
) -> dict[str, Any]:
    """The keyword arguments of :func:`multiviz.evaluate` the options ask for.

    ``originals`` are the images as read (before resizing), for moving
    ``--boxes`` / ``--masks`` onto the model's input.
    """
    import multiviz as mv
    from multiviz.cli.drawing import _target, one_layer
    from multiviz.cli.inputs import model_from_args

    layer = None if args.layer is None else one_layer(args.layer, mv.layers(loaded.model))
    methods = list(dict.fromkeys(args.method or [METHOD_NAMES[m] for m in _DEFAULT_METHODS]))
    kwargs: dict[str, Any] = {
        "methods": methods,
        "layer": layer,
        "metrics": list(dict.fromkeys(args.metric)) if args.metric else None,
        "target": _target(args.target, loaded.class_names),
        "score": args.score,
        "substrate": args.substrate,
        "steps": args.steps,
        "tolerance": args.tolerance,
        "iou_threshold": args.iou_threshold,
        "independent": not args.no_independent,
        "resamples": args.resamples,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    if args.percentages:
        kwargs["percentages"] = args.percentages
    prep = _preprocess(args, loaded)
    if args.boxes:
        kwargs["masks"] = _regions_from_boxes(Path(args.boxes), batch.names, originals, prep)
    elif args.masks:
        kwargs["masks"] = _regions_from_masks(
            Path(args.masks), batch.names, originals, prep, args.max_pixels
        )
    if args.randomized_model:
        other = argparse.Namespace(**{**vars(args), "model": args.randomized_model})
        other.weights = args.randomized_weights
        kwargs["randomized_model"] = model_from_args(other, "data randomization").model
    return kwargs


def check_evaluation_args(args: argparse.Namespace) -> None:
    """Refuse metrics the other options cannot feed, before loading anything."""
    from multiviz.errors import UsageError

    for metric in args.metric or []:
        if metric in ("pointing_game", "energy_pointing_game", "iou") and not (
            args.boxes or args.masks
        ):
            raise UsageError(
                f"--metric {metric.replace('_', '-')} needs --boxes FILE or --masks DIR: it "
                "compares each map with where the object is."
            )
        if metric == "data_randomization" and not args.randomized_model:
            raise UsageError(
                "--metric data-randomization needs --randomized-model MODEL: the same network "
                "trained on permuted labels, whose maps are compared with the model's."
            )


def _preprocess(args: argparse.Namespace, loaded: Any) -> Any:
    return loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )


def _check_figure_output(path: str) -> None:
    from multiviz.errors import UsageError

    if Path(path).suffix.lower() not in _FIGURE_SUFFIXES:
        raise UsageError(
            f"-o {path!r}: the figure is written as {', '.join(_FIGURE_SUFFIXES)}; "
            "give the file one of these extensions."
        )


# --------------------------------------------------------------------------- regions


def _regions_from_boxes(
    path: Path, names: Sequence[str], originals: Sequence[np.ndarray], prep: Any
) -> np.ndarray:
    """``(N, H, W)`` bool at the input's size from a JSON or CSV box file."""
    from multiviz.errors import UsageError
    from multiviz.evaluation.localization import boxes_to_masks
    from multiviz.sources.images import boxes_to_input

    per_image = _read_boxes(path, names)
    size = _input_size(originals, prep)
    regions = []
    for name, boxes, image in zip(names, per_image, originals, strict=True):
        if not boxes:
            raise UsageError(f"--boxes {str(path)!r} has no box for image {name!r}.")
        moved = boxes_to_input(np.asarray(boxes, np.float64), image.shape[:2], prep)
        regions.append(boxes_to_masks([moved], size)[0])
    return np.stack(regions)


def _read_boxes(path: Path, names: Sequence[str]) -> list[list[list[float]]]:
    """Boxes per image, in ``names`` order, from ``path`` (JSON or CSV)."""
    from multiviz.errors import UsageError

    if not path.is_file():
        raise UsageError(f"--boxes {str(path)!r}: no such file.")
    found: dict[str, list[list[float]]] = {n: [] for n in names}
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                if len(data) != len(names):
                    raise UsageError(
                        f"--boxes {str(path)!r} lists {len(data)} entries for {len(names)} images; "
                        "give one box (or list of boxes) per image, in the images' order."
                    )
                data = dict(zip(names, data, strict=True))
            if not isinstance(data, dict):
                raise ValueError("the JSON must be an object or a list")
            for name, value in data.items():
                key = _image_key(str(name), names, path)
                arr = np.asarray(value, np.float64)
                found[key] += arr.reshape(-1, 4).tolist() if arr.size % 4 == 0 else [value]
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                for row in csv.reader(fh):
                    if not row or row[0].startswith("#"):
                        continue
                    try:
                        box = [float(v) for v in row[1:5]]
                    except ValueError:
                        continue  # a header row
                    if len(row) != 5:
                        raise ValueError(f"a row must be image,x0,y0,x1,y1; got {row!r}")
                    found[_image_key(row[0], names, path)].append(box)
    except (ValueError, TypeError) as err:
        raise UsageError(
            f'--boxes {str(path)!r}: cannot read boxes ({err}). Use JSON {{"image": [x0, y0, '
            "x1, y1]}} or CSV rows image,x0,y0,x1,y1."
        ) from err
    for name, boxes in found.items():
        for box in boxes:
            if len(box) != 4 or not np.all(np.isfinite(box)):
                raise UsageError(
                    f"--boxes {str(path)!r}: image {name!r} has {box!r}; a box is four finite "
                    "numbers x0, y0, x1, y1."
                )
    return [found[n] for n in names]


def _image_key(name: str, names: Sequence[str], path: Path) -> str:
    """The image ``name`` refers to: its file name, or its stem."""
    from multiviz.errors import UsageError, closest

    if name in names:
        return name
    stems = {Path(n).stem: n for n in names}
    if Path(name).stem in stems:
        return stems[Path(name).stem]
    near = closest(name, list(names), n=3)
    raise UsageError(
        f"--boxes {str(path)!r} names image {name!r}, which is not among the images given"
        + (f"; did you mean {near}?" if near else ".")
    )


def _regions_from_masks(
    folder: Path,
    names: Sequence[str],
    originals: Sequence[np.ndarray],
    prep: Any,
    max_pixels: int | None = None,
) -> np.ndarray:
    """``(N, H, W)`` bool from a folder of mask images matched by file stem."""
    from multiviz.errors import UsageError
    from multiviz.sources.images import image_files, mask_to_input, read_image

    if not folder.is_dir():
        raise UsageError(f"--masks {str(folder)!r} must be a folder of mask images.")
    by_stem = {p.stem: p for p in image_files(folder)}
    regions = []
    for name, image in zip(names, originals, strict=True):
        path = by_stem.get(Path(name).stem)
        if path is None:
            raise UsageError(
                f"--masks {str(folder)!r} has no mask for image {name!r} (looked for a file "
                f"named {Path(name).stem}.*)."
            )
        mask = read_image(path, max_pixels=max_pixels).max(axis=-1)
        if mask.shape != image.shape[:2]:
            raise UsageError(
                f"--masks: {path.name} is {mask.shape[0]}x{mask.shape[1]} but image {name!r} is "
                f"{image.shape[0]}x{image.shape[1]}; a mask must have its image's size."
            )
        regions.append(mask_to_input(mask, prep))
    return np.stack(regions)


def _input_size(originals: Sequence[np.ndarray], prep: Any) -> tuple[int, int]:
    if prep.size is not None:
        return (int(prep.size[0]), int(prep.size[1]))
    return (int(originals[0].shape[0]), int(originals[0].shape[1]))
