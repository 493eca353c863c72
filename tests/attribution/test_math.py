"""Attribution without a framework: the NumPy math, and the API over a NumPy backend.

The math is checked against values derived by hand (in the comments) or
computed independently (finite differences, closed-form integrals). The
public functions are then run against ``FakeBackend``: a tiny network written
in NumPy — 2x2 average pooling, a 1x1 convolution, ReLU, global average
pooling, a dense layer — whose gradients are known in closed form, so every
map the API returns can be recomputed here by hand. No framework is imported.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz import backends as registry
from multiviz.attribution import cam_math, gradient_math
from multiviz.attribution.explain import METHODS
from multiviz.attribution.maps import aggregate_channels, normalize_maps, upsample_maps
from multiviz.backends.contract import GradientResult
from multiviz.core.layout import to_channels_first, to_channels_last
from multiviz.core.records import LayerInfo
from multiviz.core.resize import resize_bilinear
from multiviz.errors import (
    CamHeadError,
    InputShapeError,
    LayerNotFoundError,
    NotSpatialLayerError,
    TargetError,
)

# ----------------------------------------------------------------------------- the math


def test_aggregations_by_hand():
    g = np.array([[[[1.0]], [[-3.0]], [[2.0]]]])  # (1, 3, 1, 1): values 1, -3, 2
    expected = {"max_abs": 3.0, "abs_sum": 6.0, "abs_mean": 2.0, "sum": 0.0, "mean": 0.0}
    for how, value in expected.items():
        assert aggregate_channels(g, how)[0, 0, 0] == pytest.approx(value)
    assert aggregate_channels(g, "l2")[0, 0, 0] == pytest.approx(np.sqrt(14.0))
    assert aggregate_channels(g, None).shape == (1, 3, 1, 1)
    with pytest.raises(ValueError, match="max_abs"):
        aggregate_channels(g, "median")


def test_normalize_per_sample_constant_and_nan():
    maps = np.array(
        [[[2.0, 4.0], [6.0, 6.0]], [[5.0, 5.0], [5.0, 5.0]], [[np.nan, 1.0], [0.0, 3.0]]]
    )
    out = normalize_maps(maps)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [1.0, 1.0]])
    np.testing.assert_array_equal(out[1], 0.0)  # constant: nothing to show
    # a sample holding NaN is not scaled from its finite rest (DESIGN.md, non-finite values)
    assert np.isnan(out[2]).all()


def test_grad_cam_weights_are_spatial_mean_and_relu_applies():
    # A: channel 0 = [[1, 2]], channel 1 = [[3, 0]]; G: channel 0 mean 2, channel 1 mean -1
    A = np.array([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    G = np.array([[[[1.0, 3.0]], [[-1.0, -1.0]]]])
    np.testing.assert_allclose(cam_math.grad_cam_weights(G), [[2.0, -1.0]])
    # 2*[1, 2] - [3, 0] = [-1, 4] -> ReLU -> [0, 4]
    np.testing.assert_allclose(cam_math.grad_cam_map(A, G), [[[0.0, 4.0]]])


def test_grad_cam_plus_plus_alphas_by_hand():
    # one channel, A = [1, 3] (sum 4), G = [1, 2]:
    # alpha_1 = 1 / (2*1 + 1*4) = 1/6, alpha_2 = 4 / (2*4 + 8*4) = 1/10
    # w = 1/6 * 1 + 1/10 * 2 = 11/30; map = ReLU(11/30 * [1, 3])
    A = np.array([[[[1.0, 3.0]]]])
    G = np.array([[[[1.0, 2.0]]]])
    np.testing.assert_allclose(cam_math.grad_cam_plus_plus_alphas(A, G), [[[[1 / 6, 1 / 10]]]])
    np.testing.assert_allclose(cam_math.grad_cam_plus_plus_weights(A, G), [[11 / 30]])
    np.testing.assert_allclose(cam_math.grad_cam_plus_plus_map(A, G), [[[11 / 30, 33 / 30]]])
    # a channel with only non-positive gradients gets weight 0 (and alpha 0 where G = 0)
    A2 = np.array([[[[1.0, 3.0]], [[2.0, 2.0]]]])
    G2 = np.array([[[[1.0, 2.0]], [[-1.0, 0.0]]]])
    w = cam_math.grad_cam_plus_plus_weights(A2, G2)
    np.testing.assert_allclose(w, [[11 / 30, 0.0]])
    assert cam_math.grad_cam_plus_plus_alphas(A2, G2)[0, 1, 0, 1] == 0.0


def test_grad_cam_plus_plus_alphas_match_finite_differences_of_exp_score():
    # Eq. 19 of the paper: alpha = d2Y / (2 d2Y + sum_ab A_ab d3Y), Y = exp(S), derivatives
    # with respect to A_kij. Take them numerically for a linear score S = sum(C * A) and
    # compare with the closed form in powers of G = dS/dA = C.
    rng = np.random.default_rng(3)
    A = rng.uniform(0.1, 1.0, size=(1, 2, 3, 4))
    C = rng.normal(size=A.shape) * 0.5

    def Y(a):
        return np.exp((C * a).sum())

    h = 1e-2
    alphas = np.zeros_like(A)
    for idx in np.ndindex(A.shape):
        e = np.zeros_like(A)
        e[idx] = h
        y = [Y(A + k * e) for k in (-2, -1, 0, 1, 2)]
        d2 = (y[3] - 2 * y[2] + y[1]) / h**2
        d3 = (y[4] - 2 * y[3] + 2 * y[1] - y[0]) / (2 * h**3)
        alphas[idx] = d2 / (2 * d2 + A[0, idx[1]].sum() * d3)
    np.testing.assert_allclose(cam_math.grad_cam_plus_plus_alphas(A, C), alphas, rtol=1e-3)


def test_layer_cam_is_relu_of_sum_of_relu_grad_times_act():
    A = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    G = np.array([[[[2.0, -1.0]], [[-5.0, 0.5]]]])
    # pixel 0: 2*1 + 0*3 = 2; pixel 1: 0*2 + 0.5*4 = 2
    np.testing.assert_allclose(cam_math.layer_cam_map(A, G), [[[2.0, 2.0]]])
    # negative activations cannot make it negative
    np.testing.assert_allclose(cam_math.layer_cam_map(-A, G), [[[0.0, 0.0]]])


def test_cam_on_linear_head_is_w_dot_a_and_its_mean_is_the_logit():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(2, 5, 3, 4))
    W = rng.normal(size=(7, 5))
    b = rng.normal(size=7)
    logits = A.mean(axis=(2, 3)) @ W.T + b
    cls = np.array([3, 6])
    M = cam_math.cam_map(A, W[cls], relu=False)  # the paper's map: signed
    np.testing.assert_allclose(M[1], np.tensordot(W[6], A[1], axes=1))
    # the defining property of CAM: the class score is the map's mean plus the bias
    np.testing.assert_allclose(M.mean(axis=(1, 2)) + b[cls], logits[[0, 1], cls])
    # multiviz's default adds the ReLU every other CAM method has
    assert (M < 0).any()
    np.testing.assert_allclose(cam_math.cam_map(A, W[cls]), np.maximum(M, 0.0))
    # the per-channel terms sum to the signed map, and are W[c, k] A_k
    terms = cam_math.cam_map(A, W[cls], relu=False, reduce=False)
    np.testing.assert_allclose(terms[0, 2], W[3, 2] * A[0, 2])
    np.testing.assert_allclose(terms.sum(axis=1), M)


def test_score_cam_channel_choice_masks_and_softmax():
    A = np.array([[[[1.0, 3.0]], [[2.0, 2.0]], [[0.0, 1e-9]]]])
    np.testing.assert_array_equal(cam_math.score_cam_channels(A), [[True, False, False]])
    np.testing.assert_allclose(
        cam_math.score_cam_masks(np.array([[[1.0, 3.0, 2.0]]])), [[[0, 1, 0.5]]]
    )
    np.testing.assert_allclose(cam_math.softmax(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])
    assert np.isfinite(cam_math.softmax(np.array([[1000.0, 0.0]]))).all()
    # map = ReLU(0.5 * A0 - 1.0 * A1)
    acts = np.array([[[[2.0, 4.0]], [[2.0, 0.0]]]])
    np.testing.assert_allclose(
        cam_math.score_cam_map(acts, np.array([[0.5, -1.0]])), [[[0.0, 2.0]]]
    )


def test_integration_points_sum_to_one_and_integrate_exactly():
    for rule in gradient_math.INTEGRATION_RULES:
        a, w = gradient_math.integration_points(8, rule)
        assert len(a) == 8 and w.sum() == pytest.approx(1.0)
        assert a.min() >= 0 and a.max() <= 1
    a, w = gradient_math.integration_points(5, "trapezoid")
    assert (w * (3 * a + 1)).sum() == pytest.approx(2.5)  # exact for linear integrands
    a, w = gradient_math.integration_points(4, "riemann_right")
    np.testing.assert_allclose(a, [0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="trapezoid"):
        gradient_math.integration_points(4, "simpson")
    with pytest.raises(ValueError, match="steps"):
        gradient_math.integration_points(1, "trapezoid")


def test_integrated_gradients_of_a_square_are_exact():
    # f(x) = sum(x^2): the path gradient 2(b + a(x - b)) is linear in a, so the
    # trapezoid rule is exact and IG_i = (x_i - b_i)(x_i + b_i) = x_i^2 - b_i^2.
    rng = np.random.default_rng(1)
    x, b = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    alphas, weights = gradient_math.integration_points(3)
    points = gradient_math.path_points(x, b, alphas).astype(np.float64)
    mean_grad = np.tensordot(weights, 2 * points, axes=1)
    ig = gradient_math.integrated_gradients_from_mean(x, b, mean_grad)
    np.testing.assert_allclose(ig, x**2 - b**2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ig.sum(), (x**2).sum() - (b**2).sum(), rtol=1e-5)


def test_noise_scale_and_chunk_independent_draws():
    x = np.array([[[[0.0, 2.0]]], [[[1.0, 1.5]]]])
    np.testing.assert_allclose(gradient_math.noise_sigma(x, 0.1), [0.2, 0.05])
    xs = np.zeros((5, 2, 3, 4), np.float32)
    whole = gradient_math.add_noise(xs, np.ones(5), np.random.default_rng(7))
    rng = np.random.default_rng(7)
    parts = [
        gradient_math.add_noise(xs[s], np.ones(len(xs[s])), rng) for s in (slice(0, 2), slice(2, 5))
    ]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    assert 0.8 < whole.std() < 1.2
    with pytest.raises(ValueError, match="noise"):
        gradient_math.noise_sigma(x, -1.0)


def test_guided_grad_cam_is_the_product():
    g = np.arange(12.0).reshape(1, 3, 2, 2)
    heat = np.array([[[0.0, 0.5], [1.0, 0.25]]])
    np.testing.assert_allclose(gradient_math.guided_grad_cam(g, heat), g * heat[:, None])


# ----------------------------------------------------------------------------- a NumPy backend


class FakeNet:
    """x -> avgpool 2x2 ("pool") -> 1x1 conv ("conv") -> ReLU ("relu") -> GAP ("gap") -> dense ("fc").

    ``layout`` is the input layout; ``softmax`` makes ``forward`` return
    probabilities (``"log"``: log-probabilities); ``gradients`` scores the
    logits, as real backends do.
    """

    def __init__(self, cin=3, k=5, m=4, layout="channels_first", softmax=False, seed=2):
        rng = np.random.default_rng(seed)
        self.w1 = rng.normal(size=(k, cin))
        self.b1 = rng.normal(size=k) * 0.5
        self.w2 = rng.normal(size=(m, k))
        self.b2 = rng.normal(size=m)
        self.layout, self.softmax = layout, softmax

    def run(self, x):
        x = np.asarray(x, np.float64)
        x = to_channels_first(x) if self.layout == "channels_last" else x
        n, c, h, w = x.shape
        pool = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        pre = np.einsum("ki,nihw->nkhw", self.w1, pool) + self.b1[:, None, None]
        feat = np.maximum(pre, 0)
        gap = feat.mean(axis=(2, 3))
        logits = gap @ self.w2.T + self.b2
        return {"pool": pool, "conv": pre, "relu": feat, "gap": gap, "fc": logits}


class FakeBackend:
    """The backend contract for :class:`FakeNet`, gradients in closed form."""

    name = "fake"

    def __init__(self):
        self.calls: list[tuple[str, int]] = []  # (verb, batch size)

    def owns(self, model):
        return isinstance(model, FakeNet)

    def layers(self, model, input_shape=None):
        cin, k, m = model.w1.shape[1], model.w1.shape[0], model.w2.shape[0]
        hw = (None, None)
        if input_shape is not None:
            shape = tuple(input_shape)
            h, w = shape[1:] if model.layout == "channels_first" else shape[:2]
            hw = (h // 2, w // 2)
        return [
            LayerInfo("pool", "AvgPool", "pool", (None, cin, *hw)),
            LayerInfo("conv", "Conv1x1", "conv", (None, k, *hw)),
            LayerInfo("relu", "ReLU", "activation", (None, k, *hw)),
            LayerInfo("gap", "GAP", "pool", (None, k)),
            LayerInfo("fc", "Dense", "dense", (None, m)),
        ]

    def input_layout(self, model):
        return model.layout

    def capture(self, model, x, names):
        self.calls.append(("capture", len(x)))
        out = model.run(x)
        return {n: out[n].astype(np.float32) for n in names}

    def forward(self, model, x):
        self.calls.append(("forward", len(x)))
        logits = model.run(x)["fc"]
        if model.softmax == "log":
            return np.log(cam_math.softmax(logits)).astype(np.float32)
        return (cam_math.softmax(logits) if model.softmax else logits).astype(np.float32)

    def gradients(self, model, x, names, target=None, wrt_input=False, guided=False):
        self.calls.append(("gradients", len(x)))
        out = model.run(x)
        logits = out["fc"]
        n, m = logits.shape
        if callable(target):
            scores = np.asarray(target(logits), np.float64)
            d_logits = np.zeros_like(logits)
            for j in range(m):  # central differences: exact for the linear callables used here
                e = np.zeros_like(logits)
                e[:, j] = 1e-3
                d_logits[:, j] = (
                    np.asarray(target(logits + e)) - np.asarray(target(logits - e))
                ) / 2e-3
            targets = None
        else:
            targets = (
                logits.argmax(1) if target is None else np.broadcast_to(target, (n,)).astype(int)
            )
            scores = logits[np.arange(n), targets]
            d_logits = np.eye(m)[targets]
        pre = out["conv"]
        h, w = pre.shape[2:]
        d = {"fc": d_logits, "gap": d_logits @ model.w2}
        d["relu"] = np.broadcast_to(d["gap"][:, :, None, None] / (h * w), pre.shape).copy()
        gate = (pre > 0) & (d["relu"] > 0) if guided else pre > 0
        d["conv"] = d["relu"] * gate
        d["pool"] = np.einsum("ki,nkhw->nihw", model.w1, d["conv"])
        d_x = np.repeat(np.repeat(d["pool"], 2, axis=2), 2, axis=3) / 4
        if model.layout == "channels_last":
            d_x = to_channels_last(d_x)
        f32 = np.float32
        return GradientResult(
            output=logits.astype(f32),
            targets=None if targets is None else np.asarray(targets, np.int64),
            scores=scores.astype(f32),
            activations={k: out[k].astype(f32) for k in names},
            gradients={k: d[k].astype(f32) for k in names},
            input_gradient=d_x.astype(f32) if wrt_input else None,
        )


@pytest.fixture
def fake(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setitem(registry._REGISTRY, "fake", ("FakeBackend", ("fake",)))
    monkeypatch.setitem(registry._INSTANCES, "fake", backend)
    monkeypatch.setitem(registry._BY_TYPE, FakeNet, "fake")
    return backend


def images(n=3, c=3, h=6, w=10, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, c, h, w)).astype(np.float32)


def test_fake_backend_gradients_match_finite_differences(fake):
    # the reference itself must be right before anything is checked against it
    net, x = FakeNet(), images(1).astype(np.float64)
    g = fake.gradients(net, x, [], target=2, wrt_input=True).input_gradient
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1e-4
        num[idx] = (net.run(x + e)["fc"][0, 2] - net.run(x - e)["fc"][0, 2]) / 2e-4
    np.testing.assert_allclose(g, num, atol=1e-4)


def _expected_grad_cam(net, x, cls, size):
    out = net.run(x)
    feat = out["relu"]
    weights = net.w2[cls] / (feat.shape[2] * feat.shape[3])  # mean of a constant gradient
    low = np.maximum(np.einsum("nk,nkhw->nhw", weights, feat), 0)
    return normalize_maps(resize_bilinear(low, size))


def test_grad_cam_equals_the_hand_computed_map(fake):
    net, x = FakeNet(), images()
    cls = net.run(x)["fc"].argmax(1)
    got = mv.grad_cam(net, x, "relu")
    assert got.shape == (3, 6, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, _expected_grad_cam(net, x, cls, (6, 10)), atol=1e-5)
    assert got.min() == 0.0 and got.reshape(3, -1).max(1) == pytest.approx(1.0)
    raw = mv.grad_cam(net, x, "relu", normalize=False)
    assert raw.max() < 1.0  # raw values, not rescaled (weights are W / (h*w))


def test_channels_last_model_gives_the_same_maps(fake):
    first, last = FakeNet(), FakeNet(layout="channels_last")
    x = images()
    xl = to_channels_last(x)
    for fn in (mv.grad_cam, mv.grad_cam_plus_plus, mv.layer_cam, mv.score_cam, mv.cam):
        np.testing.assert_allclose(fn(first, x, "relu"), fn(last, xl, "relu"), atol=1e-6)
    for method in ("gradient", "grad_x_input", "smoothgrad"):
        a = mv.saliency(first, x, method=method, samples=4)
        np.testing.assert_allclose(a, mv.saliency(last, xl, method=method, samples=4), atol=1e-6)
    np.testing.assert_allclose(
        mv.guided_backprop(first, x), mv.guided_backprop(last, xl), atol=1e-6
    )  # (N, C, H, W) either way
    np.testing.assert_allclose(
        mv.integrated_gradients(first, x, steps=8),
        mv.integrated_gradients(last, xl, steps=8),
        atol=1e-6,
    )


def test_grad_cam_plus_plus_and_layer_cam_use_the_layer_gradients(fake):
    net, x = FakeNet(), images()
    out = net.run(x)
    cls = out["fc"].argmax(1)
    feat = out["relu"]
    grads = np.broadcast_to(
        (net.w2[cls] / (feat.shape[2] * feat.shape[3]))[:, :, None, None], feat.shape
    )
    for fn, formula in (
        (mv.grad_cam_plus_plus, cam_math.grad_cam_plus_plus_map),
        (mv.layer_cam, cam_math.layer_cam_map),
    ):
        want = normalize_maps(resize_bilinear(formula(feat, grads), (6, 10)))
        np.testing.assert_allclose(fn(net, x, "relu"), want, atol=1e-5)


def test_cam_gradient_route_equals_dense_weights(fake):
    net, x = FakeNet(), images()
    out = net.run(x)
    cls = np.array([0, 3, 1])
    want_low = np.einsum("nk,nkhw->nhw", net.w2[cls], out["relu"])
    assert (want_low < 0).any()
    signed = mv.cam(net, x, "relu", target=cls, normalize=False, relu=False)
    np.testing.assert_allclose(signed, resize_bilinear(want_low, (6, 10)), rtol=1e-4, atol=1e-5)
    raw = mv.cam(net, x, "relu", target=cls, normalize=False)  # ReLU at the layer, then upsampled
    want = resize_bilinear(np.maximum(want_low, 0.0), (6, 10))
    np.testing.assert_allclose(raw, want, rtol=1e-4, atol=1e-5)
    given = mv.cam(net, x, "relu", target=cls, fc_weights=net.w2, normalize=False)
    np.testing.assert_allclose(given, raw, rtol=1e-4, atol=1e-5)
    assert mv.cam(net, x, target=cls).shape == (3, 6, 10)  # layer=None: the last spatial layer


def test_cam_refuses_a_layer_that_does_not_feed_the_pooling(fake):
    net, x = FakeNet(), images()
    with pytest.raises(CamHeadError, match="spatial mean"):
        mv.cam(net, x, "conv")  # pre-ReLU: gap is not its mean
    with pytest.raises(CamHeadError, match="classes"):
        mv.cam(net, x, "relu", fc_weights=np.zeros((4, 3)))
    with pytest.raises(TargetError, match="callable"):
        mv.cam(net, x, "relu", target=lambda out: out[:, 0], fc_weights=net.w2)


def test_layer_is_never_swapped(fake):
    net, x = FakeNet(), images()
    with pytest.raises(NotSpatialLayerError, match=r"'gap'.*\(3, 5\)") as info:
        mv.grad_cam(net, x, "gap")
    assert "relu" in str(info.value)  # lists real spatial layers
    with pytest.raises(NotSpatialLayerError):
        mv.score_cam(net, x, "fc")
    with pytest.raises(LayerNotFoundError, match="relu"):
        mv.grad_cam(net, x, "rleu")
    with pytest.raises(mv.AmbiguousLayerError, match=r"uses one layer; layer=.\*. matches"):
        mv.layer_cam(net, x, "*")
    # None picks the last spatial layer
    np.testing.assert_allclose(mv.grad_cam(net, x), mv.grad_cam(net, x, "relu"))


def test_input_must_be_a_batch_of_images(fake):
    with pytest.raises(InputShapeError, match=r"x\[None\]"):
        mv.grad_cam(FakeNet(), images()[0], "relu")


def test_targets_per_sample_int_callable_and_errors(fake):
    net, x = FakeNet(), images()
    cls = np.array([2, 0, 3])
    batch = mv.grad_cam(net, x, "relu", cls)
    for i in range(3):
        np.testing.assert_allclose(
            batch[i], mv.grad_cam(net, x[i : i + 1], "relu", int(cls[i]))[0], atol=1e-6
        )
    same = mv.grad_cam(net, x, "relu", 1)
    np.testing.assert_allclose(same, mv.grad_cam(net, x, "relu", [1, 1, 1]))
    # a callable scoring 2*logit_1 - logit_0 gives Grad-CAM of the weight row 2 W[1] - W[0]
    got = mv.grad_cam(net, x, "relu", lambda out: 2 * out[:, 1] - out[:, 0])
    feat = net.run(x)["relu"]
    row = 2 * net.w2[1] - net.w2[0]
    want = normalize_maps(
        resize_bilinear(np.maximum(np.einsum("k,nkhw->nhw", row, feat), 0), (6, 10))
    )
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(TargetError, match=r"\(3,\)"):
        mv.grad_cam(net, x, "relu", [1, 2])
    with pytest.raises(TargetError, match="class index"):
        mv.grad_cam(net, x, "relu", "cat")


def test_saliency_is_the_input_gradient(fake):
    net, x = FakeNet(), images()
    cls = net.run(x)["fc"].argmax(1)
    g = fake.gradients(net, x, [], cls, wrt_input=True).input_gradient
    np.testing.assert_allclose(mv.saliency(net, x, normalize=False), np.abs(g).max(1), atol=1e-6)
    np.testing.assert_allclose(
        mv.saliency(net, x, method="grad_x_input", aggregation="sum", normalize=False),
        (g * x).sum(1),
        atol=1e-6,
    )
    assert mv.saliency(net, x, aggregation=None).shape == (3, 3, 6, 10)
    with pytest.raises(ValueError, match="smoothgrad"):
        mv.saliency(net, x, method="smooth")


def test_smoothgrad_is_the_mean_gradient_over_documented_noise(fake):
    net, x = FakeNet(), images(2)
    cls = net.run(x)["fc"].argmax(1)
    samples, level = 5, 0.2
    rng = np.random.default_rng(11)
    sigma = level * (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1))
    noisy = np.repeat(x, samples, axis=0) + rng.standard_normal(
        (10, 3, 6, 10), dtype=np.float32
    ) * np.repeat(sigma, samples).astype(np.float32).reshape(-1, 1, 1, 1)
    g = fake.gradients(net, noisy, [], np.repeat(cls, samples), wrt_input=True).input_gradient
    want = np.abs(g.reshape(2, samples, 3, 6, 10).mean(1)).max(1)
    kw = {
        "method": "smoothgrad",
        "samples": samples,
        "noise": level,
        "seed": 11,
        "normalize": False,
    }
    for bs in (1, 3, 32):
        fake.calls.clear()
        np.testing.assert_allclose(mv.saliency(net, x, batch_size=bs, **kw), want, atol=1e-5)
        assert max(size for _, size in fake.calls) <= bs  # memory bounded by the chunks
    other_seed = mv.saliency(net, x, **{**kw, "seed": 12})
    assert not np.allclose(other_seed, want, atol=1e-5)


def test_integrated_gradients_completeness_and_chunking(fake):
    net, x = FakeNet(), images()
    base = np.full_like(x, 0.5)
    maps, delta = mv.integrated_gradients(
        net, x, baseline=base, steps=64, normalize=False, return_delta=True
    )
    out_x, out_b = net.run(x)["fc"], net.run(base)["fc"]
    cls = out_x.argmax(1)
    gap = out_x[np.arange(3), cls] - out_b[np.arange(3), cls]
    np.testing.assert_allclose(maps.reshape(3, -1).sum(1), gap, rtol=0.03, atol=1e-3)
    np.testing.assert_allclose(delta, maps.reshape(3, -1).sum(1) - gap, atol=1e-5)
    one = mv.integrated_gradients(net, x, baseline=base, steps=64, normalize=False, batch_size=7)
    np.testing.assert_allclose(one, maps, atol=1e-6)
    scaled = mv.integrated_gradients(net, x, baseline=0.5, steps=64)
    np.testing.assert_allclose(scaled, normalize_maps(np.abs(maps)), atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        mv.integrated_gradients(net, x, baseline=np.zeros((2, 2)))


def test_score_cam_by_hand_and_chunked(fake):
    net, x = FakeNet(), images(2)
    out = net.run(x)
    feat, cls = out["relu"], out["fc"].argmax(1)
    keep = cam_math.score_cam_channels(feat)
    scores = np.zeros(feat.shape[:2])
    for i in range(2):
        for k in range(feat.shape[1]):
            if not keep[i, k]:
                continue
            up = resize_bilinear(feat[i, k], (6, 10))
            mask = (up - up.min()) / (up.max() - up.min())
            scores[i, k] = cam_math.softmax(net.run(x[i : i + 1] * mask)["fc"])[0, cls[i]]
    want = normalize_maps(
        resize_bilinear(np.maximum(np.einsum("nk,nkhw->nhw", scores, feat), 0), (6, 10))
    )
    for bs in (1, 4, 100):
        fake.calls.clear()
        np.testing.assert_allclose(mv.score_cam(net, x, "relu", batch_size=bs), want, atol=1e-5)
        assert max(size for _, size in fake.calls) <= bs
        assert [v for v, _ in fake.calls].count("forward") > 1  # masks go through `forward`
    # a model ending in softmax: its probabilities are used, never a second softmax;
    # one ending in log-softmax: scored on the logits from `gradients`
    for kind in (True, "log"):
        fake.calls.clear()
        np.testing.assert_allclose(mv.score_cam(FakeNet(softmax=kind), x, "relu"), want, atol=1e-5)
        verbs = [v for v, _ in fake.calls]
        assert verbs.count("forward" if kind is True else "gradients") > 1


@pytest.mark.parametrize(
    "method",
    [
        lambda net, x: mv.saliency(net, x, aggregation="maxabs"),
        lambda net, x: mv.integrated_gradients(net, x, aggregation="maxabs"),
        lambda net, x: mv.guided_backprop(net, x, aggregation="maxabs"),
        lambda net, x: mv.guided_grad_cam(net, x, "relu", aggregation="maxabs"),
    ],
)
def test_a_bad_aggregation_fails_before_any_model_work(fake, method):
    with pytest.raises(ValueError, match=r"`aggregation` must be one of .*'maxabs'"):
        method(FakeNet(), images())
    assert fake.calls == []


def test_guided_backprop_and_guided_grad_cam(fake):
    net, x = FakeNet(), images()
    cls = net.run(x)["fc"].argmax(1)
    g = fake.gradients(net, x, [], cls, wrt_input=True, guided=True).input_gradient
    np.testing.assert_allclose(mv.guided_backprop(net, x, normalize=False), g, atol=1e-6)
    np.testing.assert_allclose(mv.guided_backprop(net, x), normalize_maps(g), atol=1e-6)
    heat = mv.grad_cam(net, x, "relu", normalize=False)
    heat = heat / heat.max(axis=(1, 2), keepdims=True)  # the factor's peak is 1, 0 stays 0
    np.testing.assert_allclose(
        mv.guided_grad_cam(net, x, "relu", normalize=False), g * heat[:, None], atol=1e-6
    )
    assert mv.guided_grad_cam(net, x, "relu", aggregation="max_abs").shape == (3, 6, 10)


def test_explain_shares_one_pass_and_plots(fake, tmp_path):
    net, x = FakeNet(), images()
    fake.calls.clear()
    ex = mv.explain(
        net, x, ["grad_cam", "layer_cam", "grad_cam_plus_plus", "saliency"], layer="relu"
    )
    assert [verb for verb, _ in fake.calls] == ["gradients"]  # one pass for all four
    assert list(ex) == ["grad_cam", "layer_cam", "grad_cam_plus_plus", "saliency"]
    np.testing.assert_allclose(ex["grad_cam"], mv.grad_cam(net, x, "relu"), atol=1e-6)
    np.testing.assert_allclose(ex["saliency"], mv.saliency(net, x), atol=1e-6)
    assert ex.image.shape == (3, 6, 10, 3) and ex.layer == "relu"
    every = mv.explain(net, x, METHODS, samples=3, steps=8, target=2)
    assert all(v.shape == (3, 6, 10) and v.dtype == np.float32 for v in every.values())
    assert every.targets.tolist() == [2, 2, 2]
    fig = every.plot(sample=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["Input", "Saliency", "Gradient x input"]
    assert len(titles) == 1 + len(METHODS)  # the input, then one panel per method
    assert titles[METHODS.index("grad_cam") + 1] == "Grad-CAM\nat relu"  # the layer it read
    assert fig.get_suptitle() == "Evidence for class 2, sample 1"
    fig.savefig(tmp_path / "explain.png")
    with pytest.raises(ValueError, match="grad_cam"):
        mv.explain(net, x, ["gradcam"])


def test_plot_explanations_shapes():
    heat = np.zeros((2, 8, 8))
    heat[:, 2:5, 3:6] = 1.0
    guided = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    fig = mv.plot_explanations(
        np.zeros((2, 8, 8, 3)), {"grad_cam": heat, "guided_backprop": guided}, sample=1
    )
    assert [ax.get_title() for ax in fig.axes] == ["Input", "Grad-CAM", "Guided backprop"]
    img = fig.axes[2].get_images()[0].get_array()
    assert img.shape == (8, 8, 3)  # drawn as a colour image, not an overlay
    upsample_maps(heat, (16, 16))  # the helper is the documented resize
