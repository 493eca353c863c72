"""Figure-free images: feature-map grids and overlays as uint8 RGB, and saving them.

The fast path for files and HTML: normalize -> montage -> colorize is three
NumPy passes, and :func:`save_image` hands the array to Pillow. Nothing here
creates a matplotlib figure (matplotlib is only used for its colormaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.core.layout import infer_layout, take_sample
from multiviz.core.normalize import NormInfo, check_mode, resolve_mode
from multiviz.core.normalize import normalize as normalize_maps  # `normalize` is a parameter here
from multiviz.core.params import names_parameters
from multiviz.core.reduce import check_channels, select_channels
from multiviz.core.resize import resize_bilinear
from multiviz.errors import InputShapeError
from multiviz.render.colors import colorize, default_cmap
from multiviz.render.montage import montage, tiling

__all__ = [
    "BLENDS",
    "MapSelection",
    "as_rgb_float",
    "feature_map_image",
    "overlay_image",
    "overlay_style",
    "save_image",
    "select_maps",
]


# --------------------------------------------------------------------------- feature maps


@dataclass(frozen=True)
class MapSelection:
    """The maps a grid shows, normalized, and where they came from.

    Attributes:
        values: the chosen maps scaled into [0, 1]: ``(K, H, W)``, ``(K, L)``,
            or for a vector the ``(F,)`` values themselves.
        channels: channel index of each tile (feature indices for a vector).
        info: :class:`~multiviz.core.normalize.NormInfo` of the whole sample (index
            it by channel number).
        layout: ``"CHW"``, ``"CL"`` or ``"F"`` (after taking the sample).
        total: channels in the layer (features for a vector).
        sample: the sample index taken from a batch, ``None`` if unbatched.
        mode: the normalization mode used (``"auto"`` resolved).
    """

    values: np.ndarray
    channels: np.ndarray
    info: NormInfo
    layout: str
    total: int
    sample: int | None
    mode: str


def select_maps(
    maps: np.ndarray,
    *,
    sample: int = 0,
    channels: Sequence[int] | np.ndarray | None = None,
    max_maps: int | None = None,
    normalize: str = "auto",
    percentile: Sequence[float] = (1, 99),
    layout: str | None = None,
) -> MapSelection:
    """Take a sample, choose channels, normalize: what every feature-map view draws.

    The whole sample is normalized (``"layer"`` scaling means the layer, not
    the channels shown; ``"auto"`` is decided on the whole sample); then the
    chosen channels, at most ``max_maps``, are kept.

    Example:
        >>> sel = select_maps(np.random.rand(2, 8, 5, 6), sample=1, max_maps=3)
        >>> sel.values.shape, sel.channels.tolist(), sel.total, sel.layout
        ((3, 5, 6), [0, 1, 2], 8, 'CHW')
    """
    check_mode(normalize, "normalize")
    arr = np.asarray(maps)
    lay = infer_layout(arr, layout)
    batched = lay.startswith("N")
    arr, lay = take_sample(arr, lay, sample)
    if max_maps is not None and (
        isinstance(max_maps, bool) or not isinstance(max_maps, int | np.integer) or max_maps < 1
    ):
        raise ValueError(
            f"`max_maps` must be a positive int or None. Received: max_maps={max_maps!r}"
        )
    normed, info = normalize_maps(
        arr, normalize, percentile=percentile, layout=lay, return_info=True
    )
    if lay == "F":  # one map: the vector; `channels` picks features, max_maps does not apply
        idx = check_channels(channels, arr.shape[0])
    else:
        idx = select_channels(arr, channels, layout=lay)
        if max_maps is not None:
            idx = idx[:max_maps]
    return MapSelection(
        values=normed[idx],
        channels=idx,
        info=info,
        layout=lay,
        total=int(arr.shape[0]),
        sample=(sample if sample >= 0 else sample + np.asarray(maps).shape[0]) if batched else None,
        mode=info.mode,
    )


@names_parameters
def feature_map_image(
    maps: np.ndarray,
    *,
    sample: int = 0,
    channels: Sequence[int] | np.ndarray | None = None,
    max_maps: int | None = None,
    cmap: str | Any | None = None,
    normalize: str = "auto",
    percentile: Sequence[float] = (1, 99),
    ncols: int | None = None,
    pad: int = 1,
    upscale: int = 1,
    background: tuple[int, int, int] | None = None,
    labels: bool = False,
    layout: str | None = None,
) -> np.ndarray:
    """A grid of feature maps as one uint8 RGB image, without a figure.

    Equals ``colorize(montage(normalize(maps)[channels]), cmap)``, each pixel
    repeated ``upscale`` times: no resampling, no visual loss. Use it for
    PNGs and HTML; :func:`multiviz.plot_feature_maps` draws the same grid
    with labels and a colorbar.

    Args:
        maps: ``(C, H, W)``, ``(N, C, H, W)`` (``sample`` picks one),
            ``(C, L)``, ``(F,)``, or an entry of :class:`~multiviz.Activations`.
        sample: index into the batch axis, when there is one.
        channels: channel indices to show (e.g. from
            :func:`multiviz.select_channels`), in that order; default all.
        max_maps: show at most this many of them.
        cmap: matplotlib colormap; default ``"gray"``, or ``"RdBu_r"`` (a
            diverging map, 0 at its white centre) when the scaling is symmetric.
        normalize: scaling mode, see :func:`multiviz.normalize`; default
            ``"auto"``: ``"symmetric"`` for a sample with negative values,
            else ``"map"`` (each map on its own).
        percentile: for ``normalize="percentile"``.
        ncols: tiles per row (default near-square).
        pad: background pixels between tiles and around the border.
        upscale: integer factor each pixel is repeated by (nearest neighbour).
        background: RGB of padding; default chosen to stand apart from ``cmap``.
        labels: stamp each tile's channel number in its top-left corner
            (white digits on black, sized to the tile; tiles too small for
            the number get none). Off by default: the grid is then exactly
            ``colorize(montage(...))``.
        layout: ``"NCL"`` / ``"NF"`` for batches of 1-D maps / vectors.

    Returns:
        uint8 array ``(height, width, 3)``.

    Raises:
        ValueError: bad mode, colormap, channels, ``upscale``…
        InputShapeError: the array's rank is not a canonical layout.

    Example:
        >>> rgb = feature_map_image(np.random.rand(16, 28, 28), cmap="viridis", upscale=2)
        >>> rgb.shape, rgb.dtype
        ((234, 234, 3), dtype('uint8'))
    """
    if isinstance(upscale, bool) or not isinstance(upscale, int | np.integer) or upscale < 1:
        raise ValueError(f"`upscale` must be a positive int. Received: upscale={upscale!r}")
    sel = select_maps(
        maps,
        sample=sample,
        channels=channels,
        max_maps=max_maps,
        normalize=normalize,
        percentile=percentile,
        layout=layout,
    )
    grid = montage(sel.values, ncols=ncols, pad=pad, layout=sel.layout)
    rgb = colorize(grid, cmap or default_cmap(sel.mode), background=background)
    if upscale > 1:
        rgb = np.repeat(np.repeat(rgb, upscale, axis=0), upscale, axis=1)
    if labels and sel.layout == "CHW":
        t = tiling(sel.values, ncols=ncols, pad=pad, layout=sel.layout)
        for i, ch in enumerate(sel.channels):
            y, x = t.origin(i)
            stamp_number(
                rgb, int(ch), (y * upscale, x * upscale), (t.tile[0] * upscale, t.tile[1] * upscale)
            )
    return rgb


# 3x5 pixel digits, row by row: enough to number tiles without a font or a figure
_DIGITS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
}


def stamp_number(
    rgb: np.ndarray, number: int, origin: tuple[int, int], tile: tuple[int, int]
) -> bool:
    """Draw ``number`` in white on a black box at the top-left of a tile, in place.

    The digits are 3x5 pixels, enlarged by whole pixels to about a sixth of
    the tile's height; the box never covers more than 60% of the tile's width
    or 40% of its height. Returns False (and draws nothing) when the tile is
    too small for the number at the smallest size.

    Example:
        >>> img = np.zeros((20, 20, 3), np.uint8)
        >>> stamp_number(img, 7, (0, 0), (20, 20)), int(img[1, 1, 0]), int(img[3, 1, 0])
        (True, 255, 0)
    """
    text = str(number)
    h, w = tile
    width = 4 * len(text) + 1  # in glyph pixels: 3 per digit, 1 between, 1 each side
    s = max(1, round(h / 30))
    while s > 1 and (width * s > 0.6 * w or 7 * s > 0.4 * h):
        s -= 1
    if width * s > 0.6 * w or 7 * s > 0.4 * h:
        return False
    y0, x0 = origin
    rgb[y0 : y0 + 7 * s, x0 : x0 + width * s] = 0
    for k, ch in enumerate(text):
        glyph = np.array([int(b) for b in _DIGITS[ch]], bool).reshape(5, 3)
        big = np.repeat(np.repeat(glyph, s, axis=0), s, axis=1)
        top, left = y0 + s, x0 + s + 4 * k * s
        region = rgb[top : top + 5 * s, left : left + 3 * s]
        region[big] = 255
    return True


# --------------------------------------------------------------------------- overlays


def as_rgb_float(image: np.ndarray) -> np.ndarray:
    """Check an image and return it as float64 RGB ``(H, W, 3)`` in [0, 1].

    Accepts ``(H, W, 3)`` / ``(H, W, 4)`` (alpha dropped) / ``(H, W, 1)`` /
    ``(H, W)``, uint8 (0-255) or float in [0, 1].

    Raises:
        InputShapeError: channels-first ``(3, H, W)``, a batch, or another shape.
        ValueError: float values outside [0, 1], or integers outside 0-255.

    Example:
        >>> as_rgb_float(np.full((2, 3), 255, np.uint8)).shape
        (2, 3, 3)
    """
    img = np.asarray(image)
    shape = img.shape
    if img.ndim == 4 or (img.ndim == 3 and shape[-1] not in (1, 3, 4)):
        if img.ndim == 3 and shape[0] in (1, 3, 4):
            raise InputShapeError(
                f"The image has shape {shape}: channels first. Overlays need channels last "
                f"(H, W, 3). Use mv.to_channels_last(batch)[i] on a (N, 3, H, W) batch, or "
                f"np.moveaxis(image, 0, -1) for one image."
            )
        raise InputShapeError(
            f"`image` must be one image (H, W, 3), (H, W, 4), (H, W, 1) or (H, W). Received shape {shape}"
            + (": a batch — pass one image, e.g. images[0]." if img.ndim == 4 else ".")
        )
    if img.ndim not in (2, 3):
        raise InputShapeError(f"`image` must be (H, W, 3) or (H, W). Received shape {shape}.")
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.dtype.kind == "b":
        return img.astype(np.float64)
    if img.dtype.kind in "iu":
        if img.size and (img.min() < 0 or img.max() > 255):
            raise ValueError(
                f"An integer image must hold 0-255. Received values in [{img.min()}, {img.max()}]."
            )
        return img.astype(np.float64) / 255.0
    if img.dtype.kind != "f":
        raise TypeError(f"Expected a numeric image. Received dtype {img.dtype}.")
    out = np.nan_to_num(img.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 1.0)
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"A float image must be in [0, 1]. Received values in [{lo:.4g}, {hi:.4g}]. "
            "Divide 0-255 images by 255; undo mean/std normalization (or rescale with "
            "(x - x.min()) / (x.max() - x.min())) before overlaying."
        )
    return np.clip(out, 0.0, 1.0)


def _as_heatmap(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap)
    while heat.ndim > 2 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise InputShapeError(
            f"`heatmap` must be one 2-D map (h, w). Received shape {np.shape(heatmap)}.\n"
            "hint: pass one sample (cam[i]); reduce feature maps first with mv.aggregate(maps)"
        )
    return heat


#: how a heatmap is mixed into the image
BLENDS = ("value", "uniform")


def overlay_style(
    heat: np.ndarray,
    *,
    blend: str = "value",
    cmap: str | Any | None = None,
    normalize: str | None = None,
    alpha: float | None = None,
) -> tuple[str | Any, str, float]:
    """``(cmap, normalize, alpha)`` an overlay of ``heat`` uses, the defaults filled in.

    With ``blend="value"``: ``"turbo"``, or ``"RdBu_r"`` for signed maps
    (scaled symmetrically, 0 transparent), at most ``alpha=0.6``; with
    ``blend="uniform"`` (the classic look): ``"jet"`` at ``alpha=0.5``.

    Example:
        >>> overlay_style(np.ones((2, 2))), overlay_style(-np.ones((2, 2)))[:2]
        (('turbo', 'map', 0.6), ('RdBu_r', 'symmetric'))
        >>> overlay_style(np.ones((2, 2)), blend="uniform")
        ('jet', 'map', 0.5)
    """
    if blend not in BLENDS:
        raise ValueError(f"`blend` must be one of {list(BLENDS)}. Received: blend={blend!r}")
    if normalize is not None:
        check_mode(normalize, "normalize")
    mode = resolve_mode(heat, "auto" if normalize is None else normalize)
    if cmap is None:
        cmap = "jet" if blend == "uniform" else ("RdBu_r" if mode == "symmetric" else "turbo")
    if alpha is None:
        alpha = 0.5 if blend == "uniform" else 0.6
    from multiviz.core.checks import check_number

    check_number(alpha, "alpha", low=0, high=1)
    return cmap, mode, float(alpha)


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float | None = None,
    cmap: str | Any | None = None,
    normalize: str | None = None,
    percentile: Sequence[float] = (1, 99),
    blend: str = "value",
) -> tuple[np.ndarray, NormInfo]:
    """:func:`overlay_image`, also returning how the heatmap was scaled."""
    heat = _as_heatmap(heatmap)
    cmap, mode, alpha = overlay_style(
        heat, blend=blend, cmap=cmap, normalize=normalize, alpha=alpha
    )

    img = as_rgb_float(image)
    scaled, info = normalize_maps(heat[None], mode, percentile=percentile, return_info=True)
    up = np.clip(resize_bilinear(scaled[0], img.shape[:2]), 0.0, 1.0)
    color = colorize(up, cmap).astype(np.float64) / 255.0
    if blend == "uniform":
        weight = np.float64(alpha)
    elif mode == "symmetric":  # 0 sits at 0.5: opacity grows with the distance from it
        weight = (alpha * np.abs(2.0 * up - 1.0))[..., None]
    else:
        weight = (alpha * up)[..., None]
    out = (1.0 - weight) * img + weight * color
    return np.rint(out * 255.0).astype(np.uint8), info


@names_parameters
def overlay_image(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float | None = None,
    cmap: str | Any | None = None,
    normalize: str | None = None,
    percentile: Sequence[float] = (1, 99),
    blend: str = "value",
) -> np.ndarray:
    """Blend a colormapped heatmap over an image: uint8 RGB, no figure.

    The heatmap is scaled into [0, 1] (:func:`multiviz.normalize`), upsampled
    bilinearly to the image's size (half-pixel centres, as torch and TF do),
    colormapped, and mixed: ``(1 - a) * image + a * colour``. With
    ``blend="value"`` (the default) the opacity ``a`` follows the map,
    ``a = alpha * value`` (``alpha * |2 value - 1|`` for a signed map, whose 0
    sits at the centre), so where the map is low the image shows unchanged
    and its colours stay readable; with ``blend="uniform"`` ``a = alpha``
    everywhere, and the default colormap is ``"jet"``: the classic look.

    Args:
        image: ``(H, W, 3)`` uint8 or float in [0, 1], or ``(H, W)`` grey.
            Channels-first ``(3, H, W)`` is refused, not guessed.
        heatmap: ``(h, w)`` map, any size (a CAM, an aggregate map…).
        alpha: the heatmap's largest opacity; default 0.6 (``"uniform"``: 0.5).
        cmap: colormap of the heatmap; default ``"turbo"`` (a perceptually
            smooth rainbow), ``"RdBu_r"`` for a signed map, ``"jet"`` with ``blend="uniform"``.
        normalize: how the heatmap is scaled (see :func:`multiviz.normalize`);
            default ``"auto"``: ``"symmetric"`` for a signed map, else ``"map"``.
        percentile: for ``normalize="percentile"``.
        blend: ``"value"`` or ``"uniform"``, see above.

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        InputShapeError: channels-first or batched image, heatmap not 2-D.
        ValueError: float image outside [0, 1], ``alpha`` outside [0, 1], bad ``blend``.

    Example:
        >>> img = np.zeros((32, 40, 3), np.uint8)
        >>> overlay_image(img, np.random.rand(4, 5), alpha=0.4).shape
        (32, 40, 3)
        >>> classic = overlay_image(img, np.random.rand(4, 5), blend="uniform")  # jet, alpha 0.5
    """
    rgb, _ = overlay(
        image,
        heatmap,
        alpha=alpha,
        cmap=cmap,
        normalize=normalize,
        percentile=percentile,
        blend=blend,
    )
    return rgb


# --------------------------------------------------------------------------- saving


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Integers 0-255 or floats in [0, 1] (NaN -> 0) as uint8, keeping the shape."""
    if arr.dtype.kind in "biu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"Integer images must hold 0-255. Received [{arr.min()}, {arr.max()}]."
            )
        return arr.astype(np.uint8)
    if arr.dtype.kind != "f":
        raise TypeError(f"Expected a numeric image. Received dtype {arr.dtype}.")
    out = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    if out.size and (out.min() < -1e-3 or out.max() > 1 + 1e-3):
        raise ValueError(
            f"Float images must be in [0, 1]. Received [{out.min():.4g}, {out.max():.4g}]."
        )
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


