"""Rendering: montage index arithmetic, colormapping against matplotlib, the fast
RGB path, saving, overlays, and figure-level checks of every plot function."""

from __future__ import annotations

import itertools
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from multiviz import InputShapeError
from multiviz.core.normalize import normalize
from multiviz.core.reduce import aggregate
from multiviz.core.resize import resize_bilinear
from multiviz.core.stats import layer_stats
from multiviz.render.colors import background_color, colorize, lookup_table
from multiviz.render.figures import (
    _layer_groups,
    plot_aggregate,
    plot_feature_maps,
    plot_layer_stats,
    plot_overlay,
)
from multiviz.render.montage import montage, tiling
from multiviz.render.rgb import feature_map_image, overlay_image, save_image, select_maps

RNG = np.random.default_rng(11)
MAPS = RNG.normal(size=(6, 5, 7)).astype(np.float32)  # C=6, H=5, W=7
BATCH = RNG.normal(size=(2, 6, 5, 7)).astype(np.float32)


def mpl_rgb(values: np.ndarray, cmap: str) -> np.ndarray:
    """The reference: matplotlib's own colormapping."""
    return matplotlib.colormaps[cmap](values, bytes=True)[..., :3]


# --------------------------------------------------------------------------- montage


def test_montage_puts_each_tile_at_its_place_with_padding():
    maps = np.arange(5 * 3 * 4, dtype=np.float32).reshape(5, 3, 4)
    m = montage(maps, ncols=3, pad=2, pad_value=-1)
    assert m.shape == (2 * (3 + 2) + 2, 3 * (4 + 2) + 2)  # (12, 20)
    covered = np.zeros(m.shape, bool)
    for i in range(5):
        y, x = 2 + (i // 3) * (3 + 2), 2 + (i % 3) * (4 + 2)
        np.testing.assert_array_equal(m[y : y + 3, x : x + 4], maps[i])
        covered[y : y + 3, x : x + 4] = True
    assert np.all(m[~covered] == -1)  # padding, border and the empty 6th cell
    assert np.all(m[7:10, 14:18] == -1)  # the empty cell (row 1, col 2)
    assert tiling(maps, ncols=3, pad=2).origin(4) == (7, 8)


def test_montage_defaults_nan_padding_near_square():
    m = montage(MAPS)
    t = tiling(MAPS)
    assert t.grid == (2, 3) and m.shape == t.shape == (2 * 6 + 1, 3 * 8 + 1)
    assert np.isnan(m[0]).all() and np.isnan(m[:, 0]).all()
    np.testing.assert_array_equal(m[1:6, 1:8], MAPS[0])
    np.testing.assert_array_equal(montage(MAPS, pad=0, ncols=6)[:, 7:14], MAPS[1])


def test_montage_of_a_batch_has_one_row_per_sample():
    m = montage(BATCH, pad=1)
    assert tiling(BATCH).grid == (2, 6)
    np.testing.assert_array_equal(m[7:12, 1 + 3 * 8 : 8 + 3 * 8], BATCH[1, 3])


def test_montage_of_1d_maps_stacks_strips():
    x = RNG.normal(size=(3, 40)).astype(np.float32)
    m = montage(x, pad=1)
    s = round(0.75 * 40 / 3)  # strip height: 10 rows
    assert m.shape == (3 * (s + 1) + 1, 40 + 2)
    for c in range(3):
        y = 1 + c * (s + 1)
        np.testing.assert_array_equal(m[y : y + s, 1:41], np.tile(x[c], (s, 1)))
    # many thin strips: no gaps, one row per channel
    many = RNG.normal(size=(64, 20))
    np.testing.assert_array_equal(montage(many), many.astype(np.float32))


def test_montage_of_a_vector_wraps_row_major():
    m = montage(np.arange(10, dtype=np.float32), pad=0)
    assert m.shape == (3, 4)
    np.testing.assert_array_equal(m.ravel()[:10], np.arange(10))
    assert np.isnan(m.ravel()[10:]).all()


def test_montage_bad_arguments():
    with pytest.raises(ValueError, match="ncols"):
        montage(MAPS, ncols=0)
    with pytest.raises(ValueError, match="pad"):
        montage(MAPS, pad=-1)


# --------------------------------------------------------------------------- colors


@pytest.mark.parametrize("cmap", ["gray", "viridis", "RdBu_r", "tab10", "jet"])
def test_colorize_equals_matplotlib_bytes(cmap):
    v = np.r_[RNG.random(500), np.arange(257) / 256, [0.0, 1.0]].astype(np.float32)
    np.testing.assert_array_equal(colorize(v, cmap), mpl_rgb(v, cmap))
    v64 = RNG.random((4, 5))
    np.testing.assert_array_equal(colorize(v64, cmap), mpl_rgb(v64, cmap))


def test_colorize_clips_and_paints_nan_background():
    rgb = colorize(np.array([-3.0, 7.0, np.nan]), "viridis", background=(1, 2, 3))
    np.testing.assert_array_equal(
        rgb, [lookup_table("viridis")[0], lookup_table("viridis")[-1], [1, 2, 3]]
    )
    assert colorize(np.array([np.nan]), "viridis")[0].tolist() == list(background_color("viridis"))


@pytest.mark.parametrize("cmap", ["gray", "viridis", "magma", "RdBu_r", "jet", "plasma"])
def test_background_stands_apart_from_the_colormap(cmap):
    table = lookup_table(cmap).astype(float)
    dist = np.sqrt(((table - np.array(background_color(cmap))) ** 2).sum(1)).min()
    assert dist > 40


def test_unknown_colormap_suggests_names():
    with pytest.raises(ValueError, match="viridis"):
        colorize(np.zeros(3), "viridiss")


# --------------------------------------------------------------------------- fast images


def test_feature_map_image_equals_colorize_montage_normalize():
    rgb = feature_map_image(BATCH, sample=1, cmap="viridis", normalize="layer", ncols=4, pad=2)
    expected = colorize(montage(normalize(BATCH[1], "layer"), ncols=4, pad=2), "viridis")
    np.testing.assert_array_equal(rgb, expected)
    assert rgb.dtype == np.uint8 and rgb.shape == (2 * 7 + 2, 4 * 9 + 2, 3)


def test_feature_map_image_has_no_visual_loss():
    """Each tile equals the map min-max scaled in float64 and colormapped by matplotlib."""
    rgb = feature_map_image(
        MAPS, cmap="magma", channels=[4, 1, 5], max_maps=2, ncols=2, normalize="map"
    )
    for i, c in enumerate([4, 1]):
        m = MAPS[c].astype(np.float64)
        ref = mpl_rgb(((m - m.min()) / (m.max() - m.min())).astype(np.float32), "magma")
        y, x = 1 + (i // 2) * 6, 1 + (i % 2) * 8
        np.testing.assert_array_equal(rgb[y : y + 5, x : x + 7], ref)
    assert rgb.shape == (5 + 2, 2 * 8 + 1, 3)
    assert (rgb[0] == background_color("magma")).all()


def test_feature_map_image_upscale_repeats_pixels():
    small = feature_map_image(MAPS)
    big = feature_map_image(MAPS, upscale=3)
    np.testing.assert_array_equal(big[::3, ::3], small)
    np.testing.assert_array_equal(big[1::3, 2::3], small)
    with pytest.raises(ValueError, match="upscale"):
        feature_map_image(MAPS, upscale=0)


@pytest.mark.parametrize(
    ("x", "kwargs"),
    [
        (MAPS, {}),
        (BATCH, {"sample": -1}),
        (MAPS[:, 0], {}),  # (C, L)
        (BATCH[:, :, 0], {"layout": "NCL"}),
        (MAPS[0, 0], {}),  # (F,)
        (BATCH[:, 0, 0], {"layout": "NF", "sample": 1}),
    ],
)
def test_every_legal_layout_makes_an_image(x, kwargs):
    rgb = feature_map_image(x, **kwargs)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


def test_select_maps_normalizes_the_whole_layer_then_selects():
    x = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 3.0), np.arange(6.0).reshape(2, 3)])
    sel = select_maps(x, channels=[1], normalize="layer")
    np.testing.assert_allclose(sel.values, [np.full((2, 3), 0.6)])  # 3 / 5, range of all maps
    assert sel.total == 3 and sel.sample is None and sel.info.constant.tolist() == [1, 1, 0]
    with pytest.raises(InputShapeError, match="sample"):
        select_maps(BATCH, sample=2)


