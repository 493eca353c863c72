"""Loading PyTorch models for :func:`multiviz.sources.models.load_model`.

One function per source: the built-in CNN, ``torchvision.models``, a
``torch.export`` program (``.pt2``), a TorchScript archive, and a
``torch.save`` file (a state dict plus ``--arch``; a whole pickled model only
when the caller allows unsafe loading).

Safety, unless the caller passed ``unsafe=True``:

- :func:`torch.load` always runs with ``weights_only=True`` (tensors and plain
  containers only).
- A ``torch.export`` program (``.pt2``) is inspected before torch sees it, since
  :func:`torch.export.load` unpickles parts of the archive with
  ``weights_only=False`` (sample inputs that fail the safe unpickler, weights
  marked ``"use_pickle": true``, custom and opaque objects) and loads compiled
  AOTInductor libraries. :func:`check_exported_archive` refuses every entry
  that would unpickle beyond ``weights_only=True``, every entry torch would
  load as native code, and graph targets outside PyTorch's operator namespaces.
- A TorchScript archive is code by design: it loads, and the loaded model
  carries a note saying so.
"""

from __future__ import annotations

import io
import json
import re
import urllib.error
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multiviz.errors import ModelLoadError, NoNetworkError, UnsafeFileError, closest
from multiviz.sources.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from multiviz.sources.models import LoadedModel, ModelSpec, builtin_arch, builtin_weights

__all__ = ["check_exported_archive", "load"]

_BUILTIN_PRESET = Preprocess("builtin", size=(64, 64), layout="channels_first")
_IMAGENET_PRESET = Preprocess(
    "imagenet", size=(224, 224), resize_shorter=256, mean=IMAGENET_MEAN, std=IMAGENET_STD
)
_PLAIN_PRESET = Preprocess("[0, 1]", size=(224, 224), layout="channels_first")


def load(spec: ModelSpec, *, weights: str, arch: str | None, unsafe: bool) -> LoadedModel:
    """Load ``spec`` (a torch-side :class:`~multiviz.sources.models.ModelSpec`).

    Raises:
        ModelLoadError: the file or name does not load; the message says why.
        UnsafeFileError: only ``unsafe=True`` would load it.
        NoNetworkError: default weights could not be downloaded.
    """
    if spec.kind == "builtin":
        return _builtin(spec, weights)
    if spec.kind == "torchvision":
        model, preset, classes = _torchvision(spec.name, weights)
        classes = None if weights == "none" else classes  # random weights: the names mean nothing
        return LoadedModel(model.eval(), "torch", spec, preset, (3, None, None), classes)
    if spec.kind == "torch_export":
        if not unsafe:
            check_exported_archive(Path(spec.name))
        return _exported(spec)
    if spec.kind == "torchscript":
        return _torchscript(spec)
    return _pickled(spec, arch, unsafe)


# --------------------------------------------------------------------------- named models


def _builtin(spec: ModelSpec, weights: str) -> LoadedModel:
    from multiviz.sources.builtin import BUILTIN_CLASSES, builtin_model

    model = builtin_model("torch", weights=builtin_weights(weights), arch=builtin_arch(spec))
    return LoadedModel(model, "torch", spec, _BUILTIN_PRESET, (3, None, None), BUILTIN_CLASSES)


def _torchvision(name: str, weights: str) -> tuple[nn.Module, Preprocess, list[str] | None]:
    """The model, torchvision's preprocessing recipe for it, and its class names."""
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        near = closest(name, available, n=3)
        raise ModelLoadError(
            f"torchvision has no classification model {name!r}."
            + (f" Did you mean {near}?" if near else "")
            + " See torchvision.models.list_models() for all names."
        )
    enum = torchvision.models.get_model_weights(name)
    default = enum.DEFAULT
    preset = _torchvision_preset(default)
    classes = default.meta.get("categories")
    if weights == "none":
        return torchvision.models.get_model(name, weights=None), preset, classes
    if weights == "default":
        try:
            model = torchvision.models.get_model(name, weights="DEFAULT")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            raise NoNetworkError(
                f"Could not download the default weights of torchvision:{name} ({default.url}): "
                f"no network ({_short(err)}). Pass --weights PATH of a locally saved state dict "
                "(torch.save(model.state_dict(), PATH)), or --weights none for random weights."
            ) from err
        return model, preset, classes
    model = torchvision.models.get_model(name, weights=None)
    state = _load_state_dict(Path(weights), unsafe=False)
    _fit_state_dict(model, state, Path(weights), f"torchvision:{name}")
    return model, preset, classes


