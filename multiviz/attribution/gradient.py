"""Attribution from the gradient with respect to the input: saliency, Integrated Gradients, guided backprop.

The conventions shared by every attribution function (input layout, targets,
scaling, memory) are in :mod:`multiviz.attribution`. A model given several
inputs (a tuple, a list or a dict, as :func:`multiviz.capture` takes them)
gets one map per input, in the same structure: a tuple for a tuple or a list,
a dict for a dict. ``aggregation`` applies to the image inputs
``(N, C, H, W)``; any other input's map keeps its own shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiviz.attribution import gradient_math
from multiviz.attribution.maps import (
    aggregate_channels,
    check_aggregation,
    finish_maps,
    normalize_maps,
)
from multiviz.attribution.model_call import (
    BATCH_SIZE,
    ModelCall,
    Targets,
    as_numpy,
    chunks,
    empty_batch,
    quiet_numpy,
    rows_of,
)
from multiviz.backends.contract import read_inputs
from multiviz.core.checks import check_number
from multiviz.core.params import names_parameters
from multiviz.errors import NumberError

__all__ = ["SALIENCY_METHODS", "deconvnet", "guided_backprop", "integrated_gradients", "saliency"]

#: The ``method`` values :func:`saliency` accepts.
SALIENCY_METHODS = ("gradient", "grad_x_input", "smoothgrad")


def _input_map(values: np.ndarray, aggregation: str | None, normalize: bool) -> np.ndarray:
    """One input's attribution as a map: channels aggregated for an image batch, then scaled.

    A video ``(N, T, C, H, W)`` is aggregated frame by frame: ``(N, T, H, W)``.
    """
    if np.ndim(values) == 5:
        n, t = values.shape[:2]
        flat = aggregate_channels(values.reshape(n * t, *values.shape[2:]), aggregation)
        values = flat.reshape(n, t, *flat.shape[1:])
    elif np.ndim(values) == 4:
        values = aggregate_channels(values, aggregation)
    return finish_maps(values, normalize)


@quiet_numpy
@names_parameters
@empty_batch
def saliency(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    method: str = "gradient",
    samples: int = 25,
    noise: float = 0.15,
    aggregation: str | None = "max_abs",
    normalize: bool = True,
    seed: int | None = 0,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Gradient saliency: how strongly each input pixel moves the target score.

    Methods:

    * ``"gradient"`` — the gradient of the score with respect to the input
      (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks").
    * ``"grad_x_input"`` — gradient times input (Shrikumar et al. 2016).
    * ``"smoothgrad"`` — the gradient averaged over ``samples`` noisy copies of
      the input (Smilkov et al. 2017, "SmoothGrad: removing noise by adding
      noise"). The noise is Gaussian with a standard deviation of ``noise``
      times each sample's value range, drawn in NumPy from ``seed`` in the
      channels-first layout, so both frameworks see the same noisy images. The
      signed gradients are averaged, then aggregated over channels. Noisy
      copies go to the backend ``batch_size`` at a time.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        target: what is explained (see the module docstring).
        method: one of :data:`SALIENCY_METHODS`.
        samples: noisy copies per image (``"smoothgrad"`` only).
        noise: the noise level as a fraction of the input range (``"smoothgrad"``).
        aggregation: how channels are combined (see
            :func:`~multiviz.attribution.maps.aggregate_channels`); the
            default is the largest magnitude over channels; ``None`` keeps
            them and returns ``(N, C, H, W)``.
        normalize: scale each sample to ``[0, 1]``; False returns raw values.
        seed: the NumPy seed for SmoothGrad's noise.
        batch_size: the most inputs sent to the backend at once.

    Returns:
        float32 ``(N, H, W)`` (or ``(N, C, H, W)`` with ``aggregation=None``);
        for several inputs, one map per input in their structure (a tuple for
        a tuple or a list, a dict for a dict). A sample where NaN or Inf
        appears gets a NaN map and a :class:`~multiviz.errors.MultivizWarning`.

    Raises:
        ValueError: an unknown ``method`` or ``aggregation``.
        TargetError: ``target`` does not fit the batch.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                      # doctest: +SKIP
        >>> x = mv.shapes_dataset(2, size=64).images                # doctest: +SKIP
        >>> mv.saliency(model, x, method="smoothgrad", samples=8).shape  # doctest: +SKIP
        (2, 64, 64)
    """
    if method not in SALIENCY_METHODS:
        raise ValueError(
            f"`method` must be one of {list(SALIENCY_METHODS)}. Received: method={method!r}"
        )
    check_aggregation(aggregation)
    if method == "smoothgrad":
        check_number(samples, "samples", low=1, integer=True)
        check_number(noise, "noise", low=0)
        if seed is not None:
            check_number(seed, "seed", integer=True)
    call = ModelCall.make(model, x, batch_size)
    target = call.check_target(target)
    if method == "smoothgrad":
        grads = _smoothgrad(call, target, int(samples), float(noise), seed)
    else:
        grads = call.input_gradients(call.gradients([], target, wrt_input=True))
        if method == "grad_x_input":
            grads = [g * x for g, x in zip(grads, call.parts_canonical(), strict=True)]
    return call.finish(call.as_given([_input_map(g, aggregation, normalize) for g in grads]))


