"""Loading models from specs and saved files, safely.

Spec parsing and file sniffing are framework-free (no marker). Each loader is
checked against the model it was saved from: the loaded model must give the
same activations or outputs as the original, which is known independently.
No test downloads anything: the "no network" path is exercised by making the
download function fail.
"""

from __future__ import annotations

import urllib.error
import zipfile

import numpy as np
import pytest

from multiviz.errors import ModelLoadError, NoNetworkError, UnsafeFileError
from multiviz.sources.models import LoadedModel, load_model, parse_spec

# --------------------------------------------------------------------------- specs (no framework)


def test_parse_named_specs():
    assert parse_spec("builtin", "keras").kind == "builtin"
    assert parse_spec("builtin", "keras").framework == "keras"
    tv = parse_spec("torchvision:resnet18")
    assert (tv.kind, tv.framework, tv.name) == ("torchvision", "torch", "resnet18")
    ka = parse_spec("keras:MobileNetV2")
    assert (ka.kind, ka.framework, ka.name) == ("keras_app", "keras", "MobileNetV2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hub:resnet18", "Unknown model source 'hub'"),
        ("torchvision:", "names no model"),
        ("missing.pt", "Model file not found: 'missing.pt'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        parse_spec(spec)


def test_bad_framework_is_refused():
    with pytest.raises(ModelLoadError, match=r"\(--framework\) must be one of"):
        parse_spec("builtin", "jax")


def test_file_kinds_are_read_from_contents(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(ModelLoadError, match=r"extension '\.onnx' is not a model format.*\.keras"):
        parse_spec(str(onnx))
    with pytest.raises(ModelLoadError, match="is a folder"):
        parse_spec(str(tmp_path))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a model")
    with pytest.raises(ModelLoadError, match="not a PyTorch file"):
        parse_spec(str(junk))
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ModelLoadError, match="not one PyTorch wrote"):
        parse_spec(str(other_zip))
    pickle_like = tmp_path / "legacy.pt"
    pickle_like.write_bytes(b"\x80\x02}q\x00.")
    assert parse_spec(str(pickle_like)).kind == "torch_pickle"
    saved = tmp_path / "model.h5"
    saved.touch()
    assert parse_spec(str(saved)).kind == "keras_file"


def test_option_mismatches_are_refused(tmp_path):
    path = tmp_path / "m.keras"
    path.touch()
    with pytest.raises(ModelLoadError, match=r"`arch` \(--arch\) is only for a state-dict file"):
        load_model(str(path), arch="torchvision:resnet18")
    with pytest.raises(ModelLoadError, match=r"`weights` \(--weights\) is only for"):
        load_model(str(path), weights="none")
    with pytest.raises(ModelLoadError, match="Weights file not found"):
        load_model("torchvision:resnet18", weights=str(tmp_path / "nope.pth"))


# --------------------------------------------------------------------------- PyTorch


def _x(size=32, seed=0):
    return np.random.default_rng(seed).random((2, 3, size, size + 8), dtype=np.float32)


@pytest.fixture(scope="module")
def resnet():
    import torchvision

    return torchvision.models.resnet18(weights=None).eval()


@pytest.mark.torch
def test_state_dict_with_arch(tmp_path, resnet):
    import torch

    import multiviz as mv

    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet.state_dict().items()}}, path)
    with pytest.raises(ModelLoadError, match="--arch torchvision:NAME"):
        load_model(str(path))
    loaded = load_model(str(path), arch="torchvision:resnet18")
    assert isinstance(loaded, LoadedModel) and loaded.framework == "torch"
    assert loaded.preprocess.size == (224, 224) and loaded.preprocess.resize_shorter == 256
    assert loaded.class_names is not None and len(loaded.class_names) == 1000
    x = _x()
    np.testing.assert_array_equal(mv.forward(loaded.model, x), mv.forward(resnet, x))
    with pytest.raises(ModelLoadError, match=r"does not fit torchvision:resnet34 \(missing"):
        load_model(str(path), arch="torchvision:resnet34")
    with pytest.raises(ModelLoadError, match="--arch must be torchvision:NAME or builtin"):
        load_model(str(path), arch="keras:ResNet50")


@pytest.mark.torch
def test_torchvision_weights_path_and_no_network(tmp_path, resnet, monkeypatch):
    import torch
    import torch.hub

    import multiviz as mv

    path = tmp_path / "r18.pt"
    torch.save(resnet.state_dict(), path)
    loaded = load_model("torchvision:resnet18", weights=str(path))
    x = _x(seed=1)
    np.testing.assert_array_equal(mv.forward(loaded.model, x), mv.forward(resnet, x))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(NoNetworkError, match=r"no network.*--weights PATH"):
        load_model("torchvision:resnet18")
    with pytest.raises(ModelLoadError, match=r"no classification model 'resnet'.*resnet18"):
        load_model("torchvision:resnet", weights="none")


