"""``multiviz demo``: the whole tour on the built-in CNN, in both frameworks.

No download: the model is the shipped built-in CNN, the image is generated
(:mod:`multiviz.sources.shapes_dataset`). For each framework that is installed, the demo
writes into ``OUT/<framework>/``:

* a feature-map grid for every convolution layer,
* the mean and max aggregate maps of the last convolution layer,
* the max map laid over the input image,
* the layer-statistics figure (dead and saturated fractions per layer),
* Grad-CAM over the input and a side-by-side figure of attribution methods,

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
) -> dict[str, list[Path]]:
    """Run the demo and return the files written, per framework.

    Args:
        out_dir: folder to write into (created if missing).
        frameworks: ``["torch"]``, ``["keras"]``, both, or ``None`` for every
            installed framework.
        seed: which generated image to use.
        log: where progress lines go (``print`` by default).

    Raises:
        BackendUnavailableError: a requested framework is not installed, or
            none is.

    Example:
        >>> files = run_demo("/tmp/mv-demo", ["torch"], log=lambda s: None)  # doctest: +SKIP
        >>> sorted(p.name for p in files["torch"])[:2]                       # doctest: +SKIP
        ['aggregate_conv3.png', 'explain.png']
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
        written[fw], captured[fw] = _one_framework(fw, image, item, out / fw, log)
    if len(captured) == 2:
        written["parity"] = [_write_parity(captured, out / "parity.txt", log)]
    log(f"Done. Open the PNG files under {out.resolve()}")
    return written


def _one_framework(
    fw: str, image: np.ndarray, item, out: Path, log: Callable[[str], None]
) -> tuple[list[Path], dict[str, np.ndarray]]:
    import multiviz as mv
    from multiviz.sources.builtin import BUILTIN_CLASSES

    out.mkdir(parents=True, exist_ok=True)
    model = mv.builtin_model(fw)
    x = image[None] if fw == "torch" else mv.to_channels_last(image[None])
    picture = mv.to_channels_last(image[None])[0]  # (H, W, 3) for drawing
    convs = [info.name for info in mv.layers(model, kind="conv")]
    acts = mv.capture(model, x)
    logits = mv.forward(model, x)[0]
    label = BUILTIN_CLASSES[int(np.argmax(logits))]
    truth = BUILTIN_CLASSES[int(item.labels[0])]
    log(f"[{fw}] built-in CNN says {label!r} (truth: {truth!r}); {len(acts)} layers captured")

    files: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        files.append(path)

    for name in convs:
        maps = acts[name][0]
        save(
            mv.plot_feature_maps(
                maps,
                cmap="gray" if name == convs[0] else "viridis",
                normalize="layer",
                title=f"{fw} · {name} · {maps.shape[0]} feature maps (one scale for the layer)",
            ),
            f"maps_{name}.png",
        )
    last = convs[-1]
    for how in ("mean", "max"):
        save(
            mv.plot_aggregate(
                acts[last][0],
                reduce=how,
                cmap="plasma",
                title=f"{fw} · {last} · {how} over channels",
            ),
            f"aggregate_{last}_{how}.png",
        )
    save(
        mv.plot_overlay(
            picture,
            mv.aggregate(acts[last][0], "max"),
            title=f"{fw} · {last} max map over the input",
        ),
        f"overlay_{last}.png",
    )
    save(mv.plot_layer_stats(acts), "layer_stats.png")
    cam = mv.grad_cam(model, x, layer=last)
    save(
        mv.plot_overlay(picture, cam[0], title=f"{fw} · Grad-CAM at {last} for {label!r}"),
        "grad_cam.png",
    )
    maps = mv.explain(
        model,
        x,
        methods=["grad_cam", "grad_cam_plus_plus", "score_cam", "layer_cam", "saliency"],
        layer=last,
    )
    save(mv.plot_explanations(picture, maps), "explain.png")
    _vit_figures(fw, x, picture, save, log)
    log(f"[{fw}] {len(files)} figures in {out}")
    return files, dict(acts)


def _vit_figures(fw: str, x: np.ndarray, picture: np.ndarray, save, log) -> None:
    """The built-in ViT on the same image: a token map grid, Grad-CAM, rollout."""
    import multiviz as mv
    from multiviz.sources.builtin import BUILTIN_CLASSES

    vit = mv.builtin_model(fw, arch="vit")
    label = BUILTIN_CLASSES[int(np.argmax(mv.forward(vit, x)[0]))]
    acts = mv.capture(vit, x, ["blocks.3.norm1"])
    save(
        mv.plot_feature_maps(
            acts["blocks.3.norm1"][0],
            cmap="viridis",
            normalize="layer",
            title=f"{fw} · built-in ViT · blocks.3.norm1: 32 token maps on the 8x8 patch grid",
        ),
        "vit_maps_blocks.3.norm1.png",
    )
    cam = mv.grad_cam(vit, x)  # no layer: the last block's first norm
    save(
        mv.plot_overlay(picture, cam[0], title=f"{fw} · ViT Grad-CAM for {label!r}"),
        "vit_grad_cam.png",
    )
    roll = mv.attention_rollout(vit, x)
    save(
        mv.plot_overlay(picture, roll[0], title=f"{fw} · ViT attention rollout"), "vit_rollout.png"
    )
    log(f"[{fw}] built-in ViT says {label!r}")


def _write_parity(
    captured: dict[str, dict[str, np.ndarray]], path: Path, log: Callable[[str], None]
) -> Path:
    from multiviz.parity.compare import compare_activations

    report = compare_activations(captured["torch"], captured["keras"], labels=("torch", "keras"))
    path.write_text(str(report) + "\n")
    verdict = "agree" if report.first_divergence is None else "DISAGREE"
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
