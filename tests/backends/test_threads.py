"""Two threads, one model: every multiviz call is right, and the model is left as found.

The races are made certain, not left to chance: the models start with a
``Meet`` layer where the first two forward passes wait for each other (up to
half a second), so without the model's lock two calls would run their passes
at the same time, each with the other's hooks or patched layers in place.
With the lock the second call waits for the first, the first waits at
``Meet`` in vain, and both come back right. Right values are independent of
multiviz's threading: the NumPy forward pass on the same weights
(:func:`tests.frameworks.expected_1x1`), or the same call made alone first.
The models are a PyTorch ``nn.Sequential`` (hooks) and a subclassed Keras
model (no graph: chosen layers are reached by wrapping their ``call``, and
guided backpropagation swaps their ReLUs), the two ways a pass of one thread
could see another thread's changes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import multiviz as mv
from tests.frameworks import C, H, W, expected_1x1, hand_weights, keras_backend_is

WAIT = 0.5  # how long the first pass waits for a second one


class Meet:
    """The first two calls wait for each other (up to ``WAIT`` s); then one of them lags.

    ``lag`` delays the second arrival, ``first_lag`` the first, so the order in
    which the two passes go on is fixed.
    """

    def __init__(self, lag: float = 0.0, first_lag: float = 0.0) -> None:
        self.cond = threading.Condition()
        self.arrived = 0
        self.lag = lag
        self.first_lag = first_lag
        self.on = False

    def __call__(self) -> None:
        if not self.on:
            return
        with self.cond:
            self.arrived += 1
            me = self.arrived
            self.cond.notify_all()
            if me <= 2:
                self.cond.wait_for(lambda: self.arrived >= 2, timeout=WAIT)
        if me == 2 and self.lag:
            time.sleep(self.lag)
        if me == 1 and self.first_lag:
            time.sleep(self.first_lag)

    def entered(self, n: int = 1) -> None:
        """Block until ``n`` passes have reached the meeting point."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.arrived >= n, timeout=30)


def _torch_model(meet: Meet, norm: bool = False) -> Any:
    import torch
    from torch import nn

    from tests.frameworks import kit

    class MeetModule(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            meet()
            return x

    body = kit("torch").one_by_one(hand_weights())
    layers: list[tuple[str, nn.Module]] = [("meet", MeetModule())]
    if norm:
        layers.append(("bn", nn.BatchNorm2d(C)))
    layers += list(body.named_children())
    return nn.Sequential(OrderedDict(layers)).eval()


def _keras_model(meet: Meet) -> Any:
    import keras

    w = hand_weights()

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="net")
            self.conv = keras.layers.Conv2D(4, 1, name="conv")
            self.relu = keras.layers.ReLU(name="relu")
            self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
            self.fc = keras.layers.Dense(2, name="fc")

        def call(self, x: Any) -> Any:
            meet()
            return self.fc(self.gap(self.relu(self.conv(x))))

    model = Net()
    model(np.zeros((1, H, W, C), np.float32))
    model.conv.set_weights([np.transpose(w["conv"], (2, 3, 1, 0)), w["conv_b"]])
    model.fc.set_weights([w["fc"].T, w["fc_b"]])
    return model


def _model(kit: Any, meet: Meet) -> Any:
    return _torch_model(meet) if kit.name == "torch" else _keras_model(meet)


def _x(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, C, H, W)).astype(np.float32)


def _together(meet: Meet, first: Callable[[], Any], second: Callable[[], Any]) -> list[Any]:
    """Run ``first`` in a thread; once its pass reached ``meet``, ``second`` in another."""
    results: list[Any] = [None, None]
    errors: list[BaseException] = []

    def run(k: int, fn: Callable[[], Any]) -> None:
        try:
            results[k] = fn()
        except BaseException as err:  # the private stop exception too
            errors.append(err)

    meet.on = True
    a = threading.Thread(target=run, args=(0, first))
    a.start()
    meet.entered(1)
    b = threading.Thread(target=run, args=(1, second))
    b.start()
    a.join()
    b.join()
    meet.on = False
    if errors:
        raise errors[0]
    return results


