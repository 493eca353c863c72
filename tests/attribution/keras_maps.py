"""Every registered attribution method on the built-in CNN: the maps the Keras-backend parity compares.

``python -m tests.attribution.keras_maps`` (with PyTorch, TensorFlow and
Keras on TensorFlow) writes ``tests/data/keras_backend_maps.npz``: each method
of :data:`multiviz.attribution.explain.METHODS` (the one registry: a method
added there is compared from then on), computed by PyTorch and by Keras on
TensorFlow. The sessions ``keras_jax`` and ``keras_torch`` have no TensorFlow
(and ``keras_jax`` no PyTorch): they compare with this file. The ``both``
session recomputes both frameworks' maps and checks the file against them
(``test_reference_file_is_current``), so the file cannot drift from what the
two frameworks compute.

The inputs are the textured shapes of ``tests/attribution/test_parity.py``,
where float32 decides every gradient; methods that take gradients at many
points (SmoothGrad, Integrated Gradients) run on float64 builds of the same
weights (see that module's docstring for why).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import multiviz as mv
from multiviz.attribution.explain import METHODS
from tests import builtin_f64

PATH = Path(__file__).parent.parent / "data" / "keras_backend_maps.npz"
SEED, SIZE = 36, (48, 40)  # the inputs of tests/attribution/test_parity.py
#: methods taking gradients at points other than the images: float64 builds
MANY_POINTS = frozenset({"smoothgrad", "integrated_gradients"})
OPTIONS = {"layer": "relu3", "samples": 6, "steps": 12, "seed": 3}
TARGETS = ("top", "labels")


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """The images (channels first) and their labels."""
    return builtin_f64.textured_shapes(4, SIZE, SEED)


@contextlib.contextmanager
def float64_keras() -> Iterator[None]:
    """Keras computes in float64 inside the block (JAX: x64 switched on for it)."""
    import keras

    policy = keras.config.dtype_policy()
    with contextlib.ExitStack() as stack:
        if keras.backend.backend() == "jax":
            import jax

            stack.enter_context(jax.enable_x64(True))
        keras.config.set_dtype_policy("float64")
        stack.callback(keras.config.set_dtype_policy, policy)
        yield


def keras_model(float64: bool) -> Any:
    """The built-in CNN in Keras (on the process's backend), shipped weights."""
    if not float64:
        return mv.builtin_model("keras")
    from multiviz.backends.keras.builtin import build
    from multiviz.sources.builtin import builtin_weights

    with float64_keras():
        return build(builtin_weights())


def torch_model(float64: bool) -> Any:
    model = mv.builtin_model("torch")
    return model.double() if float64 else model


def method_maps(model: Any, x: np.ndarray, labels: np.ndarray, method: str) -> dict[str, Any]:
    """``{"top": maps, "labels": maps}`` of one method, through :func:`mv.explain`."""
    out = {}
    for target in TARGETS:
        chosen = None if target == "top" else labels
        out[target] = mv.explain(model, x, [method], target=chosen, **OPTIONS)[method]
    return out


def keras_maps(method: str) -> dict[str, np.ndarray]:
    """One method's maps from Keras on this process's backend."""
    images, labels = inputs()
    float64 = method in MANY_POINTS
    model = keras_model(float64)
    with float64_keras() if float64 else contextlib.nullcontext():
        return method_maps(model, mv.to_channels_last(images), labels, method)


def torch_maps(method: str) -> dict[str, np.ndarray]:
    images, labels = inputs()
    return method_maps(torch_model(method in MANY_POINTS), images, labels, method)


def key(framework: str, method: str, target: str) -> str:
    return f"{framework}/{method}/{target}"


def write(path: Path = PATH) -> None:
    """Compute every method with PyTorch and Keras on TensorFlow; save them."""
    import keras

    assert keras.backend.backend() == "tensorflow", "run with KERAS_BACKEND=tensorflow"
    arrays = {}
    for method in METHODS:
        for framework, fn in (("torch", torch_maps), ("tensorflow", keras_maps)):
            for target, maps in fn(method).items():
                arrays[key(framework, method, target)] = maps.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    import torch  # noqa: F401  - before TensorFlow (see tests/conftest.py)

    write()
    print(f"wrote {PATH}")
