"""The argument parser: one subcommand per verb, and the option-value checks.

What every subcommand shares is said once: the models, images and exit codes
in the top-level help (``multiviz --help``); the options in named groups that
each subcommand takes from the same parent parsers — ``model options`` for
every subcommand that loads a model (``MODEL_GROUP``), ``image options`` for
every one that reads images (``IMAGE_GROUP``). A subcommand's own help shows
only its own description and options, under ``options``.

A new subcommand is one call of ``add(name, help, parents)`` inside
:func:`build_parser` (or a function given ``add`` and the parents, as
:func:`multiviz.cli.scan.add_scan_parser` is), with ``parents`` picked from
``model_args`` / ``image_args``.

A bad option is a :class:`~multiviz.errors.UsageError` (one line, exit 2),
never argparse's own usage text and ``SystemExit``.

Example:
    >>> args = build_parser().parse_args(["maps", "builtin", "photo.png", "--layer", "conv1"])
    >>> args.command, args.layer, args.max_maps, args.run.__name__
    ('maps', ['conv1'], 64, 'cmd_maps')
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from typing import Any, NoReturn

from multiviz import __version__
from multiviz.cli.commands import cmd_compare, cmd_demo, cmd_layers, cmd_report, cmd_stats
from multiviz.cli.drawing import AGGREGATIONS, METHODS, NORMALIZE, REDUCE, cmd_cam, cmd_maps
from multiviz.cli.evaluate import add_evaluate_parser, add_evaluation_options
from multiviz.core.checks import parse_number
from multiviz.errors import UsageError

__all__ = ["EPILOG", "IMAGE_GROUP", "MODEL_GROUP", "SUBCOMMAND_EPILOG", "build_parser"]

DEFAULT_MAX_PIXELS = 40_000_000  # multiviz.sources.images.DEFAULT_MAX_PIXELS (Pillow-free here)

MODEL_GROUP = "model options"
IMAGE_GROUP = "image options"

EPILOG = """\
models (the MODEL argument):
  builtin                 the multiviz built-in CNN, trained weights shipped (--framework torch|keras)
  builtin-vit             the multiviz built-in ViT, trained weights shipped (--framework torch|keras)
  torchvision:NAME        torchvision.models.NAME
  keras:NAME              keras.applications.NAME
  FILE.keras, FILE.h5     a saved Keras model
  FILE.pt2                a torch.export program
  FILE.pt, FILE.pth       a TorchScript archive, or a state dict with --arch

  --weights (torchvision, keras and builtin models): `default` loads the pretrained
  weights (torchvision and keras download them once, which needs a network; `layers`
  needs no weights and never downloads), `none` random weights (runs offline: the
  pictures then show an untrained network), PATH a locally saved weights file.
  --unsafe-load is needed for files whose loading runs code stored in them (a whole
  model pickled with torch.save(model), a Keras Lambda layer). DANGEROUS: a malicious
  file can then run any command as you. Use it only for files you made or fully trust.

images (the IMAGE argument): a file of any format Pillow reads, a folder of them, or a
  .npy array. They are resized to the model family's size (--size) and normalised
  with its mean and std (--mean/--std; --no-normalize for plain [0, 1] values).
  A model that takes one channel is fed luminance (ITU-R BT.601: 0.299 R + 0.587 G +
  0.114 B); a greyscale image or a one-channel .npy is kept as it is. Others get RGB.
  With several images or layers, one output file each, named PATH-<image>-<layer>.

exit codes:
  0  success
  1  runtime failure: a framework is missing, a download failed, the model failed to run
  2  usage or bad input: bad option, missing or unreadable file, unknown layer,
     an image that does not fit the model
  3  compare: the two models disagree beyond the tolerance

