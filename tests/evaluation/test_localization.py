"""Pointing game, energy pointing game and IoU on maps whose answers are counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.evaluation.localization import (
    boxes_to_masks,
    energy_pointing_game,
    iou,
    pointing_game,
    regions_from,
)


def test_boxes_become_masks_end_exclusive_and_clipped():
    m = boxes_to_masks(np.array([[1, 2, 4, 3], [-5, -5, 2, 1]]), (4, 6))
    assert m[0].astype(int).tolist() == [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    assert np.argwhere(m[1]).tolist() == [[0, 0], [0, 1]]
    several = boxes_to_masks([np.array([[0, 0, 1, 1], [5, 3, 6, 4]]), np.zeros((0, 4))], (4, 6))
    assert several[0].sum() == 2 and several[0, 3, 5] and not several[1].any()


def test_regions_from_checks_shapes_and_refuses_both():
    assert regions_from(n=2, size=(4, 4)) is None
    with pytest.raises(ValueError, match="not both"):
        regions_from(np.zeros((1, 4)), np.zeros((1, 4, 4), bool), n=1, size=(4, 4))
    with pytest.raises(ValueError, match=r"`masks` must be \(N, H, W\) = \(2, 4, 4\)"):
        regions_from(masks=np.zeros((2, 5, 4), bool), n=2, size=(4, 4))
    with pytest.raises(ValueError, match="`boxes` gives 1 images' boxes for 2 images"):
        regions_from(boxes=[[0, 0, 1, 1]], n=2, size=(4, 4))
    with pytest.raises(ValueError, match=r"\(x0, y0, x1, y1\)"):
        boxes_to_masks([np.array([1.0, 2.0, np.nan, 3.0])], (4, 4))


def test_pointing_game_tolerance_is_euclidean_in_pixels():
    maps = np.zeros((3, 30, 30))
    maps[:, 5, 5] = 1.0  # every maximum at (row 5, col 5)
    regions = np.zeros((3, 30, 30), bool)
    regions[0, 5, 5] = True  # on it
    regions[1, 14, 17] = True  # dy = 9, dx = 12: exactly 15 px away
    regions[2, 15, 17] = True  # dy = 10, dx = 12: 15.62 px
    assert pointing_game(maps, regions).tolist() == [1.0, 1.0, 0.0]
    assert pointing_game(maps, regions, tolerance=0).tolist() == [1.0, 0.0, 0.0]
    assert pointing_game(maps, regions, tolerance=16).tolist() == [1.0, 1.0, 1.0]


def test_pointing_game_ties_point_at_the_first_pixel_and_undefined_cases_are_nan():
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 2] = maps[0, 3, 0] = 1.0  # tied maxima; (1, 2) comes first
    regions = np.zeros((3, 4, 4), bool)
    regions[0, 3, 0] = True
    regions[2, 0, 0] = True
    maps[2, 1, 1] = np.nan
    out = pointing_game(maps, regions, tolerance=0)
    assert out[0] == 0.0
    assert np.isnan(out[1])  # empty region
    assert np.isnan(out[2])  # non-finite map
    with pytest.raises(ValueError, match="`tolerance`"):
        pointing_game(maps, regions, tolerance=-1)


def test_energy_pointing_game_is_the_share_inside():
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    regions = np.array([[[False, True], [False, True]], [[True, False], [False, False]]])
    out = energy_pointing_game(maps, regions)
    assert out[0] == pytest.approx(6 / 10)
    assert np.isnan(out[1])  # an all-zero map has no energy to share
    with pytest.raises(ValueError, match="values >= 0"):
        energy_pointing_game(-maps, regions)


def test_iou_thresholds_at_a_fraction_of_the_maximum():
    maps = np.array([[[0.9, 0.5, 0.1], [0.45, 1.0, 0.0]]])
    region = np.array([[[True, True, True], [False, False, False]]])
    # on at 0.5 * 1.0: {(0,0), (0,1), (1,1)}; inter 2, union 4
    assert iou(maps, region, threshold=0.5).tolist() == [0.5]
    # on at 0.95: {(1,1)}; inter 0
    assert iou(maps, region, threshold=0.95).tolist() == [0.0]
    # on at 0: everything; inter 3, union 6
    assert iou(maps, region, threshold=0.0).tolist() == [0.5]
    with pytest.raises(ValueError, match="`threshold`"):
        iou(maps, region, threshold=1.5)
