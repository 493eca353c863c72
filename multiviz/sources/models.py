"""Loading a model from a command-line style spec, without importing a framework here.

A spec names where a model comes from:

==========================  ==============================================================
``builtin``                 the multiviz built-in CNN (``framework="torch"`` or ``"keras"``)
``builtin-vit``             the multiviz built-in ViT (``framework="torch"`` or ``"keras"``)
``torchvision:NAME``        ``torchvision.models.NAME`` (``weights``: none / default / PATH)
``keras:NAME``              ``keras.applications.NAME`` (``weights``: none / default / PATH)
``model.keras``, ``.h5``    a saved Keras model (``safe_mode=True``)
``model.pt2``               a ``torch.export`` program
``model.pt`` / ``.pth``     a TorchScript archive, or a state dict together with ``arch``
==========================  ==============================================================

This module only parses specs and looks inside files (a ``.pt`` is a zip
archive whose entries say what it holds); loading itself happens in
:mod:`multiviz.backends.torch.load` and :mod:`multiviz.backends.keras.load`,
the only places that import a framework for it. Nothing here runs pickled code
from a file unless ``unsafe=True``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from multiviz.backends import EXTRAS, plugin
from multiviz.core.params import names_parameters
from multiviz.errors import BackendUnavailableError, ModelLoadError
from multiviz.sources.images import Preprocess

__all__ = [
    "KERAS_SUFFIXES",
    "TORCH_SUFFIXES",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "parse_spec",
]

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pt", ".pth", ".pt2")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        kind: ``"builtin"``, ``"torchvision"``, ``"keras_app"``, ``"keras_file"``,
            ``"torch_export"``, ``"torchscript"``, ``"torch_pickle"``.
        framework: ``"torch"`` or ``"keras"``.
        name: the architecture name (``"resnet18"``) or the file path.
        text: the spec as the user wrote it.

    Example:
        >>> parse_spec("torchvision:resnet18")
        ModelSpec(kind='torchvision', framework='torch', name='resnet18', text='torchvision:resnet18')
    """

    kind: str
    framework: str
    name: str
    text: str


@dataclass
class LoadedModel:
    """A model ready to use, with what is known about how to feed it.

    Attributes:
        model: the ``torch.nn.Module`` or Keras model (inference mode).
        framework: ``"torch"`` or ``"keras"``.
        spec: the spec it was loaded from.
        preprocess: the preprocessing preset for this model family.
        input_shape: one sample's input shape in the framework's layout
            (``None`` for a free axis) where the model fixes it, else ``None``.
        class_names: the name of each output class, where known.
        notes: facts about the loading worth telling the user.
        capturable: False when the model cannot expose its inner layers
            (TorchScript); only its output can be used.
    """

    model: Any
    framework: str
    spec: ModelSpec
    preprocess: Preprocess
    input_shape: tuple[int | None, ...] | None = None
    class_names: Sequence[str] | None = None
    notes: list[str] = field(default_factory=list)
    capturable: bool = True

    def __post_init__(self) -> None:
        # a model that takes one channel is fed luminance (ITU-R BT.601), in every command
        shape = self.input_shape
        if shape is not None and len(shape) == 3 and self.preprocess.channels == 3:
            last = self.preprocess.layout == "channels_last"
            if (shape[-1] if last else shape[0]) == 1:
                self.preprocess = replace(self.preprocess, channels=1)

    @property
    def description(self) -> str:
        """One line: ``'torchvision:resnet18 (torch)'``."""
        return f"{self.spec.text} ({self.framework})"

    def __repr__(self) -> str:
        shape = (
            "?"
            if self.input_shape is None
            else "x".join("?" if d is None else str(d) for d in self.input_shape)
        )
        lines = [
            f"LoadedModel({self.description}, {type(self.model).__name__}, input {shape})",
            f"  preprocessing: {self.preprocess.describe()}",
        ]
        if self.class_names is not None:
            lines.append(f"  classes: {len(self.class_names):,}")
        lines += [f"  note: {n}" for n in self.notes[:3]]
        return "\n".join(lines)


