"""The command line, end to end: every subcommand, every saved-model kind, every bad input.

Commands run in-process through ``main(argv)`` (fast: the frameworks are
imported once); one test runs the installed ``multiviz`` console script in a
subprocess. Pictures written are compared with what the public API draws for
the same model and image, and every failure must be one ``multiviz: error:``
line, a non-zero exit code, and no output file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiviz.cli import EXIT_DIFFERENT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from multiviz.sources.builtin import BUILTIN_CLASSES


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The error line, and its optional ``hint:`` line after it (DESIGN.md's format), joined."""
    lines = [
        line for line in err.splitlines() if line.strip() and not line.startswith("multiviz: note:")
    ]
    if len(lines) == 2 and lines[1].startswith("hint: "):
        lines = [f"{lines[0]} {lines[1]}"]
    assert len(lines) == 1, f"expected one error line (and a hint line), got: {err!r}"
    assert lines[0].startswith("multiviz: error: ")
    assert "Traceback" not in err
    return lines[0]


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def figure_pixels(fig) -> np.ndarray:
    """A figure as the CLI encodes it (PNG at 120 dpi), read back as RGB."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def strided_equal(big: np.ndarray, small: np.ndarray) -> None:
    """``big`` is ``small`` with each pixel repeated k x k times."""
    k = big.shape[1] // small.shape[1]
    assert k >= 1 and big.shape == (small.shape[0] * k, small.shape[1] * k, 3)
    np.testing.assert_array_equal(big[::k, ::k], small)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """The same 48x56 shape image as RGB, greyscale, RGBA and 16-bit files, and a folder."""
    import multiviz as mv

    folder = tmp_path_factory.mktemp("images")
    rgb = np.rint(np.moveaxis(mv.sample_image(seed=2, size=(48, 56)), 0, -1) * 255).astype(np.uint8)
    paths = {"rgb": folder / "shape.png", "grey": folder / "grey.png", "rgba": folder / "rgba.png"}
    Image.fromarray(rgb).save(paths["rgb"])
    Image.fromarray(rgb).convert("L").save(paths["grey"])
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(paths["rgba"])
    paths["g16"] = folder / "g16.png"
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16)
    Image.fromarray(grey * 257).save(
        paths["g16"]
    )  # the same grey at 16 bits: v * 257 / 65535 = v / 255
    paths["corrupt"] = folder / "corrupt.png"
    paths["corrupt"].write_bytes(paths["rgb"].read_bytes()[:80])
    batch = tmp_path_factory.mktemp("batch")
    for k in (2, 10):
        Image.fromarray(np.roll(rgb, 7 * k, axis=1)).save(batch / f"img{k}.png")
    paths["folder"] = batch
    return paths


def builtin_input(path: Path, layout: str = "channels_first"):
    """The batch the CLI feeds the built-in model, made with the library's own reader."""
    from multiviz.sources.images import Preprocess, load_images

    return load_images(path, Preprocess("builtin", size=(64, 64), layout=layout))


# --------------------------------------------------------------------------- usage (no framework)


SUBCOMMANDS = ("layers", "maps", "cam", "stats", "report", "compare", "scan", "demo")
LOADS_A_MODEL = ("layers", "maps", "cam", "stats", "report", "compare", "scan")


def test_help_says_shared_things_once(capsys):
    """Models, images and exit codes in the top-level help; each subcommand about itself."""
    code, out, _ = run(capsys, "--help")
    assert code == EXIT_OK
    assert "exit codes:" in out and "2  usage or bad input" in out and "3  compare" in out
    assert "models (the MODEL argument):" in out and "images (the IMAGE argument):" in out
    assert "DANGEROUS" in out and "--weights" in out
    for name in SUBCOMMANDS:
        code, sub, _ = run(capsys, name, "--help")
        assert code == EXIT_OK
        assert sub.startswith(f"usage: multiviz {name}")
        for shared in ("exit codes:\n", "models (the MODEL", "images (the IMAGE", "Pillow"):
            assert shared not in sub, (name, shared)
        assert sub.count("DANGEROUS") <= 1 and len(sub.splitlines()) < 80
        if name in LOADS_A_MODEL:
            assert "model options:" in sub and "see `multiviz --help`" in sub


