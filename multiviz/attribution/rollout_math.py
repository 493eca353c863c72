"""The math of attention rollout, in NumPy: no model, no framework.

A backend hands over, for each self-attention layer of a vision transformer,
the layer's input tokens ``x`` ``(N, T, C)``, its projection weights in one
canonical form (:class:`AttentionWeights`) and, for the gradient method, the
gradient of the target score with respect to the layer's output. Everything
else happens here:

* :func:`attention_probabilities` recomputes ``softmax(q k^T * scale)`` per head
  from ``x`` and the weights, so it does not matter whether the model ran a
  fused kernel (``scaled_dot_product_attention``, ``need_weights=False``) that
  never materialized the probabilities;
* :func:`attention_gradients` gives ``dS/dA`` per head from the output
  gradient: the layer computes ``y = concat_h(A_h V_h) W_o + b_o``, so
  ``dS/dA_h = (dS/dy W_o^T)_h V_h^T``;
* :func:`rollout` (Abnar & Zuidema 2020) and :func:`gradient_rollout` (Chefer
  et al. 2021) combine the layers into one relevance per token, and
  :func:`patch_relevance` reads the patch tokens' share off it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from multiviz.core.attention import AttentionIO, AttentionWeights
from multiviz.core.tokens import TokenGrid
from multiviz.errors import UnsupportedAttentionError

__all__ = [
    "HEAD_FUSIONS",
    "AttentionIO",
    "AttentionWeights",
    "UnsupportedAttentionError",
    "attention_gradients",
    "attention_probabilities",
    "discard_lowest",
    "fuse_heads",
    "gradient_rollout",
    "patch_relevance",
    "rollout",
]


#: How the heads of one layer are combined: their mean, maximum or minimum.
HEAD_FUSIONS = ("mean", "max", "min")


def _project(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    out = np.einsum("ntc,chd->nhtd", x, w)
    return out if b is None else out + b[None, :, None, :]


def _layer_norm(t: np.ndarray, norm: tuple[np.ndarray, np.ndarray | None, float]) -> np.ndarray:
    gamma, beta, eps = norm
    mu = t.mean(axis=-1, keepdims=True)
    var = t.var(axis=-1, keepdims=True)
    out = (t - mu) / np.sqrt(var + eps) * np.asarray(gamma, np.float64)
    return out if beta is None else out + np.asarray(beta, np.float64)


def attention_probabilities(x: np.ndarray, w: AttentionWeights) -> np.ndarray:
    """``(N, heads, T, T)`` attention probabilities (rows: queries, sum to 1).

    Args:
        x: the layer's input tokens ``(N, T, C)``.
        w: its weights.

    Returns:
        float64 probabilities ``softmax(scale * q k^T)`` over the last axis.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> w = AttentionWeights(*(rng.normal(size=s) for s in [(4, 2, 3)] * 3 + [(2, 3, 4)]))
        >>> a = attention_probabilities(rng.normal(size=(1, 5, 4)), w)
        >>> a.shape, bool(np.allclose(a.sum(-1), 1))
        ((1, 2, 5, 5), True)
    """
    x = np.asarray(x, np.float64)
    q, k = _project(x, w.wq, w.bq), _project(x, w.wk, w.bk)
    if w.q_norm is not None:
        q = _layer_norm(q, w.q_norm)
    if w.k_norm is not None:
        k = _layer_norm(k, w.k_norm)
    scale = w.head_dim**-0.5 if w.scale is None else float(w.scale)
    logits = np.einsum("nhid,nhjd->nhij", q, k) * scale
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def attention_gradients(x: np.ndarray, grad_out: np.ndarray, w: AttentionWeights) -> np.ndarray:
    """``(N, heads, T, T)``: the target score's gradient with respect to each head's ``A``.

    Args:
        x: the layer's input tokens ``(N, T, C)``.
        grad_out: ``dS/dy``, the gradient at the layer's output ``(N, T, C_out)``.
        w: its weights.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> w = AttentionWeights(*(rng.normal(size=s) for s in [(4, 2, 3)] * 3 + [(2, 3, 4)]))
        >>> attention_gradients(rng.normal(size=(1, 5, 4)), np.ones((1, 5, 4)), w).shape
        (1, 2, 5, 5)
    """
    x = np.asarray(x, np.float64)
    v = _project(x, w.wv, w.bv)  # (N, H, T, d)
    g_heads = np.einsum("ntc,hdc->nhtd", np.asarray(grad_out, np.float64), w.wo)
    return np.einsum("nhid,nhjd->nhij", g_heads, v)


def fuse_heads(a: np.ndarray, how: str = "mean") -> np.ndarray:
    """``(N, heads, T, T) -> (N, T, T)``: the heads' mean, maximum or minimum.

    Raises:
        ValueError: ``how`` is not one of :data:`HEAD_FUSIONS`.

    Example:
        >>> fuse_heads(np.array([[[[1.0]], [[3.0]]]]), "max").tolist()
        [[[3.0]]]
    """
    if how not in HEAD_FUSIONS:
        raise ValueError(
            f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={how!r}"
        )
    return {"mean": np.mean, "max": np.max, "min": np.min}[how](a, axis=1)


def discard_lowest(a: np.ndarray, ratio: float, keep: int | None = 0) -> np.ndarray:
    """Zero the ``ratio`` share of the lowest entries of each sample's ``(T, T)`` matrix.

    The ``int(ratio * T * T)`` lowest entries per sample are chosen (ties by
    flat index) and zeroed, except the diagonal entry ``(keep, keep)`` (the
    class token's attention to itself), which stays even when it is among
    them — as in the widely used vit-explain implementation of rollout. A
    copy; ``a`` is unchanged.

    Raises:
        ValueError: ``ratio`` is not in ``[0, 1)``.

    Example:
        >>> discard_lowest(np.array([[[0.1, 0.4], [0.2, 0.3]]]), 0.5).tolist()
        [[[0.1, 0.4], [0.0, 0.3]]]
    """
    if not (isinstance(ratio, (int, float, np.floating)) and 0 <= ratio < 1):
        raise ValueError(f"`discard_ratio` must be in [0, 1). Received: discard_ratio={ratio!r}")
    out = np.array(a, dtype=np.float64, copy=True)
    n, t, _ = out.shape
    count = int(ratio * t * t)
    if count == 0:
        return out
    flat = out.reshape(n, t * t)
    order = np.argsort(flat, axis=1, kind="stable")
    protected = None if keep is None else keep * t + keep
    for i in range(n):
        lowest = order[i, :count]
        if protected is not None:
            lowest = lowest[lowest != protected]
        flat[i, lowest] = 0.0
    return out


def _keep_tokens(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return a[..., keep[:, None], keep[None, :]]


def _kept(grid: TokenGrid) -> np.ndarray:
    regs = set(grid.register_indices)
    return np.array([i for i in range(grid.tokens) if i not in regs], dtype=np.int64)


def rollout(
    attentions: Sequence[np.ndarray],
    grid: TokenGrid,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    Per layer, in forward order: heads fused (:func:`fuse_heads`), the lowest
    ``discard_ratio`` share zeroed (:func:`discard_lowest`), the residual path
    added (``0.5 A + 0.5 I``) and rows renormalized to sum to 1; the layers'
    matrices multiplied, last layer on the left: ``R = Ã_L … Ã_1``. Register
    tokens are left out of every layer first (their rows and columns).

    Args:
        attentions: per layer ``(N, heads, T, T)`` attention probabilities.
        grid: the model's token grid (which tokens are prefix, which registers).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: share of lowest fused entries zeroed, in ``[0, 1)``.

    Returns:
        ``(N, T', T')`` float64, ``T'`` the tokens without registers, in their
        original order.

    Example:
        >>> a = np.full((1, 1, 2, 2), 0.5)           # uniform attention, one head
        >>> rollout([a], TokenGrid((1, 1), prefix=1)).round(3).tolist()
        [[[0.75, 0.25], [0.25, 0.75]]]
    """
    keep = _kept(grid)
    joint = None
    for a in attentions:
        fused = fuse_heads(_keep_tokens(np.asarray(a, np.float64), keep), head_fusion)
        fused = discard_lowest(fused, discard_ratio, 0 if grid.class_token else None)
        eye = np.eye(fused.shape[-1])
        step = 0.5 * fused + 0.5 * eye
        step = step / step.sum(axis=-1, keepdims=True)
        joint = step if joint is None else step @ joint
    if joint is None:
        raise ValueError("rollout needs at least one attention layer; received none.")
    return joint


def gradient_rollout(
    attentions: Sequence[np.ndarray],
    gradients: Sequence[np.ndarray],
    grid: TokenGrid,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> np.ndarray:
    """Gradient-weighted attention (Chefer et al. 2021, ICCV, without relevance rules).

    "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", eq. 5-6 for self-attention: ``R = I``; per
    layer, in forward order, ``Ā = E_h[(∇A ⊙ A)^+]`` (the positive part per
    head, then the heads fused; ``head_fusion`` chooses mean — the paper's —
    max or min), the lowest ``discard_ratio`` share of ``Ā`` zeroed, and
    ``R = R + Ā R``. Register tokens are left out first.

    Args:
        attentions: per layer ``(N, heads, T, T)`` probabilities.
        gradients: per layer ``(N, heads, T, T)``: the target score's gradient
            with respect to them (:func:`attention_gradients`).
        grid: the model's token grid.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: share of lowest fused entries zeroed, in ``[0, 1)``.

    Returns:
        ``(N, T', T')`` float64 relevance, ``T'`` the tokens without registers.

    Example:
        >>> a = np.full((1, 1, 2, 2), 0.5); g = np.ones_like(a)
        >>> gradient_rollout([a], [g], TokenGrid((1, 1), prefix=1)).tolist()
        [[[1.5, 0.5], [0.5, 1.5]]]
    """
    if len(attentions) != len(gradients):
        raise ValueError(
            f"One gradient per attention layer: received {len(attentions)} attention layers "
            f"and {len(gradients)} gradients."
        )
    keep = _kept(grid)
    joint = None
    for a, g in zip(attentions, gradients, strict=True):
        a = _keep_tokens(np.asarray(a, np.float64), keep)
        g = _keep_tokens(np.asarray(g, np.float64), keep)
        fused = fuse_heads(np.maximum(a * g, 0.0), head_fusion)
        fused = discard_lowest(fused, discard_ratio, 0 if grid.class_token else None)
        if joint is None:
            joint = np.broadcast_to(np.eye(fused.shape[-1]), fused.shape).copy()
        joint = joint + fused @ joint
    if joint is None:
        raise ValueError("gradient_rollout needs at least one attention layer; received none.")
    return joint


def patch_relevance(joint: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """``(N, h, w)``: each patch's relevance to the model's output token.

    The output token is the class token (row 0) where the model has one;
    otherwise the model pools its patch tokens, and the rows of all patch
    tokens are averaged. ``joint`` comes from :func:`rollout` or
    :func:`gradient_rollout` (registers already left out).

    Example:
        >>> joint = np.arange(25.0).reshape(1, 5, 5)
        >>> patch_relevance(joint, TokenGrid((2, 2), prefix=1)).tolist()
        [[[1.0, 2.0], [3.0, 4.0]]]
    """
    first = grid.prefix - grid.registers  # patch tokens start here once registers are out
    if grid.class_token:
        row = joint[:, 0, first:]
    else:
        row = joint[:, first:, first:].mean(axis=1)
    return row.reshape(-1, *grid.grid)
