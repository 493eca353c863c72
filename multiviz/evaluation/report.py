"""The trust report: methods x metrics, each a mean over images with a bootstrap interval.

:class:`EvaluationReport` is one record with several views: ``print(report)``
(a table of at most 20 lines), ``report.to_dict()`` / ``to_json()``, an HTML
table in notebooks, and ``report.plot()`` (drawn by :mod:`multiviz.render`).
:meth:`EvaluationReport.best` names a method only where the data support it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiviz.evaluation.stats import Interval, bootstrap_interval

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "RANDOMIZATION_LIMIT",
    "EvaluationReport",
]

#: Every metric name, with what it measures (one line each).
METRICS: dict[str, str] = {
    "deletion": "area under the target's score as the most relevant pixels are removed",
    "insertion": "area under the target's score as the most relevant pixels are put back",
    "road": "ROAD: score with least minus most relevant pixels imputed (LeRF - MoRF)",
    "pointing_game": "share of images whose map's maximum lands on the object",
    "energy_pointing_game": "share of the map's total value inside the object",
    "iou": "IoU of the thresholded map with the object",
    "randomization": "rank correlation with the map after randomizing every layer",
    "data_randomization": "rank correlation with the map of a model trained on permuted labels",
}

#: Direction of each metric: True where a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "deletion": False,
    "insertion": True,
    "road": True,
    "pointing_game": True,
    "energy_pointing_game": True,
    "iou": True,
    "randomization": False,
    "data_randomization": False,
}

#: A method fails the randomization check (Adebayo et al. 2018) when its maps'
#: mean rank correlation with the original after randomizing every layer is above this.
RANDOMIZATION_LIMIT = 0.5

_MAX_LINES = 20


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _num(v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.3g}"


@dataclass(repr=False)
class EvaluationReport:
    """Which attribution map to trust: each method's score on each metric, with intervals.

    Attributes:
        scores: method -> metric -> :class:`~multiviz.evaluation.stats.Interval`
            (mean over images, bootstrap interval, images used, NaN left out).
        per_image: method -> metric -> float64 ``(N,)`` per-image values.
        curves: method -> curve name -> float64 ``(N, K)``: ``"deletion"``,
            ``"insertion"`` (at fractions ``k / (K - 1)`` of the pixels),
            ``"road_morf"``, ``"road_lerf"`` (at ``settings["percentages"]``).
        randomization: method -> the sanity check's details (per-layer
            similarities and example maps; see :mod:`multiviz.evaluation.randomization`).
        settings: how the numbers were made (steps, substrate, score, layer,
            model calls per image…).
        level: the intervals' coverage (0.95).

    Example:
        >>> values = {"a": {"deletion": np.array([0.25, 0.5, 0.75])},
        ...           "b": {"deletion": np.array([2.0, 2.5, 3.0])}}
        >>> report = EvaluationReport.from_values(values)
        >>> report.best("deletion"), report.to_dict()["a"]["deletion"]["value"]
        ('a', 0.5)
    """

    scores: dict[str, dict[str, Interval]]
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    randomization: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    level: float = 0.95

    @classmethod
    def from_values(
        cls,
        per_image: Mapping[str, Mapping[str, np.ndarray]],
        *,
        level: float = 0.95,
        resamples: int = 2000,
        seed: int = 0,
        **rest: Any,
    ) -> EvaluationReport:
        """Build the report from per-image values, computing each interval.

        Args:
            per_image: method -> metric -> ``(N,)`` values (NaN for images left out).
            level, resamples, seed: the bootstrap's (see
                :func:`~multiviz.evaluation.stats.bootstrap_interval`).
            **rest: ``curves``, ``randomization``, ``settings``.

        Raises:
            ValueError: an unknown metric name.
        """
        scores: dict[str, dict[str, Interval]] = {}
        values: dict[str, dict[str, np.ndarray]] = {}
        for method, by_metric in per_image.items():
            for metric in by_metric:
                if metric not in METRICS:
                    raise ValueError(f"Unknown metric {metric!r}. Valid: {list(METRICS)}.")
            values[method] = {k: np.asarray(v, np.float64).copy() for k, v in by_metric.items()}
            scores[method] = {
                k: bootstrap_interval(v, level=level, resamples=resamples, seed=seed)
                for k, v in values[method].items()
            }
        return cls(scores, values, level=level, **rest)

    # ------------------------------------------------------------------ access

    @property
    def methods(self) -> list[str]:
        """The methods, in the order they were evaluated."""
        return list(self.scores)

    @property
    def metrics(self) -> list[str]:
        """Every metric present for some method, in :data:`METRICS` order."""
        present = {m for by in self.scores.values() for m in by}
        return [m for m in METRICS if m in present]

    def __getitem__(self, method: str) -> dict[str, Interval]:
        if method not in self.scores:
            raise KeyError(f"No method {method!r} in this report. Methods: {self.methods}.")
        return self.scores[method]

    def failing_randomization(self) -> list[str]:
        """Methods whose mean rank correlation after full randomization exceeds 0.5.

        Empty when ``"randomization"`` was not evaluated.
        """
        out = []
        for method, by in self.scores.items():
            iv = by.get("randomization")
            if iv is not None and math.isfinite(iv.value) and iv.value > RANDOMIZATION_LIMIT:
                out.append(method)
        return out

    def best(self, metric: str) -> str | None:
        """The method that is best on ``metric`` by a margin the data support, else ``None``.

        Candidates are the methods with a finite value that do not fail the
        randomization check (:meth:`failing_randomization`; no method is
        excluded when randomization was not evaluated). The best candidate is
        returned only when its interval overlaps no other candidate's;
        otherwise ``None``: the images do not separate them.

        Raises:
            ValueError: ``metric`` is not a metric of this report.
        """
        if metric not in self.metrics:
            raise ValueError(
                f"`metric` must be one of this report's metrics {self.metrics}. "
                f"Received: metric={metric!r}"
            )
        failing = set(self.failing_randomization())
        cands = [
            (m, by[metric])
            for m, by in self.scores.items()
            if metric in by and math.isfinite(by[metric].value) and m not in failing
        ]
        if not cands:
            return None
        sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
        cands.sort(key=lambda mi: sign * mi[1].value)
        top, top_iv = cands[0]
        if any(top_iv.overlaps(iv) for _, iv in cands[1:]):
            return None
        return top

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{method: {metric: {"value", "low", "high"}}}``, NaN as ``None`` (JSON-ready)."""
        return {
            method: {
                metric: {
                    "value": _json_float(iv.value),
                    "low": _json_float(iv.low),
                    "high": _json_float(iv.high),
                }
                for metric, iv in by.items()
            }
            for method, by in self.scores.items()
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def table_cells(self) -> tuple[list[str], list[list[str]], list[str]]:
        """The table as text cells: the header, one row per method, the ``best`` row.

        Each value cell reads ``"mean [low, high]"`` (``"-"`` where there is
        none); a method failing the randomization check ends in ``" !"``. The
        text table, the notebook's HTML and the HTML report all show these cells.
        """
        metrics = self.metrics
        head = ["method"] + [f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics]
        failing = set(self.failing_randomization())
        rows = []
        for method, by in self.scores.items():
            row = [method + (" !" if method in failing else "")]
            for metric in metrics:
                iv = by.get(metric)
                if iv is None or math.isnan(iv.value):
                    row.append("-")
                else:
                    row.append(f"{_num(iv.value)} [{_num(iv.low)}, {_num(iv.high)}]")
            rows.append(row)
        best = ["best"] + [self.best(m) or "-" for m in metrics]
        return head, rows, best

    def table(self) -> str:
        """The report as an aligned text table of at most 20 lines."""
        head, rows, best = self.table_cells()
        n = max(
            (iv.n + iv.nonfinite for by in self.scores.values() for iv in by.values()), default=0
        )
        room = _MAX_LINES - 6
        shown = rows if len(rows) <= room else rows[: room - 1]
        widths = [max(len(r[k]) for r in [head, best, *shown]) for k in range(len(head))]

        def fmt(row: list[str]) -> str:
            return "  ".join(s.ljust(w) for s, w in zip(row, widths, strict=True)).rstrip()

        lines = [
            f"EvaluationReport: {len(rows)} methods x {len(head) - 1} metrics, {n} images, "
            f"mean [{self.level:.0%} bootstrap interval]",
            fmt(head),
            fmt(["-" * w for w in widths]),
            *(fmt(r) for r in shown),
        ]
        if len(shown) < len(rows):
            lines.append(f"... and {len(rows) - len(shown)} more methods (report.to_dict())")
        lines.append(fmt(best))
        legend = (
            "↑/↓: higher/lower is better; best: only where its interval separates from the rest"
        )
        if self.failing_randomization():
            legend += f"; !: fails randomization (> {RANDOMIZATION_LIMIT}), never best"
        lines.append(legend)
        left_out = sum(iv.nonfinite for by in self.scores.values() for iv in by.values())
        if left_out:
            lines.append(f"{left_out} non-finite per-image values left out (report.per_image)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head, rows, best = self.table_cells()
        esc = html.escape

        def tr(cells: list[str], tag: str = "td") -> str:
            return "<tr>" + "".join(f"<{tag}>{esc(c)}</{tag}>" for c in cells) + "</tr>"

        body = "".join(tr(r) for r in rows)
        return (
            "<table class='multiviz-evaluation'>"
            f"<caption>EvaluationReport: mean [{self.level:.0%} bootstrap interval]</caption>"
            f"<thead>{tr(head, 'th')}</thead><tbody>{body}</tbody>"
            f"<tfoot>{tr(best)}</tfoot></table>"
        )

    def plot(self, **kwargs: Any) -> Any:
        """Deletion/insertion/ROAD curves and the randomization cascade, as one figure.

        Drawn by :func:`multiviz.render.evaluation.plot_evaluation` (keyword
        arguments go there). Returns a ``matplotlib.figure.Figure``.
        """
        from multiviz.render.evaluation import plot_evaluation

        return plot_evaluation(self, **kwargs)
