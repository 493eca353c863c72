"""Statistics of feature maps, per channel and per layer: streaming, mergeable, bounded memory.

Two levels live here:

* **reducers** — small accumulators that see a layer's activations a batch
  at a time as ``(N, C, P)`` values (samples, channels, positions) and keep
  a fixed-size state per channel: :class:`Moments` (count, mean, variance by
  Chan, Golub & LeVeque's parallel algorithm, min, max), :class:`Counts`
  (values, non-finite, positive, zero, saturated), :class:`QuantileSketch`
  (one Apache DataSketches REQ sketch per channel) and :class:`TopK` (the
  exact top-k inputs by the channel's maximum, with its position). Each has
  ``update``, ``merge`` (in any order and split: the result of one pass),
  ``finalize`` and ``to_state`` / ``from_state`` (plain arrays, for
  ``np.savez`` with ``allow_pickle=False`` and for Ray rows);
* **records** — :class:`RunningStats` (one layer) and
  :class:`RunningLayerStats` (many) combine them into :class:`ChannelStats`
  and :class:`LayerStats`; :func:`channel_stats` and :func:`layer_stats` are
  the same accumulators fed once, and :func:`multiviz.scan` runs them over
  a data set.

Definitions, the same everywhere multiviz reports them:

* **positive fraction** — the fraction of values ``> 0``;
* **dead** — a channel never ``> 0`` over every input given (every position
  of every sample; NaN and ±Inf left out). A statement about the inputs
  seen: their count is reported with it (``samples``);
* **saturated fraction** — the fraction of values within ``1e-3 * max(1,
  |b|)`` of a bound ``b`` of a bounded activation: ReLU6 at 6, sigmoid and
  hard-sigmoid at 0 and 1, tanh at -1 and 1 (backends read the bounds off
  the layer, :attr:`multiviz.LayerInfo.bounds`, also where Keras fuses the
  activation into a layer, ``Conv2D(activation="relu6")``). NaN — not
  reported — for an unbounded layer;
* **zero fraction** — the fraction of values with ``|v| <= eps``.

Fractions are of all values, NaN/Inf included; mean, std, min, max and
quantiles are of the finite values. NaN and ±Inf are counted
(``nonfinite_fraction``) and left out of everything else.

Exactness: counts, min, max and top-k are exact whatever the split;
moments agree with a one-pass float64 computation to rounding; sketch
quantiles are randomized (DataSketches flips coins when it compacts) and
lie within the sketch's documented rank bound
(:meth:`QuantileSketch.rank_bounds`), exact while a sketch holds every value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from multiviz.core.layout import infer_layout
from multiviz.core.params import names_parameters
from multiviz.core.views import html_table, number, plural
from multiviz.errors import InputShapeError, LayerNotFoundError, closest

__all__ = [
    "SATURATION_TOLERANCE",
    "ChannelStats",
    "Counts",
    "LayerStats",
    "LayerStatsReport",
    "Moments",
    "QuantileSketch",
    "RunningLayerStats",
    "RunningStats",
    "TopK",
    "as_channels",
    "channel_stats",
    "layer_stats",
    "pack_bytes",
    "saturation_tolerance",
    "unpack_bytes",
]

#: A value is saturated when it lies within this fraction of a bound's scale of the bound.
SATURATION_TOLERANCE = 1e-3
#: Values per float64 temporary while reducing a batch (8 MiB).
_CHUNK = 1 << 20
#: Sort key of an empty top-k slot: after every real input index.
_NO_INDEX = np.iinfo(np.int64).max


def saturation_tolerance(bound: float) -> float:
    """How close to ``bound`` a value must be to count as saturated.

    ``1e-3`` relative to the bound's scale, ``max(1, |bound|)``: ReLU6
    saturates within 0.006 of 6; sigmoid within 0.001 of 0 and of 1; tanh
    within 0.001 of -1 and of 1.

    Example:
        >>> saturation_tolerance(6.0), saturation_tolerance(0.0)
        (0.006, 0.001)
    """
    return SATURATION_TOLERANCE * max(1.0, abs(float(bound)))


def as_channels(batch: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """A batch in the canonical layout as ``(N, C, P)`` and the map's shape.

    ``(N, C, H, W)`` -> ``(N, C, H*W)``, map shape ``(H, W)``;
    ``(N, C, L)`` -> ``(N, C, L)``, ``(L,)``; ``(N, F)`` -> ``(N, F, 1)``, ``()``.
    A view where NumPy can give one.

    Raises:
        ValueError: the array is not 2-, 3- or 4-dimensional.

    Example:
        >>> v, shape = as_channels(np.zeros((2, 3, 4, 5)))
        >>> v.shape, shape
        ((2, 3, 20), (4, 5))
    """
    x = np.asarray(batch)
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"A batch must be (N, C, H, W), (N, C, L) or (N, F). Received shape {x.shape}."
        )
    n, c = x.shape[:2]
    spatial = tuple(int(s) for s in x.shape[2:])
    return x.reshape(n, c, -1), spatial


def _channel_chunks(values: np.ndarray) -> list[slice]:
    """Slices of the channel axis whose float64 copies stay under :data:`_CHUNK` values."""
    n, c, p = values.shape
    step = max(1, _CHUNK // max(n * p, 1))
    return [slice(i, min(i + step, c)) for i in range(0, c, step)]


def _check_values(values: np.ndarray, channels: int, who: str) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 3 or v.shape[1] != channels:
        raise ValueError(
            f"{who}.update takes (N, C, P) values with C={channels}. Received shape {v.shape}."
        )
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{who}.update needs real values. Received dtype {v.dtype}.")
    return v


def _all_finite(values: np.ndarray) -> bool:
    """True when no value is NaN or ±Inf: one float sum, the exact check only if it is not finite.

    A sum of finite values is finite unless it overflows, and any NaN or Inf
    makes the sum NaN or Inf; so a finite sum proves every value finite
    without a boolean copy of the batch.
    """
    if values.dtype.kind != "f" or values.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(values.sum()):
            return True
    return bool(np.isfinite(values).all())


def _narrows(dtype: np.dtype) -> bool:
    """True for floats wider than float32 (their cast to float32 may overflow to Inf)."""
    return dtype.kind == "f" and dtype.itemsize > 4


def _check_mergeable(a: Any, b: Any, fields: Sequence[str]) -> None:
    if type(a) is not type(b):
        raise TypeError(f"Cannot merge a {type(b).__name__} into a {type(a).__name__}.")
    for f in fields:
        va, vb = getattr(a, f), getattr(b, f)
        if va != vb:
            raise ValueError(
                f"Cannot merge {type(a).__name__}s with different {f}: {va!r} and {vb!r}."
            )


def pack_bytes(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Many byte strings as one uint8 array and int64 offsets (``len + 1``), for ``np.savez``.

    Example:
        >>> data, offsets = pack_bytes([b"ab", b"", b"c"])
        >>> unpack_bytes(data, offsets)
        [b'ab', b'', b'c']
    """
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = np.frombuffer(b"".join(blobs), np.uint8).copy()
    return data, offsets


