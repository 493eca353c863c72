"""Layer pairing and parameter layout conversion, without any framework.

Layouts are checked element by element against index arithmetic written out
here (a Keras kernel element ``k[i, j, c, o]`` is the PyTorch weight element
``w[o, c, i, j]``), with shapes whose every axis differs.
"""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.core.weight_layouts import LayerParams, from_canonical, to_canonical
from multiviz.errors import LayerNotFoundError, TransferError
from multiviz.parity.pairing import LayerSpec, pair_layers, param_signature


def _keras(name, op, **arrays):
    return LayerParams(name, op, op, "keras", {k: np.asarray(v) for k, v in arrays.items()})


# --------------------------------------------------------------------------- layouts


def test_conv_kernel_layout_elementwise():
    k = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (kh, kw, I, O)
    w = to_canonical(_keras("c", "conv", kernel=k))["weight"]
    assert w.shape == (5, 4, 2, 3)
    assert w[3, 1, 0, 2] == k[0, 2, 1, 3]
    back = from_canonical({"weight": w}, _keras("c", "conv", kernel=np.zeros_like(k)))
    assert np.array_equal(back["kernel"], k)


def test_conv1d_kernel_layout():
    k = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)  # (k, I, O)
    w = to_canonical(_keras("c", "conv", kernel=k))["weight"]
    assert w.shape == (5, 4, 3) and w[4, 2, 1] == k[1, 2, 4]


def test_depthwise_kernel_layout():
    c, m = 3, 2
    k = np.arange(4 * 5 * c * m, dtype=np.float32).reshape(4, 5, c, m)  # (kh, kw, C, m)
    w = to_canonical(_keras("d", "depthwise", kernel=k))["weight"]
    assert w.shape == (c * m, 1, 4, 5)
    for ch in range(c):
        for j in range(m):  # PyTorch output channel ch*m + j is input ch's j-th filter
            assert np.array_equal(w[ch * m + j, 0], k[:, :, ch, j])
    back = from_canonical({"weight": w}, _keras("d", "depthwise", kernel=np.zeros_like(k)))
    assert np.array_equal(back["kernel"], k)


def test_dense_after_channels_last_flatten_permutes_rows():
    c, h, w, out = 3, 2, 4, 5
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(out, c * h * w)).astype(np.float32)  # PyTorch: columns (C, H, W)
    target = _keras("fc", "dense", kernel=np.zeros((h * w * c, out), np.float32))
    target.config["flatten_from"] = (h, w, c)
    kernel = from_canonical({"weight": weight}, target)["kernel"]
    # the same function: x_nchw . W^T == x_nhwc-flattened . kernel
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    torch_out = x.reshape(2, -1) @ weight.T
    keras_out = np.moveaxis(x, 1, -1).reshape(2, -1) @ kernel
    np.testing.assert_allclose(keras_out, torch_out, rtol=1e-5, atol=1e-6)
    back = to_canonical(
        LayerParams("fc", "Dense", "dense", "keras", {"kernel": kernel}, target.config)
    )
    assert np.array_equal(back["weight"], weight)


def test_batchnorm_names_and_identity_fill():
    target = _keras(
        "bn", "batchnorm", gamma=np.zeros(3), beta=np.zeros(3), moving_mean=np.zeros(3),
        moving_variance=np.zeros(3),
    )  # fmt: skip
    src = {"running_mean": np.arange(3.0), "running_var": np.arange(3.0) + 1}  # affine=False
    out = from_canonical(src, target)
    assert out["gamma"].tolist() == [1, 1, 1] and out["beta"].tolist() == [0, 0, 0]
    assert out["moving_variance"].tolist() == [1, 2, 3]


def test_bias_with_nowhere_to_go_is_an_error_unless_zero():
    target = _keras("c", "conv", kernel=np.zeros((1, 1, 2, 3)))
    w = np.ones((3, 2, 1, 1))
    assert set(from_canonical({"weight": w, "bias": np.zeros(3)}, target)) == {"kernel"}
    with pytest.raises(TransferError, match="use_bias=True"):
        from_canonical({"weight": w, "bias": np.ones(3)}, target)


def test_shape_mismatch_and_unsupported_messages():
    target = _keras("c", "conv", kernel=np.zeros((3, 3, 2, 4)))
    with pytest.raises(
        TransferError, match=r"source has \(4, 2, 5, 5\), the target \(4, 2, 3, 3\)"
    ):
        from_canonical({"weight": np.zeros((4, 2, 5, 5))}, target)
    lstm = LayerParams("lstm", "LSTM", "unsupported", "keras", {"kernel": np.zeros((3, 4))})
    with pytest.raises(TransferError, match=r"LSTM.*Supported keras layers: Conv1D"):
        to_canonical(lstm)


# --------------------------------------------------------------------------- pairing


def _conv(name, shape, kind="conv"):
    return LayerSpec(name, kind, "Conv", ("conv", shape))


def _bn(name, c):
    return LayerSpec(name, "norm", "BatchNorm", ("batchnorm", (c,)))


def test_param_signature_unifies_depthwise_and_grouped_conv():
    dw = _keras("dw", "depthwise", kernel=np.zeros((3, 3, 8, 2)))
    torch_dw = LayerParams("dw", "Conv2d", "conv", "torch", {"weight": np.zeros((16, 1, 3, 3))})
    assert param_signature(dw) == param_signature(torch_dw) == ("conv", (16, 1, 3, 3))
    assert param_signature(LayerParams("r", "ReLU", "none", "torch")) is None


