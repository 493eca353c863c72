"""Two metrics multiviz shares with Quantus (Hedström et al. 2023) agree with it to 1e-6.

Quantus is installed in the torch nox session only (it pulls in scikit-learn,
scikit-image, pandas and OpenCV). The settings are made identical:

* deletion: Quantus's ``PixelFlipping`` with ``normalise=False, abs=False``,
  ``perturb_baseline=0.0`` (multiviz's ``"zeros"`` substrate) and
  ``features_in_step = C * H * W / steps`` (Quantus needs it to divide
  H * W too: 48 x 48 images and 12 or 6 steps). Quantus spreads a pixel map over
  the colour channels and sorts the C*H*W copies; with pixel values all
  different, each step then removes exactly the next ``H*W/steps`` pixels in
  all channels — multiviz's step. Quantus's curve starts after the first
  step (multiviz's also has the clean image at fraction 0). Where a map has
  ties, Quantus's unstable sort would order them arbitrarily; the test then
  hands Quantus the map's *ranks* in multiviz's tie order (pixel index), so
  both remove the same pixels.
* pointing game: Quantus's ``PointingGame`` has no tolerance, so
  ``tolerance=0``; on maps with a single maximum.
* ROAD's imputation: Quantus's ``noisy_linear_imputation`` with ``noise=0``
  solves the same linear system with SciPy's sparse direct solver.
"""

from __future__ import annotations

import numpy as np
import pytest

quantus = pytest.importorskip("quantus")  # the torch session installs it (MULTIVIZ_REQUIRE)

import multiviz as mv  # noqa: E402
from multiviz.attribution.model_call import ModelCall  # noqa: E402
from multiviz.evaluation.localization import pointing_game  # noqa: E402
from multiviz.evaluation.perturbation import perturbation_curves, pixel_ranks  # noqa: E402
from multiviz.evaluation.road import noisy_linear_imputation  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.quantus]


@pytest.fixture(scope="module")
def setup():
    model = mv.builtin_model("torch")
    data = mv.shapes_dataset(6, size=48, seed=3)
    return model, data


def _our_deletion(model, x, maps, targets, steps):
    call = ModelCall.make(model, x, 64)
    probabilities = call.class_probabilities()

    def score(inputs, rows):
        return probabilities(call.native(inputs))[np.arange(len(rows)), targets[rows]]

    return perturbation_curves(x, maps, score, substrate=np.zeros_like(x), steps=steps)


def _quantus_deletion(model, x, maps, targets, steps):
    _, c, h, w = x.shape
    metric = quantus.PixelFlipping(
        features_in_step=c * h * w // steps,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    out = metric(
        model=model,
        x_batch=x,
        y_batch=targets,
        a_batch=maps[:, None].astype(np.float32),
        channel_first=True,
        softmax=True,
        device="cpu",
    )
    return np.asarray(out, np.float64)


def test_deletion_curve_agrees_with_quantus_pixel_flipping(setup):
    model, data = setup
    x = data.images
    steps = 12  # 192 pixels a step; Quantus: 576 of the 3 * 48 * 48 values, which divides 48 * 48
    maps = mv.grad_cam(model, x, "relu3") + 1e-3 * np.random.default_rng(0).random((6, 48, 48))
    assert all(len(np.unique(m)) == m.size for m in maps)  # no ties
    targets = data.labels
    ours = _our_deletion(model, x, maps, targets, steps)
    theirs = _quantus_deletion(model, x, maps, targets, steps)
    assert theirs.shape == (6, steps)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-6, rtol=0)


def test_deletion_with_ties_agrees_when_quantus_gets_our_tie_order(setup):
    model, data = setup
    x = data.images
    steps = 6
    maps = np.round(mv.saliency(model, x) * 4) / 4  # five levels: many ties
    ours = _our_deletion(model, x, maps, data.labels, steps)
    ranks = pixel_ranks(maps).reshape(maps.shape)  # 0 = removed first, ties by pixel index
    theirs = _quantus_deletion(model, x, -ranks.astype(np.float64), data.labels, steps)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-6, rtol=0)


def test_pointing_game_agrees_with_quantus(setup):
    model, data = setup
    rng = np.random.default_rng(1)
    maps = rng.random((6, 48, 48))
    maps[:3] += 2.0 * data.masks[:3] * rng.random((3, 48, 48))  # three that point inside
    ours = pointing_game(maps, data.masks, tolerance=0)
    metric = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)
    theirs = metric(
        model=model,
        x_batch=data.images,
        y_batch=data.labels,
        a_batch=maps[:, None].astype(np.float32),
        s_batch=data.masks[:, None].astype(np.float32),
        channel_first=True,
        device="cpu",
    )
    np.testing.assert_allclose(ours, np.asarray(theirs, np.float64), atol=1e-6)
    assert ours[:3].tolist() == [1.0, 1.0, 1.0]


def test_road_imputation_agrees_with_quantus_sparse_solve():
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_impute

    rng = np.random.default_rng(2)
    img = rng.random((3, 24, 20))
    yy, xx = np.mgrid[0:24, 0:20]
    order = np.argsort(-(-((yy - 9) ** 2) - (xx - 12) ** 2).ravel(), kind="stable")
    for share in (0.1, 0.5, 0.9):
        idx = order[: int(share * 480)]
        mask = np.zeros(480, bool)
        mask[idx] = True
        ours = noisy_linear_imputation(img[None], mask.reshape(1, 24, 20), noise=0.0)[0]
        theirs = quantus_impute(img, idx, noise=0.0)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
