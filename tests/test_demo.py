"""The demo: every figure it promises is written, and the frameworks agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiviz.demo import run_demo

EXPECTED = {
    "maps_conv1.png",
    "maps_conv2.png",
    "maps_conv3.png",
    "aggregate_conv3_mean.png",
    "aggregate_conv3_max.png",
    "overlay_conv3.png",
    "layer_stats.png",
    "grad_cam.png",
    "explain.png",
    "vit_maps_blocks.3.norm1.png",  # the built-in ViT on the same image
    "vit_grad_cam.png",
    "vit_rollout.png",
}


def _check_pictures(files: list[Path]) -> None:
    assert {p.name for p in files} == EXPECTED
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 5, f"{path.name} is blank"


@pytest.mark.torch
def test_demo_torch(tmp_path: Path, capsys) -> None:
    lines: list[str] = []
    files = run_demo(tmp_path, ["torch"], log=lines.append, progress=True)
    _check_pictures(files["torch"])
    # in the order it happens: the prediction, each file as it is written, then Done
    assert "says 'triangle' (truth: 'triangle')" in lines[0]
    vit = next(k for k, line in enumerate(lines) if "built-in ViT says" in line)
    assert lines[1:vit] + lines[vit + 1 : -1] == [f"wrote {p}" for p in files["torch"]]
    assert lines[vit + 1] == f"wrote {tmp_path / 'torch' / 'vit_maps_blocks.3.norm1.png'}"
    assert all(p.exists() for p in files["torch"])
    assert lines[-1] == f"Done: 12 files under {tmp_path.resolve()}"
    bar = capsys.readouterr().err  # tqdm's bar on stderr
    assert "[torch] figures" in bar and "12/12" in bar


@pytest.mark.keras
@pytest.mark.tensorflow  # the demo's Keras half runs Keras on TensorFlow
def test_demo_keras(tmp_path: Path) -> None:
    files = run_demo(tmp_path, ["keras"], log=lambda s: None)
    _check_pictures(files["keras"])


@pytest.mark.both
def test_demo_both_frameworks_agree(tmp_path: Path) -> None:
    lines: list[str] = []
    files = run_demo(tmp_path, None, log=lines.append)
    assert set(files) == {"torch", "keras", "parity"}
    table = files["parity"][0].read_text()
    assert "10 PASS, 0 FAIL" in table and "First divergence: none" in table
    assert any("agree on every layer" in line for line in lines)


def test_demo_without_the_framework_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    import multiviz.demo as demo
    from multiviz.errors import BackendUnavailableError

    monkeypatch.setattr(demo, "available_frameworks", lambda: [])
    with pytest.raises(BackendUnavailableError, match=r"pip install 'multiviz\[torch\]'"):
        run_demo(tmp_path, ["torch"])
    assert not any(tmp_path.iterdir())
