"""Statistics of feature maps, per channel and per layer: streaming, mergeable, bounded memory.

:class:`RunningStats` (one layer, per channel) and :class:`RunningLayerStats`
(many layers) take one batch at a time and keep a fixed-size state per
channel, built from the reducers of :mod:`multiviz.scanning.reducers`
(moments by Chan et al.'s parallel algorithm, exact counts, Apache
DataSketches REQ quantile sketches, exact top-k); two partial results merge
in any order, so a data set can be reduced batch by batch or split over
workers (:func:`multiviz.scan` does both). The one-shot functions
:func:`channel_stats` and :func:`layer_stats` are the same accumulators fed
once.

Definitions, the same everywhere multiviz reports them:

* **positive fraction** — the fraction of values ``> 0``;
* **dead** — a channel that is never ``> 0`` over every input given (every
  position of every sample; NaN and ±Inf left out). A statement about the
  inputs seen: the count of inputs is reported with it (``samples``);
* **saturated fraction** — the fraction of values within ``1e-3 * max(1,
  |b|)`` of a bound ``b`` of a bounded activation: ReLU6 at 6, sigmoid and
  hard-sigmoid at 0 and 1, tanh at -1 and 1 (the bounds come from the layer,
  see :attr:`multiviz.LayerInfo.bounds`, also where Keras fuses the
  activation into a layer, ``Conv2D(activation="relu6")``). Not reported
  (NaN) for unbounded layers;
* **zero fraction** — the fraction of values with ``|v| <= eps``.

Fractions are of all values, NaN/Inf included; mean, std, min, max and
quantiles are of the finite values. NaN and ±Inf are counted
(``nonfinite_fraction``) and left out of everything else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from multiviz.core.layout import infer_layout
from multiviz.errors import InputShapeError, LayerNotFoundError, closest
from multiviz.scanning.reducers import Counts, Moments, QuantileSketch, TopK, as_channels

__all__ = [
    "ChannelStats",
    "LayerStats",
    "LayerStatsReport",
    "RunningLayerStats",
    "RunningStats",
    "channel_stats",
    "layer_stats",
]

Bounds = Sequence[float] | None
_BATCH_LAYOUTS = {4: "NCHW", 3: "NCL", 2: "NF"}


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics over every input and position.

    Every array has one entry per channel (per feature for vectors). See the
    module docstring for the definitions of dead, saturated and positive.

    Attributes:
        count: number of values per channel (NaN/Inf included), int64.
        mean: mean of the finite values.
        std: population standard deviation (``ddof=0``) of the finite values.
        l2: root of the sum of squares of the finite values.
        min: smallest finite value.
        max: largest finite value.
        zero_fraction: fraction with ``|v| <= eps``.
        positive_fraction: fraction ``> 0``.
        saturated_fraction: fraction within ``1e-3`` (relative to the bound's
            scale) of a bounded activation's bound; NaN for an unbounded layer.
        nonfinite_fraction: fraction NaN or ±Inf.
        samples: number of inputs the statistics cover.
        sketch: the per-channel quantile sketch behind :meth:`quantile`, or
            ``None`` when quantiles were not asked for.

    Example:
        >>> s = channel_stats(np.array([[[0.0, 2.0], [0.0, 4.0]], [[-1.0, 0.0], [0.0, 0.0]]]))
        >>> s.mean.tolist(), s.positive_fraction.tolist(), s.dead.tolist()
        ([1.5, -0.25], [0.5, 0.0], [False, True])
    """

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    l2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zero_fraction: np.ndarray
    positive_fraction: np.ndarray
    saturated_fraction: np.ndarray
    nonfinite_fraction: np.ndarray
    samples: int = 0
    sketch: QuantileSketch | None = field(default=None, repr=False, compare=False)

    @property
    def dead(self) -> np.ndarray:
        """True for channels never ``> 0`` over every input and position seen."""
        return (self.count > 0) & (self.nonfinite_fraction < 1) & (self.positive_fraction == 0)

    @property
    def fraction_positive(self) -> np.ndarray:
        """The same as :attr:`positive_fraction` (the fraction of values ``> 0``)."""
        return self.positive_fraction

    @property
    def bounded(self) -> bool:
        """True when the layer has bounds, so that saturation is reported."""
        return bool(len(self) == 0 or not np.isnan(self.saturated_fraction).all())

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """The ``q``-quantile of each channel's finite values, from the streaming sketch.

        Args:
            q: a rank in ``[0, 1]`` (0.995: the value 0.5% of values exceed),
                or a sequence of them.

        Returns:
            float64 ``(C,)`` for one rank, ``(len(q), C)`` for several; exact
            while a channel's sketch holds every value, else within the
            sketch's rank error (see :meth:`QuantileSketch.rank_bounds`).

        Raises:
            ValueError: a rank outside ``[0, 1]``, or the statistics were
                computed without quantiles.
        """
        if self.sketch is None:
            raise ValueError(
                "These statistics were computed without quantiles.\n"
                "hint: use channel_stats(..., quantiles=True) or RunningStats(quantiles=True)."
            )
        return self.sketch.quantile(q)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, e.g. for JSON."""
        out: dict[str, Any] = {
            k: np.asarray(getattr(self, k)).tolist()
            for k in (
                "count",
                "mean",
                "std",
                "l2",
                "min",
                "max",
                "zero_fraction",
                "positive_fraction",
                "saturated_fraction",
                "nonfinite_fraction",
            )
        }
        out["dead"] = self.dead.tolist()
        out["samples"] = self.samples
        return out

    def __len__(self) -> int:
        return int(self.count.shape[0])

    def __repr__(self) -> str:
        n = len(self)
        dead = int(self.dead.sum())
        lines = [
            f"ChannelStats({_plural(n, 'channel')} over {_plural(self.samples, 'input')})",
            f"  mean   {_brief(self.mean)}",
            f"  std    {_brief(self.std)}",
            f"  min    {_brief(self.min)}",
            f"  max    {_brief(self.max)}",
            f"  positive_fraction  {_brief(self.positive_fraction)}",
            f"  dead   {dead} of {n}" + (f": {np.flatnonzero(self.dead)[:8].tolist()}" if dead else ""),
        ]
        if self.bounded:
            lines.append(f"  saturated_fraction  {_brief(self.saturated_fraction)}")
        if np.any(self.nonfinite_fraction > 0):
            lines.append(f"  nonfinite_fraction  {_brief(self.nonfinite_fraction)}")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _brief(a: np.ndarray, k: int = 4) -> str:
    """The first few values of an array and its range, on one line."""
    a = np.asarray(a, np.float64)
    head = ", ".join(f"{v:.3g}" for v in a[:k]) + (", …" if a.size > k else "")
    if a.size == 0:
        return "[]"
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(a) if np.isfinite(a).any() else np.nan, np.nanmax(a) if np.isfinite(a).any() else np.nan
    return f"[{head}]  (range {lo:.3g} .. {hi:.3g})"


class RunningStats:
    """Streaming per-channel statistics of one layer, mergeable across workers.

    Feed batches with :meth:`update`; combine partial results with
    :meth:`merge`; read :meth:`channel_stats` / :meth:`layer_stats`. Memory
    is fixed per channel: moments and counts, a REQ quantile sketch (a few
    kilobytes) and, with ``topk``, the best ``topk`` inputs.

    Args:
        eps: a value counts as zero when ``|v| <= eps``.
        bounds: the bounds of the layer's activation (ReLU6 ``(6,)``, sigmoid
            ``(0, 1)``, tanh ``(-1, 1)``), or ``None`` for an unbounded layer.
        quantiles: keep per-channel quantile sketches (for
            :meth:`ChannelStats.quantile` and the layer's percentiles).
        topk: keep the ``topk`` inputs with the highest maximum of each
            channel (0: none); :meth:`exemplars` returns them.
        sketch_k: the REQ sketch's accuracy parameter (see
            :class:`~multiviz.scanning.reducers.QuantileSketch`).
        positions: at most this many positions per map go into the sketch
            (``None``: all).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> data = rng.normal(size=(10, 4, 5, 6))
        >>> a = RunningStats().update(data[:3]).update(data[3:7])
        >>> b = RunningStats().update(data[7:])
        >>> s = a.merge(b).channel_stats()
        >>> bool(np.allclose(s.std, data.transpose(1, 0, 2, 3).reshape(4, -1).std(axis=1)))
        True
    """

    def __init__(
        self,
        *,
        eps: float = 0.0,
        bounds: Bounds = None,
        quantiles: bool = True,
        topk: int = 0,
        sketch_k: int = 12,
        positions: int | None = None,
    ) -> None:
        if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 0:
            raise ValueError(f"`topk` must be an int >= 0. Received: topk={topk!r}")
        self.eps = float(eps)
        self.bounds = None if bounds is None else tuple(float(b) for b in bounds)
        if self.bounds is not None and not all(np.isfinite(self.bounds)):
            raise ValueError(f"`bounds` must be finite numbers. Received: bounds={bounds!r}")
        self.quantiles = bool(quantiles)
        self.topk = int(topk)
        self.sketch_k = int(sketch_k)
        self.positions = positions
        self.sample_shape: tuple[int, ...] | None = None  # one sample, e.g. (C, H, W)
        self.samples = 0
        self.moments: Moments | None = None
        self.counts: Counts | None = None
        self.sketch: QuantileSketch | None = None
        self.top: TopK | None = None

    def _settings(self) -> tuple:
        return (self.eps, self.bounds, self.quantiles, self.topk, self.sketch_k, self.positions)

    def _start(self, sample_shape: tuple[int, ...]) -> None:
        channels = sample_shape[0]
        self.sample_shape = sample_shape
        self.moments = Moments(channels)
        self.counts = Counts(channels, self.bounds, self.eps)
        if self.quantiles:
            self.sketch = QuantileSketch(channels, self.sketch_k, self.positions)
        if self.topk:
            self.top = TopK(channels, self.topk)

    # -- feeding

    def update(
        self,
        batch: np.ndarray,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        layout: str | None = None,
    ) -> RunningStats:
        """Add one batch (in place; returns ``self`` for chaining).

        Args:
            batch: batch-first canonical layout — ``(N, C, H, W)``,
                ``(N, C, L)`` or ``(N, F)`` (what :func:`multiviz.capture`
                returns); every batch must have the same per-sample shape.
            indices: the data-set index of each sample (for top-k); by
                default they continue from the samples seen so far.
            layout: ``"NCHW"``, ``"NCL"`` or ``"NF"``; by default chosen
                from the rank (4, 3, 2).

        Raises:
            InputShapeError: not a batch, or a shape different from earlier batches.
        """
        x = np.asarray(batch)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"RunningStats needs a real-valued array. Received dtype {x.dtype}.")
        if layout is None:
            layout = _BATCH_LAYOUTS.get(x.ndim)
            if layout is None:
                raise InputShapeError(
                    f"RunningStats.update takes a batch (N, C, H, W), (N, C, L) or (N, F). "
                    f"Received shape {x.shape}. Add a batch axis with x[None]."
                )
        lay = infer_layout(x, layout)
        if not lay.startswith("N"):
            raise InputShapeError(
                f"RunningStats.update takes a batch-first layout. Received layout={layout!r}; "
                "add a batch axis with x[None]."
            )
        shape = tuple(int(s) for s in x.shape[1:])
        if self.sample_shape is None:
            self._start(shape)
        elif shape != self.sample_shape:
            raise InputShapeError(
                f"Every batch must have the same per-sample shape. Had {self.sample_shape}, "
                f"received {shape}."
            )
        values, _ = as_channels(x)
        assert self.moments is not None and self.counts is not None
        self.moments.update(values)
        self.counts.update(values)
        if self.sketch is not None:
            self.sketch.update(values)
        if self.top is not None:
            idx = (
                np.arange(self.samples, self.samples + x.shape[0])
                if indices is None
                else np.asarray(indices, np.int64)
            )
            self.top.update(values, idx)
        self.samples += x.shape[0]
        return self

    def merge(self, other: RunningStats) -> RunningStats:
        """Fold ``other``'s data into this accumulator (in place; returns ``self``).

        The result equals feeding both data sets to one accumulator: counts,
        min, max and top-k exactly, moments to float64 rounding, quantiles
        within the sketch's rank bound.

        Raises:
            InputShapeError: the two saw arrays of different per-sample shapes.
            ValueError: the settings differ.
        """
        if self._settings() != other._settings():
            raise ValueError(
                "Cannot merge RunningStats with different settings (eps, bounds, quantiles, "
                f"topk, sketch_k, positions): {self._settings()} and {other._settings()}."
            )
        if other.sample_shape is None:
            return self
        if self.sample_shape is None:
            self._start(other.sample_shape)
        elif other.sample_shape != self.sample_shape:
            raise InputShapeError(
                f"Every batch must have the same per-sample shape. Had {self.sample_shape}, "
                f"received {other.sample_shape}."
            )
        for name in ("moments", "counts", "sketch", "top"):
            mine = getattr(self, name)
            if mine is not None:
                mine.merge(getattr(other, name))
        self.samples += other.samples
        return self

    # -- results

    @property
    def exact_percentiles(self) -> bool:
        """True while the quantile sketches hold every finite value seen."""
        return self.sketch is not None and self.sketch.exact

    def channel_stats(self) -> ChannelStats:
        """Per-channel statistics of everything seen so far.

        Raises:
            ValueError: nothing was fed yet.
        """
        moments, counts = self._require()
        m = moments.finalize()
        c = counts.finalize()
        total = c["total"].astype(np.float64)

        def frac(k: np.ndarray) -> np.ndarray:
            return np.divide(k, total, out=np.zeros_like(total), where=total > 0)

        saturated = frac(c["saturated"]) if self.bounds is not None else np.full_like(total, np.nan)
        return ChannelStats(
            count=c["total"],
            mean=m["mean"],
            std=m["std"],
            l2=m["l2"],
            min=m["min"],
            max=m["max"],
            zero_fraction=frac(c["zero"]),
            positive_fraction=frac(c["positive"]),
            saturated_fraction=saturated,
            nonfinite_fraction=frac(c["nonfinite"]),
            samples=self.samples,
            sketch=None if self.sketch is None else self.sketch.finalize(),
        )

    def layer_stats(self, name: str = "") -> LayerStats:
        """One record for the whole layer (see :class:`LayerStats`); percentiles from the sketches."""
        moments, counts = self._require()
        cs = self.channel_stats()
        c = counts.finalize()
        total = float(c["total"].sum())
        n = moments.count.astype(np.float64)
        count = float(n.sum())
        with np.errstate(all="ignore"):
            mean = float((moments.mean * n).sum() / count) if count else np.nan
            m2 = float((moments.m2 + n * np.square(moments.mean - mean)).sum()) if count else np.nan
        if self.sketch is not None and count:
            whole = self.sketch.layer_sketch()
            p01, p50, p99 = (float(v) for v in whole.get_quantiles([0.01, 0.5, 0.99], True))
        else:
            p01 = p50 = p99 = np.nan

        def frac(key: str) -> float:
            return float(c[key].sum() / total) if total else 0.0

        return LayerStats(
            name=name,
            shape=tuple(self.sample_shape or ()),
            samples=self.samples,
            mean=mean,
            std=float(np.sqrt(m2 / count)) if count else np.nan,
            min=float(np.nanmin(cs.min)) if count else np.nan,
            max=float(np.nanmax(cs.max)) if count else np.nan,
            p01=p01,
            p50=p50,
            p99=p99,
            dead_fraction=float(cs.dead.mean()) if len(cs) else 0.0,
            zero_fraction=frac("zero"),
            positive_fraction=frac("positive"),
            saturated_fraction=frac("saturated") if self.bounds is not None else np.nan,
            nonfinite_fraction=frac("nonfinite"),
            exact_percentiles=self.exact_percentiles,
        )

    def exemplars(self) -> dict[str, np.ndarray]:
        """The top-k arrays: ``score``, ``index``, ``position``, ``valid``, each ``(topk, C)``.

        Raises:
            ValueError: made with ``topk=0``, or nothing was fed yet.
        """
        self._require()
        if self.top is None:
            raise ValueError("RunningStats was made with topk=0: it keeps no exemplars.")
        return self.top.finalize()

    def _require(self) -> tuple[Moments, Counts]:
        if self.moments is None or self.counts is None:
            raise ValueError("RunningStats has seen no data yet: call update(batch) first.")
        return self.moments, self.counts

    # -- state

    def to_state(self) -> dict[str, np.ndarray]:
        """Settings and every reducer's state as a flat dict of plain arrays.

        Keys are ``"settings.*"``, ``"moments.*"``, ``"counts.*"``,
        ``"sketch.*"``, ``"top.*"``; ``np.savez`` writes them and
        ``np.load(..., allow_pickle=False)`` reads them back.
        """
        state: dict[str, np.ndarray] = {
            "settings.eps": np.asarray(self.eps),
            "settings.bounds": np.asarray(self.bounds or (), np.float64),
            "settings.bounded": np.asarray(self.bounds is not None),
            "settings.quantiles": np.asarray(self.quantiles),
            "settings.topk": np.asarray(self.topk),
            "settings.sketch_k": np.asarray(self.sketch_k),
            "settings.positions": np.asarray(-1 if self.positions is None else self.positions),
            "settings.sample_shape": np.asarray(self.sample_shape or (), np.int64),
            "settings.started": np.asarray(self.sample_shape is not None),
            "settings.samples": np.asarray(self.samples, np.int64),
        }
        for name in ("moments", "counts", "sketch", "top"):
            reducer = getattr(self, name)
            if reducer is not None:
                state.update({f"{name}.{k}": v for k, v in reducer.to_state().items()})
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> RunningStats:
        """Rebuild from :meth:`to_state`'s arrays."""
        positions = int(state["settings.positions"])
        out = cls(
            eps=float(state["settings.eps"]),
            bounds=tuple(np.asarray(state["settings.bounds"]).tolist())
            if bool(state["settings.bounded"])
            else None,
            quantiles=bool(state["settings.quantiles"]),
            topk=int(state["settings.topk"]),
            sketch_k=int(state["settings.sketch_k"]),
            positions=None if positions < 0 else positions,
        )
        out.samples = int(state["settings.samples"])
        if not bool(state["settings.started"]):
            return out
        out.sample_shape = tuple(int(s) for s in np.asarray(state["settings.sample_shape"]))

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}

        out.moments = Moments.from_state(part("moments"))
        out.counts = Counts.from_state(part("counts"))
        if out.quantiles:
            out.sketch = QuantileSketch.from_state(part("sketch"))
        if out.topk:
            out.top = TopK.from_state(part("top"))
        return out


