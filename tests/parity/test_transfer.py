"""Weight transfer between PyTorch and Keras, checked by outputs and bit equality.

The networks cover every supported layer type: a conv with bias, BatchNorm,
a grouped conv, a depthwise conv (``groups == C``, multiplier 2), a Flatten
of a channels-last map into a Dense (the row permutation), and 1-D conv +
BatchNorm1d. Input ``(2, 3, 5, 6)``: C, H and W all differ.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.errors import TransferError
from multiviz.parity.transfer import read_params

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
nn = torch.nn

pytestmark = pytest.mark.both

C, H, W = 3, 5, 6


class TorchNet(nn.Module):
    def __init__(self, fc_out: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=2, bias=False)
        self.dw = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.bn2 = nn.BatchNorm2d(24)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(24 * H * W, fc_out)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.bn2(self.dw(self.grouped(x)))
        return self.fc(self.flatten(x))


def keras_net(eps: float = 1e-5, fc_out: int = 7, grouped_bias: bool = False):
    L = keras.layers
    inp = keras.Input((H, W, C))
    x = L.Conv2D(8, 3, padding="same", name="k_conv")(inp)
    x = L.BatchNormalization(epsilon=eps, momentum=0.9, name="k_bn")(x)
    x = L.ReLU(name="k_relu")(x)
    x = L.Conv2D(12, 3, padding="same", groups=2, use_bias=grouped_bias, name="k_grouped")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="k_dw")(x)
    x = L.BatchNormalization(epsilon=eps, momentum=0.9, name="k_bn2")(x)
    x = L.Flatten(name="k_flatten")(x)
    return keras.Model(inp, L.Dense(fc_out, name="k_fc")(x))


def randomize_torch(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return model.eval()


def randomize_keras(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for v in layer.weights:
            shape = tuple(v.shape)
            value = (
                rng.random(shape) + 0.5 if "variance" in v.name else rng.normal(size=shape) * 0.3
            )
            v.assign(value.astype(np.float32))
    return model


def torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def keras_out(model, x):
    return np.asarray(model(np.moveaxis(x, 1, -1), training=False))


def keras_weights(model):
    return {v.path: np.array(v.numpy()) for v in model.weights}


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(2, C, H, W)).astype(np.float32)


def test_torch_to_keras_same_outputs(x):
    tm, km = randomize_torch(TorchNet()), keras_net()
    report = mv.transfer_weights(tm, km)
    assert [(p.a, p.b) for p in report.pairs] == [
        ("conv", "k_conv"),
        ("bn", "k_bn"),
        ("grouped", "k_grouped"),
        ("dw", "k_dw"),
        ("bn2", "k_bn2"),
        ("fc", "k_fc"),
    ]
    assert report.written and not report.notes
    fc = next(p for p in read_params(km) if p.name == "k_fc")
    assert fc.config["flatten_from"] == (H, W, 24)  # the Dense rows were permuted
    np.testing.assert_allclose(keras_out(km, x), torch_out(tm, x), rtol=1e-5, atol=1e-5)


def test_keras_to_torch_same_outputs(x):
    km, tm = randomize_keras(keras_net(), seed=3), TorchNet().eval()
    mv.transfer_weights(km, tm)
    np.testing.assert_allclose(torch_out(tm, x), keras_out(km, x), rtol=1e-5, atol=1e-5)


def test_round_trip_is_bit_identical():
    original = randomize_torch(TorchNet(), seed=5)
    km = keras_net()
    mv.transfer_weights(original, km)
    copy = randomize_torch(TorchNet(), seed=6)  # different values everywhere first
    mv.transfer_weights(km, copy)
    want, got = original.state_dict(), copy.state_dict()
    for key in want:
        if not key.endswith("num_batches_tracked"):
            assert np.array_equal(got[key].numpy(), want[key].numpy()), key


def test_conv1d_and_batchnorm1d():
    tm = randomize_torch(nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), nn.ReLU()))
    inp = keras.Input((9, 4))
    y = keras.layers.Conv1D(6, 3, padding="same")(inp)
    y = keras.layers.BatchNormalization(epsilon=1e-5)(y)
    km = keras.Model(inp, keras.layers.ReLU()(y))
    mv.transfer_weights(tm, km)
    x1 = np.random.default_rng(2).normal(size=(2, 4, 9)).astype(np.float32)
    np.testing.assert_allclose(keras_out(km, x1), np.moveaxis(torch_out(tm, x1), 1, -1), atol=1e-5)


def test_batchnorm_epsilon_mismatch_is_refused_with_the_fix(x):
    tm, km = randomize_torch(TorchNet()), keras_net(eps=1e-3)
    before = keras_weights(km)
    with pytest.raises(TransferError) as err:
        mv.transfer_weights(tm, km)
    msg = str(err.value)
    assert "nothing was written" in msg and msg.count("epsilon differs") == 2
    assert "BatchNormalization(epsilon=1e-05)" in msg and "check_config=False" in msg
    after = keras_weights(km)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    mv.transfer_weights(tm, km, check_config=False)
    diff = np.abs(keras_out(km, x) - torch_out(tm, x)).max()
    assert 1e-5 < diff < 1.0  # copied, and the epsilon really changes the output


def test_momentum_is_converted_and_noted():
    tm = randomize_torch(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.1)))
    inp = keras.Input((H, W, 3))
    y = keras.layers.Conv2D(4, 1)(inp)
    km = keras.Model(inp, keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(y))
    assert not mv.transfer_weights(tm, km).notes  # 0.1 in PyTorch is 0.9 in Keras
    km.layers[-1].momentum = 0.99
    notes = mv.transfer_weights(tm, km).notes
    assert len(notes) == 1 and "momentum=0.99 (= PyTorch momentum 0.01)" in notes[0]


def test_untransferable_layer_is_named():
    tm = nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm([4, H, W]))
    inp = keras.Input((H, W, 3))
    y = keras.layers.Conv2D(4, 1)(inp)
    km = keras.Model(inp, keras.layers.LayerNormalization(axis=[1, 2, 3], name="ln")(y))
    with pytest.raises(TransferError, match=r"'1' \(LayerNorm, torch\).*Supported torch layers"):
        mv.transfer_weights(tm, km)
    report = mv.transfer_weights(tm, km, strict=False)
    assert [p.a for p in report.pairs] == ["0"]
    assert {u.name for u in report.skipped} == {"1", "ln"}


def test_a_late_error_leaves_the_target_untouched():
    tm, km = randomize_torch(TorchNet(fc_out=7)), keras_net(fc_out=8)
    before = keras_weights(km)
    with pytest.raises(TransferError, match=r"Shape mismatch for 'k_fc'.weight"):
        mv.transfer_weights(tm, km, pairs={"conv": "k_conv", "bn": "k_bn", "fc": "k_fc"})
    after = keras_weights(km)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bias_without_a_place_is_an_error():
    tm = randomize_torch(nn.Sequential(nn.Conv2d(3, 4, 3)))
    inp = keras.Input((H, W, 3))
    km = keras.Model(inp, keras.layers.Conv2D(4, 3, use_bias=False)(inp))
    with pytest.raises(TransferError, match="use_bias=True"):
        mv.transfer_weights(tm, km)


def test_dry_run_and_report(x):
    tm, km = randomize_torch(TorchNet()), keras_net()
    before = keras_weights(km)
    report = mv.transfer_weights(tm, km, dry_run=True)
    assert not report.written and len(report.pairs) == 6
    assert all(np.array_equal(before[k], v) for k, v in keras_weights(km).items())
    text = str(report)
    assert text.startswith("TransferReport torch -> keras: would copy (dry run) 6 layers")
    assert report.to_dict()["pairs"][0] == ["conv", "k_conv"]


def test_explicit_pairs_copy_only_those():
    tm, km = randomize_torch(TorchNet()), keras_net()
    before = keras_weights(km)
    report = mv.transfer_weights(tm, km, pairs=[("conv", "k_conv")])
    assert len(report.pairs) == 1
    after = keras_weights(km)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {"k_conv/kernel", "k_conv/bias"}
    with pytest.raises(mv.LayerNotFoundError, match="Closest"):
        mv.transfer_weights(tm, km, pairs={"conv": "k_cnv"})


def test_builtin_models_pair_by_name():
    tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")
    report = mv.transfer_weights(tm, km)
    assert [p.b for p in report.pairs] == ["conv1", "conv2", "conv3", "fc"]
    img = np.random.default_rng(0).random((2, 3, 16, 20)).astype(np.float32)
    np.testing.assert_allclose(keras_out(km, img), torch_out(tm, img), rtol=1e-5, atol=1e-5)


def test_one_pairs_mapping_serves_transfer_and_compare():
    """Weightless pairs (ReLU, pooling) are skipped and reported; compare then passes."""
    tm, km = mv.builtin_model("torch", weights=None), mv.builtin_model("keras", weights=None)
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "gap", "fc"]
    pairs = {n: n for n in names}
    report = mv.transfer_weights(tm, km, pairs=pairs)
    assert [p.a for p in report.pairs] == ["conv1", "conv2", "conv3", "fc"]
    assert [(p.a, p.b) for p in report.weightless] == [
        (n, n) for n in names if n[:-1] in ("relu", "pool") or n == "gap"
    ]
    assert report.to_dict()["weightless"][0] == ["relu1", "relu1"]
    assert "Without parameters, nothing to copy (6):" in str(report)
    img = np.random.default_rng(0).random((2, 3, 16, 20)).astype(np.float32)
    compared = mv.compare(tm, km, img, pairs=pairs)  # the other framework is the right value
    assert compared.passed and len(compared.rows) == len(names)
    with pytest.raises(TransferError, match=r"`pairs` pairs torch 'relu1', which has no param"):
        mv.transfer_weights(tm, km, pairs={"relu1": "conv1"})
