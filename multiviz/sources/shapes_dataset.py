"""A procedural image data set of simple shapes, with ground-truth masks and boxes.

Four classes — circle, square, triangle, cross — each drawn in one flat colour,
with random size, position and (except the circle) rotation, on a cluttered
background: a two-colour gradient, Gaussian noise, a few thin lines and soft
blobs that belong to no class. Every image comes with the shape's boolean mask
and its tight bounding box, so an attribution map can be scored against the
truth. Pure NumPy and deterministic given a seed: tests, docs and the built-in
model (:func:`multiviz.builtin_model`) need no download.

Images are channels-first, ``(3, H, W)`` float32 in ``[0, 1]``; Keras users
convert a batch with :func:`multiviz.to_channels_last`.

Boxes are ``(x0, y0, x1, y1)`` in pixels, ``x`` the column and ``y`` the row,
start inclusive and end exclusive: ``mask[y0:y1, x0:x1]`` holds every pixel of
the shape, and each of the four edges of that window touches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multiviz.core.params import names_parameters

__all__ = ["CLASS_NAMES", "ShapesData", "sample", "sample_image", "shapes_dataset"]

#: Class names, in label order.
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

_MIN_SIZE = 16
# shape radius as a fraction of the image's shorter side
_RADIUS = (0.14, 0.28)
# every shape fits in a disc of _EXTENT * radius around its centre
_EXTENT = 1.1
_NOISE = 0.04
# smallest RGB distance between the shape's colour and any colour of the background gradient
_CONTRAST = 0.4


@dataclass(frozen=True)
class ShapesData:
    """A batch of shape images with labels and ground truth.

    Attributes:
        images: float32 ``(N, 3, H, W)``, channels first, values in ``[0, 1]``.
        labels: int64 ``(N,)``, indices into ``class_names``.
        masks: bool ``(N, H, W)``, True on the pixels of the shape.
        boxes: int64 ``(N, 4)``, the tight box ``(x0, y0, x1, y1)`` of each
            mask, start inclusive, end exclusive (``mask[y0:y1, x0:x1]``).
        colors: float32 ``(N, 3)``, the RGB colour every shape pixel has.
        class_names: the name of each label.

    Slicing gives another :class:`ShapesData` (``data[:8]``, ``data[[0, 5]]``).

    Example:
        >>> data = shapes_dataset(4, size=32)
        >>> data.images.shape, data.masks.shape, len(data)
        ((4, 3, 32, 32), (4, 32, 32), 4)
        >>> [data.class_names[k] for k in data.labels]
        ['circle', 'square', 'triangle', 'cross']
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    colors: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        from multiviz.core.views import plural

        counts = np.bincount(np.asarray(self.labels), minlength=len(self.class_names))
        per = ", ".join(
            f"{plural(int(c), name)}" for name, c in zip(self.class_names, counts, strict=False)
        )
        h, w = self.images.shape[-2:] if self.images.ndim == 4 else ("?", "?")
        return f"ShapesData({plural(len(self), 'image')} of {h}x{w}: {per})"

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> ShapesData:
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1 if index != -1 else None)
        return ShapesData(
            self.images[index],
            self.labels[index],
            self.masks[index],
            self.boxes[index],
            self.colors[index],
            self.class_names,
        )


