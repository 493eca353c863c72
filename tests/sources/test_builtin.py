"""The built-in CNN: one weights file, the same network in PyTorch and Keras.

Core tests (no marker) read the weights file with NumPy alone; framework tests
are marked per test. The cross-framework tests compare the two builds of the
network through the public capture API, on inputs whose height and width
differ and are odd after pooling, so a transposed axis or a different pooling
floor cannot hide.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import multiviz as mv
from multiviz.errors import BackendUnavailableError, WeightsFileError
from multiviz.sources.builtin import (
    BUILTIN_CLASSES,
    BUILTIN_INPUT_SIZE,
    BUILTIN_WEIGHTS_PATH,
    WEIGHT_SHAPES,
    builtin_metadata,
    builtin_model,
    builtin_weights,
)
from multiviz.sources.shapes_dataset import ShapesData

LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "gap", "fc"]


@pytest.fixture(scope="module")
def fresh() -> ShapesData:
    # seed 100: none of the training (1), held-out (2) or validation (3) images
    return mv.shapes_dataset(200, size=BUILTIN_INPUT_SIZE, seed=100)


@pytest.fixture(scope="module")
def odd_input() -> np.ndarray:
    # 36 x 42 -> pool1 18 x 21 -> pool2 9 x 10: H != W, and one side is odd after pooling
    return np.random.default_rng(0).uniform(0, 1, (2, 3, 36, 42)).astype(np.float32)


# --------------------------------------------------------------------------- core: no framework


def test_weights_file_has_every_array_in_torch_layout() -> None:
    weights = builtin_weights()
    assert list(weights) == list(WEIGHT_SHAPES)
    for name, array in weights.items():
        assert array.shape == WEIGHT_SHAPES[name] and array.dtype == np.float32, name
        assert np.isfinite(array).all() and np.abs(array).max() > 0, name
    # the file is plain arrays: it opens without pickle
    with np.load(BUILTIN_WEIGHTS_PATH, allow_pickle=False) as npz:
        assert set(npz.files) == {*WEIGHT_SHAPES, "meta"}
    assert BUILTIN_WEIGHTS_PATH.stat().st_size < 200_000


def test_metadata_records_accuracy_and_training() -> None:
    meta = builtin_metadata()
    assert meta["model"] == "multiviz built-in CNN"
    assert meta["heldout_accuracy"] >= 0.95
    assert meta["grad_cam_conv3_peak_in_box"] >= 0.9
    assert meta["train_seed"] != meta["heldout_seed"]
    assert json.loads(json.dumps(meta)) == meta
    assert BUILTIN_CLASSES == ("circle", "square", "triangle", "cross")


def test_unknown_framework_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\['keras', 'torch'\]. Received: framework='jax'"):
        builtin_model("jax")


def test_missing_weights_file(tmp_path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(WeightsFileError, match=r"not found: .*nope\.npz"):
        builtin_model("torch", weights=path)
    with pytest.raises(WeightsFileError, match="not found"):
        builtin_weights(str(path))


def test_weights_file_that_does_not_fit(tmp_path) -> None:
    good = builtin_weights()
    short = dict(good)
    del short["fc.bias"]
    np.savez(tmp_path / "short.npz", **short)
    with pytest.raises(WeightsFileError, match=r"lacks \['fc.bias'\]"):
        builtin_weights(tmp_path / "short.npz")

    wrong = {**good, "conv2.weight": good["conv2.weight"].transpose(2, 3, 1, 0)}  # HWIO, not OIHW
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(WeightsFileError, match=r"conv2.weight.*\(3, 3, 16, 32\).*\(32, 16, 3, 3\)"):
        builtin_weights(tmp_path / "wrong.npz")

    pickled = {**good, "fc.bias": np.array([object()] * 4)}
    np.savez(tmp_path / "pickled.npz", **pickled)
    with pytest.raises(WeightsFileError, match="not plain numbers"):
        builtin_weights(tmp_path / "pickled.npz")

    np.save(tmp_path / "one.npy", good["fc.bias"])
    with pytest.raises(WeightsFileError, match="one array"):
        builtin_weights(tmp_path / "one.npy")


@pytest.mark.parametrize(
    ("framework", "blocked", "extra"),
    [
        ("torch", "torch", "torch"),
        ("keras", "keras", "tensorflow"),
    ],
)
def test_missing_framework_names_the_install_command(monkeypatch, framework, blocked, extra):
    monkeypatch.setitem(sys.modules, blocked, None)  # `import <blocked>` now raises ImportError
    monkeypatch.delitem(sys.modules, f"multiviz.backends.{framework}.builtin", raising=False)
    with pytest.raises(BackendUnavailableError, match=rf"pip install 'multiviz\[{extra}\]'"):
        builtin_model(framework)


def test_builtin_module_imports_no_framework() -> None:
    code = (
        "import sys, multiviz.sources.builtin as b, multiviz.sources.shapes_dataset as s; "
        "b.builtin_weights(); b.builtin_metadata(); s.sample_image(); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.torch
def test_torch_model_is_the_documented_network_in_eval_mode() -> None:
    model = builtin_model("torch")
    assert [name for name, _ in model.named_children()] == LAYERS
    assert not any(m.training for m in model.modules())
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    weights = builtin_weights()
    assert list(state) == list(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(state[name], array)

    random = builtin_model("torch", weights=None)
    assert not random.training
    assert not np.allclose(random.conv1.weight.detach().numpy(), weights["conv1.weight"])


@pytest.mark.torch
def test_torch_accuracy_on_fresh_images(fresh) -> None:
    logits = mv.forward(builtin_model("torch"), fresh.images)
    assert logits.shape == (200, len(BUILTIN_CLASSES))
    accuracy = (logits.argmax(axis=1) == fresh.labels).mean()
    assert accuracy >= 0.9, accuracy


@pytest.mark.torch
def test_torch_loads_weights_from_a_path(tmp_path, odd_input) -> None:
    weights = builtin_weights()
    weights["fc.bias"] = weights["fc.bias"] + np.array([0, 0, 0, 5.0], np.float32)
    np.savez(tmp_path / "shifted.npz", **weights)
    base = mv.forward(builtin_model("torch"), odd_input)
    shifted = mv.forward(builtin_model("torch", weights=tmp_path / "shifted.npz"), odd_input)
    np.testing.assert_allclose(shifted - base, [[0, 0, 0, 5.0]] * 2, atol=1e-5)


# --------------------------------------------------------------------------- Keras


@pytest.mark.keras
def test_keras_model_is_the_documented_network() -> None:
    model = builtin_model("keras")
    assert [layer.name for layer in model.layers[1:]] == LAYERS
    weights = builtin_weights()
    kernel, bias = model.get_layer("conv2").get_weights()
    np.testing.assert_array_equal(kernel, weights["conv2.weight"].transpose(2, 3, 1, 0))  # HWIO
    np.testing.assert_array_equal(bias, weights["conv2.bias"])
    np.testing.assert_array_equal(model.get_layer("fc").get_weights()[0], weights["fc.weight"].T)
    # any spatial size goes in, channels last
    assert model(np.zeros((2, 36, 42, 3), np.float32)).shape == (2, 4)


# --------------------------------------------------------------------------- both: parity


@pytest.fixture(scope="module")
def both_models():
    return builtin_model("torch"), builtin_model("keras")


@pytest.mark.both
def test_same_logits_in_torch_and_keras(both_models, fresh, odd_input) -> None:
    torch_model, keras_model = both_models
    for x in (fresh.images[:16], odd_input):
        a = mv.forward(torch_model, x)
        b = mv.forward(keras_model, mv.to_channels_last(x))
        # logits reach ~30, where one float32 step is 2e-6: 1e-5 plus 1e-6 relative
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
    assert np.abs(a).max() > 0.1  # not trivially equal


@pytest.mark.both
@pytest.mark.parametrize("which", ["shapes", "odd"])
def test_same_activations_for_every_layer(both_models, fresh, odd_input, which) -> None:
    torch_model, keras_model = both_models
    x = fresh.images[:4] if which == "shapes" else odd_input
    a = mv.capture(torch_model, x, LAYERS)
    b = mv.capture(keras_model, mv.to_channels_last(x), LAYERS)
    assert list(a) == list(b) == LAYERS
    for name in LAYERS:
        assert a[name].shape == b[name].shape, name
        scale = max(float(np.abs(a[name]).max()), 1.0)
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5 * scale, err_msg=name)
    assert a["conv3"].shape[1:] == ((64, 16, 16) if which == "shapes" else (64, 9, 10))


@pytest.mark.both
def test_random_weights_convert_the_same_way(tmp_path, odd_input) -> None:
    # not only the trained weights: any PyTorch-layout file gives the same network
    from multiviz.backends.torch.builtin import state_arrays

    np.savez(tmp_path / "random.npz", **state_arrays(builtin_model("torch", weights=None)))
    a = mv.capture(builtin_model("torch", tmp_path / "random.npz"), odd_input, ["relu2", "fc"])
    b = mv.capture(
        builtin_model("keras", tmp_path / "random.npz"),
        mv.to_channels_last(odd_input),
        ["relu2", "fc"],
    )
    for name in ("relu2", "fc"):
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5, err_msg=name)
