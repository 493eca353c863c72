"""Evaluation benchmark: deletion, insertion and ROAD per image, against Quantus.

torchvision's ResNet-18 (random weights, ``weights=None``; 192x192 so that
Quantus's ``features_in_step`` can divide the image and still remove whole
pixels), a few images, Grad-CAM maps of ``layer4``. In the same process:

* **deletion**: multiviz's curve (zeros substrate, ``steps`` steps, the
  target's softmax probability) against Quantus's ``PixelFlipping`` with the
  same substrate (``perturb_baseline=0.0``), ``features_in_step = 3 H W /
  steps``, ``normalise=False``, ``abs=False`` — the same numbers (checked: the
  largest difference of the curves is printed);
* **insertion**: multiviz only (Quantus has no insertion metric);
* **ROAD**: multiviz's MoRF and LeRF curves against Quantus's ``ROAD`` run
  twice (the map and its negative: MoRF and LeRF) with the same percentages
  and noise (Quantus 0.6's ``ROAD`` class fails on RGB images with a pixel map,
  so its loop is re-run with Quantus's own imputation; see ``_quantus_road``).
  Quantus scores whether the class is kept (accuracy) and
  multiviz the target's probability, so only the work compares, not the
  numbers; the imputation itself agrees with Quantus's to 1e-5 (the torch
  session's test_quantus_agreement).

Each row gives multiviz's time per image, its ratio to Quantus's time for
the same work (``ratio``, the "× baseline" of ``results.md``: 0.33 means 3x
faster), the model inputs per image each library ran (counted by a forward
hook), and where multiviz's time goes (model forward, ROAD's NumPy
imputation; the rest is NumPy making the perturbed copies). Each metric runs
``rounds`` times, multiviz and Quantus alternating in rotating order, and
medians are quoted (the machine may be shared).

Run::

    python benchmarks/evaluate.py              # 4 images, 192x192, 48 steps, 9 ROAD levels
    python benchmarks/evaluate.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from capture import fmt  # table cells as every benchmark writes them


def _counting(model: Any) -> dict[str, int]:
    """Count the images every forward pass of ``model`` sees."""
    seen = {"inputs": 0, "calls": 0}

    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        seen["inputs"] += int(args[0].shape[0])
        seen["calls"] += 1

    model.register_forward_pre_hook(hook)
    return seen


def _quantus_road(quantus: Any, model: Any, x: np.ndarray, maps: np.ndarray, pct: Any) -> None:
    """Quantus 0.6's ``ROAD.evaluate_batch`` loop, on pixel indices.

    ``quantus.ROAD`` itself fails on RGB input with a per-pixel map (it ranks
    the C*H*W channel copies and passes those indices to an imputation over
    H*W pixels: IndexError). This is the same work — Quantus's own
    ``noisy_linear_imputation`` per image and percentage, then one prediction
    per percentage for the batch — with the pixel indices it meant.
    """
    import torch
    from quantus.functions.perturb_func import noisy_linear_imputation

    order = np.argsort(-maps.reshape(len(maps), -1), axis=1)
    for p in pct:
        top = order[:, : int(order.shape[1] * p / 100)]
        batch = np.stack(
            [noisy_linear_imputation(xi, ti, noise=0.01) for xi, ti in zip(x, top, strict=True)]
        )
        with torch.no_grad():
            torch.softmax(model(torch.from_numpy(batch.astype(np.float32))), dim=-1)


def run(cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch
    import torchvision

    import multiviz as mv
    from multiviz.attribution.model_call import ModelCall
    from multiviz.evaluation import road
    from multiviz.evaluation.perturbation import make_substrate, perturbation_curves

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    seen = _counting(model)
    n, size, steps = cfg["images"], cfg["size"], cfg["steps"]
    pct = cfg["percentages"]
    x = np.random.default_rng(0).random((n, 3, size, size)).astype(np.float32)
    maps = mv.grad_cam(model, x, "layer4") + 1e-6 * np.random.default_rng(1).random((n, size, size))
    call = ModelCall.make(model, x, cfg["batch_size"])
    probabilities = call.class_probabilities()
    # the pass that picks each image's class also gives the clean score (Quantus
    # is handed y_batch, which someone computed with the same pass)
    clean_probs = probabilities(x)
    target = clean_probs.argmax(axis=1)
    clean = clean_probs[np.arange(n), target]
    spent = {"model": 0.0, "imputation": 0.0}

    def score(inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = probabilities(inputs)[np.arange(len(rows)), target[rows]]
        spent["model"] += time.perf_counter() - t0
        return out

    impute = road.noisy_linear_imputation

    def timed_imputation(*args: Any, **kwargs: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = impute(*args, **kwargs)
        spent["imputation"] += time.perf_counter() - t0
        return out

    road.noisy_linear_imputation = timed_imputation  # road_curves looks it up at call time

    def ours(metric: str) -> tuple[float, dict[str, float], int, Any]:
        spent.update(model=0.0, imputation=0.0)
        before = seen["inputs"]
        t0 = time.perf_counter()
        if metric == "road":
            out: Any = road.road_curves(
                x, maps, score, percentages=pct, batch_size=cfg["batch_size"]
            )
        else:
            kind = "zeros" if metric == "deletion" else "blur"
            sub = make_substrate(x, kind)
            ends = {"start": clean} if metric == "deletion" else {"end": clean}
            out = perturbation_curves(
                x, maps, score, mode=metric, substrate=sub, steps=steps,
                batch_size=cfg["batch_size"], **ends,
            )  # fmt: skip
        return time.perf_counter() - t0, dict(spent), seen["inputs"] - before, out

    try:
        import quantus
    except ImportError as err:  # the bench session installs it; a row says if it could not
        quantus, q_error = None, f"Quantus not installed ({err})"
    else:
        q_error = ""

    def theirs(metric: str) -> tuple[float, int, Any]:
        before, t0 = seen["inputs"], time.perf_counter()
        if metric == "deletion":
            common = {"normalise": False, "abs": False, "disable_warnings": True}
            args = {"model": model, "x_batch": x, "y_batch": target, "channel_first": True}
            out = quantus.PixelFlipping(
                features_in_step=3 * size * size // steps, perturb_baseline=0.0, **common
            )(**args, a_batch=maps[:, None].astype(np.float32), softmax=True, device="cpu",
              batch_size=n)  # fmt: skip
        else:
            for sign in (1.0, -1.0):  # MoRF, then LeRF
                _quantus_road(quantus, model, x, sign * maps, pct)
            out = None
        return time.perf_counter() - t0, seen["inputs"] - before, out

    # rounds: each metric's multiviz and Quantus runs alternate, in rotating
    # order; medians are quoted (the machine may be shared)
    metrics = ("deletion", "insertion", "road")
    times: dict[str, list[float]] = {m: [] for m in metrics}
    q_times: dict[str, list[float]] = {m: [] for m in ("deletion", "road")}
    last: dict[str, Any] = {}
    q_last: dict[str, Any] = {}
    for r in range(cfg["rounds"]):
        for metric in metrics:
            runs = ["ours"] + (["theirs"] if quantus is not None and metric in q_times else [])
            for who in runs if r % 2 == 0 else runs[::-1]:
                if who == "ours":
                    last[metric] = ours(metric)
                    times[metric].append(last[metric][0])
                else:
                    q_last[metric] = theirs(metric)
                    q_times[metric].append(q_last[metric][0])
    road.noisy_linear_imputation = impute
    check: dict[str, Any] = {}
    if "deletion" in q_last:
        diff = np.abs(last["deletion"][3][:, 1:] - np.asarray(q_last["deletion"][2])).max()
        check["deletion max |multiviz - quantus|"] = float(diff)
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        total = statistics.median(times[metric])
        _, share, inputs, _ = last[metric]
        run_time = last[metric][0]
        note = f"model forward {share['model'] / run_time:.0%}"
        if metric == "road":
            note += f", NumPy imputation {share['imputation'] / run_time:.0%}"
        note += " of multiviz's time"
        q = statistics.median(q_times[metric]) if q_times.get(metric) else None
        if metric == "insertion":
            note += "; Quantus has no insertion metric"
        elif q is None:
            note += f"; {q_error}"
        else:
            q_inputs = q_last[metric][1] / n
            note += (
                f"; Quantus {q / total:.1f}x slower; model inputs/image: multiviz "
                f"{inputs / n:.0f}, Quantus {q_inputs:.0f}"
            )
        rows.append(
            {
                "case": f"{metric} per image",
                "median_ms": 1000 * total / n,
                "ratio": None if q is None else total / q,
                "multiviz_s_per_image": total / n,
                "quantus_s_per_image": None if q is None else q / n,
                "multiviz_inputs_per_image": inputs / n,
                "quantus_inputs_per_image": (
                    None if metric not in q_last else q_last[metric][1] / n
                ),
                "note": note,
            }
        )
    return rows, check


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| metric | multiviz s/image | Quantus s/image | Quantus / multiviz | model inputs/image "
        "(multiviz, Quantus) | note |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {fmt(r['multiviz_s_per_image'])} | {fmt(r['quantus_s_per_image'])} | "
            f"{fmt(None if r['ratio'] is None else 1 / r['ratio'], 1)} | "
            f"{fmt(r['multiviz_inputs_per_image'], 0)}, "
            f"{fmt(r['quantus_inputs_per_image'], 0)} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--json", default=str(Path(__file__).parent / "out" / "evaluate.json"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    cfg = (
        {"images": 2, "size": 48, "steps": 12, "percentages": (30, 70), "batch_size": 32,
         "rounds": 1}
        if args.quick
        else {"images": 4, "size": 192, "steps": 48, "percentages": tuple(range(10, 100, 10)),
              "batch_size": 32, "rounds": 3}
    )  # fmt: skip
    import torch  # before anything imports TensorFlow

    if args.threads:
        torch.set_num_threads(args.threads)
    rows, check = run(cfg)
    record = {
        "benchmark": "evaluate",
        "config": cfg,
        "rows": [{"framework": "torch", **r} for r in rows],
        "checks": [{"name": k, "value": v, "passed": v < 1e-5} for k, v in check.items()],
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "machine": platform.machine()},
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(rows))
    for k, v in check.items():
        print(f"{k}: {v:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