def _smoothgrad(
    call: ModelCall, target: Targets, samples: int, noise: float, seed: int | None
) -> list[np.ndarray]:
    target = call.fixed_target(target)
    xs = call.parts_canonical()
    sigmas = [gradient_math.noise_sigma(x, noise) for x in xs]
    rng = np.random.default_rng(seed)
    totals = [np.zeros(x.shape, np.float64) for x in xs]
    for s in chunks(call.n * samples, call.batch_size):  # copy j of sample i is item i*samples + j
        rows = np.arange(s.start, s.stop) // samples
        noisy = [
            gradient_math.add_noise(x[rows], sigma[rows], rng)
            for x, sigma in zip(xs, sigmas, strict=True)
        ]
        result = call.gradients(
            [], rows_of(target, rows), wrt_input=True, inputs=call.native_parts(noisy), rows=rows
        )
        for total, g in zip(totals, call.input_gradients(result), strict=True):
            np.add.at(total, rows, g)
    return [total / samples for total in totals]


@quiet_numpy
@names_parameters
@empty_batch
def integrated_gradients(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    baseline: Any = None,
    steps: int = 50,
    rule: str = "trapezoid",
    aggregation: str | None = "sum",
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
    return_delta: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Integrated Gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks").

    ``(x - baseline) * mean of grad f(baseline + alpha (x - baseline))`` over
    ``steps`` points ``alpha`` in ``[0, 1]``. Summed over all input elements the
    attributions approximate ``f(x) - f(baseline)`` (completeness); with
    ``return_delta=True`` the gap is returned so it can be checked. Path points
    go to the backend ``batch_size`` at a time.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        target: what is explained (see the module docstring). ``None`` is the
            class the model predicts for ``x``, kept along the whole path.
        baseline: the reference input, in the framework's layout: ``None``
            (black, all zeros), a number, one sample's shape, or the batch's shape.
        steps: gradients evaluated along the path.
        rule: quadrature, see :func:`~multiviz.attribution.gradient_math.integration_points`.
        aggregation: how channels are combined; the default ``"sum"`` keeps
            the sign and completeness; ``None`` returns ``(N, C, H, W)``.
        normalize: scale each sample's attribution *magnitudes* to ``[0, 1]``;
            False returns the signed raw attributions.
        batch_size: the most inputs sent to the backend at once.
        return_delta: also return, per sample, ``sum(attributions) -
            (f(x) - f(baseline))`` (two extra scored passes).

    Returns:
        float32 ``(N, H, W)`` (or ``(N, C, H, W)``); for several inputs one
        map per input in their structure, the path walked by all of them at
        once (``baseline`` a number, or one per input in the same structure);
        with ``return_delta`` a tuple ``(maps, delta)``, ``delta`` float64
        ``(N,)`` computed from the raw attributions of every input.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                          # doctest: +SKIP
        >>> x = mv.shapes_dataset(2, size=64).images                    # doctest: +SKIP
        >>> maps, delta = mv.integrated_gradients(model, x, steps=64, return_delta=True)  # doctest: +SKIP
    """
    check_aggregation(aggregation)
    alphas, weights = gradient_math.integration_points(steps, rule)
    call = ModelCall.make(model, x, batch_size)
    target = call.fixed_target(call.check_target(target))
    xs = call.parts_canonical()
    bases = _baselines(call, baseline)
    steps = len(alphas)
    mean_grads = [np.zeros(x.shape, np.float64) for x in xs]
    for s in chunks(call.n * steps, call.batch_size):  # point k of sample i is item i*steps + k
        items = np.arange(s.start, s.stop)
        rows, k = items // steps, items % steps
        points = []
        for x, base in zip(xs, bases, strict=True):
            a = alphas[k].reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
            points.append(base[rows] + a * (x[rows] - base[rows]))
        result = call.gradients(
            [], rows_of(target, rows), wrt_input=True, inputs=call.native_parts(points), rows=rows
        )
        for mean, g in zip(mean_grads, call.input_gradients(result), strict=True):
            np.add.at(mean, rows, g * weights[k].reshape((-1,) + (1,) * (g.ndim - 1)))
    attributions = [
        gradient_math.integrated_gradients_from_mean(x, base, mean)
        for x, base, mean in zip(xs, bases, mean_grads, strict=True)
    ]
    maps = []
    for values in attributions:
        m = _input_map(values, aggregation, normalize=False)
        maps.append(normalize_maps(np.abs(m)) if normalize else np.asarray(m, np.float32))
    result_maps = call.as_given(maps)
    if not return_delta:
        return call.finish(result_maps)
    both = [np.concatenate([x, base]) for x, base in zip(xs, bases, strict=True)]
    twice_rows = np.concatenate([np.arange(call.n), np.arange(call.n)])
    ends = call.scored_forward(call.native_parts(both), _twice(target), rows=twice_rows)
    gap = ends.scores[: call.n].astype(np.float64) - ends.scores[call.n :].astype(np.float64)
    total = sum(a.reshape(call.n, -1).sum(axis=1) for a in attributions)
    delta = np.asarray(total - gap, np.float64)
    if call._bad:
        delta[sorted(call._bad)] = np.nan
    return call.finish(result_maps), delta


def _twice(target: Targets) -> Targets:
    return np.concatenate([target, target]) if isinstance(target, np.ndarray) else target


def _baselines(call: ModelCall, baseline: Any) -> list[np.ndarray]:
    """One baseline per input, as :meth:`ModelCall.parts_canonical` lays the inputs out."""
    labels = call.inputs.labels
    if call.several and isinstance(baseline, (tuple, list, dict)):
        given = read_inputs(baseline, len(call.inputs.parts))
        if len(given.parts) != len(call.inputs.parts):
            raise ValueError(
                f"`baseline` must be None, a number, or one baseline per input "
                f"({len(call.inputs.parts)}: {labels}). Received {len(given.parts)}."
            )
        if given.kind == "dict":
            parts = [given.parts[given.names.index(k)] for k in call.inputs.names]
        else:
            parts = list(given.parts)
    else:
        parts = [baseline] * len(call.inputs.parts)
    return [
        _baseline(call, part, given, label)
        for part, given, label in zip(parts, call.inputs.parts, labels, strict=True)
    ]


def _baseline(call: ModelCall, baseline: Any, part: Any, label: str) -> np.ndarray:
    """One input's baseline as a float32 batch of that input's shape, image batches channels first."""
    shape = tuple(int(d) for d in part.shape)
    image = len(shape) in (4, 5)  # an image batch, or a video of them
    if baseline is None:
        b = np.zeros(shape, np.float32)
    else:
        b = as_numpy(baseline)
        if b.dtype.kind in "fc" and not np.isfinite(b).all():
            raise NumberError(
                f"`baseline` must hold finite numbers. Received: {int((~np.isfinite(b)).sum())} "
                "NaN or infinite value(s)"
            )
        try:
            b = np.broadcast_to(b, shape)
        except ValueError:
            where = "" if label == "input" else f" for the {label}"
            raise ValueError(
                f"`baseline` must be a number, one sample of shape {shape[1:]} or a batch of "
                f"shape {shape}{where}, in the model's input layout. Received shape {b.shape}."
            ) from None
    b = np.ascontiguousarray(b, np.float32)
    return call.canonical(b) if image else b


@quiet_numpy
@names_parameters
@empty_batch
def guided_backprop(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    aggregation: str | None = None,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity").

    The input gradient with every ReLU's backward pass replaced by one that
    passes only positive gradients where the forward input was positive (the
    backend does this for the one call; the model is unchanged).

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        target: what is explained (see the module docstring).
        aggregation: ``None`` (default) keeps the colour channels and returns
            ``(N, C, H, W)``, the usual way to show it; ``"max_abs"`` and the
            other choices of :func:`~multiviz.attribution.maps.aggregate_channels`
            give ``(N, H, W)``.
        normalize: min-max scale each sample (over all its channels) to
            ``[0, 1]`` — for the signed gradients, 0 ends up mid-grey; False
            returns the raw gradients.
        batch_size: the most inputs sent to the backend at once.

    Returns:
        float32 ``(N, C, H, W)``, or ``(N, H, W)`` with an aggregation.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                 # doctest: +SKIP
        >>> x = mv.shapes_dataset(2, size=64).images           # doctest: +SKIP
        >>> mv.guided_backprop(model, x).shape                 # doctest: +SKIP
        (2, 3, 64, 64)
    """
    check_aggregation(aggregation)
    call = ModelCall.make(model, x, batch_size)
    result = call.gradients([], call.check_target(target), wrt_input=True, guided=True)
    grads = call.input_gradients(result)
    return call.finish(call.as_given([_input_map(g, aggregation, normalize) for g in grads]))


@quiet_numpy
@names_parameters
@empty_batch
def deconvnet(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    aggregation: str | None = None,
    normalize: bool = True,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Deconvnet (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks").

    The input gradient with every ReLU's backward pass replaced by the
    deconvnet's: only positive gradients pass, **whatever the forward input
    was** (guided backpropagation also requires the unit to have been
    active). Computed through the backend's gradients verb for this one call;
    the model is unchanged. Arguments, shapes and scaling as
    :func:`guided_backprop`.

    Returns:
        float32 ``(N, C, H, W)``, or ``(N, H, W)`` with an aggregation.

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                 # doctest: +SKIP
        >>> mv.deconvnet(model, mv.sample_image()[None], aggregation="max_abs").shape  # doctest: +SKIP
        (1, 64, 64)
    """
    check_aggregation(aggregation)
    call = ModelCall.make(model, x, batch_size)
    result = call.gradients([], call.check_target(target), wrt_input=True, guided="deconvnet")
    grads = call.input_gradients(result)
    return call.finish(call.as_given([_input_map(g, aggregation, normalize) for g in grads]))
