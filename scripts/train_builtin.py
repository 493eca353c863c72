"""Train the multiviz built-in CNN on generated shapes and ship its weights.

    python scripts/train_builtin.py            # writes multiviz/data/builtin_cnn.npz

Trains the PyTorch version on CPU (a few minutes on 2 cores) on freshly
generated :mod:`multiviz.sources.shapes_dataset` images, measures accuracy on a held-out set
generated with another seed, checks that Grad-CAM on conv3 finds the shape,
and writes the weights (PyTorch layout) with that record as JSON metadata in
the same ``.npz``. Nothing is downloaded.

Two constraints shape what the network learns, each kept by projecting the
weights after every optimizer step; the network itself stays plain convolutions
and a plain linear layer:

* conv1's 3x3 filters sum to zero over each input channel, so conv1 ignores
  flat colour and answers to change (edges, corners). The shape's colour is
  random and tells nothing about its class; without this the net sits at
  chance level for epochs before it finds the shape.
* fc's weights are non-negative (from epoch ``--nonneg-from`` on). With a
  free ``fc`` a channel can vote *against* a class, and Grad-CAM on conv3 (a
  pre-ReLU output, negative over most of the background) then lights up the
  background, often the zero-padded border. With ``fc.weight >= 0`` every
  channel is positive evidence for the classes it feeds, and the maps peak on
  the shape.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import torch  # before any TensorFlow import, always (see tests/conftest.py)
import torch.nn.functional as F

from multiviz.backends.torch.builtin import build, state_arrays
from multiviz.core.resize import resize_bilinear
from multiviz.sources.builtin import BUILTIN_WEIGHTS_PATH, builtin_weights
from multiviz.sources.shapes_dataset import shapes_dataset

TRAIN_SEED, TEST_SEED, VAL_SEED = 1, 2, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8000, help="training images")
    parser.add_argument("--test", type=int, default=2000, help="held-out images")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--nonneg-from", type=int, default=0, help="epoch from which fc.weight is kept >= 0"
    )
    parser.add_argument("--seed", type=int, default=0, help="torch init and shuffling")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the default) or cuda")
    parser.add_argument("--out", type=Path, default=BUILTIN_WEIGHTS_PATH)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train = shapes_dataset(args.train, seed=TRAIN_SEED)
    # other seeds: images never seen in training. Validation is for choosing
    # among runs; the held-out set is only for the number we report.
    val = shapes_dataset(1000, seed=VAL_SEED)
    test = shapes_dataset(args.test, seed=TEST_SEED)
    print(f"generated the images in {time.perf_counter() - start:.1f} s", flush=True)

    model = build(None)
    init_weights(model)
    start = time.perf_counter()
    fit(model, train, args)
    train_s = time.perf_counter() - start
    model = model.cpu().eval()

    accuracy = float((predict(model, test.images) == test.labels).mean())
    val_accuracy = float((predict(model, val.images) == val.labels).mean())
    loc = localization(model, test[:100])
    meta = {
        "model": "multiviz built-in CNN",
        "heldout_accuracy": round(accuracy, 4),
        "heldout_images": args.test,
        "heldout_seed": TEST_SEED,
        "grad_cam_conv3_peak_in_box": loc["grad_cam"],
        "cam_peak_in_box": loc["cam"],
        "localization_images": 100,
        "val_accuracy": round(val_accuracy, 4),
        "val_grad_cam_conv3_peak_in_box": localization(model, val[:200])["grad_cam"],
        "train_images": args.train,
        "train_seed": TRAIN_SEED,
        "image_size": 64,
        "epochs": args.epochs,
        "batch": args.batch,
        "optimizer": f"Adam lr={args.lr}, cosine decay to 0",
        "init": "He-normal convs, zero biases",
        "constraints": "conv1 filters sum to 0 per input channel; fc.weight >= 0",
        "nonneg_fc_from_epoch": args.nonneg_from,
        "torch_seed": args.seed,
        "device": f"{args.device}, {args.threads} threads" if args.device == "cpu" else args.device,
        "train_seconds": round(train_s, 1),
        "torch_version": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **state_arrays(model), meta=np.array(json.dumps(meta)))
    builtin_weights(args.out)  # the file reads back through the public loader
    print(json.dumps(meta, indent=2))
    print(
        f"multiviz built-in CNN: {accuracy:.1%} held-out accuracy on {args.test} generated images; "
        f"Grad-CAM on conv3 peaks inside the shape's box on {loc['grad_cam']:.0%} of 100; "
        f"trained in {train_s:.0f} s ({meta['device']}); "
        f"{args.out.stat().st_size / 1024:.0f} KiB."
    )


def init_weights(model: torch.nn.Module) -> None:
    """He-normal convolutions with zero biases: trains faster than torch's default here."""
    for conv in (model.conv1, model.conv2, model.conv3):
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    project(model, nonneg_fc=False)