def test_structural_pairing_with_one_sided_layers():
    torch_side = [
        _conv("conv1", (8, 3, 7, 7)),
        _bn("bn1", 8),
        LayerSpec("relu", "activation", "ReLU"),
        _conv("layer.conv", (8, 8, 3, 3)),
        _bn("layer.bn", 8),
        LayerSpec("layer.relu", "activation", "ReLU"),
        LayerSpec("fc", "dense", "Linear", ("dense", (4, 8))),
    ]
    keras_side = [
        LayerSpec("pad1", "other", "ZeroPadding2D"),
        _conv("k_conv1", (8, 3, 7, 7)),
        _bn("k_bn1", 8),
        LayerSpec("k_relu", "activation", "ReLU"),
        LayerSpec("pad2", "other", "ZeroPadding2D"),
        _conv("k_conv2", (8, 8, 3, 3)),
        _bn("k_bn2", 8),
        LayerSpec("add", "other", "Add"),
        LayerSpec("k_out", "activation", "ReLU"),
        LayerSpec("extra", "conv", "Conv", ("conv", (2, 8, 1, 1))),
        LayerSpec("k_fc", "dense", "Dense", ("dense", (4, 8))),
    ]
    result = pair_layers(torch_side, keras_side, labels=("torch", "keras"))
    assert result.strategy == "structure"
    assert [(p.a, p.b) for p in result.pairs] == [
        ("conv1", "k_conv1"),
        ("bn1", "k_bn1"),
        ("relu", "k_relu"),
        ("layer.conv", "k_conv2"),
        ("layer.bn", "k_bn2"),
        ("layer.relu", "k_out"),
        ("fc", "k_fc"),
    ]
    reasons = {u.name: u.reason for u in result.unpaired}
    assert set(reasons) == {"pad1", "pad2", "add", "extra"}
    assert "no zeropadding layer in torch before 'conv1'" in reasons["pad1"]
    assert "between 'layer.bn' and 'fc'" in reasons["add"]
    assert "weight shape (2, 8, 1, 1)" in reasons["extra"]


def test_ambiguous_parameter_free_layers_are_reported_not_guessed():
    a = [
        _conv("c1", (4, 3, 3, 3)),
        LayerSpec("r1", "activation"),
        LayerSpec("r2", "activation"),
        _conv("c2", (4, 4, 1, 1)),
    ]
    b = [_conv("k1", (4, 3, 3, 3)), LayerSpec("act", "activation"), _conv("k2", (4, 4, 1, 1))]
    result = pair_layers(a, b, labels=("torch", "keras"))
    assert [(p.a, p.b) for p in result.pairs] == [("c1", "k1"), ("c2", "k2")]
    assert {u.name for u in result.unpaired} == {"r1", "r2", "act"}
    assert all(
        "ambiguous: 2 activation layers in torch but 1 in keras" in u.reason
        for u in result.unpaired
    )


def test_same_shapes_different_order_pair_by_position_with_note():
    a = [_conv("c1", (4, 3, 3, 3)), _conv("c2", (6, 4, 3, 3))]
    b = [_conv("k1", (4, 3, 3, 3)), _conv("k2", (6, 4, 5, 5))]  # a kernel-size porting bug
    result = pair_layers(a, b)
    assert [(p.a, p.b) for p in result.pairs] == [("c1", "k1"), ("c2", "k2")]
    assert "parameter shapes differ" in result.pairs[1].note


def test_names_shortcut_and_explicit_pairs():
    a = [_conv("conv1", (4, 3, 3, 3)), LayerSpec("relu1", "activation"), LayerSpec("gap", "pool")]
    b = [_conv("conv1", (4, 3, 3, 3)), LayerSpec("relu1", "activation"), LayerSpec("gap", "pool")]
    result = pair_layers(a, b)
    assert result.strategy == "names" and len(result.pairs) == 3 and not result.unpaired

    result = pair_layers(a, b, {"relu1": "relu1", "conv1": "conv1"})
    assert [(p.a, p.b, p.how) for p in result.pairs] == [
        ("conv1", "conv1", "explicit"),
        ("relu1", "relu1", "explicit"),
    ]
    assert [u.name for u in result.unpaired] == ["gap", "gap"]
    result = pair_layers(a, b, [("gap", "relu1")])
    assert [(p.a, p.b) for p in result.pairs] == [("gap", "relu1")]
    with pytest.raises(LayerNotFoundError, match=r"'conv_1'.*Closest: \['conv1'\]"):
        pair_layers(a, b, {"conv_1": "conv1"})
    with pytest.raises(ValueError, match="`pairs` must be"):
        pair_layers(a, b, "order")


def test_pairing_prints():
    a = [_conv("conv1", (4, 3, 3, 3))]
    b = [_conv("c", (4, 3, 3, 3)), LayerSpec("pad", "other", "ZeroPadding2D")]
    text = str(pair_layers(a, b, labels=("torch", "keras")))
    assert (
        "conv1  <->  c" in text and "[1] pad: no zeropadding layer in torch after 'conv1'" in text
    )
