"""The two framework folders hold the same file names, so a fix on one side is checkable on the other.

Read from the file system: no framework is imported (this runs in every session).
"""

from __future__ import annotations

from pathlib import Path

from multiviz.backends import PARTS

BACKENDS = Path(__file__).resolve().parent.parent.parent / "multiviz" / "backends"


def _modules(folder: str) -> set[str]:
    return {p.stem for p in (BACKENDS / folder).glob("*.py")}


def test_torch_and_keras_have_every_shared_file() -> None:
    shared = {"__init__", *PARTS}
    assert shared == {
        "__init__", "adapter", "layers", "inputs", "capture", "gradients", "state", "weights", "load", "builtin",
        "builtin_vit", "tokens", "attention",
    }  # fmt: skip
    assert shared <= _modules("torch"), sorted(shared - _modules("torch"))
    assert shared <= _modules("keras"), sorted(shared - _modules("keras"))


def test_only_keras_adds_files_and_only_those_it_needs() -> None:
    assert _modules("torch") - _modules("keras") == set()
    # the gradient code of each Keras backend (keras/gradients.py dispatches to
    # one file per backend: TensorFlow, its fast sub-model path, JAX, torch)
    # and a Keras twin of torchvision's ResNet-18
    assert _modules("keras") - _modules("torch") == {
        "gradients_tf",
        "gradients_tf_fast",
        "gradients_jax",
        "gradients_torch",
        "resnet18",
    }


def test_no_framework_prefix_stands_in_for_a_folder() -> None:
    # beside the folders only what both frameworks share: the contract, the
    # per-model lock and undo stack (guard), the bounded per-model cache, the
    # hand-back of freed framework memory during large captures
    shared = ("__init__", "contract", "guard", "cache", "memory")
    stray = sorted(p.name for p in BACKENDS.glob("*.py") if p.stem not in shared)
    assert stray == []
