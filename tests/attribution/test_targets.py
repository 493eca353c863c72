"""What a target scores (issue 12, kinds 1 and 2), once per framework.

Kind 1: a callable target receives the model's whole output — a tuple, a
list or a dict — with an output that ends in a softmax given as its logits;
a class index scores the main output. Kind 2: a one-unit head
(``Linear(4, 1) + Sigmoid`` / ``Dense(1, "sigmoid")``) is explained on its
logit; Score-CAM weights channels by the sigmoid probability of the masked
input (a regression head: by the unit's value); ``target=1`` is refused with a
callable as the hint. Twin models with the same weights: ``tests/twins.py``.
The right values are NumPy by hand: the nets are a 1x1 convolution, a ReLU, a
global average pool and dense heads, so every gradient is a closed form.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.attribution.maps import normalize_maps
from multiviz.errors import TargetError
from tests.twins import (
    HEADS_SIZE,
    heads_expected,
    heads_weights,
    native,
    two_heads,
    unit_head,
)

H, W = HEADS_SIZE


@pytest.fixture
def fw(framework) -> str:
    """The framework's name, once per framework (the ``framework`` fixture's runs)."""
    return framework.name


def _x(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, H, W)).astype(np.float32)


def _grad_cam(x: np.ndarray, w: dict, row: np.ndarray) -> np.ndarray:
    """Grad-CAM at ``relu`` for the score ``row . gap + b``: d score / d relu = row / (H W)."""
    relu = heads_expected(x, w)["relu"]
    return np.maximum(np.einsum("k,nkhw->nhw", row / (H * W), relu), 0.0)


def _input_gradient(x: np.ndarray, w: dict, row: np.ndarray) -> np.ndarray:
    """d (row . gap) / d x: through the ReLU's mask and the 1x1 convolution, (N, 3, H, W)."""
    active = heads_expected(x, w)["conv"] > 0  # (N, 4, H, W)
    per_unit = active * (row / (H * W))[None, :, None, None]
    return np.einsum("nkhw,kc->nchw", per_unit, w["conv"][:, :, 0, 0].astype(np.float64))


def _score_cam(x: np.ndarray, w: dict, probability) -> np.ndarray:
    """Score-CAM at ``relu`` of the unit head: mask, forward, ``probability(logit)``, weigh."""
    acts = heads_expected(x, w)["relu"]
    weights = np.zeros(acts.shape[:2])
    for n in range(len(x)):
        for k in range(acts.shape[1]):
            a = acts[n, k]
            if a.max() - a.min() <= 1e-5 * np.abs(acts[n]).max():
                continue  # a constant map carries no location (the authors' code skips it)
            mask = (a - a.min()) / (a.max() - a.min())
            logit = heads_expected(x[n : n + 1] * mask, w)["u"][0, 0]
            weights[n, k] = probability(logit)
    return np.maximum(np.einsum("nk,nkhw->nhw", weights, acts), 0.0)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- kind 1: whole outputs


@pytest.mark.parametrize("structure", ["tuple", "list", "dict"])
def test_a_callable_target_receives_the_whole_output(fw, structure):
    w = heads_weights()
    model, x = two_heads(fw, w, structure), _x()
    key = "b" if structure == "dict" else 1

    def second_head(out):  # head b's class 1, on its logits (b ends in a softmax)
        return out[key][:, 1]

    row = w["b"][1].astype(np.float64)
    got = mv.grad_cam(model, native(fw, x), "relu", second_head, normalize=False)
    np.testing.assert_allclose(got, _grad_cam(x, w, row), rtol=1e-4, atol=1e-6)
    grads = mv.saliency(model, native(fw, x), second_head, aggregation=None, normalize=False)
    np.testing.assert_allclose(grads, _input_gradient(x, w, row), rtol=1e-4, atol=1e-7)
    # the same through mv.explain, which shares one backward pass between them
    ex = mv.explain(model, native(fw, x), ["grad_cam", "saliency"], "relu", second_head)
    np.testing.assert_allclose(ex["grad_cam"], normalize_maps(_grad_cam(x, w, row)), atol=1e-4)
    want = normalize_maps(np.abs(_input_gradient(x, w, row)).max(axis=1))
    np.testing.assert_allclose(ex["saliency"], want, atol=1e-4)
    # a class index scores the main output: the first of a tuple or a list, a dict's first
    by_index = mv.grad_cam(model, native(fw, x), "relu", 2, normalize=False)
    np.testing.assert_allclose(by_index, _grad_cam(x, w, w["a"][2]), rtol=1e-4, atol=1e-6)


