"""The multiviz built-in CNN: a small trained model that ships with the package.

"multiviz built-in CNN" classifies the images of :mod:`multiviz.sources.shapes_dataset`
(circle, square, triangle, cross). It is defined identically in PyTorch and
Keras, with the same layer names —

    conv1 → relu1 → pool1 → conv2 → relu2 → pool2 → conv3 → relu3 → gap → fc

(3x3 "same" convolutions with 16, 32, 64 filters; 2x2 max pooling; global
average pooling; a 64→4 linear layer giving logits, no softmax). A 64x64 image
reaches conv3 at 16x16, fine enough for class activation maps to localize the
shape. The trained weights are one framework-neutral file,
``multiviz/data/builtin_cnn.npz``, in PyTorch layout, read with
``allow_pickle=False``. Tests, docs and examples use it: no download.

This module imports no framework; :func:`builtin_model` loads the requested
one through :mod:`multiviz.backends`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.backends import EXTRAS, plugin
from multiviz.errors import WeightsFileError
from multiviz.sources.shapes_dataset import CLASS_NAMES

__all__ = [
    "BUILTIN_CLASSES",
    "BUILTIN_INPUT_SIZE",
    "BUILTIN_WEIGHTS_PATH",
    "builtin_metadata",
    "builtin_model",
    "builtin_weights",
]

#: The class of each output logit.
BUILTIN_CLASSES: tuple[str, ...] = CLASS_NAMES
#: The image side the model was trained on (it accepts other sizes too).
BUILTIN_INPUT_SIZE: int = 64
#: Where the shipped weights live.
BUILTIN_WEIGHTS_PATH: Path = Path(__file__).parent.parent / "data" / "builtin_cnn.npz"

# PyTorch-layout parameter shapes: conv OIHW, linear (out, in)
WEIGHT_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (16, 3, 3, 3),
    "conv1.bias": (16,),
    "conv2.weight": (32, 16, 3, 3),
    "conv2.bias": (32,),
    "conv3.weight": (64, 32, 3, 3),
    "conv3.bias": (64,),
    "fc.weight": (4, 64),
    "fc.bias": (4,),
}
_META_KEY = "meta"  # a JSON string: accuracy, training set-up


#: The built-in architectures: ``"cnn"`` (this module) and ``"vit"`` (:mod:`multiviz.sources.builtin_vit`).
ARCHS = ("cnn", "vit")


def builtin_model(
    framework: str = "torch",
    weights: str | os.PathLike | None = "builtin",
    *,
    arch: str = "cnn",
) -> Any:
    """A multiviz built-in model (the CNN, or the ViT) in PyTorch or Keras, ready for inference.

    Args:
        framework: ``"torch"`` (an ``nn.Module`` taking ``(N, 3, H, W)``) or
            ``"keras"`` (a Functional ``keras.Model`` taking ``(N, H, W, 3)``).
            Both have the same layer names and, with the same weights, give
            the same outputs.
        weights: ``"builtin"`` for the shipped trained weights, ``None`` for
            the framework's random initialisation, or the path of an ``.npz``
            file with PyTorch-layout arrays keyed ``"conv1.weight"``,
            ``"conv1.bias"``, …, ``"fc.bias"`` (for the ViT: its
            ``state_dict`` keys, see :func:`multiviz.sources.builtin_vit.vit_weight_shapes`).
        arch: ``"cnn"`` (keyword only) for the built-in CNN, ``"vit"`` for the
            built-in ViT (:mod:`multiviz.sources.builtin_vit`: 64x64 inputs, 8x8
            patches, 4 blocks; the same layer names in both frameworks).

    Returns:
        The model; a PyTorch model is in eval mode.

    Raises:
        ValueError: ``framework`` is not ``"torch"`` or ``"keras"``, or ``arch``
            is not ``"cnn"`` or ``"vit"``.
        BackendUnavailableError: that framework is not installed (the message
            names the ``pip install`` command).
        WeightsFileError: the weights file is missing or its arrays do not fit.

    Example:
        >>> import multiviz as mv
        >>> from multiviz.sources.builtin import BUILTIN_CLASSES
        >>> model = mv.builtin_model("torch")                       # doctest: +SKIP
        >>> logits = mv.forward(model, mv.sample_image(label="cross")[None])  # doctest: +SKIP
        >>> BUILTIN_CLASSES[int(logits.argmax())]                   # doctest: +SKIP
        'cross'
    """
    if framework not in EXTRAS:
        raise ValueError(
            f"`framework` must be one of {sorted(EXTRAS)}. Received: framework={framework!r}"
        )
    if arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {ARCHS}. Received: arch={arch!r}")
    if arch == "vit":
        from multiviz.sources.builtin_vit import vit_weights

        arrays = None if weights is None else vit_weights(weights)
        return plugin(framework, "builtin_vit").build(arrays)
    arrays = None if weights is None else builtin_weights(weights)
    module = plugin(framework, "builtin")
    return module.build(arrays)


def builtin_weights(weights: str | os.PathLike = "builtin") -> dict[str, np.ndarray]:
    """The built-in model's parameters as float32 NumPy arrays in PyTorch layout.

    Args:
        weights: ``"builtin"`` for the shipped file, or a path to an ``.npz``.

    Returns:
        ``{"conv1.weight": (16, 3, 3, 3) array, "conv1.bias": (16,), …}``.

    Raises:
        WeightsFileError: the file is missing, unreadable, or an array is
            absent or has the wrong shape.

    Example:
        >>> w = builtin_weights()
        >>> w["conv1.weight"].shape, w["fc.weight"].shape
        ((16, 3, 3, 3), (4, 64))
    """
    path = _path(weights)
    with _open(path) as npz:
        missing = [k for k in WEIGHT_SHAPES if k not in npz.files]
        if missing:
            raise WeightsFileError(
                f"{str(path)!r} lacks {missing}. A built-in model weights file needs "
                f"{list(WEIGHT_SHAPES)} (PyTorch layout); write one with scripts/train_builtin.py."
            )
        try:
            arrays = {k: np.asarray(npz[k], np.float32) for k in WEIGHT_SHAPES}
        except (ValueError, TypeError) as err:  # object arrays need pickle: refused
            raise WeightsFileError(
                f"{str(path)!r} holds arrays that are not plain numbers ({err}). "
                "Save float arrays with np.savez."
            ) from err
    wrong = {k: a.shape for k, a in arrays.items() if a.shape != WEIGHT_SHAPES[k]}
    if wrong:
        expected = {k: WEIGHT_SHAPES[k] for k in wrong}
        raise WeightsFileError(
            f"{str(path)!r} has arrays of the wrong shape: {wrong}. Expected {expected} "
            "(PyTorch layout: conv OIHW, linear (out, in))."
        )
    return arrays


def builtin_metadata(
    weights: str | os.PathLike = "builtin", *, arch: str = "cnn"
) -> dict[str, Any]:
    """How the weights were trained: held-out accuracy, data, epochs, seeds.

    ``arch="vit"`` reads the built-in ViT's file (``weights="builtin"``).

    Returns:
        The JSON metadata stored in the weights file (empty if it has none).

    Example:
        >>> builtin_metadata()["heldout_accuracy"] >= 0.95
        True
    """
    if arch == "vit" and str(weights) == "builtin":
        from multiviz.sources.builtin_vit import VIT_WEIGHTS_PATH

        weights = VIT_WEIGHTS_PATH
    with _open(_path(weights)) as npz:
        if _META_KEY not in npz.files:
            return {}
        return json.loads(str(npz[_META_KEY]))


def _path(weights: str | os.PathLike) -> Path:
    return BUILTIN_WEIGHTS_PATH if str(weights) == "builtin" else Path(weights)


def _open(path: Path) -> Any:
    if not path.is_file():
        raise WeightsFileError(
            f"Weights file not found: {str(path)!r}. Pass weights='builtin' for the shipped "
            "weights, None for random ones, or the path of an existing .npz file."
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise WeightsFileError(
            f"Cannot read {str(path)!r} as an .npz weights file without pickle ({err})."
        ) from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightsFileError(
            f"{str(path)!r} holds one array, not an .npz of named arrays. Save the weights "
            "with np.savez(path, **{'conv1.weight': ..., ...})."
        )
    return npz
