"""A planted unit: a filter set to detect crosses must show crosses, and dissection must say so.

The planted layer is a 3x3 convolution on the built-in CNN's relu3 maps whose
four filters are fitted in closed form (ridge regression, conftest) on a
training split (seed 11) to fire where a unit's receptive-field centre lies
on a shape of one class. The scan and the dissection run on other images
(seed 3). Independently known answers: the data set's labels, masks and boxes.

Of the four filters, the cross's is the one a linear 3x3 filter on relu3 can
make class-pure at the top (the others mix circles with squares, squares
with triangles): the tests use unit 3, the cross.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

pytestmark = pytest.mark.torch

CROSS = 3


@pytest.fixture(scope="module")
def data():
    return mv.shapes_dataset(256, seed=3)


@pytest.fixture(scope="module")
def planted(planted_torch_model):
    return planted_torch_model


@pytest.fixture(scope="module")
def scanned(planted, data):
    return mv.scan(planted, data.images, ["planted"], topk=16, batch_size=64, progress=False)


def test_planted_unit_exemplars_are_all_crosses(scanned, data):
    top = scanned.exemplars("planted", CROSS)
    assert len(top) == 16
    assert [data.class_names[data.labels[e.index]] for e in top] == ["cross"] * 16


def test_planted_unit_crops_contain_the_cross(scanned, data):
    for e in scanned.exemplars("planted", CROSS):
        x0, y0, x1, y1 = e.box
        inside = data.masks[e.index, y0:y1, x0:x1]
        # the unit's maximum sits on the shape, and the crop holds a good part of it
        r, c = e.location
        assert data.masks[e.index, 4 * r + 2, 4 * c + 2]
        assert inside.sum() >= 0.25 * min(data.masks[e.index].sum(), (x1 - x0) * (y1 - y0))
    crops, _ = scanned.exemplar_crops("planted", [CROSS], data.images, size=26)
    assert crops.shape == (1, 16, 26, 26, 3) and crops.max() > 0


def test_dissection_names_cross_for_the_planted_unit(scanned, planted, data):
    masks = np.where(data.masks, data.labels[:, None, None], -1)
    d = scanned.dissect(data.images, masks, concepts=data.class_names, progress=False)
    layer = d["planted"]
    iou = layer.iou[CROSS]
    assert layer.best_concept[CROSS] == CROSS and layer.detectors[CROSS]
    # the bar, derived from the masks: a unit whose mask fell on the image at
    # random with the same total area would overlap crosses in proportion to
    # their area; require five times that chance IoU, and Bau et al.'s 0.04
    n_pix = data.masks.size
    unit_area = _unit_area(scanned, planted, data)
    cross_area = float(data.masks[data.labels == CROSS].sum())
    p = unit_area * cross_area / n_pix
    chance = p / (unit_area + cross_area - p)
    assert iou[CROSS] > max(5 * chance, 0.04), (iou, chance)
    assert iou[CROSS] > 2 * np.delete(iou, CROSS).max()


def _unit_area(scanned, planted, data) -> float:
    """Pixels above the planted unit's threshold over the data set, counted directly."""
    import torch

    from multiviz.scanning.dissection import upsample_maps

    a = mv.capture(planted, torch.from_numpy(data.images), ["planted"])["planted"][
        :, CROSS : CROSS + 1
    ]
    t = scanned.stats("planted").quantile(1 - 0.005)[CROSS]
    return float((upsample_maps(a, scanned.fields["planted"]) > t).sum())
