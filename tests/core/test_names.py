"""The layer-key grammar: exact names, globs, kinds, call/output suffixes, selection, errors."""

from __future__ import annotations

import pytest

from multiviz.core.names import Request, layers_of, owner, requests, resolve, select, split_suffix
from multiviz.core.records import LayerInfo
from multiviz.errors import LayerNotFoundError, MultivizError

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
    infos = [
        LayerInfo("split[0]", "Split", "other", base="split"),
        LayerInfo("split[1]", "Split", "other", base="split"),
    ]
    assert resolve("split", infos) == ["split"]
    assert resolve("split[1]", infos) == ["split[1]"]


# --------------------------------------------------------------------------- precedence


def test_an_exact_name_wins_over_reading_a_suffix() -> None:
    # a PyTorch module may literally be named "conv[3x3]": it is that module,
    # not output "3x3" of a module "conv"
    infos = [LayerInfo("conv", "Conv2d", "conv"), LayerInfo("conv[3x3]", "Conv2d", "conv")]
    (exact,) = requests("conv[3x3]", infos)
    assert (exact.layer, exact.suffix) == ("conv[3x3]", "")
    assert layers_of(requests(["conv", "conv[3x3]"], infos)) == ["conv", "conv[3x3]"]
    # both captured at once: each key goes to its own layer, the longest name first
    got = {"conv": 1, "conv#1": 2, "conv[3x3]": 3, "conv[3x3]#1": 4}
    assert select(got, requests(["conv", "conv[3x3]#1"], infos)) == {
        "conv": 1,
        "conv#1": 2,
        "conv[3x3]#1": 4,
    }


def test_call_then_output_suffixes_are_read_against_the_layer_names() -> None:
    infos = [LayerInfo("relu", "ReLU", "activation"), LayerInfo("lstm", "LSTM", "other")]
    assert [(r.layer, r.suffix) for r in requests(["relu#1", "lstm[1][0]"], infos)] == [
        ("relu", "#1"),
        ("lstm", "[1][0]"),
    ]
    assert owner("relu#1[0]", {"relu"}) == ("relu", "#1[0]")
    assert owner("relux", {"relu"}) is None
    with pytest.raises(LayerNotFoundError, match="No layer named 'rel#1'"):
        requests("rel#1", infos)


def test_select_keeps_what_was_asked_in_the_backends_order() -> None:
    got = {"relu": 0, "lstm[0]": 1, "relu#1": 2, "lstm[1][0]": 3, "lstm#1[0]": 4}
    asked = [Request("relu", "relu"), Request("lstm[1]", "lstm", "[1]")]
    assert list(select(got, asked)) == ["relu", "relu#1", "lstm[1][0]"]
    assert list(select(got, [Request("lstm#1", "lstm", "#1")])) == ["lstm#1[0]"]


def test_an_explicit_key_that_did_not_happen_is_an_error_with_the_real_count() -> None:
    got = {"relu": 0, "relu#1": 1}
    with pytest.raises(LayerNotFoundError, match=r"(?s)'relu' ran 2 times.*relu, relu#1"):
        select(got, [Request("relu#2", "relu", "#2")])
    with pytest.raises(LayerNotFoundError, match="'head' did not run"):
        select(got, [Request("head", "head")])
    # a glob or a kind returns what ran, silently
    assert select(got, [Request("head", "head", explicit=False)]) == {}
