"""Build the documentation's generated parts into docs/gallery/ (never committed).

Run before ``mkdocs build`` (``nox -s docs`` does)::

    python docs/gen_gallery.py

It writes:

* one PNG per recipe below, made by running the recipe's code on the
  built-in model — the same code the Gallery page shows, included from the
  ``.py`` file written next to each image, so the page cannot drift from
  what ran;
* ``report.html``, an example HTML report;
* ``cli-help*.txt``, the help of every ``multiviz`` subcommand;

and checks that the API reference documents every public name of
``multiviz`` (a name missing from docs/api.md fails the build).

PyTorch is imported before TensorFlow (see docs/pitfalls.md).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "gallery"
CLI_COMMANDS = ("layers", "maps", "cam", "stats", "report", "compare", "scan", "demo")


@dataclass(frozen=True)
class Recipe:
    """A snippet of user code that writes ``<name>.png`` into the current folder."""

    name: str
    code: str


PRELUDE = """\
import numpy as np
import torch                        # PyTorch before TensorFlow, always
import multiviz as mv

model = mv.builtin_model("torch")   # the built-in CNN, trained weights shipped
x = mv.sample_image(seed=3, label="triangle")[None]   # (1, 3, 64, 64) in [0, 1]
image = mv.to_channels_last(x)[0]   # (64, 64, 3), for drawing under overlays
acts = mv.capture(model, x)         # every layer, one forward pass
"""

RECIPES = [
    Recipe(
        "grid",
        """\
fig = mv.plot_feature_maps(acts["conv2"], cmap="viridis")
fig.savefig("grid.png", dpi=120)
""",
    ),
    Recipe(
        "grid_modes",
        """\
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
mv.plot_feature_maps(acts["relu3"], normalize="map", max_maps=16, ax=axes[0],
                     title='normalize="map": each map on its own')
mv.plot_feature_maps(acts["relu3"], normalize="layer", max_maps=16, ax=axes[1],
                     colorbar=True, title='normalize="layer": one range, comparable')
fig.savefig("grid_modes.png", dpi=120)
""",
    ),
    Recipe(
        "grid_fast",
        """\
rgb = mv.feature_map_image(acts["relu1"], cmap="magma", upscale=2)   # uint8, no figure
mv.save_image(rgb, "grid_fast.png")
""",
    ),
    Recipe(
        "aggregate",
        """\
fig = mv.plot_aggregate(acts["relu3"], "mean")
fig.savefig("aggregate.png", dpi=120)
""",
    ),
    Recipe(
        "overlay",
        """\
heat = mv.aggregate(acts["relu3"], "max")[0]          # (16, 16)
fig = mv.plot_overlay(image, heat, alpha=0.5, title="relu3, max over channels")
fig.savefig("overlay.png", dpi=120)
""",
    ),
    Recipe(
        "stats",
        """\
batch = mv.shapes_dataset(64).images                   # (64, 3, 64, 64)
fig = mv.plot_layer_stats(mv.capture(model, batch))
fig.savefig("stats.png", dpi=120)
""",
    ),
    Recipe(
        "grad_cam",
        """\
cams = mv.grad_cam(model, x, layer="relu3")            # (1, 64, 64) in [0, 1]
fig = mv.plot_overlay(image, cams[0], title="Grad-CAM, relu3")
fig.savefig("grad_cam.png", dpi=120)
""",
    ),
    Recipe(
        "explain",
        """\
ex = mv.explain(model, x, ["grad_cam", "grad_cam_plus_plus", "layer_cam",
                           "score_cam", "saliency", "guided_backprop"], layer="relu3")
fig = ex.plot()
fig.savefig("explain.png", dpi=120)
""",
    ),
    Recipe(
        "scan_exemplars",
        """\
