"""`import multiviz` imports no framework and no matplotlib, and each room keeps its promise.

Checked in fresh interpreters (what a call adds to ``sys.modules``) and by
reading the source (``ast``): only ``backends/`` imports a framework, only
``render/`` draws, and ``core/``, ``attribution/`` and ``parity/`` import
neither.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

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
        "import multiviz as mv; mv.scan; mv.load_scan; mv.Scan; mv.channel_stats",
    ],
)
def test_import_loads_no_framework(code: str) -> None:
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in FRAMEWORKS}
    if "plot_" not in code and "montage" not in code:
        assert not {m for m in loaded if m.startswith("matplotlib")}
    assert "datasketches" not in loaded  # imported on the first sketch, not before
    assert not {m for m in loaded if m.split(".")[0] == "ray"}  # only engine="ray" imports it


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


# --------------------------------------------------------------------------- drawing loads only when drawing


def _matplotlib_added(setup: str, calls: str) -> list[str]:
    """matplotlib modules that ``calls`` adds to sys.modules, after ``setup`` ran."""
    code = (
        f"{setup}\n"
        "import sys\n"
        "before = set(sys.modules)\n"
        "import numpy as np\n"
        "import multiviz as mv\n"
        f"{calls}\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before if m.startswith('matplotlib'))))\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


_NUMPY_CORE = (
    "maps = np.random.default_rng(0).random((2, 4, 5, 6)).astype(np.float32)\n"
    "mv.normalize(maps[0]); mv.aggregate(maps); mv.layer_stats({'x': maps})\n"
)


def test_the_numpy_core_loads_no_matplotlib() -> None:
    assert _matplotlib_added("", _NUMPY_CORE) == []


@pytest.mark.torch
def test_capture_and_attribution_on_torch_load_no_matplotlib() -> None:
    calls = _NUMPY_CORE + (
        "model = mv.builtin_model('torch')\n"
        "x = mv.shapes_dataset(2, size=(32, 40)).images\n"
        "mv.capture(model, x, ['conv1']); mv.grad_cam(model, x, 'relu3'); mv.saliency(model, x)\n"
    )
    assert _matplotlib_added("import torch", calls) == []


@pytest.mark.keras
def test_capture_and_attribution_on_keras_load_no_matplotlib() -> None:
    calls = _NUMPY_CORE + (
        "model = mv.builtin_model('keras')\n"
        "x = mv.to_channels_last(mv.shapes_dataset(2, size=(32, 40)).images)\n"
        "mv.capture(model, x, ['conv1']); mv.grad_cam(model, x, 'relu3')\n"
    )
    assert _matplotlib_added("import keras", calls) == []


@pytest.mark.both
def test_compare_loads_no_matplotlib() -> None:
    calls = (
        "tm, km = mv.builtin_model('torch'), mv.builtin_model('keras')\n"
        "report = mv.compare(tm, km, mv.shapes_dataset(1, size=(32, 40)).images)\n"
        "assert report.passed, report\n"
    )
    assert _matplotlib_added("import torch\nimport keras", calls) == []


# --------------------------------------------------------------------------- each room keeps its promise

PACKAGE = Path(__file__).resolve().parent.parent / "multiviz"
MATPLOTLIB = ("matplotlib",)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (module level, functions, branches)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _offenders(rooms: list[str], roots: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for room in rooms:
        target = PACKAGE / room
        for path in sorted(target.rglob("*.py") if target.is_dir() else [target]):
            hits = sorted(m for m in _imports(path) if m.split(".")[0] in roots)
            if hits:
                bad[str(path.relative_to(PACKAGE))] = hits
    return bad


def test_core_attribution_and_parity_import_no_framework_and_no_matplotlib() -> None:
    rooms = ["core", "attribution", "parity"]
    assert _offenders(rooms, (*FRAMEWORKS, *MATPLOTLIB)) == {}


def test_only_backends_import_a_framework() -> None:
    # the command line and the demo import torch before TensorFlow on purpose
    # (the other order can crash the process); nothing else may import a framework
    rooms = [p.name for p in PACKAGE.iterdir() if p.name not in ("backends", "cli", "demo.py")]
    assert (
        _offenders([r for r in rooms if r.endswith(".py") or (PACKAGE / r).is_dir()], FRAMEWORKS)
        == {}
    )


def test_only_render_draws() -> None:
    rooms = [p.name for p in PACKAGE.iterdir() if p.name != "render"]
    assert (
        _offenders([r for r in rooms if r.endswith(".py") or (PACKAGE / r).is_dir()], MATPLOTLIB)
        == {}
    )


def test_every_exception_and_warning_is_exported_from_mv() -> None:
    import inspect

    import multiviz as mv
    from multiviz import errors

    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, (Exception, Warning))
        and obj.__module__ == errors.__name__
    }
    assert classes == set(errors.__all__)
    assert all(getattr(mv, name) is getattr(errors, name) for name in classes)
    assert issubclass(mv.MultivizWarning, UserWarning)
    # no exception class is defined anywhere else in the package
    others = {
        str(path.relative_to(PACKAGE)): node.name
        for path in PACKAGE.rglob("*.py")
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(
            getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Warning"))
            for b in node.bases
        )
    }
    assert others == {}
