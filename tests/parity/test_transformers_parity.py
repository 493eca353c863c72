"""The same ViT in PyTorch and Keras 3: token maps, Grad-CAM and rollout agree.

The Keras model gets the PyTorch model's weights through ``mv.transfer_weights``
(patch embedding, class/position tokens, LayerNorm, nn.MultiheadAttention ->
Keras MultiHeadAttention, MLP), so the right answer for every Keras number is
the PyTorch one.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import multiviz as mv  # noqa: E402
from multiviz.sources.builtin_vit import ViTConfig  # noqa: E402

pytestmark = pytest.mark.both

CONFIG = ViTConfig(image_size=(32, 48), patch=8, dim=16, depth=2, heads=2, mlp=24, registers=2)


@pytest.fixture(scope="module")
def pair():
    from multiviz.backends.keras.builtin_vit import build as keras_build
    from multiviz.backends.torch.builtin_vit import build as torch_build

    torch.manual_seed(0)
    tm = torch_build(None, CONFIG)
    km = keras_build(None, CONFIG)
    report = mv.transfer_weights(tm, km)
    x = np.random.default_rng(0).random((3, 3, *CONFIG.image_size), dtype=np.float32)
    return tm, km, x, mv.to_channels_last(x), report


def test_transfer_pairs_every_layer(pair):
    *_, report = pair
    pairs = {p.a: p.b for p in report.pairs}
    assert pairs["blocks.0.attn"] == "blocks.0.attn" and pairs["tokens"] == "tokens"
    assert pairs["patch_embed"] == "patch_embed" and pairs["norm"] == "norm"
    assert not report.skipped


def test_token_maps_agree(pair):
    tm, km, x, xk, _ = pair
    names = ["tokens", "blocks.0.norm1", "blocks.0.attn", "blocks.1", "norm"]
    at, ak = mv.capture(tm, x, names), mv.capture(km, xk, names)
    for n in names:
        assert at[n].shape == (3, 16, 4, 6), n
        np.testing.assert_allclose(ak[n], at[n], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ak.prefix[n], at.prefix[n], rtol=1e-5, atol=1e-5)
        assert at.prefix[n].shape == (3, 3, 16)


def test_grad_cam_and_rollout_agree(pair):
    tm, km, x, xk, _ = pair
    for fn in (
        lambda m, v: mv.grad_cam(m, v, normalize=False),
        lambda m, v: mv.attention_rollout(m, v, normalize=False),
        lambda m, v: mv.attention_rollout(m, v, "grad", target=1, normalize=False),
    ):
        a, b = fn(tm, x), fn(km, xk)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))


def test_compare_pairs_the_two(pair):
    tm, km, x, xk, _ = pair
    report = mv.compare(tm, km, (x, xk))
    assert report.passed, report.table()
    assert {"blocks.1.norm1", "tokens", "head"} <= {row.name for row in report}
