"""Attribution benchmark: what Grad-CAM, Score-CAM and SmoothGrad cost.

For torchvision's ResNet-50 and keras.applications' ResNet50 (random weights,
``weights=None``; batch 8, 224x224 by default), one framework after the other
in this process (PyTorch imported first):

* **Grad-CAM** on the last convolutional stage (``layer4`` /
  ``conv5_block3_out``) as a ratio to one plain forward pass of the same batch
  (PyTorch: ``model(x)`` under ``torch.inference_mode``; Keras: ``model(x)``
  in a ``tf.function``), measured in the same run: both warmed up, then
  alternated, medians quoted. Target: at most 1.3x. Plain saliency (a
  backward pass all the way to the input) is timed beside it for scale.
* **Score-CAM** on a 256-channel layer (``layer1`` / ``conv2_block3_out``,
  56x56): 256 masked copies of one image, scored ``batch_size`` at a time.
  The ratio is to a plain forward pass of the same number of images.
* **SmoothGrad**: noisy copies per second, and the ratio to the same number
  of images through a plain forward pass.
* **Peak memory** of Score-CAM and SmoothGrad: NumPy's peak (``tracemalloc``
  sees NumPy's buffers, not the frameworks' allocators) for two batch sizes —
  it follows ``batch_size``, not the number of masks or copies — and the
  process's resident high-water mark (``resource.getrusage``).

Run::

    python benchmarks/attribution.py                      # both frameworks, full sizes
    python benchmarks/attribution.py --quick              # a smoke run, small sizes
    python benchmarks/attribution.py --framework torch --device cuda

Writes JSON to ``--json`` (default ``benchmarks/out/attribution.json``) and a
Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from capture import time_variants  # one timing protocol for every benchmark

LAST_STAGE = {"torch": "layer4", "keras": "conv5_block3_out"}
WIDE_LAYER = {"torch": "layer1", "keras": "conv2_block3_out"}  # 256 channels, 1/4 resolution
TARGET_RATIO = 1.3
DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "attribution.json"


@dataclass(frozen=True)
class Config:
    """Sizes for one run."""

    size: int = 224
    batch: int = 8
    warmup: int = 2
    rounds: int = 11
    score_images: int = 1
    score_batches: tuple[int, ...] = (32, 8)  # the first is timed
    smooth_images: int = 1
    smooth_samples: int = 16
    smooth_batches: tuple[int, ...] = (8, 2)  # the first is timed


QUICK = Config(
    size=64,
    batch=2,
    warmup=1,
    rounds=3,
    score_images=1,
    score_batches=(32, 8),
    smooth_images=1,
    smooth_samples=4,
    smooth_batches=(4, 2),
)


# --------------------------------------------------------------------------- timing


def once(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """Seconds of one call, NumPy's peak MB during it, and the RSS high-water growth MB."""
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024  # KiB on Linux
    return seconds, peak / 2**20, rss


def row(framework: str, case: str, **values: Any) -> dict[str, Any]:
    return {"benchmark": "attribution", "framework": framework, "case": case, **values}


# --------------------------------------------------------------------------- models


def setup(framework: str, cfg: Config, device: str) -> tuple[Any, Any, Callable[[Any], Any]]:
    """ResNet-50 with random weights, an input batch, and its plain forward."""
    rng = np.random.default_rng(0)
    if framework == "torch":
        import torch
        import torchvision

        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval().to(device)
        x = torch.from_numpy(
            rng.standard_normal((cfg.batch, 3, cfg.size, cfg.size), dtype=np.float32)
        ).to(device)

        def forward(t: Any) -> Any:
            with torch.inference_mode():
                out = model(t)
            return out.cpu()

        return model, x, forward
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(cfg.size, cfg.size, 3))
    x = tf.constant(rng.standard_normal((cfg.batch, cfg.size, cfg.size, 3), dtype=np.float32))
    spec = tf.TensorSpec([None, cfg.size, cfg.size, 3], tf.float32)
    call = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    return model, x, lambda t: call(t).numpy()


# --------------------------------------------------------------------------- runs


