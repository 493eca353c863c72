"""The same small models in PyTorch and in Keras, for test bodies that run once per framework.

The ``framework`` fixture (``tests/conftest.py``) hands a test one kit per
framework; the contract suites (``tests/backends/test_contract.py``,
``tests/attribution/test_methods.py``) are written against the kit's methods
only, so one body checks both adapters. Weights are given once, in PyTorch's
layout (conv OIHW, dense ``(out, in)``), and each kit converts them; inputs
are canonical ``(N, C, H, W)`` NumPy, and ``kit.native(x)`` puts them in the
framework's own layout. Sizes are non-square, with C, H and W all different,
so a layout bug cannot hide.

A kit imports its framework when it is made, so importing this module
imports none.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import numpy as np

H, W, C = 6, 7, 3  # the contract's input: (N, 3, 6, 7)


def hand_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """1x1 conv (3 -> 4) and dense (4 -> 2) weights, PyTorch layout."""
    rng = np.random.default_rng(seed)
    return {
        "conv": rng.standard_normal((4, C, 1, 1)).astype(np.float32),
        "conv_b": rng.standard_normal(4).astype(np.float32),
        "fc": rng.standard_normal((2, 4)).astype(np.float32),
        "fc_b": rng.standard_normal(2).astype(np.float32),
    }


def expected_1x1(x: np.ndarray, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """conv -> relu -> global average pool -> dense, in NumPy on canonical ``x``."""
    conv = np.einsum("oc,nchw->nohw", w["conv"][:, :, 0, 0], x) + w["conv_b"][None, :, None, None]
    relu = np.maximum(conv, 0.0)
    gap = relu.mean(axis=(2, 3))
    return {"conv": conv, "relu": relu, "gap": gap, "fc": gap @ w["fc"].T + w["fc_b"]}


def tanh_weights(seed: int = 1) -> dict[str, np.ndarray]:
    """c0: 3x3 conv (3 -> 3, same), ic: 1x1 conv (3 -> 2), fc: dense (2 -> 3); float64."""
    rng = np.random.default_rng(seed)
    return {
        "c0": rng.standard_normal((3, C, 3, 3)) * 0.5,
        "c0_b": rng.standard_normal(3) * 0.1,
        "ic": rng.standard_normal((2, 3, 1, 1)),
        "ic_b": rng.standard_normal(2) * 0.1,
        "fc": rng.standard_normal((3, 2)),
        "fc_b": rng.standard_normal(3) * 0.1,
    }


CAM_SIZE = (7, 9)  # the CAM net's input H, W; its "feat" layer is (5, 4, 5) channels first


def cam_weights(seed: int = 1) -> dict[str, np.ndarray]:
    """The CAM net: conv1 (3 -> 4, 3x3), feat (4 -> 5, 3x3, stride 2), fc (5 -> 3); float64."""
    rng = np.random.default_rng(seed)
    return {
        "conv1": rng.standard_normal((4, C, 3, 3)) * 0.5,
        "conv1_b": rng.standard_normal(4) * 0.1,
        "feat": rng.standard_normal((5, 4, 3, 3)) * 0.5,
        "feat_b": rng.standard_normal(5) * 0.1,
        "fc": rng.standard_normal((3, 5)),
        "fc_b": rng.standard_normal(3) * 0.1,
    }


def captum_weights() -> dict[str, np.ndarray]:
    """Captum's ``BasicModel_ConvNet_One_Conv`` (tests/helpers/basic_models.py), PyTorch layout.

    conv1: 1 -> 2 channels, 3x3, weights 1, biases -50 and -75; relu1; the
    (2, 2, 2) map flattened channels first; fc1: 8 -> 4, each row five 1s then
    three -1s, no bias; relu2. Captum's hand-computed Grad-CAM tests use it on
    ``arange(16)`` as a 4x4 image.
    """
    return {
        "conv1": np.ones((2, 1, 3, 3), np.float32),
        "conv1_b": np.array([-50.0, -75.0], np.float32),
        "fc1": np.concatenate([np.ones((4, 5)), -np.ones((4, 3))], axis=1).astype(np.float32),
        "fc1_b": np.zeros(4, np.float32),
    }


def _conv_f64(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1) -> np.ndarray:
    """NCHW x OIHW, zero padding k // 2, float64 NumPy."""
    from numpy.lib.stride_tricks import sliding_window_view

    k = w.shape[-1]
    p = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    win = sliding_window_view(p, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]