def _torchvision_preset(weights_enum_member: Any) -> Preprocess:
    """The recipe torchvision's own ``weights.transforms()`` applies."""
    try:
        tf = weights_enum_member.transforms()
        crop = int(tf.crop_size[0])
        shorter = int(tf.resize_size[0])
        return Preprocess(
            "imagenet",
            size=(crop, crop),
            resize_shorter=shorter,
            mean=tuple(float(v) for v in tf.mean),
            std=tuple(float(v) for v in tf.std),
        )
    except (AttributeError, TypeError, IndexError):  # not an image-classification transform
        return _IMAGENET_PRESET


# --------------------------------------------------------------------------- saved files


def _exported(spec: ModelSpec) -> LoadedModel:
    try:
        program = torch.export.load(spec.name)
    except Exception as err:
        raise ModelLoadError(
            f"{spec.text!r} could not be read as a torch.export program ({_short(err)}). "
            "Save one with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')."
        ) from err
    notes: list[str] = []
    try:
        model = _unflatten(program)
    except Exception as err:  # some programs cannot be unflattened: only the output is usable
        model = program.module()
        notes.append(f"The program could not be split into its layers ({_short(err)}).")
    shape = None
    example = getattr(program, "example_inputs", None)
    if example and example[0] and isinstance(example[0][0], torch.Tensor):
        shape = tuple(int(d) for d in example[0][0].shape[1:])
    preset = _PLAIN_PRESET
    if shape is not None and len(shape) == 3:
        preset = Preprocess("[0, 1]", size=(shape[1], shape[2]), layout="channels_first")
    return LoadedModel(model, "torch", spec, preset, shape, None, notes)


# What a torch.export archive may hold, relative to its one root folder. Anything
# else (data/aotinductor/ holds shared libraries torch dlopens, data/executorch/,
# xl_model_weights/, the legacy format's top-level files) is refused.
_PT2_ALLOWED = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/[^/]+|models/[^/]+\.json"
    r"|data/weights/[^/]+|data/constants/[^/]+|data/sample_inputs/[^/]+\.pt|extra/.+)"
)
# Graph targets torch's deserializer resolves by attribute lookup from these roots.
_PT2_TARGET = re.compile(
    r"(torch\.ops(\.[A-Za-z_][A-Za-z0-9_]*){2,3}|_operator\.[A-Za-z_][A-Za-z0-9_]*"
    r"|math\.[A-Za-z_][A-Za-z0-9_]*|torch\.sym_[A-Za-z_][A-Za-z0-9_]*)"
)


def check_exported_archive(path: Path) -> None:
    """Refuse a ``.pt2`` whose loading by :func:`torch.export.load` could run code.

    Checked before torch reads the file:

    - the archive has one root folder and no name twice (so Python's view of
      it is the one torch's reader has);
    - every entry is one torch.export writes for a program (no AOTInductor
      shared libraries, no legacy-format files torch falls back to);
    - every payload torch would unpickle (sample inputs, legacy weight and
      constant files, entries a weights or constants config marks
      ``"use_pickle": true``) loads with ``torch.load(weights_only=True)``;
    - no custom (TorchBind) or opaque object constants, which torch unpickles
      without restriction;
    - every graph node's target lies in ``torch.ops``, ``_operator``, ``math``
      or the ``torch.sym_*`` functions, with no dunder attribute on the way.

    Raises:
        UnsafeFileError: the archive holds something on this list; the message
            names the entry and says to pass ``unsafe=True`` (``--unsafe-load``)
            only for a trusted file.
        ModelLoadError: the archive is not a readable zip file.

    Example:
        >>> check_exported_archive(Path("no-such.pt2"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ModelLoadError: 'no-such.pt2' could not be read as a torch.export archive...
    """
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _archive_entries(path, archive)
            for name in entries:
                if not _PT2_ALLOWED.fullmatch(name):
                    _refuse(path, f"holds {name!r}, which torch.export.load would load as code")
            configs = {n: _json(path, archive, e) for n, e in entries.items() if _is_config(n)}
            for name, entry in entries.items():
                if name.startswith("data/sample_inputs/") or (
                    name.endswith(".pt") and name.count("/") == 2 and name.startswith("data/")
                ):
                    _check_safe_pickle(path, name, archive.read(entry))
            for config_name, config in configs.items():
                folder = config_name.rsplit("/", 1)[0]
                for fqn, meta in _payloads(config):
                    file_name = str(meta.get("path_name", ""))
                    if file_name.startswith(("custom_obj_", "opaque_obj_")):
                        _refuse(path, f"holds the pickled object {fqn!r} ({file_name})")
                    if meta.get("use_pickle"):
                        entry = entries.get(f"{folder}/{file_name}")
                        if entry is None:
                            _refuse(path, f"marks {fqn!r} as pickled but lacks its file")
                        _check_safe_pickle(path, f"{folder}/{file_name}", archive.read(entry))
            for name, entry in entries.items():
                if name.startswith("models/"):
                    for target in _targets(_json(path, archive, entry)):
                        if "__" in target or not _PT2_TARGET.fullmatch(target):
                            _refuse(path, f"calls {target!r}, which is not a PyTorch operator")
    except zipfile.BadZipFile as err:
        raise ModelLoadError(
            f"{str(path)!r} could not be read as a torch.export archive ({_short(err)})."
        ) from err
    except OSError as err:
        raise ModelLoadError(
            f"{str(path)!r} could not be read as a torch.export archive ({_short(err)})."
        ) from err