@names_parameters
def shapes_dataset(n: int, size: int | tuple[int, int] = 64, seed: int = 0) -> ShapesData:
    """Generate ``n`` shape images with labels, masks and boxes.

    Labels cycle through the classes (``0, 1, 2, 3, 0, …``), so every class
    appears ``n // 4`` or ``n // 4 + 1`` times and ``shapes_dataset(4)`` shows
    one of each. Item ``i`` depends only on ``(seed, i, size)``: a longer data
    set with the same seed starts with the shorter one.

    Args:
        n: number of images (0 or more).
        size: image side in pixels, or ``(height, width)``; at least 16.
        seed: any non-negative integer; the same seed gives the same data.

    Returns:
        A :class:`ShapesData` of length ``n``.

    Raises:
        ValueError: ``n`` is negative, or ``size`` is below 16 pixels.

    Example:
        >>> data = shapes_dataset(8, size=(32, 40), seed=1)
        >>> data.images.shape, data.images.dtype
        ((8, 3, 32, 40), dtype('float32'))
        >>> x0, y0, x1, y1 = data.boxes[0]
        >>> bool(data.masks[0, y0:y1, x0:x1].sum() == data.masks[0].sum())
        True
    """
    if n < 0:
        raise ValueError(f"`n` must be 0 or more. Received: n={n}")
    height, width = _check_size(size)
    items = [
        _render(np.random.default_rng([seed, i]), height, width, i % len(CLASS_NAMES))
        for i in range(n)
    ]
    return _stack(items, height, width)


def sample(
    seed: int = 0, size: int | tuple[int, int] = 64, label: int | str | None = None
) -> ShapesData:
    """One shape image with its ground truth, as a :class:`ShapesData` of length 1.

    Args:
        seed: any non-negative integer; the same seed gives the same image.
        size: image side in pixels, or ``(height, width)``; at least 16.
        label: the class, as an index or a name from :data:`CLASS_NAMES`;
            ``None`` picks one from the seed.

    Returns:
        A :class:`ShapesData` with ``N == 1``.

    Raises:
        ValueError: unknown ``label``, or ``size`` below 16 pixels.

    Example:
        >>> one = sample(seed=3, label="triangle")
        >>> one.class_names[one.labels[0]], one.images.shape
        ('triangle', (1, 3, 64, 64))
    """
    height, width = _check_size(size)
    rng = np.random.default_rng([seed, 2**32 - 1])  # a stream no shapes_dataset item uses
    if label is None:
        label = int(rng.integers(len(CLASS_NAMES)))
    return _stack([_render(rng, height, width, _check_label(label))], height, width)


@names_parameters
def sample_image(
    seed: int = 0, size: int | tuple[int, int] = 64, label: int | str | None = None
) -> np.ndarray:
    """One shape image, float32 ``(3, H, W)`` in ``[0, 1]`` (channels first).

    The same image as ``sample(seed, size, label).images[0]``; use
    :func:`sample` for its label, mask and box.

    Example:
        >>> img = sample_image(seed=0)
        >>> img.shape, img.dtype, bool(0 <= img.min() and img.max() <= 1)
        ((3, 64, 64), dtype('float32'), True)
    """
    return sample(seed, size, label).images[0]


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    sides = (
        [size, size] if np.isscalar(size) else list(size) if isinstance(size, (tuple, list)) else []
    )
    if len(sides) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sides
    ):
        raise ValueError(
            "`size` must be a whole number or a (height, width) pair of them. "
            f"Received: size={size!r}"
        )
    height, width = (sides[0], sides[-1])
    if min(height, width) < _MIN_SIZE:
        raise ValueError(
            f"`size` must be at least {_MIN_SIZE} pixels on each side. Received: size={size!r}"
        )
    return int(height), int(width)


def _check_label(label: int | str) -> int:
    if isinstance(label, str):
        if label not in CLASS_NAMES:
            raise ValueError(f"`label` must be one of {list(CLASS_NAMES)}. Received: {label!r}")
        return CLASS_NAMES.index(label)
    if not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(
            f"`label` must be in 0..{len(CLASS_NAMES) - 1} or a name from {list(CLASS_NAMES)}. "
            f"Received: {label!r}"
        )
    return int(label)


def _stack(items: list[tuple], height: int, width: int) -> ShapesData:
    if not items:
        return ShapesData(
            np.zeros((0, 3, height, width), np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, height, width), bool),
            np.zeros((0, 4), np.int64),
            np.zeros((0, 3), np.float32),
        )
    images, labels, masks, colors = zip(*items, strict=True)
    masks = np.stack(masks)
    return ShapesData(
        np.stack(images),
        np.asarray(labels, np.int64),
        masks,
        np.stack([_tight_box(m) for m in masks]),
        np.stack(colors),
    )


