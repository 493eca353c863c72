"""Render benchmark: a grid of feature maps saved as PNG, three ways.

For 512 maps of 28x28 and 64 maps of 112x112 (float32, viridis, per-map
min-max scaling), each variant draws the whole grid and writes a PNG:

* (a) naive — one subplot + ``imshow`` per map, ``savefig`` (the usual
  tutorial code, written with ``Figure()`` rather than pyplot, which only
  flatters it);
* (b) ``mv.plot_feature_maps`` + ``savefig`` — one montage, one ``imshow``,
  channel labels;
* (c) ``mv.feature_map_image`` + ``mv.save_image`` — no figure at all:
  normalize -> montage -> colormap lookup -> Pillow.

Timing protocol: every variant is warmed up once, then the variants run in
rotating order, one call each per round, and the median per variant is
quoted with its ratio to the naive figure (the baseline, 1.00).

"No visual loss": the PNG written by (c) is read back and compared pixel for
pixel with an independent reference — each map min-max scaled in float64 and
colormapped by ``matplotlib.colormaps[...](v, bytes=True)``, placed at the
tile positions the montage promises, the padding in the background colour.

Run::

    python benchmarks/render.py                    # full sizes
    python benchmarks/render.py --quick            # a smoke run
    python benchmarks/render.py --json out.json    # default benchmarks/out/render.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import multiviz as mv
from multiviz.render.colors import background_color

HERE = Path(__file__).resolve().parent
CMAP = "viridis"
DPI = 100


def make_maps(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Structured maps (oriented gratings + noise, ReLU'd), float32 (C, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, np.pi, size=(count, 1, 1))
    freq = rng.uniform(3, 12, size=(count, 1, 1))
    maps = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi)
    maps = maps + 0.4 * rng.normal(size=maps.shape)
    return np.maximum(maps, 0).astype(np.float32)


def naive_png(maps: np.ndarray, path: Path) -> None:
    """(a) One subplot and one imshow per map."""
    n = maps.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(10, 10 * rows / cols), dpi=DPI)
    axes = fig.subplots(rows, cols).ravel()
    for i, (ax, m) in enumerate(zip(axes, maps, strict=False)):
        ax.imshow(m, cmap=CMAP)
        ax.set_title(f"#{i}", fontsize=4)  # (b) labels its tiles too
    for ax in axes:
        ax.set_axis_off()
    fig.savefig(path)


def montage_figure_png(maps: np.ndarray, path: Path) -> None:
    """(b) plot_feature_maps: one montage, one imshow, labels."""
    fig = mv.plot_feature_maps(maps, cmap=CMAP)
    fig.savefig(path)


def fast_png(maps: np.ndarray, path: Path) -> None:
    """(c) feature_map_image + save_image: no figure."""
    mv.save_image(mv.feature_map_image(maps, cmap=CMAP), path)


VARIANTS: dict[str, Callable[[np.ndarray, Path], None]] = {
    "(a) naive: subplot + imshow per map": naive_png,
    "(b) plot_feature_maps + savefig": montage_figure_png,
    "(c) feature_map_image + save_image": fast_png,
}


def time_variants(maps: np.ndarray, folder: Path, rounds: int) -> dict[str, list[float]]:
    """Warm up each variant, then ``rounds`` rounds in rotating order."""
    names = list(VARIANTS)
    for k, name in enumerate(names):
        VARIANTS[name](maps, folder / f"warmup{k}.png")
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            path = folder / f"{names.index(name)}.png"
            t0 = time.perf_counter()
            VARIANTS[name](maps, path)
            times[name].append(time.perf_counter() - t0)
    return times


def check_pixels(maps: np.ndarray, png: Path) -> dict[str, Any]:
    """Compare variant (c)'s PNG with an independent per-map reference."""
    got = np.asarray(Image.open(png).convert("RGB"))
    n, h, w = maps.shape
    cols = math.ceil(math.sqrt(n))  # square maps: the montage's near-square grid
    rows = math.ceil(n / cols)
    expected = np.empty(((h + 1) * rows + 1, (w + 1) * cols + 1, 3), np.uint8)
    expected[:] = background_color(CMAP)
    lut = matplotlib.colormaps[CMAP]
    for i, m in enumerate(maps.astype(np.float64)):
        v = (m - m.min()) / (m.max() - m.min())
        y, x = 1 + (i // cols) * (h + 1), 1 + (i % cols) * (w + 1)
        expected[y : y + h, x : x + w] = lut(v.astype(np.float32), bytes=True)[..., :3]
    same_shape = got.shape == expected.shape
    mismatched = int((got != expected).any(axis=-1).sum()) if same_shape else -1
    return {
        "png_shape": list(got.shape),
        "pixel_exact": same_shape and mismatched == 0,
        "mismatched_pixels": mismatched,
    }


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "pillow": version("pillow"),
        "multiviz": version("multiviz"),
    }


def run_case(count: int, size: int, rounds: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    maps = make_maps(count, size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        times = time_variants(maps, folder, rounds)
        check = check_pixels(maps, folder / "2.png")  # the last timed run of (c)
        sizes = {
            name: list(Image.open(folder / f"{k}.png").size[::-1])
            for k, name in enumerate(VARIANTS)
        }
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med[next(iter(VARIANTS))]
    case = f"{count} maps {size}x{size}"
    rows = []
    for name, value in med.items():
        speedup = base / value
        rows.append(
            {
                "benchmark": "render",
                "framework": "–",
                "case": f"{case}: {name}",
                "median_ms": round(value * 1e3, 2),
                "ratio": round(value / base, 4),
                "speedup_vs_naive": round(speedup, 1),
                "runs_ms": [round(t * 1e3, 2) for t in times[name]],
                "png_hw": sizes[name],
                "note": "baseline"
                if name == next(iter(VARIANTS))
                else f"{speedup:.1f}x faster than naive; PNG {sizes[name][0]}x{sizes[name][1]}",
            }
        )
    return rows, {"case": case, **check}


def markdown(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    lines = [
        "| case | median ms | × naive | speed-up | PNG (h x w) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['median_ms']:.1f} | {r['ratio']:.3f} | "
            f"{r['speedup_vs_naive']:.1f}x | {r['png_hw'][0]}x{r['png_hw'][1]} |"
        )
    lines.append("")
    for c in checks:
        state = "pixel-exact" if c["pixel_exact"] else f"{c['mismatched_pixels']} pixels differ"
        lines.append(f"- {c['case']}, (c) vs per-map matplotlib reference: {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument(
        "--json", type=Path, default=HERE / "out" / "render.json", help="where to write results"
    )
    args = parser.parse_args(argv)
    cases = [(64, 28), (16, 56)] if args.quick else [(512, 28), (64, 112)]
    rounds = args.rounds or (2 if args.quick else 5)

    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for count, size in cases:
        r, c = run_case(count, size, rounds)
        rows += r
        checks.append(c)
    print(markdown(rows, checks))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"environment": environment(), "rounds": rounds, "rows": rows, "checks": checks}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(c["pixel_exact"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
