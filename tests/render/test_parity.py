"""Parity figures: the error along the depth, one pair side by side (no framework);
and the same capture from the PyTorch and the Keras built-in CNN draws the same pictures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import multiviz as mv
from multiviz.errors import LayerNotFoundError
from multiviz.parity.compare import compare_activations
from multiviz.render.parity import plot_comparison
from tests import builtin_f64  # the built-in CNN in float64 NumPy
from tests.parity.test_report import _acts  # layers with differences planted at known places

# --------------------------------------------------------------------------- figures


def test_error_plot_marks_first_divergence():
    a = _acts()
    b = {k: v.copy() for k, v in a.items()}
    b["conv2"] += 0.1
    report = compare_activations(a, b)
    fig = report.plot()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(a)
    assert any("first divergence" in t.get_text() and "conv2" in t.get_text() for t in ax.texts)
    assert any(
        abs(line.get_ydata()[0] - 1e-4) < 1e-12 for line in ax.lines if len(line.get_ydata()) == 2
    )


def test_plot_comparison_shows_both_sides_and_their_difference():
    a = _acts()
    b = {k: v.copy() for k, v in a.items()}
    b["conv2"][0, 1] += 1.0  # channel 1 of sample 0 only
    report = compare_activations(a, b, labels=("torch", "keras"))
    fig = plot_comparison(report)  # default: the first divergence
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    ref_img, cand_img, diff_img = (np.asarray(im.get_array()) for im in images)
    assert ref_img.shape == cand_img.shape == diff_img.shape
    assert np.nanmax(diff_img) == pytest.approx(1.0, rel=1e-6)
    assert np.nanmin(diff_img) == pytest.approx(0.0, abs=1e-6)  # other channels: no difference
    assert "conv2" in fig.get_suptitle() and "FAIL" in fig.get_suptitle()
    vec = plot_comparison(report, "fc")
    assert len(vec.axes) == 2
    with pytest.raises(IndexError):
        plot_comparison(report, "conv1", sample=5)
    with pytest.raises(LayerNotFoundError):
        plot_comparison(report, "nope")


# --------------------------------------------------------------------------- the same pictures from both frameworks


@pytest.fixture(scope="module")
def captures() -> tuple[mv.Activations, mv.Activations]:
    images = mv.shapes_dataset(3, seed=11).images  # (3, 3, 64, 64), channels first
    acts_t = mv.capture(mv.builtin_model("torch"), images)
    acts_k = mv.capture(mv.builtin_model("keras"), mv.to_channels_last(images))
    return acts_t, acts_k


@pytest.mark.both
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


@pytest.mark.both
@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3"])
def test_rgb_images_match_to_one_grey_level(captures, layer: str) -> None:
    acts_t, acts_k = captures
    rgb_t = mv.feature_map_image(acts_t[layer], sample=1, cmap="viridis", normalize="layer")
    rgb_k = mv.feature_map_image(acts_k[layer], sample=1, cmap="viridis", normalize="layer")
    assert rgb_t.shape == rgb_k.shape and rgb_t.dtype == np.uint8
    diff = np.abs(rgb_t.astype(int) - rgb_k.astype(int))
    # a float32 difference can only move a value across one colormap bin
    assert diff.max() <= 8 and (diff > 0).mean() < 1e-3


@pytest.mark.both
def test_aggregate_maps_agree(captures) -> None:
    # DESIGN.md: 1e-5 relative to the scale of what is compared. A sum over 64
    # channels of conv3 reaches ~6000, where float32 activations differ by ~1e-3
    # between frameworks, and each as much from a float64 reference (rounding).
    acts_t, acts_k = captures
    reference = builtin_f64.forward(mv.shapes_dataset(3, seed=11).images)["conv3"]
    for how in ("mean", "max", "std", "l2", "sum"):
        expected = mv.aggregate(reference, how)
        tolerance = 1e-5 * np.abs(expected).max()
        for acts in (acts_t, acts_k):
            np.testing.assert_allclose(mv.aggregate(acts["conv3"], how), expected, atol=tolerance)


def _png_pixels(fig: Figure) -> np.ndarray:
    import io

    from PIL import Image

    from multiviz.render.figures import figure_png

    return np.asarray(Image.open(io.BytesIO(figure_png(fig))).convert("RGB")).astype(int)


@pytest.mark.both
@pytest.mark.parametrize("figure", ["layer_stats", "feature_maps", "aggregate"])
def test_figures_match_to_one_colour_level(captures, figure: str) -> None:
    """The PNG a user saves, not only its data: the same size, and no pixel more than one
    colormap bin apart (a float32 difference can only move a value across one bin)."""
    draw = {
        "layer_stats": lambda acts: mv.plot_layer_stats(acts),
        "feature_maps": lambda acts: mv.plot_feature_maps(acts["conv2"], sample=1),
        "aggregate": lambda acts: mv.plot_aggregate(acts["conv3"], "mean", sample=1),
    }[figure]
    acts_t, acts_k = captures
    png_t, png_k = _png_pixels(draw(acts_t)), _png_pixels(draw(acts_k))
    assert png_t.shape == png_k.shape
    diff = np.abs(png_t - png_k)
    assert diff.max() <= 8 and (diff > 0).mean() < 1e-3
