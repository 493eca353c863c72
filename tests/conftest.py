"""Shared test set-up: framework detection, markers, import order, and the fixtures every suite uses.

Import order matters with torch's CUDA build: importing TensorFlow before
torchvision / torch._dynamo can segfault the process, so torch and
torchvision are imported first here, before any test module can import keras.

Markers say what a test needs: ``torch``; ``keras`` (Keras 3 on whichever
backend KERAS_BACKEND names — TensorFlow by default, JAX in the ``keras_jax``
session, torch in ``keras_torch``); ``tensorflow`` (TensorFlow itself: its
APIs, or Keras on TensorFlow); ``both`` (PyTorch and Keras); ``jax`` (JAX).
A test is skipped when what it needs is missing — unless the nox session asked
for it through MULTIVIZ_REQUIRE (the same words), in which case the run fails
instead of skipping. A Keras backend is fixed when keras is imported: one
backend per process.

A test that takes the ``framework`` fixture runs once per framework, each run
marked with its framework (so the torch session runs the torch half and the
tensorflow session the keras half): it receives a kit of
``tests/frameworks.py``, the same small models built in either framework.
The built-in model (``builtin``, per framework) and a batch of shape images
(``shapes``: non-square, channels first) are defined here once.
"""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
#: the framework Keras runs on in this process
KERAS_BACKEND = os.environ["KERAS_BACKEND"]
HAS_KERAS = importlib.util.find_spec("keras") is not None and (
    importlib.util.find_spec(KERAS_BACKEND) is not None
)

if HAS_TORCH:  # before TensorFlow, always (see module docstring)
    import torch  # noqa: F401

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision  # noqa: F401

HAS_JAX = importlib.util.find_spec("jax") is not None  # Keras 3 on its JAX backend
# Ray Data, for mv.scan(engine="ray"): ray with pandas and pyarrow
HAS_RAY = all(importlib.util.find_spec(m) is not None for m in ("ray", "pandas", "pyarrow"))

# Quantus: the reference implementation the torch session installs (tests/evaluation)
HAS_QUANTUS = importlib.util.find_spec("quantus") is not None

# pytorch-grad-cam and torchcam: the CAM peers the torch session installs (their equality tests)
HAS_PEERS = all(importlib.util.find_spec(m) is not None for m in ("pytorch_grad_cam", "torchcam"))

AVAILABLE = {
    "torch": HAS_TORCH,
    "keras": HAS_KERAS,
    "tensorflow": HAS_TENSORFLOW,
    "jax": HAS_JAX,
    "quantus": HAS_QUANTUS,
    "ray": HAS_RAY,
    "peers": HAS_PEERS,
}


def pytest_configure(config: pytest.Config) -> None:
    required = os.environ.get("MULTIVIZ_REQUIRE", "")
    missing = [f for f in required.split(",") if f in AVAILABLE and not AVAILABLE[f]]
    if missing:
        raise pytest.UsageError(
            f"This session requires {missing} (MULTIVIZ_REQUIRE={required!r}) but it is not installed."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        optional = ("torch", "keras", "tensorflow", "jax", "quantus", "ray", "peers")
        needs = {m.name for m in item.iter_markers()} & {*optional, "both"}
        if "both" in needs:
            needs |= {"torch", "keras"}
        absent = [f for f in optional if f in needs and not AVAILABLE[f]]
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


# --------------------------------------------------------------------------- fixtures shared by the suites


@pytest.fixture(
    params=[
        pytest.param("torch", marks=pytest.mark.torch, id="torch"),
        pytest.param("keras", marks=pytest.mark.keras, id="keras"),
    ]
)
def framework(request: pytest.FixtureRequest):
    """One run per framework: the kit of ``tests/frameworks.py`` for it."""
    from tests.frameworks import kit

    return kit(request.param)


@pytest.fixture(scope="session")
def builtin_torch():
    """The built-in CNN in PyTorch, shipped weights (eval mode)."""
    import multiviz as mv

    return mv.builtin_model("torch")


@pytest.fixture(scope="session")
def builtin_keras():
    """The built-in CNN in Keras, shipped weights."""
    import multiviz as mv

    return mv.builtin_model("keras")


@pytest.fixture
def builtin(framework, request: pytest.FixtureRequest):
    """The built-in CNN of the framework under test (shared: copy it before changing it)."""
    return request.getfixturevalue(f"builtin_{framework.name}")


@pytest.fixture(scope="session")
def shapes():
    """Three images of the shapes data set, (3, 3, 32, 40) channels first, with their labels and boxes."""
    import multiviz as mv

    return mv.shapes_dataset(3, size=(32, 40), seed=5)
