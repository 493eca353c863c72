"""The same weights in PyTorch and Keras give the same scan.

Statistics within 1e-5 (relative, DESIGN.md's activation tolerance),
counts and exemplars identical, receptive fields identical, and the planted
unit's dissection IoU within 1e-3 (masks thresholded at sketch quantiles).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

pytestmark = pytest.mark.both

LAYERS = ["conv1", "relu2", "pool2", "relu3", "fc"]


@pytest.fixture(scope="module")
def data():
    return mv.shapes_dataset(96, seed=9)


@pytest.fixture(scope="module")
def scans(data):
    torch_model = mv.builtin_model("torch")
    keras_model = mv.builtin_model("keras")
    t = mv.scan(torch_model, data.images, LAYERS, topk=8, batch_size=32, progress=False)
    k = mv.scan(
        keras_model, mv.to_channels_last(data.images), LAYERS, topk=8, batch_size=32, progress=False
    )
    return t, k


def _same_exemplars(te, ke, maps: np.ndarray) -> None:
    """The same top-k, up to the order of inputs whose scores tie within float32 noise.

    Scores agree to 1e-5; inputs in groups whose scores are apart by more than
    that come in the same order; a group cut off by k may differ in which
    inputs made it. Each Keras location is a maximum of the torch map too
    (flat regions have several).
    """
    tol = 1e-5 * max(abs(te[0].score), 1e-3)
    np.testing.assert_allclose([e.score for e in te], [e.score for e in ke], rtol=1e-5, atol=tol)
    groups, start = [], 0
    for i in range(1, len(te) + 1):
        if i == len(te) or te[i - 1].score - te[i].score > tol:
            groups.append((start, i))
            start = i
    for lo, hi in groups[:-1]:
        assert {e.index for e in te[lo:hi]} == {e.index for e in ke[lo:hi]}
    for e in ke:
        m = maps[e.index]
        assert m[e.location] >= m.max() - 2 * tol


@pytest.mark.parametrize("layer", LAYERS)
def test_torch_and_keras_scans_agree(scans, data, layer):
    t, k = scans
    a, b = t.stats(layer), k.stats(layer)
    np.testing.assert_array_equal(a.count, b.count)
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.dead, b.dead)
    # a value within float32 noise of 0 may be positive in one framework only:
    # the fractions differ by at most the share of such values (counted on the torch side)
    acts = mv.capture(mv.builtin_model("torch"), data.images, [layer])[layer]
    v = np.moveaxis(acts, 1, 0).reshape(acts.shape[1], -1)
    near_zero = (np.abs(v) <= 1e-5 * np.abs(v).max()).mean(axis=1)
    assert np.all(np.abs(a.positive_fraction - b.positive_fraction) <= near_zero + 1e-12)
    for ch in range(len(a)):
        _same_exemplars(t.exemplars(layer, ch), k.exemplars(layer, ch), acts[:, ch])
    if t.fields[layer] is not None:
        assert t.fields[layer] == k.fields[layer]


def test_planted_unit_scans_and_dissects_the_same_in_keras(
    planted_torch_model, planted_keras_model
):
    data = mv.shapes_dataset(128, seed=3)
    masks = np.where(data.masks, data.labels[:, None, None], -1)
    out = []
    for model, x in (
        (planted_torch_model, data.images),
        (planted_keras_model, mv.to_channels_last(data.images)),
    ):
        s = mv.scan(model, x, ["planted"], topk=8, batch_size=64, progress=False)
        out.append((s, s.dissect(x, masks, concepts=data.class_names, progress=False)))
    (ts, td), (ks, kd) = out
    assert ts.exemplars("planted", 3) == ks.exemplars("planted", 3) or [
        e.index for e in ts.exemplars("planted", 3)
    ] == [e.index for e in ks.exemplars("planted", 3)]
    np.testing.assert_array_equal(td["planted"].best_concept, kd["planted"].best_concept)
    # thresholds come from randomized sketches: IoU within a few percent
    np.testing.assert_allclose(td["planted"].iou, kd["planted"].iou, rtol=0.05, atol=2e-3)
