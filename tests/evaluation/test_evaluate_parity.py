"""The same weights in PyTorch and Keras give the same report (DESIGN.md: 1e-4 for perturbation metrics).

The metrics are NumPy; only model calls come from the backends, and the
randomized weights are drawn in the canonical layout from one seed, so the
built-in CNN must score alike in both frameworks on every metric.

The images get a little noise (1e-3): a shape's flat colour makes neighbouring
activations exactly equal, and PyTorch and TensorFlow send the gradient of a
tied 2x2 max-pool window to different pixels (a framework choice, not
multiviz's), which changes gradient maps there.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.evaluation.evaluate import evaluate

pytestmark = pytest.mark.both


def test_torch_and_keras_give_the_same_report():
    data = mv.shapes_dataset(6, size=32, seed=4)
    x = data.images + np.random.default_rng(0).uniform(0, 1e-3, data.images.shape).astype("float32")
    common = {
        "methods": ["grad_cam", "saliency", "guided_backprop"],
        "layer": "relu3",
        "target": data.labels,
        "boxes": data.boxes,
        "steps": 16,
        "percentages": (20, 60),
        "resamples": 200,
    }
    reports = {
        fw: evaluate(
            mv.builtin_model(fw),
            x if fw == "torch" else mv.to_channels_last(x),
            **common,
        )
        for fw in ("torch", "keras")
    }
    t, k = reports["torch"], reports["keras"]
    assert (
        t.metrics
        == k.metrics
        == [
            "deletion",
            "insertion",
            "road",
            "pointing_game",
            "energy_pointing_game",
            "iou",
            "randomization",
        ]
    )
    for method in t.methods:
        for metric in t.metrics:
            np.testing.assert_allclose(
                k.per_image[method][metric],
                t.per_image[method][metric],
                atol=1e-4,
                rtol=1e-4,
                err_msg=f"{method} {metric}",
            )
        for curve, values in t.curves[method].items():
            np.testing.assert_allclose(k.curves[method][curve], values, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(
            k.randomization[method].independent_ssim,
            t.randomization[method].independent_ssim,
            atol=1e-4,
        )
    assert (
        t.settings["model_inputs_per_image_and_method"]
        == k.settings["model_inputs_per_image_and_method"]
    )