def unpack_bytes(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The inverse of :func:`pack_bytes`."""
    raw = np.asarray(data, np.uint8).tobytes()
    o = np.asarray(offsets, np.int64)
    return [raw[o[i] : o[i + 1]] for i in range(len(o) - 1)]


# --------------------------------------------------------------------------- reducers: moments


class Moments:
    """Per-channel count, mean, variance, min and max of the finite values.

    Batches are reduced in float64, two passes each (mean, then squared
    deviations), and combined with Chan, Golub & LeVeque's parallel update
    ("Updating formulae and a pairwise algorithm for computing sample
    variances", 1979): for parts ``a`` and ``b``, ``n = na + nb``,
    ``δ = mean_b - mean_a``, ``mean = mean_a + δ nb / n``,
    ``M2 = M2a + M2b + δ² na nb / n``.

    Args:
        channels: number of channels C.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(10, 3, 7))
        >>> m = Moments(3).update(x[:4]).merge(Moments(3).update(x[4:])).finalize()
        >>> bool(np.allclose(m["std"], x.transpose(1, 0, 2).reshape(3, -1).std(axis=1)))
        True
    """

    def __init__(self, channels: int) -> None:
        self.channels = int(channels)
        self.count = np.zeros(self.channels, np.int64)
        self.mean = np.zeros(self.channels)
        self.m2 = np.zeros(self.channels)
        self.min = np.full(self.channels, np.inf)
        self.max = np.full(self.channels, -np.inf)

    def update(self, values: np.ndarray, *, finite: bool | None = None) -> Moments:
        """Fold in one ``(N, C, P)`` batch; NaN and ±Inf are left out.

        ``finite=True`` promises every value is finite (skips the check).
        """
        v = _check_values(values, self.channels, "Moments")
        part = Moments(self.channels)
        for sl in _channel_chunks(v):
            x = v[:, sl]  # floats as given: no float64 copy of the whole chunk
            if x.dtype.kind != "f":
                x = x.astype(np.float64)
            if finite if finite is not None else _all_finite(x):
                n = np.full(x.shape[1], x.shape[0] * x.shape[2], np.int64)
                if x.size:  # float64 accumulators; the deviations below are float64
                    mean = x.sum(axis=(0, 2), dtype=np.float64) / (x.shape[0] * x.shape[2])
                else:
                    mean = np.zeros(x.shape[1])
                dev = np.subtract(x, mean[None, :, None], dtype=np.float64)
                lo = x.min(axis=(0, 2), initial=np.inf).astype(np.float64)
                hi = x.max(axis=(0, 2), initial=-np.inf).astype(np.float64)
            else:
                x = x.astype(np.float64)
                ok = np.isfinite(x)
                n = ok.sum(axis=(0, 2))
                total = np.where(ok, x, 0.0).sum(axis=(0, 2))
                mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
                dev = np.where(ok, x - mean[None, :, None], 0.0)
                lo = np.where(ok, x, np.inf).min(axis=(0, 2), initial=np.inf)
                hi = np.where(ok, x, -np.inf).max(axis=(0, 2), initial=-np.inf)
            part.count[sl], part.mean[sl] = n, mean
            part.m2[sl] = np.einsum("ncp,ncp->c", dev, dev)
            part.min[sl], part.max[sl] = lo, hi
        return self.merge(part)

    def merge(self, other: Moments) -> Moments:
        """Fold in another partial result (Chan et al.'s parallel update)."""
        _check_mergeable(self, other, ["channels"])
        na, nb = self.count.astype(np.float64), other.count.astype(np.float64)
        n = na + nb
        delta = other.mean - self.mean
        wb = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * wb
        self.m2 = self.m2 + other.m2 + np.square(delta) * na * wb
        self.count = self.count + other.count
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        return self

    def finalize(self) -> dict[str, np.ndarray]:
        """``count`` (int64), ``mean``, ``std`` (population, ``ddof=0``), ``l2``
        (root of the sum of squares), ``min``, ``max``: float64, NaN where a
        channel has no finite value."""
        has = self.count > 0
        n = self.count.astype(np.float64)
        var = np.divide(self.m2, n, out=np.zeros_like(n), where=has)
        nan = np.full(self.channels, np.nan)
        return {
            "count": self.count.copy(),
            "mean": np.where(has, self.mean, nan),
            "std": np.where(has, np.sqrt(var), nan),
            "l2": np.sqrt(self.m2 + n * np.square(self.mean)),
            "min": np.where(has, self.min, nan),
            "max": np.where(has, self.max, nan),
        }

    def to_state(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (see the module docstring)."""
        return {
            "count": self.count.copy(),
            "mean": self.mean.copy(),
            "m2": self.m2.copy(),
            "min": self.min.copy(),
            "max": self.max.copy(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Moments:
        """Rebuild from :meth:`to_state`'s arrays."""
        out = cls(len(state["count"]))
        out.count = np.asarray(state["count"], np.int64).copy()
        for key in ("mean", "m2", "min", "max"):
            setattr(out, key, np.asarray(state[key], np.float64).copy())
        return out


# --------------------------------------------------------------------------- counts


class Counts:
    """Per-channel counts: values, non-finite, positive, zero and saturated.

    Args:
        channels: number of channels C.
        bounds: the values a bounded activation saturates at — ReLU6 ``(6,)``,
            sigmoid and hard-sigmoid ``(0, 1)``, tanh ``(-1, 1)`` — or
            ``None`` for an unbounded layer (saturation is then not counted).
            A value is saturated when it lies within
            :func:`saturation_tolerance` of a bound.
        eps: a value counts as zero when ``|v| <= eps``.

    Example:
        >>> x = np.array([[[0.0, 5.999, 6.0, np.nan], [1.0, 2.0, 0.0, 0.0]]])
        >>> c = Counts(2, bounds=(6.0,)).update(x).finalize()
        >>> c["total"].tolist(), c["positive"].tolist(), c["saturated"].tolist()
        ([4, 4], [2, 2], [2, 0])
    """

    def __init__(
        self, channels: int, bounds: Sequence[float] | None = None, eps: float = 0.0
    ) -> None:
        self.channels = int(channels)
        self.bounds = None if bounds is None else tuple(float(b) for b in bounds)
        self.eps = float(eps)
        zeros = np.zeros(self.channels, np.int64)
        self.total, self.nonfinite, self.positive = zeros.copy(), zeros.copy(), zeros.copy()
        self.zero, self.saturated = zeros.copy(), zeros.copy()

    def update(self, values: np.ndarray, *, finite: bool | None = None) -> Counts:
        """Fold in one ``(N, C, P)`` batch (``finite=True``: every value is finite)."""
        v = _check_values(values, self.channels, "Counts")
        n, _, p = v.shape
        self.total += n * p
        self.positive += (v > 0).sum(axis=(0, 2))  # NaN > 0 is False; +Inf is left out below
        zero = v == 0 if self.eps == 0 else np.abs(v) <= self.eps  # |v| <= 0 iff v == 0
        self.zero += zero.sum(axis=(0, 2))
        if not (finite if finite is not None else _all_finite(v)):
            bad = ~np.isfinite(v)
            self.nonfinite += bad.sum(axis=(0, 2))
            self.positive -= (v == np.inf).sum(axis=(0, 2))
        for b in self.bounds or ():
            self.saturated += (np.abs(v - b) <= saturation_tolerance(b)).sum(axis=(0, 2))
        return self

    def merge(self, other: Counts) -> Counts:
        """Fold in another partial result (sums)."""
        _check_mergeable(self, other, ["channels", "bounds", "eps"])
        for key in ("total", "nonfinite", "positive", "zero", "saturated"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self

    def finalize(self) -> dict[str, np.ndarray]:
        """The int64 counts ``total``, ``nonfinite``, ``positive``, ``zero``, ``saturated``."""
        return {k: v.copy() for k, v in self.to_state().items() if k in _COUNT_KEYS}

    def to_state(self) -> dict[str, np.ndarray]:
        """The state as plain arrays; ``bounds`` is empty for an unbounded layer."""
        return {
            **{k: getattr(self, k).copy() for k in _COUNT_KEYS},
            "bounds": np.asarray(self.bounds or (), np.float64),
            "bounded": np.asarray(self.bounds is not None),
            "eps": np.asarray(self.eps),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Counts:
        """Rebuild from :meth:`to_state`'s arrays."""
        bounds = tuple(np.asarray(state["bounds"]).tolist()) if bool(state["bounded"]) else None
        out = cls(len(state["total"]), bounds, float(state["eps"]))
        for key in _COUNT_KEYS:
            setattr(out, key, np.asarray(state[key], np.int64).copy())
        return out


_COUNT_KEYS = ("total", "nonfinite", "positive", "zero", "saturated")


# --------------------------------------------------------------------------- quantiles


def _datasketches() -> Any:
    """Apache DataSketches, imported on first use (``import multiviz`` stays light)."""
    try:
        import datasketches
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError(
            "Streaming quantiles need Apache DataSketches: pip install datasketches"
        ) from err
    return datasketches


class QuantileSketch:
    """Per-channel streaming quantiles: one REQ sketch per channel (Apache DataSketches).

    REQ (Cormode, Karnin, Liberty, Thaler and Veselý, "Relative Error
    Streaming Quantiles", PODS 2021) in high-rank-accuracy mode: the rank
    error at normalized rank ``r`` is proportional to ``1 - r``, so the top
    tail — the 99.5th percentile Network Dissection thresholds at — is the
    most accurate part. Below about ``k * 3`` values per channel a sketch is
    exact. :meth:`rank_bounds` gives the sketch's own error bound.

    Args:
        channels: number of channels C.
        k: the sketch's size/accuracy parameter (even, 4 to 1024; DataSketches'
            default is 12). Memory per channel grows about as ``k log(n)``.
        positions: at most this many positions per map go into the sketch
            (an evenly spaced subset, the same for every sample); ``None``
            keeps all. Early layers have large maps and dominate a scan's
            cost; sampling positions adds a sampling error of about
            ``sqrt(r (1 - r) / n_sampled)`` in rank on top of the sketch's.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(5, 2, 9)).astype(np.float32)
        >>> s = QuantileSketch(2).update(x)       # 45 values a channel: still exact
        >>> want = np.quantile(x.transpose(1, 0, 2).reshape(2, -1), 0.9, axis=1, method="inverted_cdf")
        >>> bool(np.array_equal(s.quantile(0.9), want))
        True
    """

    def __init__(self, channels: int, k: int = 12, positions: int | None = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 4 <= k <= 1024:
            raise ValueError(f"`k` must be an even int in [4, 1024]. Received: k={k!r}")
        if positions is not None and (isinstance(positions, bool) or positions < 1):
            raise ValueError(f"`positions` must be an int >= 1 or None. Received: {positions!r}")
        self.channels = int(channels)
        self.k = int(k)
        self.positions = None if positions is None else int(positions)
        ds = _datasketches()
        self.sketches = [ds.req_floats_sketch(self.k, True) for _ in range(self.channels)]

    def update(self, values: np.ndarray, *, finite: bool | None = None) -> QuantileSketch:
        """Fold in one ``(N, C, P)`` batch; NaN and ±Inf are left out.

        ``finite=True`` promises every value is finite (skips the check).
        """
        v = _check_values(values, self.channels, "QuantileSketch")
        if self.positions is not None and v.shape[2] > self.positions:
            keep = np.linspace(0, v.shape[2] - 1, self.positions).round().astype(np.intp)
            v = v[:, :, np.unique(keep)]
        # channel-major float32, contiguous: one C++ call per channel
        with np.errstate(over="ignore"):  # beyond float32: Inf, left out below
            per_channel = np.ascontiguousarray(np.moveaxis(v, 1, 0), dtype=np.float32)
        per_channel = per_channel.reshape(self.channels, -1)
        if finite is None or _narrows(v.dtype):  # float64 beyond float32's range is Inf here
            finite = _all_finite(per_channel)
        for sketch, row in zip(self.sketches, per_channel, strict=True):
            sketch.update(row if finite else row[np.isfinite(row)])
        return self

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Fold in another partial result (each channel's sketches merged)."""
        _check_mergeable(self, other, ["channels", "k", "positions"])
        for mine, theirs in zip(self.sketches, other.sketches, strict=True):
            mine.merge(theirs)
        return self

    @property
    def n(self) -> np.ndarray:
        """Values each channel's sketch has seen, int64 (C,)."""
        return np.array([s.n for s in self.sketches], np.int64)

    @property
    def exact(self) -> bool:
        """True while every sketch still holds every value it saw (quantiles are exact)."""
        return not any(s.is_estimation_mode() for s in self.sketches)

    def quantile(self, q: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """The ``q``-quantile of each channel's finite values.

        The smallest value whose normalized rank (fraction of values ``<=`` it)
        is at least ``q`` — NumPy's ``method="inverted_cdf"`` — within the
        sketch's rank error.

        Args:
            q: one rank in ``[0, 1]`` or a sequence of them.

        Returns:
            float64 ``(C,)`` for a scalar ``q``, ``(len(q), C)`` otherwise;
            NaN for a channel with no finite value.

        Raises:
            ValueError: a rank outside ``[0, 1]`` or not finite.
        """
        ranks = np.asarray(q, np.float64)
        if not np.all(np.isfinite(ranks)) or np.any((ranks < 0) | (ranks > 1)):
            raise ValueError(f"`q` must be in [0, 1]. Received: q={q!r}")
        flat = ranks.reshape(-1)
        out = np.full((flat.size, self.channels), np.nan)
        for c, s in enumerate(self.sketches):
            if not s.is_empty():
                out[:, c] = s.get_quantiles(flat.tolist(), inclusive=True)
        return out[0] if ranks.ndim == 0 else out

    def rank_bounds(self, q: float, num_std_dev: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The sketch's documented bounds on the true rank of :meth:`quantile` (``q``).

        DataSketches' ``get_rank_lower_bound`` / ``get_rank_upper_bound`` at
        ``num_std_dev`` standard deviations (1, 2 or 3): with probability
        about 68%, 95% or 99.7% the true normalized rank of the returned value
        lies in ``[lower, upper]``. Exact sketches return ``(q, q)``.

        Returns:
            ``(lower, upper)``, float64 ``(C,)`` each.
        """
        lo = np.array([s.get_rank_lower_bound(q, num_std_dev) for s in self.sketches])
        hi = np.array([s.get_rank_upper_bound(q, num_std_dev) for s in self.sketches])
        return lo, hi

    def layer_sketch(self) -> Any:
        """All channels' sketches merged into one: quantiles of the whole layer."""
        whole = _datasketches().req_floats_sketch(self.k, True)
        for s in self.sketches:
            whole.merge(s)
        return whole

    def finalize(self) -> QuantileSketch:
        """A copy that answers :meth:`quantile` (the sketch is its own result)."""
        return QuantileSketch.from_state(self.to_state())

    def to_state(self) -> dict[str, np.ndarray]:
        """Each channel's serialized sketch, packed (see :func:`pack_bytes`)."""
        data, offsets = pack_bytes([s.serialize() for s in self.sketches])
        return {
            "data": data,
            "offsets": offsets,
            "k": np.asarray(self.k),
            "positions": np.asarray(-1 if self.positions is None else self.positions),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> QuantileSketch:
        """Rebuild from :meth:`to_state`'s arrays."""
        blobs = unpack_bytes(state["data"], state["offsets"])
        positions = int(state["positions"])
        out = cls(len(blobs), int(state["k"]), None if positions < 0 else positions)
        deserialize = _datasketches().req_floats_sketch.deserialize
        out.sketches = [deserialize(b) for b in blobs]
        return out


# --------------------------------------------------------------------------- top-k


class TopK:
    """Exact per-channel top-k inputs by the channel's maximum over positions.

    An input's score for channel ``c`` is ``max`` over the positions of its
    map (finite values only); the position of that maximum is kept (the
    first, in row-major order, on ties within a map). Inputs are ranked by
    score descending, then input index ascending, so the result is the same
    for any order and split of the data. An input whose map has no finite
    value is not a candidate.

    Args:
        channels: number of channels C.
        k: how many inputs to keep per channel.

    Example:
        >>> x = np.array([[[1.0, 5.0]], [[7.0, 2.0]], [[5.0, 0.0]]])  # N=3, C=1, P=2
        >>> top = TopK(1, k=2).update(x, np.array([10, 11, 12])).finalize()
        >>> top["index"][:, 0].tolist(), top["score"][:, 0].tolist(), top["position"][:, 0].tolist()
        ([11, 10], [7.0, 5.0], [0, 1])
    """

    def __init__(self, channels: int, k: int = 16) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"`topk` must be an int >= 1. Received: topk={k!r}")
        self.channels = int(channels)
        self.k = int(k)
        self.score = np.full((self.k, self.channels), -np.inf, np.float32)
        self.index = np.full((self.k, self.channels), _NO_INDEX, np.int64)
        self.position = np.zeros((self.k, self.channels), np.int64)

    def update(
        self, values: np.ndarray, indices: np.ndarray, *, finite: bool | None = None
    ) -> TopK:
        """Fold in one ``(N, C, P)`` batch whose samples are inputs ``indices`` (N,).

        ``finite=True`` promises every value is finite (skips the check).
        """
        v = _check_values(values, self.channels, "TopK")
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.shape[0] != v.shape[0]:
            raise ValueError(
                f"TopK.update needs one index per sample: {v.shape[0]} samples, "
                f"{idx.shape[0]} indices."
            )
        if v.shape[0] == 0:
            return self
        if v.shape[2] == 0:
            return self
        with np.errstate(over="ignore"):  # beyond float32: Inf, not a candidate
            x = v.astype(np.float32, copy=False)
        if finite is None or _narrows(v.dtype):  # float64 beyond float32's range is Inf here
            finite = _all_finite(x)
        if not finite:
            x = np.where(np.isfinite(x), x, -np.inf)
        pos = x.argmax(axis=2)  # (N, C): first maximum in row-major order
        score = np.take_along_axis(x, pos[:, :, None], axis=2)[:, :, 0]
        index = np.broadcast_to(idx[:, None], score.shape)
        index = np.where(np.isfinite(score), index, _NO_INDEX)  # no finite value: no candidate
        return self._keep(score, index, pos.astype(np.int64))

    def _keep(self, score: np.ndarray, index: np.ndarray, position: np.ndarray) -> TopK:
        score = np.concatenate([self.score, score])
        index = np.concatenate([self.index, index])
        position = np.concatenate([self.position, position])
        order = np.lexsort((index, -score), axis=0)[: self.k]  # score desc, then index asc
        self.score = np.take_along_axis(score, order, axis=0)
        self.index = np.take_along_axis(index, order, axis=0)
        self.position = np.take_along_axis(position, order, axis=0)
        return self

    def merge(self, other: TopK) -> TopK:
        """Fold in another partial result: the best ``k`` of both."""
        _check_mergeable(self, other, ["channels", "k"])
        return self._keep(other.score, other.index, other.position)

    def finalize(self) -> dict[str, np.ndarray]:
        """``score`` float32, ``index`` and ``position`` int64, each ``(k, C)``, best first.

        ``valid`` (bool, same shape) is False in slots no input filled (fewer
        than ``k`` inputs with a finite value); their index is -1.
        """
        valid = self.index != _NO_INDEX
        return {
            "score": self.score.copy(),
            "index": np.where(valid, self.index, -1),
            "position": self.position.copy(),
            "valid": valid,
        }

    def to_state(self) -> dict[str, np.ndarray]:
        """The state as plain arrays."""
        return {
            "score": self.score.copy(),
            "index": self.index.copy(),
            "position": self.position.copy(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> TopK:
        """Rebuild from :meth:`to_state`'s arrays."""
        score = np.asarray(state["score"], np.float32)
        out = cls(score.shape[1], score.shape[0])
        out.score = score.copy()
        out.index = np.asarray(state["index"], np.int64).copy()
        out.position = np.asarray(state["position"], np.int64).copy()
        return out


# --------------------------------------------------------------------------- records

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
            f"  dead   {dead} of {n}"
            + (f": {np.flatnonzero(self.dead)[:8].tolist()}" if dead else ""),
        ]
        if self.bounded:
            lines.append(f"  saturated_fraction  {_brief(self.saturated_fraction)}")
        if np.any(self.nonfinite_fraction > 0):
            lines.append(f"  nonfinite_fraction  {_brief(self.nonfinite_fraction)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """One row per channel (the first 64), for notebooks."""
        head = ["channel", "mean", "std", "min", "max", "positive", "dead"]
        if self.bounded:
            head.append("saturated")
        rows = []
        for c in range(min(len(self), 64)):
            row = [str(c)] + [number(getattr(self, k)[c]) for k in ("mean", "std", "min", "max")]
            row += [f"{self.positive_fraction[c]:.1%}", "dead" if self.dead[c] else ""]
            if self.bounded:
                row.append(f"{self.saturated_fraction[c]:.1%}")
            rows.append(row)
        more = f"… and {len(self) - 64:,} more channels" if len(self) > 64 else ""
        caption = (
            f"ChannelStats: {plural(len(self), 'channel')} over {plural(self.samples, 'input')}, "
            f"{int(self.dead.sum())} dead"
        )
        return html_table(rows, head, caption=caption, note=more)


_plural = plural


def _brief(a: np.ndarray, k: int = 4) -> str:
    """The first few values of an array and its range, on one line."""
    a = np.asarray(a, np.float64)
    head = ", ".join(f"{v:.3g}" for v in a[:k]) + (", …" if a.size > k else "")
    if a.size == 0:
        return "[]"
    with np.errstate(all="ignore"):
        lo, hi = (
            np.nanmin(a) if np.isfinite(a).any() else np.nan,
            np.nanmax(a) if np.isfinite(a).any() else np.nan,
        )
    return f"[{head}]  (range {lo:.3g} .. {hi:.3g})"


def _bounds(bounds: Any) -> tuple[float, ...] | None:
    """``bounds`` as a tuple of one or two finite floats, or ``None``.

    Raises:
        ValueError: anything else (a string, a number alone, NaN/Inf, three values).
    """
    if bounds is None:
        return None
    fits = isinstance(bounds, (list, tuple, np.ndarray)) and 1 <= len(bounds) <= 2
    try:
        values = tuple(float(b) for b in bounds) if fits else ()
    except (TypeError, ValueError):
        values = ()
    if not values or not all(np.isfinite(values)):
        raise ValueError(
            "`bounds` must be None or one or two finite numbers, the values the activation "
            f"saturates at: (6.0,) for ReLU6, (0.0, 1.0) for a sigmoid. Received: bounds={bounds!r}"
        )
    return values


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
            :class:`QuantileSketch`).
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
        self.bounds = _bounds(bounds)
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

    def __repr__(self) -> str:
        shape = (
            "nothing yet"
            if self.sample_shape is None
            else ("x".join(map(str, self.sample_shape)) + f" maps, {plural(self.samples, 'input')}")
        )
        return f"RunningStats({shape})"

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
                A time-distributed layer's ``(N, T, C, H, W)`` counts each
                time step as a sample (``T`` is a batch axis; top-k indices
                then number the ``N*T`` frames).
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
        if x.ndim == 5 and layout is None:  # (N, T, C, H, W): time steps are samples
            x = x.reshape(-1, *x.shape[2:])
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
        finite = _all_finite(values)  # once for every reducer
        self.moments.update(values, finite=finite)
        self.counts.update(values, finite=finite)
        if self.sketch is not None:
            self.sketch.update(values, finite=finite)
        if self.top is not None:
            idx = (
                np.arange(self.samples, self.samples + x.shape[0])
                if indices is None
                else np.asarray(indices, np.int64)
            )
            self.top.update(values, idx, finite=finite)
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


@names_parameters
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

    def __repr__(self) -> str:
        sat = (
            ""
            if np.isnan(self.saturated_fraction)
            else f", saturated {self.saturated_fraction:.1%}"
        )
        return (
            f"LayerStats({self.name!r}, {'x'.join(map(str, self.shape))}, "
            f"{plural(self.samples, 'input')}: mean {number(self.mean)}, "
            f"range [{number(self.min)}, {number(self.max)}], dead {self.dead_fraction:.1%}, "
            f"zero {self.zero_fraction:.1%}{sat})"
        )

    def _repr_html_(self) -> str:
        return LayerStatsReport([self])._repr_html_()


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
            hint = closest(key, names, n=5)
            raise LayerNotFoundError(
                f"No statistics for {key!r} among {plural(len(names), 'layer')}."
                + (f" Did you mean {hint[0]!r}?" if hint else f" Layers: {names[:5]}…")
                + (f" Close: {hint[1:]}." if len(hint) > 1 else "")
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

    _HEAD = ("layer", "shape", "mean", "std", "min", "p01", "p50", "p99", "max")
    _HEAD_PCT = ("dead", "pos", "zero", "sat")

    def _rows(self) -> list[list[str]]:
        def pct(v: float) -> str:
            return "-" if np.isnan(v) else f"{v:.0%}"

        return [
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

    def _headline(self) -> str:
        samples = max((r.samples for r in self.layers), default=0)
        return f"LayerStatsReport({_plural(len(self), 'layer')}, {_plural(samples, 'input')})"

    def table(self, max_rows: int | None = None) -> str:
        """Every layer as an aligned text table (``max_rows``: the first and last rows only).

        ``repr`` is ``table(max_rows=18)``: at most 20 lines.
        """
        head = [*self._HEAD, *self._HEAD_PCT]
        rows = self._rows()
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
        shown = [head, *rows]
        if max_rows is not None and len(rows) > max_rows:
            k = max_rows - 8
            shown = [head, *rows[:k], ["…"] + [""] * (len(head) - 1), *rows[-7:]]
        lines = [self._headline()]
        for row in shown:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table(max_rows=18)

    def _repr_html_(self) -> str:
        """Every layer as an HTML table, for notebooks."""
        head = [*self._HEAD, "dead channels", "positive", "zero", "saturated"]
        return html_table(self._rows(), head, caption=self._headline())


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

    def __repr__(self) -> str:
        seen = max((s.samples for s in self.layers.values()), default=0)
        return f"RunningLayerStats({plural(len(self.layers), 'layer')}, {plural(seen, 'input')})"

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


@names_parameters
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
    if not isinstance(activations, Mapping):
        raise TypeError(
            "`activations` must map layer names to arrays (what mv.capture returns). "
            f"Received: activations of type {type(activations).__name__}"
        )
    if bounds is not None and not isinstance(bounds, Mapping):
        raise TypeError(
            "`bounds` must map layer names to the values their activation saturates at, "
            f'e.g. {{"relu6": (6.0,)}}. Received: bounds={bounds!r:.60}'
        )
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
