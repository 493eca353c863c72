"""Framework adapters, and the one registry that finds them.

This package is the only place in multiviz that imports a framework, and it
only ever considers a framework the caller has already imported: a model
object cannot exist without its framework's module in :data:`sys.modules`, so
looking there never imports anything new (the einops approach).

Each framework is a folder with the same file names — ``adapter`` (the
:class:`~multiviz.backends.contract.Backend`), ``layers``, ``inputs``,
``capture``, ``gradients``, ``state``, ``weights``, ``load``, ``builtin`` —
and :func:`plugin` is the only way in: ``plugin("torch", "load")`` is
:mod:`multiviz.backends.torch.load`, imported on first use, with a clear
error when the framework is not installed.

Keras is tried before PyTorch: a Keras 3 model on the torch backend is also an
``nn.Module``, and must still be handled as a Keras model.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

from multiviz.backends.contract import Backend, GradientResult, Target
from multiviz.errors import BackendUnavailableError, UnsupportedModelError

__all__ = [
    "EXTRAS",
    "PARTS",
    "Backend",
    "GradientResult",
    "Target",
    "backend_by_name",
    "get_backend",
    "plugin",
]

#: framework -> the pip extra that installs it
EXTRAS: dict[str, str] = {"torch": "torch", "keras": "tensorflow"}

#: the modules every framework folder has (Keras adds a few only it needs)
PARTS = (
    "adapter",
    "layers",
    "inputs",
    "capture",
    "gradients",
    "state",
    "weights",
    "load",
    "builtin",
    "builtin_vit",
    "tokens",
    "attention",
)

# framework -> (adapter class, top-level modules that mark a model as that framework's)
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "keras": ("KerasBackend", ("keras", "tf_keras")),
    "torch": ("TorchBackend", ("torch",)),
}
_PURPOSE = {
    "adapter": "The {framework} backend",
    "load": "Loading a {framework} model",
    "weights": "Reading the weights of a {framework} model",
    "builtin": "builtin_model({framework!r})",
    "builtin_vit": "builtin_model({framework!r}, arch='vit')",
}
_INSTANCES: dict[str, Backend] = {}
_BY_TYPE: dict[type, str] = {}


def plugin(framework: str, part: str) -> ModuleType:
    """The module ``part`` of ``framework``'s backend folder, imported on first use.

    Args:
        framework: ``"torch"`` or ``"keras"``.
        part: one of :data:`PARTS` (``"adapter"``, ``"load"``, ``"weights"``,
            ``"builtin"``…), or a module only that framework has
            (``plugin("keras", "resnet18")``).

    Raises:
        ValueError: an unknown framework or part.
        BackendUnavailableError: the framework is not installed; the message
            names the extra to install.

    Example:
        >>> plugin("torch", "load").__name__  # doctest: +SKIP
        'multiviz.backends.torch.load'
        >>> plugin("caffe", "load")
        Traceback (most recent call last):
        ...
        ValueError: `framework` must be one of ['keras', 'torch']. Received: framework='caffe'
    """
    if framework not in _REGISTRY:
        raise ValueError(
            f"`framework` must be one of {sorted(_REGISTRY)}. Received: framework={framework!r}"
        )
    name = f"{__name__}.{framework}.{part}"
    if not part.isidentifier() or importlib.util.find_spec(name) is None:
        raise ValueError(f"`part` must be one of {list(PARTS)}. Received: part={part!r}")
    try:
        return importlib.import_module(name)
    except ImportError as err:
        what = _PURPOSE.get(part, "The {framework} backend").format(framework=framework)
        raise BackendUnavailableError(
            f"{what} needs {framework} installed ({err}). "
            f"Install it with: pip install 'multiviz[{EXTRAS[framework]}]'"
        ) from err


def backend_by_name(name: str) -> Backend:
    """Return the adapter for ``"torch"`` or ``"keras"``, importing its framework.

    Raises:
        ValueError: an unknown framework.
        BackendUnavailableError: the framework is not installed; the message
            names the extra to install.

    Example:
        >>> backend_by_name("torch").name  # doctest: +SKIP
        'torch'
    """
    if name not in _INSTANCES:
        adapter = plugin(name, "adapter")
        _INSTANCES[name] = getattr(adapter, _REGISTRY[name][0])()
    return _INSTANCES[name]


def _roots(model: object) -> set[str]:
    return {c.__module__.split(".")[0] for c in type(model).__mro__}


def get_backend(model: Any) -> Backend:
    """Pick the adapter for ``model`` from its type; cached per type.

    Raises:
        UnsupportedModelError: no backend owns the model.

    Example:
        >>> get_backend(object())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.UnsupportedModelError: multiviz cannot use a model of type builtins.object: `model` must be ...
    """
    cls = type(model)
    if cls in _BY_TYPE:
        return backend_by_name(_BY_TYPE[cls])
    roots = _roots(model)
    for name, (_, markers) in _REGISTRY.items():
        if roots & set(markers) and any(m in sys.modules for m in markers):
            backend = backend_by_name(name)
            if backend.owns(model):
                _BY_TYPE[cls] = name
                return backend
    raise UnsupportedModelError(
        f"multiviz cannot use a model of type {cls.__module__}.{cls.__qualname__}: `model` must "
        "be a torch.nn.Module or a Keras 3 model (keras.Model / keras.Sequential).\n"
        "hint: load a saved file first: mv.load_model(path).model"
    )
