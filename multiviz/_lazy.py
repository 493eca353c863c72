"""PEP 562 lazy attribute loading for the package namespace.

``import multiviz`` stays cheap: it imports NumPy-free stubs only, and each
public name is resolved from its home module on first use. No framework is
imported until a backend is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """Return a module ``__getattr__`` that imports ``table[name]`` on demand."""

    def __getattr__(name: str) -> object:
        try:
            module_name = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(f"{package}.{module_name}")
        return getattr(module, name)

    return __getattr__
