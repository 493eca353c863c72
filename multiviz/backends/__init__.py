"""Framework adapters, and the registry that picks one from a model's type.

This package is the only place in multiviz that imports a framework, and it
only ever considers a framework the caller has already imported: a model
object cannot exist without its framework's module in :data:`sys.modules`, so
looking there never imports anything new (the einops approach).

Keras is tried before PyTorch: a Keras 3 model on the torch backend is also an
``nn.Module``, and must still be handled as a Keras model.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from multiviz.backends.base import Backend, GradientResult, Target
from multiviz.errors import BackendUnavailableError, UnsupportedModelError

__all__ = [
    "EXTRAS",
    "Backend",
    "GradientResult",
    "Target",
    "backend_by_name",
    "get_backend",
    "import_backend_module",
]

#: framework -> the pip extra that installs it
EXTRAS: dict[str, str] = {"torch": "torch", "keras": "tensorflow"}

# name -> (module with the adapter, class name, top-level modules that mark a model as ours)
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "keras": ("multiviz.backends.keras", "KerasBackend", ("keras", "tf_keras")),
    "torch": ("multiviz.backends.torch", "TorchBackend", ("torch",)),
}
_INSTANCES: dict[str, Backend] = {}
_BY_TYPE: dict[type, str] = {}


def _roots(model: object) -> set[str]:
    return {c.__module__.split(".")[0] for c in type(model).__mro__}


def backend_by_name(name: str) -> Backend:
    """Return the adapter for ``"torch"`` or ``"keras"``, importing its framework.

    Raises:
        BackendUnavailableError: the framework is not installed; the message
            names the extra to install.

    Example:
        >>> backend_by_name("torch").name  # doctest: +SKIP
        'torch'
    """
    if name not in _REGISTRY:
        raise ValueError(f"`framework` must be one of {sorted(_REGISTRY)}. Received: {name!r}")
    if name not in _INSTANCES:
        module_name, cls_name, _ = _REGISTRY[name]
        module = import_backend_module(module_name, name, f"The {name} backend")
        _INSTANCES[name] = getattr(module, cls_name)()
    return _INSTANCES[name]


def import_backend_module(module: str, framework: str, what: str) -> Any:
    """Import a module of :mod:`multiviz.backends` that needs ``framework``.

    Raises:
        BackendUnavailableError: the framework is missing; the message says
            ``"<what> needs <framework> installed"`` and names the extra.

    Example:
        >>> import_backend_module("multiviz.backends.base", "torch", "The base").__name__
        'multiviz.backends.base'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{what} needs {framework} installed ({err}). "
            f"Install it with: pip install 'multiviz[{EXTRAS[framework]}]'"
        ) from err


def get_backend(model: Any) -> Backend:
    """Pick the adapter for ``model`` from its type; cached per type.

    Raises:
        UnsupportedModelError: no backend owns the model.

    Example:
        >>> get_backend(object())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.UnsupportedModelError: multiviz cannot use a model of type builtins.object. Supported: ...
    """
    cls = type(model)
    if cls in _BY_TYPE:
        return backend_by_name(_BY_TYPE[cls])
    roots = _roots(model)
    for name, (_, _, markers) in _REGISTRY.items():
        if roots & set(markers) and any(m in sys.modules for m in markers):
            backend = backend_by_name(name)
            if backend.owns(model):
                _BY_TYPE[cls] = name
                return backend
    raise UnsupportedModelError(
        f"multiviz cannot use a model of type {cls.__module__}.{cls.__qualname__}. "
        "Supported: a torch.nn.Module, or a Keras 3 model (keras.Model / keras.Sequential). "
        "For a saved file, load it first (torch.load / keras.saving.load_model)."
    )
