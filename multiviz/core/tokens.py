"""Token layers as images: the patch grid, folding tokens to maps, high-norm tokens.

A vision transformer's token layer outputs ``(N, T, C)``: ``P`` prefix tokens
(class token, distillation token, register tokens) followed by ``h * w`` patch
tokens in row-major order (row by row, as timm, torchvision and Keras models
flatten a patch grid). Folded, the patch tokens are a ``(N, C, h, w)`` map
like any convolution's; the prefix tokens stay ``(N, P, C)``.

How many tokens are prefix and what ``(h, w)`` is are facts about the model,
read from it by the backend (or given by the caller as ``token_grid=(h, w)``
and ``prefix_tokens=P``) — never guessed from ``T``: 197 tokens are a 14x14
grid with one class token, or a 28x7 grid, or 196 patches of a 2x98 strip
and one register.

NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from multiviz.errors import TokenGridError

__all__ = [
    "ARTIFACT_FACTOR",
    "ATTENTION",
    "FIRST",
    "LAST",
    "OTHER",
    "PATCHES",
    "TOKENS",
    "TOKENS_CF",
    "TokenGrid",
    "TokenGridError",
    "canonical_layer_shape",
    "fold_arrays",
    "fold_tokens",
    "high_norm_tokens",
    "token_grid_arg",
]

#: What a layer's output is, as a backend reports it (:func:`fold_arrays` reads these):
#: a channels-first map (also vectors and anything left as it is), a channels-last
#: ``(N, H, W, C)`` map (the backend has already moved its channels first), tokens
#: ``(N, prefix + h*w, C)``, patch tokens only ``(N, h*w, C)``, tokens the backend
#: has transposed to ``(N, C, T)``, attention internals (never an image), other.
FIRST, LAST, TOKENS, PATCHES, TOKENS_CF, ATTENTION, OTHER = (
    "channels_first",
    "channels_last",
    "tokens",
    "patches",
    "tokens_channels_first",
    "attention",
    "other",
)
_TOKEN_LAYOUTS = (TOKENS, PATCHES, TOKENS_CF)

#: A patch token whose norm exceeds this many times the median patch-token norm
#: of its image is a high-norm artifact token (Darcet et al. 2024).
ARTIFACT_FACTOR = 4.0


@dataclass(frozen=True)
class TokenGrid:
    """Where the patch tokens of a token layer are, and what the others are.

    Attributes:
        grid: ``(h, w)``: patch rows and patch columns.
        prefix: tokens before the patch tokens (class, distillation, registers).
        registers: how many of the prefix tokens, at its end, are register
            tokens (Darcet et al. 2024), which attention rollout leaves out.
        class_token: whether token 0 is a class token (the one a classifier
            reads); ``False`` for models that pool the patch tokens.

    Example:
        >>> g = TokenGrid((14, 14), prefix=5, registers=4)
        >>> g.tokens, g.register_indices
        (201, [1, 2, 3, 4])
    """

    grid: tuple[int, int]
    prefix: int = 1
    registers: int = 0
    class_token: bool = True

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.grid)
        object.__setattr__(self, "grid", (h, w))
        if h < 1 or w < 1 or not 0 <= self.registers <= self.prefix:
            raise TokenGridError(
                f"A token grid needs h, w >= 1 and 0 <= registers <= prefix. Received: "
                f"grid={self.grid}, prefix={self.prefix}, registers={self.registers}"
            )
        if self.class_token and self.prefix - self.registers < 1:
            object.__setattr__(self, "class_token", False)

    @property
    def patches(self) -> int:
        """``h * w``."""
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        """``prefix + h * w``: the token count a layer on this grid outputs."""
        return self.prefix + self.patches

    @property
    def register_indices(self) -> list[int]:
        """Token indices of the register tokens."""
        return list(range(self.prefix - self.registers, self.prefix))

    def fits(self, tokens: int) -> bool:
        """True when a layer with ``tokens`` tokens is on this grid."""
        return int(tokens) == self.tokens


def token_grid_arg(token_grid: Sequence[int] | None, prefix_tokens: int | None) -> TokenGrid | None:
    """The caller's ``token_grid=(h, w)`` / ``prefix_tokens=P`` as a :class:`TokenGrid`.

    ``None`` for both means "read it from the model". ``prefix_tokens``
    defaults to 1 (one class token) when only ``token_grid`` is given.

    Raises:
        TokenGridError: ``token_grid`` is not two positive ints, or
            ``prefix_tokens`` is not an int >= 0, or is given alone.

    Example:
        >>> token_grid_arg((7, 10), 1)
        TokenGrid(grid=(7, 10), prefix=1, registers=0, class_token=True)
        >>> token_grid_arg(None, None) is None
        True
    """
    if token_grid is None:
        if prefix_tokens is not None:
            raise TokenGridError(
                f"`prefix_tokens` needs `token_grid` too. Received: token_grid=None, "
                f"prefix_tokens={prefix_tokens!r}\nhint: pass token_grid=(h, w) as well."
            )
        return None
    try:
        h, w = (int(v) for v in token_grid)
        ok = h >= 1 and w >= 1 and tuple(token_grid) == (h, w)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TokenGridError(
            f"`token_grid` must be (h, w): two positive ints, patch rows and patch columns. "
            f"Received: token_grid={token_grid!r}"
        )
    p = 1 if prefix_tokens is None else prefix_tokens
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
        raise TokenGridError(
            f"`prefix_tokens` must be an int >= 0 (class, distillation and register tokens "
            f"before the patch tokens). Received: prefix_tokens={prefix_tokens!r}"
        )
    return TokenGrid((h, w), int(p), class_token=int(p) > 0)


def fold_tokens(
    tokens: np.ndarray, grid: TokenGrid, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``(N, T, C)`` tokens into a ``(N, C, h, w)`` patch map and ``(N, P, C)`` prefix.

    Patch token ``prefix + r * w + c`` becomes pixel ``(r, c)``. Both outputs
    are new contiguous arrays (the input is not aliased).

    Args:
        tokens: ``(N, T, C)`` with ``T == grid.tokens``.
        grid: the layer's :class:`TokenGrid`.
        name: the layer's name, for the error message.

    Returns:
        ``(maps, prefix)``.

    Raises:
        TokenGridError: ``tokens`` is not rank 3, or ``T`` does not fit ``grid``.

    Example:
        >>> t = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)   # 1 prefix + 2x3 patches
        >>> maps, prefix = fold_tokens(t, TokenGrid((2, 3), prefix=1))
        >>> maps.shape, prefix.shape
        ((2, 3, 2, 3), (2, 1, 3))
        >>> bool(maps[0, :, 1, 0].tolist() == t[0, 1 + 3].tolist())
        True
    """
    tokens = np.asarray(tokens)
    where = f"layer {name!r} " if name else ""
    if tokens.ndim != 3 or not grid.fits(tokens.shape[1]):
        raise TokenGridError(
            f"{where}outputs shape {tuple(tokens.shape)}; a {grid.grid[0]}x{grid.grid[1]} patch "
            f"grid with {grid.prefix} prefix tokens needs (N, {grid.tokens}, C)."
            "\nhint: pass token_grid=(h, w) and prefix_tokens=P for this layer's tokens."
        )
    n, _, c = tokens.shape
    h, w = grid.grid
    patches = tokens[:, grid.prefix :, :].reshape(n, h, w, c)
    maps = np.ascontiguousarray(patches.transpose(0, 3, 1, 2))
    return maps, np.array(tokens[:, : grid.prefix, :], copy=True)