def test_every_subcommand_that_loads_a_model_takes_the_same_model_options():
    """The same model options everywhere, and every option an error's advice names exists."""
    import re

    from multiviz.cli.parser import MODEL_GROUP, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    groups = {
        name: sorted(
            o for g in sub[name]._action_groups if g.title == MODEL_GROUP
            for a in g._group_actions for o in a.option_strings
        )
        for name in LOADS_A_MODEL
    }  # fmt: skip
    assert all(opts == groups["maps"] for opts in groups.values()), groups
    assert groups["maps"] == ["--arch", "--framework", "--unsafe-load", "--weights"]
    # the advice of every loading error names options each of these commands takes
    root = Path(__file__).resolve().parents[2] / "multiviz"

    def advice(*paths: Path) -> set[str]:
        return {o for p in paths for o in re.findall(r"(--[a-z][a-z-]+)", p.read_text())}

    on_models = advice(root / "sources" / "models.py", *root.glob("backends/*/load.py"))
    on_images = advice(root / "cli" / "inputs.py", root / "sources" / "images.py")
    assert {"--weights", "--arch", "--unsafe-load"} <= on_models and "--size" in on_images
    for name in LOADS_A_MODEL:
        known = {o for a in sub[name]._actions for o in a.option_strings}
        assert on_models <= known, (name, on_models - known)
        if name != "layers":  # every command that reads images
            assert on_images <= known, (name, on_images - known)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ((), "required: COMMAND"),
        (("maps", "builtin"), "required: IMAGE, --layer"),
        (("layers", "builtin", "--kind", "convolution"), "invalid choice: 'convolution'"),
        (("maps", "builtin", "x.png", "--layer", "c", "--size", "0"), "expected N or HxW"),
        (("cam", "builtin", "x.png", "--alpha", "2"), "expected a number in [0, 1]"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE and out == ""
    line = one_error_line(err)
    assert needle in line and "--help" in line


def test_bad_model_files(capsys, tmp_path, images):
    out = tmp_path / "maps.png"
    code, _, err = run(
        capsys, "maps", tmp_path / "missing.pt", images["rgb"], "--layer", "c", "-o", out
    )
    assert code == EXIT_USAGE and "Model file not found" in one_error_line(err)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x01")
    code, _, err = run(capsys, "maps", onnx, images["rgb"], "--layer", "c", "-o", out)
    assert code == EXIT_USAGE and "'.onnx' is not a model format" in one_error_line(err)
    code, _, err = run(
        capsys, "maps", "builtin", images["rgb"], "--layer", "c", "-o", tmp_path / "maps.xyz"
    )
    assert code == EXIT_USAGE and "Use .png" in one_error_line(err)
    assert list(tmp_path.iterdir()) == [onnx]


# --------------------------------------------------------------------------- PyTorch built-in


@pytest.mark.torch
def test_layers(capsys):
    code, out, _ = run(capsys, "layers", "builtin", "--framework", "torch")
    assert code == EXIT_OK
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:-1]}
    assert list(rows)[:3] == ["conv1", "relu1", "pool1"] and len(rows) == 10
    assert rows["conv1"][1:] == ["Conv2d", "conv", "Nx16x64x64", "448"]
    assert rows["fc"][1:] == ["Linear", "dense", "Nx4", "260"]
    assert out.splitlines()[-1] == "10 layers, 23,844 parameters (builtin (torch))"
    code, out, _ = run(capsys, "layers", "builtin", "--kind", "conv")
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == ["conv1", "conv2", "conv3"]


