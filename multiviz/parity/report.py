"""The parity report: two models compared layer by layer, one record, several views.

A :class:`ParityReport` (built by :func:`multiviz.compare` or
:func:`multiviz.parity.compare.compare_activations`) holds one
:class:`LayerParity` per pair of layers: a printable table, ``to_dict()`` /
``to_json()``, ``first_divergence`` — the earliest pair out of tolerance,
which is where a porting bug lives — and, drawn by :mod:`multiviz.render.parity`,
a figure of the error along the depth (:meth:`ParityReport.plot`) and both
sides' maps and their difference for any pair (:func:`multiviz.plot_comparison`),
from the arrays the report keeps (no second forward pass).

The first model is the *reference*: relative error is ``||cand - ref|| /
||ref||`` and a pair passes when every element satisfies ``|cand - ref| <=
atol + rtol * |ref|`` (``np.allclose``'s rule) with NaN/Inf at the same
places on both sides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.core.views import MAX_LINES, clip_rows, html_table, plural, text_table
from multiviz.errors import LayerNotFoundError, closest
from multiviz.parity.pairing import Unpaired

__all__ = ["LayerParity", "ParityReport", "fmt_fixed", "fmt_sci", "fmt_shape"]


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
            as in :func:`multiviz.parity.metrics.features`); ``nan`` when undefined.
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
        >>> from multiviz.parity.compare import compare_activations
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

    def __repr__(self) -> str:
        """The verdict and the pairs that matter, in at most 20 lines (``print`` shows all)."""
        n_fail = len(self.failures)
        a, b = self.labels
        lines = [
            f"ParityReport({a} vs {b}: {plural(len(self.rows), 'pair')}, "
            f"{len(self.rows) - n_fail} PASS, {n_fail} FAIL; atol={self.atol:g}, rtol={self.rtol:g})"
        ]
        first = self.first_divergence
        lines.append(
            f"  first divergence: {first.label} (#{first.index}): {first.reason}"
            if first
            else "  first divergence: none"
        )
        worst = sorted(
            (r for r in self.rows if not math.isnan(r.max_abs)), key=lambda r: -r.max_abs
        )
        shown, more = clip_rows(self.failures or worst, 12, "pairs")
        rows = [
            [str(r.index), r.label, fmt_sci(r.max_abs), fmt_sci(r.rel_err), r.status] for r in shown
        ]
        if rows:
            lines.append("  " + ("failing pairs:" if self.failures else "largest differences:"))
            table = text_table(rows, ["#", "layer", "max|diff|", "rel err", "status"], right=[0])
            lines += ["    " + line for line in table.splitlines()]
            if more:
                lines.append(f"    {more}")
        if self.unpaired:
            lines.append(f"  not compared: {plural(len(self.unpaired), 'layer')} (report.unpaired)")
        lines.append("  print(report) for the full table; report.plot() for the figure")
        return "\n".join(lines[:MAX_LINES])

    def _repr_html_(self) -> str:
        """Every pair as an HTML table, failing ones marked, for notebooks."""
        n_fail = len(self.failures)
        a, b = self.labels
        rows = [
            [
                str(r.index),
                r.label,
                fmt_shape(r.shape),
                fmt_sci(r.max_abs),
                fmt_sci(r.rel_err),
                fmt_fixed(r.cosine),
                fmt_fixed(r.cka),
                r.status if r.passed else f"{r.status}: {r.reason}",
            ]
            for r in self.rows
        ]
        first = self.first_divergence
        return html_table(
            rows,
            ["#", "layer", "shape", "max|diff|", "rel err", "cosine", "CKA", "status"],
            caption=f"ParityReport: {a} (reference) vs {b}, {len(self.rows) - n_fail} PASS, "
            f"{n_fail} FAIL (atol={self.atol:g}, rtol={self.rtol:g})",
            note=f"First divergence: {first.label} (#{first.index})" if first else "",
        )

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
                fmt_shape(r.shape)
                if r.shape == r.shape_b
                else f"{fmt_shape(r.shape)}|{fmt_shape(r.shape_b)}"
            )
            mark = "" if r.passed else " *"
            body.append(
                [
                    str(r.index),
                    label,
                    shape,
                    fmt_sci(r.max_abs),
                    fmt_sci(r.rel_err),
                    fmt_fixed(r.cosine),
                    fmt_fixed(r.cka),
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
            >>> from multiviz.parity.compare import compare_activations
            >>> r = compare_activations({"x": np.ones((1, 2))}, {"x": np.ones((1, 2))})
            >>> json.loads(r.to_json())["passed"]
            True
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def plot(self, ax: Any = None) -> Any:
        """Error along the depth, drawn by :func:`multiviz.render.parity.plot_parity`.

        Returns:
            The ``matplotlib.figure.Figure`` (the one ``ax`` belongs to, if given).

        Example:
            >>> from multiviz.parity.compare import compare_activations
            >>> a = {"x": np.ones((1, 3)), "y": np.ones((1, 3))}
            >>> fig = compare_activations(a, {"x": a["x"] + 1e-6, "y": a["y"]}).plot()
            >>> fig.axes[0].get_yscale()
            'log'
        """
        from multiviz.render.parity import plot_parity

        return plot_parity(self, ax=ax)


def fmt_shape(s: tuple[int, ...]) -> str:
    return "(" + ",".join(str(d) for d in s) + ")"


def fmt_sci(v: float) -> str:
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.2e}")


def fmt_fixed(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.6f}"
