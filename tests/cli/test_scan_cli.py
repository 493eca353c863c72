"""`multiviz scan`: the files it writes hold what the Python API computes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import multiviz as mv
from multiviz.cli import main

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    data = mv.shapes_dataset(24, seed=7)
    for i in range(24):
        img = np.rint(np.moveaxis(data.images[i], 0, -1) * 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"img{i}.png")
    np.save(root.parent / "masks.npy", np.where(data.masks, data.labels[:, None, None], -1))
    return root


def test_scan_writes_table_montage_dissection_and_page(folder, tmp_path):
    out = tmp_path / "scan"
    code = main(
        [
            "scan",
            "builtin",
            str(folder),
            "--layer",
            "relu3",
            "--topk",
            "4",
            "-o",
            str(out),
            "-q",
            "--masks",
            str(folder.parent / "masks.npy"),
            "--concepts",
            "circle,square,triangle,cross",
        ]
    )
    assert code == 0
    for name in (
        "scan.npz",
        "stats-relu3.csv",
        "exemplars-relu3.png",
        "index.html",
        "dissection.png",
        "dissection-relu3.csv",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "stats-relu3.csv")))
    want = mv.scan(mv.builtin_model("torch"), folder, ["relu3"], topk=4, progress=False)
    s = want.stats("relu3")
    assert len(rows) == 64
    np.testing.assert_allclose([float(r["mean"]) for r in rows], s.mean, rtol=1e-6)
    assert [r["dead"] == "True" for r in rows] == s.dead.tolist()
    saved = mv.load_scan(out / "scan.npz")
    assert saved.exemplars("relu3", 3) == want.exemplars("relu3", 3)
    page = (out / "index.html").read_text()
    assert f"{int(s.dead.sum())} of 64 channels dead" in page and "exemplars-relu3.png" in page
    montage = np.asarray(Image.open(out / "exemplars-relu3.png"))
    assert montage.shape[0] > 200 and montage.shape[1] > 200


def test_scan_refuses_a_file_for_a_folder(folder, tmp_path):
    code = main(
        [
            "scan",
            "builtin",
            str(folder / "img0.png"),
            "--layer",
            "relu3",
            "-q",
            "-o",
            str(tmp_path / "x"),
        ]
    )
    assert code != 0
