"""The ``multiviz`` command line.

::

    multiviz layers  torchvision:resnet18 --kind conv
    multiviz maps    model.keras photo.jpg --layer conv2_block1_out --cmap viridis -o maps.png
    multiviz cam     torchvision:resnet50 photo.jpg --method grad-cam --layer layer4 -o cam.png
    multiviz report  model.pt2 photo.jpg -o report.html
    multiviz compare torch_model.pt2 keras_model.keras photo.jpg
    multiviz compare builtin
    multiviz demo    --out multiviz-demo

Every subcommand loads the model (:mod:`multiviz.loaders`), reads and
preprocesses the images (:mod:`multiviz.images`), and calls the public API.
Errors are one line, ``multiviz: error: ...``, saying what to do (``--debug``
shows the traceback); exit codes are listed in ``multiviz --help``. Outputs
are computed first and written last, each atomically, so a failure never
leaves a half-written or partial set of files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import multiviz as mv
from multiviz import __version__
from multiviz.errors import BackendUnavailableError, MultivizError

__all__ = ["EXIT_DIFFERENT", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIFFERENT = 3

EPILOG = """\
models:
  builtin                 the multiviz built-in CNN (--framework torch|keras)
  torchvision:NAME        torchvision.models.NAME (--weights none|default|PATH)
  keras:NAME              keras.applications.NAME (--weights none|default|PATH)
  FILE.keras, FILE.h5     a saved Keras model
  FILE.pt2                a torch.export program
  FILE.pt, FILE.pth       a TorchScript archive, or a state dict with --arch

images: a file of any format Pillow reads, a folder of them, or a .npy array.

exit codes:
  0  success
  1  runtime failure: a framework is missing, a download failed, the model failed to run
  2  usage or bad input: bad option, missing or unreadable file, unknown layer,
     an image that does not fit the model
  3  compare: the two models disagree beyond the tolerance

Add --debug to see the traceback of an error.
"""

_METHODS = {
    "grad-cam": "grad_cam",
    "grad-cam++": "grad_cam_plus_plus",
    "layer-cam": "layer_cam",
    "score-cam": "score_cam",
    "cam": "cam",
    "saliency": "saliency",
    "smoothgrad": "saliency",
    "integrated-gradients": "integrated_gradients",
}
_LAYERLESS = ("saliency", "smoothgrad", "integrated-gradients")
# images are enlarged by whole pixels to about this size, so small inputs stay visible
_GRID_PX = 1024
_MIN_IMAGE_PX = 256


class UsageError(MultivizError, ValueError):
    """The command line itself is wrong (an unknown option, a bad value)."""


class ModelsDifferError(MultivizError):
    """``compare`` ran, and the models disagree beyond the tolerance."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised (one line, exit 2) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it).

    Args:
        argv: the arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        0 on success, 1 on a runtime failure, 2 on bad usage or input, 3 when
        ``compare`` finds the models differ.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        multiviz 0.1.0
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help / --version
        return stop.code if isinstance(stop.code, int) else EXIT_OK
    except UsageError as err:
        return _fail(err, EXIT_USAGE, debug)
    _quiet_frameworks(debug)
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
        try:
            return int(args.run(args) or EXIT_OK)
        except KeyboardInterrupt:
            print("multiviz: interrupted", file=sys.stderr)
            return 130
        except ModelsDifferError as err:
            return _fail(err, EXIT_DIFFERENT, debug)
        except Exception as err:
            return _fail(err, exit_code(err), debug)


