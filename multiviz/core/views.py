"""Short text and HTML views of result records: one home for ``repr`` and ``_repr_html_``.

Every result record (``Activations``, the statistics records, ``ParityReport``,
``Explanations``, scan and evaluation results) shows itself in a REPL in at
most :data:`MAX_LINES` lines — a headline with counts, then a few rows — and in
a notebook as an HTML table (``_repr_html_``) or a picture (``_repr_png_``).
The pieces they share live here, NumPy and the standard library only:

* :func:`plural` — ``"1 layer"``, ``"3 layers"``, ``"1 batch"``, ``"2 batches"``;
* :func:`clip_rows` — at most so many rows, then ``"… and 12 more"``;
* :func:`text_table` — aligned columns;
* :func:`html_table` — the same rows as an escaped HTML table;
* :func:`array_summary` — ``"(1, 64, 112, 112) float32, range [-3.1, 4.2]"``.

Example:
    >>> plural(1, "layer"), plural(2, "batch")
    ('1 layer', '2 batches')
    >>> print(text_table([["conv1", "(1, 8)"], ["fc", "(1, 4)"]], head=["layer", "shape"]))
    layer  shape
    conv1  (1, 8)
    fc     (1, 4)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_LINES",
    "array_summary",
    "clip_rows",
    "html_table",
    "number",
    "plural",
    "text_table",
]

#: the most lines a record's ``repr`` prints
MAX_LINES = 20


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` in the right number: ``"1 channel"``, ``"0 channels"``.

    Args:
        n: the count.
        word: the singular.
        many: the plural where adding "s" (or "es" after s, x, ch, sh) is wrong.

    Example:
        >>> plural(1, "sample"), plural(0, "sample"), plural(3, "pass", "passes")
        ('1 sample', '0 samples', '3 passes')
    """
    if n == 1:
        return f"{n} {word}"
    if many is None:
        many = word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{n:,} {many}"


def number(v: float) -> str:
    """A number in at most 4 significant digits (``"nan"``, ``"inf"`` as they are).

    Example:
        >>> number(3.14159), number(1e-7), number(float("nan")), number(12345678.0)
        ('3.142', '1e-07', 'nan', '1.235e+07')
    """
    v = float(v)
    return f"{v:.4g}"


def array_summary(arr: Any) -> str:
    """One line on an array: shape, dtype, and the finite range.

    Example:
        >>> array_summary(np.array([[1.0, -2.0], [np.nan, 4.0]], np.float32))
        '(2, 2) float32, range [-2, 4], 1 NaN/Inf'
    """
    a = np.asarray(arr)
    text = f"{tuple(a.shape)} {a.dtype}"
    if a.size and a.dtype.kind in "biuf":
        finite = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        if finite.any():
            vals = a[finite]
            text += f", range [{number(vals.min())}, {number(vals.max())}]"
        bad = int(a.size - finite.sum())
        if bad:
            text += f", {bad:,} NaN/Inf"
    return text


def clip_rows(rows: Sequence[Any], limit: int, what: str = "rows") -> tuple[list[Any], str]:
    """The first ``limit`` rows, and a line saying how many were left out ("" if none).

    Example:
        >>> clip_rows(list(range(5)), 3, "layers")
        ([0, 1, 2], '… and 2 more layers')
    """
    rows = list(rows)
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], f"… and {len(rows) - limit:,} more {what}"


def text_table(
    rows: Sequence[Sequence[Any]], head: Sequence[str] | None = None, right: Sequence[int] = ()
) -> str:
    """Rows as aligned columns (``right``: indices of right-aligned columns).

    Example:
        >>> print(text_table([["a", 1], ["bcd", 10]], right=[1]))
        a     1
        bcd  10
    """
    body = [[str(c) for c in r] for r in ([list(head)] if head else []) + [list(r) for r in rows]]
    if not body:
        return ""
    widths = [max(len(r[k]) for r in body if k < len(r)) for k in range(max(map(len, body)))]
    lines = []
    for r in body:
        cells = [c.rjust(widths[k]) if k in right else c.ljust(widths[k]) for k, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def html_table(
    rows: Sequence[Sequence[Any]],
    head: Sequence[str] | None = None,
    caption: str = "",
    note: str = "",
    css_class: str = "multiviz",
) -> str:
    """Rows as an escaped HTML table for a notebook (``_repr_html_``).

    Example:
        >>> html_table([["conv1", "<8>"]], head=["layer", "shape"])  # doctest: +NORMALIZE_WHITESPACE
        "<table class='multiviz'><thead><tr><th>layer</th><th>shape</th></tr></thead><tbody><tr><td>conv1</td><td>&lt;8&gt;</td></tr></tbody></table>"
    """
    esc = html.escape

    def tr(cells: Sequence[Any], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}>{esc(str(c))}</{tag}>" for c in cells) + "</tr>"

    parts = [f"<table class='{esc(css_class)}'>"]
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    if head:
        parts.append(f"<thead>{tr(head, 'th')}</thead>")
    parts.append("<tbody>" + "".join(tr(r, "td") for r in rows) + "</tbody>")
    if note:
        ncols = len(head) if head else (len(rows[0]) if rows else 1)
        parts.append(f"<tfoot><tr><td colspan='{ncols}'>{esc(note)}</td></tr></tfoot>")
    parts.append("</table>")
    return "".join(parts)
