"""Every ``multiviz`` command in the README and the docs runs offline, as written.

The commands are read from the bash blocks of ``README.md`` and ``docs/*.md``;
each runs in a fresh temporary folder holding the files it names (pictures
generated from the shapes data set, a folder of them, a ``torch.export``
program of the built-in model), with every network connection refused: a
command that would download weights fails the test.
"""

from __future__ import annotations

import re
import shlex
import socket
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` for every line of a bash block that runs ``multiviz`` (a command
    shown on several pages is run once, for the first page that shows it)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, flags=re.S):
            block = re.sub(r"\\\n\s*", " ", block)  # a command continued with a backslash
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("multiviz "):
                    command = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
                    key = " ".join(shlex.split(command))
                    if key not in seen:
                        seen.add(key)
                        found.append((path.relative_to(ROOT).as_posix(), command))
    return found


COMMANDS = documented_commands()


def _marks(command: str) -> list[pytest.MarkDecorator]:
    if any(w in command for w in ("compare", "demo")):
        return [pytest.mark.both]
    if "keras" in command:
        return [pytest.mark.keras]
    return [pytest.mark.torch]


def test_the_docs_show_commands_for_every_subcommand():
    used = {shlex.split(c)[1] for _, c in COMMANDS}
    assert {"layers", "maps", "cam", "stats", "report", "compare", "demo"} <= used
    readme = [c for f, c in COMMANDS if f == "README.md"]
    assert len(readme) >= 5
    for _, command in COMMANDS:  # torchvision and Keras networks never download
        argv = shlex.split(command)
        if any(a.startswith(("torchvision:", "keras:")) for a in argv) and argv[1] != "layers":
            assert "--weights" in argv and argv[argv.index("--weights") + 1] == "none", command


def _picture(path: Path, seed: int) -> None:
    from PIL import Image

    import multiviz as mv

    rgb = np.moveaxis(mv.sample_image(seed=seed, size=(96, 128)), 0, -1)
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(path)


def _make_inputs(argv: list[str], folder: Path) -> None:
    """Create the files a command names and does not write: pictures, folders, models."""
    from multiviz.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    named: list[str] = []
    for key in ("model", "image", "images", "specs"):  # one name, or several (evaluate)
        value = getattr(args, key, None)
        named += value if isinstance(value, list) else [value]
    for name in filter(None, named):
        path = folder / name
        if path.exists() or ":" in name or name in ("builtin", "builtin-vit"):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            _picture(path, seed=len(name))
        elif name.endswith("/"):
            path.mkdir(parents=True)
            for k in range(4):
                _picture(path / f"img{k}.png", seed=k)
        elif path.suffix == ".pt2":
            import torch

            import multiviz as mv

            program = torch.export.export(mv.builtin_model("torch"), (torch.zeros(1, 3, 64, 64),))
            torch.export.save(program, str(path))
        else:
            raise AssertionError(f"the test does not know how to make {name!r}")
    boxes = getattr(args, "boxes", None)
    if boxes and not (folder / boxes).exists():  # one box per picture the command reads
        pictures = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
        rows = [f"{p.name},32,24,96,72" for p in pictures]  # the centre of a 128x96 picture
        (folder / boxes).write_text("image,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=_marks(c), id=f"{f}: {c}") for f, c in COMMANDS],
)
def test_documented_command_runs_offline_as_written(
    command, tmp_path, monkeypatch, offline, capsys
):
    from multiviz.cli import main

    argv = shlex.split(command)[1:]
    monkeypatch.chdir(tmp_path)
    _make_inputs(argv, tmp_path)
    before = set(tmp_path.rglob("*"))
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 0, err
    if "-o" in argv or "--out" in argv:  # it wrote what it said it would
        out = argv[argv.index("-o") + 1] if "-o" in argv else argv[argv.index("--out") + 1]
        assert (tmp_path / out).exists() and set(tmp_path.rglob("*")) - before