def exit_code(err: BaseException) -> int:
    """The exit code for an error: 2 for bad usage or input, 1 for everything else.

    Example:
        >>> from multiviz.errors import LayerNotFoundError
        >>> exit_code(LayerNotFoundError("No layer named 'x'")), exit_code(RuntimeError("boom"))
        (2, 1)
    """
    from multiviz.loaders import NoNetworkError

    if isinstance(err, (BackendUnavailableError, NoNetworkError)):
        return EXIT_FAILURE
    if isinstance(err, MultivizError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _fail(err: BaseException, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    print(f"multiviz: error: {_one_line(err)}", file=sys.stderr)
    return code


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) if str(err).strip() else ""
    text = text.replace("mv.layers(model)", "`multiviz layers MODEL`")  # speak CLI, not Python
    if not isinstance(err, MultivizError):
        # not one of ours: say what kind of failure it was
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
        text += " (run again with --debug for the traceback)"
    return text


@contextlib.contextmanager
def _framework_logs_hidden(active: bool) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while TensorFlow starts up.

    TensorFlow's C++ runtime logs start-up lines (oneDNN, CUDA probing) straight
    to fd 2, before ``TF_CPP_MIN_LOG_LEVEL`` takes effect; a command-line user
    should see only multiviz's own one-line errors. Python exceptions are
    unaffected: they are reported after fd 2 is restored. ``--debug`` keeps
    everything.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_frameworks(debug: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("MPLBACKEND", "Agg")


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per verb (exposed for docs and tests)."""
    parser = _Parser(
        prog="multiviz",
        description="See what a convolutional network sees: feature maps, attribution maps, "
        "HTML reports and cross-framework comparisons, for PyTorch and Keras.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"multiviz {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    model_args = _Parser(add_help=False)
    _add_model_args(model_args)
    image_args = _Parser(add_help=False)
    _add_image_args(image_args)
    common = _Parser(add_help=False)
    _add_common(common, argparse.SUPPRESS)

    def add(
        name: str, help_: str, parents: list[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            parents=[*parents, common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add(
        "layers",
        "List the layers of a model (name, type, kind, output shape, parameters).",
        [model_args],
    )
    p.add_argument("--kind", choices=_kinds(), help="only layers of this kind")
    p.set_defaults(run=cmd_layers)

    p = add(
        "maps",
        "Draw the feature maps of a layer as one grid image per image and layer.",
        [model_args, image_args],
    )
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        metavar="NAME",
        help="layer name or glob pattern, as `multiviz layers` lists them (repeatable)",
    )
    p.add_argument("--cmap", default="viridis", help="matplotlib colormap (default: viridis)")
    p.add_argument(
        "--max-maps",
        type=_positive_int,
        default=64,
        metavar="N",
        help="show at most N channels (default: 64)",
    )
    p.add_argument(
        "--normalize",
        choices=("map", "layer", "percentile", "symmetric"),
        default="map",
        help="how maps are scaled to colours (default: each map on its own)",
    )
    p.add_argument(
        "--figure",
        action="store_true",
        help="draw a matplotlib figure with a title and a colorbar instead of the bare grid",
    )
    _add_output(p, "maps.png")
    p.set_defaults(run=cmd_maps)

    p = add(
        "cam",
        "Draw an attribution map (Grad-CAM and friends) over the image.",
        [model_args, image_args],
    )
    p.add_argument(
        "--method", choices=tuple(_METHODS), default="grad-cam", help="default: grad-cam"
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="layer for CAM methods (default: the last convolution layer)",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class index or name to explain (default: the top-scoring class)",
    )
    p.add_argument(
        "--alpha", type=_unit_float, default=0.5, help="heatmap opacity in [0, 1] (default: 0.5)"
    )
    p.add_argument("--cmap", default="jet", help="colormap of the heatmap (default: jet)")
    _add_output(p, "cam.png")
    p.set_defaults(run=cmd_cam)

    p = add(
        "report",
        "Write one self-contained HTML report: every convolution layer, statistics, Grad-CAM.",
        [model_args, image_args],
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="layer names or glob patterns (default: every convolution layer)",
    )
    p.add_argument(
        "--max-maps",
        type=_positive_int,
        default=64,
        metavar="N",
        help="feature maps per layer grid (default: 64)",
    )
    p.add_argument(
        "--cmap", default="viridis", help="colormap of the feature maps (default: viridis)"
    )
    p.add_argument("--no-cam", action="store_true", help="leave out the Grad-CAM overlay")
    _add_output(p, "report.html")
    p.set_defaults(run=cmd_report)

    p = add("compare", "Compare the same network in PyTorch and Keras, layer by layer.", [])
    p.add_argument(
        "specs",
        nargs="+",
        metavar="MODEL_A MODEL_B IMAGE",
        help="two models and an image, or `builtin [IMAGE]` for the built-in model in both frameworks",
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="architecture of a state-dict file (torchvision:NAME or builtin)",
    )
    p.add_argument("--unsafe-load", action="store_true", help=_UNSAFE_HELP)
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default: 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default: 1e-4)")
    _add_preprocessing_args(p)
    p.add_argument(
        "--seed", type=int, default=0, help="which built-in sample image without IMAGE (default: 0)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.set_defaults(run=cmd_compare)

    p = add("demo", "Run the built-in demo: every kind of picture multiviz draws, in a folder.", [])
    p.add_argument(
        "--out",
        default="multiviz-demo",
        metavar="DIR",
        help="folder to write (default: multiviz-demo)",
    )
    p.add_argument(
        "--framework",
        action="append",
        choices=("torch", "keras"),
        help="only this framework (repeatable; default: every installed one)",
    )
    p.set_defaults(run=cmd_demo)
    return parser


_UNSAFE_HELP = (
    "load files whose loading runs code stored in them: a whole model pickled with "
    "torch.save(model), or a Keras Lambda layer. DANGEROUS: a malicious file can then run "
    "any command as you. Use it only for files you made or fully trust."
)


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    # on the main parser and on every subcommand, so `multiviz -q maps ...` and
    # `multiviz maps ... -q` both work; SUPPRESS keeps the subcommand from
    # overwriting a value given before it
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars or notes"
    )
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show the traceback of an error"
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="builtin, torchvision:NAME, keras:NAME, or a saved model file")
    p.add_argument(
        "--framework",
        choices=("torch", "keras"),
        help="for builtin: which framework (default: torch when installed)",
    )
    p.add_argument(
        "--weights",
        default="default",
        metavar="none|default|PATH",
        help="for builtin/torchvision/keras models: random (none), pretrained "
        "(default; downloads once, needs a network), or a locally saved weights file",
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="for a state-dict .pt/.pth: the network it belongs to (torchvision:NAME or builtin)",
    )
    p.add_argument("--unsafe-load", action="store_true", help=_UNSAFE_HELP)


def _add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="an image file, a folder of images, or a .npy array")
    _add_preprocessing_args(p)


def _add_preprocessing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size",
        type=_size,
        metavar="N|HxW",
        help="resize to this (default: the model family's size)",
    )
    p.add_argument(
        "--mean", type=_floats, metavar="R,G,B", help="normalisation mean in [0, 1] units"
    )
    p.add_argument("--std", type=_floats, metavar="R,G,B", help="normalisation std in [0, 1] units")
    p.add_argument("--no-normalize", action="store_true", help="feed plain [0, 1] values")


def _add_output(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "-o",
        "--output",
        default=default,
        metavar="PATH",
        help=f"file to write (default: {default}); with several images or layers, "
        "one file each, named PATH-<image>-<layer>",
    )


def _kinds() -> tuple[str, ...]:
    from multiviz.selection import KINDS

    return KINDS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", text)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < 1):
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 224 or 224x160), got {text!r}")
    h = int(m.group(1))
    return (h, int(m.group(2)) if m.group(2) else h)


def _floats(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected R,G,B numbers (e.g. 0.485,0.456,0.406), got {text!r}"
        ) from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(
            f"expected 1 or 3 comma-separated numbers, got {len(values)}"
        )
    return (values[0], values[1], values[2])


# --------------------------------------------------------------------------- shared steps


def _load(args: argparse.Namespace, purpose: str | None = None) -> Any:
    """Load ``args.model``; ``purpose`` names what needs its inner layers, if anything."""
    from multiviz.loaders import load_model, parse_spec

    spec = parse_spec(args.model, args.framework)
    with _framework_logs_hidden(spec.framework == "keras" and not args.debug):
        loaded = load_model(spec, weights=args.weights, arch=args.arch, unsafe=args.unsafe_load)
    if purpose is not None:
        _require_capture(loaded, purpose)
    for note in loaded.notes:
        _note(args, note)
    return loaded


def _images(args: argparse.Namespace, loaded: Any) -> Any:
    from multiviz.images import load_images

    if args.std is not None and any(s <= 0 for s in args.std):
        raise UsageError(f"--std must be positive. Received: {','.join(map(str, args.std))}")
    prep = loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )
    batch = load_images(args.image, prep)
    _check_fit(loaded, batch)
    return batch


def _check_fit(loaded: Any, batch: Any) -> None:
    """Refuse a batch whose shape the model cannot take, before running it."""
    from multiviz.errors import InputShapeError

    want = loaded.input_shape
    have = tuple(batch.inputs.shape[1:])
    if want is None or len(want) != len(have):
        return
    if all(w is None or w == h for w, h in zip(want, have, strict=True)):
        return
    spatial = (want[0], want[1]) if batch.layout == "channels_last" else (want[1], want[2])
    channels = want[-1] if batch.layout == "channels_last" else want[0]
    fix = []
    if channels is not None and channels != 3:
        fix.append(f"the model takes {channels}-channel images and multiviz feeds RGB")
    if None not in spatial and spatial != tuple(batch.display.shape[1:3]):
        fix.append(f"pass --size {spatial[0]}x{spatial[1]} (or leave --size out)")
    shown = ", ".join(str(d) if d is not None else "any" for d in want)
    raise InputShapeError(
        f"The image batch has shape {tuple(batch.inputs.shape)} but {loaded.spec.text} takes "
        f"(N, {shown}): " + ("; ".join(fix) if fix else "the shapes do not match") + "."
    )


def _require_capture(loaded: Any, what: str) -> None:
    if not loaded.capturable:
        raise UsageError(
            f"{loaded.spec.text} is a TorchScript archive: PyTorch cannot hook its inner layers, "
            f"so {what} is not possible. Save the model with torch.export (.pt2), or save its "
            "state dict and pass --arch."
        )


def _progress(
    args: argparse.Namespace, items: Iterable[Any], desc: str, total: int | None = None
) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(
        items,
        desc=desc,
        total=total,
        disable=True if args.quiet else None,
        file=sys.stderr,
        leave=False,
        unit="",
    )


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"multiviz: note: {text}", file=sys.stderr)


def _done(args: argparse.Namespace, paths: Iterable[Path]) -> None:
    if not args.quiet:
        for path in paths:
            print(f"wrote {path}")


def _output_paths(output: str, images: Sequence[str], layers: Sequence[str]) -> list[list[Path]]:
    """One path per (image, layer): ``output`` itself when there is one of each."""
    base = Path(output)
    if len(images) == 1 and len(layers) == 1:
        return [[base]]
    paths = []
    for image in images:
        row = []
        for layer in layers:
            parts = ([_slug(Path(image).stem)] if len(images) > 1 else []) + (
                [_slug(layer)] if len(layers) > 1 else []
            )
            row.append(base.with_name(f"{base.stem}-{'-'.join(parts)}{base.suffix}"))
        paths.append(row)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "x"


def _check_image_output(path: str) -> str:
    from PIL import Image

    suffix = Path(path).suffix.lower()
    formats = Image.registered_extensions()
    if suffix not in formats:
        raise UsageError(
            f"Cannot tell the image format of -o {path!r} from its extension. "
            "Use .png (or .jpg, .webp, ...)."
        )
    return formats[suffix]


def _check_cmap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        from multiviz.errors import closest

        near = closest(name, list(matplotlib.colormaps), n=3)
        raise UsageError(
            f"Unknown colormap {name!r}."
            + (f" Did you mean {near}?" if near else "")
            + " See matplotlib's colormap list (viridis, magma, gray, jet, ...)."
        )


def _encode(rgb: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _encode_figure(fig: Any, path: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=120)
    return buf.getvalue()


def _write_all(args: argparse.Namespace, outputs: Sequence[tuple[Path, bytes]]) -> None:
    from multiviz.report import write_atomic

    for path, data in outputs:
        write_atomic(path, data)
    _done(args, [p for p, _ in outputs])


# --------------------------------------------------------------------------- commands


def cmd_layers(args: argparse.Namespace) -> int:
    """``multiviz layers MODEL [--kind KIND]``: print the layer table."""
    loaded = _load(args)
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


def cmd_maps(args: argparse.Namespace) -> int:
    """``multiviz maps MODEL IMAGE --layer NAME``: feature-map grids as images."""
    from multiviz.selection import resolve

    fmt = _check_image_output(args.output)
    _check_cmap(args.cmap)
    loaded = _load(args, "drawing feature maps")
    names = resolve(args.layer, mv.layers(loaded.model))
    batch = _images(args, loaded)
    acts = mv.capture(loaded.model, batch.inputs, names)
    keys = list(acts)
    paths = _output_paths(args.output, batch.names, keys)
    outputs = []
    jobs = [(i, j) for i in range(len(batch)) for j in range(len(keys))]
    for i, j in _progress(args, jobs, "maps"):
        arr = acts[keys[j]][i]
        if args.figure:
            fig = mv.plot_feature_maps(
                arr,
                max_maps=args.max_maps,
                cmap=args.cmap,
                normalize=args.normalize,
                title=f"{keys[j]} — {batch.names[i]}",
            )
            outputs.append((paths[i][j], _encode_figure(fig, str(paths[i][j]))))
        else:
            rgb = mv.feature_map_image(
                arr,
                max_maps=args.max_maps,
                cmap=args.cmap,
                normalize=args.normalize,
                upscale=_grid_upscale(arr, args.max_maps),
            )
            outputs.append((paths[i][j], _encode(rgb, fmt)))
    _write_all(args, outputs)
    return EXIT_OK


def cmd_cam(args: argparse.Namespace) -> int:
    """``multiviz cam MODEL IMAGE --method grad-cam``: attribution overlays."""
    from multiviz.selection import resolve

    fmt = _check_image_output(args.output)
    _check_cmap(args.cmap)
    loaded = _load(args, args.method)
    infos = mv.layers(loaded.model)
    layer = None
    if args.method not in _LAYERLESS:
        if args.layer is not None:
            layer = resolve(args.layer, infos)[0]
        else:
            convs = [i.name for i in infos if i.kind == "conv"]
            if not convs:
                raise UsageError(f"{loaded.spec.text} has no convolution layer; pass --layer NAME.")
            layer = convs[-1]
            _note(
                args,
                f"{args.method} at the last convolution layer, {layer!r} (choose with --layer)",
            )
    elif args.layer is not None:
        _note(args, f"--layer is ignored by {args.method}: it explains the input pixels directly")
    batch = _images(args, loaded)
    target = _target(args.target, loaded.class_names)
    fn = getattr(mv, _METHODS[args.method])
    kwargs: dict[str, Any] = {"target": target}
    if args.method == "smoothgrad":
        kwargs["method"] = "smoothgrad"
    heat = (
        fn(loaded.model, batch.inputs, layer, **kwargs)
        if layer is not None
        else fn(loaded.model, batch.inputs, **kwargs)
    )
    output = np.asarray(mv.forward(loaded.model, batch.inputs))
    paths = _output_paths(args.output, batch.names, [layer or args.method])
    outputs = []
    for i in _progress(args, range(len(batch)), args.method):
        rgb = mv.overlay_image(batch.display[i], heat[i], alpha=args.alpha, cmap=args.cmap)
        rgb = _enlarge(rgb, _MIN_IMAGE_PX)
        outputs.append((paths[i][0], _encode(rgb, fmt)))
        if not args.quiet and output.ndim == 2:
            k = int(output[i].argmax()) if target is None else int(np.atleast_1d(target)[0])
            name = (
                f" ({loaded.class_names[k]})"
                if loaded.class_names and k < len(loaded.class_names)
                else ""
            )
            print(f"{batch.names[i]}: explained class {k}{name}")
    _write_all(args, outputs)
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


def cmd_report(args: argparse.Namespace) -> int:
    """``multiviz report MODEL IMAGE -o report.html``: the self-contained HTML report."""
    from multiviz.report import html_report, write_atomic

    _check_cmap(args.cmap)
    loaded = _load(args, "a report of its layers")
    batch = _images(args, loaded)
    notes = list(loaded.notes)
    if len(batch) > 1:
        notes.append(f"{len(batch)} images given; this report shows the first, {batch.names[0]}.")
        _note(args, notes[-1])
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
        notes=notes,
        progress=lambda items: _progress(args, items, "report"),
    )
    write_atomic(args.output, html)
    _done(args, [Path(args.output)])
    return EXIT_OK


def batch_preprocessing(loaded: Any, args: argparse.Namespace) -> str:
    """The preprocessing line of the report, with the command-line overrides applied."""
    return loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    ).describe()


def cmd_compare(args: argparse.Namespace) -> int:
    """``multiviz compare A B IMAGE`` / ``multiviz compare builtin [IMAGE]``."""
    from multiviz.images import load_images, preprocess_images
    from multiviz.loaders import load_model, parse_spec

    specs = list(args.specs)
    _import_torch_first()
    if specs[0] == "builtin" and len(specs) <= 2:
        first = load_model("builtin", framework="torch")  # torch before TensorFlow, always
        with _framework_logs_hidden(not args.debug):
            models = [first, load_model("builtin", framework="keras")]
        image = specs[1] if len(specs) == 2 else None
    elif len(specs) == 3:
        parsed = [parse_spec(s) for s in specs[:2]]
        # PyTorch must be imported before TensorFlow in one process: load torch models first
        order = sorted(range(2), key=lambda k: parsed[k].framework != "torch")
        loaded: dict[int, Any] = {}
        for k in order:
            with _framework_logs_hidden(parsed[k].framework == "keras" and not args.debug):
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
        _require_capture(m, "a layer-by-layer comparison")
    prep = _compare_preprocess(models, args)
    if image is None:
        from multiviz.shapes import sample_image

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
        _done(args, [Path(args.json)])
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
    files = run_demo(args.out, args.framework, log=log)
    _done(args, [p for paths in files.values() for p in paths])
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