def test_save_image_array_and_figure(tmp_path):
    rgb = feature_map_image(MAPS, cmap="plasma")
    path = save_image(rgb, tmp_path / "sub" / "grid.png")
    assert Image.open(path).format == "PNG"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    grey = save_image(np.linspace(0, 1, 12).reshape(3, 4), tmp_path / "grey.png")
    assert np.asarray(Image.open(grey)).tolist()[2][3] == 255
    fig = plot_feature_maps(MAPS)
    out = save_image(fig, tmp_path / "fig.png", dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputShapeError, match="`image` must be"):
        save_image(np.zeros((2, 3, 4, 3)), tmp_path / "bad.png")
    with pytest.raises(TypeError, match="Figure"):
        save_image([1, 2], tmp_path / "bad.png")


# --------------------------------------------------------------------------- overlays


def test_overlay_blends_the_upsampled_colormapped_heatmap():
    img = RNG.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    heat = np.array([[0.0, 2.0, 1.0], [4.0, 3.0, 0.0]])
    up = np.clip(resize_bilinear(heat / 4.0, (8, 12)), 0, 1)
    color = mpl_rgb(up, "jet").astype(float)
    expected = np.rint((0.25 * (img / 255.0) + 0.75 * (color / 255.0)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay_image(img, heat, alpha=0.75, blend="uniform"), expected)
    # the classic look is one option away: jet at opacity 0.5
    classic = np.rint((0.5 * (img / 255.0) + 0.5 * (color / 255.0)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay_image(img, heat, blend="uniform"), classic)
    np.testing.assert_array_equal(overlay_image(img, heat, alpha=0.0), img)


def test_overlay_opacity_follows_the_value_in_turbo():
    """By default a pixel's opacity is alpha * value: 0 leaves the image as it was."""
    img = RNG.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    heat = np.array([[0.0, 2.0, 1.0], [4.0, 3.0, 0.0]])
    up = np.clip(resize_bilinear(heat / 4.0, (8, 12)), 0, 1)
    a = 0.6 * up[..., None]  # the default largest opacity, 0.6
    color = mpl_rgb(up, "turbo") / 255.0
    expected = np.rint(((1 - a) * (img / 255.0) + a * color) * 255).astype(np.uint8)
    out = overlay_image(img, heat)
    np.testing.assert_array_equal(out, expected)
    cold = up == 0
    assert cold.any() and (out[cold] == img[cold]).all()  # the image, untouched, where 0


def test_overlay_of_a_signed_map_is_centred_on_zero():
    """Signed heatmaps: RdBu_r scaled by max |v|, opacity alpha * |2u - 1| (0 is clear)."""
    img = np.full((4, 6, 3), 200, np.uint8)
    heat = np.array([[-2.0, 0.0, 1.0], [2.0, 0.0, -1.0]])
    up = np.clip(resize_bilinear(heat / 4.0 + 0.5, (4, 6)), 0, 1)
    a = 0.6 * np.abs(2 * up - 1)[..., None]
    expected = np.rint(((1 - a) * (img / 255.0) + a * mpl_rgb(up, "RdBu_r") / 255.0) * 255)
    np.testing.assert_array_equal(overlay_image(img, heat), expected.astype(np.uint8))
    with pytest.raises(ValueError, match="blend"):
        overlay_image(img, heat, blend="screen")


def test_overlay_accepts_grey_and_float_images():
    grey = np.full((6, 4), 0.5)
    out = overlay_image(grey, np.ones((2, 2)), alpha=0.0)
    assert out.shape == (6, 4, 3) and (out == 128).all()
    assert overlay_image(np.zeros((6, 4, 4)), np.ones((1, 3, 3))).shape == (6, 4, 3)


def test_overlay_refuses_channels_first_and_bad_ranges():
    with pytest.raises(InputShapeError, match="to_channels_last"):
        overlay_image(np.zeros((3, 32, 40)), np.ones((4, 5)))
    with pytest.raises(InputShapeError, match="batch"):
        overlay_image(np.zeros((1, 32, 40, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay_image(np.full((4, 4, 3), 2.5), np.ones((2, 2)))
    with pytest.raises(InputShapeError, match="heatmap"):
        overlay_image(np.zeros((4, 4, 3)), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="alpha"):
        overlay_image(np.zeros((4, 4, 3)), np.ones((2, 2)), alpha=2)


# --------------------------------------------------------------------------- figures


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_plot_feature_maps_one_image_one_label_per_tile():
    positive = np.abs(MAPS)
    fig = plot_feature_maps(positive)
    assert isinstance(fig, Figure) and len(fig.axes) == 1  # each map scaled alone: no colorbar
    ax = fig.axes[0]
    assert len(ax.images) == 1
    assert texts(ax) == [f"#{i}" for i in range(6)]
    np.testing.assert_array_equal(
        ax.images[0].get_array().filled(np.nan), montage(normalize(positive, "map"))
    )
    assert "6 channels" in ax.get_title() and ax.images[0].get_cmap().name.startswith("gray")
    assert (
        plot_feature_maps(positive[:1], name="conv1")
        .axes[0]
        .get_title()
        .startswith("conv1: 1 channel\n")
    )


def test_signed_maps_default_to_a_diverging_colormap_centred_on_zero_with_a_colorbar():
    """Signed data: RdBu_r, 0 at the middle colour, one scale (+-max|v|), a colorbar in its units."""
    fig = plot_feature_maps(MAPS)
    ax, cbar = fig.axes
    assert ax.images[0].get_cmap().name.startswith("RdBu_r")
    s = np.abs(MAPS).max()
    np.testing.assert_allclose(
        ax.images[0].get_array().filled(np.nan), montage((MAPS / s + 1) / 2), atol=1e-6
    )
    assert cbar.get_ylim() == pytest.approx((-s, s), rel=1e-5)
    assert "0 at the centre colour" in ax.get_title()
    # non-negative data keeps a sequential map; one shared scale still gets its colorbar
    fig = plot_feature_maps(np.abs(MAPS), normalize="layer", cmap="viridis")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylim() == pytest.approx(
        (np.abs(MAPS).min(), np.abs(MAPS).max()), rel=1e-5
    )
    assert len(plot_feature_maps(MAPS, colorbar=False).axes) == 1


def test_plot_feature_maps_batch_sample_channels_and_max_maps():
    fig = plot_feature_maps(BATCH, sample=1, channels=[5, 2, 0], max_maps=2, normalize="map")
    ax = fig.axes[0]
    assert texts(ax) == ["#5", "#2"]
    assert "2 of 6 channels, sample 1" in ax.get_title()
    expected = montage(normalize(BATCH[1])[[5, 2]])
    np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan), expected)


def test_plot_feature_maps_labels_special_maps():
    x = MAPS.copy()
    x[2] = 4.0
    x[3, 0, 0] = np.nan
    ax = plot_feature_maps(x).axes[0]
    assert texts(ax)[2] == "#2 const" and texts(ax)[3] == "#3 nan"
    assert len(plot_feature_maps(x, labels=False).axes[0].texts) == 0


def test_big_grids_of_consecutive_channels_are_labelled_on_the_axes():
    x = RNG.random((200, 6, 6)).astype(np.float32)
    x[150] = 0.0
    ax = plot_feature_maps(x).axes[0]
    t = tiling(x)
    assert t.grid == (14, 15) and len(ax.images) == 1
    rows = [tk.get_text() for tk in ax.get_yticklabels()]
    assert rows == [f"#{r * 15}" for r in range(14)]
    assert [tk.get_text() for tk in ax.get_xticklabels()][:3] == ["+0", "+1", "+2"]
    assert texts(ax) == ["#150 const"]  # only flagged tiles keep a label of their own
    assert len(ax.collections) == 1  # and an orange frame
    # an arbitrary selection cannot be read as row start + offset: label every tile
    ax = plot_feature_maps(x, channels=np.arange(199, -1, -1)).axes[0]
    assert len(ax.texts) == 200 and texts(ax)[0] == "#199"


@pytest.mark.parametrize("count", [4, 16, 64, 128, 256])
def test_badges_fit_their_tile_at_every_grid_size(count):
    """Every label drawn lies inside its own tile; special maps are framed at any size."""
    x = RNG.random((count, 12, 12)).astype(np.float32)
    x[[1, count - 1]] = 0.0  # constant: "#1 const" where it fits, a frame always
    fig = plot_feature_maps(x, normalize="map")
    ax = fig.axes[0]
    fig.canvas.draw()
    t = tiling(x)
    to_px = ax.transData.transform
    for text in ax.texts:
        ch = int(text.get_text().split()[0][1:])
        i = list(range(count)).index(ch)
        y, x0 = t.origin(i)
        (left, top), (right, bottom) = to_px([(x0 - 0.5, y - 0.5), (x0 + 12 - 0.5, y + 12 - 0.5)])
        box = text.get_window_extent()
        assert left - 1 <= box.x0 and box.x1 <= right + 1, text.get_text()
        assert bottom - 1 <= box.y0 and box.y1 <= top + 1, text.get_text()
    frames = ax.collections[0].get_paths()
    assert len(frames) == 2
    assert "2 special maps" in ax.get_title()


def test_plot_feature_maps_into_a_given_axes_with_colorbar():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    out = plot_feature_maps(MAPS, normalize="layer", colorbar=True, ax=right)
    assert out is fig
    assert len(right.images) == 1 and len(left.images) == 0
    cbar_ax = fig.axes[-1]
    assert len(fig.axes) == 3
    lo, hi = cbar_ax.get_ylim()
    assert (lo, hi) == pytest.approx((MAPS.min(), MAPS.max()), rel=1e-5)


def test_plot_feature_maps_symmetric_defaults_to_diverging_map():
    ax = plot_feature_maps(MAPS, normalize="symmetric").axes[0]
    assert ax.images[0].get_cmap().name.startswith("RdBu_r")


def test_plot_feature_maps_1d_maps_label_the_y_axis():
    ax = plot_feature_maps(MAPS[:, 0]).axes[0]  # (6, 7): six strips of length 7
    assert len(ax.images) == 1
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"#{i}" for i in range(6)]
    assert ax.get_xlabel() == "position"
    ax = plot_feature_maps(BATCH[:, :, 0], layout="NCL", sample=1).axes[0]
    assert "sample 1" in ax.get_title()


def test_plot_feature_maps_vector_is_labelled():
    ax = plot_feature_maps(np.arange(10.0)).axes[0]
    assert len(ax.images) == 1
    assert "vector of 10 features" in ax.get_title() and "3x4" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "4", "8"]
    ax = plot_feature_maps(BATCH[:, :, 0, 0], layout="NF", sample=0).axes[0]
    assert "sample 0" in ax.get_title()


def test_plot_aggregate_2d_1d_and_vector():
    positive = np.abs(BATCH)
    fig = plot_aggregate(positive, "max", sample=1)
    ax = fig.axes[0]
    agg = aggregate(positive[1], "max")
    assert len(ax.images) == 1 and len(fig.axes) == 2  # image + colorbar
    np.testing.assert_allclose(ax.images[0].get_array(), normalize(agg[None], "layer")[0])
    assert fig.axes[1].get_ylim() == pytest.approx((agg.min(), agg.max()), rel=1e-5)
    assert "max over 6 channels, sample 1" == ax.get_title()
    assert ax.images[0].get_cmap().name.startswith("plasma")  # non-negative: sequential

    # a signed mean: diverging, 0 at the white centre, +-max|v| at the ends
    fig = plot_aggregate(BATCH, "mean", sample=0, name="conv3")
    ax = fig.axes[0]
    mean = aggregate(BATCH[0], "mean")
    s = np.abs(mean).max()
    assert mean.min() < 0 < mean.max() and ax.images[0].get_cmap().name.startswith("RdBu_r")
    np.testing.assert_allclose(ax.images[0].get_array(), mean / (2 * s) + 0.5, atol=1e-6)
    assert fig.axes[1].get_ylim() == pytest.approx((-s, s), rel=1e-5)
    assert ax.get_title().startswith("conv3: mean over 6 channels, sample 0")

    ax = plot_aggregate(MAPS[:, 0], "mean").axes[0]
    assert len(ax.lines) == 1 and len(ax.images) == 0
    np.testing.assert_allclose(ax.lines[0].get_ydata(), MAPS[:, 0].mean(axis=0), rtol=1e-6)

    ax = plot_aggregate(np.array([1.0, 2.0, 6.0]), "mean").axes[0]
    assert len(ax.lines) == 2 and ax.lines[1].get_ydata()[0] == 3.0

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_aggregate(MAPS, ax=ax, colorbar=False) is fig and len(fig.axes) == 1


def test_plot_overlay_draws_the_overlay_image():
    img = RNG.random((16, 20, 3))
    heat = RNG.random((4, 5))
    fig = plot_overlay(img, heat, alpha=0.4, title="cam")
    ax = fig.axes[0]
    assert len(ax.images) == 1 and ax.get_title() == "cam"
    np.testing.assert_array_equal(ax.images[0].get_array(), overlay_image(img, heat, alpha=0.4))
    fig = plot_overlay(img, heat, colorbar=True)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylim() == pytest.approx((heat.min(), heat.max()))
    with pytest.raises(InputShapeError, match="to_channels_last"):
        plot_overlay(np.moveaxis(img, -1, 0), heat)


def test_plot_layer_stats_one_row_per_layer_input_at_the_top():
    acts = {
        "conv1": np.maximum(RNG.normal(size=(2, 4, 6, 5)), 0),
        "conv2": np.zeros((2, 8, 3, 2)),
        "fc": RNG.normal(size=(2, 7)),
    }
    fig = plot_layer_stats(acts)
    ranges, fractions = fig.axes
    assert [t.get_text() for t in ranges.get_yticklabels()] == ["conv1", "conv2", "fc"]
    assert ranges.get_ylim() == (2.5, -0.5)  # the input at the top
    assert len(fractions.patches) == 2 * 3  # dead / zero bars per layer
    assert "no layer can saturate" in fractions.get_xlabel()  # no bounded activation: no bars
    dead = [p.get_width() for p in fractions.patches[:3]]
    # dead: never > 0 over both inputs; for fc, the features negative in both
    assert dead == [0.0, 1.0, float(np.mean((acts["fc"] > 0).sum(axis=0) == 0))]
    median = next(line for line in ranges.lines if line.get_label() == "median")
    np.testing.assert_allclose(median.get_xdata(), [r.p50 for r in layer_stats(acts)])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "dead channels (never > 0 over 2 inputs)" in legend
    assert "1st-99th percentile" in legend
    # from records, into one given axes: fractions go on a twin axis
    fig2 = Figure()
    ax = fig2.add_subplot()
    assert plot_layer_stats(layer_stats(acts), ax=ax, title="t") is fig2
    assert len(fig2.axes) == 2 and ax.get_title() == "t"
    with pytest.raises(ValueError, match="at least one layer"):
        plot_layer_stats({})


def test_plot_layer_stats_has_no_empty_panel():
    """Fractions all zero (no dead channel, zero or saturated value): one panel, and a title
    that says so; a bounded layer gets its saturation bars, zeros included."""
    acts = {"a": 1.0 + RNG.random((2, 3, 4, 4)), "b": 2.0 + RNG.random((2, 5))}
    fig = plot_layer_stats(acts)
    assert len(fig.axes) == 1 and "no dead channels" in fig.get_suptitle()
    acts["sig"] = 1 / (1 + np.exp(-20 * RNG.normal(size=(2, 3, 4, 4))))  # many at 0 or 1
    fig = plot_layer_stats(layer_stats(acts, bounds={"sig": (0.0, 1.0)}))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(fig.axes) == 2 and "saturated values" in labels


def _deep_net(n: int) -> dict[str, np.ndarray]:
    """``n`` layers in blocks of 10, named like torchvision's; activations shrink with depth."""
    rng = np.random.default_rng(5)
    return {
        f"features.{i // 10}.block.{i % 10}": rng.normal(size=(2, 3, 2, 2)) * 10.0 ** (2 - i / 30)
        for i in range(n)
    }


@pytest.mark.parametrize("n", [10, 100, 120, 500])
def test_plot_layer_stats_reads_at_a_glance_from_10_to_500_layers(n, tmp_path):
    """Size within 2,500 x 6,000 px at 500 layers; a name per row or per block; <= 8 decades."""
    fig = plot_layer_stats(_deep_net(n))
    path = tmp_path / "stats.png"
    fig.savefig(path)
    width, height = Image.open(path).size
    assert width <= 2500 and height <= 6000
    ranges = fig.axes[0]
    labels = [t.get_text() for t in ranges.get_yticklabels()]
    if n <= 150:  # every layer named on its own row
        assert labels == list(_deep_net(n))
        assert height >= 10 * n  # rows of at least 10 px: names do not overlap
    else:  # one label per block of 10, shaded alternately, with its layer count
        assert labels[:2] == ["features.0 (10)", "features.1 (10)"] and len(labels) == n // 10
        assert len(ranges.patches) > n // 20  # the shaded blocks (and the bars)
        fig.canvas.draw()
        boxes = [t.get_window_extent() for t in ranges.get_yticklabels()]
        assert all(a.y0 >= b.y1 - 1 for a, b in itertools.pairwise(boxes))  # no overlap
    if n >= 100:  # 2 decades and more: symmetric log
        assert ranges.get_xscale() == "symlog"
        lo, hi = ranges.get_xlim()
        linthresh = ranges.xaxis.get_transform().linthresh
        assert np.log10(max(abs(lo), abs(hi)) / linthresh) <= 8.0
        assert f"linear within ±1e{round(np.log10(linthresh))}" in ranges.get_xlabel()
    # the value axis's labels never run together, however many decades it spans
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ranges.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 3
    assert all(b.x0 >= a.x1 + 2 for a, b in itertools.pairwise(boxes))


def test_plot_layer_stats_past_40_layers_gives_each_layer_its_own_fraction_stripe():
    """60 layers, one of them all zeros: its dead and zero bars are 100%, every other
    layer's 0%, each bar filling half its row (two fractions, no gap), so a stripe
    reads per layer rather than as a line between layers."""
    acts = {f"block{i // 10}.conv{i % 10}": 1.0 + RNG.random((2, 3, 2, 2)) for i in range(60)}
    acts["block3.conv0"] = np.zeros((2, 3, 2, 2))
    fractions = plot_layer_stats(acts).axes[1]
    dead, zero = fractions.patches[:60], fractions.patches[60:]
    expected = [1.0 if i == 30 else 0.0 for i in range(60)]
    assert [p.get_width() for p in dead] == expected == [p.get_width() for p in zero]
    assert {p.get_height() for p in fractions.patches} == {0.5}


def _mobilenet_v2_names() -> list[str]:
    """keras.applications.MobileNetV2's 155 layer names (no dots: ``_`` separates)."""
    names = ["Conv1", "bn_Conv1", "Conv1_relu"]
    names += [f"expanded_conv_{s}" for s in ("depthwise", "depthwise_BN", "depthwise_relu")]
    names += ["expanded_conv_project", "expanded_conv_project_BN"]
    for b in range(1, 17):
        names += [f"block_{b}_{s}" for s in ("expand", "expand_BN", "expand_relu")]
        names += [f"block_{b}_pad"] if b in (1, 3, 6, 13) else []
        names += [f"block_{b}_{s}" for s in ("depthwise", "depthwise_BN", "depthwise_relu")]
        names += [f"block_{b}_{s}" for s in ("project", "project_BN")]
        names += [f"block_{b}_add"] if b in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15) else []
    return [*names, "Conv_1", "Conv_1_bn", "out_relu", "global_average_pooling2d", "predictions"]


