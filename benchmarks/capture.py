"""Capture benchmark: what ``mv.capture`` costs relative to a plain forward pass.

For torchvision's ResNet-50 and keras.applications' ResNet50 (random weights,
batch 8, 224x224 by default), in one process per framework:

* the plain forward pass (PyTorch: ``model(x)`` under ``torch.inference_mode``;
  Keras: ``model(x)`` compiled with ``tf.function``, and ``model.predict`` for
  reference) — the fastest of these is the baseline, ratio 1.00;
* ``mv.capture`` of 5 layers spread through the network, of the first
  convolution only, and of every layer;
* how time grows with batch size (1, 2, 4, 8) and with the number of captured
  layers (1, 5, 20, all);
* peak resident memory of one forward pass and of capturing every layer, each
  measured in a fresh subprocess (tracemalloc cannot see torch's allocator);
  for capture-all also the peak RSS increase over the RSS just before the
  call as a ratio to the bytes captured (issue 17's target: <= 1.3);
* Keras on its JAX and torch backends (``--keras-backends jax,torch``, the
  default when Keras is installed): capture of the same 5 layers as a ratio
  to that backend's own forward pass (JAX: the jitted ``stateless_call``,
  warm, compile time apart; torch: the eager call under ``no_grad``), with the
  per-round spread, and capture-all memory against the bytes captured — each
  backend in its own subprocess (``KERAS_BACKEND`` is fixed when Keras is
  imported), through ``benchmarks/keras_backends.py --child``.

Timing protocol: every variant is warmed up, then the variants run in rotating
order, one call each per round, and the median per variant is quoted (timings
drift while the allocators warm up, and the machine may be shared).

Run::

    python benchmarks/capture.py                  # both frameworks, full sizes
    python benchmarks/capture.py --quick          # a smoke run, small sizes
    python benchmarks/capture.py --framework torch --json out.json

PyTorch is imported before TensorFlow in any process that uses both.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

# Equivalent points in the two ResNet-50s: stem ReLU, then the end of each stage.
FIVE_LAYERS = {
    "torch": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "keras": [
        "conv1_relu",
        "conv2_block3_out",
        "conv3_block4_out",
        "conv4_block6_out",
        "conv5_block3_out",
    ],
}
FIRST_CONV = {"torch": "conv1", "keras": "conv1_conv"}


@dataclass(frozen=True)
class Config:
    """Sizes for one run."""

    size: int = 224
    batch: int = 8
    warmup: int = 2
    rounds: int = 15
    sweep_rounds: int = 9
    batches: tuple[int, ...] = (1, 2, 4, 8)
    counts: tuple[int | str, ...] = (1, 5, 20, "all")
    memory: bool = True
    device: str = "cpu"  # PyTorch only: "cuda" runs the torch benchmarks on the GPU


QUICK = Config(
    size=64,
    batch=2,
    warmup=1,
    rounds=3,
    sweep_rounds=2,
    batches=(1, 2),
    counts=(1, 5, "all"),
    memory=True,
)


# --------------------------------------------------------------------------- timing


def time_variants(
    variants: dict[str, Callable[[], Any]], warmup: int, rounds: int
) -> dict[str, float]:
    """Median seconds per call of each variant, measured in rotating order.

    Every variant is called ``warmup`` times first; then, ``rounds`` times,
    each variant once, starting from a different variant each round, so that
    slow drift (allocator warm-up, a neighbour's load) spreads over all of them.
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    keys = list(variants)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            gc.collect()
            t0 = time.perf_counter()
            variants[key]()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def spread(names: Sequence[str], k: int | str) -> list[str]:
    """``k`` names evenly spread over ``names``, always ending with the last one.

    Ending with the last layer keeps the whole network running for every
    ``k``, so the sweep measures the cost per captured layer, not early stopping.

    Example:
        >>> spread(list("abcdefgh"), 2)
        ['d', 'h']
    """
    if k == "all" or int(k) >= len(names):
        return list(names)
    n, k = len(names), int(k)
    return [names[round((i + 1) * n / k) - 1] for i in range(k)]


def row(framework: str, case: str, seconds: float, base: float, note: str = "") -> dict[str, Any]:
    """One result row: median milliseconds and the ratio to the baseline."""
    return {
        "benchmark": "capture",
        "framework": framework,
        "case": case,
        "median_ms": round(seconds * 1e3, 2),
        "ratio": round(seconds / base, 3) if base else None,
        "note": note,
    }


# --------------------------------------------------------------------------- models


def torch_setup(cfg: Config, batch: int | None = None) -> tuple[Any, Any, Callable[[], Any]]:
    """ResNet-50 (random weights, eval mode), an input batch and its plain forward.

    On a GPU the forward waits for the device (``torch.cuda.synchronize``), so
    it is timed like ``mv.capture``, whose NumPy result waits too.
    """
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(cfg.device)
    x = torch.randn(batch or cfg.batch, 3, cfg.size, cfg.size, device=cfg.device)
    sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else (lambda: None)

    def forward(x: Any = x) -> Any:
        with torch.inference_mode():
            out = model(x)
        sync()
        return out

    return model, x, forward


def keras_setup(
    cfg: Config, batch: int | None = None
) -> tuple[Any, Any, dict[str, Callable[[], Any]]]:
    """keras.applications ResNet50 (random weights), an input and its plain forwards."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(cfg.size, cfg.size, 3))
    x_np = np.random.default_rng(0).standard_normal((batch or cfg.batch, cfg.size, cfg.size, 3))
    x_np = x_np.astype(np.float32)
    x = tf.constant(x_np)
    call = tf.function(lambda t: model(t, training=False))
    forwards = {
        "forward (tf.function call)": lambda: call(x).numpy(),
        "forward (predict)": lambda: model.predict(x_np, batch_size=len(x_np), verbose=0),
    }
    return model, x, forwards


def keras_breakdown(model: Any, x: Any, names: Sequence[str]) -> dict[str, Callable[[], Any]]:
    """Where a Keras capture's time goes, step by step (multiviz's private runner).

    The cached sub-model's outputs as TensorFlow tensors (channels-last), then
    with the in-graph transposes to channels-first; ``mv.capture`` adds the
    copy into writable NumPy arrays.
    """
    import tensorflow as tf

    from multiviz.backends import get_backend
    from multiviz.backends.keras.capture import runner_for

    runner = runner_for(model, get_backend(model)._select(model, list(names)))
    raw = tf.function(lambda ins: runner.plan(list(ins)), autograph=False)
    return {
        "capture 5 layers, step 1: sub-model outputs as tensors": lambda: raw([x]),
        "capture 5 layers, step 2: + transposes to NCHW": lambda: runner(model, [x]),
    }


def layer_names(model: Any) -> list[str]:
    """Every capturable non-container layer, in model order."""
    import multiviz as mv

    return [info.name for info in mv.layers(model) if info.kind != "container"]


# --------------------------------------------------------------------------- runs


def bench_framework(framework: str, cfg: Config) -> list[dict[str, Any]]:
    """All timings for one framework, in this process."""
    import multiviz as mv

    if framework == "torch":
        model, x, fwd = torch_setup(cfg)
        forwards = {"forward (inference_mode)": fwd}
    else:
        model, x, forwards = keras_setup(cfg)
    names = layer_names(model)
    five, first = FIVE_LAYERS[framework], FIRST_CONV[framework]

    outputs = len(mv.capture(model, x, names))  # a layer called k times gives k arrays
    variants: dict[str, Callable[[], Any]] = dict(forwards)
    variants["capture 5 layers"] = lambda: mv.capture(model, x, five)
    variants["capture first conv"] = lambda: mv.capture(model, x, [first])
    every = f"capture all {len(names)} layers" + (
        f" ({outputs} outputs)" if outputs != len(names) else ""
    )
    variants[every] = lambda: mv.capture(model, x, names)
    if framework == "keras":
        variants |= keras_breakdown(model, x, five)
    med = time_variants(variants, cfg.warmup, cfg.rounds)
    base_key = min(forwards, key=med.__getitem__)
    base = med[base_key]
    shape = f"batch {cfg.batch}, {cfg.size}x{cfg.size}"
    rows = [
        row(framework, k, v, base, "baseline" if k == base_key else shape) for k, v in med.items()
    ]

    # time vs batch size: forward and 5-layer capture, each batch in its own set
    for b in cfg.batches:
        if framework == "torch":
            model_b, xb, fwd_b = torch_setup(cfg, b)
            fwd_variants = {"forward": fwd_b}
        else:
            model_b, xb, fw = keras_setup(cfg, b)
            fwd_variants = {"forward": fw["forward (tf.function call)"]}
        med_b = time_variants(
            {**fwd_variants, "capture": lambda m=model_b, t=xb: mv.capture(m, t, five)},
            cfg.warmup,
            cfg.sweep_rounds,
        )
        rows.append(
            row(
                framework,
                f"batch {b}: capture 5 layers",
                med_b["capture"],
                med_b["forward"],
                f"forward {med_b['forward'] * 1e3:.1f} ms",
            )
        )
        del model_b, xb
        gc.collect()

    # time vs number of captured layers (always including the last layer)
    sweep = {f"{k} layers": spread(names, k) for k in cfg.counts}
    med_k = time_variants(
        {
            "forward": forwards[base_key],
            **{k: (lambda s=s: mv.capture(model, x, s)) for k, s in sweep.items()},
        },
        cfg.warmup,
        cfg.sweep_rounds,
    )
    for k, s in sweep.items():
        rows.append(
            row(
                framework,
                f"capture {len(s)} of {len(names)} layers",
                med_k[k],
                med_k["forward"],
                f"sweep; forward {med_k['forward'] * 1e3:.1f} ms",
            )
        )
    device = cfg.device if framework == "torch" else "cpu"
    return [r | {"device": device} for r in rows]


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """Sample this process's resident set size in a thread; keep the peak."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = self.start = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_memory_child(framework: str, what: str, cfg: Config) -> dict[str, Any]:
    """In a fresh process: peak memory growth of one call over model + input.

    ``what`` is ``"forward"`` or ``"capture_all"``. Returns the sampled peak
    RSS growth, the ``ru_maxrss`` growth (a cross-check: it only moves when
    this call sets a new high-water mark), on a GPU the growth of torch's peak
    allocated device memory, and the bytes of the captured arrays.
    """
    import multiviz as mv

    cuda = framework == "torch" and cfg.device.startswith("cuda")
    if framework == "torch":
        model, x, fwd = torch_setup(cfg)
    else:
        import tensorflow as tf

        model, x, _ = keras_setup(cfg)
        spec = tf.TensorSpec([None, *x.shape[1:]], x.dtype)  # one trace for every batch size
        call = tf.function(lambda t: model(t, training=False), input_signature=[spec])

        def fwd(t: Any) -> Any:
            return call(t).numpy()

    names = layer_names(model)

    def run(t: Any) -> Any:
        return fwd(t) if what == "forward" else mv.capture(model, t, names)

    # One call on a single sample first: one-time set-up (tracing, the Keras
    # sub-model, kernel selection) is then not counted, and the allocator has
    # cached only a sample's worth, so the batch's own peak shows.
    run(x[:1])
    gc.collect()
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        device0 = torch.cuda.memory_allocated()
    maxrss0 = _maxrss_bytes()
    with PeakRSS() as peak:
        out = run(x)
    captured = sum(a.nbytes for a in out.values()) if what == "capture_all" else 0
    result = {
        "framework": framework,
        "what": what,
        "peak_growth_mb": round((peak.peak - peak.start) / 2**20, 1),
        "maxrss_growth_mb": round((_maxrss_bytes() - maxrss0) / 2**20, 1),
        "captured_mb": round(captured / 2**20, 1),
        "layers": len(names),
    }
    if cuda:
        result["device_peak_mb"] = round((torch.cuda.max_memory_allocated() - device0) / 2**20, 1)
    return result


