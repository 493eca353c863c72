"""The model zoo's check (scripts/zoo.py) on a few tiny models whose automatic layer was wrong.

``mv.grad_cam(model, x)`` with no layer must give the map that Grad-CAM,
computed by the script with plain autograd / ``tf.GradientTape`` at the layer
multiviz chose, gives; that layer's map must vary over space and its gradient
reach the target. The full zoo (~100 models) is the script's job
(``python scripts/zoo.py``, docs/zoo.md); these are its regressions:

* timm's SigLIP ViT pools with ``AttentionPoolLatent`` (``q``, ``kv``,
  ``num_heads``): its ``k_norm`` output (N, heads, T, head_dim) was chosen
  and read as a channels-last image; the right layer is the final ``norm``
  (every patch token reaches the latent query);
* CaiT's ``ClassAttn`` (``q``, ``k``, ``v``): its value projection was chosen,
  an attention internal; the right layer is the last class-attention block's
  ``norm1``;
* timm's MLP-Mixer has its patch embedding in ``stem`` and no prefix tokens:
  with no grid, only the stem's convolution was a map; the right layer is
  the final ``norm`` (average pooling: every token reaches the target).
"""

from __future__ import annotations

import pytest

from tests.zoo_script import loaded

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def zoo():
    yield from loaded("zoo_script")


CASES = {
    "siglip attention pool": (
        "vit_base_patch16_siglip_224",
        (32, 48),
        {"depth": 1, "embed_dim": 64, "num_heads": 2},
        "norm",
    ),
    "cait class attention": (
        "cait_xxs24_224",
        (32, 48),
        {"depth": 1, "depth_token_only": 1},
        "blocks_token_only.0.norm1",
    ),
    "mlp-mixer stem": ("mixer_s16_224", (32, 48), {}, "norm"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_automatic_layer_is_a_token_map_that_matches_autograd(zoo, case):
    name, hw, kw, layer = CASES[case]
    spec = zoo.Spec(name, hw, {"img_size": hw, **kw})
    row = zoo.run_one("timm_vit", spec, zoo.TOL)
    assert row.layer == layer, row
    assert row.kind == "token map", row
    assert row.status == "ok", row
    assert row.diff <= 1e-4


def test_a_zero_classifier_is_named_instead_of_no_spatial_layer():
    """torchvision's ViT starts its head at zero: every layer's gradient is zero.

    Known independently: with an all-zero last linear layer the logits are its
    bias, constant in the input, so no layer can reach the target; with one
    nonzero weight the same model's conv layer is chosen.
    """
    import multiviz as mv
    from multiviz.errors import NotSpatialLayerError

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    torch.nn.init.zeros_(model[4].weight)
    x = torch.rand(2, 3, 12, 16)
    with pytest.raises(NotSpatialLayerError, match="gradient is zero at all 2 spatial") as info:
        mv.grad_cam(model, x)
    first = str(info.value).splitlines()[0]
    assert len(first) <= 200 and "Sequential" in first
    assert "all zero" in str(info.value).splitlines()[1]
    with torch.no_grad():
        model[4].weight[:, 0] = 1.0
    assert mv.grad_cam(model, x).shape == (2, 12, 16)
