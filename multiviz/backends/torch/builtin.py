"""The multiviz built-in CNN in PyTorch.

The same network as :mod:`multiviz.backends.keras.builtin`, layer for layer and
name for name, so ``mv.capture(model, x, ["conv3"])`` means the same thing in
both frameworks. Use :func:`multiviz.builtin_model` rather than this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["BuiltinCNN", "GlobalAvgPool2d", "build", "state_arrays"]


class GlobalAvgPool2d(nn.Module):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``.

    Keras's ``GlobalAveragePooling2D`` returns ``(N, C)`` too; torch's
    ``AdaptiveAvgPool2d(1)`` would return ``(N, C, 1, 1)`` and need a separate
    flatten layer, breaking the one-to-one layer names.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class BuiltinCNN(nn.Module):
    """conv1-relu1-pool1, conv2-relu2-pool2, conv3-relu3, gap, fc: 4 logits.

    3x3 stride-1 convolutions with one pixel of zero padding (shape-preserving),
    2x2 max pooling with stride 2. A 64x64 input reaches conv3 at 16x16.
    Input ``(N, 3, H, W)``, any ``H, W`` of at least 4; output ``(N, 4)``
    logits (no softmax).
    """

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = GlobalAvgPool2d()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.fc(self.gap(x))


def build(weights: Mapping[str, np.ndarray] | None = None) -> BuiltinCNN:
    """Build the network in eval mode, loading PyTorch-layout ``weights`` if given.

    Args:
        weights: ``"conv1.weight"`` (OIHW), ``"conv1.bias"``, …, ``"fc.weight"``
            ((out, in)) -> NumPy array; ``None`` keeps PyTorch's random init.

    Returns:
        The model, float32, on the CPU, in eval mode.
    """
    model = BuiltinCNN()
    if weights is not None:
        state = {k: torch.from_numpy(np.array(weights[k], np.float32)) for k in model.state_dict()}
        model.load_state_dict(state)
    return model.eval()


def state_arrays(model: BuiltinCNN) -> dict[str, np.ndarray]:
    """The model's parameters as PyTorch-layout float32 NumPy arrays (for saving)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
