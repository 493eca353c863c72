"""The input-gradient family, in NumPy: SmoothGrad noise, Integrated Gradients' path.

Inputs here are channels first, ``(N, C, H, W)`` — the canonical layout — so
two frameworks given the same image draw the same noise and walk the same path.
"""

from __future__ import annotations

import numpy as np

from multiviz.core.checks import check_number

__all__ = [
    "INTEGRATION_RULES",
    "add_noise",
    "guided_grad_cam",
    "integrated_gradients_from_mean",
    "integration_points",
    "noise_sigma",
    "path_points",
    "scale_by_peak",
]

#: Quadrature rules for Integrated Gradients' path integral.
INTEGRATION_RULES = ("trapezoid", "riemann_right", "riemann_left", "midpoint")


def noise_sigma(x: np.ndarray, level: float) -> np.ndarray:
    """SmoothGrad's noise scale per sample: ``level * (max(x_n) - min(x_n))``.

    Smilkov et al. (2017) state the noise level as a fraction of the input's
    range; 10-20% works best for them.

    Example:
        >>> noise_sigma(np.array([[[[0.0, 2.0]]], [[[1.0, 1.5]]]]), 0.1).tolist()
        [0.2, 0.05]
    """
    check_number(level, "noise", low=0)  # a fraction of the input range
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return level * (x.max(axis=1) - x.min(axis=1))


def add_noise(x: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x + N(0, sigma_n^2)`` per sample, drawn from ``rng`` in C order.

    Drawing ``n`` samples at once or in several calls gives the same numbers,
    so the result does not depend on how the noisy copies are batched.

    Example:
        >>> x = np.zeros((3, 2, 1, 1), np.float32)
        >>> a = add_noise(x, np.ones(3), np.random.default_rng(0))
        >>> r = np.random.default_rng(0)
        >>> b = np.concatenate([add_noise(x[:1], np.ones(1), r), add_noise(x[1:], np.ones(2), r)])
        >>> bool(np.array_equal(a, b))
        True
    """
    x = np.asarray(x, np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    scale = np.asarray(sigma, np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    return x + noise * scale


def integration_points(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in ``[0, 1]`` and weights (summing to 1) for the path integral.

    Args:
        steps: how many gradients are evaluated along the path.
        rule: ``"trapezoid"`` (both ends included; exact for a linear
            integrand), ``"riemann_right"`` (Sundararajan et al.'s eq. 3),
            ``"riemann_left"`` or ``"midpoint"``.

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``steps``.

    Raises:
        ValueError: ``steps`` is too small or ``rule`` is unknown.

    Example:
        >>> a, w = integration_points(3)
        >>> a.tolist(), w.tolist()
        ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    if rule not in INTEGRATION_RULES:
        raise ValueError(
            f"`rule` must be one of {list(INTEGRATION_RULES)}. Received: rule={rule!r}"
        )
    least = 2 if rule == "trapezoid" else 1
    steps = int(check_number(steps, "steps", low=least, integer=True))
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    k = np.arange(steps, dtype=np.float64)
    offset = {"riemann_right": 1.0, "riemann_left": 0.0, "midpoint": 0.5}[rule]
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


def path_points(x: np.ndarray, baseline: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """``baseline + alpha * (x - baseline)`` for each alpha: ``(S, *x.shape)`` float32.

    Example:
        >>> path_points(np.array([2.0]), np.array([0.0]), np.array([0.0, 0.5, 1.0])).tolist()
        [[0.0], [1.0], [2.0]]
    """
    x = np.asarray(x, np.float32)
    baseline = np.asarray(baseline, np.float32)
    a = np.asarray(alphas, np.float32).reshape((-1,) + (1,) * x.ndim)
    return baseline + a * (x - baseline)


def integrated_gradients_from_mean(
    x: np.ndarray, baseline: np.ndarray, mean_gradient: np.ndarray
) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017): ``(x - baseline) * mean path gradient``.

    Summed over every input element, the result approximates
    ``f(x) - f(baseline)`` (completeness), up to the quadrature's error.
    """
    x = np.asarray(x, np.float64)
    return (x - np.asarray(baseline, np.float64)) * np.asarray(mean_gradient, np.float64)


def guided_grad_cam(guided: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled CAM.

    Args:
        guided: guided-backpropagation gradients, ``(N, C, H, W)``.
        cam: Grad-CAM at the input size, ``(N, H, W)`` (scaled by its peak, see :func:`scale_by_peak`).

    Example:
        >>> guided_grad_cam(np.ones((1, 2, 1, 2)), np.array([[[0.0, 0.5]]])).tolist()
        [[[[0.0, 0.5]], [[0.0, 0.5]]]]
    """
    return np.asarray(guided, np.float64) * np.asarray(cam, np.float64)[:, None]


def scale_by_peak(maps: np.ndarray) -> np.ndarray:
    """Divide each sample (all its axes) by its largest magnitude: 0 stays 0, signs are kept.

    The range becomes ``[-1, 1]`` (``[0, 1]`` for a map that is never
    negative); an all-zero sample stays zero. Guided Grad-CAM scales its
    Grad-CAM factor this way, so that a signed factor (``relu=False``) keeps
    its sign.

    Example:
        >>> scale_by_peak(np.array([[1.0, -4.0], [0.0, 0.0]])).tolist()
        [[0.25, -1.0], [0.0, 0.0]]
    """
    m = np.asarray(maps, np.float64)
    peak = np.abs(m).reshape(len(m), -1).max(axis=1, initial=0.0)
    peak = peak.reshape((-1,) + (1,) * (m.ndim - 1))
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
