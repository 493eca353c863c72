"""`import multiviz` must import no framework (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import multiviz",
        "import multiviz as mv; mv.normalize; mv.montage; mv.aggregate; mv.plot_feature_maps",
        "import multiviz as mv; mv.capture; mv.layers; mv.grad_cam; mv.compare",
    ],
)
def test_import_loads_no_framework(code: str) -> None:
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in FRAMEWORKS}


def test_public_names_resolve() -> None:
    import multiviz as mv

    missing = [n for n in mv.__all__ if not hasattr(mv, n)]
    assert not missing, f"names in __all__ that do not resolve: {missing}"


def test_unknown_attribute_is_attribute_error() -> None:
    import multiviz as mv

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mv.nope  # noqa: B018


def test_unsupported_model_names_supported_types() -> None:
    import multiviz as mv

    with pytest.raises(mv.UnsupportedModelError, match=r"torch\.nn\.Module.*Keras 3"):
        mv.capture([1, 2, 3], None)


def test_submodule_imports_never_shadow_public_functions() -> None:
    # `import multiviz.<module>` binds the module as a package attribute; no
    # module may share its name with a public function, or mv.<name> breaks.
    code = (
        "import importlib, pkgutil, inspect, multiviz as mv\n"
        "for m in pkgutil.walk_packages(mv.__path__, 'multiviz.'):\n"
        "    if '.backends' not in m.name and not m.name.endswith(('__main__', 'cli')):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in mv.__all__ if inspect.ismodule(getattr(mv, n))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
