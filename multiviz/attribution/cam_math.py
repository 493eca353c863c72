"""The class-activation-map family, in NumPy.

Every function takes a layer's activations ``A`` and, where the method uses
them, the gradients ``G = d score / d A`` of the same layer, both
``(N, K, h, w)`` in the canonical layout, and returns low-resolution maps
``(N, h, w)`` (float64, not yet upsampled or scaled). Which framework computed
``A`` and ``G`` makes no difference from here on.

Each method is a sum of per-channel terms ``T_k`` (``w_k A_k`` for CAM,
Grad-CAM, Grad-CAM++ and Score-CAM; ``ReLU(G_k) * A_k`` for LayerCAM),
finished by :func:`finish_cam`: ``reduce`` sums them over ``k`` (``False``
keeps them, ``(N, K, h, w)``), ``relu`` then clips what is returned at 0
(``False`` keeps signed values; with ``reduce=False`` the clip applies to
each term, as Captum's ``LayerGradCam(attr_dim_summation=False,
relu_attributions=True)``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "cam_map",
    "channel_terms",
    "finish_cam",
    "grad_cam_map",
    "grad_cam_plus_plus_alphas",
    "grad_cam_plus_plus_map",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
    "layer_cam_map",
    "relu",
    "score_cam_channels",
    "score_cam_map",
    "score_cam_masks",
    "sigmoid",
    "softmax",
    "weighted_sum",
]


def relu(a: np.ndarray) -> np.ndarray:
    """``max(a, 0)`` elementwise."""
    return np.maximum(a, 0.0)


relu_ = relu  # for functions whose ``relu`` argument shadows the name


def weighted_sum(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k weights[n, k] * acts[n, k]``: ``(N, K, h, w), (N, K) -> (N, h, w)``.

    Example:
        >>> A = np.arange(8.0).reshape(1, 2, 2, 2)
        >>> weighted_sum(A, np.array([[1.0, -1.0]])).tolist()
        [[[-4.0, -4.0], [-4.0, -4.0]]]
    """
    return np.einsum("nk,nkhw->nhw", np.asarray(weights, np.float64), np.asarray(acts, np.float64))


