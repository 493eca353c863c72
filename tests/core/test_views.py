"""What a result record shows in a REPL and a notebook: at most 20 lines, right plurals,
an HTML table or a PNG — for small and for deep (200-layer) results."""

from __future__ import annotations

import re

import numpy as np
import pytest

from multiviz.attribution.explain import Explanations
from multiviz.core.records import Activations, LayerInfo, LayerTable
from multiviz.core.stats import RunningLayerStats, RunningStats, channel_stats, layer_stats
from multiviz.core.views import MAX_LINES, array_summary, clip_rows, html_table, plural, text_table
from multiviz.parity.compare import compare_activations
from multiviz.sources.images import ImageBatch
from multiviz.sources.shapes_dataset import shapes_dataset

RNG = np.random.default_rng(3)


def deep(n: int, batch: int = 2) -> Activations:
    return Activations(
        {
            f"features.{i}.conv": RNG.normal(size=(batch, 4, 3, 3)).astype(np.float32)
            for i in range(n)
        },
        "torch",
    )


def test_plural_and_helpers():
    assert [plural(k, "layer") for k in (0, 1, 2)] == ["0 layers", "1 layer", "2 layers"]
    assert plural(1, "batch") == "1 batch" and plural(3, "batch") == "3 batches"
    assert plural(1200, "value") == "1,200 values"
    assert clip_rows(range(3), 3) == ([0, 1, 2], "")
    assert array_summary(np.array([-1.0, 2.0, np.inf])) == "(3,) float64, range [-1, 2], 1 NaN/Inf"
    assert text_table([["a", "1"]], head=["x", "y"]).splitlines() == ["x  y", "a  1"]
    assert "&lt;b&gt;" in html_table([["<b>"]])  # escaped


def shown(text: str) -> int:
    return len(text.splitlines())


@pytest.mark.parametrize("n", [1, 3, 200])
def test_records_show_at_most_20_lines_with_right_plurals(n):
    acts = deep(n, batch=1)
    report = layer_stats(acts)
    one = "1 layer" if n == 1 else f"{n} layers"
    records = {
        "activations": acts,
        "layer stats": report,
        "one layer's stats": report[0],
        "channel stats": channel_stats(acts[next(iter(acts))]),
        "parity": compare_activations(acts, acts),
        "layer table": LayerTable(
            [LayerInfo(name, "Conv2d", "conv", (None, 4, 3, 3), 40) for name in acts]
        ),
        "running": RunningLayerStats().update(acts),
    }
    for what, record in records.items():
        text = repr(record)
        assert shown(text) <= MAX_LINES, (what, shown(text))
        assert not re.search(r"\b1 (layers|inputs|samples|channels|pairs)\b", text), (what, text)
        assert "array(" not in text, what  # no raw arrays
    assert repr(acts).startswith(f"Activations(torch, {one}, 1 sample)")
    assert repr(report).startswith(f"LayerStatsReport({one}, 1 input)")
    assert "4 channels over 1 input" in repr(records["channel stats"])
    assert f"{n} PASS, 0 FAIL" in repr(records["parity"])
    if n == 200:  # what did not fit is counted, and print() still shows everything
        assert "… and 182 more layers" in repr(acts)
        assert "… and" not in str(records["parity"]) and shown(str(records["parity"])) > 200
        assert shown(report.table()) == 202 and shown(str(records["layer table"])) == 201


def test_records_have_notebook_views():
    acts = deep(3)
    report = layer_stats(acts)
    for record in (acts, report, report[0], channel_stats(acts["features.0.conv"])):
        page = record._repr_html_()
        assert page.startswith("<table") and page.count("<tr>") >= 2
    parity = compare_activations(acts, {k: v + (k == "features.1.conv") for k, v in acts.items()})
    page = parity._repr_html_()
    assert page.count("<tr>") == 1 + 3 + 1 and "First divergence: features.1.conv" in page
    assert "FAIL" in repr(parity) and "first divergence: features.1.conv" in repr(parity)


def test_explanations_repr_and_png():
    heat = RNG.random((2, 8, 8)).astype(np.float32)
    ex = Explanations(
        {"grad_cam": heat, "saliency": heat},
        RNG.random((2, 8, 8, 3)),
        np.array([2, 0]),
        "conv3",
        ["circle", "square", "triangle"],
    )
    text = repr(ex)
    assert text.startswith("Explanations(2 methods, 2 images of 8x8, layer 'conv3')")
    assert "classes explained: 2 (triangle), 0 (circle)" in text and shown(text) <= MAX_LINES
    assert ex._repr_png_()[:4] == b"\x89PNG"
    fig = ex.plot(sample=1)
    assert fig.get_suptitle() == "Evidence for class 0 (circle), sample 1"
    assert [a.get_title() for a in fig.axes] == ["Input", "Grad-CAM\nat conv3", "Saliency"]


def test_streaming_and_data_records_are_one_line():
    assert repr(RunningStats()) == "RunningStats(nothing yet)"
    assert (
        repr(RunningStats().update(np.zeros((1, 2, 3, 3)))) == "RunningStats(2x3x3 maps, 1 input)"
    )
    data = shapes_dataset(5, size=16)
    assert repr(data) == "ShapesData(5 images of 16x16: 2 circles, 1 square, 1 triangle, 1 cross)"
    batch = ImageBatch(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 3, 4, 4), np.float32),
                       ["a.png"], "channels_first")  # fmt: skip
    assert repr(batch).startswith("ImageBatch(1 image: a.png") and shown(repr(batch)) == 3
