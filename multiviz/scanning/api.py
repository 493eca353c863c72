"""``mv.scan``: one streaming pass over a data set, on this machine or on Ray.

Per scanned layer and channel the pass keeps statistics of every value
(moments, counts, quantile sketches), the top-k inputs with the position of
their maximum, and the layer's receptive field; memory does not depend on
the number of inputs. See :mod:`multiviz.scanning.data` for what ``data``
may be, and :class:`~multiviz.scanning.record.Scan` for what comes back.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.core.params import names_parameters
from multiviz.scanning.data import Source, source
from multiviz.scanning.record import Scan, ScanFileError, load_scan

__all__ = ["ENGINES", "scan"]

ENGINES = ("local", "ray")
#: at most this many positions of a map go into the quantile sketches by default
SKETCH_POSITIONS = 4096


@names_parameters
def scan(
    model: Any,
    data: Any,
    layers: str | Sequence[str] | None = None,
    *,
    topk: int = 16,
    engine: str = "local",
    unpack: Any = None,
    batch_size: int = 32,
    kind: str | Sequence[str] | None = None,
    preprocess: Any = None,
    index_offset: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    progress: bool | None = None,
    fields: str = "auto",
    sketch_k: int = 12,
    sketch_positions: int | None = SKETCH_POSITIONS,
    eps: float = 0.0,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
    max_pixels: int | None = None,
) -> Scan:
    """Scan a data set: per-channel statistics, top-k exemplars and receptive fields.

    One pass over ``data``; each batch is captured at ``layers`` and folded
    into streaming reducers (moments by Chan et al.'s parallel algorithm,
    exact counts, Apache DataSketches REQ quantile sketches, exact top-k), so
    memory does not grow with the data set.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        data: a folder of images, an array ``(N, ...)`` in the model's input
            layout, or an iterable of batches (a ``DataLoader``, a batched
            ``tf.data.Dataset``, a list, a generator). A batch is the input
            itself, a tuple's first element, or a dict's ``"image"`` /
            ``"pixel_values"`` entry. Inputs are numbered in reading order.
        layers: layer names or glob patterns (as :func:`multiviz.capture`);
            ``None``: every layer.
        topk: exemplars kept per channel (inputs with the highest maximum).
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data: an actor
            pool loads the model once per actor; partial states merge on the
            driver). Both give the same result.
        unpack: how to find the input in a batch: a dict key, a tuple
            position, or a function of the batch.
        batch_size: batch size for arrays and folders (and Ray).
        kind: keep only layers of this kind (``"conv"``…).
        preprocess: a :class:`multiviz.sources.images.Preprocess` for a folder
            (default: plain ``[0, 1]`` values, every image the size of the first).
        index_offset: the index of the first input (to merge scans of
            several parts of one data set).
        checkpoint: a ``.npz`` path: the scan is saved there every
            ``checkpoint_every`` batches and at the end; if the file exists,
            the scan continues from it (skipping the batches it holds). The
            data must come in the same order.
        checkpoint_every: batches between saves.
        progress: show a progress bar with images/s (``None``: when the
            output is a terminal).
        fields: receptive fields: ``"auto"`` (composed from the layers'
            geometry where they form a chain, probed elsewhere),
            ``"compose"``, ``"probe"`` or ``"none"``.
        sketch_k: the quantile sketches' accuracy parameter.
        sketch_positions: at most this many (evenly spaced) positions of each
            map go into the quantile sketches, bounding the cost of early
            layers with large maps; ``None``: all. Moments, counts and top-k
            always see every value.
        eps: a value counts as zero when ``|v| <= eps``.
        concurrency: Ray only: the actor pool's size (or ``(min, max)``).
        num_gpus: Ray only: GPUs per actor.
        max_pixels: a folder's largest image (width x height), checked before
            decoding; ``None``: 40 megapixels (see :func:`multiviz.sources.images.read_image`).

    Returns:
        A :class:`~multiviz.scanning.record.Scan`.

    Raises:
        LayerNotFoundError: a layer name matched nothing.
        ValueError: a bad ``engine``, ``topk``, ``batch_size``…, or a
            shuffling DataLoader (its order changes between passes).
        ScanFileError: ``checkpoint`` holds a scan of other layers or settings.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                          # doctest: +SKIP
        >>> data = mv.shapes_dataset(256)                              # doctest: +SKIP
        >>> scan = mv.scan(model, data.images, ["relu2", "relu3"], topk=8)  # doctest: +SKIP
        >>> scan.stats("relu3").dead.sum()                             # doctest: +SKIP
        >>> scan.exemplars("relu3", 7)[0]                              # doctest: +SKIP
        Exemplar(index=..., score=..., location=(r, c), box=(x0, y0, x1, y1))
    """
    from multiviz.backends import get_backend

    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {list(ENGINES)}. Received: engine={engine!r}")
    from multiviz.core.checks import check_number

    check_number(topk, "topk", low=1, integer=True)
    check_number(checkpoint_every, "checkpoint_every", low=1, integer=True)
    check_number(sketch_k, "sketch_k", low=4, high=1024, integer=True)
    if sketch_positions is not None:
        check_number(sketch_positions, "sketch_positions", low=1, integer=True)
    check_number(eps, "eps", low=0)
    check_number(index_offset, "index_offset", low=0, integer=True)
    backend = get_backend(model)
    layout = backend.input_layout(model)
    from multiviz.sources.images import Preprocess

    if preprocess is None:
        preprocess = Preprocess(name="[0, 1]", layout=layout)
    elif not isinstance(preprocess, Preprocess):
        raise TypeError(
            "`preprocess` must be a multiviz.sources.images.Preprocess (e.g. "
            f"Preprocess(size=(224, 224))) or None. Received: preprocess={preprocess!r:.60}"
        )
    src = source(
        data, unpack=unpack, batch_size=batch_size, preprocess=preprocess, max_pixels=max_pixels
    )
    _refuse_shuffling(data)
    plan = Plan(
        model=model,
        backend=backend,
        layers=layers,
        kind=kind,
        layout=layout,
        topk=int(topk),
        sketch_k=sketch_k,
        positions=sketch_positions,
        eps=eps,
        fields=fields,
        batch_size=batch_size,
        index_offset=int(index_offset),
    )
    resumed = None
    if checkpoint is not None and Path(checkpoint).exists():
        resumed = load_scan(checkpoint)
    if engine == "ray":
        from multiviz.scanning.ray_engine import run_ray

        result = run_ray(plan, src, resumed=resumed, concurrency=concurrency, num_gpus=num_gpus)
    else:
        result = run_local(plan, src, resumed, checkpoint, checkpoint_every, progress)
    result._model = model
    result._source = src if src.kind in ("array", "folder") or _reiterable(data) else None
    if src.kind == "folder":
        result.files = list(src.data.files)
    if checkpoint is not None:
        result.save(checkpoint)
    _warn_nonfinite(result)
    return result


def _refuse_shuffling(data: Any) -> None:
    sampler = getattr(data, "sampler", None)
    if sampler is not None and type(sampler).__name__ == "RandomSampler":
        raise ValueError(
            "`data` is a DataLoader that shuffles: its order changes on every pass, so "
            "exemplar indices, crops and resuming would not refer to the same inputs.\n"
            "hint: scan a DataLoader made with shuffle=False."
        )


def _reiterable(data: Any) -> bool:
    """True for data that can be read again in the same order (not a one-shot generator)."""
    return iter(data) is not data if hasattr(data, "__iter__") else False


class Plan:
    """Everything a worker needs to scan batches: the model, the layers and the reducers' settings."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def capture(self, x: Any) -> Any:
        """One batch's :class:`~multiviz.Activations` at the chosen layers."""
        from multiviz.capturing import capture

        return capture(self.model, x, self.layers, kind=self.kind)

    def new_scan(self, acts: Any) -> Scan:
        """An empty scan with one reducer per captured layer (bounds from the layers)."""
        from multiviz.core.stats import RunningStats

        layers = {
            key: RunningStats(
                eps=self.eps,
                bounds=acts.bounds.get(key),
                topk=self.topk,
                sketch_k=self.sketch_k,
                positions=self.positions,
            )
            for key in acts
        }
        return Scan(layers=layers, framework=self.backend.name, input_layout=self.layout)

    def input_size(self, x: Any) -> tuple[int, int] | None:
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4:
            return None
        return (
            (int(shape[2]), int(shape[3]))
            if self.layout == "channels_first"
            else (
                int(shape[1]),
                int(shape[2]),
            )
        )

    def fields_for(self, scan_: Scan, acts: dict[str, np.ndarray], x: Any) -> None:
        """Fill ``scan_.fields`` from the first batch (geometry, or a probe)."""
        from multiviz.core.names import owner
        from multiviz.scanning.crops import _numpy
        from multiviz.scanning.layer_fields import layer_fields

        size = self.input_size(x)
        scan_.input_size = size
        if size is None:
            scan_.fields = {k: None for k in acts}
            return
        sample = _numpy(x[:1])
        one = tuple(sample.shape[1:])
        infos = self.backend.layers(self.model, input_shape=one)
        names = {i.base for i in infos}
        bases = {k: (owner(k, names) or (k, ""))[0] for k in acts}

        def probe_capture(batch: np.ndarray, keys: list[str]) -> dict[str, np.ndarray]:
            return self.backend.capture(self.model, batch, sorted({bases[k] for k in keys}))

        scan_.fields = layer_fields(
            infos,
            {k: tuple(v.shape[1:]) for k, v in acts.items()},
            bases,
            size,
            mode=self.fields,
            capture=probe_capture,
            x0=sample[0],
            layout=self.layout,
            batch_size=self.batch_size,
        )

    def fold(self, scan_: Scan, acts: dict[str, np.ndarray], indices: np.ndarray) -> None:
        """Fold one batch's activations into ``scan_``."""
        if list(acts) != list(scan_.layers):
            raise ScanFileError(
                f"This batch captured layers {list(acts)}, the scan holds {list(scan_.layers)}."
            )
        for key, arr in acts.items():
            scan_.layers[key].update(arr, indices=indices)
        release_freed_memory()


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` (another C library, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the operating system (glibc; elsewhere a no-op).

    A scan allocates and frees the same large temporaries batch after batch
    (the framework's activations, their NumPy copies, the reducers' work
    arrays) while the quantile sketches' small, long-lived buffers grow among
    them. glibc raises its mmap threshold after freeing a large block, so
    later temporaries come from the heap, whose free holes it keeps: the
    resident size then creeps up with the number of batches (+18% from 1,000
    to 50,000 images in ``benchmarks/scan.py`` before this call). Trimming
    after every batch keeps it flat; it costs under a millisecond, tens of
    milliseconds when it hands back much memory.
    """
    if _TRIM is not None:
        _TRIM(0)


def run_local(
    plan: Plan,
    src: Source,
    resumed: Scan | None,
    checkpoint: str | os.PathLike | None,
    every: int,
    progress: bool | None,
) -> Scan:
    """The local engine: batches in order, through the model in this process."""
    from tqdm.auto import tqdm

    result = resumed
    skip = resumed.batches if resumed is not None else 0
    bar = tqdm(
        total=src.length,
        initial=resumed.samples if resumed is not None else 0,
        unit="img",
        unit_scale=True,
        desc="scan",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    try:
        for batch in src.batches(skip=skip):
            acts = plan.capture(batch.x)
            if result is None:
                result = plan.new_scan(acts)
            if result.input_size is None and not result.fields:
                plan.fields_for(result, acts, batch.x)
            plan.fold(result, acts, batch.indices + plan.index_offset)
            result.batches += 1
            bar.update(len(batch))
            if checkpoint is not None and result.batches % every == 0:
                result.save(checkpoint)
    finally:
        bar.close()
    if result is None:
        raise ValueError(f"`data` ({src.layout_hint()}) held no inputs: nothing to scan.")
    return result


def _warn_nonfinite(result: Scan) -> None:
    """One warning for the whole scan when any layer produced NaN or ±Inf."""
    bad = {}
    for name, stats in result.layers.items():
        if stats.counts is not None:
            n = int(stats.counts.nonfinite.sum())
            if n:
                bad[name] = n
    if bad:
        from multiviz.errors import MultivizWarning

        listing = ", ".join(f"{k}: {v}" for k, v in list(bad.items())[:5])
        warnings.warn(
            f"NaN or Inf values in {len(bad)} scanned layer(s) ({listing}) were left out of "
            "the statistics, sketches and exemplars (their count is in nonfinite_fraction).",
            MultivizWarning,
            stacklevel=3,
        )
