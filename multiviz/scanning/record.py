"""The result of a data-set scan: per-layer statistics, exemplars, receptive fields.

A :class:`Scan` holds one :class:`~multiviz.core.stats.RunningStats` per
scanned layer (moments, counts, quantile sketches, top-k inputs per
channel) and each layer's receptive field. It stores no images: exemplar
crops are cut from the data again when drawn. It saves to one ``.npz`` file
(plain arrays, loadable with ``allow_pickle=False``), merges with a scan of
other inputs, and a saved scan continues where it stopped
(:func:`multiviz.scan` with ``checkpoint=``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.core.stats import ChannelStats, RunningStats
from multiviz.errors import LayerNotFoundError, ScanFileError, closest
from multiviz.scanning.fields import ReceptiveField

__all__ = ["FORMAT", "Exemplar", "Scan", "load_scan"]

#: what the ``format`` entry of a saved scan says
FORMAT = "multiviz-scan"
VERSION = 1


@dataclass(frozen=True)
class Exemplar:
    """One of the inputs that excite a channel most.

    Attributes:
        index: the input's position in the data set (0-based, in the order
            the scan read the data).
        score: the channel's maximum over the map's positions for this input.
        location: where the maximum is: ``(row, col)`` in a 2-D map,
            ``(position,)`` in a 1-D map, ``()`` for a vector.
        box: the receptive field of the unit at ``location``, in input pixels
            ``(x0, y0, x1, y1)`` (start inclusive, end exclusive, clipped to
            the image; the whole image for a vector), or ``None`` where the
            field is unknown.
    """

    index: int
    score: float
    location: tuple[int, ...]
    box: tuple[int, int, int, int] | None


@dataclass
class Scan:
    """What :func:`multiviz.scan` returns: statistics and exemplars per layer and channel.

    Attributes:
        layers: layer name -> its streaming statistics, in model order.
        fields: layer name -> :class:`~multiviz.scanning.fields.ReceptiveField`
            (``None`` for a layer whose outputs are not 2-D maps).
        framework: ``"torch"`` or ``"keras"``.
        input_layout: ``"channels_first"`` or ``"channels_last"``: how inputs
            are laid out (for drawing crops).
        input_size: an input's ``(height, width)``, or ``None`` (not images).
        batches: batches read so far (a continued scan skips them).
        files: the image files scanned, when ``data`` was a folder.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                   # doctest: +SKIP
        >>> data = mv.shapes_dataset(64).images                  # doctest: +SKIP
        >>> scan = mv.scan(model, data, ["relu3"], topk=4)       # doctest: +SKIP
        >>> scan.stats("relu3").dead.sum(), scan.exemplars("relu3", 5)[0].box  # doctest: +SKIP
    """

    layers: dict[str, RunningStats]
    fields: dict[str, ReceptiveField | None] = field(default_factory=dict)
    framework: str = ""
    input_layout: str = "channels_first"
    input_size: tuple[int, int] | None = None
    batches: int = 0
    files: list[str] | None = None
    _model: Any = field(default=None, repr=False, compare=False)
    _source: Any = field(default=None, repr=False, compare=False)

    # -- reading

    @property
    def samples(self) -> int:
        """Number of inputs scanned."""
        return max((s.samples for s in self.layers.values()), default=0)

    def _layer(self, layer: str) -> RunningStats:
        try:
            return self.layers[layer]
        except KeyError:
            near = closest(layer, self.layers)
            raise LayerNotFoundError(
                f"{layer!r} was not scanned. Scanned layers: {list(self.layers)[:8]}"
                + (f"; closest: {near}." if near else ".")
            ) from None

    def stats(self, layer: str) -> ChannelStats:
        """Per-channel statistics of every value of ``layer`` (all inputs, all positions).

        Returns:
            A :class:`~multiviz.core.stats.ChannelStats`: ``count``, ``mean``,
            ``std``, ``min``, ``max``, ``quantile(q)``, ``positive_fraction``
            (also ``fraction_positive``), ``dead``, ``saturated_fraction``…,
            one entry per channel.

        Raises:
            LayerNotFoundError: ``layer`` was not scanned.
        """
        return self._layer(layer).channel_stats()

    def exemplars(self, layer: str, channel: int) -> tuple[Exemplar, ...]:
        """The top-k inputs of one channel: highest score first, then lowest index.

        Args:
            layer: a scanned layer.
            channel: the channel (negative counts from the end).

        Returns:
            Up to ``topk`` :class:`Exemplar` records (fewer when fewer inputs
            had a finite value in that channel).

        Raises:
            LayerNotFoundError: ``layer`` was not scanned.
            IndexError: ``channel`` is out of range (the valid range is named).
        """
        stats = self._layer(layer)
        top = stats.exemplars()
        n = top["index"].shape[1]
        if isinstance(channel, bool) or not isinstance(channel, int | np.integer):
            raise TypeError(f"`channel` must be an int. Received: channel={channel!r}")
        if not -n <= channel < n:
            raise IndexError(f"`channel` must be in [0, {n}) for {layer!r}. Received: {channel}")
        ch = int(channel) % n
        map_shape = tuple(stats.sample_shape[1:]) if stats.sample_shape else ()
        fld = self.fields.get(layer)
        out = []
        for k in np.flatnonzero(top["valid"][:, ch]):
            pos = int(top["position"][k, ch])
            loc = tuple(int(v) for v in np.unravel_index(pos, map_shape)) if map_shape else ()
            out.append(
                Exemplar(
                    index=int(top["index"][k, ch]),
                    score=float(top["score"][k, ch]),
                    location=loc,
                    box=self._box(fld, loc),
                )
            )
        return tuple(out)

    def _box(self, fld: ReceptiveField | None, loc: tuple[int, ...]) -> tuple[int, ...] | None:
        if fld is not None and len(loc) == 2:
            return fld.box(*loc)
        if len(loc) == 0 and self.input_size is not None:  # a vector sees the whole image
            return (0, 0, self.input_size[1], self.input_size[0])
        return None

    # -- combining and saving

    def merge(self, other: Scan) -> Scan:
        """Fold a scan of other inputs into this one (in place; returns ``self``).

        Both must cover the same layers with the same settings; exemplar
        indices must not collide (scan the second part with
        ``index_offset=`` the first part's length).

        Raises:
            ScanFileError: different layers or settings.
        """
        if list(other.layers) != list(self.layers):
            raise ScanFileError(
                f"Cannot merge scans of different layers: {list(self.layers)} and "
                f"{list(other.layers)}."
            )
        for name, stats in self.layers.items():
            try:
                stats.merge(other.layers[name])
            except ValueError as err:
                raise ScanFileError(f"Cannot merge the scans of {name!r}: {err}") from err
        self.batches += other.batches
        if self.files is not None and other.files is not None and other.files != self.files:
            self.files = None  # indices no longer name one folder's files
        return self

    def to_state(self) -> dict[str, np.ndarray]:
        """Every array a saved scan holds (see :meth:`save`)."""
        names = list(self.layers)
        state: dict[str, np.ndarray] = {
            "format": np.asarray(FORMAT),
            "version": np.asarray(VERSION),
            "layers": np.asarray(names, dtype=str),
            "meta.framework": np.asarray(self.framework),
            "meta.input_layout": np.asarray(self.input_layout),
            "meta.input_size": np.asarray(self.input_size or (), np.int64),
            "meta.batches": np.asarray(self.batches, np.int64),
            "meta.files": np.asarray(self.files or [], dtype=str),
            "meta.has_files": np.asarray(self.files is not None),
        }
        for i, name in enumerate(names):
            state.update({f"L{i}.{k}": v for k, v in self.layers[name].to_state().items()})
            fld = self.fields.get(name)
            if fld is not None:
                state[f"L{i}.field"] = np.asarray(
                    [*fld.size, *fld.jump, *fld.start, *fld.input_size], np.float64
                )
                state[f"L{i}.field_method"] = np.asarray(fld.method)
        return state

    def save(self, path: str | os.PathLike) -> Path:
        """Write the scan to one ``.npz`` file (atomically: a crash leaves the old file whole).

        The file holds plain arrays only (``np.load(path, allow_pickle=False)``
        reads it); :func:`multiviz.load_scan` turns it back into a
        :class:`Scan`.

        Returns:
            The path written.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez(fh, **self.to_state())
        os.replace(tmp, path)
        return path

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], where: str = "state") -> Scan:
        """Rebuild from :meth:`to_state`'s arrays."""
        if "format" not in state or str(state["format"]) != FORMAT:
            raise ScanFileError(f"{where} is not a saved multiviz scan (no format={FORMAT!r}).")
        if int(state["version"]) > VERSION:
            raise ScanFileError(
                f"{where} was written by a newer multiviz (scan format {int(state['version'])}); "
                f"this one reads up to {VERSION}."
            )
        names = [str(n) for n in np.asarray(state["layers"]).tolist()]
        layers: dict[str, RunningStats] = {}
        fields: dict[str, ReceptiveField | None] = {}
        for i, name in enumerate(names):
            prefix = f"L{i}."
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            fld = part.pop("field", None)
            method = str(part.pop("field_method", "composed"))
            layers[name] = RunningStats.from_state(part)
            if fld is not None:
                f = np.asarray(fld, np.float64).tolist()
                fields[name] = ReceptiveField(
                    (f[0], f[1]), (f[2], f[3]), (f[4], f[5]), (int(f[6]), int(f[7])), method
                )
            else:
                fields[name] = None
        size = tuple(int(v) for v in np.asarray(state["meta.input_size"]).tolist())
        return cls(
            layers=layers,
            fields=fields,
            framework=str(state["meta.framework"]),
            input_layout=str(state["meta.input_layout"]),
            input_size=size if len(size) == 2 else None,  # type: ignore[arg-type]
            batches=int(state["meta.batches"]),
            files=[str(f) for f in np.asarray(state["meta.files"]).tolist()]
            if bool(state["meta.has_files"])
            else None,
        )

    # -- views

    def table(self, layer: str) -> list[dict[str, Any]]:
        """One plain row per channel of ``layer``: the statistics table the CLI writes."""
        s = self.stats(layer)
        q = s.quantile([0.5, 0.995]) if s.sketch is not None else np.full((2, len(s)), np.nan)
        rows = []
        for c in range(len(s)):
            rows.append(
                {
                    "channel": c,
                    "mean": float(s.mean[c]),
                    "std": float(s.std[c]),
                    "min": float(s.min[c]),
                    "max": float(s.max[c]),
                    "p50": float(q[0, c]),
                    "p99.5": float(q[1, c]),
                    "positive_fraction": float(s.positive_fraction[c]),
                    "saturated_fraction": float(s.saturated_fraction[c]),
                    "dead": bool(s.dead[c]),
                }
            )
        return rows

    def __repr__(self) -> str:
        lines = [
            f"Scan({self.framework or '?'}, {_plural(self.samples, 'input')}, "
            f"{_plural(len(self.layers), 'layer')})"
        ]
        width = max((len(n) for n in self.layers), default=5)
        shown = list(self.layers.items())
        for name, stats in shown[:17]:
            if stats.sample_shape is None:
                lines.append(f"  {name:<{width}}  (no data)")
                continue
            cs = stats.channel_stats()
            shape = "x".join(str(s) for s in stats.sample_shape)
            field_txt = ""
            fld = self.fields.get(name)
            if fld is not None:
                field_txt = f"  field {fld.size[0]:g}x{fld.size[1]:g}px"
            lines.append(
                f"  {name:<{width}}  {shape:<12} dead {int(cs.dead.sum())}/{len(cs)}"
                f"  top-{stats.topk}{field_txt}"
            )
        if len(shown) > 17:
            lines.append(f"  … {len(shown) - 17} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        rows = []
        for name, stats in self.layers.items():
            if stats.sample_shape is None:
                continue
            cs = stats.channel_stats()
            sat = "–" if not cs.bounded else f"{np.nanmean(cs.saturated_fraction):.1%}"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{'x'.join(map(str, stats.sample_shape))}</td>"
                f"<td>{int(cs.dead.sum())} / {len(cs)}</td>"
                f"<td>{np.mean(cs.positive_fraction):.1%}</td><td>{sat}</td></tr>"
            )
        head = (
            "<tr><th>layer</th><th>shape</th><th>dead channels</th>"
            "<th>positive</th><th>saturated</th></tr>"
        )
        return (
            f"<p><b>Scan</b> of {_plural(self.samples, 'input')} ({html.escape(self.framework)})</p>"
            f"<table>{head}{''.join(rows)}</table>"
        )

    # -- drawing (delegates to render/)

    def exemplar_crops(
        self,
        layer: str,
        channels: Sequence[int],
        data: Any = None,
        *,
        k: int | None = None,
        size: int = 64,
        unpack: Any = None,
    ) -> tuple[np.ndarray, list[list[Exemplar]]]:
        """Receptive-field crops of each channel's exemplars, resized to ``size``.

        Args:
            layer: a scanned layer.
            channels: the channels (rows).
            data: the data scanned (the same order); not needed when the scan
                was of a folder, or when it is still the scan made in this
                process from indexable data.
            k: exemplars per channel (default: all kept).
            size: side of each crop in pixels.
            unpack: see :func:`multiviz.scan` (when ``data`` is given).

        Returns:
            ``(crops, exemplars)``: float32 ``(rows, k, size, size, 3)`` in
            ``[0, 1]`` (each input scaled by its own range; missing
            exemplars black), and the :class:`Exemplar` records drawn.
        """
        from multiviz.scanning.crops import crops_for

        return crops_for(self, layer, channels, data, k=k, size=size, unpack=unpack)

    def plot_exemplars(
        self,
        layer: str,
        channels: Sequence[int] | None = None,
        data: Any = None,
        *,
        k: int | None = None,
        size: int = 64,
        unpack: Any = None,
        title: str | None = None,
    ) -> Any:
        """One montage: a row per channel, its top-k receptive-field crops left to right.

        Args:
            layer: a scanned layer.
            channels: the channels to show (default: the 8 with the highest
                top score).
            data, k, size, unpack: see :meth:`exemplar_crops`.
            title: the figure's title (default names the layer and the count).

        Returns:
            A matplotlib Figure (drawn by :mod:`multiviz.render`).
        """
        from multiviz.render.scan import plot_exemplar_grid

        if channels is None:
            channels = self.top_channels(layer, 8)
        crops, exemplars = self.exemplar_crops(layer, channels, data, k=k, size=size, unpack=unpack)
        return plot_exemplar_grid(
            crops,
            list(channels),
            exemplars,
            title=title or f"{layer}: top {crops.shape[1]} of {self.samples} inputs per channel",
        )

    def top_channels(self, layer: str, n: int) -> list[int]:
        """The ``n`` channels of ``layer`` with the highest best score (live channels first)."""
        top = self._layer(layer).exemplars()
        best = np.where(top["valid"][0], top["score"][0], -np.inf)
        return np.argsort(-best, kind="stable")[:n].tolist()

    def dissect(
        self,
        data: Any,
        concept_masks: Any,
        *,
        concepts: Sequence[str] | None = None,
        layers: str | Sequence[str] | None = None,
        model: Any = None,
        top_quantile: float = 0.005,
        unpack: Any = None,
        batch_size: int = 32,
        progress: bool | None = None,
    ) -> Any:
        """Network Dissection (Bau et al., CVPR 2017): which concept each unit detects.

        A second streaming pass over ``data``: each unit's maps are upsampled
        to the masks' resolution (bilinear, anchored at receptive-field
        centres), thresholded at the unit's top-``top_quantile`` level from
        this scan (``P(a > T) = 0.005``), and compared with every concept's
        masks; the IoU is summed over the whole data set.

        Args:
            data: the same inputs as the scan (any order of batches).
            concept_masks: aligned with ``data``: an array ``(N, concepts, H, W)``
                of bools, or ``(N, H, W)`` of ints (the concept index per
                pixel, negative for none), or an iterable of such batches.
            concepts: concept names (default ``"concept 0"``, …).
            layers: which scanned layers (default: every layer with 2-D maps).
            model: the model, for a scan loaded from a file.
            top_quantile: the fraction of values above each unit's threshold.
            unpack, batch_size, progress: see :func:`multiviz.scan`.

        Returns:
            A :class:`~multiviz.scanning.dissection.Dissection`.
        """
        from multiviz.scanning.dissection import dissect

        return dissect(
            self,
            data,
            concept_masks,
            concepts=concepts,
            layers=layers,
            model=model if model is not None else self._model,
            top_quantile=top_quantile,
            unpack=unpack,
            batch_size=batch_size,
            progress=progress,
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def load_scan(path: str | os.PathLike) -> Scan:
    """Read a scan written by :meth:`Scan.save` (``allow_pickle=False``).

    Raises:
        FileNotFoundError: no such file.
        ScanFileError: the file is not a saved scan.

    Example:
        >>> import multiviz as mv
        >>> scan = mv.load_scan("scan.npz")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`path` must be a scan file written by Scan.save. No such file: path={str(path)!r}"
        )
    with np.load(path, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    return Scan.from_state(state, where=repr(str(path)))
