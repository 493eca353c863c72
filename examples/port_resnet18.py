"""Port torchvision's ResNet-18 to Keras, prove the port, then catch two porting bugs.

    python examples/port_resnet18.py [--size 64] [--out port_resnet18_out]

1. Build ``torchvision.models.resnet18(weights=None)`` in eval mode, with its
   BatchNorm running statistics randomized (fresh ones are mean 0, variance 1,
   which would hide BatchNorm bugs).
2. Build the Keras twin (:func:`multiviz.backends.keras.resnet18.resnet18`:
   ``ZeroPadding2D`` + ``"valid"`` convolutions, BatchNorm epsilon 1e-5),
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
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import torch  # torch before TensorFlow, or the process can segfault
import torchvision

import multiviz as mv
import multiviz.parity.report
from multiviz.backends.keras.resnet18 import resnet18  # imports keras

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


def save(report: mv.ParityReport, out: Path, stem: str, layer: str | None = None) -> None:
    (out / f"{stem}.txt").write_text(str(report) + "\n", encoding="utf-8")
    report.to_json(out / f"{stem}.json")
    report.plot().savefig(out / f"{stem}_depth.png", dpi=110)
    mv.plot_comparison(report, layer).savefig(out / f"{stem}_maps.png", dpi=110)


def _line(row: multiviz.parity.report.LayerParity | None) -> str:
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
    keras_model = resnet18(1000, shape)
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
    broken = resnet18(1000, shape, same_padding=[SAME_PADDING[0]])
    mv.transfer_weights(torch_model, broken)
    report = mv.compare(torch_model, broken, x)
    save(report, args.out, "bug_same_padding")
    first = report.first_divergence
    print(f"\nbug (a) padding='same' at {SAME_PADDING[0]}:\n  first divergence: {_line(first)}")
    if first is None or first.name != SAME_PADDING[1]:
        failures.append(f"bug (a) reported at {first and first.name}, expected {SAME_PADDING[1]}")

    # 4. bug (b): a BatchNormalization left at Keras's default epsilon
    broken = resnet18(1000, shape, bn_epsilon={EPSILON[0]: 1e-3})
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