@torch.no_grad()
def project(model: torch.nn.Module, nonneg_fc: bool) -> None:
    """Restore the constraints (see the module docstring) after a step."""
    weight = model.conv1.weight  # (out, in, 3, 3)
    weight -= weight.mean(dim=(2, 3), keepdim=True)
    if nonneg_fc:
        model.fc.weight.clamp_(min=0.0)


def fit(model: torch.nn.Module, data, args: argparse.Namespace) -> None:
    """Adam with cosine learning-rate decay, cross-entropy on the logits."""
    device = torch.device(args.device)
    # channels-last runs the CPU convolutions several times faster
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    x_all = torch.from_numpy(data.images).to(device)
    y_all = torch.from_numpy(data.labels).to(device)
    steps = args.epochs * ((len(data) + args.batch - 1) // args.batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for epoch in range(args.epochs):
        nonneg = epoch >= args.nonneg_from
        order = torch.randperm(len(data), device=device)
        total, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for i in range(0, len(data), args.batch):
            idx = order[i : i + args.batch]
            logits = model(x_all[idx].contiguous(memory_format=layout))
            loss = F.cross_entropy(logits, y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            project(model, nonneg_fc=nonneg)
            total += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y_all[idx]).sum()
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {float(total) / len(data):.4f}, "
            f"train acc {float(correct) / len(data):.3f}" + (", fc >= 0" if nonneg else ""),
            flush=True,
        )
    model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            model(torch.from_numpy(images[i : i + 256])).argmax(1).numpy()
            for i in range(0, len(images), 256)
        ]
    )


def localization(model: torch.nn.Module, data) -> dict[str, float]:
    """Share of images whose upsampled map peaks inside the true box (predicted class).

    CAM (Zhou et al. 2016): sum_k fc.weight[c, k] * relu3_k. Grad-CAM
    (Selvaraju et al. 2017) on conv3's output: ReLU(sum_k mean(dS_c/dA_k) * A_k).
    """
    acts: dict[str, torch.Tensor] = {}
    hook = model.conv3.register_forward_hook(lambda m, i, o: acts.__setitem__("conv3", o))
    try:
        x = torch.from_numpy(data.images)
        logits = model(x)
        pred = logits.argmax(1)
        conv3 = acts["conv3"]
        grads = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), conv3)[0]
    finally:
        hook.remove()
    a = conv3.detach().numpy()
    cam = np.einsum(
        "nk,nkhw->nhw", model.fc.weight.detach().numpy()[pred.numpy()], np.maximum(a, 0)
    )
    alpha = grads.numpy().mean(axis=(2, 3))
    grad_cam = np.maximum(np.einsum("nk,nkhw->nhw", alpha, a), 0)
    size = data.images.shape[-2:]
    return {
        name: _peak_in_box(resize_bilinear(m, size), data.boxes)
        for name, m in (("cam", cam), ("grad_cam", grad_cam))
    }


def _peak_in_box(maps: np.ndarray, boxes: np.ndarray) -> float:
    hits = 0
    for m, (x0, y0, x1, y1) in zip(maps, boxes, strict=True):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        hits += int(x0 <= x < x1 and y0 <= y < y1)
    return round(hits / len(maps), 3)


if __name__ == "__main__":
    main()
