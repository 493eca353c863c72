"""normalize(): every mode on hand-computed inputs, NaN/Inf/constant maps, and
property tests that no float array can produce NaN, a value outside [0, 1] or a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from multiviz import InputShapeError
from multiviz.core.normalize import MODES, normalize


def col(*values: float) -> np.ndarray:
    """One (1, 1, n) map stack: C=1, H=1, W=n."""
    return np.array(values, dtype=np.float64).reshape(1, 1, -1)


# --------------------------------------------------------------------------- each mode by hand


def test_map_mode_scales_each_map_on_its_own():
    x = np.array([[[0.0, 2.0, 4.0]], [[10.0, 20.0, 30.0]], [[5.0, 5.0, 5.0]]])  # (3, 1, 3)
    out, info = normalize(x, "map", return_info=True)
    np.testing.assert_array_equal(out[:, 0], [[0, 0.5, 1], [0, 0.5, 1], [0.5, 0.5, 0.5]])
    assert out.dtype == np.float32 and out.shape == x.shape
    assert info.constant.tolist() == [False, False, True]
    assert info.vmin.tolist() == [0, 10, 5] and info.vmax.tolist() == [4, 30, 5]
    assert info.flags(2) == "const" and info.flags(0) == ""


def test_layer_mode_uses_one_range_for_all_maps():
    x = np.array([[[0.0, 2.0]], [[4.0, 8.0]], [[3.0, 3.0]]])
    out, info = normalize(x, "layer", return_info=True)
    np.testing.assert_allclose(out[:, 0], [[0, 0.25], [0.5, 1], [0.375, 0.375]])
    assert info.common_range() == (0.0, 8.0)
    assert info.constant.tolist() == [False, False, True]  # still reported per map


def test_percentile_mode_clips_then_scales():
    x = col(*range(101))  # percentiles of 0..100 are the values themselves
    out, info = normalize(x, "percentile", percentile=(10, 90), return_info=True)
    flat = out.ravel()
    assert info.common_range() == (10.0, 90.0)
    assert flat[50] == 0.5 and flat[30] == 0.25
    assert np.all(flat[:11] == 0) and np.all(flat[90:] == 1)


def test_percentile_mode_falls_back_to_min_max_when_percentiles_coincide():
    x = np.zeros(1000)
    x[0], x[1] = 4.0, 2.0  # a sparse ReLU map: p1 == p99 == 0
    out, info = normalize(x.reshape(1, 10, 100), "percentile", return_info=True)
    assert info.common_range() == (0.0, 4.0)
    assert out.ravel()[0] == 1.0 and out.ravel()[1] == 0.5


def test_symmetric_mode_maps_zero_to_half():
    x = np.array([[[-2.0, 0.0, 1.0]], [[0.5, 0.0, -1.0]]])
    out, info = normalize(x, "symmetric", return_info=True)
    np.testing.assert_allclose(out[:, 0], [[0, 0.5, 0.75], [0.625, 0.5, 0.25]])
    assert info.common_range() == (-2.0, 2.0)


def test_none_mode_clips():
    out = normalize(col(-1.0, 0.25, 2.0, np.nan, np.inf, -np.inf), "none")
    np.testing.assert_array_equal(out.ravel(), [0, 0.25, 1, 0, 1, 0])


def test_nan_becomes_zero_and_inf_the_end_of_the_range():
    out, info = normalize(col(np.nan, np.inf, -np.inf, 1.0, 3.0, 2.0), return_info=True)
    np.testing.assert_array_equal(out.ravel(), [0, 1, 0, 0, 1, 0.5])
    assert info.has_nan.tolist() == [True] and info.has_inf.tolist() == [True]
    assert (info.vmin[0], info.vmax[0]) == (1.0, 3.0)  # the finite range
    assert info.flags(0) == "nan inf"


def test_map_with_no_finite_value_is_flat_and_flagged():
    x = np.stack([np.full((2, 3), np.nan), np.full((2, 3), np.inf), np.ones((2, 3))])
    out, info = normalize(x, "map", return_info=True)
    assert np.all(out[0] == 0.0)  # NaN -> 0
    assert np.all(out[1] == 0.5) and np.all(out[2] == 0.5)  # no spread -> 0.5
    assert info.constant.tolist() == [True, True, True]
    assert np.isnan(info.vmin[0]) and np.isnan(info.vmax[1])


def test_whole_layer_constant_is_flat_in_every_min_max_mode():
    x = np.full((3, 4, 5), 7.0)
    for mode in ("map", "layer", "percentile"):
        assert np.all(normalize(x, mode) == 0.5), mode
    # symmetric keeps the sign: 7 is +max|v|; an all-zero layer sits at the centre
    assert np.all(normalize(x, "symmetric") == 1.0)
    assert np.all(normalize(np.zeros((3, 4, 5)), "symmetric") == 0.5)


def test_extreme_magnitudes_keep_their_order():
    np.testing.assert_array_equal(normalize(col(1e308, -1e308, 0.0)).ravel(), [1, 0, 0.5])
    np.testing.assert_array_equal(normalize(col(0.0, 5e-324)).ravel(), [0, 1])  # subnormal
    big = np.array([3.4e38, -3.4e38, 0.0], np.float32).reshape(1, 1, 3)
    np.testing.assert_array_equal(normalize(big, "layer").ravel(), [1, 0, 0.5])


def test_batch_map_mode_matches_direct_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    out, info = normalize(x, "map", return_info=True)
    lo = x.min(axis=(2, 3), keepdims=True).astype(np.float64)
    hi = x.max(axis=(2, 3), keepdims=True).astype(np.float64)
    np.testing.assert_allclose(out, (x - lo) / (hi - lo), atol=1e-6)
    assert info.constant.shape == (2, 3)


def test_layout_decides_what_one_map_is():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 7))
    per_row = normalize(x, layout="NCL")  # 6 one-dimensional maps
    per_sample = normalize(x)  # default (C, H, W): 2 maps of 3x7
    np.testing.assert_allclose(per_row.min(axis=2), 0) and np.testing.assert_allclose(
        per_row.max(axis=2), 1
    )
    np.testing.assert_allclose(per_sample.min(axis=(1, 2)), 0)
    assert not np.allclose(per_row, per_sample)
    assert normalize(x, layout="NCL", return_info=True)[1].constant.shape == (2, 3)


def test_vector_is_one_map_and_batch_of_vectors_one_map_per_sample():
    out, info = normalize(np.array([1.0, 3.0, 2.0]), return_info=True)
    np.testing.assert_array_equal(out, [0, 1, 0.5])
    assert info.constant.shape == ()
    out = normalize(np.array([[1.0, 3.0], [10.0, 0.0]]), layout="NF")
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])


def test_integer_and_bool_inputs():
    np.testing.assert_array_equal(normalize(np.array([[0, 5, 10]], np.uint8)), [[0, 0.5, 1]])
    np.testing.assert_array_equal(normalize(np.array([[True, False]])), [[1, 0]])


def test_empty_array():
    assert normalize(np.zeros((0, 3, 4))).shape == (0, 3, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mode": "minmax"}, ValueError, "must be one of"),
        ({"percentile": (99, 1)}, ValueError, "0 <= low < high <= 100"),
        ({"percentile": (1, 2, 3)}, ValueError, "percentile"),
        ({"layout": "NHWC"}, ValueError, "layout"),
        ({"layout": "NCHW"}, InputShapeError, "4-D"),
    ],
)
def test_bad_arguments_say_what_is_valid(kwargs, error, words):
    with pytest.raises(error, match=words):
        normalize(np.zeros((2, 3, 4)), **kwargs)


def test_bad_rank_and_dtype():
    with pytest.raises(InputShapeError, match=r"\(N, C, H, W\)"):
        normalize(np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(TypeError, match="complex"):
        normalize(np.zeros((2, 3), complex))


def test_norminfo_repr_counts_flags():
    _, info = normalize(np.stack([np.ones((2, 2)), np.eye(2) * np.nan]), return_info=True)
    assert repr(info) == "NormInfo(mode='map', 2 maps: 2 constant, 1 with NaN, 0 with Inf)"


# --------------------------------------------------------------------------- properties

SPECIALS = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-38, 1e-45, 3.4e38]


def _elements(width: int) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from(SPECIALS if width == 32 else [*SPECIALS, 1e308, -1e308, 5e-324]),
    )


def _arrays() -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)
    return st.one_of(
        hnp.arrays(np.float32, shapes, elements=_elements(32)),
        hnp.arrays(np.float64, shapes, elements=_elements(64)),
        # constant arrays, constant but for NaN
        hnp.arrays(np.float32, shapes, elements=st.just(np.float32(3.5))),
        hnp.arrays(np.float64, shapes, elements=st.sampled_from([np.nan, 2.0])),
    )


@settings(max_examples=150, deadline=None)
@given(_arrays(), st.sampled_from(MODES))
def test_any_float_array_normalizes_into_unit_range_without_nan_or_warning(x, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _info = normalize(x, mode, return_info=True)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert not np.isnan(out).any()
    assert np.all((out >= 0) & (out <= 1))
    assert np.all(out[np.isnan(x)] == 0)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, (2, 3, 4), elements=_elements(64)))
def test_map_mode_preserves_order_within_each_map(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(x, "map")
    for c in range(x.shape[0]):
        v, o = x[c].ravel(), out[c].ravel()
        keep = ~np.isnan(v)
        v, o = v[keep], o[keep]
        order = np.argsort(v, kind="stable")
        assert np.all(np.diff(o[order]) >= 0)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=3, max_dims=3, max_side=4),
        elements=st.floats(-1e6, 1e6),
    )
)
def test_layer_mode_is_the_affine_min_max_map(x):
    lo, hi = x.min(), x.max()
    out = normalize(x, "layer")
    expected = np.full(x.shape, 0.5) if hi == lo else (x - lo) / (hi - lo)
    np.testing.assert_allclose(out, expected, atol=1e-6)
