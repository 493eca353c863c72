"""The same network in two frameworks, layer by layer: a parity report.

:func:`compare` runs one batch through both models, captures every layer,
pairs the layers (:mod:`multiviz.pairing`), and measures each pair
(:mod:`multiviz.metrics`) on the canonical channels-first arrays. The result
is a :class:`ParityReport`: a printable table, ``to_dict()`` / ``to_json()``,
``first_divergence`` — the earliest pair out of tolerance, which is where a
porting bug lives — a figure of the error along the depth (:meth:`ParityReport.plot`)
and, through :func:`plot_comparison`, both sides' maps and their difference
for any pair, from the arrays the report keeps (no second forward pass).

The first model is the *reference*: relative error is ``||cand - ref|| /
||ref||`` and a pair passes when every element satisfies ``|cand - ref| <=
atol + rtol * |ref|`` (``np.allclose``'s rule) with NaN/Inf at the same
places on both sides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multiviz.errors import LayerNotFoundError, closest
from multiviz.metrics import array_metrics
from multiviz.pairing import LayerSpec, PairsArg, Unpaired, pair_layers, param_signature
from multiviz.params import LayerParams
from multiviz.render.montage import montage
from multiviz.selection import split_suffix

__all__ = ["LayerParity", "ParityReport", "compare", "compare_activations", "plot_comparison"]

_NAN = float("nan")


@dataclass(frozen=True)
class LayerParity:
    """One pair of layers, measured.

    Attributes:
        index: position in the report (0-based, execution order).
        name: the reference layer's name (first model).
        name_b: the other model's layer name.
        kind: the layer kind (``"conv"``, ``"norm"``…).
        shape, shape_b: the two outputs' canonical shapes.
        max_abs: ``max |cand - ref|``; ``rel_err``: ``||cand - ref|| / ||ref||``.
        cosine, pearson, cka: similarity measures (1 = identical; CKA features
            as in :func:`multiviz.metrics.features`); ``nan`` when undefined.
        nonfinite: NaN/Inf counts ``(reference, candidate)``.
        passed: within tolerance (see the module docstring).
        reason: why it failed; empty when it passed.
        notes: caveats (layout reordered for a Flatten, size-1 axes dropped…).
    """

    index: int
    name: str
    name_b: str
    kind: str
    shape: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float
    rel_err: float
    cosine: float
    pearson: float
    cka: float
    nonfinite: tuple[int, int]
    passed: bool
    reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``"PASS"`` or ``"FAIL"``."""
        return "PASS" if self.passed else "FAIL"

    @property
    def label(self) -> str:
        """``"conv1"`` when both sides share the name, else ``"conv1 <-> conv1_conv"``."""
        return self.name if self.name == self.name_b else f"{self.name} <-> {self.name_b}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite numbers become ``None``, tuples lists."""
        return {
            "index": self.index,
            "name": self.name,
            "name_b": self.name_b,
            "kind": self.kind,
            "shape": list(self.shape),
            "shape_b": list(self.shape_b),
            "max_abs": _json_float(self.max_abs),
            "rel_err": _json_float(self.rel_err),
            "cosine": _json_float(self.cosine),
            "pearson": _json_float(self.pearson),
            "cka": _json_float(self.cka),
            "nonfinite": list(self.nonfinite),
            "status": self.status,
            "reason": self.reason,
            "notes": list(self.notes),
        }


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass(repr=False)
class ParityReport:
    """Per-layer parity of two models: one record, several views.

    ``print(report)`` shows the table; ``report.first_divergence`` the first
    failing pair; ``report["conv1"]`` a pair by either side's name (or by
    index); ``report.plot()`` the error along the depth; ``report.to_json()``
    the data. The captured arrays are kept (``report.activations``) for
    :func:`plot_comparison`.

    Attributes:
        rows: the measured pairs, in the reference model's execution order.
        unpaired: layers without a counterpart, with the reason.
        atol, rtol: the tolerances the rows were judged with.
        labels: names of the two sides (``("torch", "keras")``).
        strategy: how the layers were paired (``"names"``, ``"structure"``, ``"explicit"``).
        activations: the two sides' captured arrays (name -> canonical array).

    Example:
        >>> ref = {"conv": np.ones((1, 2, 3, 4), np.float32), "fc": np.ones((1, 5), np.float32)}
        >>> cand = {"conv": ref["conv"].copy(), "fc": ref["fc"] + 0.5}
        >>> report = compare_activations(ref, cand, labels=("torch", "keras"))
        >>> report.first_divergence.name, report["conv"].status
        ('fc', 'PASS')
    """

    rows: list[LayerParity]
    unpaired: list[Unpaired] = field(default_factory=list)
    atol: float = 1e-4
    rtol: float = 1e-4
    labels: tuple[str, str] = ("a", "b")
    strategy: str = ""
    activations: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]] = ({}, {})

    # ------------------------------------------------------------------ access

    @property
    def passed(self) -> bool:
        """True when every pair is within tolerance (and there is at least one)."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[LayerParity]:
        """Every failing pair, in order."""
        return [r for r in self.rows if not r.passed]

    @property
    def first_divergence(self) -> LayerParity | None:
        """The earliest failing pair — where a discrepancy enters — or ``None``."""
        return next((r for r in self.rows if not r.passed), None)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LayerParity]:
        return iter(self.rows)

    def __getitem__(self, key: str | int) -> LayerParity:
        if isinstance(key, int | np.integer):
            return self.rows[int(key)]
        for r in self.rows:
            if key in (r.name, r.name_b, r.label):
                return r
        names = [r.name for r in self.rows] + [r.name_b for r in self.rows]
        near = closest(str(key), names)
        raise LayerNotFoundError(
            f"No compared pair has a layer named {key!r}."
            + (f" Closest: {near}." if near else "")
            + " report.unpaired lists the layers that were not compared."
        )

    # ------------------------------------------------------------------ views

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__

    def table(self, max_name: int = 48) -> str:
        """The report as an aligned text table with a legend."""
        n_fail = len(self.failures)
        a, b = self.labels
        head = (
            f"ParityReport: {a} (reference) vs {b} - {len(self.rows)} pairs "
            f"({self.strategy}), {len(self.rows) - n_fail} PASS, {n_fail} FAIL"
        )
        cols = ["#", "layer", "shape", "max|diff|", "rel err", "cosine", "CKA", "status"]
        body = []
        for r in self.rows:
            label = r.label if len(r.label) <= max_name else r.label[: max_name - 3] + "..."
            shape = (
                _shape(r.shape)
                if r.shape == r.shape_b
                else f"{_shape(r.shape)}|{_shape(r.shape_b)}"
            )
            mark = "" if r.passed else " *"
            body.append(
                [
                    str(r.index),
                    label,
                    shape,
                    _sci(r.max_abs),
                    _sci(r.rel_err),
                    _fix(r.cosine),
                    _fix(r.cka),
                    r.status + mark,
                ]
            )
        widths = [
            max(len(c), *(len(row[k]) for row in body)) if body else len(c)
            for k, c in enumerate(cols)
        ]
        right = {0, 3, 4, 5, 6}

        def fmt(row: list[str]) -> str:
            return "  ".join(
                (s.rjust(w) if k in right else s.ljust(w))
                for k, (s, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        lines = [head, fmt(cols), fmt(["-" * w for w in widths])]
        lines += [fmt(row) for row in body]
        lines.append(
            f"PASS: |{b} - {a}| <= atol + rtol*|{a}| everywhere (atol={self.atol:g}, "
            f"rtol={self.rtol:g}) and NaN/Inf at the same places.  FAIL *: reason below."
        )
        fails = self.failures
        for r in fails[:10]:
            lines.append(f"  * {r.index} {r.label}: {r.reason}")
        if len(fails) > 10:
            lines.append(f"  * ... and {len(fails) - 10} more failing pairs")
        first = self.first_divergence
        lines.append(
            f"First divergence: {first.label} (#{first.index})"
            if first
            else "First divergence: none"
        )
        noted = [r for r in self.rows if r.notes]
        if noted:
            lines.append("Notes:")
            lines += [f"  {r.index} {r.label}: {'; '.join(r.notes)}" for r in noted[:10]]
            if len(noted) > 10:
                lines.append(f"  ... and {len(noted) - 10} more")
        if self.unpaired:
            lines.append(f"Not compared ({len(self.unpaired)}):")
            for u in self.unpaired[:15]:
                lines.append(f"  {self.labels[u.side]} {u.name}: {u.reason}")
            if len(self.unpaired) > 15:
                lines.append(f"  ... and {len(self.unpaired) - 15} more (report.unpaired)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-ready (non-finite numbers as ``None``)."""
        first = self.first_divergence
        return {
            "reference": self.labels[0],
            "candidate": self.labels[1],
            "atol": self.atol,
            "rtol": self.rtol,
            "strategy": self.strategy,
            "passed": self.passed,
            "first_divergence": first.to_dict() if first else None,
            "pairs": [r.to_dict() for r in self.rows],
            "unpaired": [
                {"model": self.labels[u.side], "name": u.name, "reason": u.reason}
                for u in self.unpaired
            ],
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON (no NaN); also written to ``path`` if given.

        Example:
            >>> r = compare_activations({"x": np.ones((1, 2))}, {"x": np.ones((1, 2))})
            >>> json.loads(r.to_json())["passed"]
            True
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def plot(self, ax: Axes | None = None) -> Figure:
        """Error along the depth: max|diff| and relative error per pair, log scale.

        Shows the ``atol`` line, failing pairs ringed in red and the first
        divergence marked. Exact zeros (a log scale has no 0) are drawn as
        triangles on the bottom edge; shape mismatches as crosses on the top.

        Returns:
            The ``matplotlib.figure.Figure`` (the one ``ax`` belongs to, if given).

        Example:
            >>> a = {"x": np.ones((1, 3)), "y": np.ones((1, 3))}
            >>> fig = compare_activations(a, {"x": a["x"] + 1e-6, "y": a["y"]}).plot()
            >>> fig.axes[0].get_yscale()
            'log'
        """
        if ax is None:
            fig = Figure(figsize=(max(6.0, 0.22 * len(self.rows) + 2.5), 4.2), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = _root_figure(ax)
        x = np.arange(len(self.rows))
        max_abs = np.array([r.max_abs for r in self.rows], dtype=float)
        rel = np.array([r.rel_err for r in self.rows], dtype=float)
        ok = np.array([r.passed for r in self.rows], dtype=bool)
        values = np.concatenate([max_abs, rel, [self.atol]])
        positive = values[np.isfinite(values) & (values > 0)]
        lo = float(positive.min()) / 3 if positive.size else 1e-12
        hi = float(positive.max()) * 40 if positive.size else 1.0  # headroom for the label

        def shown(v: np.ndarray) -> np.ndarray:
            return np.where(np.isfinite(v) & (v > 0), v, np.nan)

        ax.plot(x, shown(max_abs), "-o", ms=3.5, lw=1.2, color="C0", label="max |diff|")
        ax.plot(x, shown(rel), "-s", ms=3.0, lw=1.0, color="C1", alpha=0.85, label="relative error")
        zero = max_abs == 0
        if zero.any():
            ax.plot(x[zero], np.full(zero.sum(), lo), "v", ms=6, color="C0", clip_on=False,
                    label="exactly 0")  # fmt: skip
        missing = np.isnan(max_abs)
        if missing.any():
            ax.plot(x[missing], np.full(missing.sum(), hi), "x", ms=7, color="red", clip_on=False,
                    label="shapes differ")  # fmt: skip
        if (~ok & ~missing).any():
            bad = ~ok & ~missing
            ax.plot(x[bad], max_abs[bad], "o", ms=7, mfc="none", mec="red", mew=1.5, label="FAIL")
        ax.axhline(self.atol, color="0.3", ls="--", lw=1, label=f"atol = {self.atol:g}")
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        first = self.first_divergence
        if first is not None:
            ax.axvline(first.index, color="red", lw=1, alpha=0.6)
            ax.annotate(
                f"first divergence: {first.name}",
                (first.index, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-4, -4),
                textcoords="offset points",
                ha="right" if first.index > len(self.rows) / 2 else "left",
                va="top",
                color="red",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            )
        ax.set_xticks(x)
        ax.set_xticklabels([r.name for r in self.rows], rotation=90, fontsize=7)
        ax.set_xlim(-0.5, max(len(self.rows) - 0.5, 0.5))
        ax.set_ylabel("error (log scale)")
        a, b = self.labels
        verdict = "all pass" if self.passed else f"{len(self.failures)} of {len(self.rows)} fail"
        ax.set_title(f"{b} vs {a} (reference), layer by layer: {verdict}")
        ax.grid(True, which="major", axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        return fig


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: no `root`
        return ax.figure


def _shape(s: tuple[int, ...]) -> str:
    return "(" + ",".join(str(d) for d in s) + ")"


def _sci(v: float) -> str:
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.2e}")


def _fix(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.6f}"


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
                f"size-1 axes differ ({_shape(shape_a)} vs {_shape(shape_b)}); compared as {_shape(shape_a)}"
            )
        else:
            return LayerParity(
                index, *names, kind, shape_a, shape_b, _NAN, _NAN, _NAN, _NAN, _NAN,
                (int((~np.isfinite(ref)).sum()), int((~np.isfinite(cand)).sum())),
                False, f"shapes differ: {_shape(shape_a)} vs {_shape(shape_b)}", tuple(notes),
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
        specs: per-side :class:`~multiviz.pairing.LayerSpec` lists for
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
            note = notes[side].get(split_suffix(name)[0])
            if note:
                row_notes.append(f"{labels[side]}: {note}")
            src = flatten_from[side].get(split_suffix(name)[0])
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
    from multiviz.layout import to_channels_last

    if isinstance(x, tuple | list) and len(x) == 2:
        return x[0], x[1]
    arr = np.asarray(x, dtype=np.float32)
    out = []
    for model, backend in zip(models, backends, strict=True):
        layout = backend.input_layout(model)
        out.append(to_channels_last(arr) if layout == "channels_last" and arr.ndim >= 3 else arr)
    return out[0], out[1]


def _specs(
    model: Any, acts: Mapping[str, np.ndarray], params: Sequence[LayerParams]
) -> tuple[list[LayerSpec], dict[str, tuple[int, ...]], dict[str, str]]:
    import multiviz

    infos = {i.name: i for i in multiviz.layers(model)}
    by_name = {p.name: p for p in params}
    rank = {p.name: k for k, p in enumerate(params)}
    keys = list(acts)
    bases = [split_suffix(k)[0] for k in keys]
    if any(p.framework == "keras" for p in params) and all(b in rank for b in bases):
        # Keras lists a graph's layers by depth: use the weights backend's walk, which
        # follows one branch to its end like a PyTorch forward() does
        position = {k: (rank[b], n) for n, (k, b) in enumerate(zip(keys, bases, strict=True))}
        keys.sort(key=position.__getitem__)
    specs, flats, notes = [], {}, {}
    for key in keys:
        base = split_suffix(key)[0]
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
            ``(N, C, H, W)``; it is transposed for a channels-last model. Or a
            tuple ``(x_a, x_b)`` of inputs already in each model's own layout.
        pairs: how layers correspond: ``"auto"`` (same names if the layers
            with parameters share names, else by structure: execution order,
            layer kind, parameter shapes), ``"names"``, or an explicit
            ``{name_a: name_b}`` dict / list of ``(name_a, name_b)``. See
            :mod:`multiviz.pairing`.
        atol, rtol: a pair passes when ``|b - a| <= atol + rtol * |a|`` everywhere.
        cka: CKA feature layout, ``"auto"``, ``"position"`` or ``"sample"``
            (see :func:`multiviz.metrics.features`).

    Returns:
        A :class:`ParityReport`; ``print`` it, or read ``first_divergence``.

    Raises:
        LayerNotFoundError: an explicit pair names a layer that is not there.
        UnsupportedModelError: a model is neither PyTorch nor Keras.

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
    from multiviz.transfer import read_params

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


# --------------------------------------------------------------------------- pictures


def plot_comparison(
    report: ParityReport,
    layer: str | int | None = None,
    *,
    sample: int = 0,
    channels: Sequence[int] | None = None,
    max_channels: int = 16,
    cmap: str = "viridis",
    diff_cmap: str = "RdBu_r",
) -> Figure:
    """Both sides' maps of one pair and their difference, in one figure.

    Three panels: the reference's maps, the candidate's on the same colour
    scale, and ``candidate - reference`` on a symmetric diverging scale
    (white = equal). Feature maps are tiled into one montage per panel;
    vectors are drawn as curves.

    Args:
        report: from :func:`compare` (it holds the arrays).
        layer: a pair by either side's name or by index; default the first
            divergence, or the last pair when everything passes.
        sample: which sample of the batch.
        channels: which channels to show; default the first ``max_channels``
            (for a failing pair: the channels with the largest differences).
        max_channels: at most this many channels when ``channels`` is ``None``.
        cmap, diff_cmap: colormaps for the maps and the difference.

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        LayerNotFoundError: no pair has that name.
        IndexError: ``sample`` is out of range.

    Example:
        >>> a = {"conv": np.random.default_rng(0).normal(size=(1, 4, 6, 8))}
        >>> b = {"conv": a["conv"] * 1.01}
        >>> fig = plot_comparison(compare_activations(a, b), "conv")
        >>> len(fig.axes) >= 3
        True
    """
    if not report.rows:
        raise LayerNotFoundError("The report has no compared pairs to plot.")
    if layer is None:
        row = report.first_divergence or report.rows[-1]
    else:
        row = report[layer]
    ref = np.asarray(report.activations[0][row.name], dtype=np.float32)
    cand = np.asarray(report.activations[1][row.name_b], dtype=np.float32)
    n = ref.shape[0]
    if not -n <= sample < n:
        raise IndexError(f"`sample` must be in [0, {n}). Received: sample={sample}")
    a, b = report.labels
    same = ref.size == cand.size and np.squeeze(ref).shape == np.squeeze(cand).shape
    if same and ref.shape != cand.shape:
        cand = cand.reshape(ref.shape)
    ra, rb = ref[sample], cand[sample]
    if ra.ndim > 3:  # volumes (C, D, H, W): stack the depth slices vertically
        ra, rb = (
            ra.reshape(ra.shape[0], -1, ra.shape[-1]),
            rb.reshape(rb.shape[0], -1, rb.shape[-1]),
        )
    if ra.ndim == 1 or not same:
        return _plot_vectors(row, ra.ravel(), rb.ravel(), same, (a, b))
    chosen = _choose_channels(ra, rb, channels, max_channels, row.passed)
    ma, mb = ra[chosen], rb[chosen]
    diff = mb - ma
    fig = Figure(figsize=(13.5, 5.0), layout="constrained")
    axes = fig.subplots(1, 3)
    finite = np.concatenate([ma[np.isfinite(ma)], mb[np.isfinite(mb)]])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    ncols = max(1, math.ceil(math.sqrt(len(chosen)))) if ma.ndim == 3 else 1
    panels = (
        (ma, f"{a}: {row.name}", cmap, (lo, hi), "activation"),
        (mb, f"{b}: {row.name_b}", cmap, (lo, hi), "activation"),
    )
    for ax, (maps, title, cm, (vmin, vmax), label) in zip(axes[:2], panels, strict=True):
        im = ax.imshow(
            montage(maps, ncols=ncols), cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
    span = span or max(report.atol, 1e-12)
    im = axes[2].imshow(
        montage(diff, ncols=ncols), cmap=diff_cmap, vmin=-span, vmax=span, interpolation="nearest"
    )
    axes[2].set_title(f"difference ({b} - {a})", fontsize=10)
    axes[2].set_axis_off()
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="difference")
    shown = ", ".join(str(c) for c in chosen[:12]) + (" ..." if len(chosen) > 12 else "")
    fig.suptitle(
        f"#{row.index} {row.label}: {row.status}, max|diff| {_sci(row.max_abs)}, "
        f"rel err {_sci(row.rel_err)}, cosine {_fix(row.cosine)}\n"
        f"sample {sample}, channels [{shown}] of {ra.shape[0]}",
        fontsize=10,
    )
    return fig


def _choose_channels(
    ra: np.ndarray, rb: np.ndarray, channels: Sequence[int] | None, k: int, passed: bool
) -> list[int]:
    c = ra.shape[0]
    if channels is not None:
        chosen = [int(i) for i in channels]
        bad = [i for i in chosen if not -c <= i < c]
        if bad:
            raise IndexError(f"`channels` must be in [0, {c}). Received: {bad}")
        return chosen
    if passed or c <= k:
        return list(range(min(c, k)))
    err = np.nan_to_num(np.abs(rb - ra), nan=np.inf).reshape(c, -1).max(axis=1)
    return sorted(int(i) for i in np.argsort(-err, kind="stable")[:k])


def _plot_vectors(
    row: LayerParity, va: np.ndarray, vb: np.ndarray, same: bool, labels: tuple[str, str]
) -> Figure:
    a, b = labels
    fig = Figure(figsize=(10.0, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=same)
    top.plot(va, lw=1.2, label=f"{a}: {row.name}")
    top.plot(vb, lw=1.0, ls="--", label=f"{b}: {row.name_b}")
    top.set_ylabel("value")
    top.legend(fontsize=8)
    if same:
        bottom.plot(vb - va, color="C3", lw=1.0)
        bottom.axhline(0, color="0.5", lw=0.8)
        bottom.set_ylabel(f"{b} - {a}")
        bottom.set_xlabel("feature (flattened, channels-first order)")
    else:
        bottom.text(0.5, 0.5, f"shapes differ: {_shape(row.shape)} vs {_shape(row.shape_b)}",
                    ha="center", va="center", transform=bottom.transAxes)  # fmt: skip
        bottom.set_axis_off()
    fig.suptitle(
        f"#{row.index} {row.label}: {row.status}, max|diff| {_sci(row.max_abs)}, "
        f"rel err {_sci(row.rel_err)}",
        fontsize=10,
    )
    return fig
