"""Transformers benchmark: Grad-CAM and attention rollout on a ViT, as ratios to a forward.

timm's ViT-S/16 (random weights) at 224x224, batch 8 by default. Each task
is timed in one process, in rotating order, as the median of several rounds,
and reported as a ratio to the plain forward pass measured alongside:

* Grad-CAM on the last block's first norm, every sample's top class —
  multiviz with no layer and no callback (its automatic choice, made once
  per model and input shape and cached, picks ``blocks.11.norm1``),
  pytorch-grad-cam and torchcam, each with the ``reshape_transform``
  callback they need for token layers;
* attention rollout (``method="rollout"``) and gradient-weighted attention
  (``method="grad"``) — multiviz only: the peers above offer neither.

Target: Grad-CAM at most 1.3x a forward pass.

Run::

    python benchmarks/transformers.py [--quick] [--json PATH]

The peers are listed in ``benchmarks/requirements.txt``; one that is not
installed gets a row saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from capture import environment, fmt, time_variants


def _reshape(h: int, w: int):
    def transform(t: Any) -> Any:  # the callback both peers document for ViTs
        return t[:, 1:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    return transform


def run(batch: int, size: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
    import numpy as np
    import timm
    import torch

    import multiviz as mv

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=size).eval()
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        classes = model(xt).argmax(1).tolist()
    layer = model.blocks[-1].norm1
    grid = size // 16

    def forward() -> None:
        with torch.no_grad():
            model(xt)

    variants: dict[str, Any] = {
        "forward": forward,
        "multiviz Grad-CAM (no layer given)": lambda: mv.grad_cam(model, x, target=classes),
        "multiviz attention rollout": lambda: mv.attention_rollout(model, x),
        "multiviz gradient-weighted attention": lambda: mv.attention_rollout(
            model, x, "grad", target=classes
        ),
    }
    notes: dict[str, str] = {}
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer = GradCAM(model, [layer], reshape_transform=_reshape(grid, grid))
        targets = [ClassifierOutputTarget(c) for c in classes]
        variants["pytorch-grad-cam GradCAM"] = lambda: peer(xt, targets)
    except Exception as err:  # a peer that cannot run is a row
        notes["pytorch-grad-cam GradCAM"] = f"{type(err).__name__}: {err}".splitlines()[0]
    try:
        from torchcam.methods import GradCAM as TorchcamGradCAM

        def torchcam() -> None:
            with TorchcamGradCAM(
                model, target_layer=layer, reshape_transform=_reshape(grid, grid)
            ) as extractor:
                out = model(xt)
                extractor(classes, out)

        variants["torchcam GradCAM"] = torchcam
    except Exception as err:  # a peer that cannot run is a row
        notes["torchcam GradCAM"] = f"{type(err).__name__}: {err}".splitlines()[0]

    times = time_variants(variants, warmup, rounds)
    base = times["forward"]
    rows = [
        {
            "framework": "torch",
            "case": key,
            "seconds": round(t, 4),
            "ratio": round(t / base, 3),
        }
        for key, t in times.items()
    ]
    rows += [
        {"framework": "torch", "case": k, "seconds": None, "ratio": None, "note": v}
        for k, v in notes.items()
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, 3 rounds")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    batch, rounds = (2, 3) if args.quick else (args.batch, args.rounds)
    rows = run(batch, args.size, rounds, warmup=2)
    print(f"ViT-S/16, batch {batch}, {args.size}x{args.size}, random weights, CPU")
    for r in rows:
        cell = fmt(r["ratio"]) + "x" if r["ratio"] is not None else r.get("note", "")
        print(f"  {r['case']:<40} {cell}")
    if args.json:
        args.json.write_text(
            json.dumps({"environment": environment(), "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
