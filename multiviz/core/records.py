"""Framework-free records of what a backend found: layers and captured outputs.

Everything below this line is NumPy: arrays here are float32 copies in the
canonical layout, batch first and channels first —

* ``(N, C, H, W)`` for 2-D feature maps,
* ``(N, C, L)`` for 1-D feature maps,
* ``(N, F)`` for vectors,

whichever framework produced them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from multiviz.core.views import MAX_LINES, array_summary, clip_rows, html_table, plural, text_table

__all__ = ["Activations", "LayerInfo", "LayerTable"]


@dataclass(frozen=True)
class LayerInfo:
    """One addressable layer of a model.

    Attributes:
        name: the name to pass to :func:`multiviz.capture` (``"layer2.1.conv2"``
            in PyTorch, ``"conv2_block1_out"`` or ``"outer/inner"`` in Keras).
        type: the layer's class name (``"Conv2d"``, ``"Conv2D"``…).
        kind: a framework-neutral kind: ``"conv"``, ``"dense"``, ``"norm"``,
            ``"activation"``, ``"pool"``, ``"container"`` or ``"other"``.
        shape: output shape in the canonical layout (batch axis as ``None``)
            where it is known without running the model, else ``None``.
        params: number of parameters the layer owns directly.
        base: the layer this entry is one call or output of, as a backend is
            asked for it: ``"split"`` for ``"split[0]"``, ``"relu"`` for
            ``"relu#1"``; the name itself for an entry that is the whole layer
            (the default). Read by :mod:`multiviz.core.names`, never parsed
            from the name: a layer may be literally named ``"conv[3x3]"``.
        kernel: for layers that slide a window over a 2-D grid (convolutions,
            poolings): the window's size per spatial axis ``(kh, kw)``; ``None``
            for layers that keep the grid. With ``stride``, ``padding`` and
            ``dilation`` it places each output unit's receptive field
            (:func:`multiviz.scan`).
        stride: the window's step per axis.
        padding: ``((top, bottom), (left, right))`` pixels added, or
            ``"same"`` / ``"valid"`` (TensorFlow's rule: see
            :class:`multiviz.scanning.fields.Geometry`).
        dilation: the window's dilation per axis.
        bounds: the values the layer's output saturates at when it ends in a
            bounded activation: ReLU6 ``(6.0,)``, sigmoid and hard-sigmoid
            ``(0.0, 1.0)``, tanh ``(-1.0, 1.0)``; ``None`` for an unbounded
            layer (see :mod:`multiviz.core.stats` for "saturated").
        layout: what the output is where known (``"channels_first"``,
            ``"channels_last"``, ``"tokens"``, ``"patches"``, ``"attention"``
            for attention internals that are never an image, ``"other"``;
            see :mod:`multiviz.core.tokens`), else ``""``.

    Example:
        >>> LayerInfo("conv1", "Conv2d", "conv", (None, 8, 32, 32), 224).kind
        'conv'
    """

    name: str
    type: str
    kind: str = "other"
    shape: tuple[int | None, ...] | None = None
    params: int = 0
    base: str = field(default="", repr=False, compare=False)
    kernel: tuple[int, ...] | None = field(default=None, repr=False)
    stride: tuple[int, ...] | None = field(default=None, repr=False)
    padding: tuple[tuple[int, int], ...] | str | None = field(default=None, repr=False)
    dilation: tuple[int, ...] | None = field(default=None, repr=False)
    bounds: tuple[float, ...] | None = field(default=None, repr=False)
    layout: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.base:
            object.__setattr__(self, "base", self.name)
        elif not self.name.startswith(self.base):
            raise ValueError(f"LayerInfo {self.name!r} cannot be an entry of layer {self.base!r}.")


class LayerTable(list[LayerInfo]):
    """The list :func:`multiviz.layers` returns, printed as a table.

    It is a plain ``list`` of :class:`LayerInfo` in every other respect.

    Example:
        >>> print(LayerTable([LayerInfo("conv1", "Conv2d", "conv", (None, 8, 32, 32), 224)]))
        name   type    kind  output shape       params
        conv1  Conv2d  conv  (None, 8, 32, 32)     224
    """

    def __str__(self) -> str:
        head = ("name", "type", "kind", "output shape", "params")
        rows = [
            (i.name, i.type, i.kind, "?" if i.shape is None else str(i.shape), f"{i.params:,}")
            for i in self
        ]
        widths = [max(len(r[k]) for r in [head, *rows]) for k in range(5)]
        lines = []
        for r in [head, *rows]:
            cells = [r[k].ljust(widths[k]) for k in range(4)] + [r[4].rjust(widths[4])]
            lines.append("  ".join(cells))
        return "\n".join(lines)

    def __repr__(self) -> str:
        """The table, cut to at most 20 lines (``print(table)`` shows every row)."""
        lines = str(self).splitlines()
        if len(lines) <= MAX_LINES:
            return "\n".join(lines)
        rows = len(lines) - 1
        return "\n".join(
            [
                *lines[:13],
                f"… {rows - 18:,} more rows of {rows:,} (print(...) shows all)",
                *lines[-6:],
            ]
        )

    def _repr_html_(self) -> str:
        rows = [
            (i.name, i.type, i.kind, "?" if i.shape is None else str(i.shape), f"{i.params:,}")
            for i in self
        ]
        params = sum(i.params for i in self)
        return html_table(
            rows,
            ("name", "type", "kind", "output shape", "params"),
            caption=f"{plural(len(self), 'layer')}, {plural(params, 'parameter')}",
        )

    def __getitem__(self, index):  # a slice of a table is a table
        got = super().__getitem__(index)
        return LayerTable(got) if isinstance(index, slice) else got


@dataclass
class Activations(Mapping[str, np.ndarray]):
    """Captured layer outputs: an ordered, read-only mapping name -> array.

    Arrays are float32 NumPy copies in the canonical layout. Order follows the
    order in which the layers ran. ``framework`` says which backend produced
    them (``"torch"`` or ``"keras"``); nothing downstream depends on it.

    A vision transformer's token layer comes back as a ``(N, C, h, w)`` map of
    its patch tokens; ``prefix[name]`` holds its ``(N, P, C)`` prefix tokens
    (class, distillation, register tokens), and ``artifacts[name]`` the
    high-norm patch tokens found in it as ``(K, 3)`` ``(sample, row, column)``
    (see :mod:`multiviz.core.tokens`).

    Example:
        >>> import numpy as np
        >>> acts = Activations({"conv1": np.zeros((1, 8, 4, 4), np.float32)}, "torch")
        >>> acts["conv1"].shape
        (1, 8, 4, 4)
        >>> list(acts)
        ['conv1']
    """

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    framework: str = ""
    #: layer name -> the values its bounded activation saturates at (bounded layers only;
    #: see :attr:`LayerInfo.bounds`); :func:`multiviz.layer_stats` reads it
    bounds: dict[str, tuple[float, ...]] = field(default_factory=dict, repr=False)
    prefix: dict[str, np.ndarray] = field(default_factory=dict)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            from multiviz.errors import LayerNotFoundError, closest

            hint = closest(name, self.arrays, n=5)
            captured = list(self.arrays)
            listed = captured if len(captured) <= 5 else [*captured[:5], "…"]
            raise LayerNotFoundError(
                f"{name!r} was not captured; the capture holds {plural(len(captured), 'layer')}"
                " (list(acts) names them)."
                + (f" Did you mean {hint[0]!r}?" if hint else f" Captured: {listed}.")
                + (f" Close: {hint[1:]}." if len(hint) > 1 else "")
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def _headline(self) -> str:
        n = next(iter(self.arrays.values())).shape[0] if self.arrays else 0
        return (
            f"Activations({self.framework or '?'}, {plural(len(self), 'layer')}, "
            f"{plural(n, 'sample')})"
        )

    def __repr__(self) -> str:
        """A headline, then one line per layer (at most 20 lines in all)."""
        rows, more = clip_rows(list(self.arrays.items()), MAX_LINES - 2, "layers")
        table = text_table([(name, array_summary(arr)) for name, arr in rows])
        lines = [self._headline(), *("  " + line for line in table.splitlines())]
        if more:
            lines.append(f"  {more} (list(acts) names them all)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows, more = clip_rows(list(self.arrays.items()), 200, "layers")
        return html_table(
            [(name, array_summary(arr)) for name, arr in rows],
            ("layer", "array"),
            caption=self._headline(),
            note=more,
        )
