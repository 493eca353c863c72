"""``mv.evaluate``: run attribution methods and score their maps on several metrics.

The metrics are NumPy (the rest of :mod:`multiviz.evaluation`); this module
is the only one that talks to a model, and only through the attribution
plumbing (forward passes, gradients) and the weights plugin (randomization).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multiviz.attribution.cam_math import softmax
from multiviz.attribution.explain import _check_methods, explain
from multiviz.attribution.model_call import ModelCall
from multiviz.core.params import names_parameters
from multiviz.errors import closest
from multiviz.evaluation import localization, perturbation, road
from multiviz.evaluation.perturbation import auc, make_substrate, perturbation_curves
from multiviz.evaluation.randomization import Cascade, randomization_draws, similarities
from multiviz.evaluation.report import HIGHER_IS_BETTER, METRICS, EvaluationReport
from multiviz.evaluation.road import DEFAULT_PERCENTAGES

__all__ = ["SCORES", "evaluate"]

#: What the perturbation metrics score: the target's softmax probability (as
#: in Petsiuk et al. 2018) or its logit.
SCORES: tuple[str, ...] = ("probability", "logit")
_LOCALIZATION = ("pointing_game", "energy_pointing_game", "iou")
_DEFAULT_SUBSTRATE = {"deletion": "zeros", "insertion": "blur"}


class _CountingScorer:
    """The scorer of :mod:`~multiviz.evaluation.perturbation`, counting what it runs."""

    def __init__(self, call: ModelCall, target: Any, score: str) -> None:
        self.call = call
        self.target = target
        self.inputs = 0
        self.batches = 0
        if callable(target) or score == "logit":
            self._fn = self._scored
        else:
            probabilities = call.class_probabilities()
            self._fn = lambda native, rows: probabilities(native)[
                np.arange(len(rows)), self.target[rows]
            ]

    def _scored(self, native: np.ndarray, rows: np.ndarray) -> np.ndarray:
        t = self.target if callable(self.target) else self.target[rows]
        return self.call.scored_forward(native, t).scores

    def __call__(self, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        self.inputs += len(rows)
        self.batches += -(-len(rows) // self.call.batch_size)
        return np.asarray(self._fn(self.call.native(inputs), rows), np.float64)


def _check_numbers(
    steps: Any,
    blur_sigma: Any,
    percentages: Any,
    noise: Any,
    tolerance: Any,
    iou_threshold: Any,
    level: Any,
    resamples: Any,
    seed: Any,
) -> None:
    """Every numeric parameter of :func:`evaluate`, before any model call."""
    from multiviz.core.checks import check_number, check_numbers

    check_number(steps, "steps", low=1, integer=True)
    check_number(blur_sigma, "blur_sigma", low=0, low_open=True)
    check_numbers(percentages, "percentages", low=0, high=100, low_open=True, high_open=True)
    check_number(noise, "noise", low=0)
    check_number(tolerance, "tolerance", low=0)
    check_number(iou_threshold, "iou_threshold", low=0, high=1)
    check_number(level, "level", low=0, high=1, low_open=True, high_open=True)
    check_number(resamples, "resamples", low=1, integer=True)
    check_number(seed, "seed", integer=True)


def _check_metrics(
    metrics: Sequence[str] | str | None, has_regions: bool, has_randomized: bool
) -> list[str]:
    if metrics is None:
        out = ["deletion", "insertion", "road", "randomization"]
        if has_regions:
            out[3:3] = list(_LOCALIZATION)
        if has_randomized:
            out.append("data_randomization")
        return out
    if isinstance(metrics, str):
        metrics = [metrics]
    out = list(dict.fromkeys(metrics))
    for m in out:
        if m not in METRICS:
            near = closest(str(m), METRICS)
            raise ValueError(
                f"`metrics` must be names from {list(METRICS)}. Received: {m!r}."
                + (f" Did you mean {near[0]!r}?" if near else "")
            )
    need = [m for m in out if m in _LOCALIZATION]
    if need and not has_regions:
        raise ValueError(
            f"Metrics {need} compare maps with the object's location: pass boxes= (x0, y0, x1, "
            "y1 per image) or masks= ((N, H, W) booleans)."
        )
    if "data_randomization" in out and not has_randomized:
        raise ValueError(
            "`data_randomization` compares each map with the map of a model trained on "
            "permuted labels: pass it as randomized_model=."
        )
    if not out:
        raise ValueError(f"`metrics` is empty. Pass some of {list(METRICS)}.")
    return out


@names_parameters
def evaluate(
    model: Any,
    x: Any,
    methods: Sequence[str] | str = ("grad_cam", "saliency"),
    layer: str | None = None,
    metrics: Sequence[str] | str | None = None,
    *,
    target: Any = None,
    boxes: Any = None,
    masks: Any = None,
    randomized_model: Any = None,
    maps: Mapping[str, Any] | None = None,
    score: str = "probability",
    substrate: str | None = None,
    steps: int = 50,
    blur_sigma: float = 5.0,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    noise: float = 0.01,
    tolerance: float = 15.0,
    iou_threshold: float = 0.5,
    independent: bool = True,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    batch_size: int = 32,
) -> EvaluationReport:
    """Score attribution methods on faithfulness, localization and sanity metrics.

    Every method explains the same class per image (``target=None``: the class
    the model predicts for the clean image), its maps are ``(N, H, W)`` in
    ``[0, 1]`` (as :func:`multiviz.explain` gives them), and every metric
    scores each image; the report gives each method's mean with a bootstrap
    interval per metric.

    Metrics (direction: lower is better for ``deletion``, ``randomization``
    and ``data_randomization``; higher for the rest):

    * ``deletion`` / ``insertion`` (Petsiuk et al. 2018, RISE): the area under
      the target's score as pixels are removed from the image / inserted into
      the substrate in the map's order, ties broken by pixel index; the value
      is the area under the curve over the fraction of pixels. Cost:
      ``steps - 1`` model inputs per image and method, plus one per image
      shared by all methods (the substrate); the clean image's score comes
      from the one pass that also finds ``target``.
    * ``road`` (Rong et al. 2022): pixels imputed by noisy linear imputation
      instead of a constant, so the removed region's outline does not tell
      the class; the value is ``mean(LeRF) - mean(MoRF)`` over
      ``percentages`` (the symmetric relevance gain of Blücher et al. 2024,
      "Decoupling Pixel Flipping and Occlusion Strategy for Consistent XAI
      Benchmarks"), higher is better, about 0 for a random map. Cost:
      ``2 * len(percentages)`` inputs per image and method.
    * ``pointing_game`` (Zhang et al. 2016, ``tolerance`` pixels),
      ``energy_pointing_game`` (Wang et al. 2020), ``iou`` (map at
      ``iou_threshold`` of its maximum): against ``boxes`` or ``masks``. No
      model call.
    * ``randomization`` (Adebayo et al. 2018): the Spearman rank correlation
      of each map with the map after randomizing every layer's weights,
      cascading from the top layer down (and each layer on its own, when
      ``independent``). Parameters (weights, biases, BatchNorm's affine
      parameters; running statistics kept) are redrawn from a NumPy
      generator seeded with ``seed`` and written into a *copy* of the model
      through the weights plugin: the same in PyTorch and Keras, and the
      user's model is untouched. The value is the mean rank correlation
      after *every* layer is randomized, a similarity: lower is better, and
      above 0.5 the method fails the check (:meth:`~multiviz.evaluation.report.EvaluationReport.best`
      never names it). Cost: one attribution pass per method and randomized
      layer (twice with ``independent``).
    * ``data_randomization`` (Adebayo et al. 2018): the Spearman rank
      correlation of each map with ``randomized_model``'s map, a model of the
      same architecture trained on permuted labels. It is a *similarity*, so
      **lower is better**, as for ``randomization``: a map that stays the
      same when the labels carried no information does not show what the
      model learned. Cost: one attribution pass per method on ``randomized_model``.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout (NumPy or a tensor).
        methods: attribution method names (see :data:`multiviz.attribution.explain.METHODS`).
        layer: the CAM methods' layer; ``None`` picks the last spatial layer.
        metrics: names from :data:`~multiviz.evaluation.report.METRICS`;
            ``None`` runs every one the arguments allow.
        target: what is explained (see :mod:`multiviz.attribution`). A
            callable target's value is the score the perturbation metrics
            use (it receives the logits: write the softmax into it to score a
            probability, e.g. ``lambda out: torch.softmax(out, 1)[:, 3]``).
        boxes: ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels (end exclusive),
            or a list of ``(k, 4)`` arrays; for the localization metrics.
        masks: ``(N, H, W)`` booleans, instead of ``boxes``.
        randomized_model: for ``data_randomization``.
        maps: more maps to score beside ``methods``: name -> ``(N, H, W)``
            at the input's size (your own method, or a random baseline).
            They get every metric but the two randomization checks, which
            need to recompute the map.
        score: ``"probability"`` (softmax of the logits, as RISE) or ``"logit"``.
        substrate: what replaces removed pixels, one of ``"blur"``, ``"mean"``,
            ``"zeros"``; ``None``: zeros for deletion and blur for insertion,
            as in RISE.
        steps: deletion/insertion steps (the curves have ``steps + 1`` points).
        blur_sigma: the blur substrate's Gaussian, pixels.
        percentages: ROAD's removal percentages, each in ``(0, 100)``.
        noise: ROAD's imputation noise, in the input's units.
        tolerance: the pointing game's tolerance, pixels.
        iou_threshold: the IoU's threshold, a fraction of the map's maximum.
        independent: also randomize each layer on its own.
        level: the intervals' coverage.
        resamples: bootstrap resamples.
        seed: every random draw (ROAD's noise, the randomized weights,
            SmoothGrad's noise, the bootstrap).
        batch_size: the most inputs sent to the model at once.

    Returns:
        :class:`~multiviz.evaluation.report.EvaluationReport`.

    Raises:
        ValueError: an unknown method or metric, a localization metric
            without boxes/masks, ``data_randomization`` without a
            ``randomized_model``, or a bad option (the message names it).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                          # doctest: +SKIP
        >>> data = mv.shapes_dataset(16, size=64)                      # doctest: +SKIP
        >>> report = mv.evaluate(model, data.images, ["grad_cam", "saliency"], "relu3",
        ...                      boxes=data.boxes)                     # doctest: +SKIP
        >>> print(report)                                              # doctest: +SKIP
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {list(SCORES)}. Received: score={score!r}")
    if substrate is not None and substrate not in perturbation.SUBSTRATES:
        raise ValueError(
            f"`substrate` must be one of {list(perturbation.SUBSTRATES)} or None (RISE's: zeros "
            f"for deletion, blur for insertion). Received: substrate={substrate!r}"
        )
    _check_numbers(
        steps, blur_sigma, percentages, noise, tolerance, iou_threshold, level, resamples, seed
    )
    methods = _check_methods(methods) if methods else []
    if maps is not None and not isinstance(maps, Mapping):
        raise TypeError(
            "`maps` must be a dict of name -> maps (N, H, W), or None. "
            f"Received: maps of type {type(maps).__name__}"
        )
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (a str) or None. Received: layer={layer!r}")
    if randomized_model is not None:
        from multiviz.backends import get_backend
        from multiviz.errors import UnsupportedModelError

        try:
            get_backend(randomized_model)
        except UnsupportedModelError:
            raise UnsupportedModelError(
                "`randomized_model` must be a model (torch.nn.Module or Keras model) with "
                f"re-initialized weights, or None. Received: {type(randomized_model).__name__}"
            ) from None
    call = ModelCall.make(model, x, batch_size)
    size = call.size
    given = _check_maps(maps, methods, call.n, size)
    if not methods and not given:
        raise ValueError("Nothing to evaluate: pass `methods` (names) or `maps` (arrays).")
    regions = localization.regions_from(boxes, masks, n=call.n, size=size)
    metrics = _check_metrics(metrics, regions is not None, randomized_model is not None)
    target, clean = _target_and_clean_scores(call, call.check_target(target), score)
    computed = (
        dict(explain(model, call.x, methods, layer, target, batch_size=batch_size, seed=seed))
        if methods
        else {}
    )
    layer_name = _layer_of(call, methods, layer)
    maps = {**computed, **given}
    scored = list(maps)

    per_image: dict[str, dict[str, np.ndarray]] = {m: {} for m in scored}
    curves: dict[str, dict[str, np.ndarray]] = {m: {} for m in scored}
    calls: dict[str, float] = {}
    images = call.x_canonical()
    scorer = _CountingScorer(call, target, score)
    rows = np.arange(call.n)

    faith = [m for m in metrics if m in ("deletion", "insertion")]
    if faith:
        before = scorer.inputs
        for kind in faith:
            sub = make_substrate(images, substrate or _DEFAULT_SUBSTRATE[kind], blur_sigma)
            ends = scorer(sub, rows)
            start, end = (clean, ends) if kind == "deletion" else (ends, clean)
            for m in scored:
                c = perturbation_curves(
                    images, maps[m], scorer, mode=kind, substrate=sub, steps=int(steps),
                    batch_size=batch_size, start=start, end=end,
                )  # fmt: skip
                curves[m][kind] = c
                per_image[m][kind] = auc(c)
        calls["deletion+insertion" if len(faith) == 2 else faith[0]] = (
            scorer.inputs - before
        ) / max(call.n * len(scored), 1)
    if "road" in metrics:
        before = scorer.inputs
        for m in scored:
            morf, lerf = road.road_curves(
                images, maps[m], scorer, percentages=percentages, noise=noise, seed=seed,
                batch_size=batch_size,
            )  # fmt: skip
            curves[m]["road_morf"], curves[m]["road_lerf"] = morf, lerf
            per_image[m]["road"] = lerf.mean(axis=1) - morf.mean(axis=1)
        calls["road"] = (scorer.inputs - before) / max(call.n * len(scored), 1)
    if regions is not None:
        for m in scored:
            if "pointing_game" in metrics:
                per_image[m]["pointing_game"] = localization.pointing_game(
                    maps[m], regions, tolerance
                )
            if "energy_pointing_game" in metrics:
                per_image[m]["energy_pointing_game"] = localization.energy_pointing_game(
                    maps[m], regions
                )
            if "iou" in metrics:
                per_image[m]["iou"] = localization.iou(maps[m], regions, iou_threshold)
    cascades: dict[str, Cascade] = {}
    if "randomization" in metrics and methods:
        cascades = _model_randomization(
            model, call.x, methods, layer_name, target, maps, seed, independent, batch_size
        )
        for m in methods:
            per_image[m]["randomization"] = cascades[m].fully_randomized
    if "data_randomization" in metrics and methods:
        other = dict(
            explain(randomized_model, call.x, methods, layer_name, target, batch_size=batch_size,
                    seed=seed)
        )  # fmt: skip
        for m in methods:
            per_image[m]["data_randomization"] = similarities(maps[m], other[m])[0]

    settings = {
        "images": call.n,
        "layer": layer_name,
        "score": score,
        "substrate": substrate or dict(_DEFAULT_SUBSTRATE),
        "steps": int(steps),
        "blur_sigma": blur_sigma,
        "percentages": [float(p) for p in percentages],
        "noise": noise,
        "tolerance": tolerance,
        "iou_threshold": iou_threshold,
        "seed": seed,
        "model_inputs_per_image_and_method": calls,
        "directions": {m: "higher" if HIGHER_IS_BETTER[m] else "lower" for m in metrics},
    }
    ordered = {m: {k: per_image[m][k] for k in metrics if k in per_image[m]} for m in scored}
    return EvaluationReport.from_values(
        ordered,
        level=level,
        resamples=resamples,
        seed=seed,
        curves={m: c for m, c in curves.items() if c},
        randomization=cascades,
        settings=settings,
    )


def _target_and_clean_scores(call: ModelCall, target: Any, score: str) -> tuple[Any, np.ndarray]:
    """One pass over the clean images: each image's class (for ``target=None``) and its score.

    The clean score is the first point of every deletion curve and the last
    of every insertion curve, for all methods: it costs no further model call.
    """
    first = call.scored_forward(call.x, target)
    if target is None:
        assert first.targets is not None
        target = first.targets.astype(np.int64)
    if callable(target) or score == "logit":
        return target, np.asarray(first.scores, np.float64)
    out = np.asarray(first.output, np.float64)
    probs = softmax(out.reshape(out.shape[0], out.shape[1], -1).sum(axis=-1))
    return target, probs[np.arange(call.n), target]


def _check_maps(
    maps: Mapping[str, Any] | None, methods: Sequence[str], n: int, size: tuple[int, int]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in (maps or {}).items():
        arr = np.asarray(value, np.float64)
        if arr.shape != (n, *size):
            raise ValueError(
                f"`maps[{name!r}]` must be (N, H, W) = {(n, *size)}, one map per image at the "
                f"input's size. Received shape {arr.shape}."
            )
        if name in methods:
            raise ValueError(f"`maps` has {name!r}, which is also in `methods`. Rename it.")
        out[str(name)] = arr
    return out


def _layer_of(call: ModelCall, methods: Sequence[str], layer: str | None) -> str | None:
    from multiviz.attribution.explain import _FROM_LAYER, TITLES

    uses = [m for m in methods if m in _FROM_LAYER or m in ("cam", "score_cam", "guided_grad_cam")]
    return call.resolve_layer(layer, TITLES[uses[0]]) if uses else None


def _weights_plugin(model: Any) -> Any:
    from multiviz.backends import get_backend, plugin

    return plugin(get_backend(model).name, "weights")


def _model_randomization(
    model: Any,
    x: Any,
    methods: Sequence[str],
    layer: str | None,
    target: Any,
    original: dict[str, np.ndarray],
    seed: int,
    independent: bool,
    batch_size: int,
) -> dict[str, Cascade]:
    """Adebayo et al.'s cascading (and independent) model-parameter randomization."""
    weights = _weights_plugin(model)
    copy = weights.copy_model(model)
    layers, trained, drawn = randomization_draws(weights.read(copy), seed)

    def maps_of(m: Any) -> dict[str, np.ndarray]:
        return dict(explain(m, x, methods, layer, target, batch_size=batch_size, seed=seed))

    casc_rho = {m: [] for m in methods}
    casc_ssim = {m: [] for m in methods}
    casc_maps = {m: [] for m in methods}
    for p in layers:
        weights.write(copy, {p.name: drawn[p.name]})
        now = maps_of(copy)
        for m in methods:
            rho, s = similarities(original[m], now[m])
            casc_rho[m].append(rho)
            casc_ssim[m].append(s)
            casc_maps[m].append(now[m][0])
    ind_rho = {m: [] for m in methods}
    ind_ssim = {m: [] for m in methods}
    if independent:
        weights.write(copy, trained)  # back to the trained weights
        for p in layers:
            weights.write(copy, {p.name: drawn[p.name]})
            now = maps_of(copy)
            weights.write(copy, {p.name: trained[p.name]})
            for m in methods:
                rho, s = similarities(original[m], now[m])
                ind_rho[m].append(rho)
                ind_ssim[m].append(s)
    names = [p.name for p in layers]
    n = len(next(iter(original.values())))
    empty = np.zeros((0, n))
    return {
        m: Cascade(
            layers=names,
            cascading_spearman=np.array(casc_rho[m]).reshape(len(names), n),
            cascading_ssim=np.array(casc_ssim[m]).reshape(len(names), n),
            independent_spearman=np.array(ind_rho[m]).reshape(-1, n) if independent else empty,
            independent_ssim=np.array(ind_ssim[m]).reshape(-1, n) if independent else empty,
            original=original[m][0] if n else None,
            cascade_maps=np.array(casc_maps[m]) if n else None,
        )
        for m in methods
    }
