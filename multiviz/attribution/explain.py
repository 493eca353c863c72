"""Several attribution methods at once.

:func:`explain` runs the chosen methods on one batch, sharing work between
them: the gradient-based CAMs and plain saliency come from a single backward
pass, and every method explains the same class per sample. The figure of the
result (:meth:`Explanations.plot`) is drawn by
:func:`multiviz.render.figures.plot_explanations`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multiviz.attribution import cam, cam_math, gradient
from multiviz.attribution.maps import aggregate_channels, normalize_maps
from multiviz.attribution.model_call import ModelCall, empty_batch, one_report, quiet_numpy
from multiviz.core.layout import to_channels_last
from multiviz.core.params import names_parameters
from multiviz.core.views import MAX_LINES, array_summary, clip_rows, plural, text_table
from multiviz.errors import closest

__all__ = ["LAYER_METHODS", "METHODS", "TITLES", "Explanations", "explain"]

#: Method name -> the title a figure gives it.
TITLES: dict[str, str] = {
    "saliency": "Saliency",
    "grad_x_input": "Gradient x input",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients",
    "guided_backprop": "Guided backprop",
    "deconvnet": "Deconvnet",
    "cam": "CAM",
    "grad_cam": "Grad-CAM",
    "grad_cam_plus_plus": "Grad-CAM++",
    "layer_cam": "LayerCAM",
    "score_cam": "Score-CAM",
    "guided_grad_cam": "Guided Grad-CAM",
}
#: The method names :func:`explain` accepts.
METHODS: tuple[str, ...] = tuple(TITLES)
#: The methods that read a layer's activations (the others explain the input pixels).
LAYER_METHODS: tuple[str, ...] = (
    "cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_cam",
    "score_cam",
    "guided_grad_cam",
)

# methods computed from one shared gradient pass at `layer` (and the input)
_FROM_LAYER = {
    "grad_cam": cam_math.grad_cam_map,
    "grad_cam_plus_plus": cam_math.grad_cam_plus_plus_map,
    "layer_cam": cam_math.layer_cam_map,
}
_FROM_INPUT = ("saliency", "grad_x_input")


class Explanations(dict):
    """Method name -> maps ``(N, H, W)`` in ``[0, 1]``, with what they explain.

    A plain ``dict`` with three more attributes and a figure view.

    Attributes:
        image: the images for display, channels-last ``(N, H, W, C)`` in ``[0, 1]``.
        targets: the class explained per sample, ``(N,)``, or ``None`` for a
            callable target.
        layer: the layer the CAM methods used, or ``None``.
        class_names: the name of each class, where known (for titles).
    """

    def __init__(
        self,
        maps: Mapping[str, np.ndarray],
        image: np.ndarray,
        targets: np.ndarray | None,
        layer: str | None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(maps)
        self.image = image
        self.targets = targets
        self.layer = layer
        self.class_names = class_names

    def plot(self, sample: int = 0, **kwargs: Any) -> Any:
        """:func:`multiviz.plot_explanations` of this result's image and maps (a Figure).

        The figure names the methods, the layer and the class explained for
        ``sample``; keyword arguments go to :func:`multiviz.plot_explanations`.
        """
        from multiviz.render.figures import plot_explanations

        kwargs.setdefault("layer", self.layer)
        if self.targets is not None and len(self.targets):
            kwargs.setdefault("target", int(np.asarray(self.targets)[sample]))
        kwargs.setdefault("class_names", self.class_names)
        return plot_explanations(self.image, self, sample=sample, **kwargs)

    def __repr__(self) -> str:
        n = len(self.image) if np.ndim(self.image) == 4 else 1
        first = next(iter(self.values()), None)
        size = "x".join(str(d) for d in np.shape(first)[-2:]) if first is not None else "?"
        head = (
            f"Explanations({plural(len(self), 'method')}, {plural(n, 'image')} of {size}"
            + (f", layer {self.layer!r}" if self.layer else "")
            + ")"
        )
        lines = [head]
        if self.targets is not None:
            shown, more = clip_rows([int(t) for t in np.ravel(self.targets)], 8, "samples")
            names = self.class_names
            tgt = [f"{t} ({names[t]})" if names and 0 <= t < len(names) else str(t) for t in shown]
            lines.append("  classes explained: " + ", ".join(tgt) + (f" {more}" if more else ""))
        rows, more = clip_rows(list(self.items()), MAX_LINES - 3, "methods")
        table = text_table([[k, TITLES.get(k, k), array_summary(v)] for k, v in rows])
        lines += ["  " + line for line in table.splitlines()]
        if more:
            lines.append("  " + more)
        return "\n".join(lines)

    def _repr_png_(self) -> bytes:
        """The figure of sample 0, for notebooks."""
        from multiviz.render.figures import figure_png

        return figure_png(self.plot())


@quiet_numpy
@names_parameters
@empty_batch
def explain(
    model: Any,
    x: Any,
    methods: Sequence[str] = ("grad_cam", "score_cam", "saliency"),
    layer: str | None = None,
    target: Any = None,
    image: np.ndarray | None = None,
    *,
    batch_size: int = 32,
    samples: int = 25,
    steps: int = 50,
    seed: int | None = 0,
    class_names: Sequence[str] | None = None,
    input_index: int | str | None = None,
) -> Explanations:
    """Run several attribution methods on one batch, all explaining the same class.

    Grad-CAM, Grad-CAM++, LayerCAM, CAM, saliency and gradient x input share
    one forward/backward pass; Score-CAM, SmoothGrad, Integrated Gradients and
    the guided methods add their own. Each method is the function of the same
    name in :mod:`multiviz.attribution.cam` or :mod:`multiviz.attribution.gradient`
    (see their docstrings for the papers); guided methods are aggregated over
    channels (largest magnitude) so that every entry is an ``(N, H, W)`` map
    in ``[0, 1]``.

    Args:
        model: a ``torch.nn.Module`` or a Keras 3 model.
        x: a batch of images in the framework's layout.
        methods: names from :data:`METHODS`.
        layer: the CAM methods' layer; ``None`` picks the last spatial layer.
        target: what is explained (see :mod:`multiviz.attribution`);
            ``None`` becomes each sample's top class, found once.
        image: the images to draw under the maps, channels-last ``(N, H, W, C)``
            (e.g. before normalization); default ``x`` scaled to ``[0, 1]``.
        batch_size: the most inputs sent to the backend at once.
        samples: SmoothGrad's noisy copies per image.
        steps: Integrated Gradients' path points.
        seed: SmoothGrad's noise seed.
        class_names: the name of each class, for the figure's title.
        input_index: for a model with several inputs, the image input every
            map is drawn over (position, or dict key; default the first
            image-shaped one); the input-gradient methods show that input's
            attribution.

    Returns:
        :class:`Explanations`: a dict name -> float32 ``(N, H, W)`` maps, in
        the order asked, with ``.image``, ``.targets``, ``.layer`` and ``.plot()``.
        A sample where NaN or Inf appears gets NaN maps, and the call one
        :class:`~multiviz.errors.MultivizWarning` for all its methods.

    Raises:
        ValueError: an unknown method name (the closest names are listed).

    Example:
        >>> import multiviz as mv
        >>> model = mv.builtin_model("torch")                             # doctest: +SKIP
        >>> ex = mv.explain(model, mv.sample_image()[None], layer="relu3")  # doctest: +SKIP
        >>> sorted(ex), ex["grad_cam"].shape                                # doctest: +SKIP
        (['grad_cam', 'saliency', 'score_cam'], (1, 64, 64))
        >>> fig = ex.plot()                                                 # doctest: +SKIP
    """
    methods = _check_methods(methods)
    with one_report():
        return _explain(
            model, x, methods, layer, target, image, batch_size, samples, steps, seed,
            class_names, input_index,
        )  # fmt: skip


def _explain(
    model: Any,
    x: Any,
    methods: list[str],
    layer: str | None,
    target: Any,
    image: np.ndarray | None,
    batch_size: int,
    samples: int,
    steps: int,
    seed: int | None,
    class_names: Sequence[str] | None,
    input_index: int | str | None,
) -> Explanations:
    if image is not None and np.asarray(image).dtype.kind not in "biuf":
        raise TypeError(
            "`image` must be an array of numbers, the images as shown (N, H, W, C), or None. "
            f"Received: {image!r:.60}"
        )
    call = ModelCall.make(model, x, batch_size, input_index=input_index)
    call.refuse_video(
        "explain",
        "its figure draws one image per sample",
        "call the methods themselves (mv.grad_cam, mv.saliency...): they give one map per frame, "
        "(N, T, H, W); or explain one frame's model on x[:, t].",
    )
    call.size  # noqa: B018 - every map is drawn over an image input: say so now if there is none
    given = call.inputs.key(call.image) if call.image is not None else None
    target = call.check_target(target)
    uses_layer = [
        m for m in methods if m in _FROM_LAYER or m in ("cam", "score_cam", "guided_grad_cam")
    ]
    name = call.resolve_layer(layer, TITLES[uses_layer[0]]) if uses_layer else None

    maps: dict[str, np.ndarray] = {}
    shared = [m for m in methods if m in _FROM_LAYER or m in _FROM_INPUT]
    if shared:
        names = [name] if any(m in _FROM_LAYER for m in shared) else []
        result = call.gradients(names, target, wrt_input=any(m in _FROM_INPUT for m in shared))
        if target is None:
            target = result.targets
        for m in shared:
            if m in _FROM_LAYER:
                acts = call.spatial(result.activations, name, TITLES[m])
                low = _FROM_LAYER[m](acts, call.pick(result.gradients, name))
                maps[m] = call.at_input(low, True)
            else:
                grads = call.input_gradient(result)
                if m == "grad_x_input":
                    grads = grads * call.x_canonical()
                maps[m] = normalize_maps(aggregate_channels(grads, "max_abs"))
        maps = call.finish(maps)
    target = call.fixed_target(target)

    common = {"target": target, "batch_size": batch_size}
    image_of = _image_of(call)
    for m in methods:
        if m in maps:
            continue
        if m == "smoothgrad":
            maps[m] = image_of(
                gradient.saliency(
                    model, call.x, method="smoothgrad", samples=samples, seed=seed, **common
                )
            )
        elif m == "integrated_gradients":
            maps[m] = image_of(gradient.integrated_gradients(model, call.x, steps=steps, **common))
        elif m == "guided_backprop":
            maps[m] = image_of(
                gradient.guided_backprop(model, call.x, aggregation="max_abs", **common)
            )
        elif m == "deconvnet":
            maps[m] = image_of(gradient.deconvnet(model, call.x, aggregation="max_abs", **common))
        elif m == "guided_grad_cam":
            maps[m] = cam.guided_grad_cam(
                model, call.x, name, aggregation="max_abs", input_index=given, **common
            )
        elif m == "cam":
            maps[m] = cam.cam(model, call.x, name, input_index=given, **common)
        elif m == "score_cam":
            maps[m] = cam.score_cam(model, call.x, name, input_index=given, **common)
    shown = _display_images(call) if image is None else np.asarray(image)
    targets = target if isinstance(target, np.ndarray) else None
    return Explanations({m: maps[m] for m in methods}, shown, targets, name, class_names)


def _image_of(call: ModelCall) -> Any:
    """From one map per input (several inputs), the image input's."""
    if not call.several:
        return lambda maps: maps
    key = call.inputs.key(call.image) if call.image is not None else 0
    return lambda maps: maps[key]


def _check_methods(methods: Sequence[str] | str) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    out = list(dict.fromkeys(methods))
    for m in out:
        if m not in TITLES:
            near = closest(str(m), TITLES)
            raise ValueError(
                f"`methods`: {m!r} is not a method. Valid: {','.join(TITLES)}"
                + (f"\nhint: did you mean {near[0]!r}?" if near else "")
            )
    if not out:
        raise ValueError(f"`methods` is empty. Pass some of {list(TITLES)}.")
    return out


def _display_images(call: ModelCall) -> np.ndarray:
    """The image input as channels-last images, each min-max scaled to ``[0, 1]``.

    Non-finite pixels are shown as 0 here (this is the picture under the
    maps, not a map: the maps of such a sample are NaN).
    """
    x = call.x_canonical()
    return to_channels_last(normalize_maps(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)))
