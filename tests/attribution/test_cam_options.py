"""The CAM options (``relu``, ``reduce``, ``upsample``) against Captum's hand-computed cases.

Captum's own tests of ``LayerGradCam`` and ``GuidedGradCam``
(``tests/attr/layer/test_grad_cam.py``, ``tests/attr/test_guided_grad_cam.py``)
check values computed by hand on ``BasicModel_ConvNet_One_Conv`` (conv1 with
weights 1 and biases -50/-75, relu1, flatten, fc1 of rows ``[1]*5 + [-1]*3``,
relu2) fed ``arange(16)`` as a 4x4 image. The same model is built here in
each framework (``tests/frameworks.py``, :func:`captum_weights`) and every case
multiviz can express is reproduced, at Captum's defaults: no final ReLU
(``relu=False``), no summing (``reduce=False``) where Captum splits channels,
the layer's resolution (``upsample=False``) or nearest-neighbour (Captum's
``GuidedGradCam``). Worked by hand for ``arange(16)``: conv1's windows sum
to 45, 54, 81, 90, so conv1 is ``[[-5, 4], [31, 40]]`` and ``[[-30, -21],
[6, 15]]``; the gradient of fc1's unit 0 through relu1 is ``[[0, 1], [1, 1]]``
and ``[[0, 0], [-1, -1]]`` (means 0.75 and -0.5); Grad-CAM is their weighted sum.

Cases multiviz cannot express, and why: a non-spatial layer
(``test_simple_input_non_conv``, ``test_relu_gradcam_with_unused_layer``:
multiviz's CAM methods refuse a vector layer with ``NotSpatialLayerError``)
and several model inputs (``test_simple_multi_input_*``,
``test_improper_*_multi_input_conv``). ``attribute_to_layer_input=True`` is
expressed by naming a layer whose *output* is conv1's input (an identity
layer ``entry`` in front of conv1).
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.core.resize import resize_bilinear, resize_nearest


def captum_input(kit, changes: dict[tuple[int, int], float] | None = None) -> np.ndarray:
    """``torch.arange(16).view(1, 1, 4, 4)`` with some pixels changed, in the kit's layout."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    for (i, j), v in (changes or {}).items():
        x[0, 0, i, j] = v
    return kit.native(x)


RAW = {"normalize": False, "upsample": False}  # Captum's LayerGradCam: unscaled, layer resolution


# --------------------------------------------------------------------------- Captum's LayerGradCam cases


def test_captum_simple_input_conv(framework):
    net = framework.captum_net()
    x = captum_input(framework)
    want = [[11.25, 13.5], [20.25, 22.5]]
    got = mv.grad_cam(net, x, "conv1", 0, relu=False, **RAW)
    assert got.shape == (1, 2, 2)
    np.testing.assert_allclose(got[0], want, atol=1e-4)
    # every value is positive here, so the default ReLU changes nothing
    np.testing.assert_allclose(mv.grad_cam(net, x, "conv1", 0, **RAW)[0], want, atol=1e-4)


def test_captum_simple_input_conv_split_channels(framework):
    net = framework.captum_net()
    got = mv.grad_cam(net, captum_input(framework), "conv1", 0, relu=False, reduce=False, **RAW)
    want = [[[-3.75, 3.0], [23.25, 30.0]], [[15.0, 10.5], [-3.0, -7.5]]]
    assert got.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(got[0], want, atol=1e-4)


def test_captum_simple_input_conv_no_grad(framework):
    """Parameters that take no gradient (frozen) give the same map, and stay frozen."""
    kit = framework
    net = kit.captum_net()
    if kit.name == "torch":
        for p in net.parameters():
            p.requires_grad_(False)
        flags = lambda: [p.requires_grad for p in net.parameters()]  # noqa: E731
    else:
        net.trainable = False
        flags = lambda: [layer.trainable for layer in net.layers]  # noqa: E731
    before = flags()
    got = mv.grad_cam(net, captum_input(kit), "conv1", 0, relu=False, **RAW)
    np.testing.assert_allclose(got[0], [[11.25, 13.5], [20.25, 22.5]], atol=1e-4)
    assert flags() == before


def test_captum_simple_input_conv_relu(framework):
    net = framework.captum_net()
    got = mv.grad_cam(net, captum_input(framework), "relu1", 0, relu=False, **RAW)
    np.testing.assert_allclose(got[0], [[0.0, 4.0], [28.0, 32.5]], atol=1e-4)


