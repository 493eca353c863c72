"""The PyTorch backend: what only PyTorch has, against hand-computed answers.

The contract every backend keeps (verbs, invariants, errors) is checked once
for both frameworks in ``tests/backends/test_contract.py``; this file adds
PyTorch's own cases: containers and module kinds, in-place ops, hooks and
modes, early stop, BatchNorm statistics, ``.grad``, tensors on other devices
and dtypes. Shapes use C, H and W that all differ, so a layout bug cannot
hide. Expected values come from NumPy on hand-set weights, from finite
differences in float64, or from the same computation done another way.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from multiviz.backends import backend_by_name, get_backend  # noqa: E402
from multiviz.errors import InputShapeError  # noqa: E402
from tests.frameworks import kit  # noqa: E402

pytestmark = pytest.mark.torch

B = backend_by_name("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# --------------------------------------------------------------------------- helpers


KIT = kit("torch")  # the state every backend call must leave as it was (shared with the contract)


def model_state(model):
    return KIT.state(model)


def assert_unchanged(model, before):
    KIT.assert_same(before, KIT.state(model))


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Counter(nn.Module):
    """Counts its calls; raises when armed (to prove it did not run).

    The count and the switch live in a holder object, not in plain attributes
    of the module: a plain attribute is part of the model's configuration, and
    changing one makes the next capture count calls again with a full pass.
    """

    def __init__(self):
        super().__init__()
        self.log = SimpleNamespace(calls=0, armed=False)

    def forward(self, x):
        self.log.calls += 1
        if self.log.armed:
            raise RuntimeError("boom")
        return x


class Twice(nn.Module):
    """``scale`` is called twice: y1 = 2x, y2 = 2 (y1 + 1); then ``tail``."""

    def __init__(self):
        super().__init__()
        self.scale = Scale(2.0)
        self.tail = Counter()

    def forward(self, x):
        return self.tail(self.scale(self.scale(x) + 1))


def conv1x1(weight, bias):
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(weight[:, :, None, None]))
        conv.bias.copy_(torch.as_tensor(bias))
    return conv


def np_conv1x1(x, weight, bias):
    return np.einsum("oc,nchw->nohw", weight, x) + bias[None, :, None, None]


W2x3 = np.array([[1.0, -2.0, 0.5], [-1.0, 0.25, 3.0]], np.float32)
B2 = np.array([0.1, -0.3], np.float32)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(4, 4, 3, padding=1), bn=nn.BatchNorm2d(4), act=nn.ReLU(inplace=True)
            )
        )
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.drop(self.block(self.stem(x))))))


@pytest.fixture
def cnn():
    net = SmallCNN()
    with torch.no_grad():
        net.block.bn.running_mean.uniform_(-0.5, 0.5)
        net.block.bn.running_var.uniform_(0.5, 2.0)
    return net.train()


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(2, 3, 6, 7)).astype(np.float32)


# --------------------------------------------------------------------------- owns, layout


def test_owns_modules_but_not_keras_or_others():
    keras_like = type("Functional", (nn.Module,), {"__module__": "keras.src.models.functional"})
    sub = type("MyKerasModel", (keras_like,), {"__module__": "user_code"})
    assert B.owns(nn.Conv2d(3, 4, 3)) and B.owns(SmallCNN())
    assert not B.owns(keras_like()) and not B.owns(sub())
    assert not B.owns(object()) and not B.owns(np.zeros(3))
    assert get_backend(SmallCNN()).name == "torch"
    assert B.input_layout(SmallCNN()) == "channels_first"


# --------------------------------------------------------------------------- layers


def test_layers_names_types_kinds_params(cnn):
    infos = {i.name: i for i in B.layers(cnn)}
    assert list(infos) == [
        "stem", "block", "block.conv", "block.bn", "block.act", "drop", "pool", "flat", "fc",
    ]  # fmt: skip
    assert [infos[n].type for n in ("stem", "block", "block.bn", "pool", "fc")] == [
        "Conv2d", "Sequential", "BatchNorm2d", "AdaptiveAvgPool2d", "Linear",
    ]  # fmt: skip
    kinds = {n: i.kind for n, i in infos.items()}
    assert kinds == {
        "stem": "conv", "block": "container", "block.conv": "conv", "block.bn": "norm",
        "block.act": "activation", "drop": "other", "pool": "pool", "flat": "other", "fc": "dense",
    }  # fmt: skip
    params = {n: i.params for n, i in infos.items()}
    assert params == {
        "stem": 3 * 4 * 9 + 4, "block": 0, "block.conv": 4 * 4 * 9 + 4, "block.bn": 8,
        "block.act": 0, "drop": 0, "pool": 0, "flat": 0, "fc": 4 * 5 + 5,
    }  # fmt: skip
    assert all(i.shape is None for i in infos.values())


def test_layers_input_shape_fills_shapes_without_side_effects(cnn):
    before = model_state(cnn)
    shapes = {i.name: i.shape for i in B.layers(cnn, input_shape=(3, 6, 7))}
    assert shapes["stem"] == (None, 4, 6, 7)
    assert shapes["block"] == shapes["block.act"] == (None, 4, 6, 7)
    assert shapes["pool"] == (None, 4, 1, 1)
    assert shapes["flat"] == (None, 4)
    assert shapes["fc"] == (None, 5)
    assert_unchanged(cnn, before)
    with pytest.raises(InputShapeError, match=r"\(N, 3, H, W\)"):
        B.layers(cnn, input_shape=(5, 6, 7))


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (nn.Conv1d(2, 3, 3), "conv"),
        (nn.Conv3d(2, 3, 3), "conv"),
        (nn.ConvTranspose2d(2, 3, 3), "conv"),
        (nn.Linear(2, 3), "dense"),
        (nn.BatchNorm1d(3), "norm"),
        (nn.InstanceNorm2d(3), "norm"),
        (nn.GroupNorm(1, 3), "norm"),
        (nn.LayerNorm(3), "norm"),
        (nn.GELU(), "activation"),
        (nn.Sigmoid(), "activation"),
        (nn.Softmax(dim=1), "activation"),
        (nn.LeakyReLU(), "activation"),
        (nn.MaxPool2d(2), "pool"),
        (nn.AdaptiveMaxPool1d(1), "pool"),
        (nn.AvgPool3d(2), "pool"),
        (nn.Sequential(nn.ReLU()), "container"),
        (nn.MultiheadAttention(4, 2), "container"),  # has an out_proj child
        (nn.Dropout(), "other"),
        (nn.Identity(), "other"),
    ],
)
def test_kind_from_class(module, kind):
    from multiviz.backends.torch.layers import kind_of

    assert kind_of(module) == kind


def test_kind_of_foreign_norm_by_class_name():
    torchvision = pytest.importorskip("torchvision")
    from multiviz.backends.torch.layers import kind_of

    assert kind_of(torchvision.ops.FrozenBatchNorm2d(4)) == "norm"


# --------------------------------------------------------------------------- capture values


def test_capture_identity_returns_a_copy_of_the_input(x):
    acts = B.capture(nn.Sequential(nn.Identity()), x, ["0"])
    np.testing.assert_array_equal(acts["0"], x)
    assert not np.shares_memory(acts["0"], x)
    xt = torch.from_numpy(x.copy())
    out = B.capture(nn.Sequential(nn.Identity()), xt, ["0"])["0"]
    assert not np.shares_memory(out, xt.numpy())


def test_capture_is_a_copy_despite_inplace_relu_after(x):
    net = nn.Sequential(conv1x1(W2x3, B2), nn.ReLU(inplace=True))
    conv_out = B.capture(net, x, ["0"])["0"]
    expected = np_conv1x1(x, W2x3, B2)
    assert (conv_out < 0).any(), "the in-place ReLU rewrote the captured conv output"
    np.testing.assert_allclose(conv_out, expected, rtol=1e-5, atol=1e-6)


def test_capture_does_not_change_the_callers_input():
    net = nn.Sequential(nn.ReLU(inplace=True))  # rewrites whatever tensor it receives
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    xt = torch.tensor(x)
    np.testing.assert_array_equal(B.capture(net, x, ["0"])["0"], [[0.0, 2.0, 0.0]])
    B.capture(net, xt, ["0"])
    np.testing.assert_array_equal(x, [[-1.0, 2.0, -3.0]])
    np.testing.assert_array_equal(xt.numpy(), [[-1.0, 2.0, -3.0]])


class Split(nn.Module):
    def forward(self, x):
        return x[:, :1], (x[:, 1:] * 2, None), "not a tensor"


class Stats(nn.Module):
    def forward(self, x):
        return {"mean": x.mean(dim=1), "max": x.amax(dim=1), "note": 3}


def test_tuple_and_dict_outputs(x):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.split, self.stats = Split(), Stats()

        def forward(self, x):
            a, (b, _), _ = self.split(x)
            return self.stats(torch.cat([a, b], dim=1))

    acts = B.capture(Net(), x, ["split", "stats"])
    assert list(acts) == ["split[0]", "split[1][0]", "stats[mean]", "stats[max]"]
    np.testing.assert_array_equal(acts["split[0]"], x[:, :1])
    np.testing.assert_allclose(acts["split[1][0]"], 2 * x[:, 1:])
    both = np.concatenate([x[:, :1], 2 * x[:, 1:]], axis=1)
    np.testing.assert_allclose(acts["stats[mean]"], both.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(acts["stats[max]"], both.max(axis=1))


def test_early_stop_skips_later_modules_and_keeps_every_call(x):
    net = Twice()
    first = B.capture(net, x, ["scale"])
    assert net.tail.log.calls == 1  # the first capture runs the whole pass to count calls
    net.tail.log.armed = True  # would raise if it ran
    second = B.capture(net, x, ["scale"])
    assert net.tail.log.calls == 1, "the second capture ran past the last call of 'scale'"
    assert list(second) == ["scale", "scale#1"]
    for key in first:
        np.testing.assert_array_equal(second[key], first[key])
    with pytest.raises(RuntimeError, match="boom"):  # capturing the tail does run it
        B.capture(net, x, ["tail"])


def test_early_stop_in_a_sequential(x):
    net = nn.Sequential(OrderedDict(conv=conv1x1(W2x3, B2), act=nn.ReLU(), tail=Counter()))
    B.capture(net, x, ["conv"])
    net.tail.log.armed = True
    np.testing.assert_allclose(
        B.capture(net, x, ["conv"])["conv"], np_conv1x1(x, W2x3, B2), rtol=1e-5, atol=1e-6
    )
    # a new input shape is a new combination: counted again with one full pass
    with pytest.raises(RuntimeError, match="boom"):
        B.capture(net, x[:1], ["conv"])


# --------------------------------------------------------------------------- invariants


def test_hooks_modes_and_state_restored_after_success(cnn, x):
    cnn.drop.eval()  # a module whose own flag differs from its parent's
    cnn.block.conv.register_forward_hook(lambda m, a, o: None)  # the user's own hook stays
    before = model_state(cnn)
    B.capture(cnn, x, ["stem", "block.bn", "fc"])
    B.forward(cnn, x)
    B.gradients(cnn, x, ["block.conv", "fc"], wrt_input=True)
    B.gradients(cnn, x, ["block.act"], guided=True)
    B.layers(cnn, input_shape=(3, 6, 7))
    assert_unchanged(cnn, before)
    assert len(cnn.block.conv._forward_hooks) == 1
    assert not cnn.stem._forward_hooks and not cnn.stem._forward_pre_hooks


def test_state_restored_when_forward_raises(x):
    net = nn.Sequential(OrderedDict(conv=conv1x1(W2x3, B2), bn=nn.BatchNorm2d(2), tail=Counter()))
    net.train()
    net.tail.log.armed = True
    net.conv.weight.requires_grad_(False)
    before = model_state(net)
    for call in (
        lambda: B.capture(net, x, ["conv", "tail"]),
        lambda: B.forward(net, x),
        lambda: B.gradients(net, x, ["conv"], wrt_input=True),
        lambda: B.gradients(net, x, ["bn"], guided=True),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            call()
        assert_unchanged(net, before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_eval_mode_during_the_pass_and_batchnorm_stats_unchanged(cnn, x):
    seen = []
    cnn.block.bn.register_forward_pre_hook(lambda m, a: seen.append(m.training))
    before = model_state(cnn)
    a = B.capture(cnn, x, ["drop", "fc"])
    b = B.capture(cnn, x, ["drop", "fc"])
    assert seen == [False, False]
    np.testing.assert_array_equal(a["fc"], b["fc"])  # dropout off: deterministic
    np.testing.assert_array_equal(a["drop"], B.capture(cnn, x, ["block"])["block"])
    assert_unchanged(cnn, before)  # running_mean / running_var / num_batches_tracked included
    assert cnn.block.bn.num_batches_tracked.item() == 0


# --------------------------------------------------------------------------- input errors


def test_input_must_be_numpy_or_tensor(cnn):
    with pytest.raises(InputShapeError, match=r"np\.asarray") as info:
        B.capture(cnn, [[1.0, 2.0]], ["stem"])
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError, match="astype"):
        B.forward(cnn, np.array([["a"]]))


def test_missing_batch_axis_names_x_none(cnn, x):
    with pytest.raises(InputShapeError, match=r"x\[None\] -> \(1, 3, 6, 7\)"):
        B.capture(cnn, x[0], ["stem"])


def test_missing_axis_on_one_channel_model_offers_both_fixes():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(InputShapeError, match=r"x\[None\].*x\[:, None\] -> \(4, 1, 6, 7\)"):
        B.forward(net, np.zeros((4, 6, 7), np.float32))


def test_channels_last_input_says_to_convert(cnn, x):
    before = model_state(cnn)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))  # (2, 6, 7, 3)
    with pytest.raises(InputShapeError) as info:
        B.capture(cnn, nhwc, ["fc"])
    msg = str(info.value)
    assert "(N, 3, H, W)" in msg and "'stem'" in msg and "(2, 6, 7, 3)" in msg
    assert "mv.to_channels_first(x)" in msg
    assert_unchanged(cnn, before)


def test_entry_layer_is_the_first_conv_even_when_a_linear_is_defined_first(x):
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.head(self.body(x).mean(dim=(2, 3)))

    assert B.forward(HeadFirst(), x).shape == (2, 2)
    with pytest.raises(InputShapeError, match=r"'body' \(Conv2d\).*mv\.to_channels_first\(x\)"):
        B.forward(HeadFirst(), np.moveaxis(x, 1, -1))


def test_mlp_feature_count_checked():
    with pytest.raises(InputShapeError, match=r"expects \(N, 4\)"):
        B.forward(nn.Sequential(nn.Linear(4, 2)), np.zeros((3, 5), np.float32))


# --------------------------------------------------------------------------- devices, dtypes, forward


def test_dtype_follows_the_model(x):
    net = nn.Sequential(conv1x1(W2x3, B2)).double()
    acts = B.capture(net, x, ["0"])  # float32 input, float64 model
    assert acts["0"].dtype == np.float32
    np.testing.assert_allclose(acts["0"], np_conv1x1(x.astype(np.float64), W2x3, B2), rtol=1e-6)
    img = (np.arange(2 * 3 * 6 * 7) % 256).astype(np.uint8).reshape(2, 3, 6, 7)
    np.testing.assert_allclose(
        B.forward(nn.Sequential(conv1x1(W2x3, B2)), img),
        np_conv1x1(img.astype(np.float32), W2x3, B2),
        rtol=1e-5,
    )


def test_forward_of_tuple_and_dict_outputs(x):
    class TupleNet(nn.Module):
        def forward(self, x):
            return x.sum(dim=(2, 3)), "aux"

    class DictNet(nn.Module):
        def forward(self, x):
            return {"features": x, "logits": x.mean(dim=(2, 3))}

    np.testing.assert_allclose(B.forward(TupleNet(), x), x.sum(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(B.forward(DictNet(), x), x.mean(axis=(2, 3)), rtol=1e-5)


# --------------------------------------------------------------------------- gradients


class TinyNet(nn.Module):
    """conv -> BN -> ReLU(inplace) -> conv -> avgpool -> flatten -> linear (5 classes)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv2(self.relu(self.bn(self.conv1(x)))))))


