"""Numbers that are not numbers (issue 10, item 6): NaN, ±Inf and out-of-range values.

Every numeric parameter of the public API and every numeric option of the
command line refuses NaN, ±Inf and values outside its documented range with
one error naming the caller's parameter (first line <= 200 characters). The
table below lists (callable, parameter, bad value); the right answer for each
row is the parameter's documented range. A NaN tolerance is the dangerous
case (``|b - a| <= nan`` is False, but a check written ``not (diff > tol)``
passes everything): the last tests show ``mv.compare`` with ``atol=nan`` on a
port whose conv2 is zeroed is refused, while the same port is caught at
conv2 with the default tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import multiviz as mv
from multiviz.cli import EXIT_USAGE, main
from multiviz.errors import MultivizError, NumberError

NAN, INF = float("nan"), float("inf")


def _image():
    return mv.sample_image(seed=1)[None]  # (1, 3, 64, 64) in [0, 1]


def _acts():
    a = {"conv": np.ones((1, 2, 3, 3), np.float32)}
    return a, {"conv": a["conv"] * 0}


def _check_message(err: BaseException, param: str) -> None:
    assert isinstance(err, MultivizError) and isinstance(err, ValueError)
    first, *rest = str(err).split("\n")
    assert len(first) <= 200, first
    assert f"`{param}`" in first and "Received" in first, first
    assert len(rest) <= 1 and all(r.startswith("hint:") for r in rest)


# --------------------------------------------------------------------------- no framework


def _preprocess_mean(v):
    return mv.sources.images.Preprocess(mean=(v, 0.5, 0.5), std=(1.0, 1.0, 1.0))


def _preprocess_std(v):
    return mv.sources.images.Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, v, 1.0))


def _overlay(v):
    return mv.overlay_image(np.zeros((8, 8, 3), np.float32), np.ones((4, 4)), alpha=v)


def _plot_overlay(v):
    return mv.plot_overlay(np.zeros((8, 8, 3), np.float32), np.ones((4, 4)), alpha=v)


def _compare_atol(v):
    return mv.parity.compare.compare_activations(*_acts(), atol=v)


def _compare_rtol(v):
    return mv.parity.compare.compare_activations(*_acts(), rtol=v)


def _cache_size(v):
    old = mv.backends.cache.cache_size()
    try:
        return mv.set_cache_size(v)
    finally:
        mv.set_cache_size(old)


def _max_pixels(v, tmp_path=None):
    import os
    import tempfile

    from PIL import Image

    path = os.path.join(tempfile.mkdtemp(), "x.png")
    Image.new("L", (2, 2)).save(path)
    return mv.load_images(path, mv.sources.images.Preprocess(), max_pixels=v)


CORE = [
    (_preprocess_mean, "mean", [NAN, INF, -INF]),
    (_preprocess_std, "std", [NAN, INF, 0.0, -1.0]),
    (_overlay, "alpha", [NAN, INF, 1.5, -0.1]),
    (_plot_overlay, "alpha", [NAN, 2.0]),
    (_compare_atol, "atol", [NAN, INF, -1e-4]),
    (_compare_rtol, "rtol", [NAN, INF, -1.0]),
    (_cache_size, "size", [NAN, 0, 2.5]),
    (_max_pixels, "max_pixels", [NAN, INF, 0, 1.5]),
]


@pytest.mark.parametrize(
    ("call", "param", "bad"),
    [pytest.param(c, p, b, id=f"{c.__name__}-{p}-{b}") for c, p, values in CORE for b in values],
)
def test_api_refuses_bad_numbers(call, param, bad):
    import multiviz.backends.cache
    import multiviz.parity.compare
    import multiviz.sources.images  # noqa: F401

    with pytest.raises(NumberError) as info:
        call(bad)
    _check_message(info.value, param)


# --------------------------------------------------------------------------- with a model


def _saliency(**kw):
    return lambda model: mv.saliency(model, _image(), **kw)


def _smoothgrad(**kw):
    return lambda model: mv.saliency(model, _image(), method="smoothgrad", samples=2, **kw)


def _ig(**kw):
    return lambda model: mv.integrated_gradients(model, _image(), **kw)


def _cam(**kw):
    return lambda model: mv.grad_cam(model, _image(), "conv3", **kw)


def _evaluate(**kw):
    return lambda model: mv.evaluate(model, _image(), ["saliency"], metrics=["deletion"], **kw)


def _scan(**kw):
    return lambda model: mv.scan(model, np.repeat(_image(), 2, 0), ["conv1"], progress=False, **kw)


MODEL = [
    ("smoothgrad noise", _smoothgrad, "noise", [NAN, INF, -0.1]),
    (
        "smoothgrad samples",
        lambda **kw: _saliency(method="smoothgrad", **kw),
        "samples",
        [NAN, 0, 2.5],
    ),
    ("smoothgrad seed", _smoothgrad, "seed", [NAN, 1.5]),
    ("saliency batch_size", _saliency, "batch_size", [NAN, 0, 1.5, INF]),
    ("integrated_gradients steps", _ig, "steps", [NAN, 0, 2.5, INF]),
    ("integrated_gradients baseline", _ig, "baseline", [NAN, INF]),
    ("grad_cam batch_size", _cam, "batch_size", [NAN, -1]),
    ("evaluate steps", _evaluate, "steps", [NAN, 0]),
    ("evaluate blur_sigma", _evaluate, "blur_sigma", [NAN, 0.0, INF]),
    ("evaluate percentages", _evaluate, "percentages", [(NAN,), (0.0, 50.0), (50.0, 100.0)]),
    ("evaluate noise", _evaluate, "noise", [NAN, -1.0]),
    ("evaluate tolerance", _evaluate, "tolerance", [NAN, INF]),
    ("evaluate iou_threshold", _evaluate, "iou_threshold", [NAN, 1.5]),
    ("evaluate level", _evaluate, "level", [NAN, 1.0, 0.0]),
    ("evaluate resamples", _evaluate, "resamples", [NAN, 0]),
    ("evaluate seed", _evaluate, "seed", [NAN, 0.5]),
    ("scan topk", _scan, "topk", [NAN, 0]),
    ("scan eps", _scan, "eps", [NAN, -1.0]),
    ("scan sketch_k", _scan, "sketch_k", [NAN, 2]),
    ("scan checkpoint_every", _scan, "checkpoint_every", [NAN, 0]),
    ("scan batch_size", _scan, "batch_size", [NAN, 0]),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    ("make", "param", "bad"),
    [pytest.param(m, p, b, id=f"{name}-{b}") for name, m, p, values in MODEL for b in values],
)
def test_api_with_a_model_refuses_bad_numbers(builtin_torch, make, param, bad):
    with pytest.raises(NumberError) as info:
        make(**{param: bad})(builtin_torch)
    _check_message(info.value, param)


# --------------------------------------------------------------------------- the command line

CLI = [
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--std", ["nan", "inf", "0", "1,nan,1"]),
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--mean", ["nan", "inf", "-inf,0,0"]),
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--max-pixels", ["nan", "0", "infM", "-1M"]),
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--max-maps", ["nan", "0", "2.5"]),
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--percentile", ["nan,99", "1,inf"]),
    (("maps", "builtin", "x.png", "--layer", "conv1"), "--top", ["nan", "0"]),
    (("cam", "builtin", "x.png"), "--alpha", ["nan", "inf", "1.5"]),
    (("cam", "builtin", "x.png"), "--noise", ["nan", "inf", "-1"]),
    (("cam", "builtin", "x.png"), "--samples", ["nan", "0"]),
    (("cam", "builtin", "x.png"), "--steps", ["nan", "0"]),
    (("cam", "builtin", "x.png"), "--batch-size", ["nan", "-1"]),
    (("cam", "builtin", "x.png"), "--seed", ["nan", "1.5"]),
    (("compare", "builtin"), "--atol", ["nan", "inf", "-1"]),
    (("compare", "builtin"), "--rtol", ["nan", "inf"]),
    (("evaluate", "builtin", "x.png"), "--tolerance", ["nan", "inf"]),
    (("evaluate", "builtin", "x.png"), "--iou-threshold", ["nan", "2"]),
    (("evaluate", "builtin", "x.png"), "--percentages", ["nan", "0,50"]),
    (("evaluate", "builtin", "x.png"), "--resamples", ["nan", "0"]),
    (("evaluate", "builtin", "x.png"), "--seed", ["nan"]),
    (("scan", "builtin", "dir", "--layer", "conv1"), "--topk", ["nan", "0"]),
    (("scan", "builtin", "dir", "--layer", "conv1"), "--batch-size", ["inf"]),
]


@pytest.mark.parametrize(
    ("argv", "option", "bad"),
    [pytest.param(a, o, b, id=f"{a[0]}{o}={b}") for a, o, values in CLI for b in values],
)
def test_cli_refuses_bad_numbers(capsys, argv, option, bad):
    code = main([*argv, option, bad])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("multiviz: error: ")
    assert f"argument {option}" in lines[0], lines[0]
    assert len(lines[0]) <= 200 + len("multiviz: error: ")


def test_the_shared_rule_in_words():
    from multiviz.core.checks import check_number, describe_range, parse_number

    assert describe_range(low=0, low_open=True) == "a finite number > 0"
    assert check_number(np.float32(0.5), "x", low=0, high=1) == np.float32(0.5)
    assert check_number(np.int64(3), "n", low=1, integer=True) == 3
    for bad in (NAN, INF, -INF, True, "1", None, 1 + 2j):
        with pytest.raises(NumberError):
            check_number(bad, "x")
    assert parse_number("1e-3", low=0) == 1e-3
    assert math.isnan(NAN)  # the table's NaN is a float NaN, not a string


# --------------------------------------------------------------------------- a NaN tolerance


@pytest.mark.both
@pytest.mark.parametrize("where", ["atol", "rtol"])
def test_nan_tolerance_cannot_pass_a_port_with_conv2_zeroed(where):
    tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")
    mv.transfer_weights(tm, km)
    kernel, bias = km.get_layer("conv2").get_weights()
    km.get_layer("conv2").set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    x = np.random.default_rng(1).random((2, 3, 24, 20)).astype(np.float32)
    inputs = (x, np.moveaxis(x, 1, -1))
    report = mv.compare(tm, km, inputs)  # the default tolerance finds the zeroed layer
    assert not report.passed and report.first_divergence.name == "conv2"
    with pytest.raises(NumberError) as info:
        mv.compare(tm, km, inputs, **{where: NAN})
    _check_message(info.value, where)


@pytest.mark.both
def test_cli_compare_atol_nan_never_passes(capsys):
    code = main(["compare", "builtin", "--atol", "nan"])
    _, err = capsys.readouterr()
    assert code == EXIT_USAGE and "argument --atol" in err and "PASS" not in err
