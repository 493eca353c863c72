"""Twin models for the "no silent wrong answers" suites: one model, built in PyTorch and in Keras.

Each builder takes a framework name (``"torch"`` or ``"keras"``) and NumPy
weights given once in PyTorch's layout (conv OIHW, dense ``(out, in)``), so
the two twins compute the same function; next to it, a NumPy function
computes what the model's layers must output, by hand. Inputs are canonical
``(N, C, H, W)``; ``native(name, x)`` puts them in the framework's layout.
A builder imports its framework when called, so importing this module
imports none.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "calls_expected",
    "calls_net",
    "calls_weights",
    "native",
]


def native(name: str, x: np.ndarray) -> np.ndarray:
    """A canonical ``(N, C, H, W)`` batch in the framework's own layout."""
    if name == "keras" and np.ndim(x) == 4:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return np.ascontiguousarray(x)


def _conv1x1(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]


def _keras_conv(w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    return [np.transpose(w, (2, 3, 1, 0)), b]


# --------------------------------------------------------------------------- calls


def calls_weights(seed: int = 3) -> dict[str, np.ndarray]:
    """stem 1x1 conv (3 -> 4), enc 1x1 conv (4 -> 4), branch (never run), head dense (4 -> 2)."""
    rng = np.random.default_rng(seed)
    w = {
        "stem": rng.standard_normal((4, 3, 1, 1)),
        "enc": rng.standard_normal((4, 4, 1, 1)) * 0.5,
        "branch": rng.standard_normal((4, 4, 1, 1)),
        "head": rng.standard_normal((2, 4)),
    }
    w.update({f"{k}_b": rng.standard_normal(v.shape[0]) * 0.1 for k, v in list(w.items())})
    return {k: v.astype(np.float32) for k, v in w.items()}


def calls_expected(x: np.ndarray, w: dict[str, np.ndarray], calls: int) -> dict[str, np.ndarray]:
    """stem, then ``enc`` applied ``calls`` times (keys ``enc``, ``enc#1``…), gap, head; NumPy."""
    h = _conv1x1(x, w["stem"], w["stem_b"])
    out = {"stem": h}
    for k in range(calls):
        h = _conv1x1(h, w["enc"], w["enc_b"])
        out["enc" if k == 0 else f"enc#{k}"] = h
    out["head"] = h.mean(axis=(2, 3)) @ w["head"].T + w["head_b"]
    return out


def calls_net(name: str, w: dict[str, np.ndarray]) -> Any:
    """A subclassed model calling ``enc`` twice, three times once ``model.extra = True``.

    ``branch`` is a layer of the model that its forward pass never runs.
    """
    return _torch_calls_net(w) if name == "torch" else _keras_calls_net(w)


def _torch_calls_net(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    class CallsNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 1)
            self.enc = nn.Conv2d(4, 4, 1)
            self.branch = nn.Conv2d(4, 4, 1)
            self.head = nn.Linear(4, 2)
            self.extra = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.enc(self.enc(self.stem(x)))
            if self.extra:
                h = self.enc(h)
            return self.head(h.mean(dim=(2, 3)))

    net = CallsNet().eval()
    with torch.no_grad():
        for key in ("stem", "enc", "branch", "head"):
            getattr(net, key).weight.copy_(torch.as_tensor(w[key]))
            getattr(net, key).bias.copy_(torch.as_tensor(w[f"{key}_b"]))
    return net


@functools.cache
def _keras_calls_class() -> type:
    import keras

    class CallsNet(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="calls_net")
            self.stem = keras.layers.Conv2D(4, 1, name="stem")
            self.enc = keras.layers.Conv2D(4, 1, name="enc")
            self.branch = keras.layers.Conv2D(4, 1, name="branch")
            self.head = keras.layers.Dense(2, name="head")
            self.extra = False

        def call(self, x: Any) -> Any:
            h = self.enc(self.enc(self.stem(x)))
            if self.extra:
                h = self.enc(h)
            return self.head(keras.ops.mean(h, axis=(1, 2)))

    return CallsNet


def _keras_calls_net(w: dict[str, np.ndarray]) -> Any:
    net = _keras_calls_class()()
    net(np.zeros((1, 5, 6, 3), np.float32))
    net.branch.build((None, 5, 6, 4))
    for key in ("stem", "enc", "branch"):
        getattr(net, key).set_weights(_keras_conv(w[key], w[f"{key}_b"]))
    net.head.set_weights([w["head"].T, w["head_b"]])
    return net


# --------------------------------------------------------------------------- heads

HEADS_SIZE = (5, 6)  # H, W of the head nets' input


def heads_weights(seed: int = 4) -> dict[str, np.ndarray]:
    """conv 1x1 (3 -> 4); head ``a`` dense (4 -> 3); head ``b`` dense (4 -> 2); unit ``u`` (4 -> 1)."""
    rng = np.random.default_rng(seed)
    w = {
        "conv": rng.standard_normal((4, 3, 1, 1)),
        "a": rng.standard_normal((3, 4)),
        "b": rng.standard_normal((2, 4)) * 2.0,
        "u": rng.standard_normal((1, 4)) * 2.0,
    }
    w.update({f"{k}_b": rng.standard_normal(v.shape[0]) * 0.1 for k, v in list(w.items())})
    return {k: v.astype(np.float32) for k, v in w.items()}


def heads_expected(x: np.ndarray, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """conv -> relu -> global average pool -> the three heads' logits, NumPy float64."""
    x = np.asarray(x, np.float64)
    conv = _conv1x1(x, w["conv"].astype(np.float64), w["conv_b"].astype(np.float64))
    relu = np.maximum(conv, 0.0)
    gap = relu.mean(axis=(2, 3))
    out = {"conv": conv, "relu": relu, "gap": gap}
    for head in ("a", "b", "u"):
        out[head] = gap @ w[head].T.astype(np.float64) + w[f"{head}_b"]
    return out


def two_heads(name: str, w: dict[str, np.ndarray], structure: str = "tuple") -> Any:
    """conv -> relu -> gap, then head ``a`` (logits) and head ``b`` (ending in a softmax).

    The model returns ``(a, b)`` (``structure="tuple"``), ``[a, b]`` (``"list"``)
    or ``{"a": a, "b": b}`` (``"dict"``).
    """
    if name == "torch":
        return _torch_heads(w, structure)
    return _keras_heads(w, structure)


def unit_head(name: str, w: dict[str, np.ndarray], sigmoid: bool = True) -> Any:
    """conv -> relu -> gap -> one unit ``fc``, then a sigmoid (a binary head) or nothing (regression).

    PyTorch: ``Linear(4, 1)`` then an ``nn.Sigmoid`` module ``prob``; Keras:
    ``Dense(1, activation="sigmoid")``.
    """
    if name == "torch":
        return _torch_unit(w, sigmoid)
    return _keras_unit(w, sigmoid)


def _torch_dense(w: np.ndarray, b: np.ndarray) -> Any:
    import torch

    fc = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(w))
        fc.bias.copy_(torch.as_tensor(b))
    return fc


def _torch_conv(w: np.ndarray, b: np.ndarray) -> Any:
    import torch

    conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2])
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(w))
        conv.bias.copy_(torch.as_tensor(b))
    return conv


