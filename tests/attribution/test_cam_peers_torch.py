"""Grad-CAM against the two PyTorch peers themselves, on the built-in CNN.

pytorch-grad-cam (``grad-cam`` on PyPI) and torchcam are installed in the
torch nox session (which requires them through MULTIVIZ_REQUIRE=peers);
elsewhere these tests skip. Their low-resolution maps are compared before
any resizing, so the comparison is of the method, not of an interpolation.
The ViT comparison with pytorch-grad-cam's reshape callback is in
test_transformers_torch.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiviz as mv  # noqa: E402
from multiviz.attribution.cam_math import grad_cam_map  # noqa: E402
from multiviz.attribution.model_call import ModelCall  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.peers]


def _ours(model, x, layer, classes):
    result = ModelCall.make(model, x, 32).gradients([layer], np.asarray(classes))
    return grad_cam_map(result.activations[layer], result.gradients[layer])


def test_grad_cam_equals_torchcam_on_the_builtin_cnn():
    from torchcam.methods import GradCAM

    model = mv.builtin_model("torch")
    x = mv.shapes_dataset(4, size=(48, 64), seed=5).images
    xt = torch.from_numpy(x)
    with GradCAM(model, "conv3") as peer:
        scores = model(xt)
        classes = scores.argmax(1).tolist()
        theirs = peer(class_idx=classes, scores=scores, normalized=False)[0].detach().numpy()
    ours = _ours(model, x, "conv3", classes)
    assert ours.shape == theirs.shape == (4, 12, 16)
    assert ours.max() > 0  # a map with something in it
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * ours.max())


def test_grad_cam_equals_pytorch_grad_cam_on_the_builtin_cnn():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = mv.builtin_model("torch")
    x = mv.shapes_dataset(4, size=(48, 64), seed=6).images
    xt = torch.from_numpy(x)
    classes = model(xt).argmax(1).tolist()
    with GradCAM(model, [model.conv3]) as peer:
        theirs = peer(input_tensor=xt, targets=[ClassifierOutputTarget(c) for c in classes])
    low = _ours(model, x, "conv3", classes)
    # the peer's post-processing: scale to [0, 1], resize (OpenCV), clip at 0, scale again
    shown = scale_cam_image(np.maximum(scale_cam_image(low, (64, 48)), 0))
    assert shown.shape == theirs.shape == (4, 48, 64)
    np.testing.assert_allclose(shown, theirs, atol=1e-5)