@pytest.mark.torch
def test_layers_of_a_torchvision_network_need_no_download(capsys, monkeypatch):
    import torch.hub

    def no_network(*args, **kwargs):
        raise AssertionError("listing layers must not download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    code, out, err = run(capsys, "layers", "torchvision:resnet18", "--kind", "conv")
    assert code == EXIT_OK, err
    assert out.splitlines()[-1].startswith("20 layers, 11,166,912 parameters")


@pytest.mark.torch
def test_maps(capsys, tmp_path, images):
    import multiviz as mv

    out = tmp_path / "maps.png"
    code, stdout, _ = run(
        capsys, "maps", "builtin", images["rgb"], "--layer", "conv2", "-o", out, "--cmap", "magma"
    )
    assert code == EXIT_OK and stdout == f"wrote {out}\n"
    model = mv.builtin_model("torch")
    acts = mv.capture(model, builtin_input(images["rgb"]).inputs, ["conv2"])["conv2"][0]
    # by default a figure that says what it shows: layer, image, channel numbers, a colorbar
    fig = mv.plot_feature_maps(acts, cmap="magma", name="conv2 on shape.png")
    ax = fig.axes[0]
    assert ax.get_title().startswith("conv2 on shape.png: 32 channels")
    assert [t.get_text() for t in ax.texts][:3] == ["#0", "#1", "#2"]
    assert len(fig.axes) == 2  # conv2 is signed: one symmetric scale, so a colorbar
    np.testing.assert_array_equal(read_png(out), figure_pixels(fig))
    # --bare: the grid alone, pixel for pixel
    code, _, _ = run(
        capsys, "maps", "builtin", images["rgb"], "--layer", "conv2", "-o", out, "--cmap",
        "magma", "--bare",
    )  # fmt: skip
    strided_equal(read_png(out), mv.feature_map_image(acts, cmap="magma"))
    # every scaling of the API, `none` included, and the channel choices
    for extra, kwargs in (
        (("--normalize", "none"), {"normalize": "none"}),
        (("--normalize", "percentile", "--percentile", "5,95"),
         {"normalize": "percentile", "percentile": (5.0, 95.0)}),
        (("--channels", "3,1", "--ncols", "1"), {"channels": [3, 1], "ncols": 1}),
        (("--top", "4", "--by", "max"), {"channels": mv.select_channels(acts, top=4, by="max")}),
    ):  # fmt: skip
        code, _, err = run(
            capsys, "maps", "builtin", images["rgb"], "--layer", "conv2", "-o", out, "--bare",
            *extra,
        )  # fmt: skip
        assert code == EXIT_OK, err
        strided_equal(read_png(out), mv.feature_map_image(acts, **kwargs))

    # several layers and several images: one file each, named after both
    code, stdout, _ = run(
        capsys, "-q", "maps", "builtin", images["folder"], "--layer", "conv1", "--layer", "conv3",
        "--max-maps", "5", "--bare", "-o", tmp_path / "m.png",
    )  # fmt: skip
    assert code == EXIT_OK and stdout == ""
    written = sorted(p.name for p in tmp_path.glob("m-*.png"))
    assert written == [
        "m-img10-conv1.png",
        "m-img10-conv3.png",
        "m-img2-conv1.png",
        "m-img2-conv3.png",
    ]
    batch = builtin_input(images["folder"])
    conv3 = mv.capture(model, batch.inputs, ["conv3"])["conv3"]
    strided_equal(
        read_png(tmp_path / "m-img10-conv3.png"), mv.feature_map_image(conv3[1], max_maps=5)
    )

    # one reduced map per layer, alone or over the image
    code, _, err = run(
        capsys, "maps", "builtin", images["rgb"], "--layer", "conv3", "--reduce", "mean",
        "-o", tmp_path / "r.png",
    )  # fmt: skip
    assert code == EXIT_OK, err
    conv3 = mv.capture(model, builtin_input(images["rgb"]).inputs, ["conv3"])["conv3"][0]
    fig = mv.plot_aggregate(conv3, "mean", name="conv3 on shape.png")
    np.testing.assert_array_equal(read_png(tmp_path / "r.png"), figure_pixels(fig))
    code, _, err = run(
        capsys, "maps", "builtin", images["rgb"], "--layer", "conv3", "--reduce", "max",
        "--overlay", "--bare", "-o", tmp_path / "o.png",
    )  # fmt: skip
    assert code == EXIT_OK, err
    display = builtin_input(images["rgb"]).display[0]
    strided_equal(
        read_png(tmp_path / "o.png"), mv.overlay_image(display, mv.aggregate(conv3, "max"))
    )
    code, _, err = run(capsys, "maps", "builtin", images["rgb"], "--layer", "conv3", "--overlay")
    assert code == EXIT_USAGE and "--reduce" in one_error_line(err)


@pytest.mark.torch
def test_cam(capsys, tmp_path, images):
    import multiviz as mv

    out = tmp_path / "cam.png"
    code, stdout, err = run(capsys, "cam", "builtin", images["rgb"], "-o", out)
    assert code == EXIT_OK and "'conv3'" in err  # the note says which layer was used
    model = mv.builtin_model("torch")
    batch = builtin_input(images["rgb"])
    logits = mv.forward(model, batch.inputs)[0]
    top = int(logits.argmax())
    assert f"explained class {top} ({BUILTIN_CLASSES[top]})" in stdout
    heat = mv.grad_cam(model, batch.inputs, "conv3")
    # by default a figure naming the method, the layer and the class, beside the input
    fig = mv.plot_explanations(
        batch.display[0], {"grad_cam": heat}, layer="conv3", size=3.2,
        title=f"builtin on shape.png: evidence for class {top} ({BUILTIN_CLASSES[top]})",
    )  # fmt: skip
    assert [a.get_title() for a in fig.axes] == ["Input", "Grad-CAM\nat conv3"]
    np.testing.assert_array_equal(read_png(out), figure_pixels(fig))

    code, _, _ = run(capsys, "cam", "builtin", images["rgb"], "--bare", "-o", out)
    strided_equal(read_png(out), mv.overlay_image(batch.display[0], heat[0]))
    assert read_png(out).shape[:2] == (256, 256)  # 64x64 enlarged to be seen

    code, stdout, _ = run(
        capsys, "cam", "builtin", images["rgb"], "--method", "grad-cam++", "--layer", "relu2",
        "--target", "square", "--alpha", "0.3", "--blend", "uniform", "--bare", "-o", out,
    )  # fmt: skip
    want = mv.overlay_image(
        batch.display[0],
        mv.grad_cam_plus_plus(model, batch.inputs, "relu2", 1)[0],
        alpha=0.3,
        blend="uniform",
    )
    assert code == EXIT_OK and "explained class 1 (square)" in stdout
    strided_equal(read_png(out), want)
    # every method of the API, the guided ones too, several side by side
    code, _, err = run(
        capsys, "cam", "builtin", images["rgb"], "--method", "saliency", "--method",
        "guided-backprop", "--method", "guided-grad-cam", "--method", "integrated-gradients",
        "--steps", "8", "--bare", "-o", out,
    )  # fmt: skip
    assert code == EXIT_OK, err
    row = read_png(out)
    assert row.shape == (256, 4 * 256 + 3 * 4, 3)
    guided = mv.guided_backprop(model, batch.inputs, top)[0]  # (3, H, W) in [0, 1]
    np.testing.assert_allclose(
        row[::4, 260 : 260 + 256 : 4], np.rint(np.moveaxis(guided, 0, -1) * 255), atol=1
    )
    code, _, err = run(
        capsys, "cam", "builtin", images["rgb"], "--target", "hexagon", "-o", tmp_path / "x.png"
    )
    assert code == EXIT_USAGE and "No class named 'hexagon'" in one_error_line(err)


@pytest.mark.torch
def test_report(capsys, tmp_path, images):
    out = tmp_path / "sub" / "report.html"
    code, stdout, _ = run(
        capsys, "report", "builtin", images["folder"], "-o", out, "--max-maps", "8"
    )
    assert code == EXIT_OK and stdout == f"wrote {out}\n"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for name in ("conv1", "conv2", "conv3"):
        assert f'id="layer-{name}"' in text
    assert "this report shows the first, img2.png" in text
    assert "Grad-CAM overlay at layer conv3" in text


@pytest.mark.torch
def test_demo(capsys, tmp_path):
    code, stdout, _ = run(capsys, "-q", "demo", "--out", tmp_path / "demo", "--framework", "torch")
    assert code == EXIT_OK and stdout == ""
    pngs = list((tmp_path / "demo").rglob("*.png"))
    assert pngs and all(read_png(p).size for p in pngs)
    code, stdout, _ = run(capsys, "demo", "--out", tmp_path / "d2", "--framework", "torch")
    lines = stdout.splitlines()
    assert code == EXIT_OK and "says" in lines[0] and lines[-1].startswith("Done: 12 files")
    wrote = [line for line in lines if line.startswith("wrote ")]
    assert len(wrote) == 12 and len(lines) == 12 + 3  # CNN and ViT predictions, then Done


# --------------------------------------------------------------------------- bad inputs (PyTorch)


@pytest.mark.torch
def test_image_modes(capsys, tmp_path, images):
    import multiviz as mv

    model = mv.builtin_model("torch")
    rgb_batch = builtin_input(images["rgb"])
    for kind in ("grey", "rgba", "g16"):
        out = tmp_path / f"{kind}.png"
        code, _, _ = run(capsys, "maps", "builtin", images[kind], "--layer", "conv1", "-o", out)
        assert code == EXIT_OK, kind
    # opaque RGBA is the RGB image; greyscale and 16-bit greyscale are the same grey picture
    rgba = mv.capture(model, builtin_input(images["rgba"]).inputs, ["conv1"])["conv1"]
    np.testing.assert_array_equal(rgba, mv.capture(model, rgb_batch.inputs, ["conv1"])["conv1"])
    grey = builtin_input(images["grey"]).inputs
    g16 = builtin_input(images["g16"]).inputs
    np.testing.assert_allclose(
        g16, grey, atol=0.003
    )  # 8-bit L vs 16-bit G channel: one rounding step
    assert np.array_equal(grey[:, 0], grey[:, 2])


@pytest.mark.torch
def test_bad_inputs_leave_nothing(capsys, tmp_path, images):
    out = tmp_path / "maps.png"
    code, _, err = run(capsys, "maps", "builtin", images["corrupt"], "--layer", "conv1", "-o", out)
    assert code == EXIT_USAGE and "corrupt or truncated" in one_error_line(err)
    code, _, err = run(
        capsys, "maps", "builtin", tmp_path / "none.jpg", "--layer", "conv1", "-o", out
    )
    assert code == EXIT_USAGE and "Image file not found" in one_error_line(err)
    code, _, err = run(capsys, "maps", "builtin", images["rgb"], "--layer", "conv9", "-o", out)
    line = one_error_line(err)
    assert code == EXIT_USAGE and "No layer named 'conv9'" in line and "'conv3'" in line
    assert "multiviz layers MODEL" in line
    assert not out.exists()

    # an existing output is left as it was when the command fails
    out.write_bytes(b"old")
    code, _, _ = run(capsys, "maps", "builtin", images["rgb"], "--layer", "nope", "-o", out)
    assert code == EXIT_USAGE and out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.png"]  # no temporary file left


@pytest.mark.torch
def test_unexpected_failures_exit_1_and_debug_shows_the_traceback(
    capsys, tmp_path, images, monkeypatch
):
    import multiviz as mv

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA ran out of hamsters")

    monkeypatch.setattr(mv, "capture", broken)
    argv = ("maps", "builtin", images["rgb"], "--layer", "conv1", "-o", tmp_path / "m.png")
    code, _, err = run(capsys, *argv)
    line = one_error_line(err)
    assert (
        code == EXIT_FAILURE
        and "RuntimeError: CUDA ran out of hamsters" in line
        and "--debug" in line
    )
    code, _, err = run(capsys, *argv, "--debug")
    assert code == EXIT_FAILURE and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1] == line
    assert not (tmp_path / "m.png").exists()


