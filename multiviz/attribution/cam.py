"""The class-activation-map family: CAM, Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM, Guided Grad-CAM.

Each function asks the backend for one layer's activations (and gradients, or
scores of masked inputs) and hands them to :mod:`~multiviz.attribution.cam_math`.
The conventions shared by every attribution function (input layout, targets,
layers, scaling, memory) are in :mod:`multiviz.attribution`. For a model with
several inputs (a tuple, a list or a dict), the maps are drawn over the image
input ``input_index`` names (its position, or its key in a dict), by default
the first image-shaped input ``(N, C, H, W)``; Score-CAM masks that input only.

Every method here takes the same three options (documented once, in
:func:`grad_cam`): ``relu`` (the final ReLU; ``False`` keeps signed maps),
``reduce`` (``False`` returns the per-channel terms ``(N, K, H, W)``) and
``upsample`` (``"bilinear"``, ``"nearest"``, or ``False`` for the layer's
resolution). They are NumPy arithmetic after the backend's one pass, so they
cost nothing extra and agree across frameworks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multiviz.attribution import cam_math, gradient_math
from multiviz.attribution.maps import (
    aggregate_channels,
    check_aggregation,
    check_upsample,
    finish_maps,
    upsample_maps,
)
from multiviz.attribution.model_call import (
    BATCH_SIZE,
    ModelCall,
    Targets,
    chunks,
    empty_batch,
    quiet_numpy,
)
from multiviz.core.names import resolve
from multiviz.core.params import names_parameters
from multiviz.errors import AmbiguousLayerError, CamHeadError, TargetError

__all__ = [
    "cam",
    "check_options",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_grad_cam",
    "layer_cam",
    "score_cam",
]


@quiet_numpy
@names_parameters
@empty_batch
def grad_cam(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks").

    ``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``d score / d A_k``,
    upsampled bilinearly to the input size. One forward and one backward pass.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        layer: the layer ``A`` is taken from, usually the last convolutional
            one (or its activation); ``None`` picks the last spatial layer.
        target: what is explained (see the module docstring).
        normalize: min-max scale each sample to ``[0, 1]`` (with
            ``reduce=False``, all its channels on one scale); ``False`` returns
            the raw values — taken after the ReLU, so never negative, unless
            ``relu=False``.
        batch_size: the most inputs sent to the backend at once.
        token_grid: ``(h, w)`` patch grid of a vision transformer multiviz
            cannot read it from (token layers are folded to maps on it; the
            grids of timm, torchvision and built-in ViTs are read from the model).
        prefix_tokens: with ``token_grid``: tokens before the patch tokens.
        input_index: for a model with several inputs, the image input the
            maps are drawn over (position, or dict key); default the first
            image-shaped one.
        relu: apply the final ReLU (the paper's: only evidence *for* the
            target is shown). ``False`` keeps the signed map, negative where
            a region speaks against the target. With ``reduce=False`` the ReLU
            clips each channel's term (as Captum's ``relu_attributions``).
        reduce: sum the per-channel terms ``w_k A_k``. ``False`` returns them
            unsummed, ``(N, K, H, W)`` for a layer of ``K`` channels (their sum
            over ``K`` is the map with ``relu=False``); memory grows by ``K``.
        upsample: ``"bilinear"`` (default; half-pixel centres, as PyTorch's
            ``interpolate(align_corners=False)`` and ``tf.image.resize``),
            ``"nearest"`` (each layer pixel a block), or ``False``: the map at
            the layer's resolution ``(N, h, w)``.

    With no ``layer``, the last layer whose map varies over space and whose
    gradient reaches the target is used: on a ViT that reads its class token,
    the last block's first norm (see :func:`~multiviz.attribution.model_call.choose_layer`).

    Returns:
        float32 ``(N, H, W)`` at the image input's size; ``(N, K, H, W)`` with
        ``reduce=False``; ``h, w`` instead of ``H, W`` with ``upsample=False``.
        A sample where NaN or Inf appears (in the input, the layer, the output
        or a gradient) gets a NaN map and a :class:`~multiviz.errors.MultivizWarning`.

    Raises:
        TokenGridError: ``layer`` outputs tokens and the patch grid is unknown.
        NotSpatialLayerError: ``layer`` does not output a spatial map.
        LayerNotFoundError: no such layer, or a ``layer#k`` call that did not
            happen (closest names, or the real number of calls, listed).
        ValueError: ``relu`` or ``reduce`` not a bool, or ``upsample`` not
            one of ``"bilinear"``, ``"nearest"``, ``False`` (before any model work).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("keras")                        # doctest: +SKIP
        >>> x = mv.to_channels_last(mv.shapes_dataset(2, size=64).images)  # doctest: +SKIP
        >>> mv.grad_cam(model, x, "relu3").shape                       # doctest: +SKIP
        (2, 64, 64)
        >>> signed = mv.grad_cam(model, x, "relu3", relu=False, normalize=False)  # doctest: +SKIP
        >>> mv.grad_cam(model, x, "relu3", reduce=False, upsample=False).shape   # doctest: +SKIP
        (2, 64, 16, 16)
    """
    return _gradient_cam(
        cam_math.grad_cam_map, "Grad-CAM", model, x, layer, target, normalize, batch_size,
        token_grid, prefix_tokens, input_index,
        relu=relu, reduce=reduce, upsample=upsample,
    )  # fmt: skip


