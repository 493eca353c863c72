"""Loading Keras models for :func:`multiviz.sources.models.load_model`.

Sources: the built-in CNN, ``keras.applications`` (with that application's own
``preprocess_input``), and saved ``.keras`` / ``.h5`` files. Saved files load
with ``safe_mode=True``: a ``Lambda`` layer holding Python bytecode is refused
unless the caller allows unsafe loading. A legacy ``.h5`` model is refused
before Keras reads it if its configuration holds any ``Lambda`` layer: the
legacy format can name a function by module and attribute, which Keras would
import and call.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from multiviz.errors import ModelLoadError, NoNetworkError, UnsafeFileError, closest
from multiviz.sources.images import Preprocess
from multiviz.sources.models import LoadedModel, ModelSpec, builtin_arch, builtin_weights

__all__ = ["load"]

_BUILTIN_PRESET = Preprocess("builtin", size=(64, 64), layout="channels_last")


def load(spec: ModelSpec, *, weights: str, arch: str | None, unsafe: bool) -> LoadedModel:
    """Load ``spec`` (a Keras-side :class:`~multiviz.sources.models.ModelSpec`).

    Raises:
        ModelLoadError: the file or name does not load; the message says why.
        UnsafeFileError: only ``unsafe=True`` would load it.
        NoNetworkError: default weights could not be downloaded.
    """
    if spec.kind == "builtin":
        from multiviz.sources.builtin import BUILTIN_CLASSES, builtin_model

        model = builtin_model("keras", weights=builtin_weights(weights), arch=builtin_arch(spec))
        shape = _input_shape(model)
        return LoadedModel(model, "keras", spec, _BUILTIN_PRESET, shape, BUILTIN_CLASSES)
    if spec.kind == "keras_app":
        return _application(spec, weights)
    return _saved(spec, unsafe)


def _application(spec: ModelSpec, weights: str) -> LoadedModel:
    apps = {n: getattr(keras.applications, n) for n in dir(keras.applications) if n[:1].isupper()}
    by_lower = {n.lower(): n for n in apps}
    name = spec.name if spec.name in apps else by_lower.get(spec.name.lower())
    if name is None:
        near = closest(spec.name, apps, n=3)
        raise ModelLoadError(
            f"keras.applications has no model {spec.name!r}."
            + (f" Did you mean {near}?" if near else "")
            + "\nhint: list the models with "
            'python -c "import keras; print(dir(keras.applications))"'
        )
    builder = apps[name]
    chosen = {"none": None, "default": "imagenet"}.get(weights, weights)
    try:
        model = builder(weights=chosen)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise _no_network(spec, err) from err
    except Exception as err:
        if weights == "default" and _looks_like_download_failure(err):
            raise _no_network(spec, err) from err
        if chosen not in (None, "imagenet"):
            raise ModelLoadError(
                f"The weights file {weights!r} does not fit keras:{name} ({_short(err)}). Save "
                f"weights with keras.applications.{name}(...).save_weights('model.weights.h5')."
            ) from err
        raise
    module = importlib.import_module(builder.__module__)
    shape = _input_shape(model)
    size = (shape[0], shape[1]) if shape and shape[0] and shape[1] else (224, 224)
    preset = Preprocess(
        f"keras.applications.{module.__name__.rsplit('.', 1)[-1]}",
        size=size,
        transform=module.preprocess_input,
        layout="channels_last",
    )
    return LoadedModel(model, "keras", spec, preset, shape, None)


def _saved(spec: ModelSpec, unsafe: bool) -> LoadedModel:
    if not unsafe and Path(spec.name).suffix.lower() in (".h5", ".hdf5"):
        lambdas = _h5_lambda_layers(spec)
        if lambdas:
            raise UnsafeFileError(
                f"{spec.text!r} holds Lambda layers {lambdas[:3]}; loading them could run code "
                "stored in the file.\nhint: save the model without Lambda layers "
                "(model.save('model.keras')), or pass --unsafe-load (unsafe=True) only if you "
                "trust the file."
            )
    try:
        model = keras.saving.load_model(spec.name, compile=False, safe_mode=not unsafe)
    except ValueError as err:
        if "safe_mode" in str(err):
            raise UnsafeFileError(
                f"{spec.text!r} holds Python code (a Lambda layer), and loading it would run that "
                "code. Pass --unsafe-load if you trust the file."
            ) from err
        raise _unreadable(spec, err) from err
    except Exception as err:
        raise _unreadable(spec, err) from err
    shape = _input_shape(model)
    channels_last = _channels_last(model)
    size = None
    if shape is not None and len(shape) == 3:
        h, w = (shape[0], shape[1]) if channels_last else (shape[1], shape[2])
        size = (h, w) if h and w else None
    preset = Preprocess(
        "[0, 1]",
        size=size or (224, 224),
        layout="channels_last" if channels_last else "channels_first",
    )
    return LoadedModel(model, "keras", spec, preset, shape, None)


def _h5_lambda_layers(spec: ModelSpec) -> list[str]:
    """Names of the ``Lambda`` layers in a legacy ``.h5`` model's configuration."""
    import h5py

    try:
        with h5py.File(spec.name, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as err:
        raise _unreadable(spec, err) from err
    if raw is None:
        return []
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except ValueError as err:
        raise _unreadable(spec, err) from err
    return [
        str(item.get("config", {}).get("name", "?"))
        if isinstance(item.get("config"), dict)
        else "?"
        for item in _config_items(config)
        if item.get("class_name") == "Lambda"
    ]


def _config_items(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a nested Keras configuration."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _input_shape(model: Any) -> tuple[int | None, ...] | None:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):  # several inputs: multiviz feeds the first
        shape = shape[0]
    return tuple(shape[1:]) if shape is not None else None


def _channels_last(model: Any) -> bool:
    for layer in model.layers:
        fmt = getattr(layer, "data_format", None)
        if fmt is not None:
            return fmt == "channels_last"
    return True


def _no_network(spec: ModelSpec, err: BaseException) -> NoNetworkError:
    return NoNetworkError(
        f"Could not download the ImageNet weights of {spec.text}: no network ({_short(err)}). "
        f"Pass --weights PATH of a locally saved weights file "
        f"(model.save_weights('model.weights.h5')), or --weights none for random weights."
    )


def _looks_like_download_failure(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(w in text for w in ("url", "fetch", "download", "connection", "resolve", "network"))


def _unreadable(spec: ModelSpec, err: BaseException) -> ModelLoadError:
    suffix = Path(spec.name).suffix
    return ModelLoadError(
        f"{spec.text!r} could not be loaded as a Keras {suffix} model ({_short(err)}). "
        "It may be corrupt, or need custom layers; save it with model.save('model.keras')."
    )


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