def test_plot_layer_stats_groups_real_networks_by_block():
    """Blocks as the networks define them: MobileNetV2's ``block_3`` (``_`` separates, not one
    ``block`` group of 142 layers), ResNet-50's ``layer2.1`` (not ``layer3`` of 56)."""
    mobilenet = _mobilenet_v2_names()
    assert len(mobilenet) == 155
    labels = [label for _, _, label in _layer_groups(mobilenet)]
    assert labels[labels.index("block_1") :][:16] == [f"block_{b}" for b in range(1, 17)]
    resnet = ["conv1", "bn1", "relu", "maxpool"]
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            resnet += [f"layer{stage}.{b}.{m}" for m in ("conv1", "bn1", "conv2", "bn2")]
            resnet += [f"layer{stage}.{b}.{m}" for m in ("conv3", "bn3", "relu", "relu#1")]
            resnet += [f"layer{stage}.{b}.relu#2"]
            resnet += [f"layer{stage}.{b}.downsample.{k}" for k in (0, 1)] if b == 0 else []
    groups = _layer_groups([*resnet, "avgpool", "fc"])
    assert [label for _, _, label in groups if label.startswith("layer2")] == [
        "layer2.0", "layer2.1", "layer2.2", "layer2.3"
    ]  # fmt: skip
    assert max(stop - start for start, stop, _ in groups) == 11  # a first block, downsample too


