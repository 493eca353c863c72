"""ResNet-18 in Keras 3, built to match ``torchvision.models.resnet18`` exactly.

What a faithful port needs, and what this builder does:

* PyTorch pads symmetrically (``Conv2d(padding=1)``); Keras ``padding="same"``
  with stride 2 pads *asymmetrically* (0 before, 1 after, on an even input).
  So every padded convolution is ``ZeroPadding2D(p)`` + ``padding="valid"``.
* The stem max-pool pads with -inf in PyTorch; after a ReLU zero padding is
  the same thing, so ``ZeroPadding2D(1)`` + ``MaxPooling2D(3, 2)``.
* ``BatchNormalization(epsilon=1e-5, momentum=0.9)`` (Keras defaults to 1e-3
  and 0.99; Keras momentum ``k`` is PyTorch momentum ``1 - k``).
* Convolutions without bias, as in torchvision.
* Layers are created in PyTorch's execution order (main path, then the
  shortcut), so structural pairing by order lines them up.

Layer names follow ``keras.applications`` (``conv2_block1_1_conv``…), not
PyTorch's, so :func:`multiviz.compare` has to pair by structure.

``same_padding`` and ``bn_epsilon`` reintroduce the two classic porting bugs
on chosen layers, for tests and the worked example.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import keras

__all__ = ["resnet18"]

TORCH_EPS = 1e-5


def resnet18(
    num_classes: int = 1000,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    *,
    same_padding: Collection[str] = (),
    bn_epsilon: float | Mapping[str, float] = TORCH_EPS,
) -> keras.Model:
    """Build a channels-last ResNet-18 whose layers match torchvision's one to one.

    Args:
        num_classes: size of the final Dense layer.
        input_shape: ``(H, W, 3)``; ``None`` for any size.
        same_padding: names of convolutions (``"conv1_conv"``,
            ``"conv3_block1_1_conv"``…) to build the *wrong* way, with
            ``padding="same"`` instead of symmetric zero padding.
        bn_epsilon: epsilon of every BatchNormalization, or a mapping from
            BatchNormalization names to epsilon (others keep 1e-5).

    Returns:
        A randomly initialised ``keras.Model`` (transfer weights into it).

    Example:
        >>> model = resnet18(10, (64, 64, 3))  # doctest: +SKIP
        >>> model.output_shape  # doctest: +SKIP
        (None, 10)
    """
    same = set(same_padding)

    def eps(name: str) -> float:
        if isinstance(bn_epsilon, Mapping):
            return float(bn_epsilon.get(name, TORCH_EPS))
        return float(bn_epsilon)

    def conv_bn(x, filters: int, kernel: int, stride: int, pad: int, prefix: str):
        name = f"{prefix}_conv"
        if name in same:
            x = keras.layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=name)(x)
        else:
            if pad:
                x = keras.layers.ZeroPadding2D(pad, name=f"{prefix}_pad")(x)
            x = keras.layers.Conv2D(filters, kernel, stride, "valid", use_bias=False, name=name)(x)
        bn = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=eps(f"{prefix}_bn"), name=f"{prefix}_bn"
        )  # Keras momentum 0.9 is PyTorch's default momentum 0.1
        return bn(x)

    def block(x, filters: int, stride: int, name: str):
        y = conv_bn(x, filters, 3, stride, 1, f"{name}_1")
        y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
        y = conv_bn(y, filters, 3, 1, 1, f"{name}_2")
        if stride != 1 or x.shape[-1] != filters:
            x = conv_bn(x, filters, 1, stride, 0, f"{name}_0")
        y = keras.layers.Add(name=f"{name}_add")([y, x])
        return keras.layers.ReLU(name=f"{name}_out")(y)

    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn(inputs, 64, 7, 2, 3, "conv1")
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for k in (1, 2):
            stride = 2 if (k == 1 and stage > 2) else 1
            x = block(x, filters, stride, f"conv{stage}_block{k}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet18")
