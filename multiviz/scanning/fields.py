"""Receptive fields: the input pixels a unit of a feature map sees.

Along each spatial axis a chain of convolutions and poolings maps unit ``i``
of a layer to an interval of input pixels that is an affine function of
``i`` (Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional
Neural Networks", Distill 2019). Three numbers per axis describe it:

* ``size`` — the field's extent in input pixels, ``r``;
* ``jump`` — the distance in input pixels between neighbouring units, ``j``
  (the product of the strides so far);
* ``start`` — the centre of unit 0 in input coordinates, where pixel ``p``
  spans ``[p, p + 1)`` (so the first pixel's centre is 0.5).

A layer with kernel ``k``, stride ``s``, padding ``p`` (pixels added before
the first input) and dilation ``d`` (effective kernel ``k' = d (k - 1) + 1``)
turns ``(r, j, start)`` into ``(r + (k' - 1) j, j s, start + ((k' - 1) / 2 - p) j)``.
Unit ``i`` then sees ``[start + i j - r / 2, start + i j + r / 2)``, clipped
to the image.

Where a model is not a plain chain (residual blocks, concatenations),
:func:`field_from_response` reads the same three numbers off a probe: which
output units change when single input pixels change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Geometry",
    "ReceptiveField",
    "compose",
    "field_from_response",
    "output_size",
    "padding_before",
]


@dataclass(frozen=True)
class Geometry:
    """How one layer maps its input grid to its output grid, per spatial axis.

    Attributes:
        kernel: kernel size per axis, e.g. ``(3, 3)``.
        stride: stride per axis.
        padding: pixels added before and after per axis, ``((top, bottom),
            (left, right))``, or ``"same"`` / ``"valid"``: ``"same"`` pads
            ``max((ceil(n / s) - 1) s + k' - n, 0)`` in all, half of it
            (rounded down) before — TensorFlow's rule, also PyTorch's for
            stride 1.
        dilation: dilation per axis.

    Example:
        >>> g = Geometry((3, 3), (2, 2), "same", (1, 1))
        >>> g.pads((32, 31))
        ((0, 1), (1, 1))
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...] | str = "valid"
    dilation: tuple[int, ...] | None = None

    def effective_kernel(self) -> tuple[int, ...]:
        """``d (k - 1) + 1`` per axis."""
        dil = self.dilation or (1,) * len(self.kernel)
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, dil, strict=True))

    def pads(self, input_size: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` padding per axis for an input of ``input_size``."""
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return tuple((0, 0) for _ in self.kernel)
            if self.padding != "same":
                raise ValueError(
                    f"`padding` must be 'same', 'valid' or ((before, after), ...). "
                    f"Received: padding={self.padding!r}"
                )
            return tuple(
                padding_before(n, k, s)
                for n, k, s in zip(input_size, self.effective_kernel(), self.stride, strict=True)
            )
        return tuple((int(a), int(b)) for a, b in self.padding)

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """The output grid's size for an input of ``input_size``."""
        return tuple(
            output_size(n, k, s, pad)
            for n, k, s, pad in zip(
                input_size,
                self.effective_kernel(),
                self.stride,
                self.pads(input_size),
                strict=True,
            )
        )


def padding_before(n: int, k_eff: int, stride: int) -> tuple[int, int]:
    """``"same"`` padding (before, after) of one axis of length ``n``.

    Example:
        >>> padding_before(32, 3, 2), padding_before(31, 3, 2), padding_before(8, 2, 2)
        ((0, 1), (1, 1), (0, 0))
    """
    total = max((-(-n // stride) - 1) * stride + k_eff - n, 0)
    return total // 2, total - total // 2


def output_size(n: int, k_eff: int, stride: int, pad: tuple[int, int]) -> int:
    """``floor((n + before + after - k') / s) + 1``: one axis's output length.

    Example:
        >>> output_size(64, 3, 1, (1, 1)), output_size(64, 2, 2, (0, 0))
        (64, 32)
    """
    return (n + pad[0] + pad[1] - k_eff) // stride + 1


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of every unit of one feature map.

    Attributes:
        size: field extent in input pixels per axis ``(rows, cols)``; may
            exceed the image (boxes are clipped).
        jump: input pixels between neighbouring units per axis.
        start: centre of unit ``(0, 0)`` per axis, in coordinates where pixel
            ``p`` spans ``[p, p + 1)``.
        input_size: the image's ``(height, width)``.
        method: ``"composed"`` (from the layers' geometry) or ``"probed"``.

    Example:
        >>> rf = compose([Geometry((3, 3), (1, 1), ((1, 1), (1, 1)))] * 2, (8, 8))
        >>> rf.size, rf.box(0, 0), rf.box(3, 4)
        ((5.0, 5.0), (0, 0, 3, 3), (2, 1, 7, 6))
    """

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    input_size: tuple[int, int]
    method: str = "composed"

    def centers(self, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        """Centres of unit rows and columns in input coordinates, float64 ``(n_rows,)``, ``(n_cols,)``."""
        rows = self.start[0] + self.jump[0] * np.arange(n_rows)
        cols = self.start[1] + self.jump[1] * np.arange(n_cols)
        return rows, cols

    def boxes(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Boxes ``(x0, y0, x1, y1)`` of units at ``rows``, ``cols``: int64 ``(n, 4)``.

        Input pixels, start inclusive and end exclusive, clipped to the
        image (like :class:`multiviz.sources.shapes_dataset.ShapesData` boxes).
        """
        r = np.asarray(rows, np.float64).reshape(-1)
        c = np.asarray(cols, np.float64).reshape(-1)
        height, width = self.input_size
        cy, cx = self.start[0] + self.jump[0] * r, self.start[1] + self.jump[1] * c
        half_y, half_x = self.size[0] / 2, self.size[1] / 2
        y0 = np.clip(np.floor(cy - half_y + 1e-9), 0, height)
        y1 = np.clip(np.ceil(cy + half_y - 1e-9), 0, height)
        x0 = np.clip(np.floor(cx - half_x + 1e-9), 0, width)
        x1 = np.clip(np.ceil(cx + half_x - 1e-9), 0, width)
        return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The box ``(x0, y0, x1, y1)`` of the unit at ``(row, col)`` (see :meth:`boxes`)."""
        return tuple(int(v) for v in self.boxes(np.array([row]), np.array([col]))[0])


def compose(
    layers: Sequence[Geometry],
    input_size: Sequence[int],
    *,
    check_sizes: Sequence[Sequence[int] | None] | None = None,
) -> ReceptiveField:
    """The receptive field after a chain of layers, from their geometry.

    Args:
        layers: the spatial layers from the input to the layer of interest,
            in order (layers that keep the grid — activations, normalization,
            element-wise ones — are left out).
        input_size: the image's ``(height, width)``.
        check_sizes: optional output ``(height, width)`` of each layer, as
            the model reported it: a mismatch means the layers are not one
            chain (a branch such as a residual shortcut was listed), and
            raises.

    Returns:
        A :class:`ReceptiveField` with ``method="composed"``.

    Raises:
        ValueError: a layer's geometry does not have two axes, or a reported
            output size differs from the composed one.

    Example:
        >>> pool = Geometry((2, 2), (2, 2))
        >>> conv = Geometry((3, 3), (1, 1), "same")
        >>> rf = compose([conv, pool, conv, pool], (64, 64))
        >>> rf.size, rf.jump, rf.start
        ((10.0, 10.0), (4.0, 4.0), (2.0, 2.0))
    """
    size = [1.0, 1.0]
    jump = [1.0, 1.0]
    start = [0.5, 0.5]
    grid = [int(s) for s in input_size]
    if len(grid) != 2:
        raise ValueError(f"`input_size` must be (height, width). Received: {tuple(input_size)}")
    for i, g in enumerate(layers):
        if len(g.kernel) != 2 or len(g.stride) != 2:
            raise ValueError(f"Layer {i}'s geometry must have two axes. Received: {g}")
        pads = g.pads(grid)
        for a, (k, s, (before, _)) in enumerate(
            zip(g.effective_kernel(), g.stride, pads, strict=True)
        ):
            start[a] += ((k - 1) / 2 - before) * jump[a]
            size[a] += (k - 1) * jump[a]
            jump[a] *= s
        grid = list(g.output_size(grid))
        if check_sizes is not None and check_sizes[i] is not None:
            want = tuple(int(v) for v in check_sizes[i])
            if want != tuple(grid):
                raise ValueError(
                    f"Layer {i} outputs {want} but the chain composed so far gives {tuple(grid)}: "
                    "the layers are not one chain."
                )
    return ReceptiveField(
        (size[0], size[1]),
        (jump[0], jump[1]),
        (start[0], start[1]),
        (int(input_size[0]), int(input_size[1])),
    )


def _axis_from_response(hit: np.ndarray, n_in: int) -> tuple[float, float, float]:
    """``(size, jump, start)`` of one axis from ``hit[t, i]``: did input ``t`` change unit ``i``."""
    n_units = hit.shape[1]
    lo = np.full(n_units, -1.0)
    hi = np.full(n_units, -1.0)
    for i in range(n_units):
        ts = np.flatnonzero(hit[:, i])
        if ts.size:
            lo[i], hi[i] = ts[0], ts[-1] + 1
    seen = lo >= 0
    if not seen.any():
        raise ValueError("The probe changed no unit: cannot measure a receptive field.")
    units = np.arange(n_units)
    free_lo = seen & (lo > 0)  # the field's start is inside the image
    free_hi = seen & (hi < n_in)
    jump = float(n_in) / n_units
    for free, edge in ((free_lo, lo), (free_hi, hi)):
        if free.sum() >= 2:
            jump = float(np.polyfit(units[free], edge[free], 1)[0])
            break
    jump = max(round(jump * 2) / 2, 0.5)  # strides are whole (or, after upsampling, halves)
    both = free_lo & free_hi
    if both.any():
        size = float(np.median(hi[both] - lo[both]))
        start = float(np.median((lo[both] + hi[both]) / 2 - units[both] * jump))
    elif free_lo.any():  # every field runs past the image's end
        size = 2.0 * n_in + jump * n_units
        start = float(np.median(lo[free_lo] + size / 2 - units[free_lo] * jump))
    elif free_hi.any():
        size = 2.0 * n_in + jump * n_units
        start = float(np.median(hi[free_hi] - size / 2 - units[free_hi] * jump))
    else:  # every unit sees the whole image
        size = 2.0 * n_in + jump * n_units
        start = n_in / 2 - jump * (n_units - 1) / 2
    return size, jump, start


def field_from_response(
    rows_hit: np.ndarray, cols_hit: np.ndarray, input_size: Sequence[int]
) -> ReceptiveField:
    """A receptive field read off a perturbation probe.

    Args:
        rows_hit: bool ``(H, h)``: ``[t, i]`` is True when changing input row
            ``t`` changed some unit in output row ``i``.
        cols_hit: bool ``(W, w)``, the same for columns.
        input_size: the image's ``(height, width)``.

    Returns:
        A :class:`ReceptiveField` with ``method="probed"``: per axis the
        median extent and centre offset of the units whose field lies inside
        the image, the jump fitted over units. A field larger than the image
        along an axis is reported as covering it whole.

    Raises:
        ValueError: no unit responded.

    Example:
        >>> true = compose([Geometry((5, 5), (2, 2), ((2, 2), (2, 2)))], (16, 16))
        >>> rows = np.zeros((16, 8), bool)
        >>> for i in range(8):
        ...     x0, y0, x1, y1 = true.box(i, 0)
        ...     rows[y0:y1, i] = True
        >>> probed = field_from_response(rows, rows, (16, 16))
        >>> probed.size, probed.jump, probed.start
        ((5.0, 5.0), (2.0, 2.0), (0.5, 0.5))
    """
    h = _axis_from_response(np.asarray(rows_hit, bool), int(input_size[0]))
    w = _axis_from_response(np.asarray(cols_hit, bool), int(input_size[1]))
    return ReceptiveField(
        (h[0], w[0]),
        (h[1], w[1]),
        (h[2], w[2]),
        (int(input_size[0]), int(input_size[1])),
        method="probed",
    )
