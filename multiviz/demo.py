"""``multiviz demo``: the whole tour on the built-in CNN, in both frameworks.

No download: the model is the shipped built-in CNN, the image is generated
(:mod:`multiviz.sources.shapes_dataset`). For each framework that is installed, the demo
writes into ``OUT/<framework>/``:

* a feature-map grid for every convolution layer,
* the mean and max aggregate maps of the last convolution layer,
* the max map laid over the input image,
* the layer-statistics figure (dead and saturated fractions per layer),
* Grad-CAM over the input and a side-by-side figure of attribution methods,
* the built-in ViT on the same image: a token-map grid, Grad-CAM and attention rollout,

and, when both frameworks ran, ``OUT/parity.txt``: the parity report of the
two frameworks' activations, layer by layer (the same weights must give the
same numbers).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["available_frameworks", "run_demo"]

_MODULES = {"torch": ("torch",), "keras": ("keras", "tensorflow")}


def available_frameworks() -> list[str]:
    """The frameworks installed here, in the order the demo runs them.

    PyTorch comes first: importing it before TensorFlow avoids a known crash
    of torch's CUDA build when both share a process.

    Example:
        >>> set(available_frameworks()) <= {"torch", "keras"}
        True
    """
    return [
        fw
        for fw, mods in _MODULES.items()
        if all(importlib.util.find_spec(m) is not None for m in mods)
    ]


def run_demo(
    out_dir: str | Path = "multiviz-demo",
    frameworks: Sequence[str] | None = None,
    *,
    seed: int = 3,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
) -> dict[str, list[Path]]:
    """Run the demo and return the files written, per framework.

    What it prints comes in the order it happens: per framework, what the
    model predicts, then one ``wrote PATH`` line per file as it is written
    (under a progress bar on a terminal), then the parity verdict, and
    ``Done`` last.

    Args:
        out_dir: folder to write into (created if missing).
        frameworks: ``["torch"]``, ``["keras"]``, both, or ``None`` for every
            installed framework.
        seed: which generated image to use.
        log: where progress lines go (``print`` by default).
        progress: show a tqdm progress bar on stderr per framework; ``None``
            (default) shows it when stderr is a terminal, ``False`` never.

    Raises:
        BackendUnavailableError: a requested framework is not installed, or
            none is.

    Example:
        >>> files = run_demo("/tmp/mv-demo", ["torch"], log=lambda s: None)  # doctest: +SKIP
        >>> sorted(p.name for p in files["torch"])[:2]                       # doctest: +SKIP
        ['aggregate_conv3_max.png', 'aggregate_conv3_mean.png']
    """
    from multiviz.errors import BackendUnavailableError

    installed = available_frameworks()
    frameworks = list(installed if frameworks is None else frameworks)
    missing = [fw for fw in frameworks if fw not in installed]
    if missing or not frameworks:
        raise BackendUnavailableError(
            f"The demo needs a framework; not installed: {missing or ['torch', 'keras']}. "
            "Install one with: pip install 'multiviz[torch]' (or [tensorflow], or [all] for both)"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up quiet
    if "torch" in frameworks:  # torch before TensorFlow, always (see available_frameworks)
        import torch  # noqa: F401

    from multiviz.sources import shapes_dataset as shapes

    out = Path(out_dir)
    item = shapes.sample(seed=seed, label="triangle")
    image = item.images[0]  # (3, H, W) in [0, 1]
    written: dict[str, list[Path]] = {}
    captured: dict[str, dict[str, np.ndarray]] = {}
    for fw in frameworks:
        written[fw], captured[fw] = _one_framework(fw, image, item, out / fw, log, progress)
    if len(captured) == 2:
        written["parity"] = [_write_parity(captured, out / "parity.txt", log)]
    n = sum(len(v) for v in written.values())
    log(f"Done: {n} files under {out.resolve()}")
    return written


def _one_framework(
    fw: str,
    image: np.ndarray,
    item: Any,
    out: Path,
    log: Callable[[str], None],
    progress: bool | None,
) -> tuple[list[Path], dict[str, np.ndarray]]:
    from tqdm import tqdm

    import multiviz as mv
    from multiviz.sources.builtin import BUILTIN_CLASSES

    out.mkdir(parents=True, exist_ok=True)
    model = mv.builtin_model(fw)
    x = image[None] if fw == "torch" else mv.to_channels_last(image[None])
    picture = mv.to_channels_last(image[None])[0]  # (H, W, 3) for drawing
    convs = [info.name for info in mv.layers(model, kind="conv")]
    acts = mv.capture(model, x)
    logits = mv.forward(model, x)[0]
    top = int(np.argmax(logits))
    label = BUILTIN_CLASSES[top]
    truth = BUILTIN_CLASSES[int(item.labels[0])]
    log(f"[{fw}] built-in CNN says {label!r} (truth: {truth!r}); {len(acts)} layers captured")
    last = convs[-1]

    # each step draws one figure; they are saved, and announced, one by one
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            f"maps_{name}.png",
            lambda name=name: mv.plot_feature_maps(acts[name][0], name=f"{fw} · {name}"),
        )
        for name in convs
    ]
    steps += [
        (
            f"aggregate_{last}_{how}.png",
            lambda how=how: mv.plot_aggregate(acts[last][0], how, name=f"{fw} · {last}"),
        )
        for how in ("mean", "max")
    ]
    steps += [
        (
            f"overlay_{last}.png",
            lambda: mv.plot_overlay(
                picture,
                mv.aggregate(acts[last][0], "max"),
                colorbar=True,
                title=f"{fw} · {last}: max over channels, over the input",
            ),
        ),
        (
            "layer_stats.png",
            lambda: mv.plot_layer_stats(
                mv.layer_stats(acts),
                title=f"{fw} · activation statistics per layer, input at the top (1 image)",
            ),
        ),
        (
            "grad_cam.png",
            lambda: mv.plot_overlay(
                picture,
                mv.grad_cam(model, x, layer=last)[0],
                colorbar=True,
                title=f"{fw} · Grad-CAM at {last}: evidence for class {top} ({label})",
            ),
        ),
        (
            "explain.png",
            lambda: mv.explain(
                model,
                x,
                methods=["grad_cam", "grad_cam_plus_plus", "score_cam", "layer_cam", "saliency"],
                layer=last,
                image=picture[None],
                class_names=BUILTIN_CLASSES,
            ).plot(),
        ),
    ]
    files: list[Path] = []
    bar = tqdm(
        total=len(steps) + len(_VIT_FIGURES),
        desc=f"[{fw}] figures",
        unit="fig",
        leave=False,
        disable=_off(progress),
    )

    def say(line: str) -> None:  # a line between bar redraws, so both stay readable
        bar.clear()
        log(line)
        bar.refresh()

    def save_all(todo: Sequence[tuple[str, Callable[[], Any]]]) -> None:
        for name, draw in todo:
            path = out / name
            draw().savefig(path, dpi=100, bbox_inches="tight")
            files.append(path)
            bar.update()
            say(f"wrote {path}")

    save_all(steps)
    save_all(_vit_figures(fw, x, picture, say))
    bar.close()
    return files, dict(acts)


def _off(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows the bar only on a terminal."""
    return None if progress is None else not progress


