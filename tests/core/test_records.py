"""The framework-free records: LayerTable and Activations."""

from __future__ import annotations

import numpy as np
import pytest

from multiviz.core.records import Activations, LayerInfo, LayerTable
from multiviz.errors import LayerNotFoundError

TABLE = LayerTable(
    [
        LayerInfo("conv1", "Conv2d", "conv", (None, 8, 32, 30), 224),
        LayerInfo("fc", "Linear", "dense", None, 1_000_000),
    ]
)


def test_layer_table_prints_one_aligned_row_per_layer() -> None:
    lines = str(TABLE).splitlines()
    assert lines[0].split() == ["name", "type", "kind", "output", "shape", "params"]
    assert lines[1].split()[:3] == ["conv1", "Conv2d", "conv"]
    assert "(None, 8, 32, 30)" in lines[1] and lines[1].endswith("224")
    assert lines[2].split()[3] == "?" and lines[2].endswith("1,000,000")
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_layer_table_is_a_list_and_slices_stay_tables() -> None:
    assert isinstance(TABLE, list) and TABLE[0].name == "conv1"
    assert isinstance(TABLE[:1], LayerTable) and len(TABLE[:1]) == 1


def test_activations_mapping_and_missing_name() -> None:
    acts = Activations({"conv1": np.zeros((1, 2, 3, 4), np.float32)}, "torch")
    assert list(acts) == ["conv1"] and len(acts) == 1
    assert "conv1" in repr(acts) and "(1, 2, 3, 4)" in repr(acts)
    with pytest.raises(LayerNotFoundError, match="Did you mean 'conv1'"):
        acts["conv"]
