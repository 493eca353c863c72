"""Attention rollout and gradient-weighted attention for vision transformers.

:func:`attention_rollout` asks the backend for each self-attention layer's
weights and input tokens (and, for ``method="grad"``, the gradient of the
target score at its output), recomputes the attention probabilities in NumPy
(:mod:`~multiviz.attribution.rollout_math`) — so fused attention kernels and
``need_weights=False`` do not matter — and rolls them out into one map per
image over the model's patch grid, upsampled to the input's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from multiviz.attribution import rollout_math
from multiviz.attribution.model_call import BATCH_SIZE, ModelCall, chunks
from multiviz.core.params import names_parameters
from multiviz.core.tokens import (
    ARTIFACT_FACTOR,
    TokenGrid,
    TokenGridError,
    fold_tokens,
    high_norm_tokens,
    token_grid_arg,
)
from multiviz.errors import MultivizWarning

__all__ = ["ROLLOUT_METHODS", "attention_rollout", "model_grid"]

#: ``"rollout"``: Abnar & Zuidema 2020; ``"grad"``: Chefer et al. 2021 (ICCV).
ROLLOUT_METHODS = ("rollout", "grad")


def model_grid(
    call: ModelCall, token_grid: Sequence[int] | None, prefix_tokens: int | None, method: str
) -> TokenGrid:
    """The caller's grid, else the one the backend reads from the model.

    Raises:
        TokenGridError: neither; the message names ``token_grid`` and ``prefix_tokens``.
    """
    given = token_grid_arg(token_grid, prefix_tokens)
    if given is not None:
        return given
    grid = call.backend.token_grid(call.model, call.size)
    if grid is None:
        raise TokenGridError(
            f"{method} cannot read this {type(call.model).__name__}'s patch grid (no timm, "
            "torchvision or multiviz patch embedding found). Received: token_grid=None."
            "\nhint: pass token_grid=(h, w) and prefix_tokens=P (class, distillation and "
            "register tokens before the patch tokens)."
        )
    return grid


@names_parameters
def attention_rollout(
    model: Any,
    x: Any,
    method: str = "rollout",
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.9,
    target: Any = None,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) or gradient-weighted attention (Chefer et al. 2021).

    ``method="rollout"``: "Quantifying Attention Flow in Transformers" (ACL):
    per layer the heads are fused, the lowest ``discard_ratio`` share of
    entries zeroed, the residual path added (``0.5 A + 0.5 I``, rows
    renormalized), and the layers multiplied; the class token's row (or, for a
    model that pools its patch tokens, the mean of their rows) gives each
    patch's share. ``target`` is checked but not used: attention does not depend on it.

    ``method="grad"``: "Generic Attention-model Explainability for
    Interpreting Bi-Modal and Encoder-Decoder Transformers" (ICCV), the
    self-attention rule without relevance propagation: ``R = I``, then per
    layer ``R += E_h[(∇A ⊙ A)^+] R``, with ``∇A`` the gradient of the
    ``target``'s score. ``head_fusion`` replaces the mean over heads;
    ``discard_ratio`` applies as for rollout.

    The attention probabilities are recomputed from each attention layer's
    input and its own weights (timm-style ``qkv``, ``nn.MultiheadAttention``,
    Keras ``MultiHeadAttention``), so fused kernels do not matter. Register
    tokens (Darcet et al. 2024) are left out. Patch tokens whose norm in the
    residual stream entering the last block exceeds 4x the image's median
    (high-norm artifact tokens) are named in one :class:`MultivizWarning`.

    Args:
        model: a vision transformer (``torch.nn.Module`` or Keras 3 model).
        x: a batch of images in the framework's layout.
        method: ``"rollout"`` or ``"grad"``.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: share of each layer's lowest fused entries set to 0,
            in ``[0, 1)`` (the class token's attention to itself is kept).
        target: for ``"grad"``: a class index, one per sample, a callable, or
            ``None`` for the top class.
        token_grid: ``(h, w)`` patch grid, for a model multiviz cannot read it from.
        prefix_tokens: tokens before the patch tokens, with ``token_grid``.
        normalize: scale each sample to ``[0, 1]``; False returns raw relevance.
        batch_size: the most inputs sent to the backend at once.

    Returns:
        float32 ``(N, H, W)`` at the input's size.

    Raises:
        ValueError: a bad ``method``, ``head_fusion`` or ``discard_ratio``.
        TokenGridError: the patch grid cannot be read and was not given, or
            does not fit the attention layers' token count.
        UnsupportedAttentionError: no self-attention layer, or window attention (Swin).

    Example:
        >>> import multiviz as mv
        >>> vit = mv.builtin_model("torch", arch="vit")                 # doctest: +SKIP
        >>> mv.attention_rollout(vit, mv.sample_image()[None]).shape   # doctest: +SKIP
        (1, 64, 64)
    """
    if method not in ROLLOUT_METHODS:
        raise ValueError(f"`method` must be one of {ROLLOUT_METHODS}. Received: method={method!r}")
    if head_fusion not in rollout_math.HEAD_FUSIONS:
        raise ValueError(
            f"`head_fusion` must be one of {rollout_math.HEAD_FUSIONS}. "
            f"Received: head_fusion={head_fusion!r}"
        )
    if not (isinstance(discard_ratio, (int, float)) and 0 <= discard_ratio < 1):
        raise ValueError(
            f"`discard_ratio` must be a number in [0, 1). Received: discard_ratio={discard_ratio!r}"
        )
    call = ModelCall.make(model, x, batch_size)
    checked = call.check_target(target)  # a bad target is a slip even where it is not used
    wanted = "none" if method == "rollout" else checked
    maps, artifacts = [], []
    grid = None
    for s in chunks(call.n, call.batch_size):
        t = wanted[s] if isinstance(wanted, np.ndarray) else wanted
        # first: a model with no readable attention (Swin's windows) says so before its grid
        io = call.backend.attention_io(call.model, call.x[s], t)
        if grid is None:
            grid = model_grid(call, token_grid, prefix_tokens, "attention_rollout")
        counts = {int(a.shape[1]) for a in io.inputs}
        if counts != {grid.tokens}:
            raise TokenGridError(
                f"The attention layers see {sorted(counts)} tokens; a {grid.grid[0]}x"
                f"{grid.grid[1]} grid with {grid.prefix} prefix tokens has {grid.tokens}."
                "\nhint: pass token_grid=(h, w) and prefix_tokens=P that fit the model."
            )
        probs = [
            rollout_math.attention_probabilities(a, w)
            for a, w in zip(io.inputs, io.weights, strict=True)
        ]
        if method == "rollout":
            joint = rollout_math.rollout(probs, grid, head_fusion, discard_ratio)
        else:
            assert io.grads is not None
            grads = [
                rollout_math.attention_gradients(a, g, w)
                for a, g, w in zip(io.inputs, io.grads, io.weights, strict=True)
            ]
            joint = rollout_math.gradient_rollout(probs, grads, grid, head_fusion, discard_ratio)
        maps.append(rollout_math.patch_relevance(joint, grid))
        if io.residual is not None:
            found = high_norm_tokens(fold_tokens(io.residual, grid)[0])
            found[:, 0] += s.start
            artifacts.append(found)
    if artifacts:
        warn_artifacts(np.concatenate(artifacts), "the residual stream entering the last block")
    return call.at_input(np.concatenate(maps).astype(np.float32), normalize)


def warn_artifacts(found: np.ndarray, where: str) -> None:
    """One :class:`MultivizWarning` naming the high-norm tokens ``(sample, row, col)``, if any."""
    if len(found) == 0:
        return
    shown = ", ".join(f"sample {n} patch ({r}, {c})" for n, r, c in found[:8].tolist())
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    warnings.warn(
        f"High-norm artifact tokens in {where} (norm > {ARTIFACT_FACTOR:g}x the image's median "
        f"patch-token norm; Darcet et al. 2024): {shown}{more}. Attention maps show such tokens "
        "as bright spots unrelated to the image; a model trained with register tokens avoids them.",
        MultivizWarning,
        stacklevel=3,
    )
