"""What a backend hands attention rollout: one attention layer's projections, inputs, gradients.

Framework-free records (NumPy only): the backends fill them in
(:mod:`multiviz.backends.torch.attention`, :mod:`multiviz.backends.keras.tokens`),
:mod:`multiviz.attribution.rollout_math` computes with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AttentionIO", "AttentionWeights"]


@dataclass(frozen=True)
class AttentionWeights:
    """One self-attention layer's projections, framework-free.

    ``q = x @ wq + bq`` per head (``einsum("ntc,chd->nhtd")``), likewise ``k``
    and ``v``; then optional per-head normalizations of ``q`` and ``k`` (timm's
    ``qk_norm``), ``A = softmax(scale * q k^T)`` over keys, ``y = sum_h (A_h
    v_h) @ wo[h] + bo``.

    Attributes:
        wq, wk, wv: ``(C, heads, head_dim)``.
        bq, bk, bv: ``(heads, head_dim)`` or ``None``.
        wo: ``(heads, head_dim, C_out)``: the output projection.
        scale: the logits' factor, normally ``head_dim ** -0.5``.
        q_norm, k_norm: ``(gamma, beta, eps)`` of a LayerNorm over ``head_dim``
            applied to ``q`` / ``k`` (``beta`` may be ``None``), or ``None``.
    """

    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    bq: np.ndarray | None = None
    bk: np.ndarray | None = None
    bv: np.ndarray | None = None
    scale: float | None = None
    q_norm: tuple[np.ndarray, np.ndarray | None, float] | None = None
    k_norm: tuple[np.ndarray, np.ndarray | None, float] | None = None

    @property
    def heads(self) -> int:
        return int(self.wq.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.wq.shape[2])

    @classmethod
    def from_fused(
        cls,
        w_qkv: np.ndarray,
        b_qkv: np.ndarray | None,
        w_out: np.ndarray,
        heads: int,
        **kwargs,
    ) -> AttentionWeights:
        """From one fused ``(3 * heads * d, C)`` input projection in PyTorch layout.

        That is timm's ``qkv.weight`` and ``nn.MultiheadAttention``'s
        ``in_proj_weight`` (rows: all of q, then k, then v; within each, head
        by head), with ``w_out`` the output projection's ``(C_out, heads * d)``
        weight.

        Example:
            >>> w = AttentionWeights.from_fused(np.zeros((24, 5)), None, np.zeros((5, 8)), heads=2)
            >>> w.wq.shape, w.wo.shape, w.heads, w.head_dim
            ((5, 2, 4), (2, 4, 5), 2, 4)
        """
        w_qkv = np.asarray(w_qkv, np.float64)
        c = w_qkv.shape[1]
        d = w_qkv.shape[0] // (3 * heads)
        per = w_qkv.reshape(3, heads, d, c).transpose(0, 3, 1, 2)  # (3, C, heads, d)
        b = None if b_qkv is None else np.asarray(b_qkv, np.float64).reshape(3, heads, d)
        w_out = np.asarray(w_out, np.float64)
        wo = w_out.T.reshape(heads, d, w_out.shape[0])
        return cls(
            per[0], per[1], per[2], wo,
            *(None, None, None) if b is None else (b[0], b[1], b[2]),
            **kwargs,
        )  # fmt: skip


@dataclass
class AttentionIO:
    """What a backend hands over for rollout: per attention layer, in model order.

    Attributes:
        names: the attention layers' names.
        weights: their :class:`AttentionWeights`.
        inputs: ``(N, T, C)`` float tokens each was given (batch first).
        grads: ``(N, T, C_out)`` d(score)/d(output) each, or ``None`` without a target.
        targets: the class scored per sample, or ``None`` (no gradients, or a
            callable target).
        residual: ``(N, T, C)`` the residual stream entering the last
            attention layer's block (before its norm), where the backend can
            find it, for high-norm token detection; else ``None``.
    """

    names: list[str]
    weights: list[AttentionWeights]
    inputs: list[np.ndarray]
    grads: list[np.ndarray] | None = None
    targets: np.ndarray | None = None
    residual: np.ndarray | None = None
