"""Shared test set-up: framework detection, markers and import order.

Import order matters with torch's CUDA build: importing TensorFlow before
torchvision / torch._dynamo can segfault the process, so torch and
torchvision are imported first here, before any test module can import keras.

A test marked ``torch``, ``keras``, ``both`` or ``jax`` is skipped when its framework is
missing — unless the nox session asked for that framework through
MULTIVIZ_REQUIRE, in which case the run fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_KERAS = (
    importlib.util.find_spec("keras") is not None
    and importlib.util.find_spec("tensorflow") is not None
)

if HAS_TORCH:  # before TensorFlow, always (see module docstring)
    import torch  # noqa: F401

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision  # noqa: F401

HAS_JAX = importlib.util.find_spec("jax") is not None  # Keras 3 on its JAX backend

AVAILABLE = {"torch": HAS_TORCH, "keras": HAS_KERAS, "jax": HAS_JAX}


def pytest_configure(config: pytest.Config) -> None:
    required = os.environ.get("MULTIVIZ_REQUIRE", "")
    missing = [f for f in required.split(",") if f in AVAILABLE and not AVAILABLE[f]]
    if missing:
        raise pytest.UsageError(
            f"This session requires {missing} (MULTIVIZ_REQUIRE={required!r}) but it is not installed."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        needs = {m.name for m in item.iter_markers()} & {"torch", "keras", "both", "jax"}
        if "both" in needs:
            needs |= {"torch", "keras"}
        absent = [f for f in ("torch", "keras", "jax") if f in needs and not AVAILABLE[f]]
        if absent:
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(absent)} (not installed)"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np

    np.random.seed(0)  # noqa: NPY002 - for tests that use the legacy global generator
    if HAS_TORCH:
        import torch

        torch.manual_seed(0)