def memory_rows(framework: str, cfg: Config) -> list[dict[str, Any]]:
    """Run the memory measurements, each in its own subprocess."""
    results = {}
    device = cfg.device if framework == "torch" else "cpu"
    for what in ("forward", "capture_all"):
        cmd = [sys.executable, __file__, "--_memory", f"{framework}:{what}"]
        cmd += ["--size", str(cfg.size), "--batch", str(cfg.batch), "--device", device]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"memory subprocess {what} failed: {tail}")
        results[what] = json.loads(proc.stdout.strip().splitlines()[-1])
    fwd, cap = results["forward"], results["capture_all"]
    shape = f"batch {cfg.batch}, {cfg.size}x{cfg.size}"
    key = "device_peak_mb" if "device_peak_mb" in fwd else "peak_growth_mb"
    where = "GPU memory (torch peak allocated)" if key == "device_peak_mb" else "RSS"
    base = fwd[key]
    extra = {
        k: f"; host RSS Δ {results[k]['peak_growth_mb']} MB" if key == "device_peak_mb" else ""
        for k in results
    }
    return [
        {
            "benchmark": "capture",
            "framework": framework,
            "device": device,
            "case": "peak memory: forward",
            "peak_mb": fwd[key],
            "ratio": 1.0,
            "note": f"{where} growth over model + input, {shape}{extra['forward']}",
        },
        {
            "benchmark": "capture",
            "framework": framework,
            "device": device,
            "case": f"peak memory: capture all {cap['layers']} layers",
            "peak_mb": cap[key],
            "ratio": round(cap[key] / base, 2) if base > 0 else None,
            "note": f"captured arrays {cap['captured_mb']} MB{extra['capture_all']}",
        },
        {
            "benchmark": "capture",
            "framework": framework,
            "device": device,
            "case": f"capture all {cap['layers']} layers: peak {where} increase / bytes captured",
            "peak_mb": cap[key],
            "ratio": round(cap[key] / cap["captured_mb"], 2) if cap["captured_mb"] else None,
            "note": f"over the {where} just before the call; target <= 1.3",
        },
    ]


