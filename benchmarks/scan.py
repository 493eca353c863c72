"""Scan benchmark: what ``mv.scan`` costs relative to plain forward passes, and its memory.

Three measurements, each in its own subprocess so that one's memory does not
colour another's:

* **throughput** — torchvision's ResNet (random weights) over generated
  images, batch by batch: plain forward passes (``torch.inference_mode``)
  against ``mv.scan`` of layers at stride 16-32 (``layer3``, ``layer4``) and
  of early layers (``relu`` at stride 2, ``layer1`` at stride 4); the ratio
  is scan throughput / forward throughput over the same batches (target
  >= 0.9 for the late layers). ``layer3`` and ``layer4`` of a ResNet are not
  one chain (residual blocks), so their receptive fields are probed: a cost
  of about one forward pass per input row, once per scan whatever the number
  of images. The same scan with ``fields="none"`` isolates it: the probe's
  seconds, the per-image ratio without it, and the ratio it gives at 10,000
  images (per-image cost times 10,000 plus the probe once) are reported.
  Early layers have large maps: their quantile sketches see at most
  ``sketch_positions`` (4096) evenly spaced positions per map, moments,
  counts and top-k see every value;
* **peak RSS** — the built-in CNN scanned over 1,000, 10,000 and 50,000
  generated images (``ru_maxrss`` of a fresh process): memory must not grow
  with the number of inputs;
* **Ray** — the same scan with ``engine="ray"`` on a local Ray with 2 CPUs,
  against the local engine.

Run::

    python benchmarks/scan.py                     # all three (a few minutes on a quiet 2-core machine)
    python benchmarks/scan.py --quick             # a smoke run
    python benchmarks/scan.py --only rss --json out.json
    python benchmarks/scan.py --model resnet50 --size 224 --images 10000   # the issue's full size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from capture import environment  # noqa: E402  (the record every benchmark writes)


def _batches(n: int, batch: int, shape: tuple[int, ...], seed: int = 0):
    """``n`` generated images in batches: uniform noise with a bright square, float32."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        k = min(batch, n - start)
        x = rng.random((k, *shape), dtype=np.float32)
        x[:, :, 8:24, 8:24] += 1.0
        yield x


def throughput(args: argparse.Namespace) -> dict:
    import torch
    import torchvision

    import multiviz as mv

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    shape = (3, args.size, args.size)
    batches = list(_batches(args.images, args.batch, shape))

    def forward() -> None:
        with torch.inference_mode():
            for x in batches:
                model(torch.from_numpy(x))

    def scan(layers: list[str], **kw):
        return lambda: mv.scan(model, batches, layers, topk=16, progress=False, **kw)

    late = "scan layer3+layer4"
    variants = {
        "forward": forward,
        late: scan(["layer3", "layer4"]),
        late + " (fields='none')": scan(["layer3", "layer4"], fields="none"),
        "scan layer4": scan(["layer4"]),
        "scan relu+layer1 (early)": scan(["relu", "layer1"]),
    }
    forward()  # warm up
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):  # rotating order: a shared machine drifts
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    base = med["forward"]
    probe = max(med[late] - med[late + " (fields='none')"], 0.0)
    per_image = base / med[late + " (fields='none')"]
    n = 10_000
    return {
        "model": args.model,
        "images": args.images,
        "size": args.size,
        "batch": args.batch,
        "rounds": args.rounds,
        "seconds": med,
        "images_per_s": {k: args.images / v for k, v in med.items()},
        "throughput_ratio": {k: base / v for k, v in med.items()},
        "probe_s": probe,
        "probe_in_forward_images": probe / base * args.images,
        "layer3+layer4_ratio_without_probe": per_image,
        "layer3+layer4_ratio_at_10000_images": (n * base / args.images)
        / (n * med[late + " (fields='none')"] / args.images + probe),
    }