def chunk_forward(forward: Callable[[Any], Any], x: Any, size: int, cfg: Config) -> float:
    """Median seconds of a plain forward pass of ``size`` images (``x`` tiled)."""
    reps = -(-size // len(x))
    if hasattr(x, "repeat") and hasattr(x, "detach"):  # torch
        batch = x.repeat(reps, 1, 1, 1)[:size]
    else:
        import tensorflow as tf

        batch = tf.tile(x, [reps, 1, 1, 1])[:size]
    return time_variants({"f": lambda: forward(batch)}, 1, max(3, cfg.rounds // 2))["f"]


def bench_framework(framework: str, cfg: Config, device: str) -> list[dict[str, Any]]:
    import multiviz as mv

    model, x, forward = setup(framework, cfg, device)
    shape = f"batch {cfg.batch}, {cfg.size}x{cfg.size}"
    last, wide = LAST_STAGE[framework], WIDE_LAYER[framework]
    med = time_variants(
        {
            "forward": lambda: forward(x),
            "grad_cam": lambda: mv.grad_cam(model, x, last, batch_size=cfg.batch),
            "saliency": lambda: mv.saliency(model, x, batch_size=cfg.batch),
        },
        cfg.warmup,
        cfg.rounds,
    )
    base = med["forward"]
    rows = [
        row(framework, "forward (baseline)", median_ms=round(base * 1e3, 1), ratio=1.0, note=shape),
        row(
            framework,
            f"Grad-CAM at {last}",
            median_ms=round(med["grad_cam"] * 1e3, 1),
            ratio=round(med["grad_cam"] / base, 3),
            note=f"{shape}; target <= {TARGET_RATIO}x",
        ),
        row(
            framework,
            "saliency (gradient to the input)",
            median_ms=round(med["saliency"] * 1e3, 1),
            ratio=round(med["saliency"] / base, 3),
            note=shape,
        ),
    ]
    one = x[: cfg.score_images]

    # Score-CAM: K masked copies per image, scored batch_size at a time; the
    # reference is a plain forward of one chunk, timed here, times the chunks.
    channels = int(mv.capture(model, one[:1], [wide])[wide].shape[1])
    masks = channels * cfg.score_images
    mv.score_cam(model, one[:1], wide, target=0, batch_size=cfg.score_batches[0])  # warm
    for k, bs in enumerate(cfg.score_batches):
        seconds, np_peak, rss = once(
            lambda bs=bs: mv.score_cam(model, one, wide, target=0, batch_size=bs)
        )
        if k == 0:
            ref = chunk_forward(forward, x, bs, cfg) * -(-masks // bs)
            rows.append(
                row(
                    framework,
                    f"Score-CAM at {wide} ({channels} ch), batch_size {bs}",
                    median_ms=round(seconds * 1e3, 1),
                    ratio=round(seconds / ref, 3),
                    note=(
                        f"{cfg.score_images} image(s), {masks} masked copies, "
                        f"{masks / seconds:.1f} copies/s; ratio to plain forwards of the "
                        f"same {masks} images in batches of {bs} ({ref * 1e3:.0f} ms)"
                    ),
                )
            )
        rows.append(
            row(
                framework,
                f"Score-CAM peak memory, batch_size {bs}",
                peak_mb=round(np_peak, 1),
                ratio=None,
                note=f"NumPy peak (tracemalloc); RSS high-water growth {rss:.0f} MB",
            )
        )

    # SmoothGrad: noisy copies, each a forward and a backward pass to the input
    n, s = cfg.smooth_images, cfg.smooth_samples
    mv.saliency(model, x[:1], method="smoothgrad", samples=1, target=0)  # warm
    for k, bs in enumerate(cfg.smooth_batches):
        seconds, np_peak, rss = once(
            lambda bs=bs: mv.saliency(
                model, x[:n], method="smoothgrad", samples=s, target=0, batch_size=bs
            )
        )
        if k == 0:
            ref = chunk_forward(forward, x, bs, cfg) * -(-(n * s) // bs)
            rows.append(
                row(
                    framework,
                    f"SmoothGrad, {s} samples, batch_size {bs}",
                    median_ms=round(seconds * 1e3, 1),
                    ratio=round(seconds / ref, 3),
                    note=(
                        f"{n} image(s), {n * s / seconds:.1f} noisy copies/s; ratio to plain "
                        f"forwards of {n * s} images in batches of {bs} ({ref * 1e3:.0f} ms); "
                        "each copy also needs a backward pass to the input"
                    ),
                )
            )
        rows.append(
            row(
                framework,
                f"SmoothGrad peak memory, batch_size {bs}",
                peak_mb=round(np_peak, 1),
                ratio=None,
                note=f"NumPy peak (tracemalloc); RSS high-water growth {rss:.0f} MB",
            )
        )
    return rows


# --------------------------------------------------------------------------- output


def environment(device: str, threads: int | None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "device": device,
        "threads": threads,
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("multiviz", "torch", "torchvision", "tensorflow", "keras"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
    return env


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| framework | case | median ms / peak MB | × baseline | note |",
        "|---|---|---:|---:|---|",
    ]
    for r in rows:
        if r.get("median_ms") is not None:
            cell = f"{r['median_ms']:.1f} ms"
        elif r.get("peak_mb") is not None:
            cell = f"{r['peak_mb']:.1f} MB"
        else:
            cell = "–"
        ratio = "–" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['framework']} | {r['case']} | {cell} | {ratio} | {r.get('note', '')} |")
    return "\n".join(lines)


def checks(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["case"].startswith("Grad-CAM") and r.get("ratio") is not None:
            out.append(
                {
                    "case": f"{r['framework']} {r['case']} <= {TARGET_RATIO}x forward",
                    "ratio": r["ratio"],
                    "met": r["ratio"] <= TARGET_RATIO,
                }
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--device", default="cpu", help="PyTorch device, e.g. cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per framework (default: the framework's own choice); 1 gives "
        "stable ratios on a shared, oversubscribed machine",
    )
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else Config()
    frameworks = ["torch", "keras"] if args.framework == "both" else [args.framework]
    if "torch" in frameworks:  # torch before TensorFlow, always
        import torch
        import torchvision  # noqa: F401

        if args.threads:
            torch.set_num_threads(args.threads)
    if "keras" in frameworks and args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for fw in frameworks:
        try:
            rows += bench_framework(fw, cfg, args.device)
        except Exception as err:  # record and go on with the other framework
            errors[fw] = f"{type(err).__name__}: {err}".splitlines()[0]
            rows.append(row(fw, "(failed)", median_ms=None, ratio=None, note=errors[fw]))
    result = {
        "benchmark": "attribution",
        "quick": args.quick,
        "config": asdict(cfg),
        "environment": environment(args.device, args.threads),
        "rows": rows,
        "checks": checks(rows),
        "errors": errors,
    }
    print(markdown(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if errors and len(errors) == len(frameworks) else 0


if __name__ == "__main__":
    sys.exit(main())