# --------------------------------------------------------------------------- saved PyTorch files


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory) -> dict[str, Path]:
    import torch
    import torchvision

    import multiviz as mv

    folder = tmp_path_factory.mktemp("torch-files")
    model = mv.builtin_model("torch")
    files = {
        "pt2": folder / "builtin.pt2",
        "script": folder / "builtin_script.pt",
        "state": folder / "builtin_state.pth",
        "r18": folder / "resnet18.pth",
        "whole": folder / "whole.pt",
    }
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(files["pt2"]))
    torch.jit.script(model).save(str(files["script"]))
    torch.save(model.state_dict(), files["state"])
    torch.save(model, files["whole"])
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), files["r18"])
    return files


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still supported
def test_saved_torch_files(capsys, tmp_path, images, torch_files):
    import multiviz as mv

    model = mv.builtin_model("torch")
    want = mv.capture(model, builtin_input(images["rgb"]).inputs, ["conv2"])["conv2"][0]
    expected = mv.feature_map_image(want, cmap="viridis")
    for kind, extra in (("pt2", ()), ("state", ("--arch", "builtin"))):
        out = tmp_path / f"{kind}.png"
        code, _, err = run(
            capsys, "maps", torch_files[kind], images["rgb"], "--layer", "conv2", "-o", out,
            "--cmap", "viridis", "--bare", *extra,
        )  # fmt: skip
        assert code == EXIT_OK, err
        strided_equal(read_png(out), expected)

    # the exported program fixes its input at 64x64: another size is refused before running
    code, _, err = run(
        capsys,
        "maps",
        torch_files["pt2"],
        images["rgb"],
        "--layer",
        "conv2",
        "--size",
        "32",
        "-o",
        tmp_path / "x.png",
    )
    line = one_error_line(err)
    assert code == EXIT_USAGE and "takes (N, 3, 64, 64)" in line and "--size 64x64" in line

    # TorchScript: its layers are listed, but cannot be hooked
    code, out, _ = run(capsys, "layers", torch_files["script"])
    assert code == EXIT_OK and "conv1" in out
    code, _, err = run(
        capsys, "cam", torch_files["script"], images["rgb"], "-o", tmp_path / "x.png"
    )
    assert (
        code == EXIT_USAGE
        and "TorchScript archive" in one_error_line(err)
        and "torch.export" in err
    )

    # a state dict needs --arch; a whole pickled model needs --unsafe-load
    code, _, err = run(capsys, "layers", torch_files["state"])
    assert code == EXIT_USAGE and "--arch" in one_error_line(err)
    code, _, err = run(capsys, "layers", torch_files["whole"])
    assert code == EXIT_USAGE and "--unsafe-load" in one_error_line(err)
    code, out, _ = run(capsys, "layers", torch_files["whole"], "--unsafe-load", "--kind", "conv")
    assert code == EXIT_OK and "conv3" in out
    assert not list(tmp_path.glob("x*.png"))


