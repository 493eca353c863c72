"""Attention rollout math against hand computations and finite differences (NumPy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from multiviz.attribution.rollout_math import (
    AttentionWeights,
    attention_gradients,
    attention_probabilities,
    discard_lowest,
    fuse_heads,
    gradient_rollout,
    patch_relevance,
    rollout,
)
from multiviz.core.tokens import TokenGrid


def _weights(rng, c=4, heads=2, d=3, c_out=5, bias=True) -> AttentionWeights:
    b = (lambda: rng.normal(size=(heads, d))) if bias else (lambda: None)
    return AttentionWeights(
        wq=rng.normal(size=(c, heads, d)),
        wk=rng.normal(size=(c, heads, d)),
        wv=rng.normal(size=(c, heads, d)),
        wo=rng.normal(size=(heads, d, c_out)),
        bq=b(),
        bk=b(),
        bv=b(),
    )


def _probabilities_by_loops(x, w: AttentionWeights, scale):
    n, t, c = x.shape
    out = np.zeros((n, w.heads, t, t))
    for i in range(n):
        for h in range(w.heads):
            q = [[sum(x[i, a, ch] * w.wq[ch, h, e] for ch in range(c)) + (w.bq[h, e] if w.bq is not None else 0) for e in range(w.head_dim)] for a in range(t)]  # fmt: skip
            k = [[sum(x[i, a, ch] * w.wk[ch, h, e] for ch in range(c)) + (w.bk[h, e] if w.bk is not None else 0) for e in range(w.head_dim)] for a in range(t)]  # fmt: skip
            for a in range(t):
                logits = [
                    scale * sum(q[a][e] * k[b][e] for e in range(w.head_dim)) for b in range(t)
                ]
                z = sum(math.exp(v) for v in logits)
                out[i, h, a] = [math.exp(v) / z for v in logits]
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_probabilities_equal_the_formula_written_out(bias):
    rng = np.random.default_rng(1)
    w = _weights(rng, bias=bias)
    x = rng.normal(size=(2, 5, 4))
    got = attention_probabilities(x, w)
    assert np.allclose(got, _probabilities_by_loops(x, w, 3**-0.5), atol=1e-12)
    w2 = AttentionWeights(w.wq, w.wk, w.wv, w.wo, w.bq, w.bk, w.bv, scale=0.25)
    assert np.allclose(attention_probabilities(x, w2), _probabilities_by_loops(x, w2, 0.25))


def test_qk_norm_is_a_layer_norm_over_head_dim():
    rng = np.random.default_rng(2)
    w = _weights(rng)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    wn = AttentionWeights(w.wq, w.wk, w.wv, w.wo, w.bq, w.bk, w.bv, None, (gamma, beta, 1e-6), (gamma, None, 1e-6))  # fmt: skip
    x = rng.normal(size=(1, 4, 4))
    q = np.einsum("ntc,chd->nhtd", x, w.wq) + w.bq[None, :, None]
    k = np.einsum("ntc,chd->nhtd", x, w.wk) + w.bk[None, :, None]
    q = (q - q.mean(-1, keepdims=True)) / np.sqrt(q.var(-1, keepdims=True) + 1e-6) * gamma + beta
    k = (k - k.mean(-1, keepdims=True)) / np.sqrt(k.var(-1, keepdims=True) + 1e-6) * gamma
    logits = q @ k.swapaxes(-1, -2) / np.sqrt(3)
    want = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.allclose(attention_probabilities(x, wn), want)


def test_from_fused_reads_rows_as_q_k_v_then_heads():
    heads, d, c = 2, 3, 4
    rng = np.random.default_rng(3)
    w_qkv, b_qkv, w_out = rng.normal(size=(3 * heads * d, c)), rng.normal(size=3 * heads * d), rng.normal(size=(5, heads * d))  # fmt: skip
    w = AttentionWeights.from_fused(w_qkv, b_qkv, w_out, heads)
    x = rng.normal(size=(1, 6, c))
    full = x @ w_qkv.T + b_qkv  # (1, 6, 3*H*d): the framework's qkv linear
    for which, proj in enumerate([w.wq, w.wk, w.wv]):
        bias = [w.bq, w.bk, w.bv][which]
        for h in range(heads):
            cols = slice(which * heads * d + h * d, which * heads * d + (h + 1) * d)
            assert np.allclose(x @ proj[:, h, :] + bias[h], full[..., cols])
    heads_out = rng.normal(size=(1, 6, heads * d))  # concat_h, head-major
    assert np.allclose(
        heads_out @ w_out.T, np.einsum("nthd,hdo->nto", heads_out.reshape(1, 6, heads, d), w.wo)
    )


def test_attention_gradient_matches_finite_differences():
    """S = <g, y(A)> with y = sum_h (A_h v_h) wo[h]: dS/dA from the formula vs numerically."""
    rng = np.random.default_rng(4)
    w = _weights(rng)
    x = rng.normal(size=(1, 4, 4))
    g = rng.normal(size=(1, 4, 5))
    a = attention_probabilities(x, w)
    v = np.einsum("ntc,chd->nhtd", x, w.wv) + w.bv[None, :, None]

    def score(att):
        y = np.einsum("nhij,nhjd,hdo->nio", att, v, w.wo)
        return float((g * y).sum())

    want = np.zeros_like(a)
    eps = 1e-6
    for idx in np.ndindex(*a.shape):
        up, down = a.copy(), a.copy()
        up[idx] += eps
        down[idx] -= eps
        want[idx] = (score(up) - score(down)) / (2 * eps)
    assert np.allclose(attention_gradients(x, g, w), want, atol=1e-6)


def test_fuse_and_discard():
    a = np.array([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 0.0], [1.0, 8.0]]]])
    assert fuse_heads(a, "mean").tolist() == [[[3.0, 1.0], [2.0, 6.0]]]
    assert fuse_heads(a, "min").tolist() == [[[1.0, 0.0], [1.0, 4.0]]]
    with pytest.raises(ValueError, match="head_fusion"):
        fuse_heads(a, "median")
    m = np.array([[[0.05, 0.3, 0.2], [0.1, 0.1, 0.4], [0.6, 0.01, 0.02]]])
    # 9 entries, ratio 0.5 -> the 4 lowest: 0.01, 0.02, 0.05 at (0, 0), which stays, and the
    # first of the two 0.1 (ties by index)
    got = discard_lowest(m, 0.5)
    assert got.tolist() == [[[0.05, 0.3, 0.2], [0.0, 0.1, 0.4], [0.6, 0.0, 0.0]]]
    assert m[0, 1, 0] == 0.1  # a copy
    assert discard_lowest(m, 0.5, keep=None)[0, 0, 0] == 0.0
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="discard_ratio"):
            discard_lowest(m, bad)


def test_rollout_two_layers_by_hand():
    # Uniform two-token attention: each step is [[.75, .25], [.25, .75]]; two of them
    # multiply to [[.625, .375], [.375, .625]].
    a = np.full((1, 2, 2, 2), 0.5)
    joint = rollout([a, a], TokenGrid((1, 1), prefix=1))
    assert np.allclose(joint, [[[0.625, 0.375], [0.375, 0.625]]])
    # Non-uniform, one head: A1 = [[1, 0], [.5, .5]], A2 = [[.2, .8], [0, 1]]
    a1 = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    a2 = np.array([[[[0.2, 0.8], [0.0, 1.0]]]])
    s1 = np.array([[1.0, 0.0], [0.25, 0.75]])  # (0.5 A1 + 0.5 I), rows already sum to 1
    s2 = np.array([[0.6, 0.4], [0.0, 1.0]])
    assert np.allclose(rollout([a1, a2], TokenGrid((1, 1), prefix=1))[0], s2 @ s1)
    # discard_ratio 0.5: the 2 lowest of 4 entries of each fused matrix, (0, 0) never.
    # A1 flat [1, 0, .5, .5] -> lowest (0, 1) and (1, 0) (tie with (1, 1): lower index) ->
    # [[1, 0], [0, .5]] -> 0.5 A + 0.5 I = [[1, 0], [0, .75]] -> rows renormalized: I.
    # A2 flat [.2, .8, 0, 1] -> lowest (1, 0) and (0, 0), which stays -> A2 unchanged -> s2.
    got = rollout([a1, a2], TokenGrid((1, 1), prefix=1), discard_ratio=0.5)[0]
    assert np.allclose(got, s2 @ np.eye(2))


def test_rollout_leaves_registers_out():
    rng = np.random.default_rng(5)
    layers = [rng.dirichlet(np.ones(7), size=(2, 3, 7)) for _ in range(3)]  # T = 1 + 2 regs + 2x2
    grid = TokenGrid((2, 2), prefix=3, registers=2)
    keep = [0, 3, 4, 5, 6]
    sub = [a[:, :, keep][:, :, :, keep] for a in layers]
    want = rollout(sub, TokenGrid((2, 2), prefix=1))
    assert np.allclose(rollout(layers, grid), want)
    rel = patch_relevance(rollout(layers, grid), grid)
    assert np.allclose(rel, want[:, 0, 1:].reshape(2, 2, 2))


def test_gradient_rollout_by_hand():
    a1 = np.array([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]]])  # two heads
    g1 = np.array([[[[2.0, 1.0], [-1.0, 4.0]], [[1.0, -3.0], [1.0, 1.0]]]])
    # (g * a)^+ per head: [[2, 0], [0, 2]] and [[0, 0], [1, 0]]; mean: [[1, 0], [.5, 1]]
    abar1 = np.array([[1.0, 0.0], [0.5, 1.0]])
    a2 = np.array([[[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]])
    g2 = np.ones_like(a2)
    abar2 = np.full((2, 2), 0.5)
    r1 = np.eye(2) + abar1 @ np.eye(2)
    r2 = r1 + abar2 @ r1
    grid = TokenGrid((1, 1), prefix=1)
    assert np.allclose(gradient_rollout([a1, a2], [g1, g2], grid)[0], r2)
    maxed = np.array([[2.0, 0.0], [1.0, 2.0]])  # per-head max of the positive parts
    r1m = np.eye(2) + maxed
    r2m = r1m + abar2 @ r1m
    assert np.allclose(gradient_rollout([a1, a2], [g1, g2], grid, head_fusion="max")[0], r2m)
    with pytest.raises(ValueError, match="One gradient per attention layer"):
        gradient_rollout([a1, a2], [g1], grid)


def test_patch_relevance_class_token_or_pooled():
    joint = np.arange(2 * 7 * 7, dtype=np.float64).reshape(2, 7, 7)
    cls = patch_relevance(joint, TokenGrid((2, 3), prefix=1))
    assert cls.tolist() == joint[:, 0, 1:].reshape(2, 2, 3).tolist()
    pooled = patch_relevance(joint[:, 1:, 1:], TokenGrid((2, 3), prefix=0))
    assert np.allclose(pooled, joint[:, 1:, 1:].mean(1).reshape(2, 2, 3))
