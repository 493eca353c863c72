"""compare() on real PyTorch / Keras pairs: identical ports pass, bugs are pinpointed.

A torchvision ResNet-18 (random weights, BatchNorm running statistics
randomized so BatchNorm bugs show) is ported to Keras with
:mod:`multiviz.backends.keras.resnet18`; the port passes at 1e-4 on every layer,
and each seeded porting bug is reported at exactly the layer that has it.
Input ``(1, 3, 32, 40)`` keeps it fast and keeps H != W (CKA uses every spatial
position as an example, so one sample is enough).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import multiviz as mv

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
keras = pytest.importorskip("keras")
from multiviz.backends.keras.resnet18 import resnet18  # noqa: E402
from tests import builtin_f64  # noqa: E402  the built-in CNN in float64 NumPy

pytestmark = pytest.mark.both

SIZE = (32, 40)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def torch_resnet():
    torch.manual_seed(0)
    return randomize_bn(torchvision.models.resnet18(weights=None, num_classes=10))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).normal(size=(1, 3, *SIZE)).astype(np.float32)


def port(torch_model, **bugs):
    km = resnet18(10, (*SIZE, 3), **bugs)
    mv.transfer_weights(torch_model, km, check_config="bn_epsilon" not in bugs)
    return km


def test_builtin_model_identical_port_passes_every_layer():
    tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")
    mv.transfer_weights(tm, km)
    x = np.random.default_rng(1).random((2, 3, 24, 20)).astype(np.float32)
    report = mv.compare(tm, km, x, atol=1e-4, rtol=1e-4)
    assert report.strategy == "names" and not report.unpaired
    assert [r.name for r in report] == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "gap", "fc",
    ]  # fmt: skip
    # DESIGN.md: activations agree to 1e-5 relative to the layer's scale. conv3
    # reaches ~300, where float32 sums differ by ~1e-4 between frameworks (and
    # each differs as much from a float64 reference: rounding, not a divergence).
    reference = builtin_f64.forward(x)
    scale = {name: np.abs(value).max() for name, value in reference.items()}
    assert report.passed and all(r.max_abs <= 1e-5 * scale[r.name] for r in report)
    acts = mv.capture(tm, x)
    assert all(np.abs(acts[k] - reference[k]).max() <= 1e-5 * scale[k] for k in acts)
    assert all(r.cosine > 0.999999 and r.cka > 0.999999 for r in report)


def test_builtin_model_bias_bug_is_found_at_that_layer():
    tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")
    mv.transfer_weights(tm, km)
    kernel, bias = km.get_layer("conv2").get_weights()
    km.get_layer("conv2").set_weights([kernel, bias + 1e-3])
    x = np.random.default_rng(1).random((2, 3, 24, 20)).astype(np.float32)
    report = mv.compare(tm, km, (x, np.moveaxis(x, 1, -1)))  # native inputs
    assert report.first_divergence.name == "conv2"
    assert [r.passed for r in report][:3] == [True, True, True]


@pytest.mark.slow
def test_resnet18_port_passes_every_layer(torch_resnet, batch):
    report = mv.compare(torch_resnet, port(torch_resnet), batch, atol=1e-4, rtol=1e-4)
    assert report.strategy == "structure"
    assert len(report) == 60 and report.passed, str(report)
    pairs = {r.name: r.name_b for r in report}
    assert pairs["layer2.0.downsample.1"] == "conv3_block1_0_bn"
    assert pairs["layer2.0.relu#1"] == "conv3_block1_out"
    assert pairs["fc"] == "predictions"
    # everything Keras has on top is explained: paddings and residual adds
    assert {u.name.rsplit("_", 1)[-1] for u in report.unpaired} == {"pad", "add"}
    assert all(u.side == 1 for u in report.unpaired)
    assert json.loads(report.to_json())["passed"] is True


@pytest.mark.slow
def test_tf_same_padding_bug_is_pinpointed(torch_resnet, batch):
    km = port(torch_resnet, same_padding=["conv3_block1_1_conv"])
    report = mv.compare(torch_resnet, km, batch)
    first = report.first_divergence
    assert first.name == "layer2.0.conv1" and first.name_b == "conv3_block1_1_conv"
    assert all(r.passed for r in report.rows[: first.index])
    assert first.max_abs > 1e-2 and first.shape == first.shape_b  # same shape, shifted values
    fig = mv.plot_comparison(report)
    assert "layer2.0.conv1" in fig.get_suptitle()


@pytest.mark.slow
def test_batchnorm_epsilon_bug_is_pinpointed(torch_resnet, batch):
    with pytest.raises(mv.MultivizError, match="epsilon differs"):
        mv.transfer_weights(
            torch_resnet, resnet18(10, (*SIZE, 3), bn_epsilon={"conv4_block1_2_bn": 1e-3})
        )
    km = port(torch_resnet, bn_epsilon={"conv4_block1_2_bn": 1e-3})
    report = mv.compare(torch_resnet, km, batch)
    assert report.first_divergence.name == "layer3.0.bn2"
    assert report["layer3.0.conv2"].passed  # the layer feeding it is still fine


def test_flatten_dense_model_passes():
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 5, 6)
    ).eval()
    inp = keras.Input((5, 7, 3))
    y = keras.layers.Conv2D(4, 3)(inp)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Flatten()(y)
    km = keras.Model(inp, keras.layers.Dense(6)(y))
    mv.transfer_weights(tm, km)
    x = np.random.default_rng(2).normal(size=(2, 3, 5, 7)).astype(np.float32)
    report = mv.compare(tm, km, x)
    assert report.passed and len(report) == 4, str(report)
    assert any("channels-first order" in n for n in report.rows[2].notes)


def test_explicit_pairs_and_same_framework():
    tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")
    mv.transfer_weights(tm, km)
    x = np.random.default_rng(3).random((1, 3, 16, 12)).astype(np.float32)
    report = mv.compare(tm, km, x, pairs={"conv1": "conv1", "fc": "fc"})
    assert [r.name for r in report] == ["conv1", "fc"] and report.strategy == "explicit"
    other = mv.builtin_model("torch")
    with torch.no_grad():
        other.conv3.bias[0] += 0.5
    report = mv.compare(tm, other, x)  # torch vs torch works too
    assert report.labels == ("torch (a)", "torch (b)")
    assert report.first_divergence.name == "conv3"


def test_fused_keras_activation_is_noted():
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    inp = keras.Input((6, 5, 3))
    km = keras.Model(inp, keras.layers.Conv2D(4, 3, activation="relu", name="c")(inp))
    mv.transfer_weights(tm, km)
    x = np.random.default_rng(4).normal(size=(1, 3, 6, 5)).astype(np.float32)
    report = mv.compare(tm, km, x)
    row = report["c"]
    assert row.name == "0" and any("activation='relu' inside" in n for n in row.notes)
    assert not row.passed  # the Keras conv's output is already rectified
    assert [u.name for u in report.unpaired] == ["1"]  # the PyTorch ReLU has no twin
