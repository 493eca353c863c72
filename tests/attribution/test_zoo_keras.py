"""The model zoo's check (scripts/zoo.py) on our Keras ViT and a tiny Keras CNN.

The script's Keras reference is Grad-CAM written out with a sub-model and
``tf.GradientTape`` at the layer multiviz chose (tokens folded on the grid the
script reads from the patch embedding's strides, the logits taken before the
final softmax); these run it on two tiny models, so the script keeps working
where the full zoo (``python scripts/zoo.py --family keras``) is not run.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.zoo_script import loaded

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.keras, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def zoo():
    yield from loaded("zoo_script_keras")


def test_our_keras_vit_with_registers_non_square(zoo):
    """Class token + 3 registers, 6x10 patches: the last block's first norm, a token map."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the script's Keras reference uses tf.GradientTape")
    spec = zoo.Spec("builtin_vit", (24, 40), {"patch": 4, "registers": 3})
    row = zoo.run_one("keras", spec, zoo.TOL)
    assert (row.layer, row.kind, row.shape) == ("blocks.1.norm1", "token map", "64x16"), row
    assert row.status == "ok", row


def test_a_keras_cnn_ending_in_softmax(zoo, monkeypatch):
    """A functional CNN whose last layer is a softmax Activation: the logits are its input."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the script's Keras reference uses tf.GradientTape")

    def build(spec):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((*spec.hw, 3))
        h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
        h = keras.layers.Conv2D(6, 3, strides=2, name="conv2")(h)
        h = keras.layers.Activation("relu", name="relu2")(h)
        h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
        h = keras.layers.Dense(3, name="logits")(h)
        return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(h))

    monkeypatch.setattr(zoo, "build_keras", build)
    row = zoo.run_one("keras", zoo.Spec("tiny", (12, 18)), zoo.TOL)
    assert (row.layer, row.kind, row.shape) == ("relu2", "channels-last map", "4x7x6"), row
    assert row.status == "ok", row
    assert np.isfinite(row.signed_diff) and row.signed_diff <= zoo.SIGNED_TOL
