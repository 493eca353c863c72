"""What a subcommand writes: files (named, encoded, written atomically) and terminal lines.

Output options are checked before any work starts (an unknown image extension
or colormap is a usage error), and files are written only after every one of
them has been computed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
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
    """One path per (image, layer): ``output`` itself when there is one of each.

    Every path is different: images whose names share a stem (``cat.png`` and
    ``cat.jpg``) keep their extension in the name (``maps-cat_png.png``,
    ``maps-cat_jpg.png``), and any other clash gets ``-2``, ``-3``….

    Example:
        >>> [p.name for row in output_paths("maps.png", ["cat.png", "cat.jpg"], ["conv1"])
        ...  for p in row]
        ['maps-cat_png.png', 'maps-cat_jpg.png']
    """
    base = Path(output)
    if len(images) == 1 and len(layers) == 1:
        return [[base]]
    image_slugs = _unique([_slug(Path(image).stem) for image in images], images)
    layer_slugs = _unique([_slug(layer) for layer in layers], layers)
    taken: set[str] = set()
    paths = []
    for image in image_slugs:
        row = []
        for layer in layer_slugs:
            parts = ([image] if len(images) > 1 else []) + ([layer] if len(layers) > 1 else [])
            name = f"{base.stem}-{'-'.join(parts)}"
            unique, k = name, 2
            while unique.lower() in taken:  # case-insensitive file systems too
                unique, k = f"{name}-{k}", k + 1
            taken.add(unique.lower())
            row.append(base.with_name(f"{unique}{base.suffix}"))
        paths.append(row)
    return paths


def _unique(slugs: list[str], names: Sequence[str]) -> list[str]:
    """``slugs``, with the full name's slug (extension included) where two slugs clash."""
    seen: dict[str, int] = {}
    for s in slugs:
        seen[s.lower()] = seen.get(s.lower(), 0) + 1
    return [
        _slug(str(n).replace(".", "_")) if seen[s.lower()] > 1 else s
        for s, n in zip(slugs, names, strict=True)
    ]


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
    """Write every ``(path, data)`` as one set: all to temporary files, then all moved into place.

    If any file cannot be written, or moved into place, none of the set is
    left behind: the temporary files are removed, and so are the files of
    this set already moved where no file was before. Then say which files
    were written.
    """
    staged: list[tuple[str, Path]] = []
    moved: list[Path] = []
    new: set[Path] = set()
    try:
        for path, data in outputs:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        new = {path for _, path in staged if not os.path.lexists(path)}
        for tmp, path in staged:
            os.replace(tmp, path)
            moved.append(path)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for path in moved:
            if path in new:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        raise
    print_written(args, [p for p, _ in outputs])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