def parse_spec(spec: str, framework: str | None = None) -> ModelSpec:
    """Parse a model spec; a file's kind is read from its extension and contents.

    Args:
        spec: see the module docstring.
        framework: for ``builtin`` only: ``"torch"`` or ``"keras"``; ``None``
            picks torch when it is installed, else keras.

    Raises:
        ModelLoadError: unknown prefix, missing file, or an extension no
            loader handles (the message lists the valid forms).

    Example:
        >>> parse_spec("builtin", framework="keras").framework
        'keras'
        >>> parse_spec("model.onnx")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ModelLoadError: Model file not found: 'model.onnx'...
    """
    if framework is not None and framework not in EXTRAS:
        raise ModelLoadError(
            f"`framework` (--framework) must be one of {sorted(EXTRAS)}. Received: {framework!r}"
        )
    if spec in ("builtin", "builtin-vit"):
        return ModelSpec("builtin", framework or _default_framework(), spec, spec)
    prefix, sep, name = spec.partition(":")
    if sep and prefix in ("torchvision", "keras") and not Path(spec).exists():
        if not name:
            raise ModelLoadError(
                f"{spec!r} names no model. Write it as {prefix}:NAME, e.g. {_EXAMPLE[prefix]}."
            )
        if prefix == "torchvision":
            return ModelSpec("torchvision", "torch", name, spec)
        return ModelSpec("keras_app", "keras", name, spec)
    if sep and len(prefix) > 1 and not Path(spec).exists():
        raise ModelLoadError(
            f"Unknown model source {prefix!r} in `spec`: builtin, builtin-vit, torchvision:NAME, "
            f"keras:NAME or a saved file. Received: spec={spec!r}" + _VALID_SPECS
        )
    return _parse_file(Path(spec), spec)


_EXAMPLE = {"torchvision": "torchvision:resnet18", "keras": "keras:MobileNetV2"}
_VALID_SPECS = (  # the hint line after a model-spec error (DESIGN.md's error format)
    "\nhint: a model is one of builtin, builtin-vit, torchvision:NAME, keras:NAME, or a file: "
    ".keras/.h5 (Keras), .pt2 (torch.export), .pt/.pth (TorchScript, or a state dict with --arch)"
)


def _parse_file(path: Path, text: str) -> ModelSpec:
    suffix = path.suffix.lower()
    if not path.exists():
        raise ModelLoadError(f"Model file not found: {text!r}. Check the path." + _VALID_SPECS)
    if path.is_dir():
        raise ModelLoadError(
            f"{text!r} is a folder, not a model file (TensorFlow SavedModel folders are not "
            "supported). Save the model with model.save('model.keras')." + _VALID_SPECS
        )
    if suffix in KERAS_SUFFIXES:
        return ModelSpec("keras_file", "keras", str(path), text)
    if suffix in TORCH_SUFFIXES:
        return ModelSpec(_torch_file_kind(path), "torch", str(path), text)
    raise ModelLoadError(
        f"Cannot load {text!r}: the extension {suffix or '(none)'!r} is not a model format "
        f"multiviz reads ({', '.join(KERAS_SUFFIXES + TORCH_SUFFIXES)})." + _VALID_SPECS
    )


