"""Vision transformers in Keras 3: our Keras ViT's token layers as maps, CAM, rollout.

The Keras ViT is built from Keras's own layers (Conv2D patch embedding,
MultiHeadAttention, LayerNormalization, Dense) and declares its patch grid
on its token-embedding layer. Right answers: lighting one patch lights one
pixel of the token map; the attention probabilities multiviz recomputes
equal the ones Keras's MultiHeadAttention returns with
``return_attention_scores=True``.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import multiviz as mv  # noqa: E402
from multiviz.attribution.model_call import ModelCall, choose_layer  # noqa: E402
from multiviz.attribution.rollout_math import attention_probabilities  # noqa: E402
from multiviz.sources.builtin_vit import ViTConfig  # noqa: E402

pytestmark = pytest.mark.keras

CONFIGS = {
    "square": ViTConfig(image_size=(32, 32), patch=8, dim=16, depth=2, heads=2, mlp=24),
    "non-square, registers, patch 4": ViTConfig(
        image_size=(24, 40), patch=4, dim=16, depth=2, heads=4, mlp=24, registers=3
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def vit(request):
    from multiviz.backends.keras.builtin_vit import build

    if keras.backend.backend() == "torch":  # the keras_torch session
        pytest.skip(
            "Keras on torch registers each layer as a torch module, and torch refuses the "
            "dotted names ('blocks.0.norm1') the built-in ViT shares with timm"
        )
    keras.utils.set_random_seed(0)
    config = CONFIGS[request.param]
    model = build(None, config)
    x = np.random.default_rng(0).random((2, *config.image_size, 3), dtype=np.float32)
    return config, model, x


def test_every_token_layer_is_a_map_on_the_grid(vit):
    config, model, x = vit
    infos = mv.layers(model)
    tokens = [i for i in infos if i.layout == "tokens"]
    h, w = config.grid
    assert {i.name for i in tokens} >= {
        "tokens",
        "blocks.0.norm1",
        "blocks.0.attn",
        "blocks.1",
        "norm",
    }
    acts = mv.capture(model, x, [i.name for i in tokens])
    for i in tokens:
        width = config.mlp if (".mlp.fc1" in i.name or ".mlp.act" in i.name) else config.dim
        assert acts[i.name].shape == (2, width, h, w), i.name
        assert acts.prefix[i.name].shape[:2] == (2, config.prefix)


def test_lighting_one_patch_lights_that_pixel(vit):
    config, model, _ = vit
    h, w = config.grid
    p = config.patch
    dark = np.zeros((1, *config.image_size, 3), np.float32)
    for r, c in [(0, w - 1), (h - 1, 0)]:
        lit = dark.copy()
        lit[:, r * p : (r + 1) * p, c * p : (c + 1) * p, :] = np.linspace(0, 1, p * p * 3).reshape(
            p, p, 3
        )
        a = mv.capture(model, np.concatenate([dark, lit]), ["tokens"])["tokens"]
        change = np.abs(a[1] - a[0]).sum(axis=0)
        assert np.unravel_index(np.argmax(change), change.shape) == (r, c)
        assert change.sum() == pytest.approx(change[r, c], rel=1e-4)


def test_grad_cam_with_no_layer_picks_the_last_norm1(vit):
    config, model, x = vit
    assert choose_layer(ModelCall.make(model, x, 32), None, "Grad-CAM") == "blocks.1.norm1"
    cam = mv.grad_cam(model, x, normalize=False)
    assert cam.shape == (2, *config.image_size) and np.isfinite(cam).all()
    assert cam.max() > 0  # random weights: a sample's map may be all negative before the ReLU
    np.testing.assert_array_equal(cam, mv.grad_cam(model, x, "blocks.1.norm1", normalize=False))


def test_recomputed_attention_equals_keras_attention_scores(vit):
    config, model, x = vit
    from multiviz.backends.keras.attention import read_attention

    layer = model.get_layer("blocks.0.attn")
    h = mv.capture(model, x, ["blocks.0.norm1"])
    tokens = np.concatenate(
        [
            h.prefix["blocks.0.norm1"],
            mv.to_channels_last(h["blocks.0.norm1"]).reshape(2, -1, config.dim),
        ],
        axis=1,
    )
    _, scores = layer(tokens, tokens, return_attention_scores=True)
    np.testing.assert_allclose(
        attention_probabilities(tokens, read_attention(layer)),
        np.asarray(scores),
        rtol=1e-5,
        atol=1e-6,
    )
    out = mv.attention_rollout(model, x)
    assert out.shape == (2, *config.image_size) and np.isfinite(out).all()