def channel_stats(
    maps: np.ndarray,
    *,
    eps: float = 0.0,
    bounds: Bounds = None,
    quantiles: bool = True,
    layout: str | None = None,
) -> ChannelStats:
    """Per-channel mean, std, min, max, positive, dead, zero and saturated figures.

    Args:
        maps: one sample ``(C, H, W)`` / ``(C, L)`` / ``(F,)``, or a batch
            ``(N, C, H, W)`` (``layout="NCL"`` / ``"NF"`` for the others);
            statistics run over the batch and spatial axes.
        eps: a value counts as zero when ``|v| <= eps`` (0: exact zeros).
        bounds: the bounds of the layer's activation (ReLU6 ``(6,)``, sigmoid
            ``(0, 1)``, tanh ``(-1, 1)``) for ``saturated_fraction``; ``None``:
            unbounded, saturation not reported (NaN).
        quantiles: keep quantile sketches (:meth:`ChannelStats.quantile`).
        layout: see :func:`multiviz.normalize`.

    Returns:
        A :class:`ChannelStats` (one entry per channel).

    Example:
        >>> x = np.array([[[0.0, 2.0], [0.0, 6.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> s = channel_stats(x, bounds=(6.0,))
        >>> s.mean.tolist(), s.saturated_fraction.tolist(), s.dead.tolist()
        ([2.0, 0.0], [0.25, 0.0], [False, True])
    """
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    if not lay.startswith("N"):
        arr, lay = arr[None], "N" + lay
    stats = RunningStats(eps=eps, bounds=bounds, quantiles=quantiles)
    return stats.update(arr, layout=lay).channel_stats()


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's output over a batch or a data set.

    Attributes:
        name: the layer's name.
        shape: one sample's shape, e.g. ``(C, H, W)``.
        samples: number of inputs seen.
        mean, std, min, max: over all finite values.
        p01, p50, p99: 1st, 50th and 99th percentile of the finite values
            (from the quantile sketches when streaming).
        dead_fraction: fraction of channels never > 0 over every input seen.
        zero_fraction: fraction of values that are zero (``|v| <= eps``).
        saturated_fraction: fraction of values at a bound of the layer's
            bounded activation; NaN for an unbounded layer.
        nonfinite_fraction: fraction of values that are NaN or ±Inf.
        exact_percentiles: False when the percentiles come from a sketch.
        positive_fraction: fraction of values > 0.
    """

    name: str
    shape: tuple[int, ...]
    samples: int
    mean: float
    std: float
    min: float
    max: float
    p01: float
    p50: float
    p99: float
    dead_fraction: float
    zero_fraction: float
    saturated_fraction: float
    nonfinite_fraction: float = 0.0
    exact_percentiles: bool = True
    positive_fraction: float = np.nan

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (shape as a list), e.g. for JSON."""
        from dataclasses import asdict

        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


