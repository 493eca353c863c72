"""ROAD: remove pixels and debias with noisy linear imputation (Rong et al. 2022). NumPy only.

Deletion to a constant substrate leaks: the *shape* of the removed region
can tell the model the class (a grey triangle is still a triangle). ROAD
("RemOve And Debias") fills removed pixels instead with a noisy linear
imputation: each removed pixel takes the weighted mean of its eight
neighbours (weight 1/6 for the four direct neighbours, 1/12 for the diagonal
ones), solved jointly for all removed pixels, plus Gaussian noise. The
filled region is then as smooth as its surroundings and carries no outline.

    Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci. "A Consistent and
    Efficient Evaluation Strategy for Attribution Methods." ICML 2022.

The imputation solves, for every removed pixel ``p``,
``s_p v_p - sum_{q removed} w_pq v_q = sum_{q kept} w_pq x_q`` with
``s_p`` the sum of the weights of ``p``'s neighbours inside the image — the
same sparse system as the authors' code and Quantus. It is symmetric positive
definite whenever one pixel is kept; multiviz solves it with conjugate
gradients preconditioned by a geometric multigrid V-cycle, in NumPy, for a
whole batch of images and masks at once (about ten iterations, whatever the
size and shape of the removed region).

Both orders are scored: MoRF (most relevant first removed: a faithful map
makes the score fall) and LeRF (least relevant first: the score should
stay). The metric is the gap between them, ``mean(LeRF) - mean(MoRF)`` over
the removal percentages — the symmetric relevance gain of Blücher et al.
(2024, "Decoupling Pixel Flipping and Occlusion Strategy for Consistent XAI
Benchmarks") — so higher is better and a random map scores about 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from multiviz.evaluation.perturbation import Scorer, pixel_ranks

__all__ = ["DEFAULT_PERCENTAGES", "noisy_linear_imputation", "road_curves"]

#: The share of pixels removed at each ROAD step, percent.
DEFAULT_PERCENTAGES: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)

_EDGE, _DIAG = 1.0 / 6.0, 1.0 / 12.0
_TOL = 1e-6  # relative residual at which the linear solve stops
_MAX_ITER = 1000
_COARSEST = 8  # side below which the multigrid hierarchy stops


def _stencil_sum(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``S(u)``: the separable ``[1, 2, 1]`` x ``[1, 2, 1]`` sum over each pixel's 3x3 block.

    Zero outside the image. The neighbour weights of the imputation are
    ``(S(u) - 4 u) / 12`` (``[[1, 2, 1], [2, 0, 2], [1, 2, 1]] / 12``): four
    shifted additions instead of eight. ``out`` (same shape and dtype as
    ``u``, not ``u`` itself) receives the result; one temporary is made.
    """
    v = np.multiply(u, 2.0)
    v[..., 1:, :] += u[..., :-1, :]
    v[..., :-1, :] += u[..., 1:, :]
    out = np.multiply(v, 2.0, out=out)
    out[..., :, 1:] += v[..., :, :-1]
    out[..., :, :-1] += v[..., :, 1:]
    return out


def _neighbour_sum(u: np.ndarray) -> np.ndarray:
    """``sum_q w_q u[p + q]`` over the 8 neighbours (weights 1/6 and 1/12), zero outside the image."""
    return (_stencil_sum(u) - 4.0 * u) / 12.0