def test_plot_layer_stats_symlog_threshold_comes_from_the_data_not_its_smallest_layer():
    """One near-zero layer (1e-17, as EfficientNet's random-weight SE gates give) must not
    stretch the axis over 30 decades: the linear zone comes from the layers' percentiles."""
    acts = {f"l{i}": RNG.normal(size=(2, 4, 3, 3)) * s for i, s in enumerate([1e2, 10, 1, 0.1])}
    acts["tiny"] = RNG.normal(size=(2, 4, 3, 3)) * 1e-17
    ranges = plot_layer_stats(acts).axes[0]
    linthresh = ranges.xaxis.get_transform().linthresh
    assert 1e-3 <= linthresh <= 1e-1
    # the axis says where it is linear, and that the tiny layer (only it) lies inside
    assert ranges.get_xlabel().endswith("; 1 layer wholly inside)")
    lo, hi = ranges.get_xlim()
    assert np.log10(max(abs(lo), abs(hi)) / linthresh) <= 8.0
    # one decade or so: a plain linear axis
    assert plot_layer_stats({"a": BATCH, "b": 2 * BATCH}).axes[0].get_xscale() == "linear"


def test_plots_leave_no_pyplot_figures():
    import matplotlib.pyplot as plt

    plt.close("all")
    plot_feature_maps(MAPS)
    plot_aggregate(MAPS)
    plot_overlay(np.zeros((8, 8)), np.ones((2, 2)))
    plot_layer_stats({"a": BATCH})
    assert plt.get_fignums() == []


def test_render_imports_no_framework():
    code = (
        "import sys, multiviz.render.figures, multiviz.render.rgb, multiviz.core.reduce; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
