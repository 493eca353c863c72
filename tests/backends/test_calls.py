"""Calls that did not happen (issue 12, kind 4), once per framework.

A subclassed model (PyTorch ``nn.Module``, Keras ``keras.Model`` subclass, the
same weights: ``tests/twins.py``) calls one layer twice, three times once an
attribute switches on an extra call, and owns a layer it never runs. The
right values are the same network computed by hand in NumPy (1x1
convolutions are matrix products; the head is linear, so Grad-CAM's weights
are a closed form).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.errors import LayerNotFoundError
from tests.frameworks import keras_backend_is
from tests.twins import calls_expected, calls_net, calls_weights, native


@pytest.fixture
def fw(framework) -> str:
    """The framework's name, once per framework (the ``framework`` fixture's runs)."""
    return framework.name


def _x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 5, 6)).astype(np.float32)


def test_every_call_that_happened_and_an_error_for_one_that_did_not(fw):
    w = calls_weights()
    net, x = calls_net(fw, w), _x()
    want = calls_expected(x, w, calls=2)
    acts = mv.capture(net, native(fw, x), ["enc", "head"])
    assert list(acts) == ["enc", "enc#1", "head"]
    for key in acts:
        np.testing.assert_allclose(acts[key], want[key], rtol=1e-5, atol=1e-5)
    with pytest.raises(LayerNotFoundError, match=r"'enc' ran 2 times") as info:
        mv.capture(net, native(fw, x), ["enc#2"])
    first = str(info.value).splitlines()[0]
    assert len(first) <= 200 and "'enc#2'" in first
    # a layer the pass never runs: an error when named, left out of a glob or a kind
    with pytest.raises(LayerNotFoundError, match=r"'branch' did not run .*0 calls"):
        mv.capture(net, native(fw, x), ["branch"])
    assert "branch" not in mv.capture(net, native(fw, x))
    assert list(mv.capture(net, native(fw, x), kind="conv")) == ["stem", "enc", "enc#1"]


def test_an_attribute_that_switches_on_a_call_is_never_dropped(fw):
    w = calls_weights()
    net, x = calls_net(fw, w), _x()
    for _ in range(2):  # the second capture runs with remembered call counts
        assert list(mv.capture(net, native(fw, x), ["enc"])) == ["enc", "enc#1"]
    net.extra = True
    acts = mv.capture(net, native(fw, x), ["enc"])
    assert list(acts) == ["enc", "enc#1", "enc#2"]
    np.testing.assert_allclose(
        acts["enc#2"], calls_expected(x, w, 3)["enc#2"], rtol=1e-5, atol=1e-5
    )
    net.extra = False
    assert list(mv.capture(net, native(fw, x), ["enc"])) == ["enc", "enc#1"]


@pytest.mark.parametrize("layer", ["enc", "enc#1", "enc#2"])
def test_grad_cam_uses_the_call_it_is_given(fw, layer):
    keras_backend_is(
        fw,
        "tensorflow",
        "torch",
        why="layer gradients of a subclassed model are refused on JAX (docs/keras-backends.md)",
    )
    w = calls_weights()
    net, x = calls_net(fw, w), _x()
    net.extra = True  # enc runs three times: h1, h2, h3; score = head(mean h3)[c]
    want = calls_expected(x, w, 3)
    cls = np.array([1, 0])
    k = {"enc": 0, "enc#1": 1, "enc#2": 2}[layer]
    # d score / d h_k at each pixel = (W_enc^T)^(2 - k) head[c] / (H W): the mean over pixels
    weights = np.stack(
        [
            np.linalg.matrix_power(w["enc"][:, :, 0, 0].T.astype(np.float64), 2 - k) @ w["head"][c]
            for c in cls
        ]
    ) / (5 * 6)
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, want[layer]), 0)
    got = mv.grad_cam(net, native(fw, x), layer, cls, normalize=False)
    np.testing.assert_allclose(got, cam, rtol=1e-4, atol=1e-5)
    with pytest.raises(LayerNotFoundError, match=r"'enc' ran 3 times"):
        mv.grad_cam(net, native(fw, x), "enc#3", cls)


@pytest.mark.torch
def test_a_block_without_work_in_shufflenet_is_not_an_empty_capture():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    # stride-1 blocks keep an empty branch1 (an nn.Sequential() their forward never calls)
    with pytest.raises(LayerNotFoundError, match=r"'stage2.1.branch1' did not run"):
        mv.capture(net, x, ["stage2.1.branch1"])
    acts = mv.capture(net, x, "stage2.*.branch1")
    assert list(acts) == ["stage2.0.branch1"]  # the glob returns what ran