@pytest.mark.torch
def test_torchvision_with_local_weights(capsys, tmp_path, images, torch_files):
    import torchvision

    import multiviz as mv

    out = tmp_path / "r18.png"
    for argv in (
        ("torchvision:resnet18", "--weights", torch_files["r18"]),
        (torch_files["r18"], "--arch", "torchvision:resnet18"),
    ):
        code, _, err = run(
            capsys,
            "maps",
            *argv,
            images["rgb"],
            "--layer",
            "layer1.0.conv1",
            "--size",
            "64",
            "--cmap",
            "viridis",
            "--bare",
            "-o",
            out,
        )
        assert code == EXIT_OK, err
    model = torchvision.models.resnet18(weights=None)
    import torch

    model.load_state_dict(torch.load(torch_files["r18"], weights_only=True))
    from multiviz.sources.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_images

    prep = Preprocess(size=(64, 64), resize_shorter=73, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    acts = mv.capture(model.eval(), load_images(images["rgb"], prep).inputs, ["layer1.0.conv1"])
    strided_equal(read_png(out), mv.feature_map_image(acts["layer1.0.conv1"][0], cmap="viridis"))


@pytest.mark.torch
def test_console_script():
    script = Path(sys.executable).with_name("multiviz")
    assert script.exists(), "the package is not installed with its console script"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [str(script), "layers", "builtin", "--framework", "torch", "--kind", "conv"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "3 layers, 23,584 parameters (builtin (torch))"
    done = subprocess.run(
        [str(script), "maps", "missing.pt2", "photo.jpg", "--layer", "conv1"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("multiviz: error: Model file not found: 'missing.pt2'")
    lines = done.stderr.strip().splitlines()  # the error, then its one hint line (DESIGN.md)
    assert len(lines) == 2 and lines[1].startswith("hint: a model is one of")


# --------------------------------------------------------------------------- Keras


@pytest.mark.keras
def test_keras_builtin_and_saved_files(capsys, tmp_path, images):
    import multiviz as mv

    code, out, _ = run(capsys, "layers", "builtin", "--framework", "keras", "--kind", "conv")
    assert code == EXIT_OK and "Conv2D" in out
    model = mv.builtin_model("keras")
    batch = builtin_input(images["rgb"], "channels_last")
    expected = mv.feature_map_image(
        mv.capture(model, batch.inputs, ["conv2"])["conv2"][0], cmap="viridis"
    )
    out = tmp_path / "k.png"
    code, _, err = run(
        capsys,
        "maps",
        "builtin",
        "--framework",
        "keras",
        images["rgb"],
        "--layer",
        "conv2",
        "--cmap",
        "viridis",
        "--bare",
        "-o",
        out,
    )
    assert code == EXIT_OK, err
    strided_equal(read_png(out), expected)

    for suffix in (".keras", ".h5"):
        path = tmp_path / f"builtin{suffix}"
        model.save(path)
        # a saved file's input size is free: the built-in 64x64 must be asked for
        code, _, err = run(
            capsys, "maps", path, images["rgb"], "--layer", "conv2", "--size", "64", "-o", out,
            "--cmap", "viridis", "--bare",
        )  # fmt: skip
        assert code == EXIT_OK, err
        strided_equal(read_png(out), expected)

    code, _, err = run(
        capsys, "cam", "builtin", "--framework", "keras", images["rgb"], "-o", tmp_path / "c.png"
    )
    assert code == EXIT_OK, err
    code, _, err = run(
        capsys,
        "report",
        "builtin",
        "--framework",
        "keras",
        images["rgb"],
        "-o",
        tmp_path / "r.html",
    )
    assert code == EXIT_OK, err
    assert 'id="layer-conv3"' in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.mark.keras
def test_keras_shape_mismatch(capsys, tmp_path, images):
    import keras

    inputs = keras.Input((40, 48, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, name="conv")(inputs))
    path = tmp_path / "small.keras"
    model.save(path)
    code, _, err = run(
        capsys,
        "maps",
        path,
        images["rgb"],
        "--layer",
        "conv",
        "--size",
        "64",
        "-o",
        tmp_path / "x.png",
    )
    line = one_error_line(err)
    assert code == EXIT_USAGE and "takes (N, 40, 48, 3)" in line and "--size 40x48" in line
    code, _, _ = run(
        capsys, "maps", path, images["rgb"], "--layer", "conv", "-o", tmp_path / "y.png"
    )
    assert code == EXIT_OK and read_png(tmp_path / "y.png").size
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- both: compare


@pytest.mark.both
def test_compare(capsys, tmp_path, images, torch_files):
    import multiviz as mv

    code, out, _ = run(capsys, "compare", "builtin", "--json", tmp_path / "parity.json")
    assert code == EXIT_OK and "10 PASS, 0 FAIL" in out
    assert json.loads((tmp_path / "parity.json").read_text())["passed"] is True

    keras_file = tmp_path / "builtin.keras"
    mv.builtin_model("keras").save(keras_file)
    code, out, _ = run(capsys, "compare", keras_file, torch_files["pt2"], images["rgb"])
    assert code == EXIT_OK and "0 FAIL" in out

    random_file = tmp_path / "random.keras"
    mv.builtin_model("keras", weights=None).save(random_file)
    code, out, err = run(capsys, "compare", torch_files["pt2"], random_file, images["rgb"])
    assert code == EXIT_DIFFERENT and "FAIL" in out
    assert "disagree beyond atol=0.0001" in one_error_line(err) and "first at layer" in err
    code, _, err = run(capsys, "compare", "builtin", "a", "b", "c")
    assert code == EXIT_USAGE and "MODEL_A MODEL_B IMAGE" in one_error_line(err)


@pytest.mark.both
def test_torch_and_keras_pictures_agree_within_one_colour_level(capsys, tmp_path, images):
    """The same weights give the same PNGs: titles, labels, colorbars and colours."""
    from multiviz.render.colors import lookup_table

    def one_step(cmap: str) -> int:  # the largest jump between neighbouring colormap entries
        return int(np.abs(np.diff(lookup_table(cmap).astype(int), axis=0)).max())

    for argv, cmap in (
        (("maps", "--layer", "conv2"), "RdBu_r"),
        (("maps", "--layer", "relu3", "--cmap", "viridis"), "viridis"),
        (("cam", "--method", "grad-cam", "--method", "saliency", "--steps", "4"), "turbo"),
        (("stats",), None),
    ):
        pngs = []
        for fw in ("torch", "keras"):
            out = tmp_path / f"{argv[0]}-{fw}.png"
            code, _, err = run(
                capsys, argv[0], "builtin", images["rgb"], *argv[1:], "--framework", fw, "-o", out
            )
            assert code == EXIT_OK, err
            pngs.append(read_png(out).astype(int))
        assert pngs[0].shape == pngs[1].shape, argv
        diff = np.abs(pngs[0] - pngs[1])
        if cmap is None:  # statistics: the same figure up to anti-aliasing of a few markers
            assert (diff.max(axis=-1) > 8).mean() < 0.002, argv
        else:
            assert diff.max() <= one_step(cmap), (argv, diff.max())
