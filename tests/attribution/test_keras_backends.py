"""Every attribution method gives the same maps on each Keras backend, in TensorFlow and in PyTorch.

The matrix runs this module once per Keras backend — the ``tensorflow``
session on TensorFlow, ``keras_jax`` on JAX, ``keras_torch`` on torch (a Keras
backend is fixed when keras is imported: one per process). The methods come
from the one registry, :data:`multiviz.attribution.explain.METHODS`. The
maps of the built-in CNN on this backend are compared with the maps PyTorch
and Keras-on-TensorFlow compute for the same weights and inputs, kept in
``tests/data/keras_backend_maps.npz`` (``tests/attribution/keras_maps.py``
writes it; the ``both`` session checks it against both frameworks live).
Inputs and precision are chosen so the answer is well defined (see
``tests/attribution/test_parity.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.attribution.explain import METHODS
from tests.attribution import keras_maps

pytestmark = pytest.mark.keras

ATOL = 1e-4  # DESIGN.md: maps scaled to [0, 1]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(keras_maps.PATH, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_matches_tensorflow_and_torch(reference, method):
    import keras

    missing = [k for k in (keras_maps.key("torch", method, "top"),) if k not in reference]
    assert not missing, (
        f"{method!r} is registered but has no reference maps: regenerate them with "
        "`python -m tests.attribution.keras_maps` (PyTorch and TensorFlow installed)"
    )
    got = keras_maps.keras_maps(method)
    for target, maps in got.items():
        assert maps.shape == (4, *keras_maps.SIZE) and maps.max() > 0.5
        for framework in ("tensorflow", "torch"):
            np.testing.assert_allclose(
                maps,
                reference[keras_maps.key(framework, method, target)],
                atol=ATOL,
                err_msg=f"{method}, target={target}: Keras on {keras.backend.backend()} "
                f"vs {framework}",
            )


@pytest.mark.both
@pytest.mark.tensorflow
@pytest.mark.slow
def test_reference_file_is_current(reference):
    """The stored maps are what PyTorch and Keras on TensorFlow compute now."""
    assert {k.split("/")[1] for k in reference} >= set(METHODS)
    for method in METHODS:
        for framework, fn in (
            ("torch", keras_maps.torch_maps),
            ("tensorflow", keras_maps.keras_maps),
        ):
            for target, maps in fn(method).items():
                np.testing.assert_allclose(
                    maps, reference[keras_maps.key(framework, method, target)], atol=ATOL
                )
