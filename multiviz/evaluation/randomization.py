"""Sanity checks of attribution maps (Adebayo et al. 2018): the NumPy half.

    J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim.
    "Sanity Checks for Saliency Maps." NeurIPS 2018.

*Model-parameter randomization*: a map that explains the model must change
when the model's learned parameters are replaced by random ones. The
cascading test randomizes layers one after another from the top (logits)
down, recomputing the maps after each; the independent test randomizes one
layer at a time, the others left trained. Each map is compared with the
original by Spearman rank correlation and SSIM
(:mod:`multiviz.evaluation.similarity`). Guided backpropagation famously
keeps its map (it shows edges); gradients and Grad-CAM lose it.

*Data randomization*: the same comparison between a model and one trained on
permuted labels (the user trains it; see ``randomized_model=`` in
:func:`multiviz.evaluate`).

This module holds what needs no framework: how new parameters are drawn
(:func:`redraw`), which arrays are redrawn, and the record of a cascade
(:class:`Cascade`). The model copy and the writes go through the weights
plugin of the model's backend, in the canonical (PyTorch) layout, so the same
seed gives the same parameters in PyTorch and in Keras.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from multiviz.core.weight_layouts import LayerParams, from_canonical, to_canonical
from multiviz.evaluation.similarity import spearman, ssim

__all__ = ["RANDOMIZED", "Cascade", "randomization_draws", "redraw", "similarities"]

#: Layer kind (``LayerParams.op``) -> the canonical arrays that are redrawn.
#: BatchNorm's running statistics are kept: they are not learned by gradient
#: descent, and redrawing them would change the scale of every later layer.
RANDOMIZED: dict[str, tuple[str, ...]] = {
    "conv": ("weight", "bias"),
    "depthwise": ("weight", "bias"),
    "dense": ("weight", "bias"),
    "batchnorm": ("weight", "bias"),
}


def redraw(
    arrays: Mapping[str, np.ndarray], keys: Sequence[str], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """New values for ``keys`` of one layer's canonical arrays, drawn from ``rng``.

    Each array is replaced by independent normal draws with mean 0 and the
    original array's root mean square as standard deviation: the layer keeps
    its scale (activations neither explode nor vanish, so a map changes
    because the model changed, not because it saturated) and loses
    everything it learned. Keys are drawn in the order given; missing keys
    (a layer without a bias) are skipped.

    Args:
        arrays: canonical name -> array (PyTorch layout: ``"weight"``, ``"bias"``…).
        keys: which arrays to redraw, in a fixed order.
        rng: the generator (seed it per layer for reproducibility).

    Returns:
        name -> float32 array of the same shape, for the redrawn keys only.

    Example:
        >>> w = {"weight": np.full((2, 3), 0.5, np.float32), "bias": np.zeros(2, np.float32)}
        >>> new = redraw(w, ("weight", "bias"), np.random.default_rng(0))
        >>> new["weight"].shape, float(np.abs(new["bias"]).max())   # a zero bias stays zero
        ((2, 3), 0.0)
    """
    out: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in arrays:
            continue
        old = np.asarray(arrays[key], np.float64)
        rms = float(np.sqrt(np.mean(old * old))) if old.size else 0.0
        out[key] = (rng.standard_normal(old.shape) * rms).astype(np.float32)
    return out


def randomization_draws(
    params: Sequence[LayerParams], seed: int
) -> tuple[list[LayerParams], dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Which layers the sanity check randomizes, top first, and their new parameters.

    Layers are those with a kind in :data:`RANDOMIZED` and something to
    redraw, in the reverse of the model's order (the output layer first).
    Layer ``k`` of that order draws from ``np.random.default_rng([seed, k])``
    in the canonical (PyTorch) layout, then converts to the model's own
    layout: the same seed gives the same parameters in PyTorch and Keras.

    Args:
        params: every layer as the model's weights plugin reads it, model order.
        seed: the seed.

    Returns:
        ``(layers, trained, randomized)``: the layers top first, and for each
        layer name the native arrays to write back the trained values and to
        write the random ones (running statistics unchanged in both).
    """
    chosen = [p for p in params if p.op in RANDOMIZED and p.has_params][::-1]
    layers, trained, drawn = [], {}, {}
    for k, p in enumerate(chosen):
        canonical = to_canonical(p)
        new = redraw(canonical, RANDOMIZED[p.op], np.random.default_rng([int(seed), k]))
        if not new:
            continue
        layers.append(p)
        trained[p.name] = {key: np.array(v, copy=True) for key, v in p.arrays.items()}
        drawn[p.name] = from_canonical({**canonical, **new}, p)
    return layers, trained, drawn


def similarities(original: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rank correlation and SSIM of each map with the original, per image.

    Args:
        original: ``(N, H, W)`` maps of the trained model, in ``[0, 1]``.
        maps: ``(N, H, W)`` maps of the randomized model.

    Returns:
        ``(spearman, ssim)``, each float64 ``(N,)``. SSIM needs maps of at
        least 7x7 pixels; smaller maps give NaN SSIM.

    Example:
        >>> m = np.random.default_rng(0).random((2, 8, 8))
        >>> [v.round(6).tolist() for v in similarities(m, m)]
        [[1.0, 1.0], [1.0, 1.0]]
    """
    a = np.asarray(original, np.float64)
    b = np.asarray(maps, np.float64)
    rho = spearman(a, b)
    if a.ndim == 3 and min(a.shape[1:]) >= 7:
        s = ssim(a, b, data_range=1.0)
    else:
        s = np.full(len(a), np.nan)
    return rho, s


@dataclass
class Cascade:
    """One method's model-randomization check.

    Attributes:
        layers: the randomized layers, top (output) first.
        cascading_spearman, cascading_ssim: ``(L, N)``; row ``j`` compares
            each image's map after randomizing ``layers[: j + 1]`` with its
            original map.
        independent_spearman, independent_ssim: ``(L, N)``; row ``j`` after
            randomizing ``layers[j]`` alone (empty when not computed).
        original: the first image's original map ``(H, W)``, for pictures.
        cascade_maps: the first image's map after each cascading step ``(L, H, W)``.
    """

    layers: list[str]
    cascading_spearman: np.ndarray
    cascading_ssim: np.ndarray
    independent_spearman: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    independent_ssim: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    original: np.ndarray | None = None
    cascade_maps: np.ndarray | None = None

    @property
    def fully_randomized(self) -> np.ndarray:
        """Per-image Spearman correlation after every layer is randomized, ``(N,)``."""
        return self.cascading_spearman[-1]