def _archive_entries(path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    """Entry name without its root folder -> the zip's own name; one root, no repeats."""
    entries: dict[str, str] = {}
    roots = set()
    for info in archive.infolist():
        root, sep, rest = info.filename.partition("/")
        if not sep or not rest:
            if info.is_dir():
                continue
            _refuse(path, f"holds {info.filename!r} outside the archive's folder")
        roots.add(root)
        if rest in entries:
            _refuse(path, f"holds {rest!r} twice")
        if not info.is_dir():
            entries[rest] = info.filename
    if len(roots) > 1:
        _refuse(path, f"has several root folders {sorted(roots)[:3]}")
    return entries


def _is_config(name: str) -> bool:
    return name.startswith(("data/weights/", "data/constants/")) and name.endswith("config.json")


def _json(path: Path, archive: zipfile.ZipFile, entry: str) -> Any:
    try:
        return json.loads(archive.read(entry))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelLoadError(
            f"{str(path)!r} holds {entry!r}, which is not valid JSON ({_short(err)})."
        ) from err


def _payloads(config: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    if isinstance(entries, dict):
        for fqn, meta in entries.items():
            if isinstance(meta, dict):
                yield str(fqn), meta


def _targets(node: Any) -> Iterator[str]:
    """Every graph node's ``target`` string, nested graphs included."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str):
                yield item["target"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_safe_pickle(path: Path, name: str, data: bytes) -> None:
    """Refuse a payload that ``torch.load(weights_only=True)`` rejects."""
    if not data:
        return
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        _refuse(path, f"holds {name!r}, a pickle that needs weights_only=False")


def _refuse(path: Path, why: str) -> None:
    raise UnsafeFileError(
        f"{path.name!r} {why}; loading it could run code stored in the file.\n"
        "hint: re-export the model with torch.export.save, or pass --unsafe-load "
        "(unsafe=True) only if you trust the file."
    )


def _unflatten(program: Any) -> nn.Module:
    """The program with its module hierarchy back, so forward hooks on layers fire.

    ``program.module()`` runs one flat graph and never calls its submodules;
    :func:`torch.export.unflatten` calls one sub-graph per original module.
    Each sub-module's class is renamed after the original class (read from
    the graph's ``nn_module_stack``), so a layer lists as ``Conv2d`` rather
    than ``InterpreterModule``. It does not derive from the original class:
    the original's attributes (``in_channels``, …) are not in the program.
    """
    model = torch.export.unflatten(program)
    original: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, type_name in node.meta.get("nn_module_stack", {}).values():
            original.setdefault(
                path, type_name if isinstance(type_name, str) else _qualname(type_name)
            )
    for name, module in model.named_modules():
        type_name = original.get(name.split("@")[0])
        if name and type_name:
            module.__class__ = _renamed_class(type(module), type_name)
    return model.eval()


_RENAMED: dict[tuple[type, str], type] = {}


def _renamed_class(base: type, type_name: str) -> type:
    key = (base, type_name)
    if key not in _RENAMED:
        module_name, _, cls_name = type_name.rpartition(".")
        attrs = {"__module__": module_name or base.__module__, "__qualname__": cls_name}
        _RENAMED[key] = type(cls_name, (base,), attrs)
    return _RENAMED[key]


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', cls)}"


def _torchscript(spec: ModelSpec) -> LoadedModel:
    try:
        model = torch.jit.load(spec.name, map_location="cpu")
    except Exception as err:
        raise ModelLoadError(
            f"{spec.text!r} could not be read as a TorchScript archive ({_short(err)}). "
            "Save one with torch.jit.save(torch.jit.script(model), 'model.pt')."
        ) from err
    notes = [
        "TorchScript models run as a whole: PyTorch cannot hook their inner layers, so only "
        "the model's output is available. For feature maps, save the model with torch.export "
        "(.pt2) or as a state dict with --arch.",
        "TorchScript archives are code: the model runs what the file holds. Use only archives "
        "you trust.",
    ]
    return LoadedModel(
        model.eval(), "torch", spec, _PLAIN_PRESET, None, None, notes, capturable=False
    )


def _pickled(spec: ModelSpec, arch: str | None, unsafe: bool) -> LoadedModel:
    path = Path(spec.name)
    obj = _load_state_dict(path, unsafe=unsafe)
    if isinstance(obj, nn.Module):  # only reachable with unsafe=True
        return LoadedModel(obj.eval(), "torch", spec, _PLAIN_PRESET, None, None)
    if arch is None:
        raise ModelLoadError(
            f"{spec.text!r} holds parameters only (a state dict), not a network. Say which "
            "network they belong to with --arch torchvision:NAME (or --arch builtin)."
        )
    if arch == "builtin":
        from multiviz.sources.builtin import BUILTIN_CLASSES, builtin_model

        model = builtin_model("torch", weights=None)
        _fit_state_dict(model, obj, path, arch)
        return LoadedModel(
            model.eval(), "torch", spec, _BUILTIN_PRESET, (3, None, None), BUILTIN_CLASSES
        )
    prefix, _, name = arch.partition(":")
    if prefix != "torchvision" or not name:
        raise ModelLoadError(
            f"--arch must be torchvision:NAME or builtin. Received: --arch {arch!r}"
        )
    model, preset, classes = _torchvision(name, "none")
    _fit_state_dict(model, obj, path, arch)
    return LoadedModel(model.eval(), "torch", spec, preset, (3, None, None), classes)


def _load_state_dict(path: Path, unsafe: bool) -> Any:
    """``torch.load`` with ``weights_only=True`` unless ``unsafe``; unwraps checkpoints."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as err:
        if not unsafe and "weights_only" in str(err).lower().replace(" ", "_"):
            raise UnsafeFileError(
                f"{str(path)!r} is a pickled Python object (e.g. a whole model saved with "
                "torch.save(model)), and loading it would run code stored in the file. Save a state "
                "dict instead (torch.save(model.state_dict(), PATH)) and pass --arch, or pass "
                "--unsafe-load if you trust the file."
            ) from err
        raise ModelLoadError(
            f"{str(path)!r} could not be read with torch.load ({_short(err)}); it is corrupt or "
            "not a PyTorch file."
        ) from err
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        return {(k[7:] if str(k).startswith("module.") else k): v for k, v in obj.items()}
    if isinstance(obj, nn.Module):
        return obj
    raise ModelLoadError(
        f"{str(path)!r} holds a {type(obj).__name__}, not a state dict or a model. "
        "Save one with torch.save(model.state_dict(), PATH)."
    )


def _fit_state_dict(model: nn.Module, state: Any, path: Path, arch: str) -> None:
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelLoadError(f"{str(path)!r} is not a state dict (name -> tensor).")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {_few(missing)}")
        if unexpected:
            details.append(f"unexpected {_few(unexpected)}")
        if wrong:
            details.append(
                "wrong shape "
                + ", ".join(
                    f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]
                )
            )
        raise ModelLoadError(
            f"{str(path)!r} does not fit {arch} ({'; '.join(details)}). "
            "Pass the --arch the weights were trained with."
        )
    model.load_state_dict(state)


def _few(keys: list[str]) -> str:
    return str(keys[:3])[:-1] + (f", … {len(keys) - 3} more]" if len(keys) > 3 else "]")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