@functools.cache
def _torch_classes() -> Any:
    import torch
    from torch import nn

    class Gap(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    class Heads(nn.Module):
        def __init__(self, w: dict[str, np.ndarray], structure: str) -> None:
            super().__init__()
            self.conv = _torch_conv(w["conv"], w["conv_b"])
            self.relu = nn.ReLU()
            self.gap = Gap()
            self.a = _torch_dense(w["a"], w["a_b"])
            self.b = nn.Sequential(_torch_dense(w["b"], w["b_b"]), nn.Softmax(dim=1))
            self.structure = structure

        def forward(self, x: torch.Tensor) -> Any:
            h = self.gap(self.relu(self.conv(x)))
            a, b = self.a(h), self.b(h)
            if self.structure == "dict":
                return {"a": a, "b": b}
            return [a, b] if self.structure == "list" else (a, b)

    return Gap, Heads


def _torch_heads(w: dict[str, np.ndarray], structure: str) -> Any:
    return _torch_classes()[1](w, structure).eval()


def _torch_unit(w: dict[str, np.ndarray], sigmoid: bool) -> Any:
    from collections import OrderedDict

    from torch import nn

    layers = OrderedDict(
        conv=_torch_conv(w["conv"], w["conv_b"]),
        relu=nn.ReLU(),
        gap=_torch_classes()[0](),
        fc=_torch_dense(w["u"], w["u_b"]),
    )
    if sigmoid:
        layers["prob"] = nn.Sigmoid()
    return nn.Sequential(layers).eval()


def _keras_trunk(w: dict[str, np.ndarray]) -> tuple[Any, Any, list[tuple[Any, list[np.ndarray]]]]:
    import keras

    inp = keras.Input((*HEADS_SIZE, 3))
    conv = keras.layers.Conv2D(4, 1, name="conv")
    h = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="relu")(conv(inp)))
    return inp, h, [(conv, _keras_conv(w["conv"], w["conv_b"]))]


