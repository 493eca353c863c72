"""Bad values for the public parameters of ``mv.*``: every error names the caller's parameter.

Issue 12, kind 8. Each row calls one public function with valid arguments
except one parameter, given a value of the wrong type, an unknown string or a
wrong shape (NaN/Inf and out-of-range numbers: ``tests/test_numbers*.py``).
The message must follow the error format of DESIGN.md: a first line of at
most 200 characters that names the parameter as the caller wrote it
(`` `normalize` `` or ``normalize=``), then at most one ``hint:`` line. The
right value is the parameter's name itself, read from the call.

``test_every_public_parameter_has_a_row`` takes every parameter of every
public function in ``mv.__all__`` (``inspect``) and fails for one with no
row, unless it is in ``ANYTHING_GOES`` (free text: every value is valid) or
in ``NOT_YET`` (still open, each with what a bad value does today).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import multiviz as mv

MAPS = np.random.default_rng(0).random((2, 4, 6, 6)).astype(np.float32)
IMAGE = np.random.default_rng(1).random((6, 6, 3)).astype(np.float32)
HEAT = np.random.default_rng(2).random((6, 6)).astype(np.float32)


def _check(err: BaseException, param: str) -> None:
    text = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
    lines = text.split("\n")
    assert len(lines[0]) <= 200, lines[0]
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint:")), text
    assert f"`{param}`" in lines[0] or f"{param}=" in lines[0], (param, text)


# (function, valid keyword arguments, parameter, bad value); a callable valid
# argument set is built when the row runs (models: once per module).
Row = tuple[str, Callable[[], dict[str, Any]] | dict[str, Any], str, Any]

NUMPY_ROWS: list[Row] = [
    ("normalize", {"maps": MAPS}, "mode", "per_map"),
    ("normalize", {"maps": MAPS}, "mode", 3),
    ("normalize", {"maps": MAPS}, "layout", "NCHWT"),
    ("normalize", {"maps": MAPS}, "percentile", "1,99"),
    ("normalize", {"maps": MAPS}, "percentile", (1, 50, 99)),
    ("aggregate", {"maps": MAPS}, "reduce", "median-ish"),
    ("aggregate", {"maps": MAPS}, "channels", [0, 9]),
    ("aggregate", {"maps": MAPS}, "layout", "HWC"),
    ("select_channels", {"maps": MAPS}, "by", "loudest"),
    ("select_channels", {"maps": MAPS}, "channels", [7]),
    ("select_channels", {"maps": MAPS}, "top", "3"),
    ("montage", {"maps": MAPS[0]}, "ncols", "4"),
    ("montage", {"maps": MAPS[0]}, "layout", "XYZ"),
    ("colorize", {"values": HEAT}, "cmap", "not_a_colormap"),
    ("colorize", {"values": HEAT}, "background", "white"),
    ("feature_map_image", {"maps": MAPS}, "normalize", "per_map"),
    ("feature_map_image", {"maps": MAPS}, "cmap", "not_a_colormap"),
    ("feature_map_image", {"maps": MAPS}, "max_maps", "8"),
    ("feature_map_image", {"maps": MAPS}, "channels", [0, 11]),
    ("feature_map_image", {"maps": MAPS}, "sample", 5),
    ("feature_map_image", {"maps": MAPS}, "layout", "NHWC?"),
    ("overlay_image", {"image": IMAGE, "heatmap": HEAT}, "normalize", "per_map"),
    ("overlay_image", {"image": IMAGE, "heatmap": HEAT}, "blend", "multiply"),
    ("overlay_image", {"image": IMAGE, "heatmap": HEAT}, "cmap", "not_a_colormap"),
    ("plot_feature_maps", {"maps": MAPS}, "normalize", "per_map"),
    ("plot_feature_maps", {"maps": MAPS}, "max_maps", 0),
    ("plot_feature_maps", {"maps": MAPS}, "sample", 9),
    ("plot_feature_maps", {"maps": MAPS}, "layout", "NCHWT"),
    ("plot_aggregate", {"maps": MAPS}, "reduce", "median-ish"),
    ("plot_aggregate", {"maps": MAPS}, "normalize", "per_map"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "normalize", "per_map"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "blend", "multiply"),
    ("builtin_model", {}, "framework", "jax"),
    ("builtin_model", {}, "arch", "resnet"),
    ("shapes_dataset", {"n": 2}, "size", "64"),
    ("channel_stats", {"maps": MAPS}, "layout", "NCHWT"),
    ("channel_stats", {"maps": MAPS}, "maps", "activations"),
    ("layer_stats", {}, "activations", [1, 2, 3]),
    ("save_image", {"image": IMAGE}, "path", "picture.xyz"),
    ("save_image", {"path": "picture.png"}, "image", np.zeros((2, 2, 2, 2, 2))),
    ("plot_layer_stats", {}, "activations_or_stats", "conv1"),
    ("plot_explanations", {"image": IMAGE}, "maps", HEAT),
    ("plot_comparison", {}, "report", {"conv1": 1.0}),
    ("linear_cka", {"x": np.zeros((4, 3))}, "y", np.zeros((5, 3))),
    ("load_scan", {}, "path", "no-such-scan-folder"),
    ("load_model", {}, "spec", "caffe:alexnet"),
    ("load_images", lambda: {"source": _png()}, "prep", "imagenet"),
    ("normalize", {}, "maps", np.array(["a", "b"])),
    ("aggregate", {}, "maps", np.zeros((2,) * 6)),
    ("select_channels", {"maps": MAPS}, "layout", "XYZ"),
    ("montage", {}, "maps", np.zeros((2,) * 6)),
    ("colorize", {}, "values", np.array(["a", "b"])),
    ("feature_map_image", {"maps": MAPS}, "background", "white"),
    ("overlay_image", {"heatmap": HEAT}, "image", np.zeros((6, 6, 7))),
    ("overlay_image", {"image": IMAGE}, "heatmap", np.zeros((2,) * 5)),
    ("plot_feature_maps", {"maps": MAPS}, "cmap", "not_a_colormap"),
    ("plot_feature_maps", {"maps": MAPS}, "channels", [99]),
    ("plot_aggregate", {"maps": MAPS}, "cmap", "not_a_colormap"),
    ("plot_aggregate", {"maps": MAPS}, "layout", "XYZ"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "cmap", "not_a_colormap"),
    ("plot_overlay", {"heatmap": HEAT}, "image", np.zeros((6, 6, 7))),
    ("plot_explanations", {"image": IMAGE, "maps": {"grad_cam": HEAT[None]}}, "blend", "multiply"),
    ("plot_explanations", {"image": IMAGE, "maps": {"grad_cam": HEAT[None]}}, "cmap", "no_cmap"),
    ("plot_comparison", lambda: {"report": _parity()}, "layer", "nope"),
    ("plot_comparison", lambda: {"report": _parity()}, "cmap", "not_a_colormap"),
    ("plot_comparison", lambda: {"report": _parity()}, "diff_cmap", "not_a_colormap"),
    ("builtin_model", {}, "weights", "no-such-weights.npz"),
    ("load_model", {"spec": "builtin"}, "framework", "jax"),
    ("sample_image", {}, "label", "hexagon"),
    ("sample_image", {}, "size", (64,)),
]


def _parity() -> Any:
    from multiviz.parity.compare import compare_activations

    a = {"conv": MAPS}
    return compare_activations(a, {"conv": MAPS * 1.01})


def _png() -> str:
    import tempfile

    from PIL import Image

    path = f"{tempfile.mkdtemp()}/one.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


def _ids(rows: list[Row], width: int | None = 60) -> list[str]:
    """Test ids ``function-parameter-bad value``, cut at ``width`` characters."""
    return [f"{r[0]}-{r[2]}-{r[3]!r}"[:width] for r in rows]


def _run(rows: list[Row], index: int) -> None:
    name, valid, param, bad = rows[index]
    kwargs = dict(valid() if callable(valid) else valid)
    kwargs[param] = bad
    with pytest.raises((mv.MultivizError, ValueError, TypeError, LookupError, OSError)) as info:
        getattr(mv, name)(**kwargs)
    _check(info.value, param)


@pytest.mark.parametrize("index", range(len(NUMPY_ROWS)), ids=_ids(NUMPY_ROWS, None))
def test_numpy_functions_name_the_parameter(index: int) -> None:
    _run(NUMPY_ROWS, index)


# --------------------------------------------------------------------------- with a model


def _model() -> dict[str, Any]:
    return {"model": _builtin(), "x": _x()}


_CACHE: dict[str, Any] = {}


def _builtin() -> Any:
    if "model" not in _CACHE:
        _CACHE["model"] = mv.builtin_model("torch", weights=None)
    return _CACHE["model"]


def _x() -> np.ndarray:
    return np.random.default_rng(3).random((2, 3, 16, 16)).astype(np.float32)


def _cam() -> dict[str, Any]:
    return {**_model(), "layer": "conv3"}


MODEL_ROWS: list[Row] = [
    ("layers", {"model": "resnet18"}, "model", "resnet18"),
    ("layers", lambda: {"model": _builtin()}, "kind", "convolution-ish"),
    ("layers", lambda: {"model": _builtin()}, "input_shape", "3x16x16"),
    ("capture", _model, "x", "image.png"),
    ("capture", _model, "x", np.zeros((2, 5, 16, 16), np.float32)),
    ("capture", _model, "names", ["conv9"]),
    ("capture", _model, "names", 3),
    ("capture", lambda: {**_model(), "names": None}, "kind", "convolution-ish"),
    ("forward", lambda: {"model": _builtin()}, "x", "image.png"),
    ("grad_cam", _cam, "layer", "conv9"),
    ("grad_cam", _cam, "target", "cat"),
    ("grad_cam", _cam, "target", 7),
    ("grad_cam", _cam, "reduce", "median-ish"),
    ("grad_cam", _cam, "upsample", "cubic-ish"),
    ("grad_cam", _cam, "input_index", 3),
    ("grad_cam", _cam, "x", np.zeros((2, 16, 16), np.float32)),
    ("score_cam", _cam, "batch_size", "8"),
    ("cam", _cam, "pool_layer", "pool9"),
    ("grad_cam_plus_plus", _cam, "relu", "yes"),
    ("guided_grad_cam", _cam, "aggregation", "median-ish"),
    ("attention_rollout", _model, "head_fusion", "median-ish"),
    ("clear_cache", {}, "model", "resnet18"),
    ("scan", lambda: {"model": _builtin(), "data": _x(), "layers": ["conv1"]}, "engine", "spark"),
    ("html_report", lambda: {**_model(), "layers": ["conv1"]}, "layers", ["conv9"]),
    ("layer_cam", _cam, "layer", "fc"),
    ("saliency", _model, "method", "smooth"),
    ("saliency", _model, "aggregation", "median-ish"),
    ("saliency", _model, "target", [0]),
    ("integrated_gradients", _model, "rule", "simpson"),
    ("integrated_gradients", _model, "baseline", np.zeros((1, 3, 5, 5), np.float32)),
    ("guided_backprop", _model, "aggregation", "median-ish"),
    ("deconvnet", _model, "aggregation", "median-ish"),
    ("explain", _model, "methods", ["grad_cam", "magic"]),
    ("explain", _model, "layer", "conv9"),
    (
        "compare",
        lambda: {"model_a": _builtin(), "model_b": _builtin(), "x": _x()},
        "pairs",
        "fuzzy",
    ),
    ("transfer_weights", lambda: {"source": _builtin(), "target": _builtin()}, "pairs", "fuzzy"),
    (
        "transfer_weights",
        lambda: {"source": _builtin(), "target": _builtin()},
        "pairs",
        {"conv1": "conv9"},
    ),
    ("evaluate", _model, "metrics", ["deletion", "magic"]),
    ("evaluate", _model, "methods", ["magic"]),
    ("set_cache_size", {}, "size", "8"),
    ("forward", lambda: {"x": _x()}, "model", None),
    ("capture", _model, "token_grid", "14x14"),
    ("grad_cam", _cam, "relu", "yes"),
    ("cam", _cam, "fc_weights", np.zeros((3, 3), np.float32)),
    ("integrated_gradients", _model, "target", "cat"),
    ("evaluate", lambda: {**_model(), "methods": ["grad_cam"]}, "substrate", "purple"),
    ("compare", lambda: {"model_a": _builtin(), "x": _x()}, "model_b", "keras-model"),
    ("transfer_weights", lambda: {"target": _builtin()}, "source", "model.pt"),
    ("scan", lambda: {"model": _builtin(), "data": _x()}, "layers", ["conv9"]),
    ("html_report", lambda: {**_model(), "layers": ["conv1"]}, "cmap", "not_a_colormap"),
]


@pytest.mark.torch
@pytest.mark.parametrize("index", range(len(MODEL_ROWS)), ids=_ids(MODEL_ROWS))
def test_model_functions_name_the_parameter(index: int) -> None:
    _run(MODEL_ROWS, index)


def test_the_table_covers_what_it_claims() -> None:
    """Every row names a real parameter of that function; the rest is counted, not hidden."""
    covered: dict[str, set[str]] = {}
    for name, _, param, _ in NUMPY_ROWS + MODEL_ROWS:
        params = inspect.signature(getattr(mv, name)).parameters
        assert param in params, (name, param)
        covered.setdefault(name, set()).add(param)
    public = {
        name
        for name, module in mv._EXPORTS.items()
        if module != "errors"
        and callable(getattr(mv, name))
        and not inspect.isclass(getattr(mv, name))
    }
    assert set(covered) <= public
    # functions with at least one row: most of the public surface
    assert len(covered) >= 30, sorted(public - set(covered))


# --------------------------------------------------------------------------- every parameter

ACTS = {"conv": MAPS}
EXPLAINED = {"grad_cam": HEAT[None]}

MORE_NUMPY_ROWS: list[Row] = [
    ("normalize", {"maps": MAPS}, "return_info", "yes"),
    ("channel_stats", {"maps": MAPS}, "eps", "0.1"),
    ("channel_stats", {"maps": MAPS}, "bounds", "..."),
    ("channel_stats", {"maps": MAPS}, "quantiles", "yes"),
    ("layer_stats", {"activations": ACTS}, "eps", "0.1"),
    ("montage", {"maps": MAPS[0]}, "pad", "2"),
    ("montage", {"maps": MAPS[0]}, "pad_value", "white"),
    ("feature_map_image", {}, "maps", np.array(["a", "b"])),
    ("feature_map_image", {"maps": MAPS}, "percentile", "1,99"),
    ("feature_map_image", {"maps": MAPS}, "ncols", "4"),
    ("feature_map_image", {"maps": MAPS}, "pad", "2"),
    ("feature_map_image", {"maps": MAPS}, "upscale", "2"),
    ("feature_map_image", {"maps": MAPS}, "labels", 3),
    ("overlay_image", {"image": IMAGE, "heatmap": HEAT}, "alpha", "0.5"),
    ("overlay_image", {"image": IMAGE, "heatmap": HEAT}, "percentile", "1,99"),
    ("plot_feature_maps", {}, "maps", "conv1"),
    ("plot_feature_maps", {"maps": MAPS}, "percentile", "1,99"),
    ("plot_feature_maps", {"maps": MAPS}, "ncols", "4"),
    ("plot_feature_maps", {"maps": MAPS}, "pad", "2"),
    ("plot_feature_maps", {"maps": MAPS}, "labels", 3),
    ("plot_feature_maps", {"maps": MAPS}, "colorbar", "yes"),
    ("plot_aggregate", {}, "maps", "conv1"),
    ("plot_aggregate", {"maps": MAPS}, "sample", 9),
    ("plot_aggregate", {"maps": MAPS}, "channels", [99]),
    ("plot_aggregate", {"maps": MAPS}, "colorbar", "yes"),
    ("plot_overlay", {"image": IMAGE}, "heatmap", np.zeros((2,) * 5)),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "alpha", "0.5"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "percentile", "1,99"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "colorbar", "yes"),
    ("plot_layer_stats", {"activations_or_stats": ACTS}, "eps", "0.1"),
    ("plot_explanations", {"image": IMAGE, "maps": EXPLAINED}, "target", "cat"),
    ("plot_explanations", {"image": IMAGE, "maps": EXPLAINED}, "alpha", "0.5"),
    ("plot_explanations", {"image": IMAGE, "maps": EXPLAINED}, "size", "4"),
    ("plot_comparison", lambda: {"report": _parity()}, "sample", 9),
    ("plot_comparison", lambda: {"report": _parity()}, "channels", [99]),
    ("plot_comparison", lambda: {"report": _parity()}, "max_channels", "4"),
    ("shapes_dataset", {}, "n", "2"),
    ("shapes_dataset", {"n": 2}, "seed", "0"),
    ("sample_image", {}, "seed", "0"),
    ("load_model", {"spec": "builtin"}, "unsafe", "yes"),
    ("load_images", lambda: {"prep": _prep()}, "source", "no/such/file.png"),
    ("load_images", lambda: {"prep": _prep()}, "source", "no/such/folder"),
    ("to_channels_first", {}, "x", "image.png"),
    ("to_channels_last", {}, "x", "image.png"),
    ("select_channels", {}, "maps", np.array(["a", "b"])),
    ("layer_stats", {"activations": ACTS}, "bounds", "..."),
    ("plot_feature_maps", {"maps": MAPS}, "ax", "axes"),
    ("plot_aggregate", {"maps": MAPS}, "ax", "axes"),
    ("plot_overlay", {"image": IMAGE, "heatmap": HEAT}, "ax", "axes"),
    ("plot_layer_stats", {"activations_or_stats": ACTS}, "ax", "axes"),
    ("plot_layer_stats", {"activations_or_stats": ACTS}, "bounds", "..."),
    ("plot_explanations", {"image": IMAGE, "maps": EXPLAINED}, "class_names", 3),
    ("plot_explanations", {"maps": EXPLAINED}, "image", "image.png"),
    ("plot_explanations", {"image": IMAGE[None], "maps": EXPLAINED}, "sample", 9),
    ("plot_explanations", {"image": IMAGE, "maps": EXPLAINED}, "layer", 3),
    ("linear_cka", {"y": np.zeros((4, 3))}, "x", "acts"),
    ("load_model", {"spec": "builtin"}, "weights", 3),
    ("load_model", {"spec": "builtin", "framework": "torch"}, "arch", "resnet"),
    ("load_images", lambda: {"source": _png(), "prep": _prep()}, "max_pixels", "1M"),
]


def _prep() -> Any:
    from multiviz.sources.images import Preprocess

    return Preprocess(size=(8, 8))


@pytest.mark.parametrize(
    "index",
    range(len(MORE_NUMPY_ROWS)),
    ids=_ids(MORE_NUMPY_ROWS),
)
def test_more_numpy_functions_name_the_parameter(index: int) -> None:
    _run(MORE_NUMPY_ROWS, index)


def _vit() -> dict[str, Any]:
    if "vit" not in _CACHE:
        _CACHE["vit"] = mv.builtin_model("torch", arch="vit", weights=None)
    x = np.random.default_rng(4).random((1, 3, 64, 64)).astype(np.float32)
    return {"model": _CACHE["vit"], "x": x}


def _smoothgrad() -> dict[str, Any]:
    return {**_model(), "method": "smoothgrad"}


def _evaluate() -> dict[str, Any]:
    return {**_model(), "methods": ["saliency"], "metrics": ["deletion"]}


def _scan() -> dict[str, Any]:
    return {"model": _builtin(), "data": _x(), "layers": ["conv1"], "progress": False}


def _report() -> dict[str, Any]:
    return {**_model(), "layers": ["conv1"]}


def _pair() -> dict[str, Any]:
    return {"model_a": _builtin(), "model_b": _builtin(), "x": _x()}


def _transfer() -> dict[str, Any]:
    return {"source": _builtin(), "target": _builtin()}


CAMS = ("cam", "grad_cam", "grad_cam_plus_plus", "score_cam", "layer_cam", "guided_grad_cam")
CAM_BAD = (
    ("model", "resnet18"),
    ("x", "image.png"),
    ("layer", "conv9"),
    ("target", "cat"),
    ("normalize", "yes"),
    ("batch_size", "8"),
    ("token_grid", "14x14"),
    ("prefix_tokens", "1"),
    ("input_index", 3),
    ("relu", "yes"),
    ("reduce", "median-ish"),
    ("upsample", "cubic-ish"),
)
INPUT_GRADIENTS = ("saliency", "integrated_gradients", "guided_backprop", "deconvnet")
INPUT_BAD = (
    ("model", "resnet18"),
    ("x", "image.png"),
    ("target", "cat"),
    ("normalize", "yes"),
    ("batch_size", "8"),
)

MORE_MODEL_ROWS: list[Row] = [
    *((f, _cam, p, bad) for f in CAMS for p, bad in CAM_BAD),
    *((f, _model, p, bad) for f in INPUT_GRADIENTS for p, bad in INPUT_BAD),
    ("capture", _model, "model", "resnet18"),
    ("capture", _model, "prefix_tokens", "1"),
    ("saliency", _smoothgrad, "samples", "3"),
    ("saliency", _smoothgrad, "noise", "0.1"),
    ("saliency", _smoothgrad, "seed", "0"),
    ("integrated_gradients", _model, "steps", "8"),
    ("integrated_gradients", _model, "aggregation", "median-ish"),
    ("integrated_gradients", _model, "return_delta", "yes"),
    ("attention_rollout", _model, "model", "resnet18"),
    ("attention_rollout", _model, "x", "image.png"),
    ("attention_rollout", _model, "method", "median-ish"),
    ("attention_rollout", _model, "discard_ratio", "0.5"),
    ("attention_rollout", _model, "normalize", "yes"),
    ("attention_rollout", _model, "batch_size", "8"),
    ("explain", _model, "model", "resnet18"),
    ("explain", _model, "x", "image.png"),
    ("explain", _model, "target", "cat"),
    ("explain", _model, "batch_size", "8"),
    ("explain", _model, "samples", "3"),
    ("explain", _model, "steps", "8"),
    ("explain", _model, "seed", "0"),
    ("explain", _model, "input_index", 3),
    ("compare", lambda: {"model_b": _builtin(), "x": _x()}, "model_a", "keras-model"),
    ("compare", lambda: {**_pair(), "x": None}, "x", "image.png"),
    ("compare", _pair, "atol", "0.1"),
    ("compare", _pair, "rtol", "0.1"),
    ("transfer_weights", lambda: {"source": _builtin()}, "target", "model.pt"),
    ("transfer_weights", _transfer, "check_config", "yes"),
    ("transfer_weights", _transfer, "strict", "yes"),
    ("transfer_weights", _transfer, "dry_run", "yes"),
    *(
        ("evaluate", _evaluate, p, bad)
        for p, bad in (
            ("model", "resnet18"),
            ("x", "image.png"),
            ("target", "cat"),
            ("boxes", "box"),
            ("masks", "mask"),
            ("score", "probability-ish"),
            ("steps", "8"),
            ("blur_sigma", "2"),
            ("percentages", "10,20"),
            ("noise", "0.1"),
            ("tolerance", "0.1"),
            ("iou_threshold", "0.5"),
            ("independent", "yes"),
            ("level", "0.9"),
            ("resamples", "100"),
            ("seed", "0"),
            ("batch_size", "8"),
        )
    ),
    *(
        ("scan", _scan, p, bad)
        for p, bad in (
            ("model", "resnet18"),
            ("data", "no/such/folder"),
            ("topk", "3"),
            ("batch_size", "8"),
            ("kind", "convolution-ish"),
            ("index_offset", "3"),
            ("checkpoint_every", "8"),
            ("progress", "yes"),
            ("fields", "everything"),
            ("sketch_k", "12"),
            ("sketch_positions", "all"),
            ("eps", "0.1"),
            ("concurrency", "2"),
            ("num_gpus", "1"),
            ("max_pixels", "1M"),
        )
    ),
    ("html_report", _report, "model", "resnet18"),
    ("html_report", _report, "x", "image.png"),
    ("html_report", _report, "max_maps", "8"),
    ("html_report", _report, "cam", "magic"),
    ("html_report", _report, "evaluation", "yes"),
    ("html_report", _report, "class_names", 3),
    ("html_report", _report, "notes", 3),
    ("html_report", _report, "progress", "yes"),
    ("explain", _model, "class_names", 3),
    ("compare", _pair, "cka", "yes"),
    ("scan", _scan, "checkpoint", 3),
    ("scan", _scan, "preprocess", "imagenet"),
    ("scan", _scan, "unpack", "first"),
    ("explain", _model, "image", "image.png"),
    ("evaluate", _evaluate, "layer", 3),
    ("evaluate", _evaluate, "randomized_model", "resnet18"),
    ("evaluate", _evaluate, "maps", "grad_cam"),
    ("html_report", _report, "display", "image.png"),
    ("attention_rollout", _vit, "token_grid", "14x14"),
    ("attention_rollout", _vit, "target", "cat"),
    ("attention_rollout", _vit, "prefix_tokens", "1"),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    "index",
    range(len(MORE_MODEL_ROWS)),
    ids=_ids(MORE_MODEL_ROWS),
)
def test_more_model_functions_name_the_parameter(index: int) -> None:
    _run(MORE_MODEL_ROWS, index)


# --------------------------------------------------------------------------- the census

#: parameters every value of which is valid (free text shown as ``str(value)``):
#: no bad value exists to put in a row
ANYTHING_GOES = {
    ("plot_feature_maps", "title"): "free text: the figure's title",
    ("plot_feature_maps", "name"): "free text: the layer's name in the title",
    ("plot_aggregate", "title"): "free text: the figure's title",
    ("plot_aggregate", "name"): "free text: the layer's name in the title",
    ("plot_overlay", "title"): "free text: the figure's title",
    ("plot_layer_stats", "title"): "free text: the figure's title",
    ("plot_explanations", "title"): "free text: the figure's title",
    ("html_report", "title"): "free text: the page's title",
    ("html_report", "source"): "free text: where the model came from, shown in the summary",
    ("html_report", "image"): "free text: where the image came from, shown in the summary",
    ("html_report", "preprocessing"): "free text: one line shown in the summary",
}

#: parameters without a row yet, each with what a bad value does today (issue 12,
#: kind 8, left open): a row that starts passing must take its entry off this list
NOT_YET: dict[tuple[str, str], str] = {
    # none left: add (function, parameter): "what a bad value does today" for a new gap
}

ALL_ROWS = NUMPY_ROWS + MODEL_ROWS + MORE_NUMPY_ROWS + MORE_MODEL_ROWS


def _public_parameters() -> set[tuple[str, str]]:
    """(function, parameter) for every public function in ``mv.__all__``."""
    out = set()
    for name in mv.__all__:
        obj = getattr(mv, name)
        if inspect.isclass(obj) or not callable(obj):
            continue
        for param, spec in inspect.signature(obj).parameters.items():
            if spec.kind not in (spec.VAR_POSITIONAL, spec.VAR_KEYWORD):
                out.add((name, param))
    return out


def test_every_public_parameter_has_a_row() -> None:
    """A public parameter with no row, no exemption and no entry in NOT_YET fails here."""
    public = _public_parameters()
    covered = {(name, param) for name, _, param, _ in ALL_ROWS}
    assert covered <= public, sorted(covered - public)  # every row names a real parameter
    assert not covered & set(ANYTHING_GOES), sorted(covered & set(ANYTHING_GOES))
    assert not covered & set(NOT_YET), (
        "has a row now: drop it from NOT_YET",
        covered & set(NOT_YET),
    )
    assert set(ANYTHING_GOES) | set(NOT_YET) <= public
    missing = public - covered - set(ANYTHING_GOES) - set(NOT_YET)
    assert not missing, sorted(missing)
