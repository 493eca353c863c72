"""Exemplar crops: the receptive field of each exemplar, cut from its input again.

A scan keeps no images. To draw a channel's exemplars, the inputs are read
again by index (a folder, an array, a DataLoader's dataset) or in one more
pass over an iterable, turned into displayable RGB and cropped to each
exemplar's receptive-field box. NumPy only; drawing is :mod:`multiviz.render`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from multiviz.core.resize import resize_bilinear
from multiviz.scanning.data import ImageFolder, Source, fetch, source

if TYPE_CHECKING:
    from multiviz.scanning.record import Exemplar, Scan

__all__ = ["crop_box", "crops_for", "display_rgb"]


def display_rgb(x: Any, layout: str) -> np.ndarray:
    """One model input as float32 RGB ``(H, W, 3)`` in ``[0, 1]`` for a person to see.

    ``x`` is one sample in the model's layout (``(C, H, W)`` or
    ``(H, W, C)``, NumPy or a framework tensor). Normalized inputs are scaled
    by their own min and max; one channel is repeated to three; more than
    three channels: the first three.

    Example:
        >>> display_rgb(np.zeros((3, 4, 5)), "channels_first").shape
        (4, 5, 3)
    """
    a = _numpy(x).astype(np.float32)
    if a.ndim == 2:
        a = a[None] if layout == "channels_first" else a[..., None]
    if a.ndim != 3:
        raise ValueError(f"An image input must be 2-D or 3-D. Received shape {a.shape}.")
    if layout == "channels_first":
        a = np.moveaxis(a, 0, -1)
    a = a[..., :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 2:
        a = np.concatenate([a, a[..., :1]], axis=-1)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if a.dtype.kind == "f" and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(a, 0, 1).astype(np.float32)


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    for attr in ("detach",):  # a torch tensor (possibly on a GPU)
        if hasattr(x, attr):
            return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):  # a TensorFlow tensor
        return np.asarray(x.numpy())
    return np.asarray(x)


def crop_box(image: np.ndarray, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` on a square black canvas, resized to ``(size, size, 3)``.

    The crop keeps its aspect ratio: a field clipped by the image's edge
    sits against the matching edge of the canvas, so the picture shows
    where the image ended.

    Example:
        >>> img = np.ones((10, 10, 3), np.float32)
        >>> crop_box(img, (0, 0, 10, 5), 4)[:, 0, 0].tolist()   # the field ran past the top
        [0.0, 0.0, 1.0, 1.0]
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    part = image[y0:y1, x0:x1]
    ph, pw = part.shape[:2]
    side = max(ph, pw, 1)
    canvas = np.zeros((side, side, 3), np.float32)
    # against the clipped edge: the field ran past the top / left when it starts at 0
    oy = side - ph if (y0 == 0 and y1 < h) else 0
    ox = side - pw if (x0 == 0 and x1 < w) else 0
    canvas[oy : oy + ph, ox : ox + pw] = part
    return np.moveaxis(resize_bilinear(np.moveaxis(canvas, -1, 0), (size, size)), 0, -1)


def _source_for(scan: Scan, data: Any, unpack: Any) -> Source:
    if data is not None:
        from multiviz.sources.images import Preprocess

        prep = Preprocess(size=scan.input_size, layout=scan.input_layout)
        return source(data, unpack=unpack, preprocess=prep)
    if scan._source is not None:
        return scan._source
    if scan.files is not None:
        from multiviz.sources.images import Preprocess

        folder = ImageFolder.from_files(
            scan.files, Preprocess(size=scan.input_size, layout=scan.input_layout)
        )
        return Source(folder, None, 32, len(folder), "folder")
    raise ValueError(
        "`data` is needed to draw exemplars: the scan keeps no images.\n"
        "hint: pass the data you scanned, in the same order (plot_exemplars(layer, data=...))."
    )


def crops_for(
    scan: Scan,
    layer: str,
    channels: Sequence[int],
    data: Any = None,
    *,
    k: int | None = None,
    size: int = 64,
    unpack: Any = None,
) -> tuple[np.ndarray, list[list[Exemplar]]]:
    """See :meth:`multiviz.scanning.record.Scan.exemplar_crops`."""
    rows = [list(scan.exemplars(layer, int(c))) for c in channels]
    if k is not None:
        rows = [r[:k] for r in rows]
    width = max((len(r) for r in rows), default=0)
    crops = np.zeros((len(rows), width, size, size, 3), np.float32)
    wanted = sorted({e.index for r in rows for e in r})
    if not wanted:
        return crops, rows
    src = _source_for(scan, data, unpack)
    if src.kind == "folder":  # the resized images as read, before any normalization
        batch = src.data.load(wanted)
        images = {i: batch.display[j].astype(np.float32) / 255 for j, i in enumerate(wanted)}
    else:
        images = {i: display_rgb(x, scan.input_layout) for i, x in fetch(src, wanted).items()}
    for r, row in enumerate(rows):
        for c, ex in enumerate(row):
            crops[r, c] = crop_box(images[ex.index], ex.box, size)
    return crops, rows
