"""Network Dissection's arithmetic: upsampling unit maps and accumulating IoU.

Bau, Zhou, Khosla, Oliva and Torralba, "Network Dissection: Quantifying
Interpretability of Deep Visual Representations", CVPR 2017. For each unit
``k`` and concept ``c``:

1. the threshold ``T_k`` is the unit's top quantile over every position of
   every input: ``P(a_k > T_k) = 0.005`` (the scan's sketch gives it);
2. each activation map ``A_k(x)`` is upsampled to the concept masks'
   resolution by bilinear interpolation "anchoring interpolants at the
   center of each unit's receptive field", and thresholded:
   ``M_k(x) = S_k(x) > T_k``;
3. ``IoU_{k,c} = Σ_x |M_k(x) ∩ L_c(x)| / Σ_x |M_k(x) ∪ L_c(x)|`` over the
   whole data set; the unit detects the concept with the best IoU, and is
   called a detector when that IoU exceeds 0.04.

The sums make the pass streaming: per unit and concept only the
intersection count, per unit the mask area and per concept the label area
are kept (``|M ∪ L| = |M| + |L| - |M ∩ L|``), so memory does not depend on
the number of inputs, and partial sums merge by addition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from multiviz.scanning.fields import ReceptiveField

if TYPE_CHECKING:
    from multiviz.scanning.record import Scan

__all__ = [
    "DETECTOR_IOU",
    "Dissection",
    "IoUAccumulator",
    "LayerDissection",
    "dissect",
    "interpolation_matrix",
    "upsample_maps",
]

#: Bau et al.'s IoU above which a unit counts as a detector of its best concept.
DETECTOR_IOU = 0.04
#: Pixels per float32 matrix product: counts stay exact below 2**24.
_EXACT_F32 = 1 << 24


def interpolation_matrix(n_out: int, n_units: int, start: float, jump: float) -> np.ndarray:
    """Bilinear weights from ``n_units`` unit centres to ``n_out`` pixel centres, ``(n_out, n_units)``.

    Unit ``i`` sits at input coordinate ``start + i * jump`` (its receptive
    field's centre, see :class:`~multiviz.scanning.fields.ReceptiveField`);
    pixel ``p`` at ``p + 0.5``. Each pixel takes the linear interpolation of
    the two nearest unit centres; beyond the first and last centre, the
    nearest unit's value. Rows sum to 1.

    Example:
        >>> interpolation_matrix(4, 2, 1.0, 2.0).tolist()
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    """
    u = (np.arange(n_out) + 0.5 - start) / jump  # pixel centres in unit coordinates
    u = np.clip(u, 0, n_units - 1)
    i0 = np.minimum(np.floor(u).astype(np.intp), max(n_units - 2, 0))
    w = u - i0
    out = np.zeros((n_out, n_units))
    rows = np.arange(n_out)
    if n_units == 1:
        out[:, 0] = 1.0
        return out
    out[rows, i0] = 1 - w
    out[rows, i0 + 1] += w
    return out


def upsample_maps(
    maps: np.ndarray, field: ReceptiveField, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Upsample ``(N, K, h, w)`` unit maps to the input's ``(N, K, H, W)``, anchored at field centres.

    Separable bilinear interpolation (:func:`interpolation_matrix` along
    rows, then columns), float32. ``size`` resamples to another ``(H, W)``
    than the input's (masks at their own resolution), scaling the field.

    Example:
        >>> from multiviz.scanning.fields import compose, Geometry
        >>> rf = compose([Geometry((2, 2), (2, 2))], (4, 4))
        >>> upsample_maps(np.array([[[[0.0, 4.0], [0.0, 4.0]]]]), rf)[0, 0, 0].tolist()
        [0.0, 1.0, 3.0, 4.0]
    """
    a = np.asarray(maps, np.float32)
    wy, wx = _matrices(field, a.shape[-2:], size)
    return np.matmul(np.matmul(wy, a), wx.T)


def _matrices(
    field: ReceptiveField, grid: tuple[int, ...], size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column interpolation matrices to ``size`` (default: the input's own)."""
    height, width = field.input_size
    out_h, out_w = size if size is not None else (height, width)
    sy, sx = out_h / height, out_w / width  # masks at another resolution than the input
    wy = interpolation_matrix(out_h, grid[0], field.start[0] * sy, field.jump[0] * sy)
    wx = interpolation_matrix(out_w, grid[1], field.start[1] * sx, field.jump[1] * sx)
    return wy.astype(np.float32), wx.astype(np.float32)


class IoUAccumulator:
    """Streaming intersection-over-union of unit masks with concept masks.

    Args:
        units: number of units K.
        concepts: number of concepts.

    Example:
        >>> unit = np.array([[[[1, 1], [0, 0]]]], bool)       # N=1, K=1, 2x2
        >>> concept = np.array([[[[1, 0], [1, 0]]]], bool)    # N=1, one concept
        >>> IoUAccumulator(1, 1).update(unit, concept).finalize().tolist()
        [[0.3333333333333333]]
    """

    def __init__(self, units: int, concepts: int) -> None:
        self.units, self.concepts = int(units), int(concepts)
        self.intersection = np.zeros((self.units, self.concepts), np.int64)
        self.unit_area = np.zeros(self.units, np.int64)
        self.concept_area = np.zeros(self.concepts, np.int64)

    def update(self, unit_masks: np.ndarray, concept_masks: np.ndarray) -> IoUAccumulator:
        """Fold in one batch: bool ``(N, K, H, W)`` unit masks, bool ``(N, concepts, H, W)`` labels."""
        self.add_concepts(concept_masks)
        return self.add_units(0, unit_masks, concept_masks)

    def add_concepts(self, concept_masks: np.ndarray) -> IoUAccumulator:
        """Count one batch's concept pixels (once per batch, whatever the unit chunks)."""
        lab = np.asarray(concept_masks, bool)
        if lab.ndim != 4 or lab.shape[1] != self.concepts:
            raise ValueError(
                f"Concept masks must be (N, {self.concepts}, H, W). Received shape {lab.shape}."
            )
        self.concept_area += lab.sum(axis=(0, 2, 3))
        return self

    def add_units(
        self, first: int, unit_masks: np.ndarray, concept_masks: np.ndarray
    ) -> IoUAccumulator:
        """Count units ``first, first + 1, …``'s mask pixels and overlaps with the concepts."""
        m = np.asarray(unit_masks, bool)
        lab = np.asarray(concept_masks, bool)
        if (
            m.ndim != 4
            or lab.ndim != 4
            or m.shape[0] != lab.shape[0]
            or m.shape[2:] != lab.shape[2:]
        ):
            raise ValueError(
                f"Unit masks (N, K, H, W) and concept masks (N, concepts, H, W) must share N, H, W. "
                f"Received {m.shape} and {lab.shape}."
            )
        k = m.shape[1]
        if not 0 <= first <= first + k <= self.units or lab.shape[1] != self.concepts:
            raise ValueError(
                f"Expected units within {self.units} and {self.concepts} concepts. "
                f"Received units {first}..{first + k} and {lab.shape[1]} concepts."
            )
        n, _, h, w = m.shape
        self.unit_area[first : first + k] += m.sum(axis=(0, 2, 3))
        step = max(1, _EXACT_F32 // max(h * w, 1))
        for s in range(0, n, step):  # float32 products are exact while counts < 2**24
            mm = m[s : s + step].transpose(1, 0, 2, 3).reshape(k, -1)
            ll = lab[s : s + step].transpose(0, 2, 3, 1).reshape(-1, self.concepts)
            self.intersection[first : first + k] += np.rint(
                mm.astype(np.float32) @ ll.astype(np.float32)
            ).astype(np.int64)
        return self

    def merge(self, other: IoUAccumulator) -> IoUAccumulator:
        """Fold in another partial sum."""
        if (self.units, self.concepts) != (other.units, other.concepts):
            raise ValueError(
                f"Cannot merge IoU sums of {other.units}x{other.concepts} into "
                f"{self.units}x{self.concepts}."
            )
        self.intersection += other.intersection
        self.unit_area += other.unit_area
        self.concept_area += other.concept_area
        return self

    def finalize(self) -> np.ndarray:
        """IoU per unit and concept, float64 ``(K, concepts)``; 0 where both masks were empty."""
        union = self.unit_area[:, None] + self.concept_area[None, :] - self.intersection
        return np.divide(
            self.intersection,
            union,
            out=np.zeros(union.shape),
            where=union > 0,
        )

    def to_state(self) -> dict[str, np.ndarray]:
        """The sums as plain arrays."""
        return {
            "intersection": self.intersection.copy(),
            "unit_area": self.unit_area.copy(),
            "concept_area": self.concept_area.copy(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> IoUAccumulator:
        """Rebuild from :meth:`to_state`'s arrays."""
        inter = np.asarray(state["intersection"], np.int64)
        out = cls(*inter.shape)
        out.intersection = inter.copy()
        out.unit_area = np.asarray(state["unit_area"], np.int64).copy()
        out.concept_area = np.asarray(state["concept_area"], np.int64).copy()
        return out


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LayerDissection:
    """Network Dissection of one layer: the IoU of every unit with every concept.

    Attributes:
        layer: the layer's name.
        iou: float64 ``(units, concepts)``, summed over the data set.
        threshold: each unit's activation threshold ``T_k`` (float64 ``(units,)``).
        concepts: the concept names.
        detector_iou: the IoU a unit's best concept must exceed (0.04).
    """

    layer: str
    iou: np.ndarray
    threshold: np.ndarray
    concepts: tuple[str, ...]
    detector_iou: float = DETECTOR_IOU

    @property
    def best_concept(self) -> np.ndarray:
        """Each unit's concept with the highest IoU (int64 ``(units,)``; lowest index on ties)."""
        return np.argmax(self.iou, axis=1) if self.iou.size else np.zeros(0, np.int64)

    @property
    def best_iou(self) -> np.ndarray:
        """That IoU, float64 ``(units,)``."""
        return self.iou.max(axis=1) if self.iou.size else np.zeros(0)

    @property
    def detectors(self) -> np.ndarray:
        """True for units whose best IoU exceeds :attr:`detector_iou`."""
        return self.best_iou > self.detector_iou

    def units_for(self, concept: str | int) -> list[int]:
        """The detector units of one concept, best IoU first."""
        c = self.concepts.index(concept) if isinstance(concept, str) else int(concept)
        units = np.flatnonzero(self.detectors & (self.best_concept == c))
        return units[np.argsort(-self.iou[units, c], kind="stable")].tolist()

    def table(self) -> list[dict[str, Any]]:
        """One plain row per unit: unit, concept, IoU, threshold, detector."""
        best, iou = self.best_concept, self.best_iou
        return [
            {
                "unit": u,
                "concept": self.concepts[int(best[u])],
                "iou": float(iou[u]),
                "threshold": float(self.threshold[u]),
                "detector": bool(iou[u] > self.detector_iou),
            }
            for u in range(len(iou))
        ]


class Dissection(Mapping[str, LayerDissection]):
    """What :meth:`Scan.dissect <multiviz.scanning.record.Scan.dissect>` returns: one
    :class:`LayerDissection` per layer, and the figure.

    Attributes:
        concepts: the concept names.
        samples: inputs in the second pass.
        top_quantile: the fraction of each unit's values above its threshold.
        detector_iou: Bau et al.'s detector threshold, 0.04.
    """

    def __init__(
        self,
        layers: Mapping[str, LayerDissection],
        concepts: Sequence[str],
        samples: int,
        top_quantile: float,
    ) -> None:
        self.layers = dict(layers)
        self.concepts = tuple(concepts)
        self.samples = int(samples)
        self.top_quantile = float(top_quantile)
        self.detector_iou = DETECTOR_IOU

    def __getitem__(self, layer: str) -> LayerDissection:
        try:
            return self.layers[layer]
        except KeyError:
            raise KeyError(f"{layer!r} was not dissected. Layers: {list(self.layers)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def summary(self) -> dict[str, dict[str, int]]:
        """Layer -> concept -> number of detector units."""
        return {
            name: {
                c: int(((d.best_concept == i) & d.detectors).sum())
                for i, c in enumerate(self.concepts)
            }
            for name, d in self.layers.items()
        }

    def plot(self, **kwargs: Any) -> Any:
        """The figure of :func:`multiviz.render.scan.plot_dissection`."""
        from multiviz.render.scan import plot_dissection

        return plot_dissection(self, **kwargs)

    def __repr__(self) -> str:
        lines = [
            f"Dissection({len(self)} layer{'s' * (len(self) != 1)}, {len(self.concepts)} "
            f"concepts, {self.samples} inputs; detectors: IoU > {self.detector_iou:g})"
        ]
        for name, counts in list(self.summary().items())[:18]:
            d = self.layers[name]
            found = ", ".join(f"{c} {n}" for c, n in counts.items() if n) or "none"
            lines.append(f"  {name}: {int(d.detectors.sum())}/{len(d.best_iou)} units: {found}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the pass


def _concept_batch(masks: Any, n_concepts: int | None) -> np.ndarray:
    """One batch of concept masks as bool ``(N, concepts, H, W)``."""
    from multiviz.scanning.crops import _numpy

    m = _numpy(masks)
    if m.ndim == 4 and m.dtype == bool:
        return m
    if m.ndim == 3 and m.dtype.kind in "iu":
        if n_concepts is None:
            raise ValueError(
                "Integer concept maps (N, H, W) need `concepts=` (the names, one per index)."
            )
        return m[:, None] == np.arange(n_concepts)[None, :, None, None]
    raise ValueError(
        "`concept_masks` must hold bool (N, concepts, H, W) masks or int (N, H, W) concept "
        f"maps (negative: no concept). Received a batch of shape {m.shape}, dtype {m.dtype}."
    )


def _aligned_masks(concept_masks: Any, length: int | None) -> tuple[Any, bool]:
    """``(masks, by_index)``: an array indexed by input index, or an iterable read in step."""
    shape = getattr(concept_masks, "shape", None)
    if shape is not None and length is not None and len(shape) >= 3 and shape[0] == length:
        return concept_masks, True
    if shape is not None and length is None and len(shape) >= 3:
        return concept_masks, True
    return iter(concept_masks), False


def dissect(
    scan: Scan,
    data: Any,
    concept_masks: Any,
    *,
    concepts: Sequence[str] | None = None,
    layers: str | Sequence[str] | None = None,
    model: Any = None,
    top_quantile: float = 0.005,
    unpack: Any = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> Dissection:
    """Network Dissection's second pass (see :meth:`Scan.dissect`)."""
    from tqdm.auto import tqdm

    from multiviz.capturing import capture
    from multiviz.scanning.data import source

    if model is None:
        raise ValueError(
            "`model` is needed for the second pass: this scan was loaded from a file.\n"
            "hint: scan.dissect(data, masks, model=model)."
        )
    if not 0 < float(top_quantile) < 1:
        raise ValueError(f"`top_quantile` must be in (0, 1). Received: {top_quantile!r}")
    chosen = [layers] if isinstance(layers, str) else list(layers or [])
    if not chosen:
        chosen = [k for k, f in scan.fields.items() if f is not None]
    for name in chosen:
        if scan.fields.get(name) is None:
            raise ValueError(
                f"{name!r} has no receptive field (not a 2-D map, or unknown): it cannot be "
                f"dissected. Layers with fields: {[k for k, f in scan.fields.items() if f]}."
            )
    thresholds = {
        name: np.asarray(scan.stats(name).quantile(1.0 - float(top_quantile)), np.float64)
        for name in chosen
    }
    from multiviz.sources.images import Preprocess

    prep = getattr(getattr(scan._source, "data", None), "preprocess", None) or Preprocess(
        size=scan.input_size, layout=scan.input_layout
    )
    src = source(data, unpack=unpack, batch_size=batch_size, preprocess=prep)
    masks, by_index = _aligned_masks(concept_masks, src.length)
    n_concepts = None if concepts is None else len(concepts)
    sums: dict[str, IoUAccumulator] = {}
    samples = 0
    bar = tqdm(
        total=src.length,
        unit="img",
        unit_scale=True,
        desc="dissect",
        disable=None if progress is None else not progress,
    )
    try:
        for batch in src.batches():
            labels = masks[batch.indices] if by_index else next(masks)
            lab = _concept_batch(labels, n_concepts)
            n_concepts = lab.shape[1]
            acts = capture(model, batch.x, chosen)
            for name in chosen:
                a = np.asarray(acts[name], np.float32)
                acc = sums.setdefault(name, IoUAccumulator(a.shape[1], n_concepts))
                acc.add_concepts(lab)
                wy, wx = _matrices(scan.fields[name], a.shape[-2:], lab.shape[-2:])
                n, k = a.shape[:2]
                step = max(1, _EXACT_F32 // max(n * lab.shape[2] * lab.shape[3], 1))
                for u in range(0, k, step):  # bounded memory: a few units' upsampled maps
                    up = np.matmul(np.matmul(wy, a[:, u : u + step]), wx.T)
                    hit = up > thresholds[name][u : u + step, None, None].astype(np.float32)
                    acc.add_units(u, hit, lab)
            samples += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    names = (
        tuple(concepts)
        if concepts is not None
        else tuple(f"concept {i}" for i in range(n_concepts or 0))
    )
    return Dissection(
        {
            name: LayerDissection(name, sums[name].finalize(), thresholds[name], names)
            for name in chosen
            if name in sums
        },
        names,
        samples,
        float(top_quantile),
    )
