"""The receptive field of each scanned layer: composed from the layers' geometry, or probed.

Backends report each layer's kernel, stride, padding and dilation in
:class:`multiviz.LayerInfo`. When the layers up to the scanned one form a
plain chain — every reported output size is what composing the layers
before it predicts — :func:`multiviz.scanning.fields.compose` gives the
field exactly. Otherwise (residual blocks, branches) the field is measured:
single input pixels are changed by a large amount, one per probe image, and
the output units that change are read off
(:func:`multiviz.scanning.fields.field_from_response`). The probe needs only
forward passes, so it works the same in every framework; it measures the
field the network's wiring gives, which for max-pooling and ReLU networks is
the theoretical field wherever some channel responds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multiviz.scanning.fields import Geometry, ReceptiveField, compose, field_from_response

__all__ = ["geometry_of", "layer_fields", "probe_fields"]

#: how far a probe pushes one pixel, in units of the image's standard deviation
PROBE_SCALE = 25.0


def geometry_of(info: Any) -> Geometry | None:
    """A layer's :class:`~multiviz.scanning.fields.Geometry` from its ``LayerInfo``, or ``None``.

    ``None`` for layers that keep the grid (no ``kernel`` reported) and for
    layers that are not 2-D (one kernel axis).
    """
    kernel = getattr(info, "kernel", None)
    if kernel is None or len(kernel) != 2:
        return None
    return Geometry(
        tuple(kernel),
        tuple(info.stride or (1, 1)),
        info.padding if info.padding is not None else "valid",
        tuple(info.dilation or (1, 1)),
    )


def _compose_for(
    infos: Sequence[Any], base: str, input_size: tuple[int, int], out_hw: tuple[int, int]
) -> ReceptiveField:
    """Compose the chain of spatial layers up to ``base``; raise ValueError if not a chain."""
    chain: list[Geometry] = []
    sizes: list[tuple[int, int] | None] = []
    for info in infos:
        g = geometry_of(info)
        if g is not None:
            chain.append(g)
            shape = getattr(info, "shape", None)
            sizes.append(
                tuple(int(v) for v in shape[-2:])
                if shape is not None and len(shape) == 4 and None not in shape[-2:]
                else None
            )
        if info.name == base:
            break
    else:
        raise ValueError(f"{base!r} is not among the model's layers")
    field = compose(chain, input_size, check_sizes=sizes)
    grid = input_size
    for g in chain:
        grid = g.output_size(grid)
    if tuple(grid) != tuple(out_hw):
        raise ValueError(f"composed grid {tuple(grid)} differs from the layer's {tuple(out_hw)}")
    return field


def probe_fields(
    capture: Any,
    x0: np.ndarray,
    keys: Sequence[str],
    layout: str,
    batch_size: int = 32,
) -> dict[str, ReceptiveField]:
    """Measure receptive fields by changing single input pixels.

    Args:
        capture: ``capture(x, keys) -> {key: (N, C, h, w) array}`` for a
            NumPy batch in the model's layout.
        x0: one input (no batch axis) in the model's layout.
        keys: the layers to measure (2-D maps).
        layout: ``"channels_first"`` or ``"channels_last"``.
        batch_size: probe images per forward pass.

    Returns:
        key -> a :class:`ReceptiveField` with ``method="probed"``.
    """
    base = np.asarray(x0, np.float32)
    img = base if layout == "channels_first" else np.moveaxis(base, -1, 0)  # (C, H, W)
    _, height, width = img.shape
    delta = PROBE_SCALE * (float(img.std()) + 1e-3)
    if height == width:  # one probe per diagonal pixel answers rows and columns at once
        points = [(t, t) for t in range(height)]
    else:
        points = [(t, width // 2) for t in range(height)] + [(height // 2, t) for t in range(width)]
    hits: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for start in range(0, len(points), batch_size):
        chunk = points[start : start + batch_size]
        batch = np.repeat(img[None], len(chunk) + 1, axis=0)
        for j, (y, x) in enumerate(chunk, start=1):
            batch[j, :, y, x] += delta
        if layout != "channels_first":
            batch = np.moveaxis(batch, 1, -1)
        out = capture(np.ascontiguousarray(batch), list(keys))
        for k in keys:
            a = np.asarray(out[k], np.float64)
            scale = float(np.abs(a[0]).max()) + 1e-12
            changed = (np.abs(a[1:] - a[:1]) > 1e-4 * scale).any(axis=1)  # (n, h, w)
            hits[k].append(changed)
    out_fields = {}
    for k in keys:
        changed = np.concatenate(hits[k])  # (probes, h, w)
        if height == width:  # probe t changed output row i / column j
            rows, cols = changed.any(axis=2), changed.any(axis=1)
        else:
            rows, cols = changed[:height].any(axis=2), changed[height:].any(axis=1)
        out_fields[k] = field_from_response(rows, cols, (height, width))
    return out_fields


def layer_fields(
    infos: Sequence[Any],
    shapes: dict[str, tuple[int, ...]],
    bases: dict[str, str],
    input_size: tuple[int, int] | None,
    *,
    mode: str = "auto",
    capture: Any = None,
    x0: np.ndarray | None = None,
    layout: str = "channels_first",
    batch_size: int = 32,
) -> dict[str, ReceptiveField | None]:
    """Each scanned layer's receptive field.

    Args:
        infos: the model's layers (with geometry and output shapes).
        shapes: key -> one sample's output shape, as captured.
        bases: key -> the layer name it came from.
        input_size: the input's ``(height, width)``; ``None``: not images.
        mode: ``"auto"`` (compose where the layers form a chain, probe
            elsewhere), ``"compose"`` (never probe: ``None`` where composing
            fails), ``"probe"`` (always probe) or ``"none"``.
        capture, x0, layout, batch_size: for the probe (see :func:`probe_fields`).

    Returns:
        key -> a field, or ``None`` for outputs that are not 2-D maps.
    """
    if mode not in ("auto", "compose", "probe", "none"):
        raise ValueError(
            f"`fields` must be 'auto', 'compose', 'probe' or 'none'. Received: fields={mode!r}"
        )
    out: dict[str, ReceptiveField | None] = {k: None for k in shapes}
    if input_size is None or mode == "none":
        return out
    to_probe = []
    for key, shape in shapes.items():
        if len(shape) != 3:
            continue
        if mode != "probe":
            try:
                out[key] = _compose_for(infos, bases[key], input_size, tuple(shape[1:]))
                continue
            except ValueError:
                pass
        if mode != "compose":
            to_probe.append(key)
    if to_probe and capture is not None and x0 is not None:
        out.update(probe_fields(capture, x0, to_probe, layout, batch_size))
    return out