class _Level:
    """One grid of the multigrid hierarchy and its operator ``A u = (s u - N(u)) m``.

    ``s`` is the sum of the neighbour weights inside the image (1 inside, less
    on the border), ``N`` the weighted neighbour sum, ``m`` the unknown pixels.
    With ``N(u) = (S(u) - 4 u) / 12`` the operator is ``((s + 1/3) u - S(u) /
    12) m``: one stencil sum and three passes. Arrays the smoother multiplies
    by every sweep are precomputed: ``w = omega m / s`` (damped Jacobi's step).
    """

    def __init__(self, unknown: np.ndarray, dtype: type, omega: float = 0.8) -> None:
        self.unknown = unknown  # (B, h, w) bool
        self.m = unknown[:, None].astype(dtype)  # (B, 1, h, w)
        self.shape = unknown.shape[-2:]
        diag = _neighbour_sum(np.ones((1, 1, *self.shape), np.float64))
        self.centre = (diag + 1.0 / 3.0).astype(dtype)
        self.w = (omega / diag * self.m).astype(dtype)

    def unmasked(self, u: np.ndarray) -> np.ndarray:
        """``(s + 1/3) u - S(u) / 12`` everywhere (``A u`` before the mask), a new array."""
        out = _stencil_sum(u)
        out *= -1.0 / 12.0
        out += self.centre * u
        return out

    def apply(self, u: np.ndarray) -> np.ndarray:
        out = self.unmasked(u)
        out *= self.m
        return out

    def smooth(self, e: np.ndarray, r: np.ndarray) -> None:
        """One damped Jacobi sweep on ``A e = r``, in place: ``e += w (r - A e)``."""
        t = self.unmasked(e)
        np.subtract(r, t, out=t)
        t *= self.w  # w holds the mask: what the unmasked product adds outside is zeroed
        e += t

    def coarser(self, dtype: type) -> _Level:
        """A coarse pixel is unknown when all four of its fine pixels are."""
        u = self.unknown
        h, w = self.shape
        u = np.pad(u, [(0, 0), (0, h % 2), (0, w % 2)])
        u = u.reshape(len(u), u.shape[1] // 2, 2, u.shape[2] // 2, 2).all(axis=(2, 4))
        return _Level(u, dtype)


def _restrict(r: np.ndarray) -> np.ndarray:
    h, w = r.shape[-2:]
    if h % 2 or w % 2:
        r = np.pad(r, [(0, 0), (0, 0), (0, h % 2), (0, w % 2)])
    b, c, hh, ww = r.shape
    return r.reshape(b, c, hh // 2, 2, ww // 2, 2).sum(axis=(3, 5))


def _prolong(e: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return e.repeat(2, axis=2).repeat(2, axis=3)[..., : shape[0], : shape[1]]


def _v_cycle(levels: list[_Level], k: int, r: np.ndarray) -> np.ndarray:
    """One symmetric V-cycle (damped Jacobi smoothing, 2 sweeps each way) for ``A e = r``.

    Restriction sums 2x2 blocks and prolongation copies back (its transpose),
    and the coarse operator is the same stencil on the coarse grid, which is 4
    times the fine one for smooth errors: the sum restriction supplies that 4.
    """
    lv = levels[k]
    e = lv.w * r  # the first sweep, from e = 0
    if k == len(levels) - 1:
        for _ in range(20):
            lv.smooth(e, r)
        return e
    lv.smooth(e, r)
    coarse = levels[k + 1]
    residual = lv.unmasked(e)
    np.subtract(r, residual, out=residual)
    residual *= lv.m
    fix = _prolong(_v_cycle(levels, k + 1, _restrict(residual) * coarse.m), lv.shape)
    fix *= lv.m
    e += fix
    for _ in range(2):
        lv.smooth(e, r)
    return e


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_hw a b`` per image and channel, ``(B, C, 1, 1)``, without the product array."""
    return np.einsum("bchw,bchw->bc", a, b)[:, :, None, None]


def _linear_imputation(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The noiseless imputation: removed pixels solved for, kept ones as they are. float64.

    Conjugate gradients in float64, preconditioned by one float32 V-cycle per
    iteration, for every image and channel of the batch at once; each stops
    (its step set to 0) when its residual is below ``_TOL`` of its right-hand side.
    """
    x = np.asarray(images, np.float64)
    fine = _Level(masks, np.float64)
    levels = [_Level(masks, np.float32)]
    while min(levels[-1].shape) > _COARSEST:
        levels.append(levels[-1].coarser(np.float32))
    b = _neighbour_sum(x * (1.0 - fine.m)) * fine.m
    u = np.zeros_like(x)
    r = b.copy()
    z = _v_cycle(levels, 0, r.astype(np.float32)).astype(np.float64)
    p = z.copy()
    rz = _dot(r, z)
    limit = _TOL**2 * np.maximum(_dot(b, b), 1e-300)
    for _ in range(_MAX_ITER):
        if np.all(_dot(r, r) <= limit):
            break
        ap = fine.apply(p)
        pap = _dot(p, ap)
        alpha = np.divide(rz, pap, out=np.zeros_like(rz), where=pap > 0)
        u += alpha * p
        r -= alpha * ap
        z = _v_cycle(levels, 0, r.astype(np.float32)).astype(np.float64)
        rz_next = _dot(r, z)
        beta = np.divide(rz_next, rz, out=np.zeros_like(rz), where=rz > 0)
        p *= beta
        p += z
        rz = rz_next
    else:  # pragma: no cover - the system is SPD; this would be a bug
        raise RuntimeError("ROAD's imputation did not converge; please report this.")
    return np.where(fine.m > 0, u, x)


def noisy_linear_imputation(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    noise: float = 0.01,
    rngs: Sequence[np.random.Generator] | np.random.Generator | None = None,
) -> np.ndarray:
    """Fill the masked pixels of each image by ROAD's noisy linear imputation.

    Args:
        images: ``(B, C, H, W)`` channels first; each channel is imputed on its own.
        masks: ``(B, H, W)`` bool, True where a pixel is removed. At least one
            pixel of each image must be kept.
        noise: standard deviation of the Gaussian noise added to the imputed
            pixels, in the images' units (Rong et al.: 0.01); ``0`` for none.
        rngs: one generator per image (so results do not depend on how the
            images were batched), one shared generator, or ``None`` (seed 0).

    Returns:
        float32 ``(B, C, H, W)``: kept pixels unchanged, removed pixels
        imputed (+ noise).

    Raises:
        ValueError: shapes that do not fit, a mask that removes every pixel,
            or a negative / non-finite ``noise``.

    Example:
        One removed pixel takes the weighted mean of its neighbours:

        >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
        >>> mask = np.zeros((1, 3, 3), bool); mask[0, 1, 1] = True
        >>> float(noisy_linear_imputation(x, mask, noise=0.0)[0, 0, 1, 1])
        4.0
    """
    x = np.asarray(images, np.float32)
    mk = np.asarray(masks, bool)
    if x.ndim != 4 or mk.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"`images` must be (B, C, H, W) and `masks` (B, H, W) of the same B, H, W. "
            f"Received {x.shape} and {mk.shape}."
        )
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise` must be a finite number >= 0. Received: noise={noise!r}")
    if len(x) == 0:
        return x.copy()
    if mk.reshape(len(mk), -1).all(axis=1).any():
        raise ValueError(
            "A mask removes every pixel; ROAD's imputation needs at least one kept pixel. "
            "Use removal percentages below 100."
        )
    filled = _linear_imputation(x, mk)
    if noise > 0:
        if rngs is None or isinstance(rngs, np.random.Generator):
            gen = rngs if rngs is not None else np.random.default_rng(0)
            draws = gen.standard_normal(x.shape)
        else:
            draws = np.stack([g.standard_normal(x.shape[1:]) for g in rngs])
        filled = filled + noise * draws * mk[:, None]
    return filled.astype(np.float32)


def road_curves(
    images: np.ndarray,
    maps: np.ndarray,
    score: Scorer,
    *,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores after removing each percentage of pixels, most and least relevant first.

    The removed pixels of ``p`` percent are the first ``int(p * H * W / 100)``
    of the map's order (ties by pixel index; LeRF orders from the smallest
    value). Inputs are imputed and scored ``batch_size`` at a time. The noise
    of image ``i``, order ``o`` (0 MoRF, 1 LeRF) and percentage index ``j``
    comes from ``np.random.default_rng([seed, i, o, j])``: the same whatever
    the batch size, and the same in every framework.

    Args:
        images: ``(N, C, H, W)`` channels first, as the scorer takes them.
        maps: ``(N, H, W)`` relevance maps at the images' size.
        score: the scorer (see :mod:`multiviz.evaluation.perturbation`).
        percentages: removal percentages, each in ``(0, 100)``.
        noise: the imputation noise's standard deviation (images' units).
        seed: the noise seed.
        batch_size: the most inputs imputed and scored at once.

    Returns:
        ``(morf, lerf)``, each float64 ``(N, len(percentages))``; rows of
        non-finite maps are NaN.

    Raises:
        ValueError: a percentage outside ``(0, 100)``, or shapes that do not fit.

    Example:
        >>> x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
        >>> mean = lambda inputs, rows: inputs.mean(axis=(1, 2, 3))
        >>> morf, lerf = road_curves(x, x[:, 0], mean, percentages=[25, 50], noise=0.0)
        >>> bool((morf < lerf).all())       # removing the bright pixels lowers the mean more
        True
    """
    x = np.asarray(images, np.float32)
    m = np.asarray(maps)
    if x.ndim != 4 or m.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"`maps` must be (N, H, W) matching images {x.shape}. Received shape {m.shape}."
        )
    pct = [float(p) for p in percentages]
    if not pct or any(not (0.0 < p < 100.0) for p in pct):
        raise ValueError(
            "`percentages` must be numbers in (0, 100), exclusive: ROAD's imputation needs kept "
            f"pixels. Received: percentages={list(percentages)!r}"
        )
    n, _, h, w = x.shape
    counts = np.array([int(p * h * w / 100.0) for p in pct], np.int64)
    finite = np.isfinite(m.reshape(n, -1)).all(axis=1)
    clean = np.where(np.isfinite(m), m, 0.0)
    ranks = (pixel_ranks(clean, descending=True), pixel_ranks(clean, descending=False))
    out = np.full((2, n, len(pct)), np.nan)
    jobs = [(i, o, j) for i in np.flatnonzero(finite) for o in (0, 1) for j in range(len(pct))]
    size = max(1, int(batch_size))
    for start in range(0, len(jobs), size):
        part = jobs[start : start + size]
        rows = np.array([i for i, _, _ in part], np.int64)
        masks = np.stack([(ranks[o][i] < counts[j]).reshape(h, w) for i, o, j in part])
        rngs = [np.random.default_rng([int(seed), int(i), o, j]) for i, o, j in part]
        batch = noisy_linear_imputation(x[rows], masks, noise=noise, rngs=rngs)
        values = np.asarray(score(batch, rows), np.float64).reshape(-1)
        if values.shape != (len(part),):
            raise ValueError(
                f"The scorer returned shape {values.shape} for {len(part)} inputs; it must return "
                "one score per input."
            )
        for (i, o, j), v in zip(part, values, strict=True):
            out[o, i, j] = v
    return out[0], out[1]
