"""The backend contract: the only verbs the framework-free core needs.

A backend adapts one framework. Everything it returns is NumPy in the
canonical layout (see :mod:`multiviz.activations`), so nothing downstream
knows which framework produced an array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from multiviz.activations import LayerInfo

__all__ = ["Backend", "GradientResult", "Target"]

#: What a gradient is taken of. ``None``: each sample's top-scoring class;
#: an int array of shape (N,): one class per sample; a callable: receives the
#: model's (pre-softmax) output as a framework tensor and returns one score per
#: sample as a framework tensor of shape (N,).
Target = np.ndarray | Callable[[Any], Any] | None


@dataclass
class GradientResult:
    """What :meth:`Backend.gradients` returns (all NumPy, canonical layout).

    Attributes:
        output: the model's output for the batch, pre-softmax where the model
            ends in a softmax, shape (N, ...).
        targets: the class index scored per sample, shape (N,), or ``None``
            when the target was a callable.
        scores: the scored value per sample, shape (N,).
        activations: layer name -> activation, as :meth:`Backend.capture` would.
        gradients: layer name -> d(sum of scores)/d(activation), same shapes.
        input_gradient: d(sum of scores)/d(input) in the input's own layout
            (NCHW for PyTorch, the model's input layout for Keras), or ``None``.
    """

    output: np.ndarray
    targets: np.ndarray | None
    scores: np.ndarray
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    gradients: dict[str, np.ndarray] = field(default_factory=dict)
    input_gradient: np.ndarray | None = None


class Backend(Protocol):
    """What every framework adapter provides.

    Input ``x`` is the framework's native layout: NCHW for PyTorch, the model's
    input layout (normally NHWC) for Keras; a NumPy array or a framework tensor.
    """

    name: str

    def owns(self, model: object) -> bool:
        """True when ``model`` belongs to this framework (decided from its type)."""

    def layers(self, model: Any, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
        """Every addressable layer, in model order.

        ``input_shape`` (one sample, no batch axis, the framework's layout) lets
        a backend that cannot know output shapes statically (PyTorch) fill them
        in from one forward pass on zeros.
        """

    def capture(self, model: Any, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One forward pass; the chosen layers' outputs, canonical layout.

        Keys are layer names, with ``#k`` for the k-th extra call of a layer
        called several times, and ``[i]`` / ``[key]`` for layers with several
        outputs.
        """

    def forward(self, model: Any, x: Any) -> np.ndarray:
        """The model's output for ``x`` (inference mode, model unchanged)."""

    def gradients(
        self,
        model: Any,
        x: Any,
        names: Sequence[str],
        target: Target = None,
        wrt_input: bool = False,
        guided: bool = False,
    ) -> GradientResult:
        """Activations of ``names`` and gradients of the target score.

        ``guided=True`` replaces every ReLU's backward pass with guided
        backpropagation's (Springenberg et al. 2015) for this call only.
        """

    def input_layout(self, model: Any) -> str:
        """``"channels_first"`` or ``"channels_last"``: the layout ``x`` must have."""