def _keras_dense(
    w: np.ndarray, b: np.ndarray, name: str, **kw: Any
) -> tuple[Any, list[np.ndarray]]:
    import keras

    return keras.layers.Dense(w.shape[0], name=name, **kw), [w.T, b]


def _keras_model(inp: Any, out: Any, weights: list[tuple[Any, list[np.ndarray]]]) -> Any:
    import keras

    model = keras.Model(inp, out)
    for layer, values in weights:
        layer.set_weights(values)
    return model


def _keras_heads(w: dict[str, np.ndarray], structure: str) -> Any:
    inp, h, weights = _keras_trunk(w)
    a_layer, a_w = _keras_dense(w["a"], w["a_b"], "a")
    b_layer, b_w = _keras_dense(w["b"], w["b_b"], "b", activation="softmax")
    a, b = a_layer(h), b_layer(h)
    out = {"a": a, "b": b} if structure == "dict" else [a, b] if structure == "list" else (a, b)
    return _keras_model(inp, out, [*weights, (a_layer, a_w), (b_layer, b_w)])


def _keras_unit(w: dict[str, np.ndarray], sigmoid: bool) -> Any:
    inp, h, weights = _keras_trunk(w)
    layer, values = _keras_dense(w["u"], w["u_b"], "fc", activation="sigmoid" if sigmoid else None)
    return _keras_model(inp, layer(h), [*weights, (layer, values)])


# --------------------------------------------------------------------------- several inputs


def inputs_weights(seed: int = 5) -> dict[str, np.ndarray]:
    """rgb 1x1 conv (3 -> 4), depth 1x1 conv (1 -> 4), fc dense (4 -> 2)."""
    rng = np.random.default_rng(seed)
    w = {
        "rgb": rng.standard_normal((4, 3, 1, 1)),
        "depth": rng.standard_normal((4, 1, 1, 1)),
        "fc": rng.standard_normal((2, 4)),
    }
    w.update({f"{k}_b": rng.standard_normal(v.shape[0]) * 0.1 for k, v in list(w.items())})
    return {k: v.astype(np.float32) for k, v in w.items()}


def inputs_expected(rgb: np.ndarray, depth: np.ndarray, w: dict[str, np.ndarray]) -> dict:
    """(rgb conv + depth conv) -> relu -> gap -> fc, NumPy float64, canonical inputs."""
    rgb, depth = np.asarray(rgb, np.float64), np.asarray(depth, np.float64)
    sum_ = _conv1x1(rgb, w["rgb"].astype(np.float64), w["rgb_b"]) + _conv1x1(
        depth, w["depth"].astype(np.float64), w["depth_b"]
    )
    relu = np.maximum(sum_, 0.0)
    return {"sum": sum_, "relu": relu, "fc": relu.mean(axis=(2, 3)) @ w["fc"].T + w["fc_b"]}


def two_inputs(name: str, w: dict[str, np.ndarray], named: bool = False) -> Any:
    """A model of two images, ``rgb`` (3 channels) and ``depth`` (1): ``forward(rgb, depth)``.

    Keras: a Functional model with inputs ``[rgb, depth]``, or ``{"rgb": ...,
    "depth": ...}`` with ``named=True``.
    """
    if name == "torch":
        return _torch_two_inputs(w)
    return _keras_two_inputs(w, named)


