"""The ``multiviz`` command line.

::

    multiviz layers  torchvision:resnet18 --kind conv
    multiviz maps    model.keras photo.jpg --layer conv2_block1_out --cmap viridis -o maps.png
    multiviz cam     torchvision:resnet50 photo.jpg --method grad-cam --layer layer4 -o cam.png
    multiviz report  model.pt2 photo.jpg -o report.html
    multiviz evaluate model.pt2 photos/ --method grad-cam --method saliency --boxes boxes.csv
    multiviz compare torch_model.pt2 keras_model.keras photo.jpg
    multiviz compare builtin
    multiviz demo    --out multiviz-demo

Every subcommand loads the model (:mod:`multiviz.sources.models`), reads and
preprocesses the images (:mod:`multiviz.sources.images`), and calls the public API.
Errors are one line, ``multiviz: error: ...``, saying what to do (``--debug``
shows the traceback); exit codes are listed in ``multiviz --help``. Outputs
are computed first and written last, each atomically, so a failure never
leaves a half-written or partial set of files.

The package, module by module: :mod:`multiviz.cli.parser` (the options),
:mod:`multiviz.cli.commands`, :mod:`multiviz.cli.drawing` and
:mod:`multiviz.cli.evaluate` (one function per subcommand), :mod:`multiviz.cli.inputs` (loading the model and images),
:mod:`multiviz.cli.output` (file names, encoding, atomic writing, terminal
notes) and :mod:`multiviz.cli.exit_codes` (the exit codes).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from multiviz.cli.exit_codes import EXIT_DIFFERENT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from multiviz.cli.parser import build_parser
from multiviz.errors import (
    BackendUnavailableError,
    ModelsDifferError,
    MultivizError,
    MultivizWarning,
    NoNetworkError,
    UsageError,
)

__all__ = ["EXIT_DIFFERENT", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]


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
            _hide_framework_warnings()
            warnings.showwarning = _show_warning
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


#: the modules whose own warnings a command hides (without --debug): the
#: frameworks' start-up and deprecation chatter, which a user cannot act on
_FRAMEWORKS = r"(torch|torchvision|tensorflow|tf_keras|keras|jax|jaxlib|absl|google|h5py|ml_dtypes)"


def _hide_framework_warnings() -> None:
    """Hide what the frameworks say about themselves; show every other warning.

    Deprecation notices (not multiviz's own) and warnings raised inside a
    framework's modules are hidden. Everything else — a ``MultivizWarning``,
    Pillow's ``DecompressionBombWarning`` for an image above Pillow's limit —
    is printed, one line each.
    """
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"multiviz(\.|$)")
    warnings.filterwarnings("ignore", module=_FRAMEWORKS + r"(\.|$)")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """A warning as one ``multiviz: warning:`` line on stderr (what, not where)."""
    text = " ".join(str(message).split())
    name = category.__name__
    prefix = "" if issubclass(category, MultivizWarning) else f"{name}: "
    print(f"multiviz: warning: {prefix}{text}", file=sys.stderr)


def _quiet_frameworks(debug: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("MPLBACKEND", "Agg")
