"""Attribution maps: saliency, Integrated Gradients, the CAM family, guided backprop.

The public functions are exported as ``mv.grad_cam`` etc.;
:mod:`multiviz.attribution.api` states the conventions they share and
gathers them from :mod:`~multiviz.attribution.input_methods` (saliency,
SmoothGrad, Integrated Gradients, guided backprop) and
:mod:`~multiviz.attribution.cam_methods` (CAM, Grad-CAM, Grad-CAM++, LayerCAM,
Score-CAM, Guided Grad-CAM); :mod:`~multiviz.attribution.explain` runs several
at once and draws them side by side. The arithmetic is NumPy, framework-free
and shared by both backends:

* :mod:`~multiviz.attribution.cam_math` — CAM, Grad-CAM, Grad-CAM++, LayerCAM,
  Score-CAM's weighting;
* :mod:`~multiviz.attribution.gradient_math` — SmoothGrad noise, Integrated
  Gradients' path and quadrature, Guided Grad-CAM;
* :mod:`~multiviz.attribution.maps` — channel aggregation, upsampling, scaling;
* :mod:`~multiviz.attribution.plumbing` — the only module that calls a
  backend (``forward`` / ``capture`` / ``gradients``), in bounded chunks.
"""

from __future__ import annotations

from multiviz.attribution.api import (
    cam,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    layer_cam,
    saliency,
    score_cam,
)
from multiviz.attribution.errors import CamHeadError, NotSpatialLayerError, TargetError
from multiviz.attribution.explain import METHODS, Explanations, explain, plot_explanations

__all__ = [
    "METHODS",
    "CamHeadError",
    "Explanations",
    "NotSpatialLayerError",
    "TargetError",
    "cam",
    "explain",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "layer_cam",
    "plot_explanations",
    "saliency",
    "score_cam",
]
