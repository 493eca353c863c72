"""Edges of the command line and the API (issue 10, item 7).

* Errors follow DESIGN.md's format: a first line of at most 200 characters
  naming what was wrong, then at most one ``hint:`` line — for a table of
  API calls and commands (``keras:NoSuchNet`` was a 708-character line).
* A command that uses one layer refuses a pattern matching several, listing them.
* Output file names are unique (``cat.png`` and ``cat.jpg`` were written to one file).
* Outputs are a set: when the second of three cannot be written, none is left.
* A layer literally named ``conv[3x3]`` is captured by its own name and drawn
  by ``html_report`` (exact names before any grammar; PyTorch only: Keras on
  TensorFlow refuses such a name).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import multiviz as mv
from multiviz.cli import EXIT_USAGE, main


def _format(text: str) -> None:
    first, *rest = text.split("\n")
    assert first.strip() and len(first) <= 200, (len(first), first)
    assert len(rest) <= 1 and all(r.startswith("hint: ") for r in rest), text


def _x():
    return mv.sample_image(seed=1)[None]


API = [
    pytest.param(lambda m: mv.load_model("nosuch:x"), id="unknown-source"),
    pytest.param(lambda m: mv.load_model("missing.pt2"), id="missing-file"),
    pytest.param(lambda m: mv.load_model("torchvision:nosuchnet"), id="torchvision-name"),
    pytest.param(lambda m: mv.capture(m, _x(), ["conv_no_such_layer"]), id="capture-layer"),
    pytest.param(lambda m: mv.grad_cam(m, _x(), "conv*"), id="cam-several-layers"),
    pytest.param(lambda m: mv.capture(m, np.zeros((1, 4, 64, 64), np.float32)), id="channels"),
    pytest.param(lambda m: mv.grad_cam(m, _x(), "conv3", target=99), id="target"),
    pytest.param(lambda m: mv.explain(m, _x(), ["nosuch"]), id="method"),
    pytest.param(lambda m: mv.saliency(m, _x(), batch_size=float("nan")), id="number"),
]


@pytest.mark.torch
@pytest.mark.parametrize("call", API)
def test_api_errors_follow_the_format(builtin_torch, call):
    with pytest.raises(Exception) as info:
        call(builtin_torch)
    _format(str(info.value))


@pytest.mark.tensorflow
def test_keras_application_name_error_follows_the_format():
    with pytest.raises(mv.ModelLoadError) as info:
        mv.load_model("keras:NoSuchNet")
    _format(str(info.value))
    assert "NoSuchNet" in str(info.value).split("\n")[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edges")
    rgb = np.rint(np.moveaxis(mv.sample_image(seed=2, size=(48, 56)), 0, -1) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "cat.png")
    Image.fromarray(rgb[::-1]).save(folder / "cat.jpg", quality=95)
    (folder / "one").mkdir()
    Image.fromarray(rgb).save(folder / "one" / "shape.png")
    return folder


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


CLI = [
    pytest.param(("maps", "nosuch:x", "IMG", "--layer", "conv1"), id="unknown-source"),
    pytest.param(("maps", "missing.pt2", "IMG", "--layer", "conv1"), id="missing-file"),
    pytest.param(("maps", "builtin", "IMG", "--layer", "nosuch"), id="no-layer"),
    pytest.param(("cam", "builtin", "IMG", "--layer", "conv*"), id="cam-several-layers"),
    pytest.param(("cam", "builtin", "IMG", "--method", "grad-cam", "--target", "99"), id="target"),
    pytest.param(("maps", "builtin", "IMG", "--layer", "conv1", "--std", "nan"), id="number"),
    pytest.param(("maps", "builtin", "missing.png", "--layer", "conv1"), id="missing-image"),
]


@pytest.mark.torch
@pytest.mark.parametrize("argv", CLI)
def test_cli_errors_follow_the_format(capsys, tmp_path, images, argv):
    argv = [str(images / "one" / "shape.png") if a == "IMG" else a for a in argv]
    code, _, err = _run(capsys, *argv, "-o", tmp_path / "out.png")
    assert code == EXIT_USAGE and not (tmp_path / "out.png").exists()
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("multiviz: note:")]
    assert lines[0].startswith("multiviz: error: ") and len(lines[0]) <= 200 + 17, lines
    assert len(lines) <= 2 and all(ln.startswith("hint: ") for ln in lines[1:]), lines


@pytest.mark.torch
def test_a_command_that_uses_one_layer_refuses_several(capsys, tmp_path, images):
    img = images / "one" / "shape.png"
    for command in (("cam", "builtin", img), ("evaluate", "builtin", img, "--metric", "deletion")):
        code, _, err = _run(capsys, *command, "--layer", "conv*", "-o", tmp_path / "x.png")
        assert code == EXIT_USAGE, err
        assert "'conv*' matches 3 layers (conv1, conv2, conv3)" in err, err
        assert "hint: pass one name, e.g. --layer conv1" in err


def test_a_method_that_uses_one_layer_refuses_several(framework, builtin):
    # the built-in CNN has exactly three conv layers, conv1..conv3 (its definition)
    x = framework.native(mv.sample_image(seed=1)[None])
    for call, param in (
        (lambda: mv.grad_cam(builtin, x, "conv*"), "layer"),
        (lambda: mv.score_cam(builtin, x, "conv*"), "layer"),
        (lambda: mv.explain(builtin, x, ["grad_cam"], layer="conv*"), "layer"),
        (lambda: mv.cam(builtin, x, "conv3", pool_layer="conv*"), "pool_layer"),
    ):
        with pytest.raises(mv.AmbiguousLayerError) as info:
            call()
        err = info.value
        assert isinstance(err, mv.LayerNotFoundError) and isinstance(err, ValueError)
        _format(str(err))
        assert f"{param}='conv*' matches 3 (conv1, conv2, conv3)" in str(err), str(err)
        assert f"hint: pass one name, e.g. {param}='conv1'" in str(err), str(err)
    np.testing.assert_allclose(  # one exact match still works, as before
        mv.grad_cam(builtin, x, "conv3"), mv.grad_cam(builtin, x, "conv3*"), atol=1e-6
    )


@pytest.mark.torch
def test_output_names_are_unique(capsys, tmp_path, images):
    # the folder holds cat.png and cat.jpg: one output each, named apart
    code, out, err = _run(
        capsys, "maps", "builtin", images, "--layer", "conv1", "--size", "64",
        "-o", tmp_path / "maps.png",
    )  # fmt: skip
    assert code == 0, err
    written = sorted(p.name for p in tmp_path.iterdir())
    reported = [
        Path(ln.split(" ", 1)[1]).name for ln in out.splitlines() if ln.startswith("wrote ")
    ]
    assert written == sorted(reported) == ["maps-cat_jpg.png", "maps-cat_png.png"]


def test_output_paths_never_collide():
    from multiviz.cli.output import output_paths

    names = ["cat.png", "cat.jpg", "Cat.png", "a b.png", "a_b.png"]
    paths = [p.name.lower() for row in output_paths("o.png", names, ["x", "x"]) for p in row]
    assert len(set(paths)) == len(paths) == 10


@pytest.mark.torch
def test_no_partial_set_when_the_second_of_three_cannot_be_written(capsys, tmp_path, images):
    out = tmp_path / "maps.png"
    blocker = tmp_path / "maps-conv2.png"
    blocker.mkdir()  # a folder where the second file goes: it cannot be replaced by a file
    code, _, err = _run(
        capsys, "maps", "builtin", images / "one" / "shape.png",
        "--layer", "conv1", "--layer", "conv2", "--layer", "conv3", "-o", out,
    )  # fmt: skip
    assert code != 0
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["maps-conv2.png"], left  # only the folder: no first or third file, no temp
    blocker.rmdir()
    code, _, err = _run(
        capsys, "maps", "builtin", images / "one" / "shape.png",
        "--layer", "conv1", "--layer", "conv2", "--layer", "conv3", "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "maps-conv1.png",
        "maps-conv2.png",
        "maps-conv3.png",
    ]


# --------------------------------------------------------------------------- conv[3x3]


def _bracket_model():
    """A PyTorch net with a module literally named ``conv[3x3]``.

    Only PyTorch: Keras on TensorFlow refuses such a layer name when the model
    runs ("'conv[3x3]' is not a valid scope name"), so no Keras model can have one.
    """
    from torch import nn

    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(3, 4, 3, padding=1)),
                ("conv[3x3]", nn.Conv2d(4, 5, 3, padding=1)),
                ("relu", nn.ReLU()),
                ("gap", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("fc", nn.Linear(5, 2)),
            ]
        )
    ).eval()


@pytest.mark.torch
def test_a_layer_named_with_brackets_is_captured_and_reported():
    import torch

    model = _bracket_model()
    x = mv.sample_image(seed=0, size=16)[None]
    acts = mv.capture(model, x, ["conv[3x3]"])
    assert list(acts) == ["conv[3x3]"] and acts["conv[3x3]"].shape == (1, 5, 16, 16)
    both = mv.capture(model, x, ["conv", "conv[3x3]", "relu"])
    np.testing.assert_allclose(both["relu"], np.maximum(both["conv[3x3]"], 0), rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # the right values: the module itself on conv's output
        want = model[1](torch.from_numpy(both["conv"])).numpy()
    np.testing.assert_allclose(both["conv[3x3]"], want, rtol=1e-5, atol=1e-6)
    html = mv.html_report(model, x, layers=["conv[3x3]"])
    assert "conv[3x3]" in html and "<html" in html.lower()