@pytest.fixture
def tiny():
    net = TinyNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
    return net.double().train()


def _score64(net, x, targets, layer=None, delta=None):
    """sum_n logits[n, t_n] in float64, eval mode, optionally adding ``delta`` to a layer's output."""
    handle = None
    if layer is not None:
        handle = getattr(net, layer).register_forward_hook(lambda m, a, o: o + delta)
    flags = [(m, m.training) for m in net.modules()]
    try:
        net.eval()
        with torch.no_grad():
            out = net(torch.as_tensor(x, dtype=torch.float64))
        return out[torch.arange(len(targets)), torch.as_tensor(targets)].sum().item()
    finally:
        for m, f in flags:
            m.training = f
        if handle is not None:
            handle.remove()


def test_gradients_match_finite_differences(tiny):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 5, 6))
    targets = np.array([4, 1])
    before = model_state(tiny)
    res = B.gradients(tiny, x, ["conv1", "conv2"], target=targets, wrt_input=True)
    assert_unchanged(tiny, before)
    np.testing.assert_array_equal(res.targets, targets)
    np.testing.assert_allclose(res.scores.sum(), _score64(tiny, x, targets), rtol=1e-5)
    eps = 1e-6
    for _ in range(6):  # the input gradient
        idx = tuple(rng.integers(s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (_score64(tiny, xp, targets) - _score64(tiny, xm, targets)) / (2 * eps)
        assert res.input_gradient[idx] == pytest.approx(fd, rel=1e-4, abs=1e-6)
    for layer in ("conv1", "conv2"):  # the layer gradients
        act = res.activations[layer]
        for _ in range(6):
            idx = tuple(rng.integers(s) for s in act.shape)
            delta = torch.zeros(act.shape, dtype=torch.float64)
            delta[idx] = eps
            fd = (
                _score64(tiny, x, targets, layer, delta) - _score64(tiny, x, targets, layer, -delta)
            ) / (2 * eps)
            assert res.gradients[layer][idx] == pytest.approx(fd, rel=1e-4, abs=1e-6), layer


def test_gradient_through_inplace_relu_is_hand_computable(x):
    net = nn.Sequential(
        conv1x1(W2x3, B2),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    w_fc = net[4].weight.detach().numpy()
    res = B.gradients(net, x, ["0"], target=np.array([2, 0]))
    conv = np_conv1x1(x, W2x3, B2)
    np.testing.assert_allclose(res.activations["0"], conv, rtol=1e-5, atol=1e-6)
    assert (res.activations["0"] < 0).any()
    # d (fc[t] . mean_hw relu(conv)) / d conv[n, c, h, w] = w_fc[t_n, c] / (H W) * (conv > 0)
    expected = w_fc[[2, 0]][:, :, None, None] / (6 * 7) * (conv > 0)
    np.testing.assert_allclose(res.gradients["0"], expected, rtol=1e-5, atol=1e-7)


def test_parameter_grads_untouched_including_existing_ones(tiny):
    tiny.fc.weight.grad = torch.full_like(tiny.fc.weight, 7.0)
    tiny.conv1.bias.requires_grad_(False)
    before = model_state(tiny)
    B.gradients(tiny, np.ones((1, 3, 5, 6)), ["conv1", "fc"], wrt_input=True)
    assert_unchanged(tiny, before)
    assert torch.equal(tiny.fc.weight.grad, torch.full_like(tiny.fc.weight, 7.0))
    assert tiny.conv2.weight.grad is None and tiny.conv1.bias.requires_grad is False


def test_log_softmax_ending_model_is_scored_on_logits(tiny):
    # nn.Softmax is the contract's (tests/backends/test_contract.py); LogSoftmax is PyTorch's own
    x = np.random.default_rng(7).normal(size=(2, 3, 5, 6))
    plain = B.gradients(tiny, x, ["conv2"], target=np.array([1, 4]), wrt_input=True)
    for final in (nn.LogSoftmax(dim=1),):
        with_softmax = nn.Sequential(OrderedDict(body=tiny, prob=final))
        res = B.gradients(with_softmax, x, ["body.conv2"], target=np.array([1, 4]), wrt_input=True)
        np.testing.assert_allclose(res.output, plain.output, rtol=1e-6)
        np.testing.assert_allclose(res.scores, plain.scores, rtol=1e-6)
        np.testing.assert_allclose(res.input_gradient, plain.input_gradient, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(
            res.gradients["body.conv2"], plain.gradients["conv2"], rtol=1e-5, atol=1e-8
        )
    probs = B.forward(
        nn.Sequential(tiny, nn.Softmax(dim=1)), x
    )  # forward still returns probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_graph_starts_at_the_first_chosen_layer(tiny):
    """Without wrt_input nothing before the first chosen layer is differentiated."""
    seen = []
    tiny.conv1.register_forward_hook(lambda m, a, o: seen.append(o.requires_grad))
    tiny.conv2.register_forward_hook(lambda m, a, o: seen.append(o.requires_grad))
    B.gradients(tiny, np.ones((1, 3, 5, 6)), ["bn"])
    assert seen == [False, True]


# --------------------------------------------------------------------------- GPU


@needs_cuda
def test_cuda_capture_and_gradients_match_cpu(tiny):
    x = np.random.default_rng(8).normal(size=(2, 3, 5, 6)).astype(np.float32)
    cpu_net = tiny.float()
    cpu = B.capture(cpu_net, x, ["conv1", "relu", "fc"])
    cpu_grad = B.gradients(cpu_net, x, ["conv2"], target=np.array([1, 2]), wrt_input=True)
    gpu_net = TinyNet().cuda()
    gpu_net.load_state_dict(cpu_net.state_dict())
    for inp in (x, torch.as_tensor(x), torch.as_tensor(x, device="cuda")):
        gpu = B.capture(gpu_net, inp, ["conv1", "relu", "fc"])
        for k in cpu:
            assert isinstance(gpu[k], np.ndarray) and gpu[k].dtype == np.float32
            np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-4, atol=1e-5)
    gpu_grad = B.gradients(gpu_net, x, ["conv2"], target=np.array([1, 2]), wrt_input=True)
    np.testing.assert_allclose(
        gpu_grad.input_gradient, cpu_grad.input_gradient, rtol=1e-3, atol=1e-6
    )
    np.testing.assert_allclose(
        gpu_grad.gradients["conv2"], cpu_grad.gradients["conv2"], rtol=1e-3, atol=1e-6
    )
    np.testing.assert_allclose(B.forward(gpu_net, x), B.forward(cpu_net, x), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_cuda_half_model_returns_float32(x):
    net = nn.Sequential(conv1x1(W2x3, B2), nn.ReLU(inplace=True)).cuda().half()
    acts = B.capture(net, x, ["0", "1"])
    assert acts["0"].dtype == np.float32 and (acts["0"] < 0).any()
    np.testing.assert_allclose(acts["0"], np_conv1x1(x, W2x3, B2), rtol=1e-2, atol=1e-2)
    net.train()
    before = model_state(net)
    B.capture(net, x, ["0"])  # early-stopped path on the GPU
    assert_unchanged(net, before)