class LayerStatsReport(Sequence[LayerStats]):
    """Per-layer statistics in model order: index by position or by layer name.

    Views: ``repr`` is a text table, :meth:`to_dict` plain data,
    :meth:`plot` the figure of :func:`multiviz.plot_layer_stats`.
    """

    def __init__(self, layers: Sequence[LayerStats]) -> None:
        self.layers = list(layers)

    @overload
    def __getitem__(self, key: int | str) -> LayerStats: ...
    @overload
    def __getitem__(self, key: slice) -> LayerStatsReport: ...
    def __getitem__(self, key: int | str | slice) -> LayerStats | LayerStatsReport:
        if isinstance(key, slice):
            return LayerStatsReport(self.layers[key])
        if isinstance(key, str):
            for rec in self.layers:
                if rec.name == key:
                    return rec
            names = [r.name for r in self.layers]
            hint = closest(key, names)
            raise LayerNotFoundError(
                f"No statistics for {key!r}. Layers: {names}"
                + (f". Did you mean {hint[0]!r}?" if hint else "")
            )
        return self.layers[key]

    def __iter__(self) -> Iterator[LayerStats]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> list[dict[str, Any]]:
        """One plain dict per layer."""
        return [rec.to_dict() for rec in self.layers]

    def plot(self, **kwargs: Any) -> Any:
        """Draw with :func:`multiviz.plot_layer_stats`; returns the Figure."""
        from multiviz.render.figures import plot_layer_stats

        return plot_layer_stats(self, **kwargs)

    def __repr__(self) -> str:
        head = ["layer", "shape", "mean", "std", "min", "p01", "p50", "p99", "max"]
        head += ["dead", "pos", "zero", "sat"]

        def pct(v: float) -> str:
            return "-" if np.isnan(v) else f"{v:.0%}"

        rows = [
            [
                r.name,
                "x".join(str(s) for s in r.shape),
                *(f"{v:.3g}" for v in (r.mean, r.std, r.min, r.p01, r.p50, r.p99, r.max)),
                *(
                    pct(v)
                    for v in (
                        r.dead_fraction,
                        r.positive_fraction,
                        r.zero_fraction,
                        r.saturated_fraction,
                    )
                ),
            ]
            for r in self.layers
        ]
        samples = max((r.samples for r in self.layers), default=0)
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
        lines = [f"LayerStatsReport({_plural(len(self), 'layer')}, {_plural(samples, 'input')})"]
        shown = [head, *rows]
        if len(shown) > 19:  # at most 20 lines
            shown = [*shown[:10], ["…"] + [""] * (len(head) - 1), *shown[-8:]]
        for row in shown:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        return "\n".join(lines)


