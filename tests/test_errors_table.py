"""Bad values for the public parameters of ``mv.*``: every error names the caller's parameter.

Issue 12, kind 8. Each row calls one public function with valid arguments
except one parameter, given a value of the wrong type, an unknown string or a
wrong shape (NaN/Inf and out-of-range numbers: ``tests/test_numbers*.py``).
The message must follow the error format of DESIGN.md: a first line of at
most 200 characters that names the parameter as the caller wrote it
(`` `normalize` `` or ``normalize=``), then at most one ``hint:`` line. The
right value is the parameter's name itself, read from the call.

``test_the_table_covers_what_it_claims`` lists, per function, the
parameters without a row yet, so the census is explicit rather than silent.
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


def _run(rows: list[Row], index: int) -> None:
    name, valid, param, bad = rows[index]
    kwargs = dict(valid() if callable(valid) else valid)
    kwargs[param] = bad
    with pytest.raises((mv.MultivizError, ValueError, TypeError, KeyError, OSError)) as info:
        getattr(mv, name)(**kwargs)
    _check(info.value, param)


@pytest.mark.parametrize(
    "index", range(len(NUMPY_ROWS)), ids=[f"{r[0]}-{r[2]}-{r[3]!r}" for r in NUMPY_ROWS]
)
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
@pytest.mark.parametrize(
    "index", range(len(MODEL_ROWS)), ids=[f"{r[0]}-{r[2]}-{r[3]!r}"[:60] for r in MODEL_ROWS]
)
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
