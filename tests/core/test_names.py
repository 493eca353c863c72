"""Layer selection: exact names, globs, kinds, call/output suffixes, errors."""

from __future__ import annotations

import pytest

from multiviz.activations import LayerInfo
from multiviz.errors import LayerNotFoundError, MultivizError
from multiviz.selection import resolve, split_suffix

INFOS = [
    LayerInfo("conv1", "Conv2d", "conv"),
    LayerInfo("layer1", "Sequential", "container"),
    LayerInfo("layer1.0.conv2", "Conv2d", "conv"),
    LayerInfo("layer1.0.relu", "ReLU", "activation"),
    LayerInfo("layer2.0.conv2", "Conv2d", "conv"),
    LayerInfo("fc", "Linear", "dense"),
]


def test_exact_names_come_back_in_model_order() -> None:
    assert resolve(["fc", "conv1"], INFOS) == ["conv1", "fc"]


def test_glob_pattern() -> None:
    assert resolve("layer*.conv2", INFOS) == ["layer1.0.conv2", "layer2.0.conv2"]


def test_kind_filters_and_none_means_all_leaves() -> None:
    assert resolve(None, INFOS, kind="conv") == ["conv1", "layer1.0.conv2", "layer2.0.conv2"]
    assert "layer1" not in resolve(None, INFOS)
    assert resolve(["conv1", "fc"], INFOS, kind="dense") == ["fc"]


def test_duplicates_removed() -> None:
    assert resolve(["conv1", "conv*", "conv1"], INFOS) == ["conv1"]


def test_call_suffix_kept() -> None:
    assert resolve(["layer1.0.relu#1"], INFOS) == ["layer1.0.relu#1"]
    assert split_suffix("a.b#2[0]") == ("a.b", "#2[0]")
    assert split_suffix("plain") == ("plain", "")


def test_unknown_name_lists_closest() -> None:
    with pytest.raises(LayerNotFoundError) as err:
        resolve("layer1.0.conv", INFOS)
    msg = str(err.value)
    assert "layer1.0.conv2" in msg and "mv.layers" in msg
    assert isinstance(err.value, MultivizError) and isinstance(err.value, KeyError)


def test_pattern_matching_nothing() -> None:
    with pytest.raises(LayerNotFoundError, match="matched no layer"):
        resolve("block*.conv", INFOS)


def test_bad_kind_names_valid_kinds() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        resolve(None, INFOS, kind="convolution")


def test_non_string_name() -> None:
    with pytest.raises(TypeError, match="strings"):
        resolve([3], INFOS)


def test_base_name_of_a_multi_output_layer() -> None:
    infos = [LayerInfo("split[0]", "Split", "other"), LayerInfo("split[1]", "Split", "other")]
    assert resolve("split", infos) == ["split"]
    assert resolve("split[1]", infos) == ["split[1]"]