Run `multiviz COMMAND --help` for a command's options; add --debug to see the
traceback of an error.
"""

SUBCOMMAND_EPILOG = "MODEL, IMAGE, --weights and exit codes: see `multiviz --help`."


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised (one line, exit 2) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per verb (exposed for docs and tests)."""
    parser = _Parser(
        prog="multiviz",
        description=textwrap.fill(
            "See what a convolutional network sees: feature maps, attribution maps, layer "
            "statistics, HTML reports and cross-framework comparisons, for PyTorch and Keras.",
            79,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"multiviz {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)

    model_args = _Parser(add_help=False)
    _add_model_args(model_args)
    model_options = _Parser(add_help=False)  # the options without the MODEL argument
    _add_model_args(model_options, positional=False)
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
            description=textwrap.fill(help_, 79),
            parents=[*parents, common],
            epilog=SUBCOMMAND_EPILOG if parents else None,
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
        "Draw the feature maps of a layer: one titled grid per image and layer, channel "
        "numbers on the tiles, a colorbar when the tiles share one scale.",
        [model_args, image_args],
    )
    _add_layer(p)
    p.add_argument(
        "--cmap",
        help="matplotlib colormap (default: gray, or RdBu_r centred on 0 when the scaling "
        "is symmetric; with --reduce: plasma, or RdBu_r for a signed map)",
    )
    p.add_argument(
        "--max-maps",
        type=_positive_int,
        default=64,
        metavar="N",
        help="show at most N channels (default: 64)",
    )
    p.add_argument(
        "--channels",
        type=_ints,
        metavar="I,J,...",
        help="these channels, in this order (default: all, up to --max-maps)",
    )
    p.add_argument(
        "--top",
        type=_positive_int,
        metavar="K",
        help="the K most active channels (by --by), strongest first",
    )
    p.add_argument(
        "--by",
        choices=("mean", "max", "std", "l2"),
        default="mean",
        help="the channel score --top ranks by (default: mean)",
    )
    p.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="how maps are scaled to colours: map (each on its own), layer (one scale), "
        "percentile (one scale, clipped), symmetric (0 at the centre colour), none (as is); "
        "default auto: symmetric for signed maps, map otherwise",
    )
    p.add_argument(
        "--percentile",
        type=_percentiles,
        default=(1.0, 99.0),
        metavar="LO,HI",
        help="percentiles for --normalize percentile (default: 1,99)",
    )
    p.add_argument("--ncols", type=_positive_int, metavar="N", help="tiles per row")
    p.add_argument(
        "--reduce",
        choices=REDUCE,
        help="draw one map per layer instead of a grid: the channels reduced (mean, max, ...)",
    )
    p.add_argument(
        "--overlay",
        action="store_true",
        help="with --reduce: lay the reduced map over the image",
    )
    _add_picture_style(p)
    _add_output(p, "maps.png")
    p.set_defaults(run=cmd_maps)

    p = add(
        "cam",
        "Draw attribution maps (Grad-CAM, saliency, guided backprop, ...) over the image; "
        "several --method give one side-by-side figure.",
        [model_args, image_args],
    )
    p.add_argument(
        "--method",
        action="append",
        choices=tuple(METHODS),
        metavar="METHOD",
        help=f"one of {', '.join(METHODS)} (repeatable; default: grad-cam)",
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="layer of the CAM methods (default: the last convolution layer)",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class index or name to explain (default: the top-scoring class)",
    )
    p.add_argument(
        "--aggregation",
        choices=[a for a in AGGREGATIONS if a is not None],
        help="how gradient methods reduce colour channels (default: the method's own: "
        "max_abs, sum for integrated-gradients)",
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=25,
        metavar="N",
        help="smoothgrad: noisy copies per image (default: 25)",
    )
    p.add_argument(
        "--noise",
        type=_nonnegative_float,
        default=0.15,
        metavar="SIGMA",
        help="smoothgrad: noise level, a fraction of the input's range (default: 0.15)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=50,
        metavar="N",
        help="integrated-gradients: points on the path (default: 50)",
    )
    p.add_argument(
        "--seed", type=_any_int, default=0, help="smoothgrad: seed of the noise (default: 0)"
    )
    add_batch_size(p)
    p.add_argument(
        "--alpha",
        type=_unit_float,
        default=0.6,
        help="heatmap opacity in [0, 1]: at the map's highest values with --blend value, "
        "everywhere with --blend uniform (default: 0.6)",
    )
    p.add_argument(
        "--blend",
        choices=("value", "uniform"),
        default="value",
        help="value: the heatmap's opacity follows its value, so low-evidence regions show "
        "the image (default); uniform: the same opacity everywhere, jet by default (the "
        "classic look)",
    )
    p.add_argument(
        "--cmap",
        help="colormap of the heatmap (default: turbo with --blend value, jet with "
        "--blend uniform)",
    )
    _add_picture_style(p)
    _add_output(p, "cam.png")
    p.set_defaults(run=cmd_cam)

    p = add(
        "stats",
        "Plot per-layer activation statistics (ranges, dead channels, zeros) and print "
        "them as a table.",
        [model_args, image_args],
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="layer names or glob patterns (default: every layer)",
    )
    p.add_argument(
        "--kind",
        choices=_kinds(),
        help="only layers of this kind (e.g. conv, activation)",
    )
    _add_output(p, "stats.png")
    p.set_defaults(run=cmd_stats)

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
        "--cmap",
        help="colormap of the feature maps (default: viridis, RdBu_r centred on 0 for "
        "signed layers)",
    )
    p.add_argument("--no-cam", action="store_true", help="leave out the Grad-CAM overlay")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="add a section saying which attribution map to trust, over every image given; "
        "takes every option of `multiviz evaluate` (--method, --metric, --boxes, ...: see "
        "`multiviz evaluate --help`)",
    )
    add_evaluation_options(p, listed=False)
    _add_output(p, "report.html")
    p.set_defaults(run=cmd_report)

    add_evaluate_parser(add, model_args)

    p = add(
        "compare",
        "Compare the same network in PyTorch and Keras, layer by layer.",
        [model_options],
    )
    p.add_argument(
        "specs",
        nargs="+",
        metavar="MODEL_A MODEL_B IMAGE",
        help="two models and an image, or `builtin [IMAGE]` for the built-in model in both "
        "frameworks; the model options apply to each model they fit",
    )
    p.add_argument(
        "--atol", type=_nonnegative_float, default=1e-4, help="absolute tolerance (default: 1e-4)"
    )
    p.add_argument(
        "--rtol", type=_nonnegative_float, default=1e-4, help="relative tolerance (default: 1e-4)"
    )
    _add_preprocessing_args(p)
    p.add_argument(
        "--seed",
        type=_any_int,
        default=0,
        help="which built-in sample image without IMAGE (default: 0)",
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
    _short_usages(sub)
    return parser


def _short_usages(sub: Any) -> None:
    """``multiviz cam MODEL IMAGE [options]``: the arguments, then the options in the help.

    argparse would list every option in the order the parents added them,
    the shared ones first; the help below the usage shows them all, grouped.
    """
    for name, p in sub.choices.items():
        positionals = [a.metavar or a.dest for a in p._actions if not a.option_strings]
        required = [
            f"{a.option_strings[-1]} {a.metavar or a.dest.upper()}"
            for a in p._actions
            if a.option_strings and a.required
        ]
        p.usage = " ".join([f"multiviz {name}", *positionals, *required, "[options]"])


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    # on the main parser and on every subcommand, so `multiviz -q maps ...` and
    # `multiviz maps ... -q` both work; SUPPRESS keeps the subcommand from
    # overwriting a value given before it
    group = parser.add_argument_group("general options") if default is not False else parser
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars or notes"
    )
    group.add_argument(
        "--debug", action="store_true", default=default, help="show the traceback of an error"
    )


