"""The three classic recipes on torchvision's ResNet-18, with multiviz.

1. every feature map of an early layer as a greyscale grid,
2. a deeper layer in a heatmap colormap, on one scale for the whole layer,
3. one aggregated (mean) map of a layer, and its max map over the input.

Runs offline: ResNet-18 is built with random weights (``weights="none"``). With
a network, ``--pretrained`` loads torchvision's ImageNet weights instead
(``weights="default"``), which is when the maps start to mean something.
``mv.load_model`` also gives torchvision's preprocessing recipe for the model
(resize the shorter side to 256, centre-crop 224, ImageNet mean and std),
which ``mv.load_images`` applies.

    python examples/recipes_torch_resnet18.py [--image photo.jpg] [--pretrained] [--out DIR]

Without ``--image`` it uses a generated shapes image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch  # noqa: F401  (import torch before any TensorFlow, always)

import multiviz as mv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image file (default: a generated shapes image)")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet weights (network)")
    parser.add_argument("--out", type=Path, default=Path("recipes_torch_resnet18"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    loaded = mv.load_model("torchvision:resnet18", weights="default" if args.pretrained else "none")
    model = loaded.model  # torchvision.models.resnet18, in eval mode
    image = args.image or mv.save_image(
        mv.to_channels_last(mv.sample_image(seed=3, size=256)[None])[0], args.out / "input.png"
    )
    batch = mv.load_images(image, loaded.preprocess)  # .inputs: (1, 3, 224, 224)

    acts = mv.capture(model, batch.inputs, ["conv1", "layer2.1.conv2", "layer3.0.conv1"])
    print(acts)

    # 1. an early layer, every map, greyscale, each map on its own scale
    mv.plot_feature_maps(acts["conv1"][0], cmap="gray", title="conv1").savefig(
        args.out / "1_conv1_gray.png", dpi=100
    )
    # 2. a deeper layer in a heatmap colormap, one scale for the layer
    mv.plot_feature_maps(
        acts["layer2.1.conv2"][0],
        cmap="viridis",
        normalize="layer",
        colorbar=True,
        title="layer2.1.conv2",
    ).savefig(args.out / "2_layer2.1.conv2_viridis.png", dpi=100)
    # 3. the whole layer in one map, and its max map over the input
    mv.plot_aggregate(acts["layer3.0.conv1"][0], reduce="mean", cmap="plasma").savefig(
        args.out / "3_layer3.0.conv1_mean.png", dpi=100
    )
    heat = mv.aggregate(acts["layer3.0.conv1"][0], "max")
    mv.plot_overlay(batch.display[0], heat, title="layer3.0.conv1, max over channels").savefig(
        args.out / "3_layer3.0.conv1_overlay.png", dpi=100
    )
    print(f"figures in {args.out}/")


if __name__ == "__main__":
    main()
