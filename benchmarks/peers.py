"""Peers benchmark: the same work done by the libraries a user might pick instead.

Two tasks on ResNet-50 (random weights; batch 8, 224x224 by default), each
tool timed as a ratio to the plain forward pass measured in the same process:

* capture 5 layers (the stem ReLU and the end of each stage) —
  multiviz, torchvision's ``create_feature_extractor``, torchlens (PyTorch);
  multiviz, keract (Keras);
* Grad-CAM of the last stage for each sample's top class (the classes are
  fixed up front, so every tool does one forward and one backward pass) —
  multiviz, pytorch-grad-cam, torchcam, Captum (PyTorch); multiviz,
  tf-keras-vis (Keras).

Every tool runs in its own subprocess: torchlens, for one, leaves torch's
functions wrapped after its first call, which slows every later forward pass
in that process, and a peer that crashes must not take the others down. A
tool that fails to install, import or run gets a row with its one-line error.

Run::

    python benchmarks/peers.py [--quick] [--framework torch|keras|both] [--json PATH]

The peers are listed in ``benchmarks/requirements.txt``.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from capture import (
    FIVE_LAYERS,
    QUICK,
    Config,
    environment,
    fmt,
    import_frameworks,
    time_variants,
)

CAM_LAYER = {"torch": "layer4", "keras": "conv5_block3_out"}


@dataclass(frozen=True)
class Peer:
    """One tool doing one task."""

    key: str
    framework: str
    task: str
    tool: str
    make: Callable[[Any, Any, dict[str, Any]], Callable[[], Any]]
    note: str = ""
    interleave: bool = True  # False: time it after the baseline, not alternating


# --------------------------------------------------------------------------- PyTorch


def _mv_capture(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import multiviz as mv

    return lambda: mv.capture(model, x, ctx["five"])


def _mv_grad_cam(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import multiviz as mv

    return lambda: mv.grad_cam(model, x, layer=ctx["cam_layer"], target=ctx["targets"])


def _tv_extractor(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    t0 = time.perf_counter()
    extractor = create_feature_extractor(model, return_nodes=ctx["five"])
    ctx["build_s"] = time.perf_counter() - t0

    def run() -> Any:
        with torch.inference_mode():
            return extractor(x)

    return run


def _torchlens(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import torchlens as tl

    return lambda: tl.extract(model, x, ctx["five"])


def _pytorch_grad_cam(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(model)  # its hooks live as long as the GradCAM object
    cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
    targets = [ClassifierOutputTarget(int(c)) for c in ctx["targets"]]
    return lambda: cam(input_tensor=x, targets=targets)


def _torchcam(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    from torchcam.methods import GradCAM

    model = copy.deepcopy(model)  # its hooks stay on the model until remove_hooks()
    extractor = GradCAM(model, target_layer=ctx["cam_layer"])
    classes = [int(c) for c in ctx["targets"]]

    def run() -> Any:
        scores = model(x)
        return extractor(classes, scores)

    return run


def _captum(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    gradcam = LayerGradCam(model, model.layer4)
    target = torch.as_tensor(ctx["targets"])
    size = tuple(x.shape[-2:])

    def run() -> Any:
        attr = gradcam.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(attr, size, interpolate_mode="bilinear")

    return run


# --------------------------------------------------------------------------- Keras


def _keract(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    import keract

    x_np = x.numpy()
    return lambda: keract.get_activations(model, x_np, layer_names=ctx["five"])


def _tf_keras_vis(model: Any, x: Any, ctx: dict[str, Any]) -> Callable[[], Any]:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore([int(c) for c in ctx["targets"]])
    x_np = x.numpy()
    return lambda: gradcam(score, x_np, penultimate_layer=ctx["cam_layer"])


CAPTURE, GRADCAM = "capture 5 layers", "Grad-CAM"
PEERS = [
    Peer("mv-capture-torch", "torch", CAPTURE, "multiviz `mv.capture`", _mv_capture),
    Peer(
        "tv-extractor",
        "torch",
        CAPTURE,
        "torchvision `create_feature_extractor`",
        _tv_extractor,
        "per call, after a one-time FX trace",
    ),
    Peer(
        "torchlens",
        "torch",
        CAPTURE,
        "torchlens `tl.extract`",
        _torchlens,
        "timed after the baseline: it leaves torch's functions wrapped",
        interleave=False,
    ),
    Peer("mv-gradcam-torch", "torch", GRADCAM, "multiviz `mv.grad_cam`", _mv_grad_cam),
    Peer("pytorch-grad-cam", "torch", GRADCAM, "pytorch-grad-cam `GradCAM`", _pytorch_grad_cam),
    Peer("torchcam", "torch", GRADCAM, "torchcam `GradCAM`", _torchcam, "7x7 maps, not upsampled"),
    Peer("captum", "torch", GRADCAM, "Captum `LayerGradCam`", _captum, "+ `interpolate` to input"),
    Peer("mv-capture-keras", "keras", CAPTURE, "multiviz `mv.capture`", _mv_capture),
    Peer("keract", "keras", CAPTURE, "keract `get_activations`", _keract),
    Peer("mv-gradcam-keras", "keras", GRADCAM, "multiviz `mv.grad_cam`", _mv_grad_cam),
    Peer("tf-keras-vis", "keras", GRADCAM, "tf-keras-vis `Gradcam`", _tf_keras_vis),
]


# --------------------------------------------------------------------------- child


def run_peer(peer: Peer, cfg: Config, threads: int | None = None) -> dict[str, Any]:
    """In this (fresh) process: the baseline forward and the peer, timed."""
    import_frameworks([peer.framework], threads)
    from capture import keras_setup, torch_setup

    if peer.framework == "torch":
        model, x, forward = torch_setup(cfg)
    else:
        model, x, forwards = keras_setup(cfg)
        forward = forwards["forward (tf.function call)"]
    out = forward()
    scores = out.numpy() if hasattr(out, "numpy") else out
    ctx: dict[str, Any] = {
        "five": FIVE_LAYERS[peer.framework],
        "cam_layer": CAM_LAYER[peer.framework],
        "targets": scores.argmax(axis=-1),
    }
    result: dict[str, Any] = {"key": peer.key}
    try:
        work = peer.make(model, x, ctx)
        work()  # fail here, not inside the timing loop
    except Exception as err:  # a peer that cannot run on these versions: say why
        result["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        return result
    if peer.interleave:
        med = time_variants({"forward": forward, "work": work}, cfg.warmup, cfg.rounds)
    else:
        med = time_variants({"forward": forward}, cfg.warmup, cfg.rounds)
        med |= time_variants({"work": work}, cfg.warmup, cfg.rounds)
    result |= {"forward_s": med["forward"], "work_s": med["work"]}
    if "build_s" in ctx:
        result["build_s"] = ctx["build_s"]
    return result


# --------------------------------------------------------------------------- parent


def _version(dist: str) -> str:
    """``"name version"`` of an installed distribution, or says it is missing."""
    from importlib.metadata import PackageNotFoundError, version

    if dist == "multiviz":  # also when run from a checkout that is not installed
        from multiviz import __version__

        return f"multiviz {__version__}"
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return f"{dist} not installed"


DISTRIBUTIONS = {
    "tv-extractor": "torchvision",
    "torchlens": "torchlens",
    "pytorch-grad-cam": "grad-cam",
    "torchcam": "torchcam",
    "captum": "captum",
    "keract": "keract",
    "tf-keras-vis": "tf-keras-vis",
}


def measure(
    peer: Peer, cfg: Config, quick: bool, timeout: float, threads: int | None = None
) -> dict[str, Any]:
    """Run one peer in a subprocess and turn its answer into a result row."""
    cmd = [sys.executable, __file__, "--_peer", peer.key] + (["--quick"] if quick else [])
    cmd += ["--threads", str(threads)] if threads else []
    row: dict[str, Any] = {
        "benchmark": "peers",
        "framework": peer.framework,
        "case": f"{peer.task}: {peer.tool}",
        "task": peer.task,
        "tool": peer.tool,
        "version": _version(DISTRIBUTIONS.get(peer.key, "multiviz")),
        "median_ms": None,
        "ratio": None,
    }
    row["note"] = "; ".join(filter(None, [row["version"], peer.note]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        row["note"] = f"{row['version']}; did not finish in {timeout:.0f} s"
        return row
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = err[-1][:200] if err else f"exit code {proc.returncode}"
        row["note"] = f"{row['version']}; failed: {reason}"
        return row
    res = json.loads(lines[-1])
    if "error" in res:
        row["note"] = f"{row['version']}; failed: {res['error']}"
        return row
    row["median_ms"] = round(res["work_s"] * 1e3, 1)
    row["ratio"] = round(res["work_s"] / res["forward_s"], 2)
    row["forward_ms"] = round(res["forward_s"] * 1e3, 1)
    if "build_s" in res:
        row["note"] += f" ({res['build_s'] * 1e3:.0f} ms)"
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The peers table: per framework and task, each tool's time and ratio."""
    lines = [
        "| framework | task | tool | median ms | × forward | note |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        ms = "–" if r["median_ms"] is None else f"{r['median_ms']:.1f}"
        lines.append(
            f"| {r['framework']} | {r['task']} | {r['tool']} | {ms} | "
            f"{fmt(r['ratio'])} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows to this JSON file")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per tool")
    parser.add_argument("--threads", type=int, help="intra-op threads per framework")
    parser.add_argument("--_peer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config(rounds=5)

    if args._peer:
        peer = next(p for p in PEERS if p.key == args._peer)
        print(json.dumps(run_peer(peer, cfg, args.threads), default=float))
        return 0

    frameworks = {"torch", "keras"} if args.framework == "both" else {args.framework}
    rows = [
        measure(p, cfg, args.quick, args.timeout, args.threads)
        for p in PEERS
        if p.framework in frameworks
    ]
    print(markdown(rows))
    if args.json:
        env = environment()  # this parent imports no framework: name the installed ones
        for fw in sorted(frameworks):
            for dist in ("torch", "torchvision") if fw == "torch" else ("tensorflow", "keras"):
                env[dist] = _version(dist).split(" ", 1)[1]
        result = {
            "benchmark": "peers",
            "quick": args.quick,
            "config": {"size": cfg.size, "batch": cfg.batch, "rounds": cfg.rounds},
            "environment": env,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
