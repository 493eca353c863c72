"""What a subcommand writes: files (named, encoded, written atomically) and terminal lines.

Output options are checked before any work starts (an unknown image extension
or colormap is a usage error), and files are written only after every one of
them has been computed.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.errors import UsageError

__all__ = [
    "check_cmap",
    "check_image_output",
    "encode_figure",
    "encode_image",
    "output_paths",
    "print_note",
    "print_written",
    "progress_bar",
    "write_all",
]


def progress_bar(args: argparse.Namespace, items: Iterable[Any], desc: str) -> Iterable[Any]:
    """A tqdm bar on stderr over ``items``; silent with ``--quiet``."""
    from tqdm import tqdm

    return tqdm(
        items,
        desc=desc,
        disable=True if args.quiet else None,
        file=sys.stderr,
        leave=False,
        unit="",
    )


def print_note(args: argparse.Namespace, text: str) -> None:
    """Print ``multiviz: note: TEXT`` on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(f"multiviz: note: {text}", file=sys.stderr)


def print_written(args: argparse.Namespace, paths: Iterable[Path]) -> None:
    """Print ``wrote PATH`` for each file written, unless ``--quiet``."""
    if not args.quiet:
        for path in paths:
            print(f"wrote {path}")


def output_paths(output: str, images: Sequence[str], layers: Sequence[str]) -> list[list[Path]]:
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


def check_image_output(path: str) -> str:
    """The Pillow format name for ``-o path``; a usage error for an unknown extension."""
    from PIL import Image

    suffix = Path(path).suffix.lower()
    formats = Image.registered_extensions()
    if suffix not in formats:
        raise UsageError(
            f"Cannot tell the image format of -o {path!r} from its extension. "
            "Use .png (or .jpg, .webp, ...)."
        )
    return formats[suffix]


def check_cmap(name: str) -> None:
    """Refuse a colormap name matplotlib does not know, suggesting near ones."""
    from multiviz.render.colors import colormap_names

    names = colormap_names()
    if name not in names:
        from multiviz.errors import closest

        near = closest(name, names, n=3)
        raise UsageError(
            f"Unknown colormap {name!r}."
            + (f" Did you mean {near}?" if near else "")
            + " See matplotlib's colormap list (viridis, magma, gray, jet, ...)."
        )


def encode_image(rgb: np.ndarray, fmt: str) -> bytes:
    """An ``(H, W, 3)`` uint8 image as the bytes of a ``fmt`` file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def encode_figure(fig: Any, path: str) -> bytes:
    """A matplotlib figure as the bytes of a file in the format ``path``'s extension names."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=120)
    return buf.getvalue()


def write_all(args: argparse.Namespace, outputs: Sequence[tuple[Path, bytes]]) -> None:
    """Write every ``(path, data)`` atomically, then say which files were written."""
    from multiviz.report import write_atomic

    for path, data in outputs:
        write_atomic(path, data)
    print_written(args, [p for p, _ in outputs])