def _torch_two_inputs(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rgb = _torch_conv(w["rgb"], w["rgb_b"])
            self.depth = _torch_conv(w["depth"], w["depth_b"])
            self.relu = nn.ReLU()
            self.fc = _torch_dense(w["fc"], w["fc_b"])

        def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
            h = self.relu(self.rgb(rgb) + self.depth(depth))
            return self.fc(h.mean(dim=(2, 3)))

    return TwoInputs().eval()


def _keras_two_inputs(w: dict[str, np.ndarray], named: bool) -> Any:
    import keras

    rgb = keras.Input((*HEADS_SIZE, 3), name="rgb")
    depth = keras.Input((*HEADS_SIZE, 1), name="depth")
    c_rgb, c_depth = (
        keras.layers.Conv2D(4, 1, name="rgb_conv"),
        keras.layers.Conv2D(4, 1, name="depth_conv"),
    )
    h = keras.layers.ReLU(name="relu")(keras.layers.Add(name="sum")([c_rgb(rgb), c_depth(depth)]))
    fc, fc_w = _keras_dense(w["fc"], w["fc_b"], "fc")
    out = fc(keras.layers.GlobalAveragePooling2D(name="gap")(h))
    inputs = {"rgb": rgb, "depth": depth} if named else [rgb, depth]
    weights = [
        (c_rgb, _keras_conv(w["rgb"], w["rgb_b"])),
        (c_depth, _keras_conv(w["depth"], w["depth_b"])),
        (fc, fc_w),
    ]
    return _keras_model(inputs, out, weights)


# --------------------------------------------------------------------------- non-finite


def overflow_net(name: str) -> Any:
    """conv 1x1 (3 -> 1, weights 1e21) -> relu -> gap -> fc (1 -> 1, weight 1e20), no biases.

    For inputs near 1e-30 the output is finite (about 1e11) but its gradient
    with respect to the input, 1e41 / (H W), overflows float32 to Inf —
    where the ReLU is active (a sample of negative inputs has a zero gradient).
    """
    w = {
        "conv": np.full((1, 3, 1, 1), 1e21, np.float32),
        "conv_b": np.zeros(1, np.float32),
        "u": np.full((1, 1), 1e20, np.float32),
        "u_b": np.zeros(1, np.float32),
    }
    if name == "torch":
        from collections import OrderedDict

        from torch import nn

        return nn.Sequential(
            OrderedDict(
                conv=_torch_conv(w["conv"], w["conv_b"]),
                relu=nn.ReLU(),
                gap=_torch_classes()[0](),
                fc=_torch_dense(w["u"], w["u_b"]),
            )
        ).eval()
    import keras

    inp = keras.Input((*HEADS_SIZE, 3))
    conv = keras.layers.Conv2D(1, 1, name="conv")
    h = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="relu")(conv(inp)))
    fc, fc_w = _keras_dense(w["u"], w["u_b"], "fc")
    return _keras_model(inp, fc(h), [(conv, _keras_conv(w["conv"], w["conv_b"])), (fc, fc_w)])


# --------------------------------------------------------------------------- recurrent layers

RNN_SIZES = {"T": 6, "F": 3, "H": 4, "G": 5}  # time steps, features, LSTM units, GRU units


