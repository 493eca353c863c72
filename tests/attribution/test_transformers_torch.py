"""Vision transformers in PyTorch: token maps, channels-last stages, CAM layer choice, rollout.

A zoo of random-init models in reduced configurations (depth 2, small,
non-square inputs where the model allows; torchvision's vit_b_16 is the one
full-size model). Every right answer is known independently of multiviz:

* token maps against timm's own ``forward_intermediates(output_fmt="NCHW")``,
  and at the first token layer by lighting one patch of a black image;
* Grad-CAM on a token layer against the formula of pytorch-grad-cam with its
  documented ``reshape_transform``, written out here with autograd;
* rollout against attention probabilities computed here from the model's own
  ``qkv`` weights, with timm's fused attention on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

import multiviz as mv  # noqa: E402
from multiviz.attribution.model_call import ModelCall, choose_layer  # noqa: E402
from multiviz.core.tokens import TokenGridError  # noqa: E402
from multiviz.errors import MultivizWarning  # noqa: E402

pytestmark = pytest.mark.torch


def _timm(name: str, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=5, **kw).eval()


def _torchvision_vit():
    model = torchvision.models.vit_b_16(num_classes=5).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero
    return model


# name -> (builder, input (H, W), the first layer whose map is one pixel per patch)
ZOO = {
    "timm vit": (
        lambda: _timm("vit_tiny_patch16_224", depth=2, img_size=(48, 80)),
        (48, 80),
        "patch_embed",
    ),
    "timm deit distilled": (
        lambda: _timm("deit_tiny_distilled_patch16_224", depth=2, img_size=(64, 32)),
        (64, 32),
        "patch_embed",
    ),
    "timm vit registers": (
        lambda: _timm("vit_small_patch14_reg4_dinov2", depth=2, img_size=(42, 56)),
        (42, 56),
        "patch_embed",
    ),
    "timm vit dynamic size": (
        lambda: _timm("vit_tiny_patch16_224", depth=2, dynamic_img_size=True),
        (80, 48),
        "patch_embed",
    ),
    "timm swin": (
        lambda: _timm(
            "swin_tiny_patch4_window7_224",
            depths=(1, 1, 1, 1),
            embed_dim=24,
            num_heads=(1, 1, 2, 2),
            img_size=(112, 224),
        ),
        (112, 224),
        "patch_embed",
    ),
    "timm convnext": (
        lambda: _timm("convnext_tiny", depths=(1, 1, 1, 1), dims=(16, 24, 32, 40)),
        (64, 96),
        "stem",
    ),
    "torchvision vit_b_16": (_torchvision_vit, (224, 224), "encoder.dropout"),
    "torchvision swin_t": (
        lambda: torchvision.models.swin_t(num_classes=5).eval(),
        (64, 96),
        "features.0",
    ),
    "multiviz vit": (lambda: mv.builtin_model("torch", None, arch="vit"), (64, 64), "tokens"),
}


# the layer the automatic choice must make: in a class-token ViT the last block's first norm
# (after it, patch tokens never reach the class token); where the model pools all
# positions, its last map
CHOSEN = {
    "timm vit": "blocks.1.norm1",
    "timm deit distilled": "blocks.1.norm1",
    "timm vit registers": "blocks.1.norm1",
    "timm vit dynamic size": "blocks.1.norm1",
    "timm swin": "norm",
    "timm convnext": "norm_pre",  # an Identity after the last stage: its map
    "torchvision vit_b_16": "encoder.layers.encoder_layer_11.ln_1",
    "torchvision swin_t": "norm",  # the final norm (channels-last); the model's Permute after it only moves axes
    "multiviz vit": "blocks.3.norm1",
}


@pytest.fixture(scope="module", params=list(ZOO))
def zoo(request):
    build, size, _ = ZOO[request.param]
    model = build()
    x = np.random.default_rng(1).random((2, 3, *size), dtype=np.float32)
    return request.param, model, x


def test_token_maps_match_timm_forward_intermediates(zoo):
    name, model, x = zoo
    if not hasattr(model, "forward_intermediates"):
        pytest.skip("not a timm model")
    with torch.no_grad():
        want = model.forward_intermediates(
            torch.from_numpy(x), output_fmt="NCHW", intermediates_only=True
        )
    stages = (
        "blocks"
        if hasattr(model, "blocks")
        else ("layers" if hasattr(model, "layers") else "stages")
    )
    names = [f"{stages}.{i}" for i in range(len(want))]
    acts = mv.capture(model, x, names)
    for n, w in zip(names, want, strict=True):
        got = acts[n]
        assert got.shape == tuple(w.shape), (name, n)
        np.testing.assert_allclose(got, w.numpy(), rtol=1e-5, atol=1e-5)
    if hasattr(model, "num_prefix_tokens") and model.num_prefix_tokens:
        assert acts.prefix[names[-1]].shape == (2, model.num_prefix_tokens, want[-1].shape[1])


@pytest.mark.filterwarnings("ignore::multiviz.errors.MultivizWarning")  # a lit patch is high-norm
def test_lighting_one_patch_lights_that_pixel_of_the_first_token_map(zoo):
    name, model, x = zoo
    infos = {i.name: i for i in ModelCall.make(model, x, 32).layer_infos(with_shapes=True)}
    info = infos[ZOO[name][2]]
    h, w = info.shape[2:]
    H, W = x.shape[2:]
    ph, pw = H // h, W // w
    dark = np.zeros((1, *x.shape[1:]), np.float32)
    for r, c in [(0, w - 1), (h - 1, 0), (h // 2, w // 2)]:
        lit = dark.copy()
        lit[:, :, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] = np.linspace(
            0, 1, ph * pw
        ).reshape(ph, pw)
        a = mv.capture(model, np.concatenate([dark, lit]), [info.name])[info.name]
        change = np.abs(a[1] - a[0]).sum(axis=0)  # (h, w)
        assert np.unravel_index(np.argmax(change), change.shape) == (r, c), (name, info.name)
        assert change.sum() == pytest.approx(change[r, c], rel=1e-4), (name, info.name)
        assert a.shape[1:] == info.shape[1:]  # (C, h, w): prefix tokens apart, channels first


def test_grad_cam_with_no_layer_is_a_real_map(zoo):
    name, model, x = zoo
    cam = mv.grad_cam(model, x, normalize=False)
    assert cam.shape == (2, *x.shape[2:]) and np.isfinite(cam).all()
    chosen = choose_layer(ModelCall.make(model, x, 32), None, "Grad-CAM")
    assert chosen == CHOSEN[name], (name, chosen)
    np.testing.assert_array_equal(cam, mv.grad_cam(model, x, chosen, normalize=False))
    assert cam.max() > 0, name  # random weights: a sample's map may be all negative before ReLU


def _grad_cam_by_hand(model, layer, x, prefix, grid):
    """pytorch-grad-cam's GradCAM with reshape_transform, written out (no normalizing/resizing)."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        xt = torch.from_numpy(x)
        out = model(xt)
        cls = out.argmax(1)
        g = torch.autograd.grad(out.gather(1, cls[:, None]).sum(), store["a"])[0]
    finally:
        handle.remove()

    def reshape_transform(t):  # the callback pytorch-grad-cam documents for ViTs
        t = t[:, prefix:, :].reshape(t.size(0), grid[0], grid[1], t.size(2))
        return t.permute(0, 3, 1, 2)

    a, g = reshape_transform(store["a"].detach()), reshape_transform(g)
    weights = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(1)).numpy()


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_grad_cam_on_tokens_equals_the_reshape_callback_formula(size):
    model = _timm("vit_tiny_patch16_224", depth=2, img_size=size)
    x = np.random.default_rng(2).random((2, 3, *size), dtype=np.float32)
    grid = (size[0] // 16, size[1] // 16)
    want = _grad_cam_by_hand(model, model.blocks[-1].norm1, x, 1, grid)
    got = mv.grad_cam(model, x, "blocks.1.norm1", normalize=False)
    from multiviz.core.resize import resize_bilinear

    np.testing.assert_allclose(got, resize_bilinear(want, size), rtol=1e-5, atol=1e-6)
    # and with no layer: the last block's first norm is what reaches the class token
    np.testing.assert_allclose(mv.grad_cam(model, x, normalize=False), got, rtol=1e-6, atol=1e-7)


@pytest.mark.peers
def test_grad_cam_equals_pytorch_grad_cam():
    """The peer itself (installed in the torch session, which requires it: MULTIVIZ_REQUIRE=peers)."""
    import pytorch_grad_cam as gc
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from multiviz.attribution.cam_math import grad_cam_map

    model = _timm("vit_tiny_patch16_224", depth=2, img_size=(64, 64))
    x = np.random.default_rng(3).random((2, 3, 64, 64), dtype=np.float32)

    def reshape_transform(t, h=4, w=4):  # as the peer's documentation writes it for ViTs
        return t[:, 1:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    xt = torch.from_numpy(x)
    classes = model(xt).argmax(1).tolist()
    with gc.GradCAM(model, [model.blocks[-1].norm1], reshape_transform=reshape_transform) as peer:
        theirs = peer(input_tensor=xt, targets=[ClassifierOutputTarget(c) for c in classes])
    call = ModelCall.make(model, x, 32)
    name = choose_layer(call, None, "Grad-CAM")
    assert name == "blocks.1.norm1"
    result = call.gradients([name], np.array(classes))
    low = grad_cam_map(result.activations[name], result.gradients[name])  # (N, 4, 4), no callback
    # the peer's post-processing: scale to [0, 1], resize (OpenCV), clip at 0, scale again
    shown = scale_cam_image(np.maximum(scale_cam_image(low, (64, 64)), 0))
    np.testing.assert_allclose(shown, theirs, atol=1e-5)


@pytest.mark.peers
def test_grad_cam_equals_torchcam_with_its_reshape_transform():
    """torchcam's Grad-CAM with its ``reshape_transform`` on the square case, before resizing."""
    from torchcam.methods import GradCAM

    from multiviz.attribution.cam_math import grad_cam_map

    model = _timm("vit_tiny_patch16_224", depth=2, img_size=(64, 64))
    x = np.random.default_rng(7).random((2, 3, 64, 64), dtype=np.float32)

    def reshape_transform(t, h=4, w=4):
        return t[:, 1:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    xt = torch.from_numpy(x)
    with GradCAM(model, model.blocks[-1].norm1, reshape_transform=reshape_transform) as peer:
        scores = model(xt)
        classes = scores.argmax(1).tolist()
        theirs = peer(class_idx=classes, scores=scores, normalized=False)[0].detach().numpy()
    call = ModelCall.make(model, x, 32)
    result = call.gradients([choose_layer(call, None, "Grad-CAM")], np.array(classes))
    ours = grad_cam_map(result.activations["blocks.1.norm1"], result.gradients["blocks.1.norm1"])
    assert ours.shape == theirs.shape == (2, 4, 4) and ours.max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * ours.max())


def test_token_layers_of_a_model_with_no_grid_need_the_keywords():
    class TinyViT(torch.nn.Module):  # a ViT multiviz cannot read the grid of
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.cls = torch.nn.Parameter(torch.zeros(1, 1, 8))
            self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = torch.nn.LayerNorm(8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
            t = self.norm(t + self.attn(t, t, t, need_weights=False)[0])
            return self.head(t[:, 0])

    model = TinyViT().eval()
    x = np.random.default_rng(4).random((1, 3, 12, 20), dtype=np.float32)
    with pytest.raises(TokenGridError, match=r"token_grid=\(h, w\)") as err:
        mv.grad_cam(model, x, "attn")
    assert "prefix_tokens" in str(err.value)
    acts = mv.capture(model, x, ["norm"], token_grid=(3, 5), prefix_tokens=1)
    assert acts["norm"].shape == (1, 8, 3, 5) and acts.prefix["norm"].shape == (1, 1, 8)
    cam = mv.grad_cam(model, x, "attn", token_grid=(3, 5), prefix_tokens=1)
    assert cam.shape == (1, 12, 20)


def test_alexnet_at_64px_picks_the_last_map_with_spatial_information():
    model = torchvision.models.alexnet(num_classes=4).eval()
    x = np.random.default_rng(5).random((1, 3, 64, 64), dtype=np.float32)
    assert choose_layer(ModelCall.make(model, x, 32), None, "Grad-CAM") == "features.11"


def _rollout_by_hand(model, x, discard_ratio=0.0):
    """Abnar & Zuidema's rollout with probabilities computed here from each block's qkv weights."""
    inputs = []
    hooks = [
        b.norm1.register_forward_hook(lambda m, i, o: inputs.append(o.detach()))
        for b in model.blocks
    ]
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for hook in hooks:
            hook.remove()
    joint = None
    for block, t in zip(model.blocks, inputs, strict=True):
        attn = block.attn
        n, tokens, _ = t.shape
        qkv = (t @ attn.qkv.weight.T + attn.qkv.bias).reshape(n, tokens, 3, attn.num_heads, -1)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1).mean(1).double().detach()
        if discard_ratio:
            flat = a.reshape(n, -1)
            low = flat.argsort(dim=1, stable=True)[:, : int(flat.shape[1] * discard_ratio)]
            for i in range(n):
                keep = low[i][low[i] != 0]
                flat[i, keep] = 0
        a = 0.5 * a + 0.5 * torch.eye(tokens, dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint[:, 0, 1:].detach().numpy()


@pytest.mark.parametrize("discard_ratio", [0.0, 0.9])
def test_rollout_equals_a_hand_written_rollout_with_fused_attention_on(discard_ratio):
    model = _timm("vit_tiny_patch16_224", depth=3, img_size=(48, 64))
    assert all(b.attn.fused_attn for b in model.blocks)
    x = np.random.default_rng(6).random((2, 3, 48, 64), dtype=np.float32)
    want = _rollout_by_hand(model, x, discard_ratio).reshape(2, 3, 4)
    got = mv.attention_rollout(model, x, discard_ratio=discard_ratio, normalize=False)
    from multiviz.core.resize import resize_bilinear

    np.testing.assert_allclose(got, resize_bilinear(want.astype(np.float32), (48, 64)), rtol=1e-5)


def test_rollout_leaves_register_tokens_out_and_refuses_window_attention():
    model = _timm("vit_small_patch14_reg4_dinov2", depth=2, img_size=(28, 42))
    x = np.random.default_rng(7).random((1, 3, 28, 42), dtype=np.float32)
    got = mv.attention_rollout(model, x, "grad")
    assert got.shape == (1, 28, 42) and np.isfinite(got).all()
    swin = ZOO["timm swin"][0]()
    with pytest.raises(mv.UnsupportedAttentionError, match="window attention"):
        mv.attention_rollout(swin, np.zeros((1, 3, 112, 224), np.float32))


def test_a_planted_high_norm_token_is_warned_about_and_listed():
    model = mv.builtin_model("torch", None, arch="vit")
    with torch.no_grad():
        model.tokens.pos_embed[0, 1 + 3 * 8 + 5] += 50.0  # patch (3, 5) of the 8x8 grid
    x = np.random.default_rng(8).random((2, 3, 64, 64), dtype=np.float32)
    with pytest.warns(MultivizWarning, match=r"sample 0 patch \(3, 5\)"):
        mv.attention_rollout(model, x)
    with pytest.warns(MultivizWarning, match="High-norm"):
        acts = mv.capture(model, x, ["blocks.3"])
    assert acts.artifacts["blocks.3"].tolist() == [[0, 3, 5], [1, 3, 5]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mv.capture(mv.builtin_model("torch", None, arch="vit"), x, ["blocks.3"])
