"""Attribution on a video model (issue 12, kind 7): one map per frame.

The model (``tests/twins.py``, ``video_net``): a per-frame CNN (3x3 conv,
ReLU, global average), an LSTM over the frames, a dense head. In Keras the
CNN is a functional model inside ``TimeDistributed`` (input
``(N, T, H, W, C)``, layer ``td/fconv``); in PyTorch the module folds the
frames into the batch (input ``(N, T, C, H, W)``, layer ``conv`` giving
``(N*T, C, h, w)``). Maps are ``(N, T, H, W)``, each sample scaled over all
its frames. The right values are written out by hand with the framework's
own autograd (``torch.autograd`` / ``tf.GradientTape``), and the two
frameworks give the same maps for the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from tests.twins import VIDEO_SIZES, video_native, video_net, video_weights

N = 2
T, S = VIDEO_SIZES["T"], VIDEO_SIZES["S"]
LAYER = {"torch": "conv", "keras": "td/fconv"}
FRAMEWORKS = [
    pytest.param("torch", marks=pytest.mark.torch, id="torch"),
    pytest.param("keras", marks=pytest.mark.keras, id="keras"),
]
#: the right values by hand: torch.autograd, tf.GradientTape
BY_HAND = [
    pytest.param("torch", marks=pytest.mark.torch, id="torch"),
    pytest.param("keras", marks=[pytest.mark.keras, pytest.mark.tensorflow], id="keras"),
]


def _clips() -> np.ndarray:
    """Canonical ``(N, T, 3, S, S)``."""
    return np.random.default_rng(0).standard_normal((N, T, 3, S, S)).astype(np.float32)


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return video_weights()


def _scaled(m: np.ndarray) -> np.ndarray:
    """Each sample's values, all frames together, min-max scaled to [0, 1]."""
    flat = m.reshape(len(m), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    return (m - lo[:, None, None, None]) / (hi - lo)[:, None, None, None]


def _by_hand(fw: str, model, x: np.ndarray, target: np.ndarray):
    """The conv's activations and gradients ``(N*T, C, h, w)`` and the input's ``(N, T, 3, H, W)``."""
    if fw == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        a = model.conv(xt.flatten(0, 1))
        a.retain_grad()
        f = torch.relu(a).mean(dim=(2, 3)).view(N, T, -1)
        y, _ = model.lstm(f)
        model.fc(y[:, -1])[torch.arange(N), torch.as_tensor(target)].sum().backward()
        return a.detach().numpy(), a.grad.numpy(), xt.grad.numpy()
    import tensorflow as tf

    xt = tf.constant(video_native("keras", x))
    conv = model.get_layer("td").layer.get_layer("fconv")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        a = conv(tf.reshape(xt, (N * T, S, S, 3)))
        f = tf.reshape(tf.reduce_mean(tf.nn.relu(a), axis=(1, 2)), (N, T, -1))
        logits = model.get_layer("fc")(model.get_layer("lstm")(f))
        score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    ga, gx = tape.gradient(score, [a, xt])
    first = (0, 3, 1, 2)  # (N*T, h, w, C) -> (N*T, C, h, w)
    return (
        np.transpose(a.numpy(), first),
        np.transpose(ga.numpy(), first),
        np.moveaxis(gx.numpy(), -1, 2),
    )


@pytest.mark.parametrize("fw", BY_HAND)
def test_video_maps_are_per_frame_and_match_the_hand_written_gradients(fw, weights):
    model, x = video_net(fw, weights), _clips()
    target = np.array([0, 1])
    given = video_native(fw, x)
    acts, grads, x_grad = _by_hand(fw, model, x, target)

    grad_cam = np.maximum(np.einsum("mc,mchw->mhw", grads.mean(axis=(2, 3)), acts), 0)
    got = mv.grad_cam(model, given, LAYER[fw], target=target)
    assert got.shape == (N, T, S, S)
    np.testing.assert_allclose(got, _scaled(grad_cam.reshape(N, T, S, S)), atol=1e-4)

    layer_cam = np.maximum((np.maximum(grads, 0) * acts).sum(axis=1), 0)
    got = mv.layer_cam(model, given, LAYER[fw], target=target)
    np.testing.assert_allclose(got, _scaled(layer_cam.reshape(N, T, S, S)), atol=1e-4)

    raw = mv.grad_cam(model, given, LAYER[fw], target=target, normalize=False)
    np.testing.assert_allclose(raw, grad_cam.reshape(N, T, S, S), rtol=1e-4, atol=1e-7)

    got = mv.saliency(model, given, target=target)  # max |gradient| over the colour channels
    assert got.shape == (N, T, S, S)
    np.testing.assert_allclose(got, _scaled(np.abs(x_grad).max(axis=2)), atol=1e-4)

    got = mv.saliency(model, given, target=target, method="grad_x_input", aggregation="sum")
    np.testing.assert_allclose(got, _scaled((x_grad * x).sum(axis=2)), atol=1e-4)

    # no layer given: the per-frame network's last map (its ReLU) is chosen
    relu = {"torch": "relu", "keras": "td/frelu"}[fw]
    np.testing.assert_array_equal(
        mv.grad_cam(model, given, target=target), mv.grad_cam(model, given, relu, target=target)
    )


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_methods_without_a_per_frame_form_say_why_and_what_instead(fw, weights):
    model, given = video_net(fw, weights), video_native(fw, _clips())
    for call, why in [
        (lambda: mv.score_cam(model, given, LAYER[fw], target=0), "masks the whole input"),
        (lambda: mv.cam(model, given, LAYER[fw], target=0), "class weights"),
        (lambda: mv.explain(model, given, target=0), "one image per sample"),
    ]:
        with pytest.raises(mv.InputShapeError) as info:
            call()
        first, *rest = str(info.value).splitlines()
        assert "video" in first and why in first and len(first) <= 200
        assert len(rest) == 1 and rest[0].startswith("hint:") and "per frame" in rest[0]
    with pytest.raises(mv.NotSpatialLayerError, match=r"run once per frame"):
        mv.grad_cam(model, given, "fc", target=0)  # no map per frame
    with pytest.raises(ValueError, match=r"`reduce`"):
        mv.guided_grad_cam(model, given, LAYER[fw], target=0, reduce=False)


@pytest.mark.both
def test_the_same_video_model_gives_the_same_maps_in_both_frameworks(weights):
    x, target = _clips(), np.array([1, 0])
    nets = {fw: video_net(fw, weights) for fw in ("torch", "keras")}

    def both(fn, *args, **kwargs):
        return [
            fn(nets[fw], video_native(fw, x), *args, target=target, **kwargs)
            for fw in ("torch", "keras")
        ]

    def at_layer(fn):
        return [
            fn(nets[fw], video_native(fw, x), LAYER[fw], target=target) for fw in ("torch", "keras")
        ]

    runs = {
        "grad_cam": at_layer(mv.grad_cam),
        "grad_cam_plus_plus": at_layer(mv.grad_cam_plus_plus),
        "guided_grad_cam": at_layer(mv.guided_grad_cam),
        "smoothgrad": both(mv.saliency, method="smoothgrad", samples=3, seed=0),
        "integrated_gradients": both(mv.integrated_gradients, steps=8),
        "guided_backprop": both(mv.guided_backprop),
    }
    for method, (a, b) in runs.items():
        assert a.shape == b.shape and a.shape[:2] == (N, T), method
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=method)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_a_nan_in_one_frame_blanks_that_clip_only(fw, weights):
    """The non-finite policy per clip: a layer's (N*T, ...) rows belong to their clip."""
    import warnings

    model, x = video_net(fw, weights), _clips()
    x[1, 2, 0, 3, 4] = np.nan  # clip 1, last frame
    given = video_native(fw, x)
    methods = [lambda: mv.saliency(model, given, target=0)]
    if not _keras_on_jax(fw):  # there a layer inside TimeDistributed has no gradient (documented)
        methods.append(lambda: mv.grad_cam(model, given, LAYER[fw], target=0))
    for method in methods:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            heat = method()
        assert heat.shape == (N, T, S, S)
        assert np.isfinite(heat[0]).all() and np.isnan(heat[1]).all()
        said = [w for w in caught if issubclass(w.category, mv.MultivizWarning)]
        assert len(said) == 1 and "1" in str(said[0].message)


def _keras_on_jax(fw: str) -> bool:
    if fw != "keras":
        return False
    import keras

    return keras.backend.backend() == "jax"
