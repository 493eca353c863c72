"""Receptive-field composition against brute-force index propagation.

Brute force follows every unit's dependencies back through each layer
(output i reads inputs i*s - pad + t*d, t < k, padding included as
out-of-image indices) and takes the first and last input pixel; composition
must give the same interval for every unit of every layer of random chains.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from multiviz.scanning.fields import (
    Geometry,
    compose,
    field_from_response,
    output_size,
    padding_before,
)


def _brute_axis(
    layers: list[tuple[int, int, int, int]], n_in: int, n_out: int
) -> list[tuple[int, int]]:
    """(first, last + 1) input pixel of every output unit along one axis, clipped to the image.

    ``layers``: (kernel, stride, padding before, dilation). Unit i of a layer
    reads units i*s - before + t*d (t < k) of the layer below, on an unbounded
    grid (a padded position stands for where a pixel would be: the theoretical
    field), down to the input pixels themselves.
    """

    @functools.cache
    def pixels(level: int, i: int) -> frozenset[int]:
        if level == 0:
            return frozenset([i])
        k, s, before, d = layers[level - 1]
        return frozenset().union(*(pixels(level - 1, i * s - before + t * d) for t in range(k)))

    top = len(layers)
    out = []
    for i in range(n_out):
        got = pixels(top, i)
        out.append((min(max(min(got), 0), n_in), min(max(max(got) + 1, 0), n_in)))
    return out


@pytest.mark.parametrize("seed", range(16))
def test_composed_boxes_equal_brute_force_on_random_chains(seed):
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
    chain: list[Geometry] = []
    grids = [size]  # each layer's input grid
    for _ in range(int(rng.integers(1, 5))):
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 3, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = (
            "same" if rng.random() < 0.3 else tuple((int(v), int(v)) for v in rng.integers(0, 3, 2))
        )
        g = Geometry(k, s, pad, d)
        if min(g.output_size(grids[-1])) < 2:
            break
        chain.append(g)
        grids.append(g.output_size(grids[-1]))
    if not chain:
        pytest.skip("no layer fits")
    rf = compose(chain, size)
    out = grids[-1]
    for axis in (0, 1):
        layers = [
            (g.kernel[axis], g.stride[axis], g.pads(grid)[axis][0], g.dilation[axis])
            for g, grid in zip(chain, grids, strict=False)
        ]
        brute = _brute_axis(layers, size[axis], out[axis])
        units = np.arange(out[axis])
        zeros = np.zeros_like(units)
        boxes = rf.boxes(units, zeros) if axis == 0 else rf.boxes(zeros, units)
        got = [(b[1], b[3]) if axis == 0 else (b[0], b[2]) for b in boxes.tolist()]
        assert got == brute, (axis, chain)


def test_builtin_cnn_chain_field_by_hand():
    # conv1 (3x3 same) -> pool1 (2x2/2) -> conv2 -> pool2 -> conv3, on 64x64
    conv, pool = Geometry((3, 3), (1, 1), "same"), Geometry((2, 2), (2, 2))
    rf = compose(
        [conv, pool, conv, pool, conv],
        (64, 64),
        check_sizes=[(64, 64), (32, 32), (32, 32), (16, 16), (16, 16)],
    )
    # sizes 3 -> 4 -> 8 -> 10 -> 18 pixels; jump 4; unit (0, 0) centred on pixel corner (2, 2)
    assert rf.size == (18.0, 18.0) and rf.jump == (4.0, 4.0) and rf.start == (2.0, 2.0)
    assert rf.box(0, 0) == (0, 0, 11, 11)
    assert rf.box(8, 5) == (13, 25, 31, 43)  # centre (34, 22), +-9
    assert rf.box(15, 15) == (53, 53, 64, 64)


def test_compose_detects_a_layer_that_is_not_on_the_chain():
    conv = Geometry((3, 3), (2, 2), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="not one chain"):
        compose([conv, conv], (32, 32), check_sizes=[(16, 16), (16, 16)])


def test_same_padding_follows_tensorflow():
    # TF: out = ceil(n / s), pad total = max((out - 1) s + k - n, 0), half before (rounded down)
    for n in range(5, 40):
        for k in (1, 2, 3, 5, 7):
            for s in (1, 2, 3):
                before, after = padding_before(n, k, s)
                out = -(-n // s)
                assert before + after == max((out - 1) * s + k - n, 0)
                assert before == (before + after) // 2
                assert output_size(n, k, s, (before, after)) == out


def _hits(rf, n_out: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = rf.input_size
    rows = np.zeros((height, n_out[0]), bool)
    cols = np.zeros((width, n_out[1]), bool)
    for i in range(n_out[0]):
        x0, y0, x1, y1 = rf.box(i, 0)
        rows[y0:y1, i] = True
    for j in range(n_out[1]):
        x0, y0, x1, y1 = rf.box(0, j)
        cols[x0:x1, j] = True
    return rows, cols


@pytest.mark.parametrize(
    "chain",
    [
        [Geometry((3, 3), (1, 1), "same"), Geometry((2, 2), (2, 2))] * 2,
        [Geometry((7, 5), (2, 2), ((3, 3), (2, 2))), Geometry((3, 3), (2, 2), ((1, 1), (1, 1)))],
        [Geometry((3, 3), (1, 1), "valid", (2, 2))] * 3,
    ],
)
def test_probe_reading_recovers_the_composed_field(chain):
    size = (48, 40)
    rf = compose(chain, size)
    out = size
    for g in chain:
        out = g.output_size(out)
    probed = field_from_response(*_hits(rf, out), size)
    assert probed.method == "probed"
    for i in range(out[0]):
        for j in range(out[1]):
            assert probed.box(i, j) == rf.box(i, j)


def test_probe_of_a_field_larger_than_the_image_covers_it_whole():
    rows = np.ones((20, 5), bool)
    probed = field_from_response(rows, rows, (20, 20))
    assert probed.box(0, 0) == (0, 0, 20, 20) and probed.box(4, 2) == (0, 0, 20, 20)
    with pytest.raises(ValueError, match="changed no unit"):
        field_from_response(np.zeros((20, 5), bool), rows, (20, 20))
