"""Parity metrics and the parity report, without any framework.

Metrics are checked against values computed by hand or from their textbook
definitions (CKA through HSIC with an explicit centring matrix); the report
against arrays whose differences are planted at known layers.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from multiviz.comparing import ParityReport, compare_activations, plot_comparison
from multiviz.errors import LayerNotFoundError
from multiviz.metrics import (
    array_metrics,
    cosine_similarity,
    features,
    linear_cka,
    max_abs_diff,
    pearson,
    relative_error,
)
from multiviz.pairing import LayerSpec

# --------------------------------------------------------------------------- metrics


def test_max_abs_and_relative_error_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 2.0, 2.0, 6.0])
    assert max_abs_diff(a, b) == 2.0
    # ||a - b|| = sqrt(0 + 0 + 1 + 4) = sqrt(5); ||b|| = sqrt(1 + 4 + 4 + 36) = sqrt(45)
    assert relative_error(a, b) == pytest.approx(math.sqrt(5 / 45), rel=1e-12)


def test_relative_error_edge_cases():
    z = np.zeros((2, 3))
    assert relative_error(z, z) == 0.0
    assert relative_error(np.ones((2, 3)), z) == math.inf
    assert relative_error(z, np.ones((2, 3))) == 1.0  # all of the reference is missing
    assert max_abs_diff(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.zeros(3), np.zeros(4))


def test_cosine_and_pearson_of_known_vectors():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)
    assert cosine_similarity(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(24 / 25)
    # pearson is cosine after centring: [1,2,3] -> [-1,0,1]; [1,3,2] -> [-1,1,0]: 1/2
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    # affine maps do not change pearson (they do change cosine)
    x = np.array([0.3, -1.2, 2.5, 0.0, 4.1])
    assert pearson(x, 3 * x + 7) == pytest.approx(1.0)
    assert cosine_similarity(x, 3 * x + 7) < 0.99


def test_degenerate_similarities_are_defined():
    z = np.zeros(4)
    assert cosine_similarity(z, z) == 1.0
    assert cosine_similarity(z, np.ones(4)) == 0.0
    assert math.isnan(pearson(np.ones(4), np.arange(4.0)))
    assert math.isnan(linear_cka(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 2))))


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: HSIC with an explicit centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda p, q: np.trace(p @ h @ q @ h)  # noqa: E731
    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("n,p,q", [(40, 5, 7), (6, 30, 20)])  # feature form and Gram form
def test_linear_cka_matches_hsic_definition(n, p, q):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, p))
    y = x[:, :1] * 0.5 + rng.normal(size=(n, q))
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y), rel=1e-10)


def test_linear_cka_identity_orthogonal_and_scale_invariance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-12)  # centred: shifts vanish
    y = rng.normal(size=(60, 8))
    assert linear_cka(x, y) < 0.3  # unrelated representations
    # not invariant to a non-isotropic scaling of the features
    assert linear_cka(x, x * np.array([10.0, 1, 1, 1, 1, 1, 1, 0.1])) < 0.99


def test_cka_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(np.zeros((4, 2)), np.zeros((5, 2)))


def test_features_layouts():
    x = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    pos = features(x)
    assert pos.shape == (2 * 4 * 5, 3)
    # row (n, h, w) holds the channel vector x[n, :, h, w]
    assert np.array_equal(pos[1 * 20 + 2 * 5 + 3], x[1, :, 2, 3])
    samp = features(x, "sample")
    assert samp.shape == (2, 60) and np.array_equal(samp[1], x[1].ravel())
    assert features(np.zeros((2, 7))).shape == (2, 7)
    with pytest.raises(ValueError, match="mode"):
        features(x, "pixels")


def test_array_metrics_tolerance_matches_allclose():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 3, 4, 5))
    cand = ref + rng.normal(scale=1e-3, size=ref.shape)
    for atol, rtol in [(1e-2, 0.0), (1e-4, 1e-4), (0.0, 1e-1), (1e-5, 1e-5)]:
        m = array_metrics(cand, ref, atol=atol, rtol=rtol)
        assert (m.worst_excess <= 0) == np.allclose(cand, ref, atol=atol, rtol=rtol)


def test_array_metrics_nonfinite_masks():
    ref = np.array([[1.0, np.nan, np.inf, 4.0]])
    same = array_metrics(ref.copy(), ref)
    assert same.nonfinite_match and same.nonfinite_a == 2 and same.max_abs == 0.0
    moved = np.array([[1.0, np.inf, np.nan, 4.0]])
    assert not array_metrics(moved, ref).nonfinite_match
    sign = np.array([[1.0, np.nan, -np.inf, 4.0]])
    assert not array_metrics(sign, ref).nonfinite_match
    # finite parts still measured
    cand = np.array([[1.5, np.nan, np.inf, 4.0]])
    assert array_metrics(cand, ref).max_abs == 0.5


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
    assert repr(report) == text

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


def test_core_imports_no_framework():
    import subprocess

    code = (
        "import sys, multiviz.comparing, multiviz.transfer, multiviz.metrics, multiviz.pairing; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout


def test_report_is_a_plain_record():
    report = ParityReport(rows=[])
    assert not report.passed and report.first_divergence is None and len(report) == 0


def test_public_names_resolve_to_functions_after_a_submodule_import():
    import multiviz as mv
    import multiviz.comparing as comparing

    assert mv.compare is comparing.compare and mv.plot_comparison is plot_comparison
    assert mv.ParityReport is ParityReport and mv.linear_cka is linear_cka