#: the files of the built-in ViT's figures, in the order they are written
_VIT_FIGURES = ("vit_maps_blocks.3.norm1.png", "vit_grad_cam.png", "vit_rollout.png")


def _vit_figures(
    fw: str, x: np.ndarray, picture: np.ndarray, say: Callable[[str], None]
) -> list[tuple[str, Callable[[], Any]]]:
    """The built-in ViT on the same image: a token map grid, Grad-CAM, rollout."""
    import multiviz as mv
    from multiviz.sources.builtin import BUILTIN_CLASSES

    vit = mv.builtin_model(fw, arch="vit")
    top = int(np.argmax(mv.forward(vit, x)[0]))
    label = BUILTIN_CLASSES[top]
    say(f"[{fw}] built-in ViT says {label!r}")
    acts = mv.capture(vit, x, ["blocks.3.norm1"])
    maps, grid, roll = _VIT_FIGURES
    return [
        (
            maps,
            lambda: mv.plot_feature_maps(
                acts["blocks.3.norm1"][0],
                name=f"{fw} · built-in ViT · blocks.3.norm1 (token maps on the 8x8 patch grid)",
            ),
        ),
        (
            grid,
            lambda: mv.plot_overlay(
                picture,
                mv.grad_cam(vit, x)[0],  # no layer: the last block's first norm
                colorbar=True,
                title=f"{fw} · ViT Grad-CAM: evidence for class {top} ({label})",
            ),
        ),
        (
            roll,
            lambda: mv.plot_overlay(
                picture,
                mv.attention_rollout(vit, x)[0],
                colorbar=True,
                title=f"{fw} · ViT attention rollout",
            ),
        ),
    ]


def _write_parity(
    captured: dict[str, dict[str, np.ndarray]], path: Path, log: Callable[[str], None]
) -> Path:
    from multiviz.parity.compare import compare_activations

    report = compare_activations(captured["torch"], captured["keras"], labels=("torch", "keras"))
    path.write_text(str(report) + "\n")
    verdict = "agree" if report.first_divergence is None else "DISAGREE"
    log(f"wrote {path}")
    log(f"PyTorch and Keras {verdict} on every layer of the built-in CNN (table: {path})")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line (``python -m multiviz.demo``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="multiviz demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="multiviz-demo", help="output folder")
    parser.add_argument("--framework", choices=["torch", "keras"], action="append")
    args = parser.parse_args(argv)
    run_demo(args.out, args.framework)
    return 0


if __name__ == "__main__":
    sys.exit(main())
