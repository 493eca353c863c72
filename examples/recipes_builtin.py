"""The three classic recipes on the built-in CNN, in PyTorch and in Keras.

The built-in model is trained (on generated shapes) and ships with multiviz,
so these maps mean something without a download. The same calls run on both
frameworks and give the same pictures.

    python examples/recipes_builtin.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import multiviz as mv


def recipes(model, x: np.ndarray, picture: np.ndarray, out: Path, tag: str) -> None:
    acts = mv.capture(model, x, ["conv1", "conv2", "conv3"])
    mv.plot_feature_maps(acts["conv1"][0], cmap="gray", title=f"{tag}: conv1").savefig(
        out / f"{tag}_1_conv1_gray.png", dpi=100
    )
    mv.plot_feature_maps(
        acts["conv2"][0], cmap="viridis", normalize="layer", title=f"{tag}: conv2"
    ).savefig(out / f"{tag}_2_conv2_viridis.png", dpi=100)
    mv.plot_aggregate(acts["conv3"][0], reduce="mean", cmap="plasma").savefig(
        out / f"{tag}_3_conv3_mean.png", dpi=100
    )
    cam = mv.grad_cam(model, x, layer="conv3")
    mv.plot_overlay(picture, cam[0], title=f"{tag}: Grad-CAM at conv3").savefig(
        out / f"{tag}_4_grad_cam.png", dpi=100
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("recipes_builtin"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    image = mv.sample_image(seed=3, label="triangle")  # (3, 64, 64), channels first
    picture = mv.to_channels_last(image[None])[0]  # (64, 64, 3), for drawing
    for fw in ("torch", "keras"):  # torch first: importing it before TensorFlow is safer
        try:
            model = mv.builtin_model(fw)
        except mv.BackendUnavailableError as err:  # that framework is not installed here
            print(f"skipping {fw}: {err}")
            continue
        x = image[None] if fw == "torch" else mv.to_channels_last(image[None])
        recipes(model, x, picture, args.out, fw)
    print(f"figures in {args.out}/")


if __name__ == "__main__":
    main()
