"""Attribution maps: which pixels of the input the model's score depends on.

One call per method, the same for a PyTorch and a Keras model::

    import multiviz as mv
    model = mv.builtin_model("torch")
    x = mv.shapes_dataset(4, size=64).images          # (N, 3, H, W) for PyTorch
    heat = mv.grad_cam(model, x, "relu3")             # (4, 64, 64), each in [0, 1]

Conventions shared by every function here:

* ``x`` is a batch in the framework's own layout, as for :func:`multiviz.capture`:
  ``(N, C, H, W)`` for PyTorch, the model's layout (normally ``(N, H, W, C)``)
  for Keras; a NumPy array or a framework tensor.
* ``target`` says which score is explained: ``None`` — each sample's
  top-scoring class; an int — that class for every sample; ``N`` ints — one
  class per sample (of the model's main output: a dict's ``"logits"``, else
  the first of a tuple, list or dict); a callable — receives the model's
  *whole* output as the model returns it (a framework tensor, or a tuple,
  list or dict of them) and returns one score per sample, shape ``(N,)``
  (regression, segmentation, multi-label heads, several heads). A callable
  must score each row on its own: methods that perturb the input call it on
  batches of perturbed copies.
* Outputs ending in a softmax or a sigmoid layer are scored on the logits
  entering it (the backend does that, for each output of a structure):
  gradients of a saturated probability vanish. A one-unit head
  (``Linear(8, 1) + Sigmoid``) is explained on its logit; ``target=1`` is
  refused with ``target=lambda out: -out[:, 0]`` (the other class) as the hint.
* Maps come back as float32 ``(N, H, W)`` at the input's size, each sample
  min-max scaled to ``[0, 1]``; ``normalize=False`` gives the raw values
  (CAM maps upsampled but unscaled).
* A video, ``(N, T, ...)`` frames in the model's layout (a Keras
  ``TimeDistributed`` CNN, a PyTorch module folding ``T`` into the batch),
  gets one map per frame, ``(N, T, H, W)``, scaled per sample over all its
  frames; the CAM layer must run once per frame (``td/conv``). CAM,
  Score-CAM and :func:`~multiviz.attribution.explain.explain` refuse a video.
* Memory is bounded: the backend never receives more than ``batch_size``
  inputs at once — samples, noisy copies, path points or masked images.
* A layer is named as :func:`multiviz.layers` lists it. It is used as named:
  a layer whose output is not a spatial map ``(N, C, h, w)`` raises
  :class:`~multiviz.errors.NotSpatialLayerError`; nothing is
  silently swapped. ``layer=None`` picks the model's last spatial layer.
* The model is left exactly as it was found (the backend's guarantee).

All of the arithmetic is NumPy (:mod:`~multiviz.attribution.cam_math`,
:mod:`~multiviz.attribution.gradient_math`); the backend only runs the model
and takes gradients, so the two frameworks agree by construction.

The rooms of this package:

* :mod:`~multiviz.attribution.cam` — CAM, Grad-CAM, Grad-CAM++, LayerCAM,
  Score-CAM, Guided Grad-CAM;
* :mod:`~multiviz.attribution.gradient` — saliency, gradient x input,
  SmoothGrad, Integrated Gradients, guided backprop;
* :mod:`~multiviz.attribution.explain` — several methods at once;
* :mod:`~multiviz.attribution.cam_math`, :mod:`~multiviz.attribution.gradient_math`,
  :mod:`~multiviz.attribution.maps` — the NumPy arithmetic, framework-free;
* :mod:`~multiviz.attribution.model_call` — the only module that calls a
  backend (``forward`` / ``capture`` / ``gradients``), in bounded chunks.

Nothing here draws: figures of attribution maps are
:func:`multiviz.render.figures.plot_explanations` and
:func:`multiviz.render.figures.plot_overlay`. Importing this package imports
none of its modules (``mv.grad_cam`` loads what it needs on first use).
"""
