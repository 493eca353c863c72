"""Network Dissection's arithmetic: anchored upsampling and streaming IoU.

IoU is checked against the direct per-data-set sums; upsampling against
hand-computed interpolation and, where the field centres sit where PyTorch
assumes them, against torch's bilinear ``interpolate(align_corners=False)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.scanning.dissection import IoUAccumulator, interpolation_matrix, upsample_maps
from multiviz.scanning.fields import Geometry, compose


def _masks(seed: int, n: int = 9, k: int = 5, c: int = 3, h: int = 6, w: int = 7):
    rng = np.random.default_rng(seed)
    return rng.random((n, k, h, w)) < 0.3, rng.random((n, c, h, w)) < 0.2


@pytest.mark.parametrize("seed", range(3))
def test_iou_equals_direct_sums_for_any_split(seed):
    units, concepts = _masks(seed)
    inter = np.einsum("nkhw,nchw->kc", units.astype(np.int64), concepts.astype(np.int64))
    union = (
        np.einsum("nkhw,nchw->kc", units.astype(np.int64), 1 - concepts)
        + concepts.sum(axis=(0, 2, 3))[None]
    )
    # |M ∪ L| = |M \\ L| + |L|, summed over the data set
    want = inter / union
    whole = IoUAccumulator(5, 3).update(units, concepts).finalize()
    np.testing.assert_allclose(whole, want, rtol=1e-15)
    parts = [
        IoUAccumulator(5, 3).update(units[s], concepts[s])
        for s in (slice(0, 2), slice(2, 3), slice(3, 9))
    ]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    np.testing.assert_array_equal(merged.finalize(), whole)
    back = IoUAccumulator.from_state(merged.to_state())
    np.testing.assert_array_equal(back.finalize(), whole)


def test_iou_is_zero_where_both_masks_are_always_empty():
    units = np.zeros((2, 1, 3, 3), bool)
    concepts = np.zeros((2, 2, 3, 3), bool)
    concepts[0, 1, 0, 0] = True
    assert IoUAccumulator(1, 2).update(units, concepts).finalize().tolist() == [[0.0, 0.0]]


def test_iou_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="share N, H, W"):
        IoUAccumulator(1, 1).update(np.zeros((2, 1, 3, 3), bool), np.zeros((2, 1, 3, 4), bool))


def test_interpolation_rows_sum_to_one_and_hit_unit_centres():
    m = interpolation_matrix(64, 16, start=2.5, jump=4.0)  # centres at pixels 2, 6, 10, ...
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    for i in range(16):
        assert m[2 + 4 * i, i] == 1.0  # pixel 2+4i's centre (2.5+4i) is unit i's centre
    assert (m[:3, 0] == 1).all() and (m[-2:, -1] == 1).all()  # nearest unit beyond the ends


def test_upsampling_a_single_hot_unit_peaks_at_its_field_centre():
    conv, pool = Geometry((3, 3), (1, 1), "same"), Geometry((2, 2), (2, 2))
    rf = compose([conv, pool, conv, pool, conv], (64, 64))
    maps = np.zeros((1, 1, 16, 16), np.float32)
    maps[0, 0, 8, 5] = 1.0
    up = upsample_maps(maps, rf)[0, 0]
    rows, cols = rf.centers(16, 16)
    # the unit's centre (34, 22) lies on a pixel corner: the four pixels around it share the peak
    peak = np.argwhere(up == up.max())
    assert {tuple(p) for p in peak.tolist()} == {(33, 21), (33, 22), (34, 21), (34, 22)}
    assert rows[8] == 34.0 and cols[5] == 22.0


@pytest.mark.torch
def test_upsampling_matches_torch_bilinear_where_centres_agree():
    import torch
    import torch.nn.functional as F

    pool = Geometry((2, 2), (2, 2))
    rf = compose([pool, pool, pool], (48, 40))  # jump 8, centres at (i + 0.5) * 8: torch's grid
    assert rf.start == (4.0, 4.0)
    maps = np.random.default_rng(0).normal(size=(2, 3, 6, 5)).astype(np.float32)
    want = F.interpolate(
        torch.from_numpy(maps), size=(48, 40), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(upsample_maps(maps, rf), want.numpy(), rtol=1e-5, atol=1e-6)