def test_a_callable_target_sees_the_same_structure_in_both_frameworks(fw):
    w = heads_weights()
    seen = []

    def spy(out):
        seen.append(type(out).__name__)
        return out[0][:, 0]

    mv.saliency(two_heads(fw, w, "tuple"), native(fw, _x()), spy)
    assert seen == ["tuple"]
    seen.clear()
    mv.saliency(two_heads(fw, w, "list"), native(fw, _x()), spy)
    assert seen == ["list"]


# --------------------------------------------------------------------------- kind 2: one unit


def test_a_unit_head_is_explained_on_its_logit(fw):
    w = heads_weights()
    model, x = unit_head(fw, w), _x()
    row = w["u"][0].astype(np.float64)
    for target in (None, 0):
        got = mv.grad_cam(model, native(fw, x), "relu", target, normalize=False)
        np.testing.assert_allclose(got, _grad_cam(x, w, row), rtol=1e-4, atol=1e-6)
        grads = mv.saliency(model, native(fw, x), target, aggregation=None, normalize=False)
        np.testing.assert_allclose(grads, _input_gradient(x, w, row), rtol=1e-4, atol=1e-7)
    ex = mv.explain(model, native(fw, x), ["grad_cam", "score_cam"], "relu")
    np.testing.assert_allclose(ex["grad_cam"], normalize_maps(_grad_cam(x, w, row)), atol=1e-4)
    want = normalize_maps(_score_cam(x, w, _sigmoid))
    np.testing.assert_allclose(ex["score_cam"], want, atol=1e-4)
    assert ex.targets.tolist() == [0, 0, 0]


@pytest.mark.parametrize("flip", [False, True])
def test_score_cam_weights_a_unit_head_by_its_sigmoid_probability(fw, flip):
    w = heads_weights()
    if flip:  # the opposite predictions: every logit negated
        w = {**w, "u": -w["u"], "u_b": -w["u_b"]}
    model, x = unit_head(fw, w), _x()
    got = mv.score_cam(model, native(fw, x), "relu", normalize=False)
    np.testing.assert_allclose(got, _score_cam(x, w, _sigmoid), rtol=1e-4, atol=1e-6)


def test_opposite_unit_heads_get_different_score_cam_maps(fw):
    w = heads_weights()
    flipped = {**w, "u": -w["u"], "u_b": -w["u_b"]}
    x = native(fw, _x())
    one = mv.score_cam(unit_head(fw, w), x, "relu", normalize=False)
    other = mv.score_cam(unit_head(fw, flipped), x, "relu", normalize=False)
    assert np.abs(one - other).max() > 0.05 * np.abs(one).max()


def test_a_regression_unit_is_weighted_by_its_value(fw):
    w = heads_weights()
    model, x = unit_head(fw, w, sigmoid=False), _x()
    got = mv.score_cam(model, native(fw, x), "relu", normalize=False)
    np.testing.assert_allclose(got, _score_cam(x, w, lambda z: z), rtol=1e-4, atol=1e-6)


def test_target_1_of_a_unit_head_is_refused_and_the_hint_works(fw):
    w = heads_weights()
    model, x = unit_head(fw, w), _x()
    with pytest.raises(TargetError) as info:
        mv.grad_cam(model, native(fw, x), "relu", 1)
    first, hint = str(info.value).splitlines()
    assert first == (
        "`target=1` picks a unit this output does not have: it has one unit (a sigmoid's "
        "logit or a regression value), so target=None or 0 scores it."
    )
    assert hint == (
        "hint: for the other class of a binary sigmoid head, pass target=lambda out: -out[:, 0]"
    )
    other = mv.grad_cam(model, native(fw, x), "relu", lambda out: -out[:, 0], normalize=False)
    np.testing.assert_allclose(other, _grad_cam(x, w, -w["u"][0]), rtol=1e-4, atol=1e-6)
