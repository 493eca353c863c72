"""What a scan reads: batches of inputs with their data-set indices, from any source.

A scan accepts, as ``data``:

* a folder of images (``str`` or ``PathLike``): files sorted by name (numbers
  as numbers), read and preprocessed a batch at a time;
* an array ``(N, ...)`` — NumPy or a framework tensor — in the model's input
  layout, cut into batches of ``batch_size``;
* any iterable of batches: a PyTorch ``DataLoader``, a batched
  ``tf.data.Dataset``, a list or a generator. A batch is the input itself,
  or for a tuple or list (a DataLoader's ``(images, labels)``) its first
  element, or for a dict its ``"image"`` or ``"pixel_values"`` entry;
  ``unpack=`` overrides (a key, a position, or a function of the batch).

Inputs are numbered in the order they arrive (0, 1, 2, …): an exemplar's
``index`` is that number. Nothing here keeps images: :func:`fetch` reads the
few an exemplar figure needs again — by index where the data can be indexed
(folders, arrays, a DataLoader's dataset, lists), by a second pass otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Batch", "ImageFolder", "Source", "fetch", "source", "unpack_batch"]

#: dict keys tried, in order, for the input of a dict batch
INPUT_KEYS = ("image", "pixel_values", "images", "x", "input")

Unpack = str | int | Callable[[Any], Any] | None


@dataclass
class Batch:
    """One batch of inputs and the data-set index of each."""

    x: Any
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def unpack_batch(batch: Any, unpack: Unpack = None) -> Any:
    """The model input inside one batch from ``data``.

    Args:
        batch: what iterating the data gave.
        unpack: ``None`` for the default rule (the batch itself; a tuple's or
            list's first element; a dict's ``"image"``, ``"pixel_values"``,
            ``"images"``, ``"x"`` or ``"input"`` entry), a dict key or tuple
            position, or a function of the batch returning the input.

    Raises:
        ValueError: a dict batch without any of those keys (its keys are named).

    Example:
        >>> unpack_batch((np.zeros((2, 3)), np.array([0, 1]))).shape
        (2, 3)
        >>> unpack_batch({"label": 1, "pixel_values": [1]})
        [1]
    """
    if callable(unpack):
        return unpack(batch)
    if unpack is not None:
        return batch[unpack]
    if isinstance(batch, dict):
        for key in INPUT_KEYS:
            if key in batch:
                return batch[key]
        raise ValueError(
            f"A dict batch needs one of the keys {list(INPUT_KEYS)}. Received keys "
            f"{list(batch)}.\nhint: pass unpack='your_key' (or a function of the batch)."
        )
    if isinstance(batch, tuple | list) and batch and not _is_number(batch[0]):
        return batch[0]
    return batch


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number)


def batch_length(x: Any) -> int:
    """The number of samples in an input batch (its first axis)."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(x)


class ImageFolder:
    """The image files of a folder, read and preprocessed on demand.

    Args:
        folder: the folder (not recursive).
        preprocess: a :class:`multiviz.sources.images.Preprocess` recipe; its
            ``layout`` is set to the model's.
        max_pixels: the largest width x height of an image, checked before
            decoding (see :func:`multiviz.sources.images.read_image`).

    Indexing with an int or an array of ints gives a preprocessed batch.
    """

    def __init__(
        self, folder: str | os.PathLike, preprocess: Any, max_pixels: int | None = None
    ) -> None:
        from multiviz.sources.images import DEFAULT_MAX_PIXELS, _check_max_pixels, image_files

        self.folder = Path(folder)
        self.files = [str(p) for p in image_files(self.folder)]
        self.preprocess = preprocess
        self.max_pixels = _check_max_pixels(max_pixels or DEFAULT_MAX_PIXELS)

    @classmethod
    def from_files(
        cls, files: Sequence[str], preprocess: Any, max_pixels: int | None = None
    ) -> ImageFolder:
        """The same reader over a given list of files (a saved scan's)."""
        from multiviz.sources.images import DEFAULT_MAX_PIXELS, _check_max_pixels

        out = cls.__new__(cls)
        out.folder = Path(files[0]).parent if files else Path()
        out.files = [str(f) for f in files]
        out.preprocess = preprocess
        out.max_pixels = _check_max_pixels(max_pixels or DEFAULT_MAX_PIXELS)
        return out

    def __len__(self) -> int:
        return len(self.files)

    def load(self, indices: Sequence[int] | np.ndarray) -> Any:
        """The :class:`~multiviz.sources.images.ImageBatch` of the files at ``indices``."""
        from multiviz.sources.images import preprocess_images, read_image

        chosen = [self.files[int(i)] for i in np.asarray(indices).reshape(-1)]
        return preprocess_images(
            [read_image(f, max_pixels=getattr(self, "max_pixels", None)) for f in chosen],
            self.preprocess,
            [Path(f).name for f in chosen],
        )

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.load(indices).inputs