def _add_model_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument(
            "model", metavar="MODEL", help="builtin, torchvision:NAME, keras:NAME or a file"
        )
    g = p.add_argument_group(MODEL_GROUP)
    g.add_argument(
        "--framework",
        choices=("torch", "keras"),
        help="for builtin: which framework (default: torch when installed)",
    )
    g.add_argument(
        "--weights",
        metavar="none|default|PATH",
        help="random (none), pretrained (default) or a saved weights file",
    )
    g.add_argument(
        "--arch",
        metavar="ARCH",
        help="for a state-dict .pt/.pth: its network (torchvision:NAME or builtin)",
    )
    g.add_argument(
        "--unsafe-load",
        action="store_true",
        help="load files whose loading runs code stored in them (DANGEROUS)",
    )


def _add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="an image file, a folder of images, or a .npy (one-channel models: luminance)",
    )
    _add_preprocessing_args(p)


def _add_preprocessing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(IMAGE_GROUP)
    g.add_argument(
        "--size",
        type=_size,
        metavar="N|HxW",
        help="resize to this (default: the model family's size)",
    )
    g.add_argument(
        "--mean",
        type=_floats,
        metavar="R,G,B",
        help="normalisation mean in [0, 1] units (one value for a one-channel model)",
    )
    g.add_argument(
        "--std", type=_positive_floats, metavar="R,G,B", help="normalisation std in [0, 1] units"
    )
    g.add_argument("--no-normalize", action="store_true", help="feed plain [0, 1] values")
    g.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse an image file above N pixels (width x height), before decoding it; "
        "N may end in M for megapixels (default: 40M)",
    )