class RunningLayerStats:
    """Streaming :func:`layer_stats` over many batches: one :class:`RunningStats` per layer.

    Args:
        eps: see :class:`RunningStats`.
        bounds: layer name -> bounds of its activation; an
            :class:`~multiviz.Activations` passed to :meth:`update` brings
            its own (from the model's layers).
        sketch_k, positions: see :class:`RunningStats`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> batches = [{"conv": rng.normal(size=(2, 3, 4, 5))} for _ in range(3)]
        >>> acc = RunningLayerStats()
        >>> for acts in batches:
        ...     _ = acc.update(acts)
        >>> acc.result()["conv"].samples
        6
    """

    def __init__(
        self,
        *,
        eps: float = 0.0,
        bounds: Mapping[str, Bounds] | None = None,
        sketch_k: int = 12,
        positions: int | None = None,
    ) -> None:
        self._kw = {"eps": eps, "sketch_k": sketch_k, "positions": positions}
        self.bounds = dict(bounds or {})
        self.layers: dict[str, RunningStats] = {}

    def update(self, activations: Mapping[str, np.ndarray]) -> RunningLayerStats:
        """Add one batch of every layer (in place; returns ``self``)."""
        known = {**getattr(activations, "bounds", {}), **self.bounds}
        for name, arr in activations.items():
            if name not in self.layers:
                self.layers[name] = RunningStats(bounds=known.get(name), **self._kw)
            self.layers[name].update(arr)
        return self

    def merge(self, other: RunningLayerStats) -> RunningLayerStats:
        """Fold another accumulator in (in place; returns ``self``)."""
        for name, stats in other.layers.items():
            if name in self.layers:
                self.layers[name].merge(stats)
            else:
                self.layers[name] = RunningStats.from_state(stats.to_state())
        return self

    def result(self) -> LayerStatsReport:
        """The :class:`LayerStatsReport` of everything seen, layers in first-seen order."""
        return LayerStatsReport([s.layer_stats(name) for name, s in self.layers.items()])