@names_parameters
def save_image(image: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write an RGB array (with Pillow) or a matplotlib Figure (``savefig``) to ``path``.

    Args:
        image: uint8 ``(H, W, 3)``, ``(H, W, 4)`` or ``(H, W)``; float arrays
            in [0, 1] are scaled to 0-255; or a ``matplotlib.figure.Figure``.
        path: file name; the format follows the extension. Missing parent
            folders are created.
        **kwargs: passed to ``PIL.Image.save`` (PNGs default to
            ``compress_level=1``) or ``Figure.savefig`` (e.g. ``dpi=150``).

    Returns:
        The path written.

    Raises:
        InputShapeError: an array of another shape.
        TypeError: neither an array nor a figure.
        ValueError: an array's ``path`` ends in an extension Pillow does not write.

    Example:
        >>> save_image(np.zeros((4, 5, 3), np.uint8), "/tmp/mv_doctest.png").name
        'mv_doctest.png'
    """
    path = Path(path)
    if not hasattr(image, "savefig"):
        from PIL import Image

        if path.suffix.lower() not in Image.registered_extensions():
            raise ValueError(
                "`path` must end in an image format Pillow writes (.png, .jpg, .tif, .webp...). "
                f"Received: path={str(path)!r}"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(image, "savefig"):
        image.savefig(path, **kwargs)
        return path
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "`image` must be a uint8 RGB array or a matplotlib Figure. "
            f"Received: image of type {type(image).__name__}"
        )
    arr = image
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise InputShapeError(
            f"`image` must be (H, W, 3), (H, W, 4) or (H, W). Received shape {arr.shape}."
        )
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    from PIL import Image

    if path.suffix.lower() == ".png":
        # level 1: several times faster than zlib's default, and on noisy
        # feature maps no bigger
        kwargs.setdefault("compress_level", 1)
    Image.fromarray(arr).save(path, **kwargs)
    return path