def _torch_file_kind(path: Path) -> str:
    """Tell a torch.export program, a TorchScript archive and a torch.save pickle apart."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":  # pickle protocol marker: torch.save's legacy format
            return "torch_pickle"
        raise ModelLoadError(
            f"{str(path)!r} is not a PyTorch file (not a zip archive, not a pickle): it may be "
            "corrupt or of another format. Save it with torch.save, torch.jit.save or torch.export.save."
        )
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.namelist()
    except zipfile.BadZipFile as err:
        raise ModelLoadError(
            f"{str(path)!r} is a corrupt archive ({err}). Save the model again."
        ) from err
    inner = {e.split("/", 1)[1] if "/" in e else e for e in entries}
    if "archive_format" in inner or any(e.startswith("models/") for e in inner):
        return "torch_export"
    if "constants.pkl" in inner or any(e.startswith("code/") for e in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "torch_pickle"
    raise ModelLoadError(
        f"{str(path)!r} is a zip archive but not one PyTorch wrote. Save the model with "
        "torch.save(model.state_dict(), ...), torch.jit.save or torch.export.save."
    )


@names_parameters
def load_model(
    spec: str | ModelSpec,
    *,
    framework: str | None = None,
    weights: str = "default",
    arch: str | None = None,
    unsafe: bool = False,
) -> LoadedModel:
    """Load a model from a spec (see the module docstring).

    Args:
        spec: the spec string, or a parsed :class:`ModelSpec`.
        framework: for ``builtin``: ``"torch"`` or ``"keras"``.
        weights: for ``torchvision:``/``keras:`` models: ``"none"`` (random),
            ``"default"`` (the pretrained weights; downloads unless cached) or a
            path to a weights file (a state dict for torchvision, a
            ``.weights.h5`` for Keras). For ``builtin``: ``"default"`` (the
            shipped weights), ``"none"``, or an ``.npz`` path.
        arch: for a state-dict file: the architecture its parameters belong
            to, ``"torchvision:NAME"`` or ``"builtin"``.
        unsafe: allow loading files whose loading runs code stored in them
            (a whole model pickled with ``torch.save(model)``, a Keras
            ``Lambda`` layer). Only for files you trust.

    Returns:
        A :class:`LoadedModel`.

    Raises:
        ModelLoadError: a bad spec or file; UnsafeFileError when only
            ``unsafe=True`` would load it.
        NoNetworkError: pretrained weights could not be downloaded.
        BackendUnavailableError: the framework is not installed.

    Example:
        >>> load_model("builtin", framework="torch").framework  # doctest: +SKIP
        'torch'
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be 'default', 'none' or a path to a weights file. "
            f"Received: weights={weights!r:.60}"
        )
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec, framework)
    if arch is not None and parsed.kind != "torch_pickle":
        raise ModelLoadError(
            f"`arch` (--arch) is only for a state-dict file (.pt/.pth); {parsed.text!r} is a "
            f"{_KIND_WORDS[parsed.kind]}. Drop --arch."
        )
    if weights != "default" and parsed.kind not in ("torchvision", "keras_app", "builtin"):
        raise ModelLoadError(
            f"`weights` (--weights) is only for builtin, torchvision:NAME and keras:NAME models; "
            f"{parsed.text!r} is a {_KIND_WORDS[parsed.kind]} that holds its own weights. Drop --weights."
        )
    if weights not in ("none", "default") and not Path(weights).is_file():
        raise ModelLoadError(
            f"Weights file not found: {weights!r}. Pass --weights none, --weights default, "
            "or the path of an existing weights file."
        )
    loader = plugin(parsed.framework, "load")
    return loader.load(parsed, weights=weights, arch=arch, unsafe=unsafe)


def builtin_arch(spec: ModelSpec) -> str:
    """``builtin_model``'s ``arch=`` for a ``builtin`` / ``builtin-vit`` spec.

    Example:
        >>> builtin_arch(parse_spec("builtin-vit", framework="torch"))
        'vit'
    """
    return "vit" if spec.name == "builtin-vit" else "cnn"


def builtin_weights(weights: str) -> str | None:
    """``builtin_model``'s ``weights=`` for a ``--weights`` value of the built-in model.

    ``"default"`` is the shipped file, ``"none"`` random weights; anything else
    is an ``.npz`` path, passed on.

    Example:
        >>> builtin_weights("default"), builtin_weights("none"), builtin_weights("w.npz")
        ('builtin', None, 'w.npz')
    """
    return {"default": "builtin", "none": None}.get(weights, weights)


_KIND_WORDS = {
    "builtin": "built-in model",
    "torchvision": "torchvision model",
    "keras_app": "keras.applications model",
    "keras_file": "saved Keras model",
    "torch_export": "torch.export program",
    "torchscript": "TorchScript archive",
    "torch_pickle": "torch.save file",
}


def _default_framework() -> str:
    if importlib.util.find_spec("torch") is not None:
        return "torch"
    if importlib.util.find_spec("keras") is not None:
        return "keras"
    raise BackendUnavailableError(
        "The built-in model needs PyTorch or Keras installed. "
        "Install one with: pip install 'multiviz[torch]' or pip install 'multiviz[tensorflow]'"
    )
