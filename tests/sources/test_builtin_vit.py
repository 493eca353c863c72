"""The shipped ViT: accuracy, localization of its maps, both frameworks, the CLI name."""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.sources.builtin import builtin_metadata
from multiviz.sources.builtin_vit import VIT_WEIGHTS_PATH, ViTConfig, vit_weight_shapes
from multiviz.sources.shapes_dataset import shapes_dataset

# Measured on the shipped weights by scripts/train_builtin_vit.py --measure (the same
# maps, images and boxes as below; recorded in the weights file and shown in
# docs/transformers.md); asserted with 3 points of margin for float differences.
META = None


def _meta():
    global META
    if META is None:
        META = builtin_metadata(arch="vit")
    return META


def test_weights_file_is_small_and_loads_without_pickle():
    assert VIT_WEIGHTS_PATH.stat().st_size < 256 * 1024
    with np.load(VIT_WEIGHTS_PATH, allow_pickle=False) as npz:
        shapes = {k: npz[k].shape for k in npz.files if k != "meta"}
    assert shapes == vit_weight_shapes(ViTConfig())


def _peak_in_box(maps, boxes):
    hits = []
    for m, (x0, y0, x1, y1) in zip(maps, boxes, strict=True):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        hits.append(x0 <= x < x1 and y0 <= y < y1)
    return float(np.mean(hits))


@pytest.mark.torch
def test_heldout_accuracy_and_localization_rates():
    model = mv.builtin_model("torch", arch="vit")
    data = shapes_dataset(100, seed=2)  # the training script's held-out seed
    meta = _meta()
    logits = mv.forward(model, data.images)
    accuracy = float((logits.argmax(1) == data.labels).mean())
    assert accuracy >= meta["heldout_accuracy"] - 0.1 and accuracy > 0.25 + 0.2  # chance: 0.25
    # a map with no information: its peak is a uniformly random pixel, in the box with
    # probability box area / image area
    random_rate = float(np.mean([(x1 - x0) * (y1 - y0) / 64**2 for x0, y0, x1, y1 in data.boxes]))
    rng = np.random.default_rng(0)
    assert abs(_peak_in_box(rng.random((100, 64, 64)), data.boxes) - random_rate) < 0.1
    rates = {
        "grad_cam": _peak_in_box(mv.grad_cam(model, data.images), data.boxes),
        "rollout": _peak_in_box(mv.attention_rollout(model, data.images), data.boxes),
        "grad": _peak_in_box(mv.attention_rollout(model, data.images, "grad"), data.boxes),
    }
    print(f"random map {random_rate:.2f}, " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    assert random_rate == pytest.approx(meta["random_map_peak_in_box"], abs=1e-3)
    assert rates["grad_cam"] >= meta["grad_cam_peak_in_box"] - 0.03
    assert rates["rollout"] >= meta["rollout_peak_in_box"] - 0.03
    assert rates["grad"] >= meta["grad_rollout_peak_in_box"] - 0.03
    # every map finds the shape far more often than a map without information (0.17 here)
    assert rates["grad_cam"] > random_rate + 0.35
    assert rates["rollout"] > random_rate + 0.5
    assert rates["grad"] > random_rate + 0.4


@pytest.mark.both
def test_the_shipped_vit_is_the_same_in_keras():
    tm = mv.builtin_model("torch", arch="vit")
    km = mv.builtin_model("keras", arch="vit")
    x = shapes_dataset(4, seed=9).images
    np.testing.assert_allclose(
        mv.forward(km, mv.to_channels_last(x)), mv.forward(tm, x), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        mv.grad_cam(km, mv.to_channels_last(x)), mv.grad_cam(tm, x), atol=1e-4
    )


def test_arch_is_keyword_only_and_checked():
    with pytest.raises(TypeError):
        mv.builtin_model("torch", "builtin", "vit")  # type: ignore[misc]
    with pytest.raises(ValueError, match="arch"):
        mv.builtin_model("torch", arch="resnet")
