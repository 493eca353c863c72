"""multiviz: see what a convolutional network sees, in PyTorch and in Keras.

One API over both frameworks::

    import multiviz as mv
    mv.layers(model)                                  # what can be captured
    acts = mv.capture(model, x, ["conv1", "layer1.*"])   # name -> (N, C, H, W) float32
    mv.plot_feature_maps(acts["conv1"][0])            # one montage, one imshow

Importing this package imports neither torch nor tensorflow (nor matplotlib):
every public name below is loaded from its home module on first use (PEP 562),
only ``multiviz.backends`` ever touches a framework, and only one the caller
has already imported (or asked for by name); only ``multiviz.render`` draws.
Every exception and warning multiviz raises is here too (:mod:`multiviz.errors`).

The package, room by room: ``core/`` (NumPy only: records, layer names,
layouts, scaling, reductions, statistics), ``backends/`` (``torch/`` and
``keras/``, the same file names), ``attribution/``, ``parity/`` (two models
compared), ``render/`` (all drawing), ``sources/`` (models, images, the
built-in model and data), ``cli/``.
"""

from __future__ import annotations

from multiviz import errors as _errors
from multiviz._lazy import lazy_getattr
from multiviz._version import __version__

# public name -> module (relative to the package) that defines it
_EXPORTS: dict[str, str] = {
    # capture (backends -> Activations)
    "layers": "capturing",
    "capture": "capturing",
    "forward": "capturing",
    "Activations": "core.records",
    "LayerInfo": "core.records",
    "to_channels_first": "core.layout",
    "to_channels_last": "core.layout",
    # NumPy core
    "normalize": "core.normalize",
    "NormInfo": "core.normalize",
    "aggregate": "core.reduce",
    "select_channels": "core.reduce",
    "channel_stats": "core.stats",
    "layer_stats": "core.stats",
    "RunningStats": "core.stats",
    "RunningLayerStats": "core.stats",
    # rendering
    "montage": "render.montage",
    "colorize": "render.colors",
    "feature_map_image": "render.rgb",
    "save_image": "render.rgb",
    "overlay_image": "render.rgb",
    "plot_feature_maps": "render.figures",
    "plot_aggregate": "render.figures",
    "plot_overlay": "render.figures",
    "plot_layer_stats": "render.figures",
    "plot_explanations": "render.figures",
    "plot_comparison": "render.parity",
    # built-in model and data
    "builtin_model": "sources.builtin",
    "shapes_dataset": "sources.shapes_dataset",
    "sample_image": "sources.shapes_dataset",
    # attribution
    "saliency": "attribution.gradient",
    "integrated_gradients": "attribution.gradient",
    "guided_backprop": "attribution.gradient",
    "deconvnet": "attribution.gradient",
    "cam": "attribution.cam",
    "grad_cam": "attribution.cam",
    "grad_cam_plus_plus": "attribution.cam",
    "score_cam": "attribution.cam",
    "layer_cam": "attribution.cam",
    "guided_grad_cam": "attribution.cam",
    "attention_rollout": "attribution.rollout",
    "explain": "attribution.explain",
    # which map to trust
    "evaluate": "evaluation.evaluate",
    "EvaluationReport": "evaluation.report",
    # cross-framework comparison
    "compare": "parity.compare",
    "ParityReport": "parity.report",
    "linear_cka": "parity.metrics",
    "transfer_weights": "parity.transfer",
    # data-set scans: statistics, exemplars, dissection
    "scan": "scanning.api",
    "load_scan": "scanning.record",
    "Scan": "scanning.record",
    "Exemplar": "scanning.record",
    # loading models and images, the HTML report (what the command line uses)
    "load_model": "sources.models",
    "load_images": "sources.images",
    "html_report": "report",
}

# every exception and warning, from multiviz.errors (cheap: no framework, no NumPy)
_EXPORTS.update(dict.fromkeys(_errors.__all__, "errors"))

__all__ = ["__version__", *_EXPORTS]

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
