"""The report record: bootstrap intervals, best(), the views."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from multiviz.evaluation.report import EvaluationReport
from multiviz.evaluation.stats import Interval, bootstrap_interval


def test_bootstrap_interval_matches_the_normal_approximation():
    # the mean of n draws has standard error s / sqrt(n): a 95% interval is +-1.96 of it
    rng = np.random.default_rng(0)
    v = rng.normal(3.0, 2.0, 400)
    iv = bootstrap_interval(v, resamples=4000, seed=1)
    se = v.std(ddof=1) / math.sqrt(len(v))
    assert iv.value == pytest.approx(v.mean())
    assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * se, rel=0.1)
    assert iv.low < iv.value < iv.high
    assert bootstrap_interval(v, seed=1) == bootstrap_interval(v, seed=1)  # seeded


def test_bootstrap_leaves_out_and_counts_non_finite_values():
    iv = bootstrap_interval(np.array([1.0, np.nan, np.inf, 1.0]))
    assert (iv.value, iv.low, iv.high, iv.n, iv.nonfinite) == (1.0, 1.0, 1.0, 2, 2)
    empty = bootstrap_interval(np.array([np.nan]))
    assert math.isnan(empty.value) and empty.n == 0 and empty.nonfinite == 1
    with pytest.raises(ValueError, match="`level`"):
        bootstrap_interval(np.ones(3), level=95)


def _report(**values):
    return EvaluationReport.from_values(values)


def test_best_needs_separated_intervals_and_respects_direction():
    rng = np.random.default_rng(1)
    far = _report(
        a={"deletion": 0.1 + 0.01 * rng.random(30), "insertion": 0.5 + 0.01 * rng.random(30)},
        b={"deletion": 0.5 + 0.01 * rng.random(30), "insertion": 0.2 + 0.01 * rng.random(30)},
    )
    assert far.best("deletion") == "a"  # lower is better
    assert far.best("insertion") == "a"  # higher is better
    close = _report(a={"deletion": rng.random(30)}, b={"deletion": rng.random(30)})
    assert close["a"]["deletion"].overlaps(close["b"]["deletion"])
    assert close.best("deletion") is None
    with pytest.raises(ValueError, match="`metric` must be one of"):
        far.best("road")


def test_best_never_names_a_method_that_fails_randomization():
    rng = np.random.default_rng(2)
    report = _report(
        guided={"deletion": 0.05 + 0.01 * rng.random(20), "randomization": np.full(20, 0.9)},
        grad={"deletion": 0.3 + 0.01 * rng.random(20), "randomization": np.full(20, 0.1)},
        sal={"deletion": 0.6 + 0.01 * rng.random(20), "randomization": np.full(20, 0.2)},
    )
    assert report.failing_randomization() == ["guided"]
    assert report.best("deletion") == "grad"  # guided is better but fails the sanity check
    assert report.best("randomization") == "grad"


def test_to_dict_gives_nan_as_none_and_strict_json():
    report = _report(a={"deletion": np.array([np.nan, np.nan]), "iou": np.array([0.5, 0.5])})
    d = report.to_dict()
    assert d == {
        "a": {
            "deletion": {"value": None, "low": None, "high": None},
            "iou": {"value": 0.5, "low": 0.5, "high": 0.5},
        }
    }
    assert json.loads(report.to_json()) == d


def test_text_and_html_views():
    rng = np.random.default_rng(3)
    metrics = ["deletion", "insertion", "road", "pointing_game", "randomization"]
    many = {f"method_{k}": {m: rng.random(10) for m in metrics} for k in range(25)}
    text = str(EvaluationReport.from_values(many))
    assert len(text.splitlines()) <= 20
    assert "more methods" in text
    few = _report(**{"<b>": {"deletion": np.array([0.25, 0.35])}})
    lines = repr(few).splitlines()
    assert lines[0].startswith("EvaluationReport: 1 methods x 1 metrics, 2 images")
    assert "deletion ↓" in lines[1]
    assert "0.300 [" in lines[3]
    page = few._repr_html_()
    assert "&lt;b&gt;" in page and "<b>" not in page


def test_interval_overlap_rules():
    a, b = Interval(1.0, 0.5, 1.5, 10), Interval(2.0, 1.6, 2.4, 10)
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.overlaps(Interval(1.5, 1.5, 1.7, 3))
    assert a.overlaps(Interval(math.nan, math.nan, math.nan, 0))


def test_plot_draws_curves_cascade_and_pictures():
    from multiviz.evaluation.randomization import Cascade

    rng = np.random.default_rng(4)
    curves = {
        m: {
            "deletion": np.sort(rng.random((3, 6)), axis=1)[:, ::-1],
            "insertion": np.sort(rng.random((3, 6)), axis=1),
            "road_morf": rng.random((3, 2)),
            "road_lerf": rng.random((3, 2)),
        }
        for m in ("grad_cam", "saliency")
    }
    cascades = {
        m: Cascade(
            layers=["fc", "conv2", "conv1"],
            cascading_spearman=rng.random((3, 3)),
            cascading_ssim=rng.random((3, 3)),
            original=rng.random((8, 8)),
            cascade_maps=rng.random((3, 8, 8)),
        )
        for m in ("grad_cam", "saliency")
    }
    report = EvaluationReport.from_values(
        {
            m: {"deletion": rng.random(3), "randomization": c.fully_randomized}
            for m, c in cascades.items()
        },
        curves=curves,
        randomization=cascades,
        settings={"percentages": [25, 75], "score": "probability"},
    )
    fig = report.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == [
        "Deletion (lower is better)",
        "Insertion (higher is better)",
        "ROAD: MoRF (solid) vs LeRF (dashed)",
    ]
    assert titles[3].startswith("Cascading randomization")
    pictures = fig.axes[4]
    assert [t.get_text() for t in pictures.get_yticklabels()] == ["grad_cam", "saliency"]
    assert len(pictures.images) == 1  # one imshow for every tile
    np.testing.assert_allclose(
        pictures.images[0].get_array()[:8, :8], cascades["grad_cam"].original
    )
