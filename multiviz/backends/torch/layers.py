"""A PyTorch model's layers: their names, kinds and parameter counts.

A layer is every module of ``model.named_modules()`` except the root, named
the way the user writes it (``"layer2.1.conv2"``). Its kind is read from its
class, so it means the same thing as the Keras adapter's kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from multiviz.core.records import LayerInfo
from multiviz.errors import LayerNotFoundError, layer_hint

__all__ = [
    "CONV_TYPES",
    "bounds_of",
    "find_modules",
    "geometry_of",
    "is_softmax",
    "kind_of",
    "layer_infos",
    "own_params",
    "unwrap",
]


def _public_classes(module: object, exclude: Sequence[str] = ()) -> tuple[type, ...]:
    names = [n for n in getattr(module, "__all__", ()) if n not in exclude]
    return tuple(c for c in (getattr(module, n, None) for n in names) if isinstance(c, type))


_NORMS = (
    nn.modules.batchnorm._NormBase,  # every BatchNorm, InstanceNorm, SyncBatchNorm, lazy ones
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

# checked in this order, before "container": a Conv2d with a parametrization has children
CONV_TYPES: tuple[type, ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_KIND_CLASSES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("conv", CONV_TYPES),
    ("dense", (nn.Linear, nn.Bilinear)),
    ("norm", _NORMS),
    ("activation", _public_classes(nn.modules.activation, exclude=("MultiheadAttention",))),
    ("pool", _public_classes(nn.modules.pooling)),
)

_KIND_BY_CLASS: dict[type, str | None] = {}  # class -> kind from _KIND_CLASSES, None: no match

# leaf modules of other libraries (torchvision's FrozenBatchNorm2d, ...) by class name
_KIND_WORDS = (("norm", "norm"), ("conv", "conv"), ("pool", "pool"))


def kind_of(module: nn.Module) -> str:
    """The framework-neutral kind of ``module`` (see :data:`multiviz.core.names.KINDS`).

    Example:
        >>> kind_of(nn.Conv2d(3, 8, 3)), kind_of(nn.Sequential(nn.ReLU())), kind_of(nn.Flatten())
        ('conv', 'container', 'other')
    """
    cls = type(module)
    if cls not in _KIND_BY_CLASS:
        _KIND_BY_CLASS[cls] = next(
            (k for k, classes in _KIND_CLASSES if issubclass(cls, classes)), None
        )
    kind = _KIND_BY_CLASS[cls]
    if kind is not None:
        return kind
    if next(module.children(), None) is not None:
        return "container"
    cls_name = cls.__name__.lower()
    return next((kind for kind, word in _KIND_WORDS if word in cls_name), "other")


def own_params(module: nn.Module) -> int:
    """Parameters ``module`` owns directly; an uninitialized lazy parameter counts 0.

    Example:
        >>> own_params(nn.Linear(3, 2)), own_params(nn.Sequential(nn.Linear(3, 2)))
        (8, 0)
    """
    is_lazy = nn.parameter.is_lazy
    return sum(p.numel() for p in module.parameters(recurse=False) if not is_lazy(p))


def unwrap(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper holds, so names need no ``_orig_mod.`` prefix."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else model


def layer_infos(
    model: nn.Module,
    shapes: dict[str, tuple[int | None, ...] | None] | None = None,
    layouts: dict[str, str] | None = None,
) -> list[LayerInfo]:
    """One :class:`LayerInfo` per module except the root, in ``named_modules()`` order.

    Args:
        model: the module.
        shapes: layer name -> canonical output shape, where a forward pass found it.
        layouts: layer name -> what its output is (:mod:`multiviz.core.tokens`).

    Returns:
        The layers, each with its name, class name, kind, own parameter count and shape.

    Example:
        >>> [i.name for i in layer_infos(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()))]
        ['0', '1']
    """
    shapes, layouts = shapes or {}, layouts or {}
    return [
        LayerInfo(
            name,
            type(m).__name__,
            kind_of(m),
            shapes.get(name),
            own_params(m),
            **geometry_of(m),
            bounds=bounds_of(m),
            layout=layouts.get(name, ""),
        )
        for name, m in model.named_modules()
        if name
    ]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


# 2-D layers that slide a window over the grid (not transposed convolutions: they upsample)
_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)


def geometry_of(module: nn.Module) -> dict:
    """``kernel``, ``stride``, ``padding``, ``dilation`` of a 2-D windowed layer, else ``{}``.

    Example:
        >>> geometry_of(nn.Conv2d(3, 8, 3, stride=2, padding=1))["padding"]
        ((1, 1), (1, 1))
        >>> geometry_of(nn.MaxPool2d(2))["stride"], geometry_of(nn.ReLU())
        ((2, 2), {})
    """
    if not isinstance(module, _WINDOWED):
        return {}
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    pad = getattr(module, "padding", 0)
    if isinstance(pad, str):  # Conv2d(padding="same" | "valid"), stride 1
        padding: tuple | str = pad
    else:
        padding = tuple((p, p) for p in _pair(pad))
    if getattr(module, "ceil_mode", False):
        return {}  # the last window may hang past the padding: not an affine grid map
    dilation = _pair(getattr(module, "dilation", 1))
    return {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}


def bounds_of(module: nn.Module) -> tuple[float, ...] | None:
    """The values a bounded activation saturates at (see :mod:`multiviz.core.stats`).

    Example:
        >>> bounds_of(nn.ReLU6()), bounds_of(nn.Sigmoid()), bounds_of(nn.Tanh()), bounds_of(nn.ReLU())
        ((6.0,), (0.0, 1.0), (-1.0, 1.0), None)
    """
    if isinstance(module, nn.ReLU6):  # a Hardtanh(0, 6): only 6 saturates, 0 is "zero"
        return (6.0,)
    if isinstance(module, nn.Sigmoid | nn.Hardsigmoid):
        return (0.0, 1.0)
    if isinstance(module, nn.Tanh):
        return (-1.0, 1.0)
    if isinstance(module, nn.Hardtanh):
        return (float(module.min_val), float(module.max_val))
    return None


def find_modules(model: nn.Module, names: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """Look up each layer name: a module name exactly as ``named_modules()`` gives it.

    Raises:
        LayerNotFoundError: a name is no module of ``model``; the message lists
            the closest real names.

    Example:
        >>> find_modules(nn.Sequential(nn.ReLU()), ["0"])
        [('0', ReLU())]
    """
    table = {n: m for n, m in model.named_modules(remove_duplicate=False) if n}
    found: list[tuple[str, nn.Module]] = []
    for name in dict.fromkeys(names):
        if name not in table:
            raise LayerNotFoundError(
                f"No layer named {name!r} in this {type(model).__name__}." + layer_hint(name, table)
            )
        found.append((name, table[name]))
    return found


def is_softmax(module: object) -> bool:
    """True for ``nn.Softmax``, ``nn.LogSoftmax`` and ``nn.Softmax2d``."""
    return isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmax2d))
