"""The procedural shapes data set: ground truth that is exactly right (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.sources.shapes_dataset import (
    CLASS_NAMES,
    ShapesData,
    sample,
    sample_image,
    shapes_dataset,
)

# height != width (and neither is 3) so a transposed axis cannot hide
H, W = 40, 52


@pytest.fixture(scope="module")
def data() -> ShapesData:
    return shapes_dataset(48, size=(H, W), seed=5)


def test_shapes_dtypes_and_range(data: ShapesData) -> None:
    assert data.images.shape == (48, 3, H, W) and data.images.dtype == np.float32
    assert data.labels.shape == (48,) and data.labels.dtype == np.int64
    assert data.masks.shape == (48, H, W) and data.masks.dtype == bool
    assert data.boxes.shape == (48, 4) and np.issubdtype(data.boxes.dtype, np.integer)
    assert data.colors.shape == (48, 3)
    assert data.class_names == CLASS_NAMES == ("circle", "square", "triangle", "cross")
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert np.isfinite(data.images).all()


def test_box_is_the_tight_box_of_the_mask(data: ShapesData) -> None:
    for mask, (x0, y0, x1, y1) in zip(data.masks, data.boxes, strict=True):
        rows, cols = np.nonzero(mask)
        assert rows.size > 20  # a real shape, not a speck
        # (x0, y0) inclusive, (x1, y1) exclusive; x is the column, y the row
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert not (mask & ~inside).any()  # the mask lies inside its box
        # and is not clipped by the image edge: the whole shape is in the picture
        assert 0 < x0 and 0 < y0 and x1 < W and y1 < H


def test_shape_pixels_have_the_drawn_colour(data: ShapesData) -> None:
    for image, mask, color in zip(data.images, data.masks, data.colors, strict=True):
        np.testing.assert_array_equal(
            image[:, mask], np.broadcast_to(color[:, None], (3, mask.sum()))
        )
        # the background is far from it: every gradient colour is >= 0.4 away in RGB
        # (noise and clutter move some pixels, so compare the median)
        distance = np.linalg.norm(image[:, ~mask] - color[:, None], axis=0)
        assert np.median(distance) > 0.3


def test_each_class_has_its_geometry(data: ShapesData) -> None:
    # fraction of the tight box the shape fills: a disc fills pi/4 of its square box,
    # any triangle at most 1/2 of its bounding box, a rotated square at least 1/2
    fill = data.masks.sum(axis=(1, 2)) / np.prod(data.boxes[:, 2:] - data.boxes[:, :2], axis=1)
    by_class = {name: fill[data.labels == k] for k, name in enumerate(CLASS_NAMES)}
    assert np.all(np.abs(by_class["circle"] - np.pi / 4) < 0.09)  # small discs are jagged
    assert np.all(by_class["triangle"] < 0.56)
    assert np.all(by_class["square"] > 0.48)
    # a circle's box is square (up to a pixel), whatever the image's aspect
    circles = data.boxes[data.labels == 0]
    assert np.all(np.abs((circles[:, 2] - circles[:, 0]) - (circles[:, 3] - circles[:, 1])) <= 1)


def test_classes_are_balanced() -> None:
    assert np.bincount(shapes_dataset(40, size=16).labels).tolist() == [10, 10, 10, 10]
    assert np.bincount(shapes_dataset(10, size=16).labels).tolist() == [3, 3, 2, 2]
    assert [CLASS_NAMES[k] for k in shapes_dataset(4).labels] == list(CLASS_NAMES)


def test_deterministic_given_a_seed() -> None:
    a, b = shapes_dataset(6, size=32, seed=3), shapes_dataset(6, size=32, seed=3)
    for field in ("images", "labels", "masks", "boxes", "colors"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # item i depends on (seed, i) only: a longer set starts with the shorter one
    np.testing.assert_array_equal(shapes_dataset(3, size=32, seed=3).images, a.images[:3])


def test_different_seeds_differ() -> None:
    a, b = shapes_dataset(4, size=32, seed=0), shapes_dataset(4, size=32, seed=1)
    assert np.abs(a.images - b.images).mean() > 0.1
    assert not np.array_equal(a.masks, b.masks)
    # and images within one set differ from each other
    assert np.abs(a.images[0] - a.images[4 % len(a) - 1]).mean() > 0.1


def test_sample_and_sample_image() -> None:
    one = sample(seed=4, size=(H, W), label="cross")
    assert len(one) == 1 and one.labels.tolist() == [3]
    assert one.images.shape == (1, 3, H, W)
    np.testing.assert_array_equal(sample_image(seed=4, size=(H, W), label=3), one.images[0])
    assert sample(seed=4, label=1).labels.tolist() == [1]
    # label=None picks one from the seed: every class turns up over a few seeds
    assert {int(sample(seed=s, size=16).labels[0]) for s in range(40)} == {0, 1, 2, 3}
    np.testing.assert_array_equal(sample_image(seed=9), sample_image(seed=9))
    assert not np.array_equal(sample_image(seed=9), sample_image(seed=10))


def test_slicing_gives_shapes_data(data: ShapesData) -> None:
    part = data[2:5]
    assert isinstance(part, ShapesData) and len(part) == 3
    np.testing.assert_array_equal(part.boxes, data.boxes[2:5])
    single = data[7]
    assert len(single) == 1 and single.labels[0] == data.labels[7]
    assert data[-1].labels[0] == data.labels[-1]
    picked = data[np.array([0, 9])]
    np.testing.assert_array_equal(picked.masks, data.masks[[0, 9]])


def test_empty_and_bad_arguments() -> None:
    empty = shapes_dataset(0, size=(H, W))
    assert len(empty) == 0 and empty.images.shape == (0, 3, H, W) and empty.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="n"):
        shapes_dataset(-1)
    with pytest.raises(ValueError, match="at least 16"):
        shapes_dataset(2, size=8)
    with pytest.raises(ValueError, match="circle"):
        sample(label="hexagon")
    with pytest.raises(ValueError, match=r"0\.\.3"):
        sample(label=4)