def high_norm_tokens(maps: np.ndarray, factor: float = ARTIFACT_FACTOR) -> np.ndarray:
    """The patch tokens whose norm exceeds ``factor`` times their image's median token norm.

    Vision transformers trained at scale repurpose a few low-information patch
    tokens as global scratch space; those tokens' norms are many times the
    others', and attention maps show them as bright spots unrelated to the
    image (Darcet et al. 2024, "Vision Transformers Need Registers", ICLR).

    Args:
        maps: a folded token layer, ``(N, C, h, w)`` (the L2 norm is over ``C``).
        factor: the threshold as a multiple of the median norm, > 0.

    Returns:
        int64 ``(K, 3)``: one ``(sample, row, column)`` per high-norm token,
        in sample, then row, then column order. Empty ``(0, 3)`` when none.

    Example:
        >>> m = np.ones((1, 4, 2, 3), np.float32); m[0, :, 1, 2] = 10.0
        >>> high_norm_tokens(m).tolist()
        [[0, 1, 2]]
    """
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 4:
        raise TokenGridError(f"`maps` must be (N, C, h, w). Received shape {maps.shape}")
    if not factor > 0:
        raise ValueError(f"`factor` must be > 0. Received: factor={factor!r}")
    norms = np.sqrt((maps**2).sum(axis=1))  # (N, h, w)
    if norms.size == 0:
        return np.zeros((0, 3), np.int64)
    median = np.median(norms.reshape(norms.shape[0], -1), axis=1)
    hits = norms > factor * median[:, None, None]
    return np.argwhere(hits).astype(np.int64).reshape(-1, 3)


