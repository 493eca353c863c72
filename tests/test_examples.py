"""The scripts in examples/ run as a user would run them, offline."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import multiviz

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


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_examples_use_only_public_names(script: str) -> None:
    """Issue 13, item 14: an example imports multiviz only as ``mv`` and uses only names
    of ``multiviz.__all__`` (the public table), never a module inside the package."""
    tree = ast.parse((EXAMPLES / script).read_text(encoding="utf-8"))
    private, used = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "multiviz":
            private.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "multiviz" and (
                    alias.name != "multiviz" or alias.asname != "mv"
                ):
                    private.append(f"import {alias.name}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "mv"
        ):
            used.add(node.attr)
    assert not private, private
    assert used, "the example uses no mv. name"
    assert sorted(used - set(multiviz.__all__)) == []


@pytest.mark.both
def test_recipes_builtin_in_both_frameworks(tmp_path: Path) -> None:
    names = _run("recipes_builtin.py", tmp_path)
    assert len(names) == 8
    assert {n.split("_")[0] for n in names} == {"torch", "keras"}


@pytest.mark.torch
def test_recipes_torch_resnet18(tmp_path: Path) -> None:
    names = _run("recipes_torch_resnet18.py", tmp_path)
    assert "input.png" in names and len(names) == 1 + 4  # the generated input, 4 figures


@pytest.mark.keras
@pytest.mark.slow
def test_recipes_keras_resnet50(tmp_path: Path) -> None:
    names = _run("recipes_keras_resnet50.py", tmp_path)
    assert "input.png" in names and len(names) == 1 + 4


@pytest.mark.both
@pytest.mark.tensorflow
@pytest.mark.slow
def test_port_resnet18_finds_both_seeded_bugs(tmp_path: Path) -> None:
    """The script exits 1 unless the faithful port passes and each seeded bug is reported at
    the layer it was planted in; it writes a depth and a maps figure per report."""
    names = _run("port_resnet18.py", tmp_path)
    assert names == sorted(
        f"{stem}_{kind}.png"
        for stem in ("port_ok", "bug_same_padding", "bug_epsilon")
        for kind in ("depth", "maps")
    )