data = mv.shapes_dataset(512, seed=3)                  # 512 images, 128 per shape
scan = mv.scan(model, data.images, ["relu2", "relu3"], topk=12, progress=False)
print(scan)
fig = scan.plot_exemplars("relu3", data=data.images)   # the 8 most active channels
fig.savefig("scan_exemplars.png", dpi=120)
""",
    ),
    Recipe(
        "scan_dissection",
        """\
data = mv.shapes_dataset(512, seed=3)
scan = mv.scan(model, data.images, ["relu2", "relu3"], topk=12, progress=False)
concepts = np.where(data.masks, data.labels[:, None, None], -1)   # (N, H, W): shape index
dissection = scan.dissect(data.images, concepts, concepts=data.class_names, progress=False)
print(dissection)
fig = dissection.plot()
fig.savefig("scan_dissection.png", dpi=120)
""",
    ),
    Recipe(
        "comparison",
        """\
import keras                                           # after torch

keras_model = mv.builtin_model("keras")                # the same weights, in Keras
report = mv.compare(model, keras_model, x)             # x is NCHW; transposed for Keras
print(report)
fig = mv.plot_comparison(report, "conv2")
fig.savefig("comparison.png", dpi=120)
""",
    ),
    Recipe(
        "vit_grad_cam",
        """\
import matplotlib.pyplot as plt

vit = mv.builtin_model("torch", arch="vit")            # the built-in ViT, 8x8 patches
batch = mv.shapes_dataset(4, seed=7).images            # (4, 3, 64, 64)
cams = mv.grad_cam(vit, batch)                         # no layer, no callback
pictures = mv.to_channels_last(batch)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, picture, cam in zip(axes, pictures, cams):
    ax.imshow(picture)
    ax.imshow(cam, cmap="jet", alpha=0.45)
    ax.axis("off")
fig.suptitle("Grad-CAM on the built-in ViT (blocks.3.norm1, chosen automatically)")
fig.savefig("vit_grad_cam.png", dpi=120)
""",
    ),
    Recipe(
        "vit_rollout",
        """\
import matplotlib.pyplot as plt

vit = mv.builtin_model("torch", arch="vit")
batch = mv.shapes_dataset(4, seed=7).images
rows = {
    "rollout": mv.attention_rollout(vit, batch),
    "gradient-weighted": mv.attention_rollout(vit, batch, "grad"),
}
pictures = mv.to_channels_last(batch)
fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
for row, (title, maps) in zip(axes, rows.items()):
    for ax, picture, m in zip(row, pictures, maps):
        ax.imshow(picture)
        ax.imshow(m, cmap="jet", alpha=0.45)
        ax.axis("off")
    row[0].set_title(title, loc="left")
fig.savefig("vit_rollout.png", dpi=120)
""",
    ),
]


def run_recipes() -> None:
    """Run the prelude once, then every recipe, in docs/gallery/."""
    import matplotlib.pyplot as plt

    (OUT / "prelude.py").write_text(PRELUDE)
    namespace: dict[str, object] = {"__name__": "__gallery__"}
    cwd = Path.cwd()
    os.chdir(OUT)
    try:
        exec(compile(PRELUDE, "prelude.py", "exec"), namespace)
        for recipe in RECIPES:
            t0 = time.perf_counter()
            (OUT / f"{recipe.name}.py").write_text(recipe.code)
            printed = _run(recipe, dict(namespace))
            if printed.strip():
                (OUT / f"{recipe.name}.txt").write_text(printed)
            png = OUT / f"{recipe.name}.png"
            if not png.exists():
                raise SystemExit(f"gallery recipe {recipe.name!r} wrote no {png.name}")
            plt.close("all")
            print(f"  {recipe.name}.png ({time.perf_counter() - t0:.1f} s)")
    finally:
        os.chdir(cwd)


def _run(recipe: Recipe, namespace: dict[str, object]) -> str:
    """Execute one recipe; return what it printed."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(recipe.code, f"{recipe.name}.py", "exec"), namespace)
    return buffer.getvalue()