def _patch_grid(grid: TokenGrid, layout: str, tokens: int) -> TokenGrid:
    if layout == PATCHES or (layout == TOKENS_CF and tokens == grid.patches):
        return TokenGrid(grid.grid, prefix=0, class_token=False)
    return grid


def canonical_layer_shape(
    shape: Sequence[int | None] | None, layout: str, grid: TokenGrid | None
) -> tuple[int | None, ...] | None:
    """A layer's output shape as :func:`fold_arrays` will return it (batch axis ``None``).

    Example:
        >>> canonical_layer_shape((None, 197, 384), TOKENS, TokenGrid((14, 14)))
        (None, 384, 14, 14)
        >>> canonical_layer_shape((None, 7, 7, 768), LAST, None)
        (None, 768, 7, 7)
    """
    if shape is None:
        return None
    shape = (None, *shape[1:])
    if layout == LAST and len(shape) == 4:
        return (None, shape[3], shape[1], shape[2])
    if layout in _TOKEN_LAYOUTS and grid is not None and len(shape) == 3:
        channels = shape[1] if layout == TOKENS_CF else shape[2]
        return (None, channels, *grid.grid)
    return shape


def fold_arrays(
    arrays: dict[str, np.ndarray],
    layouts: dict[str, str],
    grid: TokenGrid | None,
    layout_of: Callable[[str], str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fold every token layer among ``arrays`` into a map; the other arrays pass through.

    Args:
        arrays: output key -> array as the backend returned it.
        layouts: output key (or its layer's name) -> layout (:data:`TOKENS`…).
        grid: the patch grid; ``None`` leaves token layers as they are.
        layout_of: how a key finds its layout (default: the key, then the key
            with its ``#k``/``[i]`` suffix removed).

    Returns:
        ``(arrays, prefix)``: maps ``(N, C, h, w)`` in place of token layers, and
        key -> ``(N, P, C)`` prefix tokens of each folded layer with a prefix.

    Raises:
        TokenGridError: a token layer's count does not fit ``grid``.

    Example:
        >>> t = np.zeros((1, 5, 2), np.float32)
        >>> out, pre = fold_arrays({"b": t}, {"b": TOKENS}, TokenGrid((2, 2)))
        >>> out["b"].shape, pre["b"].shape
        ((1, 2, 2, 2), (1, 1, 2))
    """
    if layout_of is None:

        def layout_of(key: str) -> str:
            if key in layouts:
                return layouts[key]
            base = key.split("#")[0].split("[")[0]
            return layouts.get(base, OTHER)

    out: dict[str, np.ndarray] = {}
    prefix: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        layout = layout_of(key)
        if grid is None or layout not in _TOKEN_LAYOUTS or np.ndim(arr) != 3:
            out[key] = arr
            continue
        if layout == TOKENS_CF:
            arr = np.swapaxes(arr, 1, 2)
        g = _patch_grid(grid, layout, arr.shape[1])
        out[key], pre = fold_tokens(arr, g, key)
        if g.prefix:
            prefix[key] = pre
    return out, prefix
