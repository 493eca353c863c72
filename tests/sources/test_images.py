"""Reading images of every pixel mode, folders and .npy arrays, and preprocessing them.

Core tests: Pillow and NumPy only. Expected values are worked out by hand
from the pixel values written (8-bit: v / 255, 16-bit: v / 65535,
transparency composited onto white).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from multiviz.errors import ImageError, InputShapeError
from multiviz.sources.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    image_files,
    load_images,
    preprocess_images,
    read_array,
    read_image,
    read_images,
)

H, W = 5, 7  # height != width != channels, so a transposed axis cannot pass


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


# --------------------------------------------------------------------------- pixel modes


def test_rgb_png_exact(tmp_path):
    pixels = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3) * 2
    got = read_image(_save(tmp_path, "rgb.png", Image.fromarray(pixels)))
    assert got.dtype == np.float32 and got.shape == (H, W, 3)
    np.testing.assert_array_equal(got, pixels.astype(np.float32) / 255)


def test_greyscale_is_copied_to_three_channels(tmp_path):
    grey = np.full((H, W), 51, np.uint8)
    grey[0, 0] = 255
    got = read_image(_save(tmp_path, "grey.png", Image.fromarray(grey)))
    assert got.shape == (H, W, 3)
    np.testing.assert_allclose(got[1, 1], [0.2, 0.2, 0.2], atol=1e-7)
    np.testing.assert_array_equal(got[0, 0], [1, 1, 1])


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = 128  # half transparent
    rgba[0, 0] = (0, 0, 255, 255)  # opaque blue
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black
    got = read_image(_save(tmp_path, "rgba.png", Image.fromarray(rgba)))
    a = 128 / 255
    np.testing.assert_allclose(got[2, 2], [1.0, 1 - a, 1 - a], atol=1e-6)
    np.testing.assert_array_equal(got[0, 0], [0, 0, 1])
    np.testing.assert_array_equal(got[0, 1], [1, 1, 1])  # transparent -> white, not black
    batch = preprocess_images([got], Preprocess())
    assert batch.display[0, 2, 2].tolist() == [255, 127, 127]


def test_greyscale_with_alpha(tmp_path):
    la = Image.fromarray(
        np.stack([np.full((H, W), 100, np.uint8), np.full((H, W), 255, np.uint8)], -1)
    )
    got = read_image(_save(tmp_path, "la.png", la))
    np.testing.assert_allclose(got, np.full((H, W, 3), 100 / 255), atol=1e-6)


def test_palette_image(tmp_path):
    index = np.zeros((H, W), np.uint8)
    index[1:, :] = 1
    pal = Image.new("P", (W, H))
    pal.putpalette([10, 20, 30, 200, 100, 0] + [0] * (256 * 3 - 6))
    pal.frombytes(index.tobytes())
    got = read_image(_save(tmp_path, "pal.png", pal))
    np.testing.assert_allclose(got[0, 0], np.array([10, 20, 30]) / 255, atol=1e-7)
    np.testing.assert_allclose(got[3, 3], np.array([200, 100, 0]) / 255, atol=1e-7)


def test_palette_with_transparency(tmp_path):
    index = np.zeros((H, W), np.uint8)
    index[:, 3:] = 1
    pal = Image.new("P", (W, H))
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal.frombytes(index.tobytes())
    pal.info["transparency"] = 0  # colour 0 is transparent
    got = read_image(_save(tmp_path, "palt.png", pal))
    np.testing.assert_array_equal(got[0, 0], [1, 1, 1])
    np.testing.assert_array_equal(got[0, 5], [0, 1, 0])


def test_sixteen_bit_greyscale_keeps_its_precision(tmp_path):
    values = np.array([[0, 1, 257, 32768, 65535, 1000, 40000]] * H, np.uint16)
    path = _save(tmp_path, "g16.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I;16")
    got = read_image(path)
    np.testing.assert_allclose(got[..., 0], values / 65535.0, rtol=1e-6, atol=1e-9)
    # 1 and 257 are one 8-bit step apart only after scaling: precision kept until display
    assert got[0, 1, 0] != got[0, 0, 0]
    batch = preprocess_images([got], Preprocess())
    assert batch.display[0, 0, :5, 0].tolist() == [0, 0, 1, 128, 255]
    np.testing.assert_allclose(batch.inputs[0, 0, 0, :5], values[0, :5] / 65535.0, rtol=1e-6)


def test_thirty_two_bit_integer_image(tmp_path):
    ok = np.array([[0, 65535]], np.int32)
    got = read_image(_save(tmp_path, "i32.tif", Image.fromarray(ok)))
    np.testing.assert_allclose(got[0, :, 0], [0.0, 1.0])
    bad = np.array([[0, 70000]], np.int32)
    with pytest.raises(ImageError, match=r"values in \[0, 70000\].*16-bit"):
        read_image(_save(tmp_path, "i32bad.tif", Image.fromarray(bad)))


def test_float_image(tmp_path):
    values = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    got = read_image(_save(tmp_path, "f.tif", Image.fromarray(values)))
    np.testing.assert_allclose(got[..., 2], values, atol=1e-7)
    with pytest.raises(ImageError, match=r"float image with values in \[0, 3\]"):
        read_image(_save(tmp_path, "f3.tif", Image.fromarray(values * 3)))


def test_cmyk_and_bilevel(tmp_path):
    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # no black, full magenta+yellow = red
    np.testing.assert_allclose(
        read_image(_save(tmp_path, "c.jpg", cmyk))[2, 3], [1, 0, 0], atol=0.03
    )
    bits = Image.new("1", (W, H), 1)
    np.testing.assert_array_equal(read_image(_save(tmp_path, "b.png", bits)), np.ones((H, W, 3)))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((H, W, 3), np.uint8)
    pixels[0, 0] = 255  # white top-left corner
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "rot.png"
    image.save(path, exif=exif)
    got = read_image(path)
    assert got.shape == (W, H, 3)
    assert got[0, -1].min() == 1.0  # the corner moved to the top right


# --------------------------------------------------------------------------- bad files


def test_missing_corrupt_and_non_images(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image Pillow can read"):
        read_image(text)
    good = _save(tmp_path, "good.png", Image.fromarray(np.full((40, 50, 3), 7, np.uint8)))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        read_image(truncated)


# --------------------------------------------------------------------------- folders and arrays


def test_folder_is_sorted_naturally_and_skips_other_files(tmp_path):
    for k in (10, 2, 1):
        _save(tmp_path, f"img{k}.png", Image.fromarray(np.full((H, W), k, np.uint8)))
    (tmp_path / "README.txt").write_text("not an image")
    assert [p.name for p in image_files(tmp_path)] == ["img1.png", "img2.png", "img10.png"]
    images, names = read_images(tmp_path)
    assert names == ["img1.png", "img2.png", "img10.png"]
    assert [round(float(im[0, 0, 0]) * 255) for im in images] == [1, 2, 10]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="No image files"):
        read_images(empty)


def test_npy_layouts(tmp_path):
    hwc = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.save(tmp_path / "hwc.npy", hwc)
    np.testing.assert_array_equal(read_array(tmp_path / "hwc.npy")[0], hwc / np.float32(255))
    chw = np.random.default_rng(1).random((3, H, W), dtype=np.float32)
    np.save(tmp_path / "chw.npy", chw)  # mv.sample_image's layout
    np.testing.assert_array_equal(read_array(tmp_path / "chw.npy")[0], np.moveaxis(chw, 0, -1))
    batch = np.zeros((2, H, W, 1), np.uint16)
    batch[1] = 65535
    np.save(tmp_path / "b.npy", batch)
    images, names = read_images(tmp_path / "b.npy")
    assert names == ["b.npy[0]", "b.npy[1]"] and images[1].shape == (H, W, 3)
    assert images[1].min() == 1.0


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((H, W, 2), np.uint8), "has shape"),
        (np.full((H, W), 2.0, np.float32), r"values in \[2, 2\]"),
        (np.full((H, W), np.nan, np.float32), "NaN"),
        (np.zeros((H, W), np.int64), "dtype int64"),
    ],
)
def test_npy_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ImageError, match=message):
        read_array(tmp_path / "bad.npy")


def test_npy_with_pickled_objects_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="without pickle"):
        read_array(tmp_path / "obj.npy")


# --------------------------------------------------------------------------- preprocessing


def test_resize_shorter_then_centre_crop(tmp_path):
    # 100 x 200: left half red, right half blue. Shorter side -> 50 gives 50 x 100;
    # a 40 x 40 centre crop spans columns 30..70 of it: 20 red, 20 blue.
    img = np.zeros((100, 200, 3), np.float32)
    img[:, :100, 0] = 1
    img[:, 100:, 2] = 1
    prep = Preprocess(size=(40, 40), resize_shorter=50)
    batch = preprocess_images([img], prep)
    assert batch.display.shape == (1, 40, 40, 3)
    assert (batch.display[0, :, :19, 0] == 255).all() and (batch.display[0, :, :19, 2] == 0).all()
    assert (batch.display[0, :, 21:, 2] == 255).all() and (batch.display[0, :, 21:, 0] == 0).all()


def test_plain_resize_changes_aspect():
    img = np.ones((10, 30, 3), np.float32) * 0.5
    batch = preprocess_images([img], Preprocess(size=(H, W)))
    assert batch.inputs.shape == (1, 3, H, W)
    np.testing.assert_allclose(batch.inputs, 0.5, atol=1e-6)


def test_mean_std_and_layouts():
    img = np.full((H, W, 3), 0.5, np.float32)
    first = preprocess_images([img], Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    expected = (0.5 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert first.inputs.shape == (1, 3, H, W)
    np.testing.assert_allclose(first.inputs[0, :, 2, 3], expected, rtol=1e-6)
    last = preprocess_images(
        [img], Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD, layout="channels_last")
    )
    assert last.inputs.shape == (1, H, W, 3)
    np.testing.assert_array_equal(last.channels_first, first.inputs)
    assert first.display.dtype == np.uint8 and first.display[0, 0, 0].tolist() == [128] * 3


def test_transform_receives_0_to_255_nhwc():
    seen = {}

    def caffe_like(x):
        seen["range"] = (float(x.min()), float(x.max()))
        seen["shape"] = x.shape
        return x[..., ::-1] - 100.0

    img = np.zeros((H, W, 3), np.float32)
    img[..., 0] = 1.0
    batch = preprocess_images([img], Preprocess(transform=caffe_like, layout="channels_last"))
    assert seen == {"range": (0.0, 255.0), "shape": (1, H, W, 3)}
    np.testing.assert_allclose(batch.inputs[0, 0, 0], [-100, -100, 155])


def test_override():
    base = Preprocess(
        "imagenet", size=(224, 224), resize_shorter=256, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    assert base.override(size=(112, 112)).resize_shorter == 128
    assert base.override(normalize=False).mean is None
    custom = base.override(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert custom.mean == (0.5, 0.5, 0.5) and custom.transform is None
    keras_like = Preprocess(transform=lambda x: x, layout="channels_last")
    assert not keras_like.override(normalize=False).normalizes
    assert "shorter side resized to 256 and centre-cropped to 224x224" in base.describe()
    assert "stretched" in Preprocess("builtin", size=(64, 64)).describe()
    assert "not normalised" in base.override(normalize=False).describe()
    with pytest.raises(ValueError, match=r"`std` must hold only finite numbers > 0"):
        Preprocess(mean=(0, 0, 0), std=(1, 0, 1))


def test_different_sizes_need_a_size(tmp_path):
    for name, shape in (("a.png", (H, W)), ("b.png", (W, H))):
        _save(tmp_path, name, Image.fromarray(np.zeros(shape, np.uint8)))
    with pytest.raises(InputShapeError, match="--size"):
        load_images(tmp_path, Preprocess())
    batch = load_images(tmp_path, Preprocess(size=(4, 6)))
    assert batch.inputs.shape == (2, 3, 4, 6) and batch.names == ["a.png", "b.png"]