def rnn_weights(seed: int = 6) -> dict[str, np.ndarray]:
    """A 2-layer bidirectional LSTM (F -> H) then a GRU (2H -> G) and a dense (G -> 2), PyTorch names."""
    rng = np.random.default_rng(seed)
    f, h, g = RNN_SIZES["F"], RNN_SIZES["H"], RNN_SIZES["G"]
    w: dict[str, np.ndarray] = {}
    for layer, size_in in ((0, f), (1, 2 * h)):
        for suffix in ("", "_reverse"):
            w[f"lstm.weight_ih_l{layer}{suffix}"] = rng.standard_normal((4 * h, size_in)) * 0.4
            w[f"lstm.weight_hh_l{layer}{suffix}"] = rng.standard_normal((4 * h, h)) * 0.4
            w[f"lstm.bias_ih_l{layer}{suffix}"] = rng.standard_normal(4 * h) * 0.1
            w[f"lstm.bias_hh_l{layer}{suffix}"] = rng.standard_normal(4 * h) * 0.1
    w["gru.weight_ih_l0"] = rng.standard_normal((3 * g, 2 * h)) * 0.4
    w["gru.weight_hh_l0"] = rng.standard_normal((3 * g, g)) * 0.4
    w["gru.bias_ih_l0"] = rng.standard_normal(3 * g) * 0.1
    w["gru.bias_hh_l0"] = rng.standard_normal(3 * g) * 0.1
    w["fc.weight"] = rng.standard_normal((2, g))
    w["fc.bias"] = rng.standard_normal(2) * 0.1
    return {k: v.astype(np.float32) for k, v in w.items()}


def rnn_net(name: str, w: dict[str, np.ndarray]) -> Any:
    """The same recurrent network in PyTorch and Keras, inputs ``(N, T, F)`` in both.

    PyTorch: ``nn.LSTM(num_layers=2, bidirectional=True)`` with time first
    (``batch_first=False``: its output is ``(T, N, 2H)``, its states
    ``(4, N, H)``), ``nn.GRU(batch_first=True)``, ``Linear`` on the GRU's last
    state. Keras: two ``Bidirectional(LSTM)`` layers ``bi1``, ``bi2``, a
    ``GRU(return_sequences=True, return_state=True)`` and a ``Dense``.
    """
    return _torch_rnn(w) if name == "torch" else _keras_rnn(w)


