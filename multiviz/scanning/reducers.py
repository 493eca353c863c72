"""Streaming, mergeable per-channel reducers: one pass over a data set in bounded memory.

Each reducer sees a layer's activations one batch at a time as a ``(N, C, P)``
float array (samples, channels, positions: ``P = H * W`` for 2-D maps, ``L``
for 1-D maps, 1 for vectors) and keeps a fixed-size state per channel, so
memory does not grow with the number of inputs. All of them share one shape:

* ``update(values, ...)`` folds a batch in (in place; returns the reducer);
* ``merge(other)`` folds another reducer's partial result in (in place;
  returns the reducer) — in any order and any split, the result is that of
  one pass over all the data;
* ``finalize()`` returns the plain result (NumPy arrays, one entry per channel);
* ``to_state()`` / ``from_state(state)`` turn the state into a flat
  ``dict[str, np.ndarray]`` of plain dtypes and back: what a scan saves with
  ``np.savez`` (loadable with ``allow_pickle=False``) and what a Ray worker
  sends to the driver as one row.

The reducers:

* :class:`Moments` — count, mean, variance (Chan, Golub & LeVeque's parallel
  algorithm, float64), min and max of the finite values;
* :class:`Counts` — values seen, non-finite, positive, zero (``|v| <= eps``)
  and saturated (see :func:`saturation_tolerance`);
* :class:`QuantileSketch` — one Apache DataSketches REQ sketch per channel in
  high-rank-accuracy mode (Cormode et al. 2021, "Relative Error Streaming
  Quantiles"): its rank error shrinks toward the top of the distribution,
  where Network Dissection's top-0.5% threshold lies;
* :class:`TopK` — exact top-k inputs per channel by the channel's maximum over
  positions, with the position of that maximum.

NaN and ±Inf are left out of moments, sketches and top-k; :class:`Counts`
counts them. Exactness: counts, min, max and top-k are exact whatever the
split; moments agree with a one-pass float64 computation to about 1e-12
relative; sketch quantiles are randomized (DataSketches flips coins when it
compacts), their error bounded by the sketch's documented rank bound
(:meth:`QuantileSketch.rank_bounds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "SATURATION_TOLERANCE",
    "Counts",
    "Moments",
    "QuantileSketch",
    "TopK",
    "as_channels",
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


# --------------------------------------------------------------------------- moments


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

    def update(self, values: np.ndarray) -> Moments:
        """Fold in one ``(N, C, P)`` batch; NaN and ±Inf are left out."""
        v = _check_values(values, self.channels, "Moments")
        part = Moments(self.channels)
        for sl in _channel_chunks(v):
            x = v[:, sl].astype(np.float64)
            finite = np.isfinite(x)
            if finite.all():
                n = np.full(x.shape[1], x.shape[0] * x.shape[2], np.int64)
                mean = x.mean(axis=(0, 2)) if x.size else np.zeros(x.shape[1])
                dev = x - mean[None, :, None]
                lo, hi = x.min(axis=(0, 2), initial=np.inf), x.max(axis=(0, 2), initial=-np.inf)
            else:
                n = finite.sum(axis=(0, 2))
                total = np.where(finite, x, 0.0).sum(axis=(0, 2))
                mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
                dev = np.where(finite, x - mean[None, :, None], 0.0)
                lo = np.where(finite, x, np.inf).min(axis=(0, 2), initial=np.inf)
                hi = np.where(finite, x, -np.inf).max(axis=(0, 2), initial=-np.inf)
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

    def update(self, values: np.ndarray) -> Counts:
        """Fold in one ``(N, C, P)`` batch."""
        v = _check_values(values, self.channels, "Counts")
        n, _, p = v.shape
        self.total += n * p
        self.positive += (v > 0).sum(axis=(0, 2))  # NaN > 0 is False; +Inf is left out below
        self.zero += (np.abs(v) <= self.eps).sum(axis=(0, 2))
        bad = ~np.isfinite(v)
        if bad.any():
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

    def update(self, values: np.ndarray) -> QuantileSketch:
        """Fold in one ``(N, C, P)`` batch; NaN and ±Inf are left out."""
        v = _check_values(values, self.channels, "QuantileSketch")
        if self.positions is not None and v.shape[2] > self.positions:
            keep = np.linspace(0, v.shape[2] - 1, self.positions).round().astype(np.intp)
            v = v[:, :, np.unique(keep)]
        # channel-major float32, contiguous: one C++ call per channel
        per_channel = np.ascontiguousarray(np.moveaxis(v, 1, 0), dtype=np.float32)
        per_channel = per_channel.reshape(self.channels, -1)
        all_finite = bool(np.isfinite(per_channel).all())
        for sketch, row in zip(self.sketches, per_channel, strict=True):
            sketch.update(row if all_finite else row[np.isfinite(row)])
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

    def update(self, values: np.ndarray, indices: np.ndarray) -> TopK:
        """Fold in one ``(N, C, P)`` batch whose samples are inputs ``indices`` (N,)."""
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
        x = v.astype(np.float32, copy=False)
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, -np.inf)
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
