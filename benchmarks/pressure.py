"""Pressure benchmark: memory over many captures of different layer sets, and the lock's cost.

For torchvision's ResNet-50 and keras.applications' ResNet50 (random weights,
``weights=None``), each in its own subprocess:

* **RSS over many captures**: ``mv.capture`` of 500 different layer sets
  (3 layers drawn at random per call, seeded; a new set each time, so a cache
  keyed by layer set would grow by one entry per call). The process's
  resident memory (psutil) is read after a warm-up capture and then every 100
  calls; the rows give the growth per 100 calls (bounded: close to 0 once the
  per-model cache — ``mv.set_cache_size``, default 16 entries — is full) and
  the cache's entry count at the end. Before multiviz bounded its caches,
  Keras grew by about 860 MB per 100 calls (issue 10).
* **The lock's cost per call**: :func:`multiviz.backends.guard.guarded` (the
  per-model lock and the undo stack every backend call runs inside) around a
  call that does nothing, beside one plain forward pass of the same model —
  the ratio is the share of a call's time the guard adds.

Run::

    python benchmarks/pressure.py                  # 500 captures, 224x224
    python benchmarks/pressure.py --quick          # 100 captures, 64x64: a smoke run
    python benchmarks/pressure.py --framework torch --json out.json

Timing protocol as the other benchmarks: warm-up, then rounds, medians.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from capture import environment, fmt, import_frameworks  # shared table helpers


def _model(framework: str, size: int) -> tuple[Any, np.ndarray, Any]:
    """ResNet-50 (random weights), one input, and a plain forward function."""
    rng = np.random.default_rng(0)
    if framework == "torch":
        import torch
        import torchvision

        model = torchvision.models.resnet50(weights=None).eval()
        x = rng.random((1, 3, size, size), dtype=np.float32)
        xt = torch.from_numpy(x)

        def forward() -> Any:
            with torch.inference_mode():
                return model(xt)

        return model, x, forward
    import keras
    import tensorflow as tf

    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    x = rng.random((1, size, size, 3), dtype=np.float32)
    xt = tf.constant(x)
    step = tf.function(lambda t: model(t, training=False))
    step(xt)  # traced once, outside the timing

    def forward() -> Any:
        return step(xt).numpy()

    return model, x, forward


def _rss_mb() -> float:
    """Resident memory now, MB (psutil; /proc/self/status where psutil is missing)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as fh:
            kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
        return kb / 1024
    return psutil.Process().memory_info().rss / 2**20


def child(framework: str, calls: int, size: int, rounds: int) -> dict[str, Any]:
    """The measurements for one framework (run in a fresh process)."""
    import multiviz as mv
    from multiviz.backends.cache import cache_size, entries
    from multiviz.backends.guard import guarded

    model, x, forward = _model(framework, size)
    names = [i.name for i in mv.layers(model) if i.kind in ("conv", "activation", "norm")]
    rng = np.random.default_rng(1)
    sets: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    while len(sets) < calls:  # different layer sets, each used once
        pick = tuple(sorted(rng.choice(len(names), 3, replace=False)))
        if pick not in seen:
            seen.add(pick)
            sets.append([names[k] for k in pick])

    mv.capture(model, x, sets[0])  # warm-up: frameworks allocate their pools
    start = _rss_mb()
    marks = [(0, start)]
    t0 = time.perf_counter()
    for k, layer_set in enumerate(sets, 1):
        mv.capture(model, x, layer_set)
        if k % 100 == 0 or k == calls or k == cache_size():  # also once the cache is full
            marks.append((k, _rss_mb()))
    capture_s = (time.perf_counter() - t0) / calls
    cached = len(entries(model))

    # the guard's cost beside a forward pass: rounds of n guarded no-ops, and forwards
    def nothing(undo: Any) -> None:
        return None

    n = 2000
    for _ in range(3):
        forward()
        guarded(model, nothing)
    guard_ms, forward_ms = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            guarded(model, nothing)
        guard_ms.append((time.perf_counter() - t) * 1e3 / n)
        t = time.perf_counter()
        forward()
        forward_ms.append((time.perf_counter() - t) * 1e3)

    growth = [
        (b_rss - a_rss) / (b_k - a_k) * 100
        for (a_k, a_rss), (b_k, b_rss) in itertools.pairwise(marks)
    ]
    return {
        "framework": framework,
        "layers": len(names),
        "calls": calls,
        "rss_start_mb": round(start, 1),
        "rss_marks": [(k, round(v, 1)) for k, v in marks],
        "growth_per_100": [round(g, 1) for g in growth],
        "cache_entries": cached,
        "cache_size": cache_size(),
        "capture_ms": round(capture_s * 1e3, 1),
        "guard_ms": statistics.median(guard_ms),
        "forward_ms": statistics.median(forward_ms),
    }