def rss_child(n: int, batch: int, size: int) -> dict:
    import torch  # noqa: F401 - the framework first

    import multiviz as mv

    model = mv.builtin_model("torch")
    t0 = time.perf_counter()
    s = mv.scan(
        model,
        _batches(n, batch, (3, size, size)),
        ["relu2", "relu3", "fc"],
        topk=16,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    assert s.samples == n
    return {
        "images": n,
        "size": size,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def ray_vs_local(args: argparse.Namespace) -> dict:
    import ray
    import torch  # noqa: F401

    import multiviz as mv

    model = mv.builtin_model("torch")
    x = np.concatenate(list(_batches(args.ray_images, 256, (3, 64, 64))))
    layers = ["relu2", "relu3", "fc"]
    t0 = time.perf_counter()
    local = mv.scan(model, x, layers, batch_size=128, progress=False)
    t_local = time.perf_counter() - t0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        mv.scan(model, x[:256], layers, batch_size=128, engine="ray", concurrency=2)  # warm
        t0 = time.perf_counter()
        remote = mv.scan(model, x, layers, batch_size=128, engine="ray", concurrency=2)
        t_ray = time.perf_counter() - t0
    finally:
        ray.shutdown()
    assert remote.exemplars("relu3", 0) == local.exemplars("relu3", 0)
    return {
        "images": args.ray_images,
        "local_s": t_local,
        "ray_2cpu_s": t_ray,
        "ray_over_local": t_ray / t_local,
    }


def _child(kind: str, extra: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", kind, *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--only", choices=("throughput", "rss", "ray"), action="append")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--rss-images", default="1000,10000,50000")
    p.add_argument("--rss-size", type=int, default=32, help="side of the RSS run's images")
    p.add_argument("--ray-images", type=int, default=2048)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.images, args.size, args.rss_images, args.ray_images = (
            "resnet18",
            64,
            112,
            "256,1024",
            512,
        )
    if args.child == "throughput":
        print(json.dumps(throughput(args)))
        return
    if args.child == "rss":
        print(json.dumps(rss_child(args.n, 256, args.rss_size)))
        return
    if args.child == "ray":
        print(json.dumps(ray_vs_local(args)))
        return
    only = set(args.only or ("throughput", "rss", "ray"))
    common = [
        "--model",
        args.model,
        "--images",
        str(args.images),
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--rounds",
        str(args.rounds),
        "--ray-images",
        str(args.ray_images),
    ]
    results: dict = {"environment": environment()}
    if "throughput" in only:
        results["throughput"] = _child("throughput", common)
        print(json.dumps(results["throughput"], indent=1), flush=True)
    if "rss" in only:
        results["rss"] = [
            _child("rss", ["--n", n, "--rss-size", str(args.rss_size)])
            for n in args.rss_images.split(",")
        ]
        print(json.dumps(results["rss"], indent=1), flush=True)
    if "ray" in only:
        results["ray"] = _child("ray", common)
        print(json.dumps(results["ray"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results | {"rows": rows_of(results)}, indent=1))


def rows_of(results: dict) -> list[dict]:
    """The results as rows of ``run_all.py``'s table (ratios: scan over plain forward)."""
    rows = []
    t = results.get("throughput")
    if t:
        for case, ratio in t["throughput_ratio"].items():
            if case == "forward":
                continue
            rows.append({
                "benchmark": "scan", "framework": "torch",
                "case": f"{t['model']} {t['size']}px, {t['images']} images: {case}",
                "median_ms": 1000 * t["seconds"][case], "ratio": round(1 / ratio, 3),
                "note": "time over the plain forward's (below 1: faster); images/s "
                f"{t['images_per_s'][case]:.1f}",
            })  # fmt: skip
    rss = results.get("rss") or []
    if rss:
        first = rss[0]["peak_rss_mib"]
        for r in rss:
            rows.append({
                "benchmark": "scan", "framework": "torch",
                "case": f"peak RSS, {r['images']} images of {r['size']}px",
                "peak_mb": r["peak_rss_mib"] * 2**20 / 1e6,
                "ratio": round(r["peak_rss_mib"] / first, 3),
                "note": f"ratio to the {rss[0]['images']}-image scan's peak",
            })  # fmt: skip
    ray = results.get("ray")
    if ray:
        rows.append({
            "benchmark": "scan", "framework": "torch",
            "case": f"engine='ray' on local CPUs, {ray['images']} images",
            "median_ms": 1000 * ray["local_s"] * ray["ray_over_local"],
            "ratio": round(ray["ray_over_local"], 3), "note": "time over the local engine's",
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