def _add_layer(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        metavar="NAME",
        help="layer name or glob pattern, as `multiviz layers` lists them (repeatable)",
    )


def _add_picture_style(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bare",
        action="store_true",
        help="write the picture alone, pixel for pixel: no title, labels or colorbar",
    )
    p.add_argument("--figure", action="store_true", help=argparse.SUPPRESS)  # the default now


def _add_output(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "-o",
        "--output",
        default=default,
        metavar="PATH",
        help=f"file to write (default: {default})",
    )


def _kinds() -> tuple[str, ...]:
    from multiviz.core.names import KINDS

    return KINDS


def _number(text: str, **rule: Any) -> Any:
    """``text`` as a number under ``rule`` (:func:`multiviz.core.checks.parse_number`)."""
    try:
        return parse_number(text, **rule)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    return int(_number(text, low=1, integer=True))


def add_batch_size(parser: Any, default: int = 32) -> None:
    """``--batch-size N``: the one definition every command that batches shares."""
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=default,
        metavar="N",
        help=f"most inputs sent to the model at once (default: {default})",
    )


def _unit_float(text: str) -> float:
    return float(_number(text, low=0.0, high=1.0))


def _nonnegative_float(text: str) -> float:
    return float(_number(text, low=0.0))


def _positive_float(text: str) -> float:
    return float(_number(text, low=0.0, low_open=True))


def _finite_float(text: str) -> float:
    return float(_number(text))


def _any_int(text: str) -> int:
    return int(_number(text, integer=True))


def _max_pixels(text: str) -> int:
    """``40000000`` or ``40M`` (megapixels; ``1.5M`` too)."""
    t = text.strip()
    if t[-1:] in ("M", "m"):
        try:
            mega = float(t[:-1])
        except ValueError:
            mega = float("nan")
        pixels = round(mega * 1e6) if mega == mega and abs(mega) < 1e12 else -1
        if not pixels >= 1:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= 1 (or megapixels such as 40M), got {text!r}"
            )
        return pixels
    return int(_number(t, low=1, integer=True))


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", text)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < 1):
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 224 or 224x160), got {text!r}")
    h = int(m.group(1))
    return (h, int(m.group(2)) if m.group(2) else h)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers (e.g. 0,5,12), got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _percentiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. 1,99), got {text!r}") from None
    if not 0.0 <= lo < hi <= 100.0:  # NaN fails every comparison
        raise argparse.ArgumentTypeError(f"expected 0 <= LO < HI <= 100, got {text!r}")
    return lo, hi


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
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers (no nan or inf), got {text!r}")
    return (values[0], values[1], values[2])


def _positive_floats(text: str) -> tuple[float, float, float]:
    values = _floats(text)
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers > 0, got {text!r}")
    return values
