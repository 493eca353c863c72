"""The errors attribution raises on top of :mod:`multiviz.errors`."""

from __future__ import annotations

from multiviz.errors import MultivizError

__all__ = ["CamHeadError", "NotSpatialLayerError", "TargetError"]


class NotSpatialLayerError(MultivizError, ValueError):
    """The layer a CAM method was given does not output a spatial map ``(N, C, H, W)``."""


class TargetError(MultivizError, ValueError):
    """``target`` does not fit the batch or the model's output."""


class CamHeadError(MultivizError, ValueError):
    """The model's head is not what CAM needs: global average pooling, then a dense layer."""
