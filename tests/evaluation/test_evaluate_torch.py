"""mv.evaluate on PyTorch models whose right answers are known.

Planted evidence: the model's class-0 logit is s(x) = sum over a box R of the
pixels' channel sums (a 1x1 convolution with weights 1/4 into 4 channels, a
ReLU that positive inputs pass unchanged, a fixed mask, a sum). So the true
attribution is R, and the deletion curve in logit units can be bounded in
closed form: a map that ranks R's pixels first removes all of s within the
first f = |R| / (H W) of the pixels, so its normalized deletion AUC (AUC / s)
is at most f + 1 / (2 steps) (the trapezoid's half step); a map that orders
pixels at random removes each pixel of R with probability k / steps by step
k, so its expected normalized AUC is exactly 1/2. The margin is therefore
1/2 - f - 1 / (2 steps).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import multiviz as mv  # noqa: E402
from multiviz.evaluation.evaluate import evaluate  # noqa: E402

pytestmark = pytest.mark.torch

H, W = 32, 40
BOX = (12, 6, 24, 14)  # x0, y0, x1, y1: 12 x 8 = 96 pixels


class Mask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        m = torch.zeros(1, 1, H, W)
        x0, y0, x1, y1 = BOX
        m[..., y0:y1, x0:x1] = 1.0
        self.register_buffer("mask", m)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.mask


class Planted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.fill_(0.25)
            self.conv.bias.zero_()
        self.relu = nn.ReLU()
        self.evidence = Mask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.evidence(self.relu(self.conv(x))).sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_planted_evidence_saliency_and_grad_cam_beat_a_random_map_by_the_derived_margin():
    rng = np.random.default_rng(0)
    n, steps = 8, 40
    x = (0.2 + 0.8 * rng.random((n, 3, H, W))).astype(np.float32)
    model = Planted().eval()
    report = evaluate(
        model,
        x,
        ["saliency", "grad_cam"],
        "evidence",
        ["deletion", "pointing_game"],
        target=0,
        boxes=np.tile(BOX, (n, 1)),
        maps={"random": rng.random((n, H, W))},
        score="logit",
        substrate="zeros",
        steps=steps,
        tolerance=0,
    )
    f = (BOX[2] - BOX[0]) * (BOX[3] - BOX[1]) / (H * W)
    s0 = x[:, :, BOX[1] : BOX[3], BOX[0] : BOX[2]].sum(axis=(1, 2, 3))
    np.testing.assert_allclose(report.curves["random"]["deletion"][:, 0], s0, rtol=1e-5)
    normalized = {m: report.per_image[m]["deletion"] / s0 for m in report.methods}
    bound = f + 0.5 / steps
    for m in ("saliency", "grad_cam"):
        assert np.all(normalized[m] <= bound + 1e-6), (m, normalized[m])
        assert report.per_image[m]["pointing_game"].tolist() == [1.0] * n
    assert abs(normalized["random"].mean() - 0.5) < 0.05
    margin = 0.5 - bound  # 0.4125 for these sizes (f = 96 / 1280, 40 steps)
    for m in ("saliency", "grad_cam"):
        assert normalized["random"].mean() - normalized[m].mean() >= margin - 0.05
    assert report.best("deletion") in ("saliency", "grad_cam", None)
    assert report.best("pointing_game") is None  # saliency and Grad-CAM tie at 1.0


@pytest.fixture(scope="module")
def builtin():
    return mv.builtin_model("torch")


def test_adebayo_ordering_on_the_builtin_cnn(builtin):
    """Adebayo et al. (2018): guided backprop barely changes as the top layers are randomized.

    Measured on the built-in CNN and 100 generated images (mean Spearman rank
    correlation with the trained model's map, cascading from the top):

    ===============  ======  ======  ======  ======
    randomized        +fc    +conv3  +conv2  +conv1
    ===============  ======  ======  ======  ======
    guided backprop   0.857   0.550   0.094   0.019
    saliency          0.624   0.244   0.017   0.067
    Grad-CAM          0.451   0.083   0.070   0.062
    ===============  ======  ======  ======  ======

    Guided backprop keeps its map through the top of the network (it shows
    the image's edges, not the classifier); on this 3-convolution network
    whose images carry pixel noise, randomizing the two lowest convolutions
    (the edge detectors themselves) decorrelates every method.
    """
    data = mv.shapes_dataset(100, size=64, seed=0)
    report = evaluate(
        builtin,
        data.images,
        ["grad_cam", "saliency", "guided_backprop"],
        "relu3",
        ["randomization"],
        independent=False,
        resamples=200,
    )
    rho = {m: np.nanmean(c.cascading_spearman, axis=1) for m, c in report.randomization.items()}
    assert report.randomization["saliency"].layers == ["fc", "conv3", "conv2", "conv1"]
    for step in (0, 1):  # after fc, after fc + conv3
        assert rho["guided_backprop"][step] > rho["saliency"][step] > rho["grad_cam"][step]
    assert rho["guided_backprop"][0] > 0.8 and rho["guided_backprop"][1] > 0.45
    assert rho["saliency"][1] < 0.35 and rho["grad_cam"][1] < 0.2
    assert all(r[-1] < 0.15 for r in rho.values())  # all layers random: nothing is left
    assert report.failing_randomization() == []


def test_the_users_model_is_untouched_and_errors_name_the_parameter(builtin):
    data = mv.shapes_dataset(3, size=32, seed=1)
    before = {k: v.clone() for k, v in builtin.state_dict().items()}
    report = evaluate(builtin, data.images, ["saliency"], metrics=["randomization"], resamples=50)
    assert all(torch.equal(before[k], v) for k, v in builtin.state_dict().items())
    assert not builtin.training
    assert report.randomization["saliency"].independent_spearman.shape == (4, 3)
    with pytest.raises(ValueError, match=r"pass boxes= \(x0, y0, x1, y1 per image\) or masks="):
        evaluate(builtin, data.images, ["saliency"], metrics=["pointing_game"])
    with pytest.raises(ValueError, match="Did you mean 'deletion'"):
        evaluate(builtin, data.images, ["saliency"], metrics=["deleton"])
    with pytest.raises(ValueError, match="`score` must be one of"):
        evaluate(builtin, data.images, ["saliency"], score="prob")
    with pytest.raises(ValueError, match="randomized_model="):
        evaluate(builtin, data.images, ["saliency"], metrics=["data_randomization"])
    with pytest.raises(ValueError, match=r"`maps\['r'\]` must be \(N, H, W\) = \(3, 32, 32\)"):
        evaluate(builtin, data.images, [], metrics=["deletion"], maps={"r": np.zeros((3, 8, 8))})


def test_data_randomization_compares_with_the_other_models_maps(builtin):
    data = mv.shapes_dataset(4, size=32, seed=2)
    same = evaluate(
        builtin,
        data.images,
        ["saliency"],
        metrics=["data_randomization"],
        randomized_model=mv.builtin_model("torch"),
        resamples=50,
    )
    assert same.per_image["saliency"]["data_randomization"] == pytest.approx([1.0] * 4)
    other = evaluate(
        builtin,
        data.images,
        ["saliency"],
        metrics=["data_randomization"],
        randomized_model=mv.builtin_model("torch", weights=None),
        resamples=50,
    )
    assert other["saliency"]["data_randomization"].value < 0.5