@pytest.mark.parametrize("relu", [False, True])
def test_captum_layer_input_with_and_without_final_relu(framework, relu):
    """Captum's ``attribute_to_layer_input=True`` on conv1 = the output of a layer before it.

    With pixel (1, 1) at -4 every window loses 9: conv1 is ``[[-14, -5], [22,
    31]]`` and ``[[-39, -30], [-3, 6]]``. The live units pass fc1's weights
    back: +1 at (1, 0) and (1, 1) of channel 0, -1 at (1, 1) of channel 1, so
    only window (1, 0) carries a net gradient, 1 on each of its 9 pixels. The
    input layer's gradient has mean 9/16 = 0.5625 and Captum's expected map is
    ``0.5625 * input`` (0 at the negative pixel with the ReLU).
    """
    net = framework.captum_net(entry=True)
    x = captum_input(framework, {(1, 1): -4.0})
    want = 0.5625 * np.arange(16, dtype=np.float64).reshape(4, 4)
    want[1, 1] = 0.0 if relu else 0.5625 * -4.0
    got = mv.grad_cam(net, x, "entry", 0, relu=relu, **RAW)
    np.testing.assert_allclose(got[0], want, atol=1e-4)
    # the layer is at the input's resolution: upsampling is the identity
    np.testing.assert_allclose(
        mv.grad_cam(net, x, "entry", 0, relu=relu, normalize=False)[0], want, atol=1e-4
    )


# --------------------------------------------------------------------------- Captum's GuidedGradCam case


def test_captum_guided_grad_cam_simple_input_conv(framework):
    """Captum's ``GuidedGradCam(net, net.relu1)`` (nearest upsampling, the raw Grad-CAM factor).

    multiviz divides the Grad-CAM factor by its peak (here ``[[0, 4], [28,
    32.5]]``, peak 32.5), so its raw product is Captum's divided by 32.5.
    """
    net = framework.captum_net()
    captum = np.array(
        [
            [0.0, 0.0, 4.0, 4.0],
            [0.0, 0.0, 12.0, 8.0],
            [28.0, 84.0, 97.5, 65.0],
            [28.0, 56.0, 65.0, 32.5],
        ]
    )
    got = mv.guided_grad_cam(
        net, captum_input(framework), "relu1", 0, upsample="nearest", normalize=False
    )
    assert got.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(got[0, 0] * 32.5, captum, atol=1e-3)


# --------------------------------------------------------------------------- signed maps, worked by hand


def test_a_signed_grad_cam_worked_by_hand(framework):
    """Captum's model with pixel (0, 0) at -50: only conv1's (0, 0) window changes.

    Channel 0 there is 45 - 50 - 50 = -55 and channel 1 is -80; both stay
    below 0, so the gradients (and the weights 0.75, -0.5) are unchanged and
    the map's (0, 0) value is 0.75 * -55 - 0.5 * -80 = -1.25.
    """
    net = framework.captum_net()
    x = captum_input(framework, {(0, 0): -50.0})
    low = np.array([[-1.25, 13.5], [20.25, 22.5]])
    np.testing.assert_allclose(
        mv.grad_cam(net, x, "conv1", 0, relu=False, **RAW)[0], low, atol=1e-4
    )
    np.testing.assert_allclose(
        mv.grad_cam(net, x, "conv1", 0, **RAW)[0], np.maximum(low, 0), atol=1e-4
    )
    # upsampled to the 4x4 input: nearest gives 2x2 blocks; bilinear, half-pixel centres
    nearest = mv.grad_cam(net, x, "conv1", 0, relu=False, normalize=False, upsample="nearest")
    np.testing.assert_allclose(nearest[0], np.kron(low, np.ones((2, 2))), atol=1e-4)
    bilinear = mv.grad_cam(net, x, "conv1", 0, relu=False, normalize=False)
    corner = 0.75 * (0.75 * -1.25 + 0.25 * 13.5) + 0.25 * (0.75 * 20.25 + 0.25 * 22.5)
    assert bilinear[0, 1, 1] == pytest.approx(corner, abs=1e-4)  # (1, 1) sits at (0.25, 0.25)
    # the ReLU comes before upsampling: the clipped map upsampled, not the other way round
    np.testing.assert_allclose(
        mv.grad_cam(net, x, "conv1", 0, normalize=False)[0],
        resize_bilinear(np.maximum(low, 0)[None], (4, 4))[0],
        atol=1e-4,
    )
    # normalize=True scales the signed map min-max: its minimum, -1.25, becomes 0
    scaled = mv.grad_cam(net, x, "conv1", 0, relu=False, upsample=False)[0]
    np.testing.assert_allclose(scaled, (low + 1.25) / (22.5 + 1.25), atol=1e-6)


# --------------------------------------------------------------------------- every CAM method


