"""Attribution maps against independent references, once per framework.

Each body runs for PyTorch and for Keras through the ``framework`` fixture
(``tests/conftest.py``). References: float64 finite differences on a small
net (C, H and W all different) with the closed-form CAM math applied to
them, the dense layer's own weights for CAM, the same batch one sample at a
time, the same model with a softmax appended. Also: the model is left as
found by every method, also when its forward pass raises. What only one
framework has (hand-written guided ReLUs in autograd, a direct PyTorch
Score-CAM, localization on the shapes data set) is in ``test_torch.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.attribution import cam_math
from multiviz.core.resize import resize_bilinear
from multiviz.errors import CamHeadError, NotSpatialLayerError
from tests.frameworks import CAM_SIZE, C, cam_logits, cam_weights


def cam_input(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, C, *CAM_SIZE))


def numeric_grad(f, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d sum(f(a)) / da by central differences, float64 NumPy."""
    a = np.array(a, np.float64)
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        up = f(a).sum()
        a[idx] = old - h
        down = f(a).sum()
        a[idx] = old
        g[idx] = (up - down) / (2 * h)
    return g


def input_grad_fd(logits, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d logit_1 / d x per sample (canonical) by central differences of ``logits`` (NumPy float64).

    The reference net runs in NumPy, not in the framework: Keras's float64 on
    its JAX backend needs x64 switched on, and on its torch backend its mean
    and matmul lose ~1e-8, which differences of 1e-6 would turn into 1e-2.
    """
    grads = np.zeros_like(x)
    d = x[0].size
    steps = h * np.eye(d).reshape(d, *x.shape[1:])
    for i in range(len(x)):
        out = logits(np.concatenate([x[i] + steps, x[i] - steps]))[:, 1]
        grads[i] = ((out[:d] - out[d:]) / (2 * h)).reshape(x.shape[1:])
    return grads


# --------------------------------------------------------------------------- against finite differences


def test_cam_family_matches_finite_difference_gradients(framework):
    kit = framework
    w = cam_weights()
    net, x = kit.cam_net(w), cam_input()
    cls = np.array([2, 0])
    acts = kit.features(net, x, "feat")  # (2, 5, 4, 5)

    def head(a):  # relu -> gap -> fc, in NumPy
        return (np.maximum(a, 0).mean(axis=(2, 3)) @ w["fc"].T + w["fc_b"])[[0, 1], cls]

    grads = numeric_grad(head, acts)
    for fn, formula in (
        (mv.grad_cam, cam_math.grad_cam_map),
        (mv.grad_cam_plus_plus, cam_math.grad_cam_plus_plus_map),
        (mv.layer_cam, cam_math.layer_cam_map),
    ):
        want = resize_bilinear(formula(acts, grads), CAM_SIZE)
        got = fn(net, kit.native(x), "feat", cls, normalize=False)
        assert got.shape == (2, *CAM_SIZE)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert (want > 0).any() and (want == 0).any()  # the ReLU was exercised


def test_saliency_matches_finite_differences(framework):
    kit = framework
    w = cam_weights()
    net, x = kit.cam_net(w), cam_input()
    want = input_grad_fd(lambda z: cam_logits(w, z), x)
    got = mv.saliency(net, kit.native(x), 1, aggregation=None, normalize=False)
    assert got.shape == (2, C, *CAM_SIZE)  # the canonical layout: channels first
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        mv.saliency(net, kit.native(x), 1, normalize=False),
        np.abs(want).max(axis=1),
        rtol=1e-4,
        atol=1e-6,
    )


def test_integrated_gradients_completeness(framework, builtin):
    kit = framework
    images = mv.shapes_dataset(4, size=(32, 40), seed=2).images
    maps, delta = mv.integrated_gradients(
        builtin, kit.native(images), steps=64, normalize=False, return_delta=True
    )
    logits = kit.run(builtin, np.concatenate([images, np.zeros_like(images)]))
    cls = logits[:4].argmax(axis=1)
    gap = logits[np.arange(4), cls] - logits[4 + np.arange(4), cls]
    total = maps.reshape(4, -1).sum(axis=1)
    print("IG completeness, relative error:", np.abs(total - gap) / np.abs(gap))
    np.testing.assert_allclose(total, gap, rtol=0.05, atol=1e-3 * np.abs(gap).max())
    np.testing.assert_allclose(delta, total - gap, atol=1e-3)


def test_cam_gradient_route_equals_the_dense_weights(framework, builtin, shapes):
    kit = framework
    x = kit.native(shapes.images)
    w = kit.dense_weights(builtin, "fc")  # (classes, 64)
    for target in (None, [3, 1, 0]):
        by_grad = mv.cam(builtin, x, "relu3", target, normalize=False)
        by_weights = mv.cam(builtin, x, "relu3", target, fc_weights=w, normalize=False)
        np.testing.assert_allclose(by_grad, by_weights, rtol=1e-4, atol=1e-5)
    with pytest.raises(CamHeadError, match="spatial mean"):
        mv.cam(builtin, x, "conv3")  # the pooling averages relu3, not conv3


# --------------------------------------------------------------------------- targets


METHODS = {
    "grad_cam": lambda m, x, t: mv.grad_cam(m, x, "relu3", t),
    "grad_cam_plus_plus": lambda m, x, t: mv.grad_cam_plus_plus(m, x, "relu3", t),
    "layer_cam": lambda m, x, t: mv.layer_cam(m, x, "relu2", t),
    "cam": lambda m, x, t: mv.cam(m, x, "relu3", t),
    "score_cam": lambda m, x, t: mv.score_cam(m, x, "relu3", t, batch_size=64),
    "saliency": lambda m, x, t: mv.saliency(m, x, t),
    "grad_x_input": lambda m, x, t: mv.saliency(m, x, t, method="grad_x_input"),
    "integrated_gradients": lambda m, x, t: mv.integrated_gradients(m, x, t, steps=8),
    "guided_backprop": lambda m, x, t: mv.guided_backprop(m, x, t),
    "guided_grad_cam": lambda m, x, t: mv.guided_grad_cam(m, x, "relu3", t),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_per_sample_targets_equal_separate_calls(framework, builtin, shapes, method):
    fn = METHODS[method]
    x = framework.native(shapes.images)
    targets = np.array([3, 0, 2])
    batch = fn(builtin, x, targets)
    for i, t in enumerate(targets):
        np.testing.assert_allclose(batch[i], fn(builtin, x[i : i + 1], int(t))[0], atol=1e-5)
    # SmoothGrad is left out: one seed draws one noise stream for the whole batch


def test_a_callable_target(framework, builtin, shapes):
    x = framework.native(shapes.images)
    np.testing.assert_allclose(  # two routes (eager and compiled in Keras): float32 rounding apart
        mv.grad_cam(builtin, x, "relu3", lambda out: out[:, 2]),
        mv.grad_cam(builtin, x, "relu3", 2),
        rtol=1e-6,
        atol=1e-6,
    )
    # gradients are linear in the score
    combo = mv.saliency(
        builtin, x, lambda out: 2 * out[:, 1] - out[:, 0], aggregation=None, normalize=False
    )
    one = mv.saliency(builtin, x, 1, aggregation=None, normalize=False)
    zero = mv.saliency(builtin, x, 0, aggregation=None, normalize=False)
    np.testing.assert_allclose(combo, 2 * one - zero, rtol=1e-4, atol=1e-5 * np.abs(combo).max())
    # Score-CAM with a callable uses the raw score (no softmax)
    assert mv.score_cam(builtin, x, "relu3", lambda out: out[:, 1] - out[:, 0]).shape == (3, 32, 40)


def test_a_callable_target_can_score_the_probability(framework, builtin, shapes):
    """The documented recipe: a callable gets the logits (also behind a final softmax).

    The chain rule gives the probability's gradient from the logits'
    gradients: ``d p_k = p_k (d z_k - sum_j p_j d z_j)``, with ``p`` computed
    here from the model's output in NumPy.
    """
    kit = framework
    if kit.name == "torch":
        prob = lambda out: kit.torch.softmax(out, dim=1)[:, 2]  # noqa: E731
    else:
        prob = lambda out: kit.keras.ops.softmax(out, axis=1)[:, 2]  # noqa: E731
    x = kit.native(shapes.images)
    raw = {"aggregation": None, "normalize": False}
    got = mv.saliency(builtin, x, prob, **raw)
    logits = kit.run(builtin, shapes.images).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = np.stack([mv.saliency(builtin, x, k, **raw) for k in range(4)], axis=1)  # (N, 4, C, H, W)
    mean = np.einsum("nk,nkchw->nchw", p, g)
    want = p[:, 2, None, None, None] * (g[:, 2] - mean)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    # a model ending in a softmax hands the callable the same logits: no double softmax
    soft = kit.with_softmax(builtin)
    np.testing.assert_allclose(
        mv.grad_cam(soft, x, kit.softmax_prefix + "relu3", prob, normalize=False),
        mv.grad_cam(builtin, x, "relu3", prob, normalize=False),
        rtol=1e-5,
        atol=1e-7,
    )


def test_a_model_ending_in_softmax_is_explained_on_its_logits(framework, builtin, shapes):
    kit = framework
    soft = kit.with_softmax(builtin)
    x = kit.native(shapes.images)
    layer = kit.softmax_prefix + "relu3"
    for fn in (mv.grad_cam, mv.score_cam, mv.cam):
        np.testing.assert_allclose(fn(soft, x, layer), fn(builtin, x, "relu3"), atol=1e-5)


# --------------------------------------------------------------------------- layers


def test_the_layer_must_be_spatial_and_is_never_swapped(framework, builtin, shapes):
    x = framework.native(shapes.images)
    for layer in ("gap", "fc"):
        with pytest.raises(NotSpatialLayerError, match=f"'{layer}'") as info:
            mv.grad_cam(builtin, x, layer)
        assert "relu3" in str(info.value)
    with pytest.raises(NotSpatialLayerError, match="'gap'"):
        mv.score_cam(builtin, x, "gap")
    np.testing.assert_array_equal(mv.grad_cam(builtin, x), mv.grad_cam(builtin, x, "relu3"))


# --------------------------------------------------------------------------- the model is left alone


ALL = {
    **METHODS,
    "smoothgrad": lambda m, x, t: mv.saliency(m, x, t, method="smoothgrad", samples=3),
    "explain": lambda m, x, t: mv.explain(m, x, ["grad_cam", "score_cam", "saliency"], "relu3", t),
}


@pytest.mark.parametrize("method", sorted(ALL))
def test_the_model_is_unchanged_also_when_its_forward_pass_raises(framework, builtin, method):
    kit = framework
    model = kit.with_tripwire(builtin)
    kit.unsettle(model)
    before = kit.state(model)
    x = mv.shapes_dataset(2, size=(32, 40)).images
    ALL[method](model, kit.native(x), None)
    kit.assert_same(before, kit.state(model))
    bad = x.copy()
    bad[0, 0, 3, 4] = np.nan
    with pytest.raises(Exception) as info:
        ALL[method](model, kit.native(bad), 1)
    assert "tripwire" in str(info.value) + str(info.value.__cause__)
    kit.assert_same(before, kit.state(model))