def layer_stats(
    activations: Mapping[str, np.ndarray],
    *,
    eps: float = 0.0,
    bounds: Mapping[str, Bounds] | None = None,
) -> LayerStatsReport:
    """One statistics record per layer: ranges, dead, positive, zero and saturated fractions.

    Args:
        activations: layer name -> batch-first array (an
            :class:`~multiviz.Activations`, which knows each layer's
            activation bounds, or any mapping of ``(N, C, H, W)`` /
            ``(N, C, L)`` / ``(N, F)`` arrays).
        eps: a value counts as zero when ``|v| <= eps``.
        bounds: layer name -> bounds of its activation, for layers the
            mapping does not know (see the module docstring).

    Returns:
        A :class:`LayerStatsReport` in the mapping's order, with exact
        percentiles (computed from the batch itself). To stream over a data
        set, use :class:`RunningLayerStats` or :func:`multiviz.scan`.

    Example:
        >>> acts = {"relu": np.maximum(np.arange(-8.0, 16.0).reshape(1, 3, 2, 4), 0)}
        >>> rec = layer_stats(acts)["relu"]
        >>> rec.shape, rec.dead_fraction, round(rec.zero_fraction, 3)
        ((3, 2, 4), 0.3333333333333333, 0.375)
    """
    known = {**getattr(activations, "bounds", {}), **dict(bounds or {})}
    records = []
    for name, arr in activations.items():
        running = RunningStats(eps=eps, bounds=known.get(name), quantiles=False).update(arr)
        rec = running.layer_stats(name)
        flat = np.asarray(arr).reshape(-1)
        finite = flat[np.isfinite(flat)]
        if finite.size:  # one batch: exact percentiles, cheaper than sketching every value
            p01, p50, p99 = (float(v) for v in np.percentile(finite, (1, 50, 99)))
        else:
            p01 = p50 = p99 = np.nan
        records.append(_with(rec, p01=p01, p50=p50, p99=p99, exact_percentiles=True))
    return LayerStatsReport(records)


def _with(rec: LayerStats, **changes: Any) -> LayerStats:
    from dataclasses import replace

    return replace(rec, **changes)
