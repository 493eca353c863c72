"""The same network in two frameworks, layer by layer: running both, measuring each pair.

:func:`compare` runs one batch through both models, captures every layer,
pairs the layers (:mod:`multiviz.parity.pairing`), and measures each pair
(:mod:`multiviz.parity.metrics`) on the canonical channels-first arrays, into a
:class:`~multiviz.parity.report.ParityReport`. :func:`compare_activations`
does the same from arrays already captured, with no framework at all.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from multiviz.core.names import owner
from multiviz.core.params import names_parameters
from multiviz.core.weight_layouts import LayerParams
from multiviz.errors import InputShapeError
from multiviz.parity.metrics import array_metrics
from multiviz.parity.pairing import LayerSpec, PairsArg, pair_layers, param_signature
from multiviz.parity.report import LayerParity, ParityReport, fmt_shape

__all__ = ["compare", "compare_activations"]

_NAN = float("nan")


# --------------------------------------------------------------------------- measuring


def _measure(
    index: int,
    ref: np.ndarray,
    cand: np.ndarray,
    names: tuple[str, str],
    kind: str,
    atol: float,
    rtol: float,
    cka: str,
    notes: list[str],
) -> LayerParity:
    shape_a, shape_b = tuple(ref.shape), tuple(cand.shape)
    if shape_a != shape_b:
        if ref.size == cand.size and np.squeeze(ref).shape == np.squeeze(cand).shape:
            cand = cand.reshape(ref.shape)  # (N, C, 1, 1) vs (N, C): same values
            notes.append(
                f"size-1 axes differ ({fmt_shape(shape_a)} vs {fmt_shape(shape_b)}); compared as {fmt_shape(shape_a)}"
            )
        else:
            return LayerParity(
                index, *names, kind, shape_a, shape_b, _NAN, _NAN, _NAN, _NAN, _NAN,
                (int((~np.isfinite(ref)).sum()), int((~np.isfinite(cand)).sum())),
                False, f"shapes differ: {fmt_shape(shape_a)} vs {fmt_shape(shape_b)}", tuple(notes),
            )  # fmt: skip
    m = array_metrics(cand, ref, atol=atol, rtol=rtol, cka_mode=cka)
    reasons = []
    if not m.nonfinite_match:
        reasons.append(
            f"NaN/Inf differ ({m.nonfinite_b} in {names[0]!r}, {m.nonfinite_a} in {names[1]!r})"
        )
    elif m.nonfinite_a:
        notes.append(f"{m.nonfinite_a} NaN/Inf on both sides, at the same places")
    if m.worst_excess > 0:
        reasons.append(
            f"max|diff| {m.max_abs:.3g} exceeds atol + rtol*|ref| (by up to {m.worst_excess:.3g}); "
            f"rel err {m.rel_err:.3g}"
        )
    return LayerParity(
        index, *names, kind, shape_a, shape_b, m.max_abs, m.rel_err, m.cosine, m.pearson, m.cka,
        (m.nonfinite_b, m.nonfinite_a), not reasons, "; ".join(reasons), tuple(notes),
    )  # fmt: skip


def _layer(key: str, layers: Collection[str]) -> str:
    """The layer a captured key belongs to (itself when it is none of ``layers``)."""
    read = owner(key, layers)
    return read[0] if read else key


def _channels_last_flatten_to_first(arr: np.ndarray, flatten_from: tuple[int, ...]) -> np.ndarray:
    n = arr.shape[0]
    return np.moveaxis(arr.reshape(n, *flatten_from), -1, 1).reshape(n, -1)


def compare_activations(
    acts_a: Mapping[str, np.ndarray],
    acts_b: Mapping[str, np.ndarray],
    pairs: PairsArg = "auto",
    *,
    specs: tuple[Sequence[LayerSpec], Sequence[LayerSpec]] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    cka: str = "auto",
    labels: tuple[str, str] = ("a", "b"),
    flatten_from: tuple[Mapping[str, tuple[int, ...]], Mapping[str, tuple[int, ...]]] = ({}, {}),
    notes: tuple[Mapping[str, str], Mapping[str, str]] = ({}, {}),
) -> ParityReport:
    """Build a :class:`ParityReport` from arrays already captured (no framework needed).

    Args:
        acts_a, acts_b: name -> canonical array, in execution order; ``a`` is
            the reference.
        pairs: see :func:`compare`.
        specs: per-side :class:`~multiviz.parity.pairing.LayerSpec` lists for
            structural pairing; default: names only, kind ``"other"``.
        atol, rtol, cka: see :func:`compare`.
        labels: names of the two sides for the table.
        flatten_from: per side, layer name -> ``(*spatial, C)`` for Flatten
            outputs of a channels-last map; they are reordered to
            channels-first order before comparing.
        notes: per side, layer name -> a caveat to print with its pair.

    Returns:
        The report.

    Example:
        >>> a = {"conv": np.ones((2, 3, 4, 5), np.float32)}
        >>> b = {"conv": np.ones((2, 3, 4, 5), np.float32) + 1e-6}
        >>> compare_activations(a, b).passed
        True
    """
    _check_tolerances(atol, rtol)
    if specs is None:
        specs = ([LayerSpec(n) for n in acts_a], [LayerSpec(n) for n in acts_b])
    pairing = pair_layers(specs[0], specs[1], pairs, labels)
    kinds = {s.name: s.kind for s in specs[0]}
    rows = []
    for k, pair in enumerate(pairing.pairs):
        ref = np.asarray(acts_a[pair.a])
        cand = np.asarray(acts_b[pair.b])
        row_notes = [pair.note] if pair.note else []
        for side, name in ((0, pair.a), (1, pair.b)):
            note = notes[side].get(_layer(name, notes[side]))
            if note:
                row_notes.append(f"{labels[side]}: {note}")
            src = flatten_from[side].get(_layer(name, flatten_from[side]))
            arr = ref if side == 0 else cand
            if src and arr.ndim == 2 and arr.shape[1] == math.prod(src):
                arr = _channels_last_flatten_to_first(arr, src)
                row_notes.append(
                    f"{labels[side]} Flatten of a channels-last map: compared in channels-first order"
                )
                ref, cand = (arr, cand) if side == 0 else (ref, arr)
        rows.append(
            _measure(
                k,
                ref,
                cand,
                (pair.a, pair.b),
                kinds.get(pair.a, "other"),
                atol,
                rtol,
                cka,
                row_notes,
            )
        )
    return ParityReport(
        rows, list(pairing.unpaired), atol, rtol, labels, pairing.strategy,
        (dict(acts_a), dict(acts_b)),
    )  # fmt: skip


# --------------------------------------------------------------------------- the models


def _inputs(x: Any, models: tuple[Any, Any], backends: tuple[Any, Any]) -> tuple[Any, Any]:
    from multiviz.core.layout import to_channels_last

    if isinstance(x, tuple | list) and len(x) == 2:
        return x[0], x[1]
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim < 2:
        raise InputShapeError(
            "`x` must be a batch of numbers in PyTorch's layout (N, C, H, W), or a pair "
            f"(x_a, x_b), one per model. Received: x={x!r:.60}"
            + (
                "\nhint: read the image first: mv.load_images(path, Preprocess(size=(H, W))).inputs"
                if isinstance(x, str)
                else ""
            )
        )
    out = []
    for model, backend in zip(models, backends, strict=True):
        layout = backend.input_layout(model)
        last = layout == "channels_last" and arr.ndim >= 3
        if last and arr.ndim != 4 and not _has_convolution(model, backend):
            last = False  # a sequence (N, T, F) is the same in every framework
        out.append(to_channels_last(arr) if last else arr)
    return out[0], out[1]


def _has_convolution(model: Any, backend: Any) -> bool:
    """True when the model has a convolution: then a rank-3 input is a 1-D map ``(N, C, L)``."""
    return any(info.kind == "conv" for info in backend.layers(model))


def _specs(
    model: Any, acts: Mapping[str, np.ndarray], params: Sequence[LayerParams]
) -> tuple[list[LayerSpec], dict[str, tuple[int, ...]], dict[str, str]]:
    import multiviz

    listed = multiviz.layers(model)
    infos = {i.name: i for i in listed}
    by_name = {p.name: p for p in params}
    rank = {p.name: k for k, p in enumerate(params)}
    layers = {i.base for i in listed} | set(by_name)
    keys = list(acts)
    bases = [_layer(k, layers) for k in keys]
    if any(p.framework == "keras" for p in params) and all(b in rank for b in bases):
        # Keras lists a graph's layers by depth: use the weights backend's walk, which
        # follows one branch to its end like a PyTorch forward() does
        position = {k: (rank[b], n) for n, (k, b) in enumerate(zip(keys, bases, strict=True))}
        keys.sort(key=position.__getitem__)
    specs, flats, notes = [], {}, {}
    for key in keys:
        base = _layer(key, layers)
        info, p = infos.get(base), by_name.get(base)
        kind = info.kind if info is not None else "other"
        typ = info.type if info is not None else (p.type if p else "")
        if typ == "InputLayer":
            continue
        specs.append(LayerSpec(key, kind, typ, param_signature(p)))
        if p is not None and p.framework == "keras":
            shape = p.config.get("input_shape")
            if typ == "Flatten" and p.config.get("data_format") == "channels_last" and shape:
                if len(shape) >= 2 and all(s is not None for s in shape):
                    flats[base] = tuple(int(s) for s in shape)
            if p.config.get("activation"):
                notes[base] = f"applies activation={p.config['activation']!r} inside the layer"
    return specs, flats, notes


@names_parameters
def compare(
    model_a: Any,
    model_b: Any,
    x: Any,
    pairs: PairsArg = "auto",
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    cka: str = "auto",
) -> ParityReport:
    """Run ``x`` through both models and compare them layer by layer.

    Args:
        model_a: the reference model (``torch.nn.Module`` or Keras model).
        model_b: the model to check against it (usually the other framework).
        x: one batch as a NumPy array in the channels-first layout
            ``(N, C, H, W)``; it is transposed for a channels-last model (a
            rank-3 batch only when the model has a convolution: ``(N, C, L)``;
            without one it is a sequence ``(N, T, F)``, passed as it is). Or a
            tuple ``(x_a, x_b)`` of inputs already in each model's own layout.
        pairs: how layers correspond: ``"auto"`` (same names if the layers
            with parameters share names, else by structure: execution order,
            layer kind, parameter shapes), ``"names"``, or an explicit
            ``{name_a: name_b}`` dict / list of ``(name_a, name_b)``. See
            :mod:`multiviz.parity.pairing`.
        atol, rtol: a pair passes when ``|b - a| <= atol + rtol * |a|`` everywhere.
        cka: CKA feature layout, ``"auto"``, ``"position"`` or ``"sample"``
            (see :func:`multiviz.parity.metrics.features`).

    Returns:
        A :class:`ParityReport`; ``print`` it, or read ``first_divergence``.

    Raises:
        LayerNotFoundError: an explicit pair names a layer that is not there.
        UnsupportedModelError: a model is neither PyTorch nor Keras.
        NumberError: ``atol`` or ``rtol`` is NaN, infinite or negative (a NaN
            tolerance would pass every comparison).

    Example:
        >>> import multiviz as mv
        >>> tm, km = mv.builtin_model("torch"), mv.builtin_model("keras")  # doctest: +SKIP
        >>> mv.transfer_weights(tm, km)                                  # doctest: +SKIP
        >>> report = mv.compare(tm, km, mv.sample_image()[None])         # doctest: +SKIP
        >>> report.passed, report.first_divergence                       # doctest: +SKIP
        (True, None)
    """
    import multiviz
    from multiviz.backends import get_backend

    _check_tolerances(atol, rtol)
    if cka not in ("auto", "position", "sample"):
        raise ValueError(
            f"`cka` must be one of ['auto', 'position', 'sample']. Received: cka={cka!r:.60}"
        )
    from multiviz.parity.transfer import read_params

    capture = multiviz.capture
    models = (model_a, model_b)
    backends = (get_backend(model_a), get_backend(model_b))
    xa, xb = _inputs(x, models, backends)
    explicit = not isinstance(pairs, str)
    if explicit:
        items = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
        acts = (
            capture(model_a, xa, [p[0] for p in items]),
            capture(model_b, xb, [p[1] for p in items]),
        )
    else:
        acts = (capture(model_a, xa), capture(model_b, xb))
    specs, flats, notes = zip(
        *(_specs(m, a, read_params(m)) for m, a in zip(models, acts, strict=True)), strict=True
    )
    labels = (backends[0].name, backends[1].name)
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} (a)", f"{labels[1]} (b)")
    return compare_activations(
        acts[0].arrays, acts[1].arrays, pairs, specs=(specs[0], specs[1]), atol=atol, rtol=rtol,
        cka=cka, labels=labels, flatten_from=(flats[0], flats[1]), notes=(notes[0], notes[1]),
    )  # fmt: skip


def _check_tolerances(atol: Any, rtol: Any) -> None:
    """Both tolerances finite and >= 0: ``|b - a| <= nan`` is False, but NaN must never pass."""
    from multiviz.core.checks import check_number

    check_number(atol, "atol", low=0)
    check_number(rtol, "rtol", low=0)
