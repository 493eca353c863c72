"""``multiviz evaluate`` and ``multiviz report --evaluate``, end to end.

Each command runs in-process through ``main(argv)``. The numbers it prints
and writes are checked against :func:`multiviz.evaluate` called directly on
the same pixels with regions made independently: the shapes data set's own
boxes and masks (halved by hand where ``--size`` halves the images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiviz.cli import EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.torch

FAST = ["--steps", "8", "--resamples", "300", "--no-independent", "-q"]


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four 64x64 shape images as PNG files, their boxes (CSV and JSON) and masks (PNG)."""
    import multiviz as mv

    folder = tmp_path_factory.mktemp("shapes")
    shapes = mv.shapes_dataset(4, size=64, seed=3)
    masks = folder / "masks"
    masks.mkdir()
    rows = ["image,x0,y0,x1,y1"]
    for i in range(4):
        rgb = np.rint(np.moveaxis(shapes.images[i], 0, -1) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
        Image.fromarray(shapes.masks[i].astype(np.uint8) * 255).save(masks / f"img{i}.png")
        rows.append(f"img{i}.png," + ",".join(str(int(v)) for v in shapes.boxes[i]))
    (folder / "boxes.csv").write_text("\n".join(rows) + "\n")
    by_stem = {f"img{i}": shapes.boxes[i].tolist() for i in range(4)}  # stems match too
    (folder / "boxes.json").write_text(json.dumps(by_stem))
    return folder, shapes


def pixels(folder: Path, size: int = 64) -> np.ndarray:
    """The batch the CLI feeds the built-in model, made with the library's own reader."""
    from multiviz.sources.images import Preprocess, load_images

    return load_images(folder, Preprocess("builtin", size=(size, size))).inputs


def test_evaluate_prints_the_api_table_and_writes_json_and_figure(capsys, tmp_path, data):
    import multiviz as mv

    folder, shapes = data
    out, js = tmp_path / "ev.png", tmp_path / "ev.json"
    images = [folder / f"img{i}.png" for i in range(4)]
    code, stdout, err = run(
        capsys, "evaluate", "builtin", *images, "--method", "grad-cam", "--method", "saliency",
        "--metric", "deletion", "--metric", "pointing-game", "--metric", "iou",
        "--boxes", folder / "boxes.csv", "-o", out, "--json", js, *FAST,
    )  # fmt: skip
    assert code == EXIT_OK, err
    model = mv.builtin_model("torch")
    want = mv.evaluate(
        model, pixels(folder), ["grad_cam", "saliency"], None, ["deletion", "pointing_game", "iou"],
        boxes=shapes.boxes, steps=8, resamples=300, independent=False,
    )  # fmt: skip
    assert stdout == want.table() + "\n"
    assert json.loads(js.read_text()) == json.loads(want.to_json())
    assert want["grad_cam"]["pointing_game"].value > 0.5  # the maps find the shapes
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_boxes_follow_the_resize_and_masks_work_too(capsys, tmp_path, data):
    """``--size 32`` halves the images, so the boxes must be halved: checked against the API."""
    import multiviz as mv

    folder, shapes = data
    images = [folder / f"img{i}.png" for i in range(4)]
    metrics = ["--metric", "pointing-game", "--metric", "iou", "--metric", "energy-pointing-game"]
    code, stdout, err = run(
        capsys, "evaluate", "builtin", *images, "--size", "32", "--method", "grad-cam",
        "--method", "layer-cam", "--layer", "relu2", *metrics, "--boxes", folder / "boxes.json",
        "--json", "-", *FAST,
    )  # fmt: skip
    assert code == EXIT_OK, err
    got = json.loads(stdout)
    model = mv.builtin_model("torch")
    kwargs = {"steps": 8, "resamples": 300, "independent": False}
    names = ["pointing_game", "iou", "energy_pointing_game"]
    x32 = pixels(folder, 32)
    want = mv.evaluate(
        model, x32, ["grad_cam", "layer_cam"], "relu2", names, boxes=shapes.boxes / 2, **kwargs
    )
    for method in ("grad_cam", "layer_cam"):
        for metric in names:
            assert got[method][metric]["value"] == pytest.approx(
                want.to_dict()[method][metric]["value"], abs=1e-6
            ), (method, metric)
    # the same regions as masks: a folder of mask images, matched by file stem
    code, stdout, err = run(
        capsys, "evaluate", "builtin", folder, "--method", "grad-cam", *metrics,
        "--masks", folder / "masks", "--json", "-", *FAST,
    )  # fmt: skip
    assert code == EXIT_OK, err
    by_masks = json.loads(stdout)
    want = mv.evaluate(model, pixels(folder), "grad_cam", None, names, masks=shapes.masks, **kwargs)
    assert by_masks == json.loads(want.to_json())


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--metric", "pointing"], "unknown metric 'pointing'; choose from deletion"),
        (["--method", "gradcam"], "unknown method 'gradcam'; choose from grad-cam"),
        (["-o", "ev.html"], "-o 'ev.html': the figure is written as .png"),
        (["--metric", "iou"], "--metric iou needs --boxes FILE or --masks DIR"),
        (["--metric", "data-randomization"], "needs --randomized-model MODEL"),
        (["--boxes", "NOFILE.csv"], "--boxes 'NOFILE.csv': no such file"),
        (["--percentages", "0,50"], "expected numbers in (0, 100)"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(capsys, tmp_path, data, extra, needle):
    folder, _ = data
    code, stdout, err = run(
        capsys, "evaluate", "builtin", folder, "-o", tmp_path / "ev.png", *extra, *FAST
    )
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == EXIT_USAGE and len(lines) == 1 and lines[0].startswith("multiviz: error: ")
    assert needle in lines[0], lines[0]
    assert stdout == "" and not (tmp_path / "ev.png").exists()


def test_a_box_file_naming_another_image(capsys, tmp_path, data):
    folder, _ = data
    bad = tmp_path / "boxes.json"
    bad.write_text(json.dumps({"img0.png": [0, 0, 4, 4], "cat.png": [1, 1, 2, 2]}))
    code, _, err = run(capsys, "evaluate", "builtin", folder, "--boxes", bad, *FAST)
    assert code == EXIT_USAGE and "names image 'cat.png', which is not among the images" in err
    both = ["--boxes", folder / "boxes.csv", "--masks", folder / "masks"]
    code, _, err = run(capsys, "evaluate", "builtin", folder, *both, *FAST)
    assert code == EXIT_USAGE and "not allowed with argument" in err


def test_report_evaluate_adds_the_section(capsys, tmp_path, data):
    import multiviz as mv

    folder, shapes = data
    out = tmp_path / "report.html"
    code, _, err = run(
        capsys, "report", "builtin", folder, "-o", out, "--max-maps", "4", "--evaluate",
        "--method", "grad-cam", "--method", "saliency", "--metric", "deletion",
        "--metric", "pointing-game", "--boxes", folder / "boxes.csv", *FAST,
    )  # fmt: skip
    assert code == EXIT_OK, err
    text = out.read_text(encoding="utf-8")
    want = mv.evaluate(
        mv.builtin_model("torch"), pixels(folder), ["grad_cam", "saliency"], None,
        ["deletion", "pointing_game"], boxes=shapes.boxes, steps=8, resamples=300,
        independent=False,
    )  # fmt: skip
    assert '<section id="evaluation">' in text and 'href="#evaluation"' in text
    _, rows, _ = want.table_cells()
    for row in rows:  # every cell of the API's table, in the report
        assert f'<th scope="row">{row[0]}</th>' in text
        for cell in row[1:]:
            assert f">{cell}<" in text
    assert "shows the first, img0.png, and evaluates the maps on all" in text
    # without --evaluate, no section
    code, _, _ = run(capsys, "report", "builtin", folder, "-o", out, "--max-maps", "4", "-q")
    assert code == EXIT_OK and 'id="evaluation"' not in out.read_text(encoding="utf-8")
