"""The test matrix. `nox` with no arguments runs lint and the four test sessions.

    nox -s core        NumPy + matplotlib only: no framework may be importable
    nox -s torch       PyTorch only
    nox -s tensorflow  TensorFlow / Keras 3 only (and JAX, for Keras on its JAX backend)
    nox -s keras_jax   Keras 3 on JAX, no TensorFlow: every Keras test that needs no TensorFlow
    nox -s keras_torch Keras 3 on torch, no TensorFlow: the same tests
    nox -s both        both frameworks: cross-framework parity tests
    nox -s lint        ruff
    nox -s docs        the documentation site (mkdocs, warnings are errors)
    nox -s bench       benchmarks/ -> benchmarks/results.md (the docs include it) and results.json

Each test session sets MULTIVIZ_REQUIRE, so a session that asks for a
framework fails (instead of skipping) when that framework is missing.

With MULTIVIZ_NOX_PRUNE=1 (set by .ci/run) each session deletes its virtualenv
when it ends: the PyTorch wheels alone take about 5.5 GB per venv, and CI
machines run out of disk if the torch, tensorflow and both venvs are all kept.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterator

import nox

nox.options.sessions = [
    "lint",
    "core",
    "torch",
    "tensorflow",
    "keras_jax",
    "keras_torch",
    "both",
    "docs",
]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTEST = ("pytest", "-p", "no:cacheprovider")
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg"}


#: the folders whose docstring examples need a framework (the core session skips them)
FRAMEWORK_FOLDERS = ("multiviz/backends/torch", "multiviz/backends/keras")


def backend_doctests(framework: str) -> list[str]:
    """pytest arguments running the docstring examples of one framework's backend folder.

    Every other example (the registry and the contract included) runs once,
    in the core session.
    """
    return ["--doctest-modules", *sorted(glob.glob(f"multiviz/backends/{framework}/*.py"))]


@contextlib.contextmanager
def pruned(session: nox.Session) -> Iterator[None]:
    """Delete the session's virtualenv afterwards when MULTIVIZ_NOX_PRUNE=1 (CI's disk)."""
    try:
        yield
    finally:
        if os.environ.get("MULTIVIZ_NOX_PRUNE") == "1":
            shutil.rmtree(session.virtualenv.location, ignore_errors=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """No framework: import multiviz and run the NumPy/matplotlib core."""
    with pruned(session):
        session.install("-e", ".[dev]")
        session.run(
            "python",
            "-c",
            "import importlib.util as u, sys; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if u.find_spec(m)]; "
            "sys.exit(f'core session must have no framework, found {bad}' if bad else 0)",
        )
        session.run(
            *PYTEST,
            "-m",
            "not torch and not keras and not tensorflow and not both",
            *session.posargs,
            env={**ENV, "MULTIVIZ_REQUIRE": "none"},
        )
        # every docstring example that needs no framework runs here
        ignore = [f"--ignore={folder}" for folder in FRAMEWORK_FOLDERS]
        session.run(*PYTEST, "--doctest-modules", "multiviz", *ignore, env=ENV)


@nox.session
def torch(session: nox.Session) -> None:
    """PyTorch only (TensorFlow absent); Quantus, the reference for tests/evaluation; Ray Data
    for mv.scan(engine="ray")."""
    with pruned(session):
        # quantus: its metrics are the reference the evaluation tests agree with; its
        # OpenCV dependency is swapped for the headless wheel (no GUI libraries needed)
        # timm: the vision-transformer zoo of tests/attribution/test_transformers_torch.py
        # grad-cam (pytorch-grad-cam) and torchcam: the CAM peers the equality tests compare
        # with (tests/attribution/test_cam_peers_torch.py); pinned, both leave torch as it is
        session.install(
            "-e",
            ".[dev,torch,ray]",
            *("opencv-python-headless", "cachetools", "pandas", "scikit-image", "scikit-learn"),
            "timm",
            *("grad-cam==1.5.7", "torchcam==0.5.0"),
        )
        session.install("--no-deps", "quantus")
        session.run(
            *PYTEST,
            "-m",
            "not keras and not tensorflow and not both",
            *session.posargs,
            env={**ENV, "MULTIVIZ_REQUIRE": "torch,quantus,ray,peers"},
        )
        session.run(*PYTEST, *backend_doctests("torch"), env=ENV)


@nox.session
def tensorflow(session: nox.Session) -> None:
    """TensorFlow + Keras 3 only (PyTorch absent); JAX too, for Keras on its JAX backend."""
    with pruned(session):
        session.install("-e", ".[dev,tensorflow]", "jax")
        session.run(
            *PYTEST,
            "-m",
            "not torch and not both",
            *session.posargs,
            env={**ENV, "MULTIVIZ_REQUIRE": "keras,tensorflow,jax"},
        )
        session.run(*PYTEST, *backend_doctests("keras"), env=ENV)


#: the Keras tests that need no TensorFlow (nor PyTorch models next to Keras ones)
KERAS_ONLY = "keras and not tensorflow and not both"
NO_TENSORFLOW = (
    "import importlib.util as u, sys; "
    "sys.exit('this session must not have TensorFlow' if u.find_spec('tensorflow') else 0)"
)


def _keras_without_tensorflow(session: nox.Session, backend: str, extra: str) -> None:
    """Keras 3 on ``backend`` with TensorFlow absent: the Keras tests, nothing else."""
    with pruned(session):
        session.install("-e", f".[dev,{extra}]")
        session.run("python", "-c", NO_TENSORFLOW)
        env = {**ENV, "KERAS_BACKEND": backend, "MULTIVIZ_REQUIRE": f"keras,{backend}"}
        session.run(*PYTEST, "-m", KERAS_ONLY, *session.posargs, env=env)


@nox.session
def keras_jax(session: nox.Session) -> None:
    """Keras 3 on JAX, TensorFlow absent: multiviz needs none of it there."""
    _keras_without_tensorflow(session, "jax", "jax")


@nox.session
def keras_torch(session: nox.Session) -> None:
    """Keras 3 on torch, TensorFlow absent: multiviz needs none of it there."""
    _keras_without_tensorflow(session, "torch", "keras-torch")


@nox.session
def both(session: nox.Session) -> None:
    """Both frameworks: the same weights must give the same numbers."""
    with pruned(session):
        session.install("-e", ".[dev,all]")
        session.run(
            *PYTEST, "-m", "both", *session.posargs, env={**ENV, "MULTIVIZ_REQUIRE": "torch,keras"}
        )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    with pruned(session):
        session.install("-e", ".[docs,all]")
        session.run("python", "docs/gen_gallery.py", env=ENV)
        session.run("mkdocs", "build", "--strict", env=ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Run benchmarks/ and write the table the docs include."""
    with pruned(session):
        session.install("-e", ".[all]")
        # One peer at a time: a peer that cannot be installed gets a row saying so
        # in the table, instead of stopping the whole session.
        for line in open("benchmarks/requirements.txt").read().splitlines():
            requirement = line.split("#")[0].split()  # a name, then pip options (--no-deps)
            if requirement:
                session.run(
                    "python", "-m", "pip", "install", "-q", *requirement, success_codes=[0, 1]
                )
        session.run("python", "benchmarks/run_all.py", *session.posargs, env=ENV)
