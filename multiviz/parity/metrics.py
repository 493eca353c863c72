"""How close two arrays are: the per-layer numbers of a parity report.

NumPy only. Every function takes the *reference* array second (``b``) where
the measure is not symmetric, computes in float64, and has a defined answer
for the edge cases (all-zero or constant arrays) instead of a NumPy warning:

=====================  ==========================================  ==============
measure                formula                                     edge cases
=====================  ==========================================  ==============
``max_abs_diff``       ``max |a - b|``                             empty -> 0
``relative_error``     ``||a - b|| / ||b||`` (Frobenius)           ``b == 0``: 0 if ``a == 0`` else inf
``cosine_similarity``  ``<a, b> / (||a|| ||b||)``                  both zero -> 1, one zero -> 0
``pearson``            cosine of the mean-centred arrays           a constant side -> nan
``linear_cka``         Kornblith et al. 2019, see below            a constant side -> nan
=====================  ==========================================  ==============

Linear CKA compares *representations*: rows are examples, columns are
features. :func:`features` builds that matrix from an activation. For a feature
map ``(N, C, H, W)`` the default (``"position"``) treats every sample's every
spatial position as one example with ``C`` features — a batch of two images of
16x16 gives 512 examples, enough for CKA to mean something. ``"sample"``
flattens each sample to one row (``N`` examples), the convention of the paper;
with a batch of 2 it is 1 for almost any pair of arrays, so it is only the
default for vectors ``(N, F)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multiviz.core.params import names_parameters

__all__ = [
    "ArrayMetrics",
    "array_metrics",
    "cosine_similarity",
    "features",
    "linear_cka",
    "max_abs_diff",
    "pearson",
    "relative_error",
]


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"Arrays must have the same shape. Received: {a.shape} and {b.shape}. "
            "Compare layers whose outputs have the same canonical shape."
        )


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute element-wise difference ``max |a - b|``.

    Example:
        >>> max_abs_diff(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 2.0]))
        1.0
    """
    a, b = _f64(a), _f64(b)
    _same_shape(a, b)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||`` (Frobenius norms), ``b`` being the reference.

    Returns 0.0 when both are all-zero and ``inf`` when only ``b`` is.

    Example:
        >>> relative_error(np.array([3.0, 4.0]), np.array([3.0, 0.0]))
        1.3333333333333333
        >>> relative_error(np.zeros(3), np.zeros(3)), relative_error(np.ones(3), np.zeros(3))
        (0.0, inf)
    """
    a, b = _f64(a), _f64(b)
    _same_shape(a, b)
    diff = float(np.linalg.norm((a - b).ravel()))
    ref = float(np.linalg.norm(b.ravel()))
    if ref == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / ref


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between the flattened arrays.

    1.0 when both are all-zero (identical), 0.0 when only one is.

    Example:
        >>> cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])).__round__(6)
        0.707107
        >>> cosine_similarity(np.zeros(2), np.zeros(2))
        1.0
    """
    a, b = _f64(a).ravel(), _f64(b).ravel()
    _same_shape(a, b)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays; ``nan`` if one side is constant.

    Example:
        >>> round(pearson(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])), 12)
        1.0
        >>> round(pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])), 12)
        -1.0
    """
    a, b = _f64(a).ravel(), _f64(b).ravel()
    _same_shape(a, b)
    if not a.size:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def features(x: np.ndarray, mode: str = "auto") -> np.ndarray:
    """Arrange an activation as an (examples, features) matrix for CKA.

    Args:
        x: an activation in the canonical layout, ``(N, C, *spatial)`` or ``(N, F)``.
        mode: ``"position"`` — one row per sample and spatial position, one
            column per channel: ``(N * H * W, C)``; ``"sample"`` — one row per
            sample: ``(N, C * H * W)``; ``"auto"`` — ``"position"`` when ``x``
            has spatial axes, else ``"sample"``.

    Returns:
        A 2-D float64 array.

    Raises:
        ValueError: unknown ``mode``, or ``x`` has fewer than 2 axes.

    Example:
        >>> features(np.zeros((2, 3, 4, 5))).shape
        (40, 3)
        >>> features(np.zeros((2, 3, 4, 5)), "sample").shape
        (2, 60)
    """
    x = _f64(x)
    if mode not in ("auto", "position", "sample"):
        raise ValueError(
            f"`mode` must be one of ['auto', 'position', 'sample']. Received: mode={mode!r}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"CKA needs a batch axis and at least one feature axis. Received shape {x.shape}."
        )
    if mode == "auto":
        mode = "position" if x.ndim > 2 else "sample"
    if mode == "sample" or x.ndim == 2:
        return x.reshape(x.shape[0], -1)
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


@names_parameters
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two (examples, features) matrices.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with ``Xc``,
    ``Yc`` the column-centred matrices (Kornblith et al., "Similarity of
    Neural Network Representations Revisited", ICML 2019, eq. 5). It is 1 for
    identical representations and invariant to orthogonal transforms and
    isotropic scaling of either side; the feature counts may differ. The Gram
    form ``tr(K L) / (||K|| ||L||)`` is used when features outnumber examples.

    Args:
        x: ``(n, p)`` array; ``y``: ``(n, q)`` array (same ``n``). Use
            :func:`features` to build them from activations.

    Returns:
        A float in [0, 1]; ``nan`` when either side is constant across examples.

    Raises:
        ValueError: not 2-D, or different numbers of examples.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(50, 4))
        >>> round(linear_cka(x, 3.0 * x), 6)
        1.0
    """
    for name, value in (("x", x), ("y", y)):
        if np.asarray(value).dtype.kind not in "biuf":
            raise TypeError(
                f"`{name}` must be a 2-D array of numbers (examples, features). "
                f"Received: {name}={value!r:.60}"
            )
    x, y = _f64(x), _f64(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            "`x` and `y` must be 2-D (examples, features) arrays with the same number of rows. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}\n"
            "hint: multiviz.parity.metrics.features() builds them from activations"
        )
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if max(p, q) > n:  # Gram form: n x n
        k, l_ = x @ x.T, y @ y.T
        cross = float(np.sum(k * l_))
        nx, ny = float(np.linalg.norm(k)), float(np.linalg.norm(l_))
    else:  # feature form: p x q
        cross = float(np.linalg.norm(y.T @ x) ** 2)
        nx, ny = float(np.linalg.norm(x.T @ x)), float(np.linalg.norm(y.T @ y))
    if nx == 0.0 or ny == 0.0:
        return float("nan")
    return float(np.clip(cross / (nx * ny), 0.0, 1.0))