# layers and heads where the signed maps take both signs (relu3's Grad-CAM on these
# images is positive everywhere; conv3 is before the ReLU); CAM with a random dense layer
FC = np.random.default_rng(0).normal(size=(4, 64))
CAMS = {
    "grad_cam": lambda m, x, **o: mv.grad_cam(m, x, "conv3", 1, normalize=False, **o),
    "grad_cam_plus_plus": lambda m, x, **o: mv.grad_cam_plus_plus(
        m, x, "conv3", 1, normalize=False, **o
    ),
    "layer_cam": lambda m, x, **o: mv.layer_cam(m, x, "conv2", 1, normalize=False, **o),
    "cam": lambda m, x, **o: mv.cam(m, x, "relu3", 1, fc_weights=FC, normalize=False, **o),
    "score_cam": lambda m, x, **o: mv.score_cam(
        m, x, "conv3", 1, normalize=False, batch_size=64, **o
    ),
}


@pytest.mark.parametrize("method", sorted(CAMS))
def test_the_options_compose_as_documented(framework, builtin, shapes, method):
    """Terms sum to the signed map; the ReLU clips it; upsampling acts on the layer's map.

    Each identity is the option's definition, checked on the built-in CNN
    (real maps with both signs) in each framework.
    """
    fn, x = CAMS[method], framework.native(shapes.images)
    terms = fn(builtin, x, relu=False, reduce=False, upsample=False)
    signed = fn(builtin, x, relu=False, upsample=False)
    n, k, h, w = terms.shape
    assert (n, h, w) == signed.shape and k == (32 if method == "layer_cam" else 64)
    np.testing.assert_allclose(terms.sum(axis=1), signed, rtol=1e-5, atol=1e-5)
    if method != "layer_cam":  # at conv2 the gradient is 0 where the activation is < 0
        assert (signed < 0).any() and (signed > 0).any()
    low = fn(builtin, x, upsample=False)
    np.testing.assert_allclose(low, np.maximum(signed, 0), rtol=1e-5, atol=1e-6)
    clipped = fn(builtin, x, reduce=False, upsample=False)
    np.testing.assert_allclose(clipped, np.maximum(terms, 0), rtol=1e-5, atol=1e-6)
    size = x.shape[2:] if framework.layout == "channels_first" else x.shape[1:3]
    np.testing.assert_allclose(fn(builtin, x), resize_bilinear(low, size), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fn(builtin, x, upsample="nearest"), resize_nearest(low, size), rtol=1e-5, atol=1e-6
    )
    assert fn(builtin, x, reduce=False).shape == (n, k, *size)


def test_guided_grad_cam_options(framework, builtin, shapes):
    x = framework.native(shapes.images)
    size = shapes.images.shape[2:]
    guided = mv.guided_backprop(builtin, x, 2, normalize=False)  # (N, C, H, W)
    for relu in (True, False):
        low = mv.grad_cam(builtin, x, "relu3", 2, relu=relu, normalize=False, upsample=False)
        for up, resize in (("bilinear", resize_bilinear), ("nearest", resize_nearest)):
            heat = resize(low, size)
            heat = heat / np.abs(heat).max(axis=(1, 2), keepdims=True)
            got = mv.guided_grad_cam(
                builtin, x, "relu3", 2, relu=relu, upsample=up, normalize=False
            )
            np.testing.assert_allclose(got, guided * heat[:, None], rtol=1e-4, atol=1e-6)
    terms = mv.guided_grad_cam(
        builtin, x, "relu3", 2, relu=False, reduce=False, aggregation="sum", normalize=False
    )
    assert terms.shape == (len(x), 64, *size)
    signed = mv.guided_grad_cam(builtin, x, "relu3", 2, relu=False, aggregation="sum")
    assert signed.shape == (len(x), *size)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"relu": "no"}, r"`relu` must be True or False\. Received: relu='no'"),
        ({"reduce": None}, r"`reduce` must be True or False\. Received: reduce=None"),
        ({"upsample": "bicubic"}, r"`upsample` must be one of .*Received: upsample='bicubic'"),
        ({"upsample": True}, r"`upsample` must be one of .*Received: upsample=True"),
    ],
)
def test_bad_options_fail_before_any_model_work(kwargs, needle):
    class NotAModel:  # any model work would fail differently
        pass

    for fn in (mv.grad_cam, mv.grad_cam_plus_plus, mv.layer_cam, mv.cam, mv.score_cam):
        with pytest.raises(ValueError, match=needle):
            fn(NotAModel(), np.zeros((1, 3, 8, 8)), "x", **kwargs)
    with pytest.raises(ValueError, match=needle):
        mv.guided_grad_cam(NotAModel(), np.zeros((1, 3, 8, 8)), "x", **kwargs)
    with pytest.raises(ValueError, match="multiplies guided backprop at the input"):
        mv.guided_grad_cam(NotAModel(), np.zeros((1, 3, 8, 8)), "x", upsample=False)
