"""The scripts in examples/ run as a user would run them, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, out: Path) -> list[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
    subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(out)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return sorted(p.name for p in out.glob("*.png"))


@pytest.mark.both
def test_recipes_builtin_in_both_frameworks(tmp_path: Path) -> None:
    names = _run("recipes_builtin.py", tmp_path)
    assert len(names) == 8
    assert {n.split("_")[0] for n in names} == {"torch", "keras"}


@pytest.mark.torch
def test_recipes_torch_resnet18(tmp_path: Path) -> None:
    assert len(_run("recipes_torch_resnet18.py", tmp_path)) == 4


@pytest.mark.keras
@pytest.mark.slow
def test_recipes_keras_resnet50(tmp_path: Path) -> None:
    assert len(_run("recipes_keras_resnet50.py", tmp_path)) == 4