def _tight_box(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.int64)


def _render(
    rng: np.random.Generator, height: int, width: int, label: int
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Draw one image: background, clutter, then the shape in a flat colour."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel centres
    color = rng.uniform(0.0, 1.0, 3)
    image = _background(rng, xs, ys, color)
    for _ in range(rng.integers(1, 4)):
        _draw_line(rng, image, xs, ys)
    for _ in range(rng.integers(1, 4)):
        _draw_blob(rng, image, xs, ys)
    image += rng.normal(0.0, _NOISE, image.shape)
    np.clip(image, 0.0, 1.0, out=image)

    radius = rng.uniform(*_RADIUS) * min(height, width)
    reach = _EXTENT * radius + 1.0  # keep the whole shape inside the image
    cx = rng.uniform(reach, width - reach)
    cy = rng.uniform(reach, height - reach)
    angle = 0.0 if CLASS_NAMES[label] == "circle" else rng.uniform(0.0, 2 * np.pi)
    mask = _shape_mask(label, xs - cx, ys - cy, radius, angle)

    color32 = color.astype(np.float32)
    image = image.astype(np.float32)
    image[:, mask] = color32[:, None]
    return image, label, mask, color32


def _background(
    rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, avoid: np.ndarray
) -> np.ndarray:
    """A linear gradient between two colours; every colour on it is far from ``avoid``."""
    while True:
        a, b = rng.uniform(0.0, 1.0, (2, 3))
        if _segment_distance(avoid, a, b) >= _CONTRAST:
            break
    theta = rng.uniform(0.0, 2 * np.pi)
    t = xs * np.cos(theta) + ys * np.sin(theta)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return a[:, None, None] + t[None] * (b - a)[:, None, None]


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance from point ``p`` to the segment ``a``-``b``."""
    t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def _draw_line(rng: np.random.Generator, image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """A thin straight segment of random colour (clutter, no class)."""
    height, width = xs.shape
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    length = rng.uniform(0.1, 0.3) * min(height, width)
    theta = rng.uniform(0.0, np.pi)
    dx, dy = np.cos(theta), np.sin(theta)
    along = np.clip((xs - x0) * dx + (ys - y0) * dy, 0.0, length)
    dist = np.hypot(xs - (x0 + along * dx), ys - (y0 + along * dy))
    image[:, dist <= 0.6] = rng.uniform(0.0, 1.0, 3)[:, None]


def _draw_blob(rng: np.random.Generator, image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """A small soft Gaussian spot of random colour (clutter, no class)."""
    height, width = xs.shape
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    sigma = rng.uniform(0.02, 0.045) * min(height, width)
    alpha = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))[None]
    image *= 1.0 - alpha
    image += alpha * rng.uniform(0.0, 1.0, 3)[:, None, None]


def _shape_mask(label: int, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Pixels whose centre lies inside the shape (offsets ``dx, dy`` from its centre)."""
    # coordinates in the shape's own rotated frame
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    name = CLASS_NAMES[label]
    if name == "circle":
        return u**2 + v**2 <= r**2
    if name == "square":
        half = 0.75 * r
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if name == "triangle":  # equilateral, circumradius _EXTENT * r
        corners = [
            (_EXTENT * r * np.cos(a), _EXTENT * r * np.sin(a))
            for a in np.deg2rad([90.0, 210.0, 330.0])
        ]
        inside = np.ones(u.shape, bool)
        for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True):
            inside &= (bx - ax) * (v - ay) - (by - ay) * (u - ax) >= 0  # left of each CCW edge
        return inside
    arm, half_width = r, 0.33 * r  # cross: two bars
    return ((np.abs(u) <= arm) & (np.abs(v) <= half_width)) | (
        (np.abs(u) <= half_width) & (np.abs(v) <= arm)
    )
