"""Network Dissection's arithmetic: upsampling unit maps and accumulating IoU.

Bau, Zhou, Khosla, Oliva and Torralba, "Network Dissection: Quantifying
Interpretability of Deep Visual Representations", CVPR 2017. For each unit
``k`` and concept ``c``:

1. the threshold ``T_k`` is the unit's top quantile over every position of
   every input: ``P(a_k > T_k) = 0.005`` (the scan's sketch gives it);
2. each activation map ``A_k(x)`` is upsampled to the concept masks'
   resolution by bilinear interpolation "anchoring interpolants at the
   center of each unit's receptive field", and thresholded:
   ``M_k(x) = S_k(x) >= T_k``;
3. ``IoU_{k,c} = Σ_x |M_k(x) ∩ L_c(x)| / Σ_x |M_k(x) ∪ L_c(x)|`` over the
   whole data set; the unit detects the concept with the best IoU, and is
   called a detector when that IoU exceeds 0.04.

The sums make the pass streaming: per unit and concept only the
intersection count, per unit the mask area and per concept the label area
are kept (``|M ∪ L| = |M| + |L| - |M ∩ L|``), so memory does not depend on
the number of inputs, and partial sums merge by addition.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from multiviz.scanning.fields import ReceptiveField

__all__ = ["DETECTOR_IOU", "IoUAccumulator", "interpolation_matrix", "upsample_maps"]

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


def upsample_maps(maps: np.ndarray, field: ReceptiveField) -> np.ndarray:
    """Upsample ``(N, K, h, w)`` unit maps to the input's ``(N, K, H, W)``, anchored at field centres.

    Separable bilinear interpolation (:func:`interpolation_matrix` along
    rows, then columns), float32.

    Example:
        >>> from multiviz.scanning.fields import compose, Geometry
        >>> rf = compose([Geometry((2, 2), (2, 2))], (4, 4))
        >>> upsample_maps(np.array([[[[0.0, 4.0], [0.0, 4.0]]]]), rf)[0, 0, 0].tolist()
        [0.0, 1.0, 3.0, 4.0]
    """
    a = np.asarray(maps, np.float32)
    h, w = a.shape[-2:]
    height, width = field.input_size
    wy = interpolation_matrix(height, h, field.start[0], field.jump[0]).astype(np.float32)
    wx = interpolation_matrix(width, w, field.start[1], field.jump[1]).astype(np.float32)
    return np.matmul(np.matmul(wy, a), wx.T)


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
        if m.shape[1] != self.units or lab.shape[1] != self.concepts:
            raise ValueError(
                f"Expected {self.units} units and {self.concepts} concepts. "
                f"Received {m.shape[1]} and {lab.shape[1]}."
            )
        n, _, h, w = m.shape
        self.unit_area += m.sum(axis=(0, 2, 3))
        self.concept_area += lab.sum(axis=(0, 2, 3))
        step = max(1, _EXACT_F32 // max(h * w, 1))
        for s in range(0, n, step):  # float32 products are exact while counts < 2**24
            mm = m[s : s + step].transpose(1, 0, 2, 3).reshape(self.units, -1)
            ll = lab[s : s + step].transpose(0, 2, 3, 1).reshape(-1, self.concepts)
            self.intersection += np.rint(mm.astype(np.float32) @ ll.astype(np.float32)).astype(
                np.int64
            )
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
