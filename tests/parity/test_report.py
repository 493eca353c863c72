"""The parity report from arrays whose differences are planted at known layers (no framework)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from multiviz.errors import LayerNotFoundError
from multiviz.parity.compare import compare_activations
from multiviz.parity.pairing import LayerSpec
from multiviz.parity.report import ParityReport

# --------------------------------------------------------------------------- the report


def _acts(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv1": rng.normal(size=(2, 3, 5, 6)).astype(np.float32),
        "relu1": rng.random((2, 3, 5, 6)).astype(np.float32),
        "conv2": rng.normal(size=(2, 4, 3, 7)).astype(np.float32),
        "fc": rng.normal(size=(2, 5)).astype(np.float32),
    }


def test_identical_arrays_pass_and_planted_error_is_found_where_planted():
    a = _acts()
    report = compare_activations(a, {k: v.copy() for k, v in a.items()}, labels=("torch", "keras"))
    assert report.passed and report.first_divergence is None
    assert [r.status for r in report] == ["PASS"] * 4

    b = {k: v.copy() for k, v in a.items()}
    b["conv2"][1, 2, 0, 3] += 5e-3  # one element, past atol
    b["fc"] += 1.0
    report = compare_activations(a, b, atol=1e-4, rtol=1e-4)
    assert report.first_divergence.name == "conv2"
    assert [r.name for r in report.failures] == ["conv2", "fc"]
    row = report["conv2"]
    assert row.max_abs == pytest.approx(5e-3, rel=1e-3)
    assert "exceeds" in row.reason


def test_shape_mismatch_fails_with_reason_and_size1_axes_are_tolerated():
    a = {"x": np.ones((2, 3, 4, 5), np.float32), "gap": np.ones((2, 3, 1, 1), np.float32)}
    b = {"x": np.ones((2, 3, 5, 4), np.float32), "gap": np.ones((2, 3), np.float32)}
    report = compare_activations(a, b)
    assert not report["x"].passed and "shapes differ" in report["x"].reason
    assert math.isnan(report["x"].max_abs)
    assert report["gap"].passed and "size-1 axes" in report["gap"].notes[0]


def test_nan_at_different_places_fails():
    a = {"x": np.array([[1.0, np.nan]], np.float32)}
    report = compare_activations(a, {"x": np.array([[np.nan, 1.0]], np.float32)})
    assert not report.passed and "NaN/Inf differ" in report.first_divergence.reason
    same = compare_activations(a, {"x": a["x"].copy()})
    assert same.passed and "NaN/Inf on both sides" in same["x"].notes[0]


def test_channels_last_flatten_is_reordered():
    rng = np.random.default_rng(4)
    nchw = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    torch_flat = nchw.reshape(2, -1)
    keras_flat = np.moveaxis(nchw, 1, -1).reshape(2, -1)  # what Flatten gives on NHWC
    report = compare_activations(
        {"flatten": torch_flat},
        {"flatten": keras_flat},
        flatten_from=({}, {"flatten": (4, 5, 3)}),
        labels=("torch", "keras"),
    )
    assert report.passed and report["flatten"].max_abs == 0.0
    assert "channels-first order" in report["flatten"].notes[0]


def test_table_json_and_lookup():
    a = _acts()
    b = {k: v.copy() for k, v in a.items()}
    b["fc"][0, 0] = np.nan
    report = compare_activations(a, b, labels=("torch", "keras"), atol=1e-3, rtol=0.0)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("ParityReport: torch (reference) vs keras - 4 pairs")
    header = lines[1]
    for col in ("layer", "shape", "max|diff|", "rel err", "cosine", "CKA", "status"):
        assert col in header
    # aligned: every row's status column starts where the header's does
    start = header.index("status")
    assert all(line[start : start + 4] in ("PASS", "FAIL") for line in lines[3:7])
    assert "First divergence: fc" in text and "atol=0.001" in text
    # the REPL view: the verdict and the failing pair, in at most 20 lines
    short = repr(report)
    assert short.startswith("ParityReport(torch vs keras: 4 pairs, 3 PASS, 1 FAIL")
    assert "first divergence: fc (#3)" in short and len(short.splitlines()) <= 20

    data = json.loads(report.to_json())
    assert data["first_divergence"]["name"] == "fc"
    assert [p["status"] for p in data["pairs"]] == ["PASS", "PASS", "PASS", "FAIL"]
    assert data["pairs"][3]["nonfinite"] == [0, 1]
    assert report[3] is report["fc"]
    with pytest.raises(LayerNotFoundError, match="conv1"):
        report["conv"]


def test_to_json_writes_strict_json(tmp_path):
    a = {"x": np.zeros((1, 2), np.float32)}
    b = {"x": np.ones((1, 2), np.float32)}
    path = tmp_path / "parity.json"
    report = compare_activations(a, b)
    report.to_json(path)
    data = json.loads(path.read_text())
    assert data["pairs"][0]["rel_err"] is None  # inf is not JSON: None
    assert data["passed"] is False


def test_structural_specs_and_unpaired_listing():
    a = {"conv1": np.ones((1, 2, 3, 4)), "relu": np.ones((1, 2, 3, 4))}
    b = {"pad": np.ones((1, 2, 5, 6)), "c": np.ones((1, 2, 3, 4)), "act": np.ones((1, 2, 3, 4))}
    specs = (
        [
            LayerSpec("conv1", "conv", "Conv2d", ("conv", (2, 2, 3, 3))),
            LayerSpec("relu", "activation"),
        ],
        [
            LayerSpec("pad", "other", "ZeroPadding2D"),
            LayerSpec("c", "conv", "Conv2D", ("conv", (2, 2, 3, 3))),
            LayerSpec("act", "activation", "ReLU"),
        ],
    )
    report = compare_activations(a, b, specs=specs, labels=("torch", "keras"))
    assert [(r.name, r.name_b) for r in report] == [("conv1", "c"), ("relu", "act")]
    assert [u.name for u in report.unpaired] == ["pad"]
    assert "Not compared (1)" in str(report) and "keras pad" in str(report)


def test_report_is_a_plain_record():
    report = ParityReport(rows=[])
    assert not report.passed and report.first_divergence is None and len(report) == 0


def test_public_names_resolve_to_functions_after_a_submodule_import():
    import multiviz as mv
    import multiviz.parity.compare as comparing
    from multiviz.parity.metrics import linear_cka
    from multiviz.render.parity import plot_comparison

    assert mv.compare is comparing.compare and mv.plot_comparison is plot_comparison
    assert mv.ParityReport is ParityReport and mv.linear_cka is linear_cka