def rows_of(m: dict[str, Any]) -> list[dict[str, Any]]:
    fw = m["framework"]
    last = m["growth_per_100"][-1] if m["growth_per_100"] else None
    marks = ", ".join(f"{k}: {v:.0f}" for k, v in m["rss_marks"])
    (a, _), (b, _) = m["rss_marks"][-2], m["rss_marks"][-1]
    filling = " (the cache still filling)" if a < m["cache_size"] else ""
    return [
        {
            "benchmark": "pressure",
            "framework": fw,
            "case": f"RSS growth per 100 captures, calls {a}-{b} of {m['calls']} "
            f"different layer sets{filling}",
            "peak_mb": last,
            "ratio": None,
            "note": f"RSS MB after k calls ({marks}); per 100: {m['growth_per_100']}; "
            f"{m['cache_entries']} cache entries (bound {m['cache_size']}); "
            f"{m['capture_ms']} ms per capture",
        },
        {
            "benchmark": "pressure",
            "framework": fw,
            "case": "per-model lock and undo stack (guarded no-op), per call",
            "median_ms": m["guard_ms"],
            "ratio": round(m["guard_ms"] / m["forward_ms"], 5) if m["forward_ms"] else None,
            "note": f"beside one forward pass of {m['forward_ms']:.1f} ms (ratio = lock / forward)",
        },
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| framework | case | value | × forward | note |", "|---|---|---:|---:|---|"]
    for r in rows:
        value = (
            f"{r['median_ms']:.4f} ms"
            if r.get("median_ms") is not None
            else ("–" if r.get("peak_mb") is None else f"{r['peak_mb']:.1f} MB")
        )
        lines.append(
            f"| {r['framework']} | {r['case']} | {value} | {fmt(r.get('ratio'), 5)} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows to this JSON file")
    parser.add_argument("--quick", action="store_true", help="100 captures at 64x64: a smoke run")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--threads", type=int, help="intra-op threads per framework")
    parser.add_argument("--calls", type=int, help="captures (default 500; 100 with --quick)")
    parser.add_argument("--size", type=int, help="input side (default 224; 64 with --quick)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    calls = args.calls or (100 if args.quick else 500)
    size = args.size or (64 if args.quick else 224)
    rounds = 5 if args.quick else 15

    if args._child:
        import_frameworks([args._child], args.threads)
        print(json.dumps(child(args._child, calls, size, rounds)))
        return 0

    frameworks = ["torch", "keras"] if args.framework == "both" else [args.framework]
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    import_frameworks(frameworks)  # only for the versions in the environment record
    result = {
        "benchmark": "pressure",
        "quick": args.quick,
        "config": {"calls": calls, "size": size, "rounds": rounds},
        "environment": environment() | {"quick": args.quick},
        "rows": rows,
        "errors": errors,
    }
    for fw in frameworks:  # one fresh process each; the JSON is rewritten after each
        cmd = [sys.executable, __file__, "--_child", fw, "--calls", str(calls), "--size", str(size)]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            rows += rows_of(json.loads(proc.stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError, KeyError):
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            errors[fw] = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            rows.append(
                {
                    "benchmark": "pressure",
                    "framework": fw,
                    "case": "(failed)",
                    "median_ms": None,
                    "ratio": None,
                    "note": errors[fw],
                }
            )
        print(markdown(rows[-2:]), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if errors and len(errors) == len(frameworks) else 0


if __name__ == "__main__":
    sys.exit(main())
