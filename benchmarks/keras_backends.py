"""Keras on each of its backends: capture and Grad-CAM as ratios to that backend's forward pass.

A Keras backend is fixed when keras is imported, so each backend runs in its
own subprocess (``--child BACKEND``); backends that are not installed get a
row saying so. Per backend, keras.applications' ResNet50 (``weights=None``):

* baseline, ratio 1.00 — TensorFlow: the ``tf.function``-compiled call; JAX:
  the jitted ``stateless_call``, warm (its compile time is reported apart);
  torch: the eager call under ``torch.no_grad``;
* ``mv.capture`` of 5 layers (the stem and the end of each stage): median of
  interleaved rounds, with the spread (min-max of the ratios per round);
* capture's two parts apart: the plan (the sub-model with its 5 outputs
  kept alive) and the copy of those outputs out of the framework's buffers
  into the user's writable channels-first arrays (the channel axis moved in
  that copy; on JAX the buffers are read-only, so a copy is required);
* Grad-CAM at the last stage (``conv5_block3_out``): first call (compile) and
  warm median;
* capture of every layer: peak RSS increase over the RSS just before the call
  (a sampling thread reads /proc/self/statm) against the bytes captured.

Run::

    python benchmarks/keras_backends.py --quick        # 64x64, batch 2
    python benchmarks/keras_backends.py                # 224x224, batch 8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

FIVE = [
    "conv1_relu",
    "conv2_block3_out",
    "conv3_block4_out",
    "conv4_block6_out",
    "conv5_block3_out",
]
BACKENDS = ("tensorflow", "jax", "torch")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest RSS seen while the block runs (sampled every millisecond)."""

    def __enter__(self) -> PeakRSS:
        self.before = _rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def rounds(variants: dict[str, Callable[[], Any]], n: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``n`` interleaved rounds (rotating order)."""
    keys = list(variants)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(n):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            gc.collect()
            t0 = time.perf_counter()
            variants[key]()
            times[key].append(time.perf_counter() - t0)
    return times


def child(backend: str, size: int, batch: int, n: int, grad_cam: bool = True) -> dict[str, Any]:
    os.environ["KERAS_BACKEND"] = backend
    if backend == "torch":
        import torch
    import keras
    import numpy as np

    import multiviz as mv

    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    x_np = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    x = keras.ops.convert_to_tensor(x_np)
    out: dict[str, Any] = {"backend": backend, "size": size, "batch": batch, "rounds": n}

    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda v: model(v, training=False), autograph=False)
        forward = lambda: compiled(x).numpy()  # noqa: E731
    elif backend == "jax":
        import jax

        jitted = jax.jit(lambda tv, ntv, v: model.stateless_call(tv, ntv, v, training=False)[0])
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        t0 = time.perf_counter()
        jitted(tv, ntv, x).block_until_ready()
        out["compile_forward_s"] = time.perf_counter() - t0
        forward = lambda: jitted(tv, ntv, x).block_until_ready()  # noqa: E731
    else:

        def forward() -> Any:
            with torch.no_grad():
                return model(x, training=False)

    t0 = time.perf_counter()
    mv.capture(model, x_np, FIVE)
    out["first_capture_s"] = time.perf_counter() - t0
    variants = {
        "forward": forward,
        "capture5": lambda: mv.capture(model, x_np, FIVE),
    }
    if grad_cam:
        t0 = time.perf_counter()
        mv.grad_cam(model, x_np, "conv5_block3_out")
        out["first_grad_cam_s"] = time.perf_counter() - t0
        variants["grad_cam"] = lambda: mv.grad_cam(model, x_np, "conv5_block3_out")
    # capture's two parts: the plan (the sub-model, outputs kept) and the copy
    # of its outputs into the user's writable channels-first arrays
    from multiviz.backends.keras.adapter import KerasBackend, _numpy
    from multiviz.backends.keras.capture import runner_for

    runner = runner_for(model, KerasBackend()._select(model, FIVE))
    tensors = runner(model, [x])
    moves = {k: runner.host_layout(k) for k in tensors}
    ready = (lambda t: jax.block_until_ready(t)) if backend == "jax" else (lambda t: t)
    variants["plan"] = lambda: ready(runner(model, [x]))
    variants["copy"] = lambda: [_numpy(t, moves[k]) for k, t in tensors.items()]
    for warm in variants.values():  # warm up
        warm()
    times = rounds(variants, n)
    base = statistics.median(times["forward"])
    out["forward_ms"] = 1000 * base
    for key in variants:
        if key == "forward":
            continue
        per_round = [t / f for t, f in zip(times[key], times["forward"], strict=True)]
        out[f"{key}_ratio"] = statistics.median(times[key]) / base
        out[f"{key}_spread"] = (min(per_round), max(per_round))
    names = [info.name for info in mv.layers(model)]
    gc.collect()
    with PeakRSS() as rss:
        acts = mv.capture(model, x_np, names)
    captured = sum(a.nbytes for a in acts.values())
    out["capture_all_layers"] = len(names)
    out["captured_mb"] = captured / 2**20
    out["peak_increase_mb"] = (rss.peak - rss.before) / 2**20
    out["memory_ratio"] = (rss.peak - rss.before) / captured
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=BACKENDS)
    parser.add_argument("--quick", action="store_true", help="64x64 inputs, batch 2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # capture.py's sizes
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-grad-cam", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size, batch = (64, 2) if args.quick else (224, 8)
    size, batch = args.size or size, args.batch or batch
    if args.child:
        print(json.dumps(child(args.child, size, batch, args.rounds, not args.no_grad_cam)))
        return 0
    rows = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--child", backend, "--rounds", str(args.rounds)]
        cmd += ["--quick"] * args.quick
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            rows.append({"backend": backend, "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"results": rows, "rows": table_rows(rows), "environment": _env()}, f, indent=1
            )
    return 0


def _env() -> dict[str, Any]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from capture import environment

    return environment()


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results as rows of ``run_all.py``'s table (ratios to that backend's forward)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        fw = f"keras ({r['backend']})"
        if "error" in r:
            rows.append({"benchmark": "keras_backends", "framework": fw, "case": "(failed)",
                         "ratio": None, "note": " ".join(r["error"])})  # fmt: skip
            continue
        size = f"ResNet50 {r['size']}px batch {r['batch']}"
        parts = (("capture5", "capture 5 layers"), ("plan", "  of which the plan (sub-model)"),
                 ("copy", "  of which the channels-first copy"), ("grad_cam", "Grad-CAM, last stage"))  # fmt: skip
        for key, case in parts:
            if f"{key}_spread" not in r:
                continue
            lo, hi = r[f"{key}_spread"]
            rows.append({
                "benchmark": "keras_backends", "framework": fw, "case": f"{case}, {size}",
                "median_ms": r["forward_ms"] * r[f"{key}_ratio"], "ratio": round(r[f"{key}_ratio"], 3),
                "note": f"per-round ratios {lo:.2f}-{hi:.2f}; forward {r['forward_ms']:.0f} ms",
            })  # fmt: skip
        rows.append({
            "benchmark": "keras_backends", "framework": fw,
            "case": f"capture all {r['capture_all_layers']} layers: peak RSS increase",
            "peak_mb": r["peak_increase_mb"] * 2**20 / 1e6, "ratio": round(r["memory_ratio"], 3),
            "note": f"ratio to the {r['captured_mb']:.0f} MiB captured",
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