@dataclass
class Source:
    """``data`` as a scan reads it: batches in order, and how to reach one input again.

    Attributes:
        data: what the caller passed.
        unpack: the caller's ``unpack``.
        batch_size: batch size for arrays and folders.
        length: number of inputs when known without reading them, else ``None``.
        indexable: the data, when single inputs can be read by index
            (arrays, folders, a DataLoader's dataset, sequences of batches are
            not: they are read by a second pass).
    """

    data: Any
    unpack: Unpack
    batch_size: int
    length: int | None
    kind: str  # "array", "folder", "iterable"

    def batches(self, skip: int = 0) -> Iterator[Batch]:
        """Batches in order, starting after the first ``skip`` batches.

        Arrays and folders jump straight there; other iterables read and
        drop the skipped batches (without running the model on them).
        """
        if self.kind in ("array", "folder"):
            n = self.length or 0
            for start in range(skip * self.batch_size, n, self.batch_size):
                idx = np.arange(start, min(start + self.batch_size, n))
                x = self.data[start : start + len(idx)] if self.kind == "array" else self.data[idx]
                yield Batch(x, idx)
            return
        offset = 0
        for b, item in enumerate(self.data):
            x = unpack_batch(item, self.unpack)
            n = batch_length(x)
            if b >= skip:
                yield Batch(x, np.arange(offset, offset + n))
            offset += n

    def layout_hint(self) -> str:
        """Words for messages: what the data is."""
        return {"array": "an array", "folder": "a folder of images"}.get(self.kind, "an iterable")


def source(
    data: Any,
    *,
    unpack: Unpack = None,
    batch_size: int = 32,
    preprocess: Any = None,
    max_pixels: int | None = None,
) -> Source:
    """Recognise ``data`` (see the module docstring).

    Args:
        data: a folder, an array, or an iterable of batches.
        unpack: how to find the input in a batch (iterables only).
        batch_size: batch size for arrays and folders.
        preprocess: a :class:`multiviz.sources.images.Preprocess` for folders.
        max_pixels: the largest image of a folder (default 40 megapixels).

    Raises:
        ValueError: ``batch_size`` is not a positive int.
        TypeError: ``data`` is none of these (what was received is named).
    """
    from multiviz.core.checks import check_number

    check_number(batch_size, "batch_size", low=1, integer=True)
    array = hasattr(data, "shape") and hasattr(data, "__getitem__") and len(data.shape) >= 2
    if unpack is not None and (array or isinstance(data, str | os.PathLike)):
        raise ValueError(
            "`unpack` finds the input in each batch of an iterable (a DataLoader, a Ray "
            f"dataset); `data` is {'an array' if array else 'a folder'}, read as it is. "
            f"Received: unpack={unpack!r:.60}\nhint: drop unpack, or pass data[key] yourself."
        )
    if isinstance(data, str | os.PathLike):
        folder = ImageFolder(data, preprocess, max_pixels)
        return Source(folder, unpack, int(batch_size), len(folder), "folder")
    if (
        hasattr(data, "shape")
        and hasattr(data, "__getitem__")
        and len(getattr(data, "shape", ())) >= 2
    ):
        return Source(data, unpack, int(batch_size), int(data.shape[0]), "array")
    if isinstance(data, Iterable):
        length = None
        dataset = getattr(data, "dataset", None)  # a torch DataLoader
        if dataset is not None and hasattr(dataset, "__len__"):
            length = len(dataset)
        return Source(data, unpack, int(batch_size), length, "iterable")
    raise TypeError(
        "`data` must be a folder of images, an array (N, ...) or an iterable of batches. "
        f"Received: {type(data).__name__}"
    )


def fetch(src: Source, indices: Sequence[int] | np.ndarray) -> dict[int, Any]:
    """The inputs at ``indices``, one sample each (no batch axis), as the data holds them.

    Reads by index where the data allows it (folders, arrays, a DataLoader's
    ``dataset``); otherwise iterates the data once more, stopping when every
    index has been seen.

    Raises:
        IndexError: an index the data does not reach.
    """
    wanted = sorted({int(i) for i in np.asarray(indices).reshape(-1)})
    if not wanted:
        return {}
    if src.kind in ("array", "folder"):
        n = src.length or 0
        bad = [i for i in wanted if not 0 <= i < n]
        if bad:
            raise IndexError(f"Input indices {bad} are out of range for {n} inputs.")
        got = src.data[np.asarray(wanted)]
        return {i: got[k] for k, i in enumerate(wanted)}
    dataset = getattr(src.data, "dataset", None)
    if dataset is not None and hasattr(dataset, "__getitem__") and src.unpack is None:
        return {i: unpack_batch(dataset[i]) for i in wanted}
    out: dict[int, Any] = {}
    remaining = set(wanted)
    for batch in src.batches():
        for k, i in enumerate(batch.indices.tolist()):
            if i in remaining:
                out[i] = batch.x[k]
                remaining.discard(i)
        if not remaining:
            return out
    raise IndexError(f"Input indices {sorted(remaining)} are beyond the end of the data.")