def write_report() -> None:
    """An example HTML report of the built-in model, linked from docs/report.md."""
    import multiviz as mv
    from multiviz.report import write_atomic
    from multiviz.sources.builtin import BUILTIN_CLASSES

    model = mv.builtin_model("torch")
    html = mv.html_report(
        model,
        mv.sample_image(seed=3, label="triangle")[None],
        class_names=list(BUILTIN_CLASSES),
        source="multiviz built-in CNN (PyTorch)",
    )
    write_atomic(OUT / "report.html", html)
    print("  report.html")


def write_cli_help() -> None:
    """``multiviz --help`` and each subcommand's, as the installed version prints them."""
    import contextlib
    import io

    from multiviz.cli import main as cli_main

    os.environ["COLUMNS"] = "88"  # argparse wraps help to this width
    for command in ("", *CLI_COMMANDS):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            cli_main([*([command] if command else []), "--help"])
        text = buffer.getvalue()
        if not text.startswith("usage: multiviz"):
            raise SystemExit(f"`multiviz {command} --help` printed no usage: {text[:200]!r}")
        name = f"cli-help-{command}.txt" if command else "cli-help.txt"
        (OUT / name).write_text(text)
    print(f"  cli-help*.txt ({len(CLI_COMMANDS) + 1} files)")


def check_api_reference() -> None:
    """Fail when a public name of ``multiviz`` is not documented on docs/api.md."""
    import multiviz
    from multiviz import _EXPORTS

    documented = set(re.findall(r"^::: (multiviz[\w.]*)", (DOCS / "api.md").read_text(), re.M))
    missing = []
    for name in multiviz.__all__:
        if name == "__version__":
            continue
        home = _EXPORTS.get(name)
        module = f"multiviz.{home}" if home else getattr(multiviz, name).__module__
        if module not in documented:
            missing.append(f"{name} (from {module})")
    if missing:
        raise SystemExit(
            "docs/api.md documents no module for these public names: "
            + ", ".join(missing)
            + ". Add a `::: module` block for each."
        )
    print(f"  api.md covers all {len(multiviz.__all__) - 1} public names")


def run_port_example() -> None:
    """examples/port_resnet18.py: the figures docs/comparison.md shows."""
    import subprocess

    out = OUT / "port_resnet18"
    example = DOCS.parent / "examples" / "port_resnet18.py"
    subprocess.run(
        [sys.executable, str(example), "--size", "32", "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"  port_resnet18/ ({len(list(out.glob('*.png')))} figures)")


def write_vit_rates() -> None:
    """The built-in ViT's measured localization rates, as a table the Transformers page includes."""
    from multiviz.sources.builtin import builtin_metadata

    meta = builtin_metadata(arch="vit")
    rows = [
        ("Grad-CAM (blocks.3.norm1)", meta["grad_cam_peak_in_box"]),
        ("attention rollout", meta["rollout_peak_in_box"]),
        ("gradient-weighted attention", meta["grad_rollout_peak_in_box"]),
        ("a random map (box area / image area)", meta["random_map_peak_in_box"]),
    ]
    lines = ["| map | peak inside the box |", "|---|---:|"]
    lines += [f"| {name} | {rate:.0%} |" for name, rate in rows]
    lines.append("")
    lines.append(
        f"Held-out accuracy {meta['heldout_accuracy']:.1%} on {meta['heldout_images']} images "
        f"(seed {meta['heldout_seed']}); rates on {meta['localization_images']} of them."
    )
    (OUT / "vit_localization.md").write_text("\n".join(lines) + "\n")
    print("  vit_localization.md")


def main() -> int:
    import torch  # noqa: F401  (before TensorFlow, always)

    OUT.mkdir(exist_ok=True)
    print(f"writing {OUT.relative_to(DOCS.parent)}/")
    check_api_reference()
    run_recipes()
    write_vit_rates()
    write_report()
    write_cli_help()
    run_port_example()
    return 0


if __name__ == "__main__":
    sys.exit(main())
