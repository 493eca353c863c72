"""The same capture from the PyTorch and the Keras built-in CNN draws the same pictures."""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

pytestmark = pytest.mark.both


@pytest.fixture(scope="module")
def captures() -> tuple[mv.Activations, mv.Activations]:
    images = mv.shapes_dataset(3, seed=11).images  # (3, 3, 64, 64), channels first
    acts_t = mv.capture(mv.builtin_model("torch"), images)
    acts_k = mv.capture(mv.builtin_model("keras"), mv.to_channels_last(images))
    return acts_t, acts_k


@pytest.mark.parametrize("layer", ["conv1", "relu2", "conv3", "gap"])
@pytest.mark.parametrize("mode", ["map", "layer", "symmetric"])
def test_montages_are_identical(captures, layer: str, mode: str) -> None:
    acts_t, acts_k = captures
    for n in range(3):
        grid_t = mv.montage(mv.normalize(acts_t[layer][n], mode))
        grid_k = mv.montage(mv.normalize(acts_k[layer][n], mode))
        assert grid_t.shape == grid_k.shape
        np.testing.assert_array_equal(np.isnan(grid_t), np.isnan(grid_k))  # same padding
        np.testing.assert_allclose(grid_t, grid_k, atol=2e-5, equal_nan=True)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3"])
def test_rgb_images_match_to_one_grey_level(captures, layer: str) -> None:
    acts_t, acts_k = captures
    rgb_t = mv.feature_map_image(acts_t[layer], sample=1, cmap="viridis", normalize="layer")
    rgb_k = mv.feature_map_image(acts_k[layer], sample=1, cmap="viridis", normalize="layer")
    assert rgb_t.shape == rgb_k.shape and rgb_t.dtype == np.uint8
    diff = np.abs(rgb_t.astype(int) - rgb_k.astype(int))
    # a float32 difference can only move a value across one colormap bin
    assert diff.max() <= 8 and (diff > 0).mean() < 1e-3


def test_aggregate_maps_agree(captures) -> None:
    acts_t, acts_k = captures
    for how in ("mean", "max", "std", "l2", "sum"):
        np.testing.assert_allclose(
            mv.aggregate(acts_t["conv3"], how),
            mv.aggregate(acts_k["conv3"], how),
            rtol=1e-5,
            atol=1e-4,
        )
