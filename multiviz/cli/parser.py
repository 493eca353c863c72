"""The argument parser: one subcommand per verb, and the option-value checks.

A bad option is a :class:`~multiviz.errors.UsageError` (one line, exit 2),
never argparse's own usage text and ``SystemExit``.

Example:
    >>> args = build_parser().parse_args(["maps", "builtin", "photo.png", "--layer", "conv1"])
    >>> args.command, args.layer, args.max_maps, args.run.__name__
    ('maps', ['conv1'], 64, 'cmd_maps')
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from multiviz import __version__
from multiviz.cli.commands import cmd_compare, cmd_demo, cmd_layers, cmd_report
from multiviz.cli.drawing import METHODS, cmd_cam, cmd_maps
from multiviz.cli.evaluate import add_evaluate_parser, add_evaluation_options
from multiviz.errors import UsageError

__all__ = ["EPILOG", "build_parser"]

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


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised (one line, exit 2) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


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
    p.add_argument("--method", choices=tuple(METHODS), default="grad-cam", help="default: grad-cam")
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
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="add a section saying which attribution map to trust, over every image given "
        "(the evaluation options below; see `multiviz evaluate`)",
    )
    add_evaluation_options(p)
    _add_output(p, "report.html")
    p.set_defaults(run=cmd_report)

    add_evaluate_parser(add, model_args)

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

    from multiviz.cli.scan import add_scan_parser

    add_scan_parser(add, model_args)
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
    from multiviz.core.names import KINDS

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
