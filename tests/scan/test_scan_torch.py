"""mv.scan on the built-in CNN in PyTorch, against brute force over captured arrays.

Brute force: capture every input at once with mv.capture and reduce the whole
array with NumPy; receptive fields by hand (the built-in CNN is a chain of
3x3 'same' convolutions and 2x2 poolings); the planted unit against the
shapes data set's labels and masks.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv
from multiviz.scanning.record import Exemplar

pytestmark = pytest.mark.torch

LAYERS = ["conv1", "relu2", "relu3", "fc"]


@pytest.fixture(scope="module")
def model():
    return mv.builtin_model("torch")


@pytest.fixture(scope="module")
def data():
    return mv.shapes_dataset(90, seed=5)


@pytest.fixture(scope="module")
def whole(model, data):
    import torch

    return mv.capture(model, torch.from_numpy(data.images), LAYERS)


@pytest.fixture(scope="module")
def scanned(model, data):
    return mv.scan(model, data.images, LAYERS, topk=5, batch_size=16, progress=False)


def _brute_top(a: np.ndarray, ch: int, k: int) -> list[tuple[int, float, int]]:
    v = a[:, ch].reshape(len(a), -1)
    score = v.max(axis=1)
    order = np.lexsort((np.arange(len(a)), -score))[:k]
    return [(int(i), float(score[i]), int(v[i].argmax())) for i in order]


@pytest.mark.parametrize("layer", LAYERS)
def test_statistics_equal_brute_force_over_the_whole_array(scanned, whole, layer):
    a = whole[layer].astype(np.float64)
    v = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    s = scanned.stats(layer)
    assert s.samples == 90 and s.count.tolist() == [v.shape[1]] * v.shape[0]
    np.testing.assert_allclose(s.mean, v.mean(axis=1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.std, v.std(axis=1), rtol=1e-6, atol=1e-9)
    assert s.min.tolist() == v.min(axis=1).tolist() and s.max.tolist() == v.max(axis=1).tolist()
    np.testing.assert_array_equal(s.positive_fraction, (v > 0).mean(axis=1))
    np.testing.assert_array_equal(s.dead, (v > 0).sum(axis=1) == 0)
    assert np.isnan(s.saturated_fraction).all()  # ReLU and conv outputs are unbounded
    # The REQ sketch is randomized (DataSketches cannot seed it) and its bound
    # holds per channel with ~99.7% probability at 3 standard deviations: over
    # 100 channels one falls just outside now and then. Each channel's true rank
    # must lie within 9 standard deviations (the 3-sigma interval widened by its
    # own width on each side: a miss has probability ~1e-19), while a wrong
    # quantile (off by a few percent of rank) is still far outside.
    lo, hi = s.sketch.rank_bounds(0.9, 3)
    q = s.quantile(0.9)
    assert np.all(hi - lo < 0.03)  # the bound is tight enough to mean something
    for c in range(v.shape[0]):  # the 0.9-quantile's true rank lies in the sketch's bound
        rank, below = np.mean(v[c] <= q[c]), np.mean(v[c] < q[c])
        width = hi[c] - lo[c]
        assert lo[c] - width - 1e-9 <= rank and below <= hi[c] + width + 1e-9, (c, lo[c], hi[c])


@pytest.mark.parametrize("layer", LAYERS)
def test_exemplars_equal_brute_force_top_k(scanned, whole, layer):
    a = whole[layer]
    for ch in range(0, a.shape[1], max(1, a.shape[1] // 7)):
        got = scanned.exemplars(layer, ch)
        want = _brute_top(a, ch, 5)
        assert [e.index for e in got] == [w[0] for w in want]
        assert [e.score for e in got] == [w[1] for w in want]
        if a.ndim == 4:
            assert [e.location for e in got] == [
                tuple(int(t) for t in np.unravel_index(w[2], a.shape[2:])) for w in want
            ]
        else:
            assert all(e.location == () and e.box == (0, 0, 64, 64) for e in got)
        assert all(isinstance(e, Exemplar) for e in got)
    with pytest.raises(IndexError, match=r"\[0, "):
        scanned.exemplars(layer, a.shape[1])


def test_receptive_fields_by_hand(scanned):
    # 3x3 same conv: 3 px; + 2x2/2 pool: 4; + conv: 8; + pool: 10, jump 4; + conv: 18
    rf = scanned.fields["relu3"]
    assert (rf.size, rf.jump, rf.start, rf.method) == (
        (18.0, 18.0),
        (4.0, 4.0),
        (2.0, 2.0),
        "composed",
    )
    assert scanned.fields["conv1"].size == (3.0, 3.0) and scanned.fields["relu2"].size == (8.0, 8.0)
    assert scanned.fields["fc"] is None
    ex = scanned.exemplars("relu3", 0)[0]
    r, c = ex.location
    cy, cx = 2 + 4 * r, 2 + 4 * c
    assert ex.box == (max(cx - 9, 0), max(cy - 9, 0), min(cx + 9, 64), min(cy + 9, 64))


def test_probe_measures_the_same_fields_as_composition(model, data):
    probed = mv.scan(
        model, data.images[:8], ["conv1", "relu2", "relu3"], fields="probe", progress=False
    )
    composed = mv.scan(model, data.images[:8], ["conv1", "relu2", "relu3"], progress=False)
    for layer in ("conv1", "relu2", "relu3"):
        p, c = probed.fields[layer], composed.fields[layer]
        assert p.method == "probed"
        rows, cols = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
        np.testing.assert_array_equal(
            p.boxes(rows.ravel(), cols.ravel()), c.boxes(rows.ravel(), cols.ravel())
        )


def test_save_load_round_trip_without_pickle(scanned, tmp_path):
    path = scanned.save(tmp_path / "scan.npz")
    with np.load(path, allow_pickle=False) as f:
        assert str(f["format"]) == "multiviz-scan"
    back = mv.load_scan(path)
    assert list(back.layers) == LAYERS and back.samples == 90
    for layer in LAYERS:
        a, b = scanned.stats(layer), back.stats(layer)
        for key in ("count", "mean", "std", "min", "max", "positive_fraction"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        np.testing.assert_array_equal(a.quantile([0.1, 0.995]), b.quantile([0.1, 0.995]))
        assert back.exemplars(layer, 1) == scanned.exemplars(layer, 1)


def test_merge_of_two_parts_equals_one_scan(model, data, scanned):
    a = mv.scan(model, data.images[:37], LAYERS, topk=5, batch_size=16, progress=False)
    b = mv.scan(
        model, data.images[37:], LAYERS, topk=5, batch_size=16, index_offset=37, progress=False
    )
    merged = b.merge(a)
    assert merged is b
    for layer in LAYERS:
        s, w = merged.stats(layer), scanned.stats(layer)
        np.testing.assert_array_equal(s.count, w.count)
        np.testing.assert_allclose(s.mean, w.mean, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(s.max, w.max)
        assert merged.exemplars(layer, 2) == scanned.exemplars(layer, 2)


def test_resume_after_a_crash_gives_the_uninterrupted_result(model, data, scanned, tmp_path):
    batches = [data.images[i : i + 16] for i in range(0, 90, 16)]

    def crashing():
        for i, b in enumerate(batches):
            if i == 5:
                raise RuntimeError("worker lost")
            yield b

    path = tmp_path / "ckpt.npz"
    with pytest.raises(RuntimeError, match="worker lost"):
        mv.scan(
            model, crashing(), LAYERS, topk=5, checkpoint=path, checkpoint_every=2, progress=False
        )
    partial = mv.load_scan(path)
    assert partial.batches == 4 and partial.samples == 64
    seen = []

    def counting():
        for b in batches:
            seen.append(len(b))
            yield b

    resumed = mv.scan(model, counting(), LAYERS, topk=5, checkpoint=path, progress=False)
    assert resumed.samples == 90 and resumed.batches == 6
    for layer in LAYERS:
        s, w = resumed.stats(layer), scanned.stats(layer)
        for key in ("count", "mean", "std", "min", "max", "positive_fraction"):
            np.testing.assert_array_equal(getattr(s, key), getattr(w, key))
        for ch in (0, 3):
            assert resumed.exemplars(layer, ch) == scanned.exemplars(layer, ch)
    assert mv.load_scan(path).samples == 90


def test_batches_from_a_dataloader_dicts_and_unpack(model, data, scanned):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    via_loader = mv.scan(model, DataLoader(ds, batch_size=16), ["relu3"], topk=5, progress=False)
    dicts = [{"label": 0, "image": data.images[i : i + 30]} for i in range(0, 90, 30)]
    via_dicts = mv.scan(model, dicts, ["relu3"], topk=5, progress=False)
    tuples = [(None, data.images[i : i + 45]) for i in range(0, 90, 45)]
    via_unpack = mv.scan(model, tuples, ["relu3"], topk=5, unpack=1, progress=False)
    for other in (via_loader, via_dicts, via_unpack):
        assert other.exemplars("relu3", 4) == scanned.exemplars("relu3", 4)
        np.testing.assert_array_equal(other.stats("relu3").max, scanned.stats("relu3").max)
    with pytest.raises(ValueError, match="shuffle"):
        mv.scan(model, DataLoader(ds, batch_size=16, shuffle=True), ["relu3"])


def test_folder_of_images(model, data, tmp_path):
    from PIL import Image

    for i in range(12):
        img = np.moveaxis(data.images[i], 0, -1)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    got = mv.scan(model, tmp_path, ["relu3"], topk=3, batch_size=5, progress=False)
    assert got.files is not None and got.files[10].endswith("img10.png")
    quantized = np.rint(data.images[:12] * 255) / 255
    want = mv.scan(model, quantized.astype(np.float32), ["relu3"], topk=3, progress=False)
    assert got.exemplars("relu3", 5) == want.exemplars("relu3", 5)
    crops, rows = got.exemplar_crops("relu3", [5], k=1, size=18)  # crops from the files
    x0, y0, x1, y1 = rows[0][0].box
    src = np.moveaxis(quantized[rows[0][0].index], 0, -1)[y0:y1, x0:x1]
    if src.shape[:2] == (18, 18):
        np.testing.assert_allclose(crops[0, 0], src, atol=1e-6)


def test_nonfinite_values_are_left_out_counted_and_warned_once(model, data):
    x = data.images[:20].copy()
    x[3, :, 10, 10] = np.nan
    with pytest.warns(mv.MultivizWarning, match="NaN or Inf") as record:
        got = mv.scan(model, x, ["conv1", "relu3"], topk=3, progress=False)
    assert len(record) == 1
    s = got.stats("conv1")
    assert (s.nonfinite_fraction > 0).all() and np.isfinite(s.mean).all()
    assert 3 not in [e.index for e in got.exemplars("conv1", 0)] or got.exemplars("conv1", 0)


def test_plot_exemplars_draws_one_row_per_channel(scanned, data):
    fig = scanned.plot_exemplars("relu3", channels=[3, 7, 9], data=data.images, k=4)
    image = fig.axes[0].images[0].get_array()
    assert image.shape[0] == 2 + 3 * (64 + 2) and image.shape[1] == 2 + 4 * (64 + 2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ch 3", "ch 7", "ch 9"]


def test_bad_arguments_name_the_parameter(model, data):
    with pytest.raises(ValueError, match="engine"):
        mv.scan(model, data.images, ["relu3"], engine="spark")
    with pytest.raises(ValueError, match="topk"):
        mv.scan(model, data.images, ["relu3"], topk=0)
    with pytest.raises(mv.LayerNotFoundError):
        mv.scan(model, data.images, ["relu9"], progress=False)
