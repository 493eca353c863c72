"""The errors attribution raises on top of :mod:`multiviz.errors`."""

from __future__ import annotations

from multiviz.errors import MultivizError, TargetError

__all__ = ["CamHeadError", "NotSpatialLayerError", "TargetError"]


class NotSpatialLayerError(MultivizError, ValueError):
    """The layer a CAM method was given does not output a spatial map ``(N, C, H, W)``."""


class CamHeadError(MultivizError, ValueError):
    """The model's head is not what CAM needs: global average pooling, then a dense layer."""