def channel_terms(acts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights[n, k] * acts[n, k]``: ``(N, K, h, w), (N, K) -> (N, K, h, w)`` float64.

    Example:
        >>> A = np.arange(4.0).reshape(1, 2, 1, 2)
        >>> channel_terms(A, np.array([[1.0, -1.0]])).tolist()
        [[[[0.0, 1.0]], [[-2.0, -3.0]]]]
    """
    w = np.asarray(weights, np.float64)
    return w[:, :, None, None] * np.asarray(acts, np.float64)


def finish_cam(terms: np.ndarray, *, relu: bool = True, reduce: bool = True) -> np.ndarray:
    """Per-channel terms ``(N, K, h, w)`` -> the map: summed over ``k`` if ``reduce``, then ReLU if ``relu``.

    Args:
        terms: each channel's contribution ``T_k``, ``(N, K, h, w)``.
        relu: clip what is returned at 0 (every CAM paper's final ReLU but
            CAM's own); ``False`` keeps the signed values.
        reduce: sum over channels, ``(N, h, w)``; ``False`` returns the terms.

    Example:
        >>> T = np.array([[[[1.0, -3.0]], [[-2.0, 1.0]]]])      # (1, 2, 1, 2)
        >>> finish_cam(T).tolist(), finish_cam(T, relu=False).tolist()
        ([[[0.0, 0.0]]], [[[-1.0, -2.0]]])
        >>> finish_cam(T, reduce=False).tolist()
        [[[[1.0, 0.0]], [[0.0, 1.0]]]]
    """
    out = np.asarray(terms, np.float64)
    if reduce:
        out = out.sum(axis=1)
    return relu_(out) if relu else out


def cam_map(
    acts: np.ndarray, class_weights: np.ndarray, *, relu: bool = True, reduce: bool = True
) -> np.ndarray:
    """CAM (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization").

    ``M_c = sum_k W[c, k] A_k`` for a network ending in global average pooling
    and a dense layer ``W``: the class score is then the spatial mean of
    ``M_c`` plus the bias. The paper has no ReLU; multiviz applies one by
    default, as to every CAM method (``relu=False`` gives the paper's signed map).

    Args:
        acts: the feature maps fed to global average pooling, ``(N, K, h, w)``.
        class_weights: the dense layer's row of each sample's class, ``(N, K)``.
        relu, reduce: see :func:`finish_cam`.

    Example:
        >>> A = np.ones((1, 2, 1, 3)); A[0, 1] = [[0.0, 1.0, 3.0]]
        >>> cam_map(A, np.array([[2.0, -1.0]]), relu=False).tolist()
        [[[2.0, 1.0, -1.0]]]
        >>> cam_map(A, np.array([[2.0, -1.0]])).tolist()
        [[[2.0, 1.0, 0.0]]]
    """
    return finish_cam(channel_terms(acts, class_weights), relu=relu, reduce=reduce)


def grad_cam_weights(grads: np.ndarray) -> np.ndarray:
    """Grad-CAM channel weights: the spatial mean of the gradients, ``(N, K)``."""
    return np.asarray(grads, np.float64).mean(axis=(2, 3))


def grad_cam_map(
    acts: np.ndarray, grads: np.ndarray, *, relu: bool = True, reduce: bool = True
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k mean(G_k) A_k)``.

    ``relu`` and ``reduce`` as :func:`finish_cam`.

    Example:
        >>> A = np.array([[[[1.0, 2.0]], [[3.0, 0.0]]]])      # (1, 2, 1, 2)
        >>> G = np.array([[[[1.0, 3.0]], [[-1.0, -1.0]]]])    # weights 2 and -1
        >>> grad_cam_map(A, G).tolist(), grad_cam_map(A, G, relu=False).tolist()
        ([[[0.0, 4.0]]], [[[-1.0, 4.0]]])
    """
    return finish_cam(channel_terms(acts, grad_cam_weights(grads)), relu=relu, reduce=reduce)


def grad_cam_plus_plus_alphas(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++'s pixel weights ``alpha`` (Chattopadhyay et al. 2018, eq. 19).

    With the class score passed through an exponential, the second and third
    derivatives reduce to powers of the first (the paper's closed form)::

        alpha_kij = G_kij^2 / (2 G_kij^2 + G_kij^3 * sum_ab A_kab)

    Where the denominator is zero (then so is ``G_kij``, or the pixel is
    degenerate) ``alpha`` is 0.

    Example:
        >>> A = np.array([[[[1.0, 3.0]]]]); G = np.array([[[[1.0, 2.0]]]])
        >>> grad_cam_plus_plus_alphas(A, G).round(4).tolist()   # 1/(2+4), 4/(8+32)
        [[[[0.1667, 0.1]]]]
    """
    g = np.asarray(grads, np.float64)
    g2 = g * g
    total = np.asarray(acts, np.float64).sum(axis=(2, 3), keepdims=True)
    denom = 2.0 * g2 + g2 * g * total
    return np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)


def grad_cam_plus_plus_weights(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM++ channel weights ``w_k = sum_ij alpha_kij ReLU(G_kij)``, ``(N, K)``.

    The paper's weights carry a factor ``exp(score)`` from the exponential; it
    is the same for every channel and pixel, so it is left out (maps are
    scaled per sample anyway).
    """
    alphas = grad_cam_plus_plus_alphas(acts, grads)
    return (alphas * relu_(np.asarray(grads, np.float64))).sum(axis=(2, 3))


def grad_cam_plus_plus_map(
    acts: np.ndarray, grads: np.ndarray, *, relu: bool = True, reduce: bool = True
) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al. 2018): ``ReLU(sum_k w_k A_k)``.

    ``relu`` and ``reduce`` as :func:`finish_cam`.

    Example:
        >>> A = np.array([[[[1.0, 3.0]]]]); G = np.array([[[[1.0, 2.0]]]])
        >>> (grad_cam_plus_plus_map(A, G) * 30).round(6).tolist()  # w = 1/6 + 2/10 = 11/30
        [[[11.0, 33.0]]]
    """
    weights = grad_cam_plus_plus_weights(acts, grads)
    return finish_cam(channel_terms(acts, weights), relu=relu, reduce=reduce)


def layer_cam_map(
    acts: np.ndarray, grads: np.ndarray, *, relu: bool = True, reduce: bool = True
) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021): ``ReLU(sum_k ReLU(G_k) * A_k)``, pixel by pixel.

    The inner ``ReLU(G_k)`` is the method's own weight and always applies;
    ``relu`` and ``reduce`` (the outer ReLU, the sum) as :func:`finish_cam`.

    Example:
        >>> A = np.array([[[[1.0, -4.0]], [[3.0, 4.0]]]])
        >>> G = np.array([[[[2.0, 1.0]], [[-5.0, 0.5]]]])
        >>> layer_cam_map(A, G).tolist(), layer_cam_map(A, G, relu=False).tolist()
        ([[[2.0, 0.0]]], [[[2.0, -2.0]]])
        >>> layer_cam_map(A, G, relu=False, reduce=False).tolist()
        [[[[2.0, -4.0]], [[0.0, 2.0]]]]
    """
    terms = relu_(np.asarray(grads, np.float64)) * np.asarray(acts, np.float64)
    return finish_cam(terms, relu=relu, reduce=reduce)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """A numerically stable softmax (float64).

    Example:
        >>> softmax(np.array([[0.0, np.log(3.0)]])).round(6).tolist()
        [[0.25, 0.75]]
    """
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, stable for large logits of either sign (float64).

    Example:
        >>> sigmoid(np.array([-800.0, 0.0, 800.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    z = np.asarray(logits, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def score_cam_map(
    acts: np.ndarray, channel_scores: np.ndarray, *, relu: bool = True, reduce: bool = True
) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): ``ReLU(sum_k s_k A_k)``.

    Args:
        acts: the layer's activations, ``(N, K, h, w)``.
        channel_scores: ``s_k``, the target's score when the input is masked by
            channel ``k``'s upsampled, [0, 1]-scaled activation, ``(N, K)``
            (the softmax probability of the class, as in the paper; the
            sigmoid probability of a sigmoid head's unit).
        relu, reduce: see :func:`finish_cam`.
    """
    return finish_cam(channel_terms(acts, channel_scores), relu=relu, reduce=reduce)


def score_cam_channels(acts: np.ndarray, rtol: float = 1e-5) -> np.ndarray:
    """Which channels Score-CAM masks the input with, ``(N, K)`` booleans.

    A channel whose map is (nearly) constant carries no location; the
    authors' code skips it (its score counts as 0), and so do we, which also
    saves its forward pass. "Nearly" means a range below ``rtol`` times the
    sample's largest activation magnitude, so float noise in a dead channel
    is never blown up into a mask — and the choice does not depend on how
    the work is split into batches.

    Example:
        >>> A = np.array([[[[1.0, 3.0]], [[2.0, 2.0]], [[0.0, 1e-9]]]])
        >>> score_cam_channels(A).tolist()
        [[True, False, False]]
    """
    a = np.asarray(acts, np.float64)
    span = a.max(axis=(2, 3)) - a.min(axis=(2, 3))
    scale = np.abs(a).max(axis=(1, 2, 3))[:, None]
    return span > rtol * scale


def score_cam_masks(upsampled: np.ndarray) -> np.ndarray:
    """Min-max scale each ``(H, W)`` map of ``upsampled`` to ``[0, 1]`` (a constant one to 0).

    Score-CAM (Wang et al. 2020) multiplies the input by each channel's
    activation, upsampled to the input size and scaled this way.

    Example:
        >>> score_cam_masks(np.array([[[1.0, 3.0]], [[2.0, 2.0]]])).tolist()
        [[[0.0, 1.0]], [[0.0, 0.0]]]
    """
    a = np.asarray(upsampled, np.float64)
    lo = a.min(axis=(-2, -1), keepdims=True)
    span = a.max(axis=(-2, -1), keepdims=True) - lo
    return np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0).astype(np.float32)
