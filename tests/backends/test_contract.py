"""The backend contract, once per framework: every verb, every invariant, every error.

Each body runs twice through the ``framework`` fixture (``tests/conftest.py``):
on the PyTorch adapter and on the Keras one, with the same small models built
from the same NumPy weights (``tests/frameworks.py``). Expected values are
independent of multiviz: NumPy on hand-set weights, the closed form of a tiny
net, float64 finite differences, the same batch one sample at a time, the
same model without its softmax. Inputs are (N, 3, 6, 7): C, H and W all
differ, so a layout bug cannot hide. The target errors are compared word for
word: both adapters raise the same message for the same bad target.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.backends import get_backend
from multiviz.errors import InputShapeError, LayerNotFoundError, TargetError
from tests.frameworks import C, H, W, expected_1x1, hand_weights, tanh_logits, tanh_weights


def _x(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, C, H, W)).astype(np.float32)


def _sample_shape(kit) -> tuple[int, ...]:
    return kit.native(_x(1)).shape[1:]


# --------------------------------------------------------------------------- owns, layers


def test_owns_its_models_and_layers_only(framework):
    kit = framework
    model = kit.one_by_one(hand_weights())
    assert kit.backend.owns(model)
    conv = dict(_layers_of(kit, model))["conv"]
    assert kit.backend.owns(conv)  # a single layer is a model too
    assert not kit.backend.owns(object()) and not kit.backend.owns(np.zeros(3))
    assert get_backend(model).name == kit.name
    assert kit.backend.input_layout(model) == kit.layout


def _layers_of(kit, model) -> list[tuple[str, object]]:
    if kit.name == "torch":
        return list(model.named_modules())
    return [(layer.name, layer) for layer in model.layers]


def test_layers_names_kinds_types_params_and_canonical_shapes(framework):
    kit = framework
    infos = kit.backend.layers(kit.one_by_one(hand_weights()), input_shape=_sample_shape(kit))
    assert [i.name for i in infos] == ["conv", "relu", "gap", "fc"]  # no root, no InputLayer
    assert [i.kind for i in infos] == ["conv", "activation", "pool", "dense"]
    assert tuple(i.type for i in infos) == kit.types
    assert [i.shape for i in infos] == [(None, 4, H, W), (None, 4, H, W), (None, 4), (None, 2)]
    assert [i.params for i in infos] == [C * 4 + 4, 0, 0, 4 * 2 + 2]
    assert [i.base for i in infos] == [i.name for i in infos]


# --------------------------------------------------------------------------- capture, forward


def test_capture_and_forward_equal_numpy_on_hand_set_weights(framework):
    kit = framework
    w = hand_weights()
    model = kit.one_by_one(w)
    x = _x()
    acts = kit.backend.capture(model, kit.native(x), ["conv", "relu", "gap", "fc"])
    expected = expected_1x1(x, w)
    assert list(acts) == ["conv", "relu", "gap", "fc"]
    for name, want in expected.items():
        assert acts[name].dtype == np.float32 and acts[name].flags.c_contiguous, name
        np.testing.assert_allclose(acts[name], want, rtol=1e-5, atol=1e-5)
    out = kit.backend.forward(model, kit.native(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected["fc"], rtol=1e-5, atol=1e-5)


def test_public_capture_kind_filter_and_framework(framework):
    kit = framework
    w = hand_weights()
    model = kit.one_by_one(w)
    x = _x()
    acts = mv.capture(model, kit.native(x), kind="conv")
    assert list(acts) == ["conv"] and acts.framework == kit.name
    np.testing.assert_allclose(acts["conv"], expected_1x1(x, w)["conv"], rtol=1e-5, atol=1e-5)
    assert [i.name for i in mv.layers(model, kind="activation")] == ["relu"]


def test_a_value_lands_at_its_known_position(framework):
    kit = framework
    w = hand_weights()
    x = np.zeros((1, C, H, W), np.float32)
    x[0, 1, 2, 5] = 1.0  # channel 1, row 2, column 5
    conv = kit.backend.capture(kit.one_by_one(w), kit.native(x), ["conv"])["conv"]
    assert conv.shape == (1, 4, H, W)
    np.testing.assert_allclose(conv[0, :, 2, 5], w["conv"][:, 1, 0, 0] + w["conv_b"], rtol=1e-6)
    off = conv.copy()
    off[0, :, 2, 5] = w["conv_b"]
    np.testing.assert_allclose(off, np.broadcast_to(w["conv_b"][None, :, None, None], off.shape))


# --------------------------------------------------------------------------- invariant 2: arrays are the user's


def test_returned_arrays_are_writable_copies(framework):
    kit = framework
    model = kit.one_by_one(hand_weights())
    x = kit.native(_x())
    first = kit.backend.capture(model, x, ["relu"])["relu"]
    assert first.flags.writeable and not np.shares_memory(first, x)
    kept = first.copy()
    first[...] = -1.0
    np.testing.assert_array_equal(kit.backend.capture(model, x, ["relu"])["relu"], kept)
    res = kit.backend.gradients(model, x, ["relu"], target=0, wrt_input=True)
    for arr in (res.output, res.scores, res.activations["relu"], res.gradients["relu"]):
        assert arr.flags.writeable
    assert not np.shares_memory(res.input_gradient, x)


# --------------------------------------------------------------------------- invariant 3: calls and outputs


def test_a_layer_called_twice_is_reported_per_call(framework):
    kit = framework
    model = kit.twice()
    x = _x()
    acts = kit.backend.capture(model, kit.native(x), ["scale"])
    assert list(acts) == ["scale", "scale#1"]
    np.testing.assert_allclose(acts["scale"], 2 * x, rtol=1e-6)
    np.testing.assert_allclose(acts["scale#1"], 2 * (2 * x + 1), rtol=1e-6)
    assert list(mv.capture(model, kit.native(x), ["scale#1"])) == ["scale#1"]
    with pytest.raises(LayerNotFoundError, match=r"'scale' ran 2 times"):
        mv.capture(model, kit.native(x), ["scale#2"])


def test_gradients_of_a_layer_called_twice(framework):
    kit = framework
    model = kit.twice()
    x = _x()
    res = kit.backend.gradients(
        model, kit.native(x), ["scale"], target=lambda out: kit.sum(out, (1, 2, 3)), wrt_input=True
    )
    # y1 = 2x, y2 = 2 (y1 + 1), score = sum y2: d/dy2 = 1, d/dy1 = 2, d/dx = 4
    np.testing.assert_allclose(res.activations["scale#1"], 2 * (2 * x + 1), rtol=1e-6)
    np.testing.assert_allclose(res.gradients["scale#1"], np.ones_like(x))
    np.testing.assert_allclose(res.gradients["scale"], np.full_like(x, 2.0))
    np.testing.assert_allclose(res.input_gradient, kit.native(np.full_like(x, 4.0)))


def test_a_layer_with_several_outputs_is_reported_per_output(framework):
    kit = framework
    model = kit.split()
    x = _x()
    acts = kit.backend.capture(model, kit.native(x), ["split"])
    assert list(acts) == ["split[0]", "split[1]"]
    np.testing.assert_allclose(acts["split[0]"], x[:, :1])
    np.testing.assert_allclose(acts["split[1]"], 2 * x[:, 1:])
    assert list(mv.capture(model, kit.native(x), ["split[1]"])) == ["split[1]"]


# --------------------------------------------------------------------------- invariant 1: the model as found


def _every_verb(kit, model, x):
    return [
        lambda: kit.backend.capture(model, x, ["conv", "fc"]),
        lambda: kit.backend.forward(model, x),
        lambda: kit.backend.gradients(model, x, ["conv", "fc"], target=1, wrt_input=True),
        lambda: kit.backend.gradients(model, x, ["relu"], target=None, guided=True),
        lambda: kit.backend.gradients(model, x, ["conv"], target=lambda out: out[:, 0]),
    ]


def test_the_model_is_left_as_it_was_found(framework):
    kit = framework
    model = kit.one_by_one(hand_weights())
    kit.unsettle(model)
    before = kit.state(model)
    x = kit.native(_x())
    for verb in _every_verb(kit, model, x):
        verb()
        kit.assert_same(before, kit.state(model))
    kit.backend.layers(model, input_shape=_sample_shape(kit))
    kit.assert_same(before, kit.state(model))


def test_the_model_is_left_as_it_was_found_when_its_forward_pass_raises(framework):
    kit = framework
    model = kit.one_by_one(hand_weights(), tripwire=True)
    kit.unsettle(model)
    x = _x()
    kit.backend.gradients(model, kit.native(x), ["conv"], target=0)  # fine without NaN
    before = kit.state(model)
    x[0, 1, 2, 3] = np.nan
    for verb in _every_verb(kit, model, kit.native(x)):
        with pytest.raises(kit.model_error, match="tripwire"):
            verb()
        kit.assert_same(before, kit.state(model))


# --------------------------------------------------------------------------- errors: layers and inputs


def test_an_unknown_layer_lists_the_closest_names(framework):
    kit = framework
    model = kit.one_by_one(hand_weights())
    with pytest.raises(LayerNotFoundError, match=r"Closest layer names: \['relu'\]"):
        kit.backend.capture(model, kit.native(_x()), ["rellu"])
    with pytest.raises(LayerNotFoundError, match="conv"):
        mv.capture(model, kit.native(_x()), ["cnv"])


def test_an_input_without_a_batch_axis_is_told_x_none(framework):
    kit = framework
    with pytest.raises(InputShapeError, match=r"x\[None\]"):
        kit.backend.capture(kit.one_by_one(hand_weights()), kit.native(_x())[0], ["conv"])


def test_an_input_in_the_other_layout_is_told_how_to_convert_it(framework):
    kit = framework
    model = kit.one_by_one(hand_weights())
    native = kit.native(_x())
    other = np.ascontiguousarray(
        np.moveaxis(native, 1, -1) if kit.layout == "channels_first" else np.moveaxis(native, -1, 1)
    )
    before = kit.state(model)
    with pytest.raises(InputShapeError) as info:
        kit.backend.capture(model, other, ["fc"])
    msg = str(info.value)
    assert kit.to_native in msg and str(other.shape) in msg and kit.expected_input in msg
    kit.assert_same(before, kit.state(model))


def test_a_wrong_channel_count_names_what_the_model_expects(framework):
    kit = framework
    bad = kit.native(np.zeros((2, 5, H, W), np.float32))
    with pytest.raises(InputShapeError, match=kit.wrong_channels):
        kit.backend.forward(kit.one_by_one(hand_weights()), bad)


@pytest.mark.parametrize("verb", ["capture", "forward", "gradients", "callable"])
def test_a_size_the_model_cannot_take_deeper_in_is_an_input_shape_error(framework, verb):
    kit = framework
    model = kit.flat_head()
    kit.backend.capture(model, kit.native(np.zeros((1, C, 4, 4), np.float32)), ["fc"])  # fits
    bad = kit.native(np.zeros((1, C, 6, 4), np.float32))
    run = {
        "capture": lambda: kit.backend.capture(model, bad, ["fc"]),
        "forward": lambda: kit.backend.forward(model, bad),
        "gradients": lambda: kit.backend.gradients(model, bad, ["conv"], target=0),
        "callable": lambda: kit.backend.gradients(model, bad, ["conv"], target=lambda o: o[:, 0]),
    }[verb]
    with pytest.raises(InputShapeError, match=kit.deeper) as info:
        run()
    assert isinstance(info.value.__cause__, kit.shape_error_cause)
    assert str(tuple(bad.shape)) in str(info.value)


# --------------------------------------------------------------------------- gradients


def test_gradients_match_the_closed_form_and_finite_differences(framework):
    with framework.float64():  # JAX computes float64 only with x64 on
        _closed_form_and_finite_differences(framework)


def _closed_form_and_finite_differences(kit):
    w = tanh_weights()
    model = kit.tanh_net(w)
    x = np.random.default_rng(1).standard_normal((2, C, H, W))
    target = np.array([0, 2])
    res = kit.backend.gradients(model, kit.native(x), ["ic"], target=target, wrt_input=True)
    logits = kit.run(model, x)
    np.testing.assert_allclose(res.output, logits, rtol=1e-5)
    np.testing.assert_allclose(res.scores, logits[[0, 1], target], rtol=1e-5)
    assert res.targets.tolist() == [0, 2]
    # closed form: score = fc[t] . mean_hw tanh(ic), so d score / d ic = fc[t, c] / (H W) (1 - tanh^2)
    ic = res.activations["ic"]
    expected = w["fc"][target][:, :, None, None] / (H * W) * (1 - np.tanh(ic) ** 2)
    np.testing.assert_allclose(res.gradients["ic"], expected, rtol=1e-4, atol=1e-7)
    # finite differences on the float64 model w.r.t. the input (given in the model's layout)
    assert res.input_gradient.shape == kit.native(x).shape
    grad = kit.canonical(res.input_gradient)

    def total(z: np.ndarray) -> float:  # NumPy float64: see tests/frameworks.tanh_logits
        out = tanh_logits(w, z)
        return out[0, target[0]] + out[1, target[1]]

    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 2, 4, 3), (1, 1, 5, 6), (1, 0, 3, 1)]:
        step = np.zeros_like(x)
        step[idx] = eps
        numeric = (total(x + step) - total(x - step)) / (2 * eps)
        assert grad[idx] == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_per_sample_targets_equal_separate_calls_and_none_is_the_top_class(framework):
    kit = framework
    model = kit.tanh_net(tanh_weights())
    x = kit.native(np.random.default_rng(2).standard_normal((3, C, H, W)))
    targets = np.array([0, 2, 1])
    batch = kit.backend.gradients(model, x, ["ic"], target=targets, wrt_input=True)
    for n, t in enumerate(targets):
        one = kit.backend.gradients(model, x[n : n + 1], ["ic"], target=int(t), wrt_input=True)
        np.testing.assert_allclose(batch.input_gradient[n], one.input_gradient[0], rtol=1e-5)
        np.testing.assert_allclose(batch.gradients["ic"][n], one.gradients["ic"][0], rtol=1e-5)
    top = kit.backend.gradients(model, x, [])
    np.testing.assert_array_equal(top.targets, kit.backend.forward(model, x).argmax(axis=1))
    assert top.gradients == {} and top.input_gradient is None


def test_a_callable_target_is_linear_in_the_classes(framework):
    kit = framework
    model = kit.tanh_net(tanh_weights())
    x = kit.native(np.random.default_rng(6).standard_normal((2, C, H, W)))
    diff = kit.backend.gradients(
        model, x, ["ic"], target=lambda out: out[:, 1] - out[:, 2], wrt_input=True
    )
    g1 = kit.backend.gradients(model, x, ["ic"], target=1, wrt_input=True)
    g2 = kit.backend.gradients(model, x, ["ic"], target=2, wrt_input=True)
    assert diff.targets is None
    logits = kit.backend.forward(model, x)
    np.testing.assert_allclose(diff.scores, logits[:, 1] - logits[:, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diff.scores, g1.scores - g2.scores, rtol=1e-5)
    np.testing.assert_allclose(
        diff.input_gradient, g1.input_gradient - g2.input_gradient, rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(
        diff.gradients["ic"], g1.gradients["ic"] - g2.gradients["ic"], atol=1e-7
    )


def test_a_model_ending_in_a_softmax_is_scored_on_its_logits(framework):
    kit = framework
    plain_model = kit.tanh_net(tanh_weights())
    soft = kit.with_softmax(plain_model)
    x = kit.native(np.random.default_rng(7).standard_normal((2, C, H, W)))
    layer = "body.ic" if kit.name == "torch" else "ic"
    plain = kit.backend.gradients(plain_model, x, ["ic"], target=np.array([1, 2]), wrt_input=True)
    res = kit.backend.gradients(soft, x, [layer], target=np.array([1, 2]), wrt_input=True)
    np.testing.assert_allclose(res.output, plain.output, rtol=1e-6)
    np.testing.assert_allclose(res.scores, plain.scores, rtol=1e-6)
    np.testing.assert_allclose(res.input_gradient, plain.input_gradient, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(res.gradients[layer], plain.gradients["ic"], rtol=1e-5, atol=1e-8)
    probs = kit.backend.forward(soft, x)  # forward still returns the probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_guided_backprop_by_hand_for_that_call_only(framework):
    kit = framework
    net = kit.guided_net()
    before = kit.state(net)
    grad = kit.backend.gradients
    x = np.array([[2.0, -1.0]], np.float32)
    # h = W1 x = [2, -1, 1]; relu -> [2, 0, 1]; target 0: d s / d relu = [1, -2, 3]
    # plain:  g_h = [1, -2, 3] * (h > 0) = [1, 0, 3]              -> W1^T g_h = [4, 3]
    # guided: g_h = [1, -2, 3] * (h > 0) * (g > 0) = [1, 0, 3]     -> [4, 3]
    np.testing.assert_allclose(
        grad(net, x, ["r"], target=0, wrt_input=True).input_gradient, [[4.0, 3.0]]
    )
    np.testing.assert_allclose(
        grad(net, x, ["r"], target=0, wrt_input=True, guided=True).input_gradient, [[4.0, 3.0]]
    )
    # at x2 every unit is active: plain g_h = [1, -2, 3] -> [4, 1]; guided g_h = [1, 0, 3] -> [4, 3]
    x2 = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_allclose(
        grad(net, x2, [], target=0, wrt_input=True).input_gradient, [[4.0, 1.0]]
    )
    guided = grad(net, x2, ["r"], target=0, wrt_input=True, guided=True)
    np.testing.assert_allclose(guided.input_gradient, [[4.0, 3.0]])
    # the gradient at the ReLU's own output is the one arriving from above, unguided
    np.testing.assert_allclose(guided.gradients["r"], [[1.0, -2.0, 3.0]])
    # guided for that call only: nothing left behind, the next plain call is plain again
    kit.assert_same(before, kit.state(net))
    np.testing.assert_allclose(
        grad(net, x2, [], target=0, wrt_input=True).input_gradient, [[4.0, 1.0]]
    )


# --------------------------------------------------------------------------- errors: targets, word for word


def _target_error(kit, model, x, target, **kw) -> str:
    before = kit.state(model)
    with pytest.raises(TargetError) as info:
        kit.backend.gradients(model, x, ["ic"], target=target, **kw)
    kit.assert_same(before, kit.state(model))
    return str(info.value)


def test_the_same_bad_target_gets_the_same_message_in_every_framework(framework):
    kit = framework
    model = kit.tanh_net(tanh_weights())
    x = kit.native(np.zeros((2, C, H, W)))
    assert _target_error(kit, model, x, 7) == (
        "`target` class indices must lie in [0, 2] for an output with 3 classes; "
        "received target=[7, 7]."
    )
    assert _target_error(kit, model, x, np.array([1, 2, 3])) == (
        "`target` must hold one class index per sample, shape (2,), or be one int; "
        "received shape (3,)."
    )
    assert _target_error(kit, model, x, -1) == (
        "`target` class indices must be >= 0; received target=[-1, -1]."
    )
    assert _target_error(kit, model, x, "cat") == (
        "`target` must be None (each sample's top class), a class index, one class index per "
        "sample, or a callable scoring the model's output; received target='cat'."
    )
    assert _target_error(kit, model, x, lambda out: kit.sum(out), wrt_input=True) == (
        "A callable `target` must return one score per sample, shape (2,), e.g. "
        "lambda out: out[:, 3], keeping the batch axis; received shape ()."
    )


def test_a_map_per_class_needs_a_callable_target(framework):
    kit = framework
    w = np.random.default_rng(3).standard_normal((2, C, 1, 1)).astype(np.float32)
    model = kit.segmentation_net(w)
    x = _x()
    native = kit.native(x)
    for target in (None, 1):
        with pytest.raises(TargetError) as info:
            kit.backend.gradients(model, native, [], target=target)
        first, hint = str(info.value).splitlines()
        assert first == (
            f"`target={target!r}` picks one class of an output of shape (N, classes); "
            f"this model's output has shape (N, 2, {H}, {W})."
        )
        assert hint.startswith("hint: ") and "out[:, k].sum(axis=(1, 2))" in hint
    # the hint's callable: class 1 summed over the whole map
    res = kit.backend.gradients(model, native, [], target=lambda out: kit.sum(out[:, 1], (1, 2)))
    seg = np.einsum("kc,nchw->nkhw", w[:, :, 0, 0], x)
    np.testing.assert_allclose(res.scores, seg[:, 1].sum(axis=(1, 2)), rtol=1e-4, atol=1e-4)


def test_an_error_inside_a_callable_target_propagates_and_the_model_is_restored(framework):
    kit = framework
    model = kit.tanh_net(tanh_weights())
    before = kit.state(model)

    def broken(out):
        raise ValueError("user bug")

    with pytest.raises(ValueError, match="user bug"):
        kit.backend.gradients(
            model,
            kit.native(np.zeros((2, C, H, W))),
            ["ic"],
            target=broken,
            wrt_input=True,
            guided=True,
        )
    kit.assert_same(before, kit.state(model))
