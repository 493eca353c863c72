"""multiviz: see what a convolutional network sees, in PyTorch and in Keras.

One API over both frameworks::

    import multiviz as mv
    mv.layers(model)                                  # what can be captured
    acts = mv.capture(model, x, ["conv1", "layer1.*"])   # name -> (N, C, H, W) float32
    mv.plot_feature_maps(acts["conv1"][0])            # one montage, one imshow

Importing this package imports neither torch nor tensorflow: every public name
below is loaded from its home module on first use (PEP 562), and only
``multiviz.backends`` ever touches a framework, and only one the caller has
already imported (or asked for by name).
"""

from __future__ import annotations

from multiviz._lazy import lazy_getattr
from multiviz._version import __version__
from multiviz.errors import (
    BackendUnavailableError,
    InputShapeError,
    LayerNotFoundError,
    MultivizError,
    UnsupportedModelError,
)

# public name -> module (relative to the package) that defines it
_EXPORTS: dict[str, str] = {
    # capture (backends -> Activations)
    "layers": "capturing",
    "capture": "capturing",
    "forward": "capturing",
    "Activations": "activations",
    "LayerInfo": "activations",
    "to_channels_first": "layout",
    "to_channels_last": "layout",
    # NumPy core
    "normalize": "normalization",
    "NormInfo": "normalization",
    "aggregate": "reduce",
    "select_channels": "reduce",
    "channel_stats": "reduce",
    "layer_stats": "reduce",
    "RunningStats": "reduce",
    "RunningLayerStats": "reduce",
    # rendering core
    "montage": "render.montage",
    "colorize": "render.colors",
    "feature_map_image": "render.images",
    "save_image": "render.images",
    "overlay_image": "render.images",
    "plot_feature_maps": "render.plots",
    "plot_aggregate": "render.plots",
    "plot_overlay": "render.plots",
    "plot_layer_stats": "render.plots",
    # built-in model and data
    "builtin_model": "builtin",
    "shapes_dataset": "shapes",
    "sample_image": "shapes",
    # attribution
    "saliency": "attribution.api",
    "integrated_gradients": "attribution.api",
    "cam": "attribution.api",
    "grad_cam": "attribution.api",
    "grad_cam_plus_plus": "attribution.api",
    "score_cam": "attribution.api",
    "layer_cam": "attribution.api",
    "guided_backprop": "attribution.api",
    "guided_grad_cam": "attribution.api",
    "attention_rollout": "attribution.rollout",
    "TokenGridError": "tokens",
    "UnsupportedAttentionError": "attribution.rollout_math",
    "MultivizWarning": "errors",
    "explain": "attribution.explain",
    "plot_explanations": "attribution.explain",
    # cross-framework comparison
    "compare": "comparing",
    "ParityReport": "comparing",
    "plot_comparison": "comparing",
    "linear_cka": "metrics",
    "transfer_weights": "transfer",
    # loading models and images, the HTML report (what the command line uses)
    "load_model": "loaders",
    "load_images": "images",
    "html_report": "report",
}

__all__ = [
    "BackendUnavailableError",
    "InputShapeError",
    "LayerNotFoundError",
    "MultivizError",
    "UnsupportedModelError",
    "__version__",
    *_EXPORTS,
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
