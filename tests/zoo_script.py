"""``scripts/zoo.py`` loaded as a module, for the tests that run its check on tiny models."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parents[1] / "scripts" / "zoo.py"


def loaded(name: str) -> Iterator[ModuleType]:
    """Yield the script as module ``name``; registered while in use (its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