@dataclass(frozen=True)
class ArrayMetrics:
    """Every measure of :func:`array_metrics` for one pair of arrays.

    Attributes:
        max_abs: ``max |a - b|`` over the finite elements.
        rel_err: ``||a - b|| / ||b||`` over the finite elements.
        cosine: cosine similarity; ``pearson``: Pearson correlation;
        cka: linear CKA on :func:`features` of both.
        worst_excess: ``max(|a - b| - (atol + rtol |b|))``: positive where the
            tolerance is broken (the ``np.allclose`` test, ``b`` the reference).
        nonfinite_a, nonfinite_b: how many NaN/Inf elements each side has.
        nonfinite_match: whether NaN/Inf sit at the same places with the same
            values (NaN with NaN, +Inf with +Inf) on both sides.
    """

    max_abs: float
    rel_err: float
    cosine: float
    pearson: float
    cka: float
    worst_excess: float
    nonfinite_a: int
    nonfinite_b: int
    nonfinite_match: bool


def array_metrics(
    a: np.ndarray,
    b: np.ndarray,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    cka_mode: str = "auto",
) -> ArrayMetrics:
    """All measures for two same-shape arrays; ``b`` is the reference.

    NaN and Inf are compared as masks — the same positions and values on both
    sides count as agreement — and the numeric measures use the elements that
    are finite on both sides.

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> m = array_metrics(np.array([[1.0, 2.0]]), np.array([[1.0, 2.5]]), atol=0.1)
        >>> m.max_abs, m.worst_excess > 0
        (0.5, True)
    """
    a, b = _f64(a), _f64(b)
    _same_shape(a, b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    both = fa & fb
    same_nonfinite = bool(
        np.array_equal(fa, fb)
        and np.array_equal(np.isnan(a), np.isnan(b))
        and np.array_equal(a[~fa & ~np.isnan(a)], b[~fb & ~np.isnan(b)])
    )
    if both.all():
        av, bv = a, b
    else:  # zero the non-finite places so shapes (and CKA's rows) survive
        av, bv = np.where(both, a, 0.0), np.where(both, b, 0.0)
    diff = np.abs(av - bv)
    excess = diff - (atol + rtol * np.abs(bv))
    cka = float("nan")
    if a.ndim >= 2 and a.size:
        cka = linear_cka(features(av, cka_mode), features(bv, cka_mode))
    return ArrayMetrics(
        max_abs=float(diff.max()) if diff.size else 0.0,
        rel_err=relative_error(av, bv),
        cosine=cosine_similarity(av, bv),
        pearson=pearson(av, bv),
        cka=cka,
        worst_excess=float(excess.max()) if excess.size else float("-inf"),
        nonfinite_a=int((~fa).sum()),
        nonfinite_b=int((~fb).sum()),
        nonfinite_match=same_nonfinite,
    )