def keras_backend_rows(backends: Sequence[str], cfg: Config) -> list[dict[str, Any]]:
    """Keras on other backends, each in its own subprocess (keras_backends.py --child)."""
    script = Path(__file__).with_name("keras_backends.py")
    rows: list[dict[str, Any]] = []
    for backend in backends:
        fw = f"keras ({backend})"
        cmd = [sys.executable, str(script), "--child", backend, "--rounds", str(max(cfg.rounds, 7))]
        cmd += ["--size", str(cfg.size), "--batch", str(cfg.batch), "--no-grad-cam"]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"benchmark": "capture", "framework": fw, "device": "cpu",
                         "case": "(failed)", "ratio": None, "note": tail})  # fmt: skip
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        lo, hi = r["capture5_spread"]
        base = r["forward_ms"]
        first = (
            f"; compile of the forward {r['compile_forward_s']:.1f} s"
            if "compile_forward_s" in r
            else ""
        )
        copy = (
            f"; of which the plan {r['plan_ratio']:.2f}x, the channels-first copy"
            f" {r['copy_ratio']:.2f}x"
            if "copy_ratio" in r
            else ""
        )
        rows.append({
            "benchmark": "capture", "framework": fw, "device": "cpu",
            "case": f"capture 5 layers, batch {cfg.batch}, {cfg.size}x{cfg.size}",
            "median_ms": base * r["capture5_ratio"], "ratio": round(r["capture5_ratio"], 3),
            "note": f"per-round ratios {lo:.2f}-{hi:.2f}; forward {base:.0f} ms{first}{copy}",
        })  # fmt: skip
        rows.append({
            "benchmark": "capture", "framework": fw, "device": "cpu",
            "case": f"capture all {r['capture_all_layers']} layers: peak RSS increase / bytes captured",
            "peak_mb": round(r["peak_increase_mb"], 1), "ratio": round(r["memory_ratio"], 2),
            "note": f"{r['captured_mb']:.0f} MiB captured; target <= 1.3",
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- output


def environment() -> dict[str, Any]:
    """Versions and machine facts worth quoting next to the numbers.

    Frameworks are listed only when this process imported them.
    """
    from multiviz import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "multiviz": __version__,
    }
    for mod in ("torch", "torchvision", "tensorflow", "keras"):
        if mod in sys.modules:
            env[mod] = getattr(sys.modules[mod], "__version__", "?")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def fmt(value: Any, digits: int = 2) -> str:
    """Table cell text: numbers with fixed digits, ``None`` as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of result rows (time or memory, ratio, note)."""
    lines = [
        "| framework | case | median ms / peak MB | × baseline | note |",
        "|---|---|---:|---:|---|",
    ]
    for r in rows:
        value = r.get("median_ms", r.get("peak_mb"))
        unit = " ms" if "median_ms" in r else " MB"
        cell = "–" if value is None else f"{fmt(value, 1)}{unit}"
        lines.append(
            f"| {r['framework']} | {r['case']} | {cell} | {fmt(r.get('ratio'))} | {r.get('note', '')} |"
        )
    return "\n".join(lines)


def import_frameworks(frameworks: Sequence[str], threads: int | None = None) -> None:
    """Import torch (and torchvision) before TensorFlow, always; optionally cap threads.

    ``threads`` sets both frameworks' intra-op thread pools: on a shared
    machine, fewer threads than cores avoids the slowdown of threads that spin
    waiting for a core.
    """
    if "torch" in frameworks:
        import torch
        import torchvision  # noqa: F401

        if threads:
            torch.set_num_threads(threads)
    if "keras" in frameworks:
        import keras  # noqa: F401
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows to this JSON file")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--device", default="cpu", help="PyTorch device: cpu (default) or cuda")
    parser.add_argument("--threads", type=int, help="intra-op threads per framework")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--keras-backends",
        default="jax,torch",
        help="Keras backends besides TensorFlow, each in a subprocess ('' for none)",
    )
    parser.add_argument("--_memory", help=argparse.SUPPRESS)  # child: "torch:forward"
    parser.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._memory:
        framework, what = args._memory.split(":")
        import_frameworks([framework], args.threads)
        cfg = Config(size=args.size, batch=args.batch, device=args.device)
        print(json.dumps(measure_memory_child(framework, what, cfg)))
        return 0

    cfg = dataclasses.replace(QUICK if args.quick else Config(), device=args.device)
    frameworks = ["torch", "keras"] if args.framework == "both" else [args.framework]
    if cfg.device != "cpu":  # only the PyTorch benchmarks move to another device
        frameworks = [f for f in frameworks if f == "torch"]
    import_frameworks(frameworks, args.threads)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for fw in frameworks:
        try:
            rows += bench_framework(fw, cfg)
            if cfg.memory and not args.no_memory:
                rows += memory_rows(fw, cfg)
        except Exception as err:  # record and go on with the other framework
            errors[fw] = f"{type(err).__name__}: {err}".splitlines()[0]
            rows.append(
                {
                    "benchmark": "capture",
                    "framework": fw,
                    "device": cfg.device if fw == "torch" else "cpu",
                    "case": "(failed)",
                    "median_ms": None,
                    "ratio": None,
                    "note": errors[fw],
                }
            )
    if "keras" in frameworks:
        rows += keras_backend_rows([b for b in args.keras_backends.split(",") if b], cfg)
    result = {
        "benchmark": "capture",
        "quick": args.quick,
        "config": dataclasses.asdict(cfg),
        "environment": environment(),
        "rows": rows,
        "errors": errors,
    }
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if errors and len(errors) == len(frameworks) else 0


if __name__ == "__main__":
    sys.exit(main())