def _torch_rnn(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    f, h, g = RNN_SIZES["F"], RNN_SIZES["H"], RNN_SIZES["G"]

    class RNNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(f, h, num_layers=2, bidirectional=True)
            self.gru = nn.GRU(2 * h, g, batch_first=True)
            self.fc = nn.Linear(g, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, _ = self.lstm(x.transpose(0, 1))  # time first
            _, state = self.gru(y.transpose(0, 1))
            return self.fc(state[-1])

    net = RNNNet().eval()
    net.load_state_dict({k: torch.as_tensor(v) for k, v in w.items()})
    return net


def _gru_gates_to_keras(a: np.ndarray) -> np.ndarray:
    """PyTorch stacks a GRU's gates r, z, n on axis 0; Keras stacks z, r, h."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def _keras_rnn(w: dict[str, np.ndarray]) -> Any:
    import keras

    t, f, h, g = RNN_SIZES["T"], RNN_SIZES["F"], RNN_SIZES["H"], RNN_SIZES["G"]
    inp = keras.Input((t, f))
    bi1 = keras.layers.Bidirectional(keras.layers.LSTM(h, return_sequences=True), name="bi1")
    bi2 = keras.layers.Bidirectional(keras.layers.LSTM(h, return_sequences=True), name="bi2")
    gru = keras.layers.GRU(g, return_sequences=True, return_state=True, name="gru")
    fc = keras.layers.Dense(2, name="fc")
    _, state = gru(bi2(bi1(inp)))
    model = keras.Model(inp, fc(state))

    def lstm(layer: int, suffix: str) -> list[np.ndarray]:
        key = f"l{layer}{suffix}"
        return [
            w[f"lstm.weight_ih_{key}"].T,
            w[f"lstm.weight_hh_{key}"].T,
            w[f"lstm.bias_ih_{key}"] + w[f"lstm.bias_hh_{key}"],
        ]

    for layer, bi in ((0, bi1), (1, bi2)):
        bi.forward_layer.set_weights(lstm(layer, ""))
        bi.backward_layer.set_weights(lstm(layer, "_reverse"))
    gru.set_weights(
        [
            _gru_gates_to_keras(w["gru.weight_ih_l0"]).T,
            _gru_gates_to_keras(w["gru.weight_hh_l0"]).T,
            np.stack(
                [_gru_gates_to_keras(w["gru.bias_ih_l0"]), _gru_gates_to_keras(w["gru.bias_hh_l0"])]
            ),
        ]
    )
    fc.set_weights([w["fc.weight"].T, w["fc.bias"]])
    return model


# --------------------------------------------------------------------------- videos

VIDEO_SIZES = {"T": 3, "S": 8, "C": 4, "H": 5}  # frames, frame size, conv channels, LSTM units


def video_weights(seed: int = 7) -> dict[str, np.ndarray]:
    """A per-frame CNN (conv 3x3 -> ReLU -> global average), an LSTM over frames, a dense (H -> 2)."""
    rng = np.random.default_rng(seed)
    c, h = VIDEO_SIZES["C"], VIDEO_SIZES["H"]
    w = {
        "conv.weight": rng.standard_normal((c, 3, 3, 3)) * 0.5,
        "conv.bias": rng.standard_normal(c) * 0.1,
        "lstm.weight_ih_l0": rng.standard_normal((4 * h, c)) * 0.5,
        "lstm.weight_hh_l0": rng.standard_normal((4 * h, h)) * 0.5,
        "lstm.bias_ih_l0": rng.standard_normal(4 * h) * 0.1,
        "lstm.bias_hh_l0": rng.standard_normal(4 * h) * 0.1,
        "fc.weight": rng.standard_normal((2, h)),
        "fc.bias": rng.standard_normal(2) * 0.1,
    }
    return {k: v.astype(np.float32) for k, v in w.items()}


def video_native(name: str, x: np.ndarray) -> np.ndarray:
    """A canonical video ``(N, T, C, H, W)`` as the framework's model takes it."""
    return np.ascontiguousarray(np.moveaxis(x, 2, -1) if name == "keras" else x)


def video_net(name: str, w: dict[str, np.ndarray]) -> Any:
    """The same video classifier in both frameworks.

    PyTorch: ``conv``/``relu``/``pool`` run on the frames folded into the
    batch (``(N*T, C, H, W)``), then ``nn.LSTM(batch_first=True)`` and ``fc``
    on its last step; input ``(N, T, C, H, W)``. Keras: a functional per-frame
    model (``fconv``, ``frelu``, ``fgap``) inside ``TimeDistributed`` ``td``,
    then ``LSTM`` ``lstm`` and ``Dense`` ``fc``; input ``(N, T, H, W, C)``.
    """
    return _torch_video(w) if name == "torch" else _keras_video(w)


def _torch_video(w: dict[str, np.ndarray]) -> Any:
    import torch
    from torch import nn

    c, h = VIDEO_SIZES["C"], VIDEO_SIZES["H"]

    class VideoNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, c, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.lstm = nn.LSTM(c, h, batch_first=True)
            self.fc = nn.Linear(h, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, t = x.shape[:2]
            f = self.pool(self.relu(self.conv(x.flatten(0, 1)))).view(n, t, -1)
            y, _ = self.lstm(f)
            return self.fc(y[:, -1])

    net = VideoNet().eval()
    net.load_state_dict({k: torch.as_tensor(v) for k, v in w.items()})
    return net


def _keras_video(w: dict[str, np.ndarray]) -> Any:
    import keras

    t, s, c, h = VIDEO_SIZES["T"], VIDEO_SIZES["S"], VIDEO_SIZES["C"], VIDEO_SIZES["H"]
    frame = keras.Input((s, s, 3))
    conv = keras.layers.Conv2D(c, 3, padding="same", name="fconv")
    y = keras.layers.GlobalAveragePooling2D(name="fgap")(
        keras.layers.ReLU(name="frelu")(conv(frame))
    )
    cnn = keras.Model(frame, y, name="cnn")
    inp = keras.Input((t, s, s, 3))
    lstm = keras.layers.LSTM(h, name="lstm")
    fc = keras.layers.Dense(2, name="fc")
    model = keras.Model(inp, fc(lstm(keras.layers.TimeDistributed(cnn, name="td")(inp))))
    conv.set_weights(_keras_conv(w["conv.weight"], w["conv.bias"]))
    lstm.set_weights(
        [
            w["lstm.weight_ih_l0"].T,
            w["lstm.weight_hh_l0"].T,
            w["lstm.bias_ih_l0"] + w["lstm.bias_hh_l0"],
        ]
    )
    fc.set_weights([w["fc.weight"].T, w["fc.bias"]])
    return model
