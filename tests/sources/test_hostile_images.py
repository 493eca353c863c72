"""Hostile images (issue 10, item 5): a small file that declares a huge image.

A 1-bit PNG of 9000 x 9000 pixels is ~10 kB on disk and would decode to
81 megapixels (~1 GB as float32 RGB). It is built here, in a temporary
folder. What must hold: the size read from the header is refused before any
pixel is decoded — ``Image.Image.load`` (which every decode goes through) is
made to fail the test if it is called — with one error naming the limit and
the ``max_pixels`` / ``--max-pixels`` hint. The right answers are the header's
own numbers: 9000 x 9000 = 81,000,000 > 40,000,000.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from multiviz.errors import ImageError, NumberError
from multiviz.sources.images import (
    DEFAULT_MAX_PIXELS,
    Preprocess,
    load_images,
    read_image,
    read_images,
)

SIDE = 9000  # 81 megapixels: above multiviz's 40, below Pillow's warning at 89


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bomb")
    path = folder / "bomb.png"
    Image.new("1", (SIDE, SIDE), 0).save(path, optimize=True)
    assert path.stat().st_size < 100_000  # small on disk
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Every way Pillow decodes pixels (``Image.load``, ``ImageFile.load``) fails the test."""
    from PIL import ImageFile

    Image.init()  # register every plugin first (that builds small images of its own)

    def load(self, *args, **kwargs):
        raise AssertionError("an image above the limit was decoded")

    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_the_decoding_trap_is_live(bomb, no_decoding):
    # without a limit, reading the file reaches the decoder, and the trap fires
    with pytest.raises(AssertionError, match="was decoded"):
        read_image(bomb, max_pixels=None)


def _check_message(err: ImageError, limit: float) -> None:
    first, *rest = str(err).split("\n")
    assert len(first) <= 200
    assert f"{SIDE}x{SIDE}" in first and "81.0 megapixels" in first
    assert f"{limit:g} megapixels" in first and "before decoding" in first
    assert len(rest) == 1 and rest[0].startswith("hint:")
    assert "--max-pixels" in rest[0] and "max_pixels=" in rest[0]


def test_default_limit_is_40_megapixels():
    assert DEFAULT_MAX_PIXELS == 40_000_000


@pytest.mark.parametrize("reader", ["read_image", "read_images", "load_images", "folder"])
def test_refused_before_decoding(bomb, no_decoding, reader):
    with pytest.raises(ImageError) as info:
        if reader == "read_image":
            read_image(bomb)
        elif reader == "read_images":
            read_images(bomb)
        elif reader == "load_images":
            load_images(bomb, Preprocess(size=(8, 8)))
        else:
            read_images(bomb.parent)
    _check_message(info.value, 40)


def test_a_lower_limit_refuses_and_a_higher_one_reads(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.full((10, 12), 200, np.uint8)).save(path)  # 120 pixels
    with pytest.raises(ImageError, match=r"above the limit of 0\.000119 megapixels"):
        read_image(path, max_pixels=119)
    got = read_image(path, max_pixels=120)  # exactly at the limit: read
    np.testing.assert_allclose(got, 200 / 255, atol=1e-7)
    assert read_image(path, max_pixels=None).shape == (10, 12, 3)


def test_the_limit_holds_for_every_frame_size_pillow_reports(tmp_path):
    # an animation whose first frame is what is read: its size is checked
    path = tmp_path / "anim.gif"
    frames = [Image.new("L", (30, 20), v) for v in (10, 200)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="30x20"):
        read_image(path, max_pixels=599)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)


@pytest.mark.parametrize("bad", [0, -5, 2.5, float("nan"), float("inf"), True, "40M"])
def test_max_pixels_itself_is_checked(tmp_path, bad):
    path = tmp_path / "x.png"
    Image.new("L", (2, 2)).save(path)
    with pytest.raises(NumberError, match="`max_pixels` must be a whole number >= 1"):
        read_image(path, max_pixels=bad)


def test_pillows_own_bomb_error_is_an_image_error(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    Image.new("L", (20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 > 2 x 100: Pillow refuses
    with pytest.raises(ImageError, match="Pillow's own limit") as info:
        read_image(path, max_pixels=None)
    assert str(info.value).split("\n")[1].startswith("hint:")


def test_scan_folder_reader_refuses_before_decoding(bomb, no_decoding):
    from multiviz.scanning.data import ImageFolder

    folder = ImageFolder(bomb.parent, Preprocess(size=(8, 8)))
    with pytest.raises(ImageError, match="megapixels"):
        folder.load([0])
    small = ImageFolder(bomb.parent, Preprocess(size=(8, 8)), max_pixels=10)
    assert small.max_pixels == 10
