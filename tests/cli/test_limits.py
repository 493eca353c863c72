"""The command line's limits (issue 10, items 5 and 6): image size and numeric options.

Every refusal is one ``multiviz: error:`` line, exit code 2, naming the option;
nothing is written. The right answers are the options' documented ranges.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from multiviz.cli import EXIT_OK, EXIT_USAGE, main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("multiviz: note:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("multiviz: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "shape.png"
    rgb = (np.arange(48 * 56 * 3) % 251).astype(np.uint8).reshape(48, 56, 3)  # 2688 pixels
    Image.fromarray(rgb).save(path)
    return path


# --------------------------------------------------------------------------- --max-pixels


@pytest.mark.torch
def test_max_pixels_refuses_a_larger_image(capsys, tmp_path, image):
    out = tmp_path / "maps.png"
    argv = ("maps", "builtin", image, "--layer", "conv1", "-o", out)
    code, _, err = run(capsys, *argv, "--max-pixels", "2687")
    line = error_line(err)
    assert code == EXIT_USAGE and not out.exists()
    assert "56x48" in line and "refused before decoding" in line and "--max-pixels" in line
    code, _, err = run(capsys, *argv, "--max-pixels", "2688")  # exactly the image: read
    assert code == EXIT_OK and out.exists(), err


@pytest.mark.torch
def test_pillows_warning_is_shown_not_swallowed(capsys, tmp_path, image, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 2688 > 2000: Pillow warns
    out = tmp_path / "maps.png"
    code, _, err = run(
        capsys, "maps", "builtin", image, "--layer", "conv1", "-o", out, "--max-pixels", "1M"
    )
    assert code == EXIT_OK, err
    warned = [ln for ln in err.splitlines() if ln.startswith("multiviz: warning:")]
    assert len(warned) == 1 and "DecompressionBombWarning" in warned[0], err


def test_every_image_command_takes_max_pixels():
    from multiviz.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in ("maps", "cam", "stats", "report", "evaluate", "compare", "scan"):
        dests = {a.dest: a.default for a in sub[name]._actions}
        assert dests.get("max_pixels") == 40_000_000, name


@pytest.mark.parametrize(
    ("text", "pixels"), [("40M", 40_000_000), ("1.5M", 1_500_000), ("123", 123)]
)
def test_max_pixels_reads_megapixels(text, pixels):
    from multiviz.cli.parser import build_parser

    args = build_parser().parse_args(
        ["maps", "builtin", "x.png", "--layer", "c", "--max-pixels", text]
    )
    assert args.max_pixels == pixels
