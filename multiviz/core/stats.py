"""Running statistics of feature maps: per channel and per layer, streaming and mergeable.

:class:`RunningStats` (one layer, per channel) and :class:`RunningLayerStats`
(many layers) take one batch at a time in bounded memory, and two partial
results merge (Chan et al.'s parallel variance), so a data set can be reduced
batch by batch, or split over workers. The one-shot functions
:func:`channel_stats` and :func:`layer_stats` are the same accumulator fed once.

NaN and ±Inf are counted (``nonfinite_fraction``) and left out of mean, std,
min, max and percentiles, so one bad value does not turn every number to NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, overload

import numpy as np

from multiviz.core.layout import infer_layout
from multiviz.errors import InputShapeError, LayerNotFoundError, closest

__all__ = [
    "ChannelStats",
    "LayerStats",
    "LayerStatsReport",
    "RunningLayerStats",
    "RunningStats",
    "channel_stats",
    "layer_stats",
]

#: default size of the value sample a streaming accumulator keeps for percentiles
RESERVOIR = 100_000
_CHUNK = 1 << 20  # values per float64 temporary while reducing a batch
_SUMS = ("total", "n", "mean", "m2", "min", "max", "zeros", "sat")  # per-channel state


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics over the batch and spatial axes.

    Every array has one entry per channel (per feature for vectors).
    Fractions are of all values, NaN/Inf included; mean, std, min and max are
    over the finite values (NaN where a channel has none).

    Attributes:
        count: number of values per channel (NaN/Inf included).
        mean: mean of the finite values.
        std: population standard deviation (``ddof=0``) of the finite values.
        l2: root of the sum of squares of the finite values.
        min: smallest finite value.
        max: largest finite value.
        zero_fraction: fraction with ``|v| <= eps`` (dead units after a ReLU).
        saturated_fraction: fraction ``>= saturation``, or — without a
            threshold — equal to the layer's maximum (0 when the layer is constant).
        nonfinite_fraction: fraction NaN or ±Inf.
    """

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    l2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    zero_fraction: np.ndarray
    saturated_fraction: np.ndarray
    nonfinite_fraction: np.ndarray

    @property
    def dead(self) -> np.ndarray:
        """True for channels that are zero for every input and position."""
        return (self.count > 0) & (self.zero_fraction == 1.0)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, e.g. for JSON."""
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}

    def __len__(self) -> int:
        return int(self.count.shape[0])


class RunningStats:
    """Streaming per-channel statistics of one layer, mergeable across workers.

    Feed batches with :meth:`update`; combine partial results with
    :meth:`merge` (Chan's parallel mean/variance, exact counts). Memory is
    bounded: per-channel sums plus a sample of at most ``reservoir`` values
    for percentiles (exact while fewer values were seen; ``reservoir=None``
    keeps every value).

    Args:
        eps: a value counts as zero when ``|v| <= eps``.
        saturation: a value counts as saturated when ``>= saturation``; with
            ``None``, when it equals the layer's maximum (ReLU6, sigmoid and
            clipping layers pile values there).
        reservoir: how many values to keep for percentiles (``None``: all).
        seed: seed of the reservoir's sampling.

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
        saturation: float | None = None,
        reservoir: int | None = RESERVOIR,
        seed: int = 0,
    ) -> None:
        if reservoir is not None and reservoir < 0:
            raise ValueError(
                f"`reservoir` must be an int >= 0 (0: no percentiles) or None. Received: {reservoir!r}"
            )
        self.eps = float(eps)
        self.saturation = None if saturation is None else float(saturation)
        self.reservoir = reservoir
        self._rng = np.random.default_rng(seed)
        self.sample_shape: tuple[int, ...] | None = None  # one sample, e.g. (C, H, W)
        self.samples = 0
        self._acc: dict[str, np.ndarray] = {}
        self._values = np.zeros(0, np.float32)  # reservoir of finite values
        self._seen = 0  # finite values the reservoir stands for

    # -- feeding

    def update(self, batch: np.ndarray, *, layout: str | None = None) -> RunningStats:
        """Add one batch (in place; returns ``self`` for chaining).

        Args:
            batch: batch-first canonical layout — ``(N, C, H, W)``,
                ``(N, C, L)`` or ``(N, F)`` (what :func:`multiviz.capture`
                returns); every batch must have the same per-sample shape.
            layout: ``"NCHW"``, ``"NCL"`` or ``"NF"``; by default chosen
                from the rank (4, 3, 2).

        Raises:
            InputShapeError: not a batch, or a shape different from earlier batches.
        """
        x = np.asarray(batch)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"RunningStats needs a real-valued array. Received dtype {x.dtype}.")
        if layout is None:
            layout = {4: "NCHW", 3: "NCL", 2: "NF"}.get(x.ndim)
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
        other = RunningStats(eps=self.eps, saturation=self.saturation, reservoir=self.reservoir)
        other._rng = self._rng
        other._ingest(x)
        return self.merge(other)

    def _ingest(self, x: np.ndarray) -> None:
        """Fill an empty accumulator from one batch: ``x`` is ``(N, C, ...)`` or ``(N, F)``."""
        self.sample_shape = tuple(x.shape[1:])
        self.samples = x.shape[0]
        n_ch = x.shape[1]
        # (C, values): channel first, batch and spatial axes flattened
        v = np.moveaxis(x, 1, 0).reshape(n_ch, -1)
        # float64 temporaries of a few channels at a time: memory stays bounded
        step = max(1, _CHUNK // max(v.shape[1], 1))
        parts = [self._channel_sums(v[c : c + step]) for c in range(0, n_ch, step)]
        self._acc = (
            {k: np.concatenate([p[k] for p in parts]) for k in _SUMS}
            if parts
            else {k: np.zeros(0) for k in _SUMS}
        )
        n_finite = int(self._acc["n"].sum())
        self._seen = n_finite
        if self.reservoir == 0:  # no percentiles wanted
            self._values = np.zeros(0, np.float32)
            return
        flat = x.reshape(-1)
        if n_finite != flat.size:
            flat = flat[np.isfinite(flat)]
        if self.reservoir is not None and flat.size > self.reservoir:
            flat = flat[self._rng.choice(flat.size, self.reservoir, replace=False)]
        self._values = flat.astype(np.float32)

    def _channel_sums(self, v: np.ndarray) -> dict[str, np.ndarray]:
        """Counts, mean, M2, min, max, zeros, saturated of each row of ``v`` (C, values)."""
        v = v.astype(np.float64)
        n_ch = v.shape[0]
        with np.errstate(all="ignore"):
            finite = np.isfinite(v)
            all_finite = bool(finite.all())
            v0 = v if all_finite else np.where(finite, v, 0.0)
            n = finite.sum(axis=1).astype(np.float64)
            mean = np.divide(v0.sum(axis=1), n, out=np.zeros(n_ch), where=n > 0)
            dev = v0 - mean[:, None]
            if not all_finite:
                dev[~finite] = 0.0
            vmin = (v if all_finite else np.where(finite, v, np.inf)).min(axis=1, initial=np.inf)
            vmax = (v if all_finite else np.where(finite, v, -np.inf)).max(axis=1, initial=-np.inf)
            sat = (
                (v >= self.saturation).sum(axis=1)
                if self.saturation is not None
                else (v == vmax[:, None]).sum(axis=1)  # values at this channel's max
            )
            return {
                "total": np.full(n_ch, float(v.shape[1])),
                "n": n,
                "mean": mean,
                "m2": np.square(dev).sum(axis=1),
                "min": vmin,
                "max": vmax,
                "zeros": (np.abs(v) <= self.eps).sum(axis=1).astype(np.float64),
                "sat": sat.astype(np.float64),
            }

    def merge(self, other: RunningStats) -> RunningStats:
        """Fold ``other``'s data into this accumulator (in place; returns ``self``).

        The result equals feeding both data sets to one accumulator: counts,
        sums, min, max and Chan's combined variance are exact; the percentile
        sample is exact until it exceeds ``reservoir`` values, then a uniform
        sample of everything seen.

        Raises:
            InputShapeError: the two saw arrays of different per-sample shapes.
            ValueError: ``eps`` or ``saturation`` differ.
        """
        if not other._acc:
            return self
        if (self.eps, self.saturation) != (other.eps, other.saturation):
            raise ValueError(
                "Cannot merge RunningStats with different settings: "
                f"eps={self.eps}/{other.eps}, saturation={self.saturation}/{other.saturation}."
            )
        if not self._acc:
            self.sample_shape, self.samples = other.sample_shape, other.samples
            self._acc = {k: v.copy() for k, v in other._acc.items()}
            self._values, self._seen = other._values.copy(), other._seen
            self._shrink_values()
            return self
        if other.sample_shape != self.sample_shape:
            raise InputShapeError(
                f"Every batch must have the same per-sample shape. Had {self.sample_shape}, "
                f"received {other.sample_shape}."
            )
        a, b = self._acc, other._acc
        n = a["n"] + b["n"]
        with np.errstate(all="ignore"):
            delta = b["mean"] - a["mean"]
            wb = np.divide(b["n"], n, out=np.zeros_like(n), where=n > 0)
            mean = a["mean"] + delta * wb
            m2 = a["m2"] + b["m2"] + np.square(delta) * a["n"] * wb
        vmax = np.maximum(a["max"], b["max"])
        if self.saturation is None:  # count of values at the (new) channel max
            sat = np.where(a["max"] == vmax, a["sat"], 0.0) + np.where(
                b["max"] == vmax, b["sat"], 0.0
            )
        else:
            sat = a["sat"] + b["sat"]
        self._acc = {
            "total": a["total"] + b["total"],
            "n": n,
            "mean": mean,
            "m2": m2,
            "min": np.minimum(a["min"], b["min"]),
            "max": vmax,
            "zeros": a["zeros"] + b["zeros"],
            "sat": sat,
        }
        self.samples += other.samples
        self._merge_values(other)
        return self

    def _merge_values(self, other: RunningStats) -> None:
        seen = self._seen + other._seen
        if self.reservoir is None or self._values.size + other._values.size <= self.reservoir:
            self._values = np.concatenate([self._values, other._values])
        else:  # each side contributes in proportion to how many values it stands for
            k = self.reservoir
            k_a = min(round(k * self._seen / seen), self._values.size)
            k_b = min(k - k_a, other._values.size)
            self._values = np.concatenate(
                [
                    self._rng.choice(self._values, k_a, replace=False),
                    self._rng.choice(other._values, k_b, replace=False),
                ]
            )
        self._seen = seen

    def _shrink_values(self) -> None:
        if self.reservoir is not None and self._values.size > self.reservoir:
            self._values = self._rng.choice(self._values, self.reservoir, replace=False)

    # -- results

    @property
    def exact_percentiles(self) -> bool:
        """True while the percentile sample holds every finite value seen."""
        return self._values.size == self._seen

    def channel_stats(self) -> ChannelStats:
        """Per-channel statistics of everything seen so far.

        Raises:
            ValueError: nothing was fed yet.
        """
        acc = self._require()
        total, n = acc["total"], acc["n"]
        has = n > 0
        with np.errstate(all="ignore"):
            var = np.divide(acc["m2"], n, out=np.zeros_like(n), where=has)
            sumsq = n * (var + np.square(acc["mean"]))
            nan = np.full_like(n, np.nan)

            def frac(c: np.ndarray) -> np.ndarray:
                return np.divide(c, total, out=np.zeros_like(c), where=total > 0)

            return ChannelStats(
                count=total.astype(np.int64),
                mean=np.where(has, acc["mean"], nan),
                std=np.where(has, np.sqrt(var), nan),
                l2=np.sqrt(sumsq),
                min=np.where(has, acc["min"], nan),
                max=np.where(has, acc["max"], nan),
                zero_fraction=frac(acc["zeros"]),
                saturated_fraction=frac(self._saturated(acc)),
                nonfinite_fraction=frac(total - n),
            )

    def _saturated(self, acc: dict[str, np.ndarray]) -> np.ndarray:
        if self.saturation is not None:
            return acc["sat"]
        layer_max = acc["max"].max(initial=-np.inf)
        layer_min = acc["min"].min(initial=np.inf)
        if not layer_min < layer_max:  # a constant layer saturates nothing: it is dead
            return np.zeros_like(acc["sat"])
        return np.where(acc["max"] == layer_max, acc["sat"], 0.0)

    def layer_stats(self, name: str = "") -> LayerStats:
        """One record for the whole layer (see :class:`LayerStats`)."""
        acc = self._require()
        cs = self.channel_stats()
        total = float(acc["total"].sum())
        n = acc["n"]
        count = float(n.sum())
        with np.errstate(all="ignore"):
            mean = float((acc["mean"] * n).sum() / count) if count else np.nan
            m2 = float((acc["m2"] + n * np.square(acc["mean"] - mean)).sum()) if count else np.nan
        if self._values.size:
            p01, p50, p99 = (float(p) for p in np.percentile(self._values, (1, 50, 99)))
        else:
            p01 = p50 = p99 = np.nan
        return LayerStats(
            name=name,
            shape=tuple(self.sample_shape or ()),
            samples=self.samples,
            mean=mean,
            std=float(np.sqrt(m2 / count)) if count else np.nan,
            min=float(acc["min"].min()) if count else np.nan,
            max=float(acc["max"].max()) if count else np.nan,
            p01=p01,
            p50=p50,
            p99=p99,
            dead_fraction=float(cs.dead.mean()) if len(cs) else 0.0,
            zero_fraction=float(acc["zeros"].sum() / total) if total else 0.0,
            saturated_fraction=float(self._saturated(acc).sum() / total) if total else 0.0,
            nonfinite_fraction=float((total - count) / total) if total else 0.0,
            exact_percentiles=self.exact_percentiles,
        )

    def _require(self) -> dict[str, np.ndarray]:
        if not self._acc:
            raise ValueError("RunningStats has seen no data yet: call update(batch) first.")
        return self._acc


def channel_stats(
    maps: np.ndarray,
    *,
    eps: float = 0.0,
    saturation: float | None = None,
    layout: str | None = None,
) -> ChannelStats:
    """Per-channel mean, std, min, max, zero and saturated fractions.

    Args:
        maps: one sample ``(C, H, W)`` / ``(C, L)`` / ``(F,)``, or a batch
            ``(N, C, H, W)`` (``layout="NCL"`` / ``"NF"`` for the others);
            statistics run over the batch and spatial axes.
        eps: a value counts as zero when ``|v| <= eps`` (0: exact zeros).
        saturation: threshold for "saturated"; ``None``: at the layer's max.
        layout: see :func:`multiviz.normalize`.

    Returns:
        A :class:`ChannelStats` (one entry per channel).

    Example:
        >>> x = np.array([[[0.0, 2.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> s = channel_stats(x)
        >>> s.mean.tolist(), s.zero_fraction.tolist(), s.dead.tolist()
        ([1.5, 0.0], [0.5, 1.0], [False, True])
    """
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    if not lay.startswith("N"):
        arr, lay = arr[None], "N" + lay
    stats = RunningStats(eps=eps, saturation=saturation, reservoir=0)
    return stats.update(arr, layout=lay).channel_stats()


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's output over a batch or a data set.

    Attributes:
        name: the layer's name.
        shape: one sample's shape, e.g. ``(C, H, W)``.
        samples: number of samples seen.
        mean, std, min, max: over all finite values.
        p01, p50, p99: 1st, 50th and 99th percentile of the finite values
            (from a sample when streaming over more than the reservoir holds).
        dead_fraction: fraction of channels that are zero for every input.
        zero_fraction: fraction of values that are zero.
        saturated_fraction: fraction of values at the layer's max (or over
            the threshold given).
        nonfinite_fraction: fraction of values that are NaN or ±Inf.
        exact_percentiles: False when the percentiles come from a sample.
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

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (shape as a list), e.g. for JSON."""
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
        head = [
            "layer",
            "shape",
            "mean",
            "std",
            "min",
            "p01",
            "p50",
            "p99",
            "max",
            "dead",
            "zero",
            "sat",
        ]
        rows = [
            [
                r.name,
                "x".join(str(s) for s in r.shape),
                *(f"{v:.3g}" for v in (r.mean, r.std, r.min, r.p01, r.p50, r.p99, r.max)),
                *(f"{v:.0%}" for v in (r.dead_fraction, r.zero_fraction, r.saturated_fraction)),
            ]
            for r in self.layers
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
        lines = [f"LayerStatsReport({len(self)} layers)"]
        for row in [head, *rows]:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells))
        return "\n".join(lines)


class RunningLayerStats:
    """Streaming :func:`layer_stats` over many batches: one :class:`RunningStats` per layer.

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
        saturation: float | None = None,
        reservoir: int | None = RESERVOIR,
        seed: int = 0,
    ) -> None:
        self._kw = {"eps": eps, "saturation": saturation, "reservoir": reservoir, "seed": seed}
        self.layers: dict[str, RunningStats] = {}

    def update(self, activations: Mapping[str, np.ndarray]) -> RunningLayerStats:
        """Add one batch of every layer (in place; returns ``self``)."""
        for name, arr in activations.items():
            self.layers.setdefault(name, RunningStats(**self._kw)).update(arr)
        return self

    def merge(self, other: RunningLayerStats) -> RunningLayerStats:
        """Fold another accumulator in (in place; returns ``self``)."""
        for name, stats in other.layers.items():
            self.layers.setdefault(name, RunningStats(**self._kw)).merge(stats)
        return self

    def result(self) -> LayerStatsReport:
        """The :class:`LayerStatsReport` of everything seen, layers in first-seen order."""
        return LayerStatsReport([s.layer_stats(name) for name, s in self.layers.items()])


def layer_stats(
    activations: Mapping[str, np.ndarray],
    *,
    eps: float = 0.0,
    saturation: float | None = None,
) -> LayerStatsReport:
    """One statistics record per layer: ranges, dead, zero and saturated fractions.

    Args:
        activations: layer name -> batch-first array (an
            :class:`~multiviz.Activations`, or any mapping of
            ``(N, C, H, W)`` / ``(N, C, L)`` / ``(N, F)`` arrays).
        eps: a value counts as zero when ``|v| <= eps``.
        saturation: threshold for "saturated"; ``None``: at the layer's max.

    Returns:
        A :class:`LayerStatsReport` in the mapping's order (exact percentiles).
        To stream over a data set, use :class:`RunningLayerStats`.

    Example:
        >>> acts = {"relu": np.maximum(np.arange(-8.0, 16.0).reshape(1, 3, 2, 4), 0)}
        >>> rec = layer_stats(acts)["relu"]
        >>> rec.shape, rec.dead_fraction, round(rec.zero_fraction, 3)
        ((3, 2, 4), 0.3333333333333333, 0.375)
    """
    return (
        RunningLayerStats(eps=eps, saturation=saturation, reservoir=None)
        .update(activations)
        .result()
    )
