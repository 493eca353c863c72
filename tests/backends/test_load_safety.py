"""No code runs from a model file unless the caller says ``unsafe=True``.

Every malicious file here is built by the test itself, in a temporary folder,
and first proved live: loaded the unsafe way, it does run its payload (it
creates a marker folder). Only then does the test check that multiviz refuses
it by default, through the API and the command line, and that the payload did
not run.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from multiviz.errors import UnsafeFileError
from multiviz.sources.models import load_model


class Payload:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _pickled(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def _rewrite(
    src: Path, dst: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None
) -> None:
    """Copy the zip ``src`` to ``dst``, replacing entries (named without the archive's
    root folder) and adding ``add`` (full names, as the zip stores them)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name.split("/", 1)[1], zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)


def _root(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        return z.namelist()[0].split("/")[0]


def _read(path: Path, rest: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.split("/", 1)[1] == rest)
        return z.read(name)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    import torch

    import multiviz as mv

    path = tmp_path_factory.mktemp("pt2") / "builtin.pt2"
    model = mv.builtin_model("torch")
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 64, 64),)), str(path))
    return path


def _evil_sample_inputs(exported: Path, folder: Path, marker: Path) -> Path:
    path = folder / "sample.pt2"
    _rewrite(exported, path, {"data/sample_inputs/model.pt": _pickled(marker)})
    return path


def _evil_pickled_weight(exported: Path, folder: Path, marker: Path) -> Path:
    config = json.loads(_read(exported, "data/weights/model_weights_config.json"))
    meta = next(iter(config["config"].values()))
    meta["use_pickle"] = True
    path = folder / "weights.pt2"
    _rewrite(
        exported,
        path,
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{meta['path_name']}": _pickled(marker),
        },
    )
    return path


def _evil_opaque_constant(exported: Path, folder: Path, marker: Path) -> Path:
    import pickle

    config = {
        "config": {
            "evil": {
                "path_name": "opaque_obj_0",
                "is_param": False,
                "use_pickle": True,
                "tensor_meta": None,
            }
        }
    }
    path = folder / "opaque.pt2"
    _rewrite(
        exported,
        path,
        {"data/constants/model_constants_config.json": json.dumps(config).encode()},
        {f"{_root(exported)}/data/constants/opaque_obj_0": pickle.dumps(Payload(marker))},
    )
    return path


LIVE = {
    "sample inputs that fail the safe unpickler": _evil_sample_inputs,
    "a weight marked use_pickle": _evil_pickled_weight,
    "an opaque object constant": _evil_opaque_constant,
}


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore")  # torch warns about its own fallback to weights_only=False
@pytest.mark.parametrize("kind", list(LIVE))
def test_malicious_pt2_is_live_and_refused(tmp_path, exported, kind):
    import torch

    marker = tmp_path / "ran"
    path = LIVE[kind](exported, tmp_path, marker)
    # live: torch itself runs the payload (the program may fail to load afterwards)
    try:
        torch.export.load(str(path))
    except Exception:
        pass
    assert marker.exists(), f"the crafted file ({kind}) did not run its payload: not a real attack"
    marker.rmdir()

    with pytest.raises(UnsafeFileError) as err:
        load_model(str(path))
    message = str(err.value)
    assert "--unsafe-load" in message and len(message.splitlines()[0]) <= 200
    assert not marker.exists()

    from PIL import Image

    from multiviz.cli import main

    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    for command in (["layers", path], ["maps", path, image], ["report", path, image]):
        code = main([str(c) for c in command] + ["-o", str(tmp_path / "out")] * (len(command) > 2))
        assert code == 2 and not marker.exists(), command
        assert not (tmp_path / "out").exists()


@pytest.mark.torch
@pytest.mark.parametrize(
    ("what", "entries", "message"),
    [
        ("AOTInductor library", {"data/aotinductor/model/model.so": b"\x7fELF"}, "aotinductor"),
        ("legacy fallback file", {"version": b"8.0", "serialized_state_dict.json": b""}, "outside"),
        ("custom object", {"data/constants/custom_obj_0": b"x"}, None),
    ],
)
def test_pt2_entries_that_load_code_are_refused(tmp_path, exported, what, entries, message):
    root = _root(exported)
    # entries under data/ go inside the archive's folder; the legacy format's at the top
    add = {(f"{root}/{n}" if n.startswith("data/") else n): d for n, d in entries.items()}
    replace = {}
    if what == "custom object":
        config = {
            "config": {
                "obj": {
                    "path_name": "custom_obj_0",
                    "is_param": False,
                    "use_pickle": False,
                    "tensor_meta": None,
                }
            }
        }
        replace["data/constants/model_constants_config.json"] = json.dumps(config).encode()
    path = tmp_path / "bad.pt2"
    _rewrite(exported, path, replace, add)
    with pytest.raises(UnsafeFileError, match=message or "custom_obj_0"):
        load_model(str(path))


@pytest.mark.torch
def test_pt2_duplicate_entries_and_foreign_targets_are_refused(tmp_path, exported):
    twice = tmp_path / "twice.pt2"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _rewrite(exported, twice, {}, {f"{_root(exported)}/data/sample_inputs/model.pt": b"x"})
    with pytest.raises(UnsafeFileError, match="twice"):
        load_model(str(twice))

    program = json.loads(_read(exported, "models/model.json"))
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    foreign = tmp_path / "foreign.pt2"
    _rewrite(exported, foreign, {"models/model.json": json.dumps(program).encode()})
    with pytest.raises(
        UnsafeFileError, match=r"'torch\.os\.system', which is not a PyTorch operator"
    ):
        load_model(str(foreign))


@pytest.mark.torch
def test_honest_pt2_still_loads_and_unsafe_bypasses_the_check(tmp_path, exported):
    import multiviz as mv

    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    loaded = load_model(str(exported))
    np.testing.assert_allclose(
        mv.forward(loaded.model, x), mv.forward(mv.builtin_model("torch"), x), atol=1e-6
    )
    # a checkpoint-like use_pickle payload that the safe unpickler accepts is fine
    import torch

    config = json.loads(_read(exported, "data/weights/model_weights_config.json"))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    buffer = io.BytesIO()
    torch.save(mv.builtin_model("torch").state_dict()[fqn], buffer)
    path = tmp_path / "pickled-tensor.pt2"
    _rewrite(
        exported,
        path,
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{meta['path_name']}": buffer.getvalue(),
        },
    )
    from multiviz.backends.torch.load import check_exported_archive

    check_exported_archive(path)  # passes: the payload is plain tensors


@pytest.mark.keras
def test_h5_with_any_lambda_layer_is_refused(tmp_path):
    import keras

    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t + 1, name="plus_one")(inputs))
    path = tmp_path / "lambda.h5"
    model.save(path)
    with pytest.raises(UnsafeFileError, match=r"Lambda layers \['plus_one'\]") as err:
        load_model(str(path))
    assert err.value.args[0].splitlines()[1].startswith("hint:")
    assert load_model(str(path), unsafe=True).model.layers[-1].name == "plus_one"
