"""The HTML report: self-contained, complete, and showing the right numbers.

The page is parsed with the standard library's HTML parser; every embedded
image is decoded and compared with what the public API draws for the same
arrays, and the statistics in the tables with values computed here with NumPy.
"""

from __future__ import annotations

import base64
import html
import html.parser
import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from multiviz.report import _block_mean, _fmt, _prediction, png_data_uri, write_atomic
from multiviz.sources.builtin import BUILTIN_CLASSES

# --------------------------------------------------------------------------- helpers (no framework)


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_png_data_uri_is_lossless():
    import multiviz as mv

    grid = mv.feature_map_image(np.random.default_rng(0).random((6, 9, 11)), cmap="viridis")
    np.testing.assert_array_equal(_decode(png_data_uri(grid)), grid)  # palette PNG, exact
    photo = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(png_data_uri(photo)), photo)  # many colours: RGB


def test_a_few_more_than_256_colours_use_a_palette():
    ramp = np.stack([np.arange(260) % 256, np.arange(260) // 256 * 9, np.full(260, 40)], -1)
    image = np.repeat(ramp[None].astype(np.uint8), 3, axis=0)  # 260 colours, neighbours 1 apart
    uri = png_data_uri(image)
    assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).mode == "P"
    assert np.abs(_decode(uri).astype(int) - image.astype(int)).max() <= 3  # neighbours merged


def test_block_mean():
    maps = np.arange(2 * 4 * 6, dtype=np.float64).reshape(2, 4, 6)
    got = _block_mean(maps, 2)
    assert got.shape == (2, 2, 3)
    assert got[0, 0, 0] == np.mean([0, 1, 6, 7])
    assert got[1, 1, 2] == np.mean(maps[1, 2:4, 4:6])
    assert _block_mean(maps, 1) is maps


def test_prediction_table():
    logits = np.array([[0.0, np.log(3.0), 0.0]])  # softmax: 0.2, 0.6, 0.2
    assert _prediction(logits, ["a", "b", "c"]) == [
        ("b (1)", "0.600"),
        ("a (0)", "0.200"),
        ("c (2)", "0.200"),
    ]
    probs = np.array([[0.1, 0.7, 0.2]])  # already probabilities: kept
    assert _prediction(probs, None)[0] == ("class 1", "0.700")
    assert _prediction(np.zeros((1, 5, 5)), None) == []


def test_fmt():
    assert (_fmt(0.5), _fmt(-1234.5), _fmt(0.0), _fmt(1e-5), _fmt(float("nan"))) == (
        "0.5",
        "-1.23e+03",
        "0",
        "1.00e-05",
        "nan",
    )


def test_write_atomic(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "out.html"
    write_atomic(target, "<p>é</p>")
    assert target.read_text(encoding="utf-8") == "<p>é</p>"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new content")
    assert target.read_text(encoding="utf-8") == "<p>é</p>"  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.html"]  # no temp file left


# --------------------------------------------------------------------------- the page


class _Page(html.parser.HTMLParser):
    """Collects what the tests look at: tags, images, links, ids, table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.meta: dict[str, str] = {}
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a)
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "meta" and "name" in a:
            self.meta[a["name"]] = a.get("content", "")
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def torch_report():
    import multiviz as mv
    from multiviz.report import html_report

    model = mv.builtin_model("torch")
    image = mv.sample_image(seed=2, size=(48, 56))  # (3, 48, 56): C, H, W all differ
    display = np.rint(np.moveaxis(image, 0, -1) * 255).astype(np.uint8)
    text = html_report(
        model, image[None], display=display, source="builtin", image="s.png",
        class_names=BUILTIN_CLASSES, max_maps=12,
    )  # fmt: skip
    return model, image[None], display, text


@pytest.mark.torch
def test_report_is_self_contained(torch_report):
    _, _, _, text = torch_report
    page = _parse(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.meta["viewport"] == "width=device-width, initial-scale=1"
    for needle in ("http://", "https://", 'src="//', "url(", "@import"):
        assert needle not in text
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    assert all(img.get("alt") for img in page.images)
    assert "max-width: 100%" in text  # images shrink to a phone's width


@pytest.mark.torch
def test_report_sections_and_navigation(torch_report):
    _, _, _, text = torch_report
    page = _parse(text)
    for name in ("conv1", "conv2", "conv3"):
        assert f"layer-{name}" in page.ids
        assert page.links.count(f"#layer-{name}") >= 2  # the sidebar and the statistics table
    for anchor in ("summary", "input", "statistics"):
        assert anchor in page.ids and f"#{anchor}" in page.links
    assert all(link.removeprefix("#") in page.ids for link in page.links if link.startswith("#"))
    # input, CAM, stats figure, and a grid + a mean map per conv layer
    assert len(page.images) == 3 + 2 * 3
    summary = {row[0]: row[1] for row in page.rows if len(row) == 2}
    assert summary["framework"] == "torch"
    assert summary["parameters"] == f"{23_844:,}"
    assert summary["layers"] == "10 (3 convolution)"
    assert summary["input"] == "1 x 3 x 48 x 56"


@pytest.mark.torch
def test_report_images_match_the_api(torch_report):
    import multiviz as mv

    model, x, display, text = torch_report
    page = _parse(text)
    by_alt = {img["alt"]: _decode(img["src"]) for img in page.images}
    np.testing.assert_array_equal(by_alt["The input image, as the model sees it"], display)
    heat = mv.grad_cam(model, x, "conv3")
    want = mv.overlay_image(display, heat[0])  # opacity follows the map, turbo
    np.testing.assert_array_equal(by_alt["Grad-CAM overlay at layer conv3"], want)
    acts = mv.capture(model, x, ["conv2"])["conv2"][0]  # (32, 24, 28), signed
    grid = by_alt["Feature maps of conv2"]
    # the 12 most active channels (highest mean) in channel order, one symmetric scale,
    # diverging colormap; each tile numbered
    top = np.sort(np.argsort(-acts.mean(axis=(1, 2)), kind="stable")[:12])
    plain = mv.feature_map_image(acts, channels=top, cmap="RdBu_r", normalize="symmetric")
    factor = grid.shape[1] // plain.shape[1]
    assert factor >= 1 and grid.shape == (plain.shape[0] * factor, plain.shape[1] * factor, 3)
    labelled = mv.feature_map_image(
        acts, channels=top, cmap="RdBu_r", normalize="symmetric", upscale=factor, labels=True
    )
    np.testing.assert_array_equal(grid, labelled)
    differ = np.any(grid[::factor, ::factor] != plain, axis=-1)
    assert 0 < differ.mean() < 0.1  # only the number boxes in the tiles' corners
    # every channel the text calls "most active" is a numbered tile of the grid
    cells = [row for row in page.rows if row and row[0] == "most active channels"]
    named = [int(c) for c in __import__("re").findall(r"#(\d+)", cells[1][1])]  # conv2's
    assert len(named) == 5 and set(named) <= set(top.tolist())


@pytest.mark.torch
def test_report_statistics_match_numpy(torch_report):
    import multiviz as mv

    model, x, _, text = torch_report
    page = _parse(text)
    acts = mv.capture(model, x, ["conv1", "conv3"])
    table = {row[0]: row for row in page.rows if len(row) > 5}
    header = next(row for row in page.rows if row[:2] == ["layer", "shape"])
    for name in ("conv1", "conv3"):
        a = acts[name][0].astype(np.float64)
        row = dict(zip(header, table[name], strict=True))
        assert row["shape"] == "x".join(map(str, a.shape))
        assert row["mean"] == _fmt(a.mean()) and row["max"] == _fmt(a.max())
        assert row["min"] == _fmt(a.min()) and row["std"] == _fmt(a.std())
        assert row["zeros"] == f"{100 * np.mean(a == 0):.1f}%"


@pytest.mark.torch
def test_report_without_attribution_says_so(monkeypatch):
    import multiviz as mv
    import multiviz.report as report

    def unavailable(*args, **kwargs):
        raise ImportError("no gradients here")

    monkeypatch.setattr(mv, "grad_cam", unavailable)
    model = mv.builtin_model("torch")
    text = report.html_report(model, mv.sample_image(seed=0)[None], layers=["conv1"])
    assert "Grad-CAM skipped: attribution is not available (no gradients here)." in text
    page = _parse(text)
    assert len(page.images) == 3 + 1  # no CAM; the default display is x itself, min-max scaled
    text = report.html_report(model, mv.sample_image(seed=0)[None], layers=["conv1"], cam=False)
    assert "Grad-CAM was not requested." in text


@pytest.mark.keras
def test_keras_report():
    import multiviz as mv
    from multiviz.report import html_report

    model = mv.builtin_model("keras")
    x = mv.to_channels_last(mv.sample_image(seed=1, size=(40, 48))[None])
    page = _parse(html_report(model, x, source="builtin"))
    assert {"layer-conv1", "layer-conv2", "layer-conv3"} <= set(page.ids)
    summary = {row[0]: row[1] for row in page.rows if len(row) == 2}
    assert summary["framework"] == "keras" and summary["input"] == "1 x 40 x 48 x 3"
    assert any(img["alt"] == "Grad-CAM overlay at layer conv3" for img in page.images)
    display = _decode(next(i["src"] for i in page.images if i["alt"].startswith("The input")))
    assert display.shape == (40, 48, 3)


def test_stamped_numbers_are_read_back():
    """The 3x5 digits land where they should, white on a black box, and only if they fit."""
    from multiviz.render.rgb import _DIGITS, stamp_number

    img = np.full((60, 60, 3), 128, np.uint8)
    assert stamp_number(img, 35, (10, 5), (60, 60))
    s = 2  # 60 px tall tile: digits enlarged twice
    box = img[10 : 10 + 7 * s, 5 : 5 + 9 * s, 0]
    for k, digit in enumerate("35"):
        glyph = np.array([int(b) for b in _DIGITS[digit]]).reshape(5, 3).astype(bool)
        cell = box[s : s + 5 * s : s, s + 4 * k * s : s + 4 * k * s + 3 * s : s]
        np.testing.assert_array_equal(cell == 255, glyph)
        np.testing.assert_array_equal(cell[~glyph], 0)
    assert (img[:10] == 128).all() and (img[:, 5 + 9 * s :] == 128).all()  # nothing else
    assert not stamp_number(np.zeros((8, 8, 3), np.uint8), 123, (0, 0), (8, 8))  # too small


@pytest.mark.torch
def test_report_says_exactly_how_each_model_source_was_preprocessed(tmp_path):
    """Built-in and saved models are stretched and not normalised: the report says so,
    and why; torchvision models get torchvision's recipe, named as such."""
    import torch

    import multiviz as mv
    from multiviz.cli import main

    image = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(image)
    pt2 = tmp_path / "m.pt2"
    model = mv.builtin_model("torch")
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(pt2))
    expect = {
        "builtin": ("resized to 64x64 (stretched", "not normalised", "built-in model's training"),
        str(pt2): ("resized to 64x64 (stretched", "not normalised", "does not record how"),
        "torchvision:resnet18": ("shorter side resized to 256 and centre-cropped to 224x224",
                                 "(x - mean) / std", "torchvision's recipe"),
    }  # fmt: skip
    for spec, needles in expect.items():
        out = tmp_path / "r.html"
        argv = ["-q", "report", spec, str(image), "-o", str(out), "--layers", "*conv1", "--no-cam"]
        assert main([*argv, "--weights", "none"] if ":" in spec else argv) == 0
        text = html.unescape(out.read_text())
        caption = text[text.index("The input as the model sees it") :][:600]
        for needle in needles:
            assert needle in caption, (spec, needle)
        assert "resized and cropped" not in text
    out = tmp_path / "r.html"
    assert main(["-q", "report", "builtin", str(image), "-o", str(out), "--no-normalize",
                 "--size", "32", "--layers", "conv1", "--no-cam"]) == 0  # fmt: skip
    assert "resized to 32x32 (stretched" in out.read_text()
    assert "as asked by --size, --no-normalize" in out.read_text()
