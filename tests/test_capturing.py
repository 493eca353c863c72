"""End to end through the public API on PyTorch: mv.layers, mv.capture, mv.forward.

torchvision ResNets (weights=None, so no download) at 64x64: every layer that
mv.layers lists can be captured in one call, and the values agree with each
other the way the architecture says they must.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import multiviz as mv  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(1, 3, 64, 48)).astype(np.float32)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def _check_every_layer_captured(model, x):
    tensors, modes = _state(model)
    infos = mv.layers(model, input_shape=x.shape[1:])
    names = [i.name for i in infos]
    acts = mv.capture(model, x, names)
    assert acts.framework == "torch"
    bases = {k.split("#")[0] for k in acts}
    assert bases == set(names), f"not captured: {set(names) - bases}"
    for info in infos:  # every shape agrees with the shape pass of mv.layers
        assert acts[info.name].shape == (1, *info.shape[1:]), info.name
        assert acts[info.name].dtype == np.float32
    assert acts["conv1"].shape == (1, 64, 32, 24)
    np.testing.assert_allclose(acts["fc"], mv.forward(model, x), rtol=1e-5, atol=1e-5)
    pooled = acts["layer4"].mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(acts["avgpool"], pooled, rtol=1e-5, atol=1e-6)
    assert (acts["bn1"] < 0).any()  # the stem's in-place ReLU did not rewrite the copy
    np.testing.assert_allclose(acts["relu"], np.maximum(acts["bn1"], 0))
    after_tensors, after_modes = _state(model)
    assert after_modes == modes
    assert all(torch.equal(after_tensors[k], v) for k, v in tensors.items())
    return acts


def test_resnet18_every_layer_in_one_call(x):
    model = torchvision.models.resnet18(weights=None).train()
    acts = _check_every_layer_captured(model, x)
    # a BasicBlock calls its ReLU twice: after bn1, and after the residual add
    np.testing.assert_allclose(acts["layer1.0.relu"], np.maximum(acts["layer1.0.bn1"], 0))
    np.testing.assert_array_equal(acts["layer1.0.relu#1"], acts["layer1.0"])
    residual = acts["layer1.0.bn2"] + acts["maxpool"]
    np.testing.assert_allclose(acts["layer1.0"], np.maximum(residual, 0), rtol=1e-5, atol=1e-5)
    assert acts["layer4"].shape == (1, 512, 2, 2)


def test_resnet50_every_layer_in_one_call(x):
    model = torchvision.models.resnet50(weights=None).eval()
    acts = _check_every_layer_captured(model, x)
    assert acts["layer4"].shape == (1, 2048, 2, 2)
    assert {"layer1.0.relu", "layer1.0.relu#1", "layer1.0.relu#2"} <= set(acts)
    np.testing.assert_array_equal(acts["layer1.0.relu#2"], acts["layer1.0"])


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18(weights=None, num_classes=7).eval()


def test_patterns_kinds_and_call_suffixes(resnet18, x):
    convs = mv.capture(resnet18, x, "layer1.*.conv1")
    assert list(convs) == ["layer1.0.conv1", "layer1.1.conv1"]
    assert [i.name for i in mv.layers(resnet18, kind="pool")] == ["maxpool", "avgpool"]
    pools = mv.capture(resnet18, x, kind="pool")
    assert list(pools) == ["maxpool", "avgpool"]
    second = mv.capture(resnet18, x, ["layer2.1.relu#1"])
    assert list(second) == ["layer2.1.relu#1"]
    np.testing.assert_array_equal(
        second["layer2.1.relu#1"], mv.capture(resnet18, x, "layer2.1")["layer2.1"]
    )


def test_unknown_layer_lists_closest_names(resnet18, x):
    with pytest.raises(mv.LayerNotFoundError, match=r"layer1\.0\.conv1"):
        mv.capture(resnet18, x, "layer1.0.cnv1")
    with pytest.raises(mv.LayerNotFoundError, match="Closest"):
        mv.capture(resnet18, x, "layr4")


def test_channels_last_input_through_the_public_api(resnet18, x):
    with pytest.raises(mv.InputShapeError, match=r"mv\.to_channels_first\(x\)"):
        mv.capture(resnet18, mv.to_channels_last(x), "conv1")
    with pytest.raises(mv.InputShapeError, match=r"x\[None\]"):
        mv.forward(resnet18, x[0])
    out = mv.capture(resnet18, mv.to_channels_first(mv.to_channels_last(x)), "conv1")
    assert out["conv1"].shape == (1, 64, 32, 24)


def test_capture_early_layer_again_is_the_same(resnet18, x):
    first = mv.capture(resnet18, x, ["conv1", "layer1.0.relu"])
    again = mv.capture(resnet18, x, ["conv1", "layer1.0.relu"])  # stops early now
    assert list(again) == list(first) == ["conv1", "layer1.0.relu", "layer1.0.relu#1"]
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
