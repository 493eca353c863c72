"""The three classic recipes on keras.applications ResNet50, with multiviz.

1. every feature map of an early layer as a greyscale grid,
2. a deeper layer in a heatmap colormap, on one scale for the whole layer,
3. one aggregated (mean) map of a layer, and its max map over the input.

Runs offline: ResNet50 is built with random weights (``weights="none"``). With
a network, ``--pretrained`` loads the ImageNet weights (``weights="default"``).
``mv.load_model`` also gives the model's own preprocessing (224 x 224,
``keras.applications.resnet50.preprocess_input``: BGR, ImageNet means), which
``mv.load_images`` applies.
Arrays come back channels first, ``(N, C, H, W)``, as they do from PyTorch.

    python examples/recipes_keras_resnet50.py [--image photo.jpg] [--pretrained] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import multiviz as mv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image file (default: a generated shapes image)")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet weights (network)")
    parser.add_argument("--out", type=Path, default=Path("recipes_keras_resnet50"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    loaded = mv.load_model("keras:ResNet50", weights="default" if args.pretrained else "none")
    model = loaded.model  # keras.applications.ResNet50
    image = args.image or mv.save_image(
        mv.to_channels_last(mv.sample_image(seed=3, size=224)[None])[0], args.out / "input.png"
    )
    batch = mv.load_images(image, loaded.preprocess)  # .inputs: (1, 224, 224, 3)

    layers = ["conv1_conv", "conv2_block3_out", "conv3_block1_1_conv"]
    acts = mv.capture(model, batch.inputs, layers)
    print(acts)

    mv.plot_feature_maps(acts["conv1_conv"][0], cmap="gray", title="conv1_conv").savefig(
        args.out / "1_conv1_conv_gray.png", dpi=100
    )
    mv.plot_feature_maps(
        acts["conv2_block3_out"][0],
        cmap="viridis",
        normalize="layer",
        max_maps=64,
        title="conv2_block3_out (first 64 maps)",
    ).savefig(args.out / "2_conv2_block3_out_viridis.png", dpi=100)
    mv.plot_aggregate(acts["conv3_block1_1_conv"][0], reduce="mean", cmap="plasma").savefig(
        args.out / "3_conv3_block1_1_conv_mean.png", dpi=100
    )
    heat = mv.aggregate(acts["conv3_block1_1_conv"][0], "max")
    mv.plot_overlay(batch.display[0], heat, title="conv3_block1_1_conv, max").savefig(
        args.out / "3_conv3_block1_1_conv_overlay.png", dpi=100
    )
    print(f"figures in {args.out}/")


if __name__ == "__main__":
    main()
