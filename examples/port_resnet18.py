"""Port torchvision's ResNet-18 to Keras, prove the port, then catch two porting bugs.

    python examples/port_resnet18.py [--size 64] [--out port_resnet18_out]

1. Build ``torchvision.models.resnet18(weights=None)`` in eval mode, with its
   BatchNorm running statistics randomized (fresh ones are mean 0, variance 1,
   which would hide BatchNorm bugs).
2. Build the Keras twin (:func:`keras_resnet18` below — the code a port
   writes: ``ZeroPadding2D`` + ``"valid"`` convolutions, BatchNorm epsilon 1e-5),
   copy the weights with :func:`multiviz.transfer_weights` (layers paired by
   structure: the names differ) and check every layer with
   :func:`multiviz.compare`.
3. Bug (a): one stride-2 convolution ported with TensorFlow's
   ``padding="same"``, which pads asymmetrically.
4. Bug (b): one BatchNormalization left at Keras's default epsilon 1e-3;
   ``transfer_weights`` refuses it, and with ``check_config=False`` the
   report points at it.

Writes the reports (text and JSON) and the figures to ``--out``; exits with
status 1 if any expectation fails. Needs torch, torchvision, tensorflow and
keras; downloads nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import torch  # torch before TensorFlow, or the process can segfault
import torchvision

# isort: split
import keras  # after torch

import multiviz as mv

#: the two seeded bugs: (Keras layer to break, the PyTorch layer the report must name)
SAME_PADDING = ("conv3_block1_1_conv", "layer2.0.conv1")
EPSILON = ("conv4_block1_2_bn", "layer3.0.bn2")


def torch_resnet18(seed: int = 0) -> torch.nn.Module:
    """torchvision ResNet-18, random weights, BatchNorm statistics randomized, eval mode."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
    return model.eval()  # BatchNorm uses the running statistics


def keras_resnet18(
    input_shape: tuple[int, int, int],
    *,
    same_padding: Collection[str] = (),
    bn_epsilon: Mapping[str, float] | None = None,
) -> keras.Model:
    """ResNet-18 in Keras, layer for layer torchvision's (random weights: transfer into it).

    A faithful port pads the way PyTorch does: ``Conv2d(padding=p)`` is
    ``ZeroPadding2D(p)`` + ``padding="valid"`` (Keras's ``"same"`` pads
    asymmetrically at stride 2), the stem max-pool's -inf padding is zero
    padding after a ReLU, BatchNorm has PyTorch's epsilon 1e-5, convolutions
    have no bias, and layers are created in PyTorch's order (main path, then
    shortcut) so that pairing by structure lines them up. ``same_padding``
    (convolution names) and ``bn_epsilon`` (BatchNorm name -> epsilon) build
    the two classic porting bugs into chosen layers.
    """
    same, eps = set(same_padding), dict(bn_epsilon or {})

    def conv_bn(x, filters: int, kernel: int, stride: int, pad: int, prefix: str):
        name = f"{prefix}_conv"
        if name in same:
            x = keras.layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=name)(x)
        else:
            if pad:
                x = keras.layers.ZeroPadding2D(pad, name=f"{prefix}_pad")(x)
            x = keras.layers.Conv2D(filters, kernel, stride, "valid", use_bias=False, name=name)(x)
        epsilon = eps.get(f"{prefix}_bn", 1e-5)
        # Keras momentum 0.9 is PyTorch's default momentum 0.1
        bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=epsilon, name=f"{prefix}_bn")
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
            x = block(x, filters, 2 if (k == 1 and stage > 2) else 1, f"conv{stage}_block{k}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(1000, name="predictions")(x), name="resnet18")


def save(report: mv.ParityReport, out: Path, stem: str, layer: str | None = None) -> None:
    (out / f"{stem}.txt").write_text(str(report) + "\n", encoding="utf-8")
    report.to_json(out / f"{stem}.json")
    report.plot().savefig(out / f"{stem}_depth.png", dpi=110)
    mv.plot_comparison(report, layer).savefig(out / f"{stem}_maps.png", dpi=110)


def _line(row) -> str:
    """One row of a ParityReport (or ``None``) in a few words."""
    if row is None:
        return "none"
    return f"{row.label} (max|diff| {row.max_abs:.3g}, rel err {row.rel_err:.3g})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--out", type=Path, default=Path("port_resnet18_out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shape = (args.size, args.size, 3)
    x = np.random.default_rng(0).normal(size=(2, 3, args.size, args.size)).astype(np.float32)
    failures = []

    # 1-2. the faithful port
    torch_model = torch_resnet18()
    keras_model = keras_resnet18(shape)
    transfer = mv.transfer_weights(torch_model, keras_model)
    print(f"transfer: {len(transfer.pairs)} layers copied, torch -> keras")
    report = mv.compare(torch_model, keras_model, x, atol=1e-4, rtol=1e-4)
    save(report, args.out, "port_ok", "layer2.0.conv1")
    worst = max(report, key=lambda r: r.max_abs)
    print(
        f"faithful port: {len(report)} pairs, {len(report) - len(report.failures)} PASS; "
        f"worst max|diff| {worst.max_abs:.2e} at {worst.name}"
    )
    if not report.passed:
        failures.append(f"faithful port failed at {report.first_divergence.name}")

    # 3. bug (a): TensorFlow "same" padding on a stride-2 convolution
    broken = keras_resnet18(shape, same_padding=[SAME_PADDING[0]])
    mv.transfer_weights(torch_model, broken)
    report = mv.compare(torch_model, broken, x)
    save(report, args.out, "bug_same_padding")
    first = report.first_divergence
    print(f"\nbug (a) padding='same' at {SAME_PADDING[0]}:\n  first divergence: {_line(first)}")
    if first is None or first.name != SAME_PADDING[1]:
        failures.append(f"bug (a) reported at {first and first.name}, expected {SAME_PADDING[1]}")

    # 4. bug (b): a BatchNormalization left at Keras's default epsilon
    broken = keras_resnet18(shape, bn_epsilon={EPSILON[0]: 1e-3})
    try:
        mv.transfer_weights(torch_model, broken)
        failures.append("transfer_weights accepted an epsilon mismatch")
    except mv.MultivizError as err:
        print(f"\nbug (b) epsilon=1e-3 at {EPSILON[0]}: transfer_weights refuses:\n  {err}")
    mv.transfer_weights(torch_model, broken, check_config=False)
    report = mv.compare(torch_model, broken, x)
    save(report, args.out, "bug_epsilon")
    first = report.first_divergence
    print(f"  with check_config=False, first divergence: {_line(first)}")
    if first is None or first.name != EPSILON[1]:
        failures.append(f"bug (b) reported at {first and first.name}, expected {EPSILON[1]}")

    print(f"\nreports and figures in {args.out}/")
    for f in failures:
        print("FAILED:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