@pytest.mark.torch
def test_pickled_whole_model_needs_unsafe(tmp_path):
    import torch

    import multiviz as mv

    model = mv.builtin_model("torch")
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(UnsafeFileError, match="--unsafe-load"):
        load_model(str(path))
    loaded = load_model(str(path), unsafe=True)
    x = _x(seed=2)
    np.testing.assert_array_equal(mv.forward(loaded.model, x), mv.forward(model, x))


@pytest.mark.torch
def test_builtin_state_dict(tmp_path):
    import torch

    import multiviz as mv

    model = mv.builtin_model("torch")
    path = tmp_path / "builtin.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(str(path), arch="builtin")
    assert loaded.preprocess.size == (64, 64) and loaded.class_names[3] == "cross"
    x = _x(seed=3)
    np.testing.assert_array_equal(mv.forward(loaded.model, x), mv.forward(model, x))


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still supported
def test_torchscript_loads_for_its_output_only(tmp_path):
    import torch

    import multiviz as mv

    model = mv.builtin_model("torch")
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    assert parse_spec(str(path)).kind == "torchscript"
    loaded = load_model(str(path))
    assert not loaded.capturable and "torch.export" in loaded.notes[0]
    x = _x(seed=4)
    np.testing.assert_allclose(mv.forward(loaded.model, x), mv.forward(model, x), atol=1e-6)


@pytest.mark.torch
def test_exported_program_keeps_its_layers(tmp_path):
    import torch

    import multiviz as mv

    model = mv.builtin_model("torch")
    x = _x(size=24, seed=5)
    path = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(path))
    loaded = load_model(str(path))
    assert loaded.input_shape == (3, 24, 32) and loaded.preprocess.size == (24, 32)
    infos = {i.name: i for i in mv.layers(loaded.model)}
    assert [n for n, i in infos.items() if i.kind == "conv"] == ["conv1", "conv2", "conv3"]
    assert infos["conv2"].type == "Conv2d"
    got = mv.capture(loaded.model, x, ["conv2", "relu3"])
    want = mv.capture(model, x, ["conv2", "relu3"])
    for name in ("conv2", "relu3"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)


# --------------------------------------------------------------------------- Keras


@pytest.mark.keras
def test_keras_files_and_safe_mode(tmp_path):
    import keras

    import multiviz as mv

    model = mv.builtin_model("keras")
    x = np.moveaxis(_x(seed=6), 1, -1)
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"builtin{suffix}"
        model.save(path)
        loaded = load_model(str(path))
        assert loaded.framework == "keras" and loaded.preprocess.layout == "channels_last"
        np.testing.assert_allclose(mv.forward(loaded.model, x), mv.forward(model, x), atol=1e-6)

    inputs = keras.Input((8, 10, 3))
    lam = keras.Model(
        inputs, keras.layers.Lambda(lambda t: t * 2)(keras.layers.Conv2D(4, 3)(inputs))
    )
    path = tmp_path / "lambda.keras"
    lam.save(path)
    with pytest.raises(UnsafeFileError, match=r"Lambda layer.*--unsafe-load"):
        load_model(str(path))
    loaded = load_model(str(path), unsafe=True)
    assert loaded.input_shape == (8, 10, 3) and loaded.preprocess.size == (8, 10)


@pytest.mark.keras
def test_keras_application_with_local_weights(tmp_path, monkeypatch):
    import keras
    from keras.applications import mobilenet

    import multiviz as mv

    original = keras.applications.MobileNet(weights=None)
    path = tmp_path / "mobilenet.weights.h5"
    original.save_weights(path)
    loaded = load_model("keras:mobilenet", weights=str(path))
    assert loaded.preprocess.size == (224, 224) and loaded.preprocess.layout == "channels_last"
    # the application's own preprocess_input, applied to 0..255 values
    img = np.random.default_rng(7).random((224, 224, 3), dtype=np.float32)
    from multiviz.sources.images import preprocess_images

    batch = preprocess_images([img], loaded.preprocess)
    np.testing.assert_allclose(
        batch.inputs, mobilenet.preprocess_input(img[None] * 255.0), atol=1e-5
    )
    np.testing.assert_allclose(
        mv.forward(loaded.model, batch.inputs), mv.forward(original, batch.inputs), atol=1e-5
    )

    def offline(*args, **kwargs):
        raise Exception(
            "URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known"
        )

    monkeypatch.setattr("keras.src.applications.mobilenet.file_utils.get_file", offline)
    with pytest.raises(NoNetworkError, match=r"no network.*--weights PATH"):
        load_model("keras:MobileNet")
    with pytest.raises(ModelLoadError, match=r"no model 'MobileNetV9'.*MobileNetV2"):
        load_model("keras:MobileNetV9")