@quiet_numpy
@names_parameters
@empty_batch
def grad_cam_plus_plus(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """Grad-CAM++ (Chattopadhyay et al. 2018, "Grad-CAM++: Improved Visual Explanations").

    Channel weights ``w_k = sum_ij alpha_kij ReLU(G_kij)`` with the paper's
    closed-form ``alpha`` for an exponential of the score (second and third
    derivatives as powers of the gradient, see
    :func:`~multiviz.attribution.cam_math.grad_cam_plus_plus_alphas`), then
    ``ReLU(sum_k w_k A_k)``. Arguments (``relu``, ``reduce``, ``upsample``
    too; ``normalize=False`` values come after the ReLU unless ``relu=False``),
    return value and errors as :func:`grad_cam`.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                        # doctest: +SKIP
        >>> mv.grad_cam_plus_plus(model, mv.sample_image()[None], "relu3").shape  # doctest: +SKIP
        (1, 64, 64)
    """
    return _gradient_cam(
        cam_math.grad_cam_plus_plus_map,
        "Grad-CAM++",
        model,
        x,
        layer,
        target,
        normalize,
        batch_size,
        token_grid,
        prefix_tokens,
        input_index,
        relu=relu,
        reduce=reduce,
        upsample=upsample,
    )


@quiet_numpy
@names_parameters
@empty_batch
def layer_cam(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps").

    ``ReLU(sum_k ReLU(G_k) * A_k)``: each pixel weighted by its own positive
    gradient, so early layers give fine-grained maps too. ``relu`` is the
    outer ReLU (the inner ``ReLU(G_k)`` is the method's weighting and always
    applies); ``reduce=False`` returns the terms ``ReLU(G_k) * A_k``.
    Arguments, return value and errors as :func:`grad_cam`
    (``normalize=False`` values come after the ReLU unless ``relu=False``).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                        # doctest: +SKIP
        >>> mv.layer_cam(model, mv.sample_image()[None], "relu2").shape  # doctest: +SKIP
        (1, 64, 64)
    """
    return _gradient_cam(
        cam_math.layer_cam_map, "LayerCAM", model, x, layer, target, normalize, batch_size,
        token_grid, prefix_tokens, input_index,
        relu=relu, reduce=reduce, upsample=upsample,
    )  # fmt: skip


def _gradient_cam(
    formula: Any,
    method: str,
    model: Any,
    x: Any,
    layer: str | None,
    target: Any,
    normalize: bool,
    batch_size: int,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    *,
    relu: bool,
    reduce: bool,
    upsample: str | bool,
) -> np.ndarray:
    check_options(relu, reduce, upsample)
    call = ModelCall.make(model, x, batch_size, token_grid, prefix_tokens, input_index=input_index)
    name = call.resolve_layer(layer, method)
    result = call.gradients([name], call.check_target(target))
    acts = call.spatial(result.activations, name, method)
    grads = call.per_frame(call.pick(result.gradients, name), name, method)
    low = formula(acts, grads, relu=relu, reduce=reduce)
    return call.finish(call.at_input(low, normalize, upsample))


def check_options(relu: Any, reduce: Any, upsample: Any) -> None:
    """Refuse a bad ``relu`` / ``reduce`` / ``upsample`` before any model work.

    Raises:
        ValueError: ``relu`` or ``reduce`` is not a bool, or ``upsample`` is
            not one of ``"bilinear"``, ``"nearest"``, ``False``.
    """
    for name, value in (("relu", relu), ("reduce", reduce)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    check_upsample(upsample)


@quiet_numpy
@names_parameters
@empty_batch
def cam(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    fc_weights: np.ndarray | None = None,
    pool_layer: str | None = None,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """CAM (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization").

    For a network that ends ``feature maps A -> global average pooling ->
    dense W``: ``M_c = sum_k W[c, k] A_k``, upsampled to the input size. The
    paper's map has no ReLU; multiviz applies one by default, as for every CAM
    method, so the maps compare (``relu=False`` gives the paper's signed map,
    whose spatial mean plus the bias is the class score). The dense weights of class ``c`` are found without
    reading the model's parameters: they are the gradient of the class score
    with respect to the pooled vector, ``d score_c / d gap_k = W[c, k]`` — exact
    when everything between the pooling and the scored output is affine
    (dense, dropout, flatten; a final softmax is skipped by the backend). For
    a nonlinear head that gradient is only local, and the map is no longer
    CAM; use :func:`grad_cam` there. Or pass the weights yourself:
    ``fc_weights=model.fc.weight.detach().numpy()`` (PyTorch) /
    ``model.get_layer("fc").kernel.numpy().T`` (Keras).

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        layer: the feature maps fed to the global average pooling; ``None``
            picks the last spatial layer.
        target: a class per sample (``None``, int or ``N`` ints), or a
            callable when ``fc_weights`` is not given.
        fc_weights: the dense layer's weight matrix ``(classes, K)``; skips the
            gradient and uses these rows.
        pool_layer: the global-average-pooling layer; ``None`` picks the first
            layer after ``layer`` that outputs ``(N, K)`` or ``(N, K, 1, 1)``.
            Its output is checked to be the spatial mean of ``layer``'s.
        normalize: scale each sample to ``[0, 1]``; ``False`` returns raw
            values, after the ReLU unless ``relu=False``.
        batch_size: the most inputs sent to the backend at once.
        token_grid: ``(h, w)`` patch grid of a vision transformer multiviz
            cannot read it from (token layers are folded to maps on it; the
            grids of timm, torchvision and built-in ViTs are read from the model).
        prefix_tokens: with ``token_grid``: tokens before the patch tokens.
        input_index: the image input (see :func:`grad_cam`).
        relu, reduce, upsample: as :func:`grad_cam` (``reduce=False`` gives
            the terms ``W[c, k] A_k``).

    With no ``layer``, the last layer whose map varies over space and whose
    gradient reaches the target is used: on a ViT that reads its class token,
    the last block's first norm (see :func:`~multiviz.attribution.model_call.choose_layer`).

    Returns:
        float32 ``(N, H, W)`` at the image input's size (shapes with ``reduce`` /
        ``upsample`` as :func:`grad_cam`).

    Raises:
        TokenGridError: ``layer`` outputs tokens and the patch grid is unknown.
        NotSpatialLayerError: ``layer`` does not output a spatial map.
        ValueError: a bad ``relu``, ``reduce`` or ``upsample``.
        CamHeadError: no pooling layer, or its output is not the spatial mean
            of ``layer``'s, or ``fc_weights`` does not fit.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                  # doctest: +SKIP
        >>> mv.cam(model, mv.sample_image()[None], "relu3").shape  # doctest: +SKIP
        (1, 64, 64)
    """
    check_options(relu, reduce, upsample)
    call = ModelCall.make(model, x, batch_size, token_grid, prefix_tokens, input_index=input_index)
    call.refuse_video(
        "CAM",
        "its class weights act on one pooled map per sample, and a video's frames are "
        "pooled one by one, then mixed by what follows",
    )
    name = call.resolve_layer(layer, "CAM")
    target = call.check_target(target)
    if fc_weights is not None:
        acts = call.spatial({name: call.capture(name)}, name, "CAM")
        weights = _class_rows(
            np.asarray(fc_weights, np.float64), call.fixed_target(target), acts.shape[1]
        )
    else:
        pool = _pool_layer(call, name, pool_layer)
        result = call.gradients([name, pool], target)
        acts = call.spatial(result.activations, name, "CAM")
        _check_pooling(acts, call.pick(result.activations, pool), name, pool)
        weights = call.pick(result.gradients, pool).reshape(call.n, -1)
    low = cam_math.cam_map(acts, weights, relu=relu, reduce=reduce)
    return call.finish(call.at_input(low, normalize, upsample))


def _class_rows(fc: np.ndarray, target: Targets, channels: int) -> np.ndarray:
    if callable(target):
        raise TargetError(
            "CAM with fc_weights needs class indices (None, an int or one per sample), "
            "not a callable target: the weights are rows of the dense layer."
        )
    assert isinstance(target, np.ndarray)
    if fc.ndim != 2 or fc.shape[1] != channels:
        raise CamHeadError(
            f"`fc_weights` must be the dense layer's weight matrix (classes, {channels}) for a "
            f"layer with {channels} channels. Received shape {fc.shape}. For a Keras Dense "
            "kernel (in, out) pass kernel.T."
        )
    if target.max(initial=0) >= fc.shape[0]:
        raise TargetError(
            f"Class {int(target.max())} is out of range for fc_weights with {fc.shape[0]} rows."
        )
    return fc[target]


def _pool_layer(call: ModelCall, name: str, pool_layer: str | None) -> str:
    infos = call.layer_infos(with_shapes=pool_layer is None)
    if pool_layer is not None:
        names = resolve(pool_layer, infos)
        if len(names) != 1:
            shown = ", ".join(names[:5]) + (f", … {len(names) - 5} more" if len(names) > 5 else "")
            raise AmbiguousLayerError(
                f"CAM uses one pooling layer; pool_layer={pool_layer!r} matches {len(names)} "
                f"({shown}).\nhint: pass one name, e.g. pool_layer={names[0]!r}"
            )
        return names[0]
    base = call.request(name).layer
    index = next((k for k, i in enumerate(infos) if i.name == base), -1)
    shape = infos[index].shape if index >= 0 else None
    channels = shape[1] if shape is not None and len(shape) == 4 else None
    for info in infos[index + 1 :]:
        s = info.shape
        if s is None or not (len(s) == 2 or (len(s) == 4 and s[2] == 1 and s[3] == 1)):
            continue
        if channels is None or s[1] == channels:
            return info.name
    raise CamHeadError(
        f"CAM needs global average pooling after layer {name!r} (then a dense layer), and no "
        f"later layer outputs (N, {channels or 'K'}) or (N, {channels or 'K'}, 1, 1). Pass "
        "pool_layer= (or fc_weights=), or use grad_cam, which needs no particular head."
    )


def _check_pooling(acts: np.ndarray, pooled: np.ndarray, name: str, pool: str) -> None:
    pooled = pooled.reshape(len(pooled), -1).astype(np.float64)
    mean = acts.astype(np.float64).mean(axis=(2, 3))
    tol = 1e-4 * max(float(np.abs(mean).max(initial=0.0)), 1e-6)
    if pooled.shape != mean.shape or not np.allclose(pooled, mean, rtol=1e-3, atol=tol):
        raise CamHeadError(
            f"CAM needs {pool!r} to output the spatial mean of {name!r}, the maps CAM weights; "
            f"{pool!r} gives shape {pooled.shape} and {name!r} has {acts.shape[1]} channels"
            + ("" if pooled.shape != mean.shape else ", but the values differ")
            + ". Pass the layer that feeds the global average pooling (often the last "
            "activation), or use grad_cam."
        )


@quiet_numpy
@names_parameters
@empty_batch
def score_cam(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations").

    Gradient-free: each channel's activation map ``A_k`` is upsampled to the
    input size and min-max scaled to a mask ``H_k``; the input times ``H_k``
    is scored, and the map is ``ReLU(sum_k s_k A_k)``. As in the paper and the
    authors' code, ``s_k`` is the softmax probability of the target class for
    the masked input (computed in NumPy from the logits the backend returns).
    For an output ending in a sigmoid (a one-unit binary head,
    ``Linear(8, 1) + Sigmoid`` / ``Dense(1, "sigmoid")``, or a multi-label
    head) it is the sigmoid probability of the target unit — a softmax over
    one unit would be 1 for every mask; for a one-unit output without one (a
    regression head) it is the unit's value. A callable target's raw score
    is used as is. Channels whose map is
    constant carry no location and are skipped (``s_k = 0``), as in the
    authors' code. The ``N x K`` masked images are scored ``batch_size`` at a
    time, so memory is bounded by one chunk however many channels the layer has.

    Arguments, return value and errors as :func:`grad_cam`; ``target=None``
    is the class the model predicts for the unmasked input. ``relu``,
    ``reduce`` and ``upsample`` shape the returned map (``reduce=False``: the
    terms ``s_k A_k``; ``normalize=False`` values come after the ReLU unless
    ``relu=False``); the masks are always the bilinearly upsampled
    activations, as in the paper.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                        # doctest: +SKIP
        >>> mv.score_cam(model, mv.sample_image()[None], "relu3", batch_size=64).shape  # doctest: +SKIP
        (1, 64, 64)
    """
    check_options(relu, reduce, upsample)
    call = ModelCall.make(model, x, batch_size, token_grid, prefix_tokens, input_index=input_index)
    call.refuse_video(
        "Score-CAM",
        "it masks the whole input with one channel's map, and on a video each "
        "frame has its own map of every channel",
    )
    name = call.resolve_layer(layer, "Score-CAM")
    target = call.fixed_target(call.check_target(target))
    acts = call.spatial({name: call.capture(name)}, name, "Score-CAM")
    scores = _channel_scores(call, acts, target)
    low = cam_math.score_cam_map(acts, scores, relu=relu, reduce=reduce)
    return call.finish(call.at_input(low, normalize, upsample))


def _channel_scores(call: ModelCall, acts: np.ndarray, target: Targets) -> np.ndarray:
    """``s_k`` of Score-CAM for every sample and channel, ``(N, K)`` float64."""
    scores = np.zeros(acts.shape[:2], np.float64)
    items = np.argwhere(cam_math.score_cam_channels(acts))  # (sample, channel) pairs, C order
    probabilities = None if callable(target) else call.class_probabilities()
    x = call.x_canonical()
    for s in chunks(len(items), call.batch_size):
        rows, channels = items[s, 0], items[s, 1]
        masks = cam_math.score_cam_masks(upsample_maps(acts[rows, channels], call.size))
        masked = call.native(x[rows] * masks[:, None], rows)
        if probabilities is None:
            scores[rows, channels] = call.scored_forward(masked, target, rows=rows).scores
        else:
            assert isinstance(target, np.ndarray)
            scores[rows, channels] = probabilities(masked)[np.arange(len(rows)), target[rows]]
        call.note("the score of a masked input", scores[rows, channels], rows)
    return scores


@quiet_numpy
@names_parameters
@empty_batch
def guided_grad_cam(
    model: Any,
    x: Any,
    layer: str | None = None,
    target: Any = None,
    *,
    aggregation: str | None = None,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    token_grid: Sequence[int] | None = None,
    prefix_tokens: int | None = None,
    input_index: int | str | None = None,
    relu: bool = True,
    reduce: bool = True,
    upsample: str | bool = "bilinear",
) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled Grad-CAM.

    The Grad-CAM factor is divided by its largest magnitude per sample (so
    its peak is 1 and 0 stays 0; Captum's ``GuidedGradCam`` uses it unscaled);
    both factors explain the same class (with ``target=None``, the one
    Grad-CAM's pass found). Two backward passes.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        layer: Grad-CAM's layer (see :func:`grad_cam`).
        target: what is explained (see the module docstring).
        aggregation: as :func:`guided_backprop`: ``None`` gives ``(N, C, H, W)``.
        normalize: min-max scale each sample to ``[0, 1]``; ``False`` returns
            the raw product, whose Grad-CAM factor comes after the ReLU
            unless ``relu=False``.
        batch_size: the most inputs sent to the backend at once.
        input_index: the image input (see :func:`grad_cam`).
        relu: the Grad-CAM factor's final ReLU; ``False`` keeps its sign.
        reduce: ``False`` multiplies each channel's Grad-CAM term by the
            guided gradients: ``(N, K, C, H, W)``, or ``(N, K, H, W)`` with an
            aggregation; the factor's scale is then shared by the ``K`` terms.
        upsample: how the Grad-CAM factor reaches the input's size:
            ``"bilinear"`` or ``"nearest"`` (``False`` is refused: guided
            backprop lives at the input's resolution).

    Returns:
        float32 ``(N, C, H, W)``, or ``(N, H, W)`` with an aggregation, for the
        image input
        (a ``K`` axis after ``N`` with ``reduce=False``).

    Raises:
        ValueError: an unknown ``aggregation``, a bad ``relu``/``reduce``, or
            ``upsample`` not ``"bilinear"`` / ``"nearest"`` (before any model work).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                        # doctest: +SKIP
        >>> mv.guided_grad_cam(model, mv.sample_image()[None], "relu3").shape  # doctest: +SKIP
        (1, 3, 64, 64)
    """
    check_aggregation(aggregation)
    check_options(relu, reduce, upsample)
    if upsample is False:
        raise ValueError(
            "`upsample` must be 'bilinear' or 'nearest' for guided_grad_cam: the Grad-CAM factor "
            "multiplies guided backprop at the input's resolution. Received: upsample=False"
        )
    call = ModelCall.make(model, x, batch_size, token_grid, prefix_tokens, input_index=input_index)
    if call.frames is not None and not reduce:
        raise ValueError(
            "`reduce` must be True for guided_grad_cam on a video (N, T, ...): one map per "
            "frame and channel is not drawn. Received: reduce=False"
        )
    name = call.resolve_layer(layer, "Guided Grad-CAM")
    target = call.check_target(target)
    result = call.gradients([name], target)
    acts = call.spatial(result.activations, name, "Guided Grad-CAM")
    grads = call.per_frame(call.pick(result.gradients, name), name, "Guided Grad-CAM")
    low = cam_math.grad_cam_map(acts, grads, relu=relu, reduce=reduce)
    if call.frames is not None:  # a video: (N*T, ...) frames back to (N, T, ...) clips
        low = low.reshape(call.n, call.frames, *low.shape[1:])
    heat = gradient_math.scale_by_peak(upsample_maps(low, call.size, upsample))
    same = target if target is not None else result.targets
    guided = call.input_gradient(call.gradients([], same, wrt_input=True, guided=True))
    if call.frames is not None:  # guided (N, T, C, H, W) times each frame's heat (N, T, H, W)
        product = np.asarray(guided, np.float64) * heat[:, :, None]
        n, t = product.shape[:2]
        flat = aggregate_channels(product.reshape(n * t, *product.shape[2:]), aggregation)
        return call.finish(finish_maps(flat.reshape(n, t, *flat.shape[1:]), normalize))
    if reduce:
        product = gradient_math.guided_grad_cam(guided, heat)
        return call.finish(finish_maps(aggregate_channels(product, aggregation), normalize))
    n, k = heat.shape[:2]
    per_term = guided[:, None] * heat[:, :, None]  # (N, K, C, H, W)
    flat = aggregate_channels(per_term.reshape(n * k, *per_term.shape[2:]), aggregation)
    return call.finish(finish_maps(flat.reshape(n, k, *flat.shape[1:]), normalize))
