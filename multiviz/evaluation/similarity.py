"""How alike two maps are: Spearman rank correlation and SSIM, per sample. NumPy only.

The sanity checks of Adebayo et al. (2018, "Sanity Checks for Saliency
Maps", NeurIPS) compare each image's map before and after the model is
randomized with both measures; a map that stays alike shows the image, not
the model.

* :func:`spearman`: Pearson correlation of the two maps' ranks (tied values
  share their average rank), in ``[-1, 1]``. A constant map has no ranking:
  its correlation with any map is defined as 0 (it shares no ordering), not
  NaN — a method whose map goes flat after randomization *has* changed.
* :func:`ssim`: the structural similarity of Wang et al. (2004), as
  scikit-image computes it by default (7x7 uniform window, ``K1 = 0.01``,
  ``K2 = 0.03``, sample covariances, mean over the pixels whose window lies
  inside the map), on maps scaled to ``data_range``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rankdata", "spearman", "ssim"]


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks ``1..K`` along the last axis; ties get the average of their ranks.

    Example:
        >>> rankdata(np.array([[10.0, 30.0, 20.0, 20.0]])).tolist()
        [[1.0, 4.0, 2.5, 2.5]]
    """
    v = np.asarray(values, np.float64)
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty_like(flat)
    k = flat.shape[1]
    for i, row in enumerate(flat):
        order = np.argsort(row, kind="stable")
        s = row[order]
        new = np.concatenate([[True], s[1:] != s[:-1]])
        group = np.cumsum(new) - 1  # tie group of each sorted position
        starts = np.flatnonzero(new)
        ends = np.concatenate([starts[1:], [k]])
        avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
        out[i, order] = avg[group]
    return out.reshape(v.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps ``a[i]``, ``b[i]``.

    Args:
        a, b: ``(N, ...)`` of the same shape (e.g. ``(N, H, W)`` maps).

    Returns:
        float64 ``(N,)`` in ``[-1, 1]``; 0 where either map is constant; NaN
        where either holds NaN or Inf.

    Example:
        >>> a = np.array([[1.0, 2.0, 3.0, 4.0]])
        >>> spearman(a, a ** 3).tolist(), spearman(a, -a).tolist()
        ([1.0], [-1.0])
    """
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"Maps must be (N, ...) of one shape. Received {x.shape} and {y.shape}.")
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    rx = rankdata(np.where(np.isfinite(x), x, 0.0))
    ry = rankdata(np.where(np.isfinite(y), y, 0.0))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    num = (rx * ry).sum(axis=1)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(bad, np.nan, np.clip(out, -1.0, 1.0))


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window lying inside the last two axes ('valid')."""
    c = np.cumsum(np.cumsum(x, axis=-2), axis=-1)
    c = np.pad(c, [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)])
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return s / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win_size: int = 7) -> np.ndarray:
    """Structural similarity of each pair of 2-D maps, scikit-image's default computation.

    Args:
        a, b: ``(N, H, W)`` of one shape, with ``H, W >= win_size``.
        data_range: the span of possible values (1 for maps in ``[0, 1]``).
        win_size: the side of the uniform window, odd.

    Returns:
        float64 ``(N,)``, 1 for identical maps; NaN where a map holds NaN/Inf.

    Example:
        >>> m = np.random.default_rng(0).random((2, 9, 9))
        >>> ssim(m, m).tolist()
        [1.0, 1.0]
    """
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(
            f"ssim needs two (N, H, W) arrays of one shape. Received {x.shape}, {y.shape}."
        )
    if win_size % 2 == 0 or min(x.shape[1:]) < win_size:
        raise ValueError(
            f"ssim needs an odd `win_size` no larger than the maps ({x.shape[1:]}). "
            f"Received: win_size={win_size}"
        )
    bad = ~(np.isfinite(x).reshape(len(x), -1).all(1) & np.isfinite(y).reshape(len(y), -1).all(1))
    x = np.where(np.isfinite(x), x, 0.0)
    y = np.where(np.isfinite(y), y, 0.0)
    npix = win_size * win_size
    cov_norm = npix / (npix - 1.0)
    ux, uy = _box_mean(x, win_size), _box_mean(y, win_size)
    vx = cov_norm * (_box_mean(x * x, win_size) - ux * ux)
    vy = cov_norm * (_box_mean(y * y, win_size) - uy * uy)
    vxy = cov_norm * (_box_mean(x * y, win_size) - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return np.where(bad, np.nan, s.reshape(len(s), -1).mean(axis=1))
