"""Shaping attribution maps for display: channel aggregation, upsampling, scaling.

NumPy only. Maps are batch first: ``(N, H, W)`` per-pixel maps, or
``(N, C, H, W)`` per-channel input attributions.
"""

from __future__ import annotations

import numpy as np

from multiviz.core.resize import resize_bilinear

__all__ = [
    "AGGREGATIONS",
    "aggregate_channels",
    "check_aggregation",
    "clip_outliers",
    "finish_maps",
    "normalize_maps",
    "upsample_maps",
]

#: How a per-channel input attribution ``(N, C, H, W)`` becomes ``(N, H, W)``.
#: ``None`` keeps the channels.
AGGREGATIONS = ("max_abs", "abs_sum", "abs_mean", "sum", "mean", "l2", None)


def aggregate_channels(values: np.ndarray, how: str | None) -> np.ndarray:
    """Reduce the channel axis (axis 1) of ``(N, C, H, W)`` attributions.

    Args:
        values: per-channel attributions, channels first.
        how: ``"max_abs"`` (largest magnitude over channels, as in Simonyan
            et al. 2014), ``"abs_sum"``, ``"abs_mean"``, ``"sum"`` (keeps the
            sign, and keeps Integrated Gradients' completeness), ``"mean"``,
            ``"l2"`` (Euclidean norm), or ``None`` to keep the channels.

    Returns:
        float32 ``(N, H, W)``, or ``(N, C, H, W)`` when ``how`` is ``None``.

    Raises:
        ValueError: ``how`` is not one of :data:`AGGREGATIONS`.

    Example:
        >>> g = np.array([[[[1.0]], [[-3.0]], [[2.0]]]])   # (1, 3, 1, 1)
        >>> [float(aggregate_channels(g, h)[0, 0, 0]) for h in ("max_abs", "sum", "abs_sum")]
        [3.0, 0.0, 6.0]
    """
    check_aggregation(how)
    values = np.asarray(values)
    if how is None:
        return values.astype(np.float32)
    if how == "max_abs":
        out = np.abs(values).max(axis=1)
    elif how == "abs_sum":
        out = np.abs(values).sum(axis=1)
    elif how == "abs_mean":
        out = np.abs(values).mean(axis=1)
    elif how == "sum":
        out = values.sum(axis=1)
    elif how == "mean":
        out = values.mean(axis=1)
    else:  # "l2"
        out = np.sqrt((values.astype(np.float64) ** 2).sum(axis=1))
    return out.astype(np.float32)


def check_aggregation(how: str | None) -> None:
    """Raise ``ValueError`` unless ``how`` is one of :data:`AGGREGATIONS`.

    The methods call it before any model work, so a typo fails at once.

    Example:
        >>> check_aggregation("max_abs")
        >>> check_aggregation("maxabs")
        Traceback (most recent call last):
        ...
        ValueError: `aggregation` must be one of ['max_abs', 'abs_sum', 'abs_mean', 'sum', 'mean', 'l2', None]. Received: aggregation='maxabs'
    """
    if how not in AGGREGATIONS:
        raise ValueError(
            f"`aggregation` must be one of {list(AGGREGATIONS)}. Received: aggregation={how!r}"
        )


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each sample's map to ``[0, 1]``: ``(m - min) / (max - min)``.

    Min and max are taken over all of one sample's values (all channels too,
    for ``(N, C, H, W)``). A constant map — nothing to show — becomes zeros;
    NaN and infinities become 0 / the largest finite value first.

    Example:
        >>> normalize_maps(np.array([[[2.0, 4.0], [6.0, 6.0]], [[5.0, 5.0], [5.0, 5.0]]])).tolist()
        [[[0.0, 0.5], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    """
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64))
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(axis=1, initial=np.inf) if flat.size else np.zeros(len(maps))
    hi = flat.max(axis=1, initial=-np.inf) if flat.size else np.zeros(len(maps))
    span = (hi - lo).reshape((-1,) + (1,) * (maps.ndim - 1))
    shifted = maps - lo.reshape(span.shape)
    out = np.divide(shifted, span, out=np.zeros_like(shifted), where=span > 0)
    return out.astype(np.float32)


def clip_outliers(heat: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Clip one map's magnitudes at their ``percentile``-th percentile, keeping signs.

    Pixel attributions (saliency, SmoothGrad, Integrated Gradients) are
    sparse: a few pixels hold the largest values, and scaled by its maximum
    the rest of the map all but vanishes. Clipping the top 1% of magnitudes
    for display, as Captum's ``visualize_image_attr`` does
    (``outlier_perc``), keeps the picture readable. Zeros stay zero; a map
    whose percentile is 0 is returned unchanged.

    Example:
        >>> clip_outliers(np.array([[0.0, 1.0], [-2.0, 100.0]]), 50).tolist()
        [[0.0, 1.0], [-1.5, 1.5]]
    """
    m = np.asarray(heat, dtype=np.float32)
    mag = np.abs(m[np.isfinite(m)])
    if not mag.size:
        return m
    top = float(np.percentile(mag, percentile))
    return np.clip(m, -top, top) if top > 0 else m


def upsample_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize the last two axes to ``size`` (half-pixel centres).

    The same convention as ``torch.nn.functional.interpolate(align_corners=False)``
    and ``tf.image.resize``, so a map upsampled here does not depend on the
    framework that produced it.

    Example:
        >>> upsample_maps(np.zeros((2, 4, 4)), (16, 12)).shape
        (2, 16, 12)
    """
    return resize_bilinear(maps, size)


def finish_maps(maps: np.ndarray, normalize: bool) -> np.ndarray:
    """:func:`normalize_maps` when ``normalize``, else the raw values; float32 either way."""
    return normalize_maps(maps) if normalize else np.asarray(maps, np.float32)