def test_two_threads_capture_different_layers_of_one_model(framework):
    kit = framework
    meet = Meet()
    model = _model(kit, meet)
    w = hand_weights()
    xa, xb = _x(1), _x(2)
    mv.capture(model, kit.native(xa), ["relu"])  # early stop armed (PyTorch)
    mv.capture(model, kit.native(xa), ["fc"])
    before = kit.state(model)
    a, b = _together(
        meet,
        lambda: mv.capture(model, kit.native(xa), ["relu"]),
        lambda: mv.capture(model, kit.native(xb), ["fc"]),
    )
    assert list(a) == ["relu"] and list(b) == ["fc"]
    np.testing.assert_allclose(a["relu"], expected_1x1(xa, w)["relu"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b["fc"], expected_1x1(xb, w)["fc"], rtol=1e-5, atol=1e-5)
    kit.assert_same(before, kit.state(model))


def test_a_users_own_pass_in_another_thread_is_neither_recorded_nor_stopped(framework):
    kit = framework
    meet = Meet(first_lag=0.2)  # the user's pass goes on first, past multiviz's hooks
    model = _model(kit, meet)
    w = hand_weights()
    xa, xu = _x(3), _x(4)
    mv.capture(model, kit.native(xa), ["conv"])  # early stop armed (PyTorch)

    def users_own_pass() -> np.ndarray:
        if kit.name == "torch":
            with kit.torch.no_grad():
                return model(kit.torch.from_numpy(xu)).numpy()
        return kit.keras.ops.convert_to_numpy(model(kit.native(xu)))  # torch: needs detach

    acts, out = _together(meet, lambda: mv.capture(model, kit.native(xa), ["conv"]), users_own_pass)
    assert list(acts) == ["conv"]  # not the user's call as "conv#1"
    np.testing.assert_allclose(acts["conv"], expected_1x1(xa, w)["conv"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, expected_1x1(xu, w)["fc"], rtol=1e-5, atol=1e-5)  # not stopped


def test_grad_cam_and_capture_in_two_threads(framework):
    kit = framework
    keras_backend_is(
        kit, "tensorflow", "torch",
        why="layer gradients of a subclassed model are refused on JAX (docs/keras-backends.md)",
    )  # fmt: skip
    meet = Meet()
    model = _model(kit, meet)
    w = hand_weights()
    xa, xb = kit.native(_x(5)), _x(6)
    alone = mv.grad_cam(model, xa, "conv", target=1)
    mv.capture(model, kit.native(xb), ["relu"])  # early stop armed (PyTorch)
    before = kit.state(model)
    cam, acts = _together(
        meet,
        lambda: mv.grad_cam(model, xa, "conv", target=1),
        lambda: mv.capture(model, kit.native(xb), ["relu"]),
    )
    np.testing.assert_allclose(cam, alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["relu"], expected_1x1(xb, w)["relu"], rtol=1e-5, atol=1e-5)
    kit.assert_same(before, kit.state(model))


def test_guided_and_plain_gradients_in_two_threads(framework):
    kit = framework
    meet = Meet()
    model = _model(kit, meet)
    xa, xb = kit.native(_x(7)), kit.native(_x(8))
    guided_alone = mv.guided_backprop(model, xa, target=0)
    plain_alone = mv.saliency(model, xb, target=0)
    grad = kit.backend.gradients
    assert not np.allclose(  # guided and plain gradients differ here, so a mix-up would show
        grad(model, xb, [], target=0, wrt_input=True, guided=True).input_gradient,
        grad(model, xb, [], target=0, wrt_input=True).input_gradient,
        atol=1e-4,
    )
    before = kit.state(model)
    guided, plain = _together(
        meet,
        lambda: mv.guided_backprop(model, xa, target=0),
        lambda: mv.saliency(model, xb, target=0),
    )
    np.testing.assert_allclose(guided, guided_alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, plain_alone, rtol=1e-5, atol=1e-6)
    kit.assert_same(before, kit.state(model))


@pytest.mark.torch
def test_train_mode_batchnorm_statistics_do_not_move():
    import torch

    meet = Meet(lag=0.2)  # the second pass lags until the first call has restored the modes
    model = _torch_model(meet, norm=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _x(9)
    a, b = _together(
        meet,
        lambda: mv.capture(model, x, ["relu"]),
        lambda: mv.capture(model, x, ["fc"]),
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert all(m.training for m in model.modules())
    ref = model.eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    model.train()
    np.testing.assert_allclose(b["fc"], want, rtol=1e-5, atol=1e-5)
    assert list(a) == ["relu"]
