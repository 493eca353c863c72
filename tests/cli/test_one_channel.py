"""The command line and one-channel models (issue 12, kind 9).

A "grey" copy of the built-in CNN takes one channel: its ``conv1`` kernel is
the built-in's summed over R, G, B, so on a greyscale image it computes what
the built-in computes on that image copied into three channels (checked
first: the right values below rest on it). Saved as ``.pt2``
(``torch.export``) and ``.keras``, it goes through ``multiviz cam`` and
``multiviz maps``. Right values: the public API on luminance computed here
from the PNG's pixels with ITU-R BT.601's weights (0.299 R + 0.587 G +
0.114 B), and, for a one-channel ``.npy``, on the array itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiviz.cli import EXIT_OK, EXIT_USAGE
from tests.cli.test_cli import one_error_line, read_png, run, strided_equal

SIZE = 64


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of ``(H, W, 3)`` in float64, as ``(H, W)`` float32."""
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return y.astype(np.float32)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Pictures equal up to one level of 8 bits (float32 rounding of the luminance)."""
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A colour PNG, a (H, W) uint8 .npy whose values no RGB file could give, at 64x64."""
    import multiviz as mv

    folder = tmp_path_factory.mktemp("one-channel")
    rgb = np.rint(np.moveaxis(mv.sample_image(seed=3, size=(SIZE, SIZE)), 0, -1) * 255)
    colour = rgb.astype(np.uint8)
    colour[..., 0] = 255 - colour[..., 0]  # R, G and B differ: luminance is not any channel
    paths = {"colour": folder / "colour.png", "npy": folder / "grey.npy"}
    Image.fromarray(colour).save(paths["colour"])
    grey = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE)).astype(np.uint8)
    np.save(paths["npy"], grey)
    return paths


def _grey_weights() -> dict[str, np.ndarray]:
    from multiviz.sources.builtin import builtin_weights

    w = dict(builtin_weights())
    w["conv1.weight"] = w["conv1.weight"].sum(axis=1, keepdims=True)
    return w


def _torch_grey():
    import torch

    import multiviz as mv

    model = mv.builtin_model("torch")
    model.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
    w = _grey_weights()
    model.load_state_dict({k: torch.from_numpy(w[k]) for k in model.state_dict()})
    return model.eval()


def _keras_grey():
    import keras

    inputs = keras.Input((None, None, 1), name="image")
    x = inputs
    for k, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{k}")(x)
        x = keras.layers.ReLU(name=f"relu{k}")(x)
        if k < 3:
            x = keras.layers.MaxPooling2D(2, 2, name=f"pool{k}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    w = _grey_weights()
    for k in (1, 2, 3):
        kernel = np.transpose(w[f"conv{k}.weight"], (2, 3, 1, 0))
        model.get_layer(f"conv{k}").set_weights([kernel, w[f"conv{k}.bias"]])
    model.get_layer("fc").set_weights([w["fc.weight"].T, w["fc.bias"]])
    return model


def _check(capsys, tmp_path, path, model, inputs, channels_last: bool) -> None:
    import multiviz as mv

    def batch(y: np.ndarray) -> np.ndarray:
        return y[None, :, :, None] if channels_last else y[None, None]

    y_colour = batch(_luma(_pixels(inputs["colour"])))
    y_npy = batch(np.load(inputs["npy"]).astype(np.float32) / 255.0)
    size = ("--size", str(SIZE))

    # maps: the colour PNG becomes luminance, the one-channel .npy is fed as it is
    for source, y in ((inputs["colour"], y_colour), (inputs["npy"], y_npy)):
        out = tmp_path / "maps.png"
        code, _, err = run(
            capsys, "maps", path, source, "--layer", "conv2", "--cmap", "viridis", "--bare",
            "-o", out, *size,
        )  # fmt: skip
        assert code == EXIT_OK, err
        want = mv.feature_map_image(mv.capture(model, y, ["conv2"])["conv2"][0], cmap="viridis")
        if source == inputs["npy"]:
            strided_equal(read_png(out), want)  # the same numbers, exactly
        else:
            got = read_png(out)
            k = got.shape[1] // want.shape[1]
            _close(got[::k, ::k], want)

    # cam: Grad-CAM of luminance, drawn over the colour image the user gave
    out = tmp_path / "cam.png"
    code, stdout, err = run(capsys, "cam", path, inputs["colour"], "--bare", "-o", out, *size)
    assert code == EXIT_OK, err
    top = int(mv.forward(model, y_colour)[0].argmax())
    assert f"explained class {top}" in stdout
    heat = mv.grad_cam(model, y_colour, "conv3", top)[0]
    display = np.asarray(Image.open(inputs["colour"]).convert("RGB"))
    got = read_png(out)
    k = got.shape[1] // SIZE
    _close(got[::k, ::k], mv.overlay_image(display, heat))

    # one value of --mean / --std serves one channel; three different ones cannot
    code, _, err = run(
        capsys, "maps", path, inputs["colour"], "--layer", "conv1", "--mean", "0.1,0.2,0.3",
        "-o", tmp_path / "x.png", *size,
    )  # fmt: skip
    line = one_error_line(err)
    assert code == EXIT_USAGE and "--mean" in line and "one value" in line
    assert not (tmp_path / "x.png").exists()
    code, _, err = run(
        capsys, "maps", path, inputs["npy"], "--layer", "conv1", "--mean", "0.5", "--std", "0.25",
        "--cmap", "viridis", "--bare", "-o", out, *size,
    )  # fmt: skip
    assert code == EXIT_OK, err
    want = mv.capture(model, (y_npy - 0.5) / 0.25, ["conv1"])["conv1"][0]
    strided_equal(read_png(out), mv.feature_map_image(want, cmap="viridis"))


@pytest.mark.torch
def test_a_one_channel_pt2_gets_luminance(capsys, tmp_path, inputs):
    import torch

    import multiviz as mv

    model = _torch_grey()
    # the grey model on g is the built-in on (g, g, g): the model is what the test says
    g = np.load(inputs["npy"]).astype(np.float32)[None, None] / 255.0
    np.testing.assert_allclose(
        mv.forward(model, g), mv.forward(mv.builtin_model("torch"), np.repeat(g, 3, 1)), atol=1e-4
    )
    path = tmp_path / "grey.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, SIZE, SIZE),)), str(path))
    _check(capsys, tmp_path, path, model, inputs, channels_last=False)


@pytest.mark.keras
def test_a_one_channel_keras_file_gets_luminance(capsys, tmp_path, inputs):
    model = _keras_grey()
    path = tmp_path / "grey.keras"
    model.save(path)
    _check(capsys, tmp_path, path, model, inputs, channels_last=True)


def test_help_says_what_conversion_happens(capsys):
    code, out, _ = run(capsys, "--help")
    text = " ".join(out.split())
    assert code == EXIT_OK
    assert "luminance (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B)" in text
    assert "one-channel .npy is kept as it is" in text