def tanh_logits(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The tanh net's logits in float64 NumPy: an independent reference for any framework."""
    ic = _conv_f64(_conv_f64(x, w["c0"], w["c0_b"]), w["ic"], w["ic_b"])
    return np.tanh(ic).mean(axis=(2, 3)) @ w["fc"].T + w["fc_b"]


def cam_logits(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The CAM net's logits in float64 NumPy (the strided conv pads 1: TensorFlow's "same" here)."""
    h = np.maximum(_conv_f64(x, w["conv1"], w["conv1_b"]), 0)
    h = np.maximum(_conv_f64(h, w["feat"], w["feat_b"], stride=2), 0)
    return h.mean(axis=(2, 3)) @ w["fc"].T + w["fc_b"]


#: guided backprop by hand: x -> W1 x -> relu -> W2 (no biases)
GUIDED_W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)  # (3, 2)
GUIDED_W2 = np.array([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]], np.float32)  # (2, 3)


class TorchKit:
    """PyTorch: ``nn.Module`` models, inputs channels-first."""

    name = "torch"
    layout = "channels_first"
    to_native = "mv.to_channels_first(x)"  # the fix a wrongly laid-out input is told
    types = ("Conv2d", "ReLU", "GlobalAvgPool2d", "Linear")  # of conv, relu, gap, fc
    expected_input = "(N, 3, H, W)"  # how an input error names what the model takes
    wrong_channels = r"expects \(N, 3, H, W\).*5 channels on axis 1"
    deeper = r"does not fit.*\(N, 3, H, W\)"  # a size error from inside the pass

    def __init__(self) -> None:
        import torch

        from multiviz.backends import backend_by_name, plugin

        self.torch = torch
        self.nn = torch.nn
        self.backend = backend_by_name("torch")
        self.gap_class = plugin("torch", "builtin").GlobalAvgPool2d
        self.model_error: type[BaseException] = RuntimeError
        self.shape_error_cause: type[BaseException] = RuntimeError  # what a size error wraps

    # -- arrays

    def native(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x)

    def canonical(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def tensor(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x))

    def sum(self, t: Any, axis: Any = None) -> Any:
        return t.sum() if axis is None else t.sum(dim=axis)

    def float64(self) -> Any:
        """Context manager for float64 work (nothing to switch on in PyTorch)."""
        return contextlib.nullcontext()

    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The model's own forward pass in eval mode, as NumPy."""
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            with self.torch.no_grad():
                dtype = next(model.parameters()).dtype
                return model(self.torch.as_tensor(self.native(x), dtype=dtype)).numpy()
        finally:
            for m, flag in flags:
                m.training = flag

    # -- models

    def _conv(self, w: np.ndarray, b: np.ndarray, padding: int = 0) -> Any:
        conv = self.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=padding)
        with self.torch.no_grad():
            conv.weight.copy_(self.torch.as_tensor(w))
            conv.bias.copy_(self.torch.as_tensor(b))
        return conv

    def _dense(self, w: np.ndarray, b: np.ndarray | None) -> Any:
        fc = self.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with self.torch.no_grad():
            fc.weight.copy_(self.torch.as_tensor(w))
            if b is not None:
                fc.bias.copy_(self.torch.as_tensor(b))
        return fc

    def one_by_one(self, w: dict[str, np.ndarray], tripwire: bool = False) -> Any:
        """conv (1x1) -> relu -> gap -> fc, layers named so; optionally a tripwire first."""
        layers: list[tuple[str, Any]] = [("tripwire", _torch_modules().Tripwire())] * tripwire
        layers += [
            ("conv", self._conv(w["conv"], w["conv_b"])),
            ("relu", self.nn.ReLU()),
            ("gap", self.gap_class()),
            ("fc", self._dense(w["fc"], w["fc_b"])),
        ]
        return self.nn.Sequential(OrderedDict(layers)).eval()

    def tanh_net(self, w: dict[str, np.ndarray]) -> Any:
        """c0 -> ic -> it (tanh) -> gap -> fc, float64."""
        return (
            self.nn.Sequential(
                OrderedDict(
                    c0=self._conv(w["c0"], w["c0_b"], padding=1),
                    ic=self._conv(w["ic"], w["ic_b"]),
                    it=self.nn.Tanh(),
                    gap=self.gap_class(),
                    fc=self._dense(w["fc"], w["fc_b"]),
                )
            )
            .double()
            .eval()
        )

    def with_softmax(self, model: Any) -> Any:
        """``model`` followed by a softmax layer: its logits are ``model``'s output."""
        return self.nn.Sequential(OrderedDict(body=model, probs=self.nn.Softmax(dim=1))).eval()

    def twice(self) -> Any:
        """``scale`` (x 2) is called twice: scale = 2x, scale#1 = 2 (2x + 1)."""
        return _torch_modules().Twice()

    def split(self) -> Any:
        """``split`` returns two outputs: the first channel, and the others doubled."""
        return _torch_modules().SplitNet()

    def cam_net(self, w: dict[str, np.ndarray]) -> Any:
        """conv1 (3x3) relu1 feat (3x3, stride 2) | relu gap fc, float64; see :func:`cam_weights`."""
        return (
            self.nn.Sequential(
                OrderedDict(
                    conv1=self._conv(w["conv1"], w["conv1_b"], padding=1),
                    relu1=self.nn.ReLU(),
                    feat=self._strided(w["feat"], w["feat_b"]),
                    relu=self.nn.ReLU(),
                    gap=self.gap_class(),
                    fc=self._dense(w["fc"], w["fc_b"]),
                )
            )
            .double()
            .eval()
        )

    def captum_net(self, entry: bool = False) -> Any:
        """Captum's one-conv test model (:func:`captum_weights`) on (1, 4, 4) inputs.

        ``entry=True`` puts an identity layer ``entry`` first: its output is
        conv1's input (Captum's ``attribute_to_layer_input=True``).
        """
        w = captum_weights()
        conv1, fc1 = self._conv(w["conv1"], w["conv1_b"]), self._dense(w["fc1"], w["fc1_b"])
        return _torch_modules().CaptumOneConv(conv1, fc1, entry).eval()

    def _strided(self, w: np.ndarray, b: np.ndarray) -> Any:
        conv = self.nn.Conv2d(w.shape[1], w.shape[0], 3, stride=2, padding=1)
        with self.torch.no_grad():
            conv.weight.copy_(self.torch.as_tensor(w))
            conv.bias.copy_(self.torch.as_tensor(b))
        return conv

    def features(self, model: Any, x: np.ndarray, layer: str) -> np.ndarray:
        """The output of ``layer`` of a Sequential, by running the modules up to it (canonical)."""
        names = [n for n, _ in model.named_children()]
        with self.torch.no_grad():
            return model[: names.index(layer) + 1](self.torch.as_tensor(x)).numpy()

    def dense_weights(self, model: Any, name: str) -> np.ndarray:
        """A dense layer's weight matrix (out, in)."""
        return dict(model.named_modules())[name].weight.detach().numpy()

    softmax_prefix = "body."  # where with_softmax() puts the original layers

    def with_tripwire(self, builtin: Any) -> Any:
        """A copy of the built-in CNN that fails deep in the pass (before conv3) on NaN."""
        import copy

        model = copy.deepcopy(builtin)
        model.conv3 = self.nn.Sequential(
            OrderedDict(tripwire=_torch_modules().Tripwire(), conv=model.conv3)
        )
        return model

    def guided_net(self) -> Any:
        return self.nn.Sequential(
            OrderedDict(
                h=self._dense(GUIDED_W1, None), r=self.nn.ReLU(), out=self._dense(GUIDED_W2, None)
            )
        )

    def segmentation_net(self, w: np.ndarray) -> Any:
        """A 1x1 conv: a map per class, (N, K, H, W)."""
        return self.nn.Sequential(OrderedDict(seg=self._conv(w, np.zeros(w.shape[0])))).eval()

    def flat_head(self) -> Any:
        """Fits inputs of 4x4 only, which the first layer cannot tell: the error comes deeper."""
        return self.nn.Sequential(
            OrderedDict(
                conv=self.nn.Conv2d(C, 2, 1), flat=self.nn.Flatten(), fc=self.nn.Linear(32, 2)
            )
        ).eval()

    # -- state (invariant 1)

    def state(self, model: Any) -> dict[str, Any]:
        """Everything a backend call must leave as it was: modes, flags, grads, tensors, hooks."""
        return {
            "training": {n: m.training for n, m in model.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "grad": {
                n: (p.grad, None if p.grad is None else p.grad.clone())
                for n, p in model.named_parameters()
            },
            "tensors": {k: v.clone() for k, v in model.state_dict().items()},
            "hooks": {
                (n, attr): (v, dict(v))
                for n, m in model.named_modules()
                for attr, v in vars(m).items()
                if "hook" in attr and isinstance(v, dict)
            },
        }

    def assert_same(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        torch = self.torch
        assert after["training"] == before["training"]
        assert after["requires_grad"] == before["requires_grad"]
        for name, (grad, value) in before["grad"].items():
            now = after["grad"][name][0]
            assert now is grad, f"{name}.grad was replaced"
            if value is not None:
                assert torch.equal(now, value), f"{name}.grad changed"
        assert before["tensors"].keys() == after["tensors"].keys()
        for k, v in before["tensors"].items():
            assert torch.equal(after["tensors"][k], v), f"{k} changed"
        for k, (obj, contents) in before["hooks"].items():
            assert after["hooks"][k][0] is obj and after["hooks"][k][1] == contents, k

    def unsettle(self, model: Any) -> None:
        """State a backend must restore: mixed modes, a frozen and a graded parameter."""
        model.train()
        next(model.children()).eval()  # a module whose own flag differs from its parent's
        first = next(model.parameters())
        first.requires_grad_(False)
        last = list(model.parameters())[-1]
        last.grad = self.torch.full_like(last, 0.5)


class KerasKit:
    """Keras 3 on the process's backend: Functional models, inputs channels-last."""

    name = "keras"
    layout = "channels_last"
    to_native = "mv.to_channels_last(x)"
    types = ("Conv2D", "ReLU", "GlobalAveragePooling2D", "Dense")
    expected_input = f"(None, {H}, {W}, {C})"
    wrong_channels = rf"\(None, {H}, {W}, {C}\)"
    deeper = r"built for input shape \(None, None, None, 3\)"

    def __init__(self) -> None:
        import keras

        from multiviz.backends import backend_by_name

        self.keras = keras
        self.backend = backend_by_name("keras")
        self.model_error: type[BaseException] = Exception  # JAX: a runtime error of XLA
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            self.model_error = tf.errors.InvalidArgumentError
        elif keras.backend.backend() == "torch":
            self.model_error = RuntimeError
        self.shape_error_cause = Exception  # ValueError or InvalidArgumentError, by the verb

    # -- arrays

    def native(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if np.ndim(x) == 4 else x

    def canonical(self, x: np.ndarray) -> np.ndarray:
        return np.moveaxis(x, -1, 1) if np.ndim(x) == 4 else np.asarray(x)

    def tensor(self, x: np.ndarray) -> Any:
        return self.keras.ops.convert_to_tensor(x)

    def sum(self, t: Any, axis: Any = None) -> Any:
        return self.keras.ops.sum(t, axis=axis)

    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        return self.keras.ops.convert_to_numpy(model(self.native(x), training=False))

    def float64(self) -> Any:
        """Context manager: float64 computes in float64 (JAX: x64 switched on for the block)."""
        if self.keras.backend.backend() == "jax":
            import jax

            return jax.enable_x64(True)
        return contextlib.nullcontext()

    # -- models

    def _conv(self, w: np.ndarray, b: np.ndarray, name: str, **kw: Any) -> Any:
        layer = self.keras.layers.Conv2D(w.shape[0], w.shape[2], name=name, **kw)
        return layer, [np.transpose(w, (2, 3, 1, 0)), b]

    def _dense(self, w: np.ndarray, b: np.ndarray | None, name: str, **kw: Any) -> Any:
        layer = self.keras.layers.Dense(w.shape[0], use_bias=b is not None, name=name, **kw)
        return layer, [w.T] + ([b] if b is not None else [])

    def _build(self, inp: Any, steps: list[tuple[Any, list[np.ndarray] | None]]) -> Any:
        y = inp
        for layer, _ in steps:
            y = layer(y)
        model = self.keras.Model(inp, y)
        for layer, weights in steps:
            if weights is not None:
                layer.set_weights(weights)
        return model

    def one_by_one(self, w: dict[str, np.ndarray], tripwire: bool = False) -> Any:
        layers = self.keras.layers
        steps: list[tuple[Any, Any]] = [(_keras_tripwire(self)(name="tripwire"), None)] * tripwire
        steps += [
            self._conv(w["conv"], w["conv_b"], "conv"),
            (layers.ReLU(name="relu"), None),
            (layers.GlobalAveragePooling2D(name="gap"), None),
            self._dense(w["fc"], w["fc_b"], "fc"),
        ]
        return self._build(self.keras.Input((H, W, C)), steps)

    def tanh_net(self, w: dict[str, np.ndarray]) -> Any:
        layers, f64 = self.keras.layers, {"dtype": "float64"}
        steps = [
            self._conv(w["c0"], w["c0_b"], "c0", padding="same", **f64),
            self._conv(w["ic"], w["ic_b"], "ic", **f64),
            (layers.Activation("tanh", name="it", **f64), None),
            (layers.GlobalAveragePooling2D(name="gap", **f64), None),
            self._dense(w["fc"], w["fc_b"], "fc", **f64),
        ]
        return self._build(self.keras.Input((H, W, C), dtype="float64"), steps)

    def with_softmax(self, model: Any) -> Any:
        probs = self.keras.layers.Softmax(name="probs", dtype=model.outputs[0].dtype)
        return self.keras.Model(model.inputs[0], probs(model.outputs[0]))

    def twice(self) -> Any:
        layers = self.keras.layers
        inp = self.keras.Input((H, W, C))
        scale = layers.Rescaling(2.0, name="scale")
        y = scale(layers.Rescaling(1.0, offset=1.0, name="plus1")(scale(inp)))
        return self.keras.Model(inp, y)

    def split(self) -> Any:
        inp = self.keras.Input((H, W, C))
        first, rest = _keras_split(self)(name="split")(inp)
        return self.keras.Model(inp, self.keras.layers.Concatenate(name="cat")([first, rest]))

    def cam_net(self, w: dict[str, np.ndarray]) -> Any:
        layers, f64 = self.keras.layers, {"dtype": "float64"}
        steps = [
            self._conv(w["conv1"], w["conv1_b"], "conv1", padding="same", **f64),
            (layers.ReLU(name="relu1", **f64), None),
            self._conv(w["feat"], w["feat_b"], "feat", strides=2, padding="same", **f64),
            (layers.ReLU(name="relu", **f64), None),
            (layers.GlobalAveragePooling2D(name="gap", **f64), None),
            self._dense(w["fc"], w["fc_b"], "fc", **f64),
        ]
        return self._build(self.keras.Input((*CAM_SIZE, C), dtype="float64"), steps)

    def captum_net(self, entry: bool = False) -> Any:
        """Captum's one-conv test model: the same weights; channels-first flattening by a Permute."""
        layers, w = self.keras.layers, captum_weights()
        steps: list[tuple[Any, Any]] = [(layers.Activation("linear", name="entry"), None)] * entry
        steps += [
            self._conv(w["conv1"], w["conv1_b"], "conv1"),
            (layers.ReLU(name="relu1"), None),
            (layers.Permute((3, 1, 2), name="channels_first"), None),
            (layers.Flatten(name="flat"), None),
            self._dense(w["fc1"], w["fc1_b"], "fc1"),
            (layers.ReLU(name="relu2"), None),
        ]
        return self._build(self.keras.Input((4, 4, 1)), steps)

    def features(self, model: Any, x: np.ndarray, layer: str) -> np.ndarray:
        sub = self.keras.Model(model.inputs[0], model.get_layer(layer).output)
        return self.canonical(self.keras.ops.convert_to_numpy(sub(self.native(x))))

    def dense_weights(self, model: Any, name: str) -> np.ndarray:
        return model.get_layer(name).get_weights()[0].T

    softmax_prefix = ""

    def with_tripwire(self, builtin: Any) -> Any:
        """The built-in CNN rebuilt with a layer that fails at the input on NaN."""
        layers = self.keras.layers
        inp = self.keras.Input((None, None, 3))
        h = _keras_tripwire(self)(name="tripwire")(inp)
        for k, filters in enumerate((16, 32, 64), start=1):
            h = layers.Conv2D(filters, 3, padding="same", name=f"conv{k}")(h)
            h = layers.ReLU(name=f"relu{k}")(h)
            if k < 3:
                h = layers.MaxPooling2D(2, name=f"pool{k}")(h)
        h = layers.GlobalAveragePooling2D(name="gap")(h)
        model = self.keras.Model(inp, layers.Dense(4, name="fc")(h))
        model.set_weights(builtin.get_weights())
        return model

    def guided_net(self) -> Any:
        layers = self.keras.layers
        steps = [
            self._dense(GUIDED_W1, None, "h"),
            (layers.ReLU(name="r"), None),
            self._dense(GUIDED_W2, None, "out"),
        ]
        return self._build(self.keras.Input((2,)), steps)

    def segmentation_net(self, w: np.ndarray) -> Any:
        # (N, H, W, K) from the conv, then (N, K, H, W): the same output shape as PyTorch's
        steps = [
            self._conv(w, np.zeros(w.shape[0]), "seg"),
            (self.keras.layers.Permute((3, 1, 2), name="classes_first"), None),
        ]
        return self._build(self.keras.Input((H, W, C)), steps)

    def flat_head(self) -> Any:
        layers = self.keras.layers
        inp = self.keras.Input((None, None, C))
        y = layers.Reshape((4 * 4 * 2,), name="flat")(layers.Conv2D(2, 1, name="conv")(inp))
        return self.keras.Model(inp, layers.Dense(2, name="fc")(y))

    # -- state (invariant 1)

    def state(self, model: Any) -> dict[int, Any]:
        """Nodes (no layer called symbolically), patched attributes, flags and weights."""
        return {
            id(layer): (
                len(layer._inbound_nodes),
                len(layer._outbound_nodes),
                layer.__dict__.get("call"),
                layer.__dict__.get("activation"),
                layer.trainable,
                [np.array(v) for v in layer.get_weights()],
            )
            for layer in model._flatten_layers(include_self=True)
        }

    def assert_same(self, before: dict[int, Any], after: dict[int, Any]) -> None:
        assert before.keys() == after.keys()
        for key, (nin, nout, call, act, trainable, weights) in before.items():
            nin2, nout2, call2, act2, trainable2, weights2 = after[key]
            assert (nin, nout, trainable) == (nin2, nout2, trainable2)
            assert call is call2 and act is act2
            for a, b in zip(weights, weights2, strict=True):
                np.testing.assert_array_equal(a, b)

    def unsettle(self, model: Any) -> None:
        """State a backend must restore: a frozen layer."""
        next(layer for layer in model.layers if layer.weights).trainable = False


# --------------------------------------------------------------------------- layers the kits use


@functools.cache
def _torch_modules() -> SimpleNamespace:
    """The PyTorch helper modules, defined once torch is imported."""
    import torch
    from torch import nn

    class Tripwire(nn.Module):
        """Identity that fails at run time when the input holds a non-finite value."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not torch.isfinite(x).all():
                raise RuntimeError("tripwire: non-finite activation")
            return x

    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2.0

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = Scale()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale(self.scale(x) + 1.0)

    class Split(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :1], x[:, 1:] * 2.0

    class SplitNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.split = Split()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat(self.split(x), dim=1)

    class CaptumOneConv(nn.Module):
        """Captum's BasicModel_ConvNet_One_Conv: conv1 relu1 view(-1, 8) fc1 relu2."""

        def __init__(self, conv1: nn.Module, fc1: nn.Module, entry: bool) -> None:
            super().__init__()
            if entry:
                self.entry = nn.Identity()
            self.conv1, self.relu1, self.fc1, self.relu2 = conv1, nn.ReLU(), fc1, nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if hasattr(self, "entry"):
                x = self.entry(x)
            return self.relu2(self.fc1(self.relu1(self.conv1(x)).reshape(-1, 8)))

    return SimpleNamespace(
        Tripwire=Tripwire, Twice=Twice, SplitNet=SplitNet, CaptumOneConv=CaptumOneConv
    )


_KERAS_LAYERS: dict[str, type] = {}


def _keras_tripwire(kit: KerasKit) -> type:
    if "tripwire" not in _KERAS_LAYERS:
        check = _keras_finite_check(kit.keras.backend.backend())

        class Tripwire(kit.keras.layers.Layer):
            """Identity that fails at run time (eager or traced) when the input holds NaN."""

            def call(self, x: Any) -> Any:
                return check(x)

        _KERAS_LAYERS["tripwire"] = Tripwire
    return _KERAS_LAYERS["tripwire"]


def _keras_finite_check(backend: str) -> Any:
    """``x``, or an error at run time (eager or compiled) when ``x`` holds NaN/Inf."""
    message = "tripwire: non-finite activation"
    if backend == "tensorflow":
        import tensorflow as tf

        return lambda x: tf.debugging.assert_all_finite(x, message)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def fail_if(bad: Any) -> None:
            if bad:
                raise FloatingPointError(message)

        def check(x: Any) -> Any:  # raises from the compiled program too
            jax.debug.callback(fail_if, ~jnp.isfinite(x).all())
            return x

        return check

    def check_torch(x: Any) -> Any:
        import torch

        if not bool(torch.isfinite(x).all()):
            raise RuntimeError(message)
        return x

    return check_torch


def _keras_split(kit: KerasKit) -> type:
    if "split" not in _KERAS_LAYERS:

        class Split(kit.keras.layers.Layer):
            """Two outputs: the first channel, and the others doubled (channels-last)."""

            def call(self, x: Any) -> Any:
                return x[..., :1] * 1.0, x[..., 1:] * 2.0

        _KERAS_LAYERS["split"] = Split
    return _KERAS_LAYERS["split"]


_KITS: dict[str, Any] = {}


def kit(name: str) -> TorchKit | KerasKit:
    """The kit of ``"torch"`` or ``"keras"``, made once (importing its framework)."""
    if name not in _KITS:
        _KITS[name] = TorchKit() if name == "torch" else KerasKit()
    return _KITS[name]


def message_of(err: BaseException) -> str:
    """An exception's text with framework-specific whitespace folded."""
    return re.sub(r"[ \t]+", " ", str(err)).strip()


def keras_backend_is(kit_or_name: Any, *backends: str, why: str) -> None:
    """Skip a Keras run unless Keras runs on one of ``backends``, saying ``why``.

    For what multiviz documents as unsupported on a Keras backend (layer
    gradients of a subclassed model on JAX, docs/keras-backends.md), not for
    hiding failures. PyTorch runs are never skipped.
    """
    import pytest

    name = getattr(kit_or_name, "name", kit_or_name)
    if name != "keras":
        return
    import keras

    if keras.backend.backend() not in backends:
        pytest.skip(f"Keras on {keras.backend.backend()}: {why}")
