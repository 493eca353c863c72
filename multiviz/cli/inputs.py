"""Loading what a subcommand works on: the model and the images, checked to fit.

Every check here runs before the model does, so a wrong file or size is a
one-line usage error, not a framework traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from multiviz.cli.output import print_note
from multiviz.errors import UsageError

__all__ = [
    "framework_logs_hidden",
    "images_from_args",
    "images_from_sources",
    "model_from_args",
    "require_capture",
]


def model_from_args(
    args: argparse.Namespace, purpose: str | None = None, *, needs_weights: bool = True
) -> Any:
    """Load ``args.model``; ``purpose`` names what needs its inner layers, if anything.

    Without ``--weights``, a model gets its pretrained weights, unless the
    command does not need them (``needs_weights=False``: listing layers), in
    which case nothing is downloaded.
    """
    from multiviz.sources.models import load_model, parse_spec

    spec = parse_spec(args.model, args.framework)
    weights = args.weights
    if weights is None:
        downloads = spec.kind in ("torchvision", "keras_app")
        weights = "none" if downloads and not needs_weights else "default"
    with framework_logs_hidden(spec.framework == "keras" and not args.debug):
        loaded = load_model(spec, weights=weights, arch=args.arch, unsafe=args.unsafe_load)
    if purpose is not None:
        require_capture(loaded, purpose)
    for note in loaded.notes:
        print_note(args, note)
    return loaded


def images_from_args(args: argparse.Namespace, loaded: Any) -> Any:
    """Read and preprocess ``args.image`` for ``loaded``; refuse a batch the model cannot take."""
    from multiviz.sources.images import load_images

    if args.std is not None and any(s <= 0 for s in args.std):
        raise UsageError(f"--std must be positive. Received: {','.join(map(str, args.std))}")
    prep = loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )
    batch = load_images(args.image, prep, max_pixels=args.max_pixels)
    _check_fit(loaded, batch)
    return batch


def images_from_sources(
    args: argparse.Namespace, loaded: Any, sources: list[str]
) -> tuple[Any, list[Any]]:
    """Several IMAGE arguments (files, folders, .npy) as one batch, and the images as read.

    The second item holds each image before resizing (float32 ``(H, W, 3)``),
    for moving boxes or masks given in its pixels onto the model's input.
    """
    from multiviz.sources.images import preprocess_images, read_images

    if args.std is not None and any(s <= 0 for s in args.std):
        raise UsageError(f"--std must be positive. Received: {','.join(map(str, args.std))}")
    prep = loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )
    images: list[Any] = []
    names: list[str] = []
    for source in sources:
        more, more_names = read_images(source, max_pixels=args.max_pixels)
        images += more
        names += [n if n not in names else f"{source}/{n}" for n in more_names]
    batch = preprocess_images(images, prep, names)
    _check_fit(loaded, batch)
    return batch, images


def _check_fit(loaded: Any, batch: Any) -> None:
    """Refuse a batch whose shape the model cannot take, before running it."""
    from multiviz.errors import InputShapeError

    want = loaded.input_shape
    have = tuple(batch.inputs.shape[1:])
    if want is None or len(want) != len(have):
        return
    if all(w is None or w == h for w, h in zip(want, have, strict=True)):
        return
    spatial = (want[0], want[1]) if batch.layout == "channels_last" else (want[1], want[2])
    channels = want[-1] if batch.layout == "channels_last" else want[0]
    fix = []
    if channels is not None and channels not in (1, 3):
        fix.append(
            f"the model takes {channels}-channel images; multiviz feeds RGB (3) or luminance (1)"
        )
    if None not in spatial and spatial != tuple(batch.display.shape[1:3]):
        fix.append(f"pass --size {spatial[0]}x{spatial[1]} (or leave --size out)")
    shown = ", ".join(str(d) if d is not None else "any" for d in want)
    raise InputShapeError(
        f"The image batch has shape {tuple(batch.inputs.shape)} but {loaded.spec.text} takes "
        f"(N, {shown}): " + ("; ".join(fix) if fix else "the shapes do not match") + "."
    )


def require_capture(loaded: Any, what: str) -> None:
    """Refuse a model whose inner layers cannot be hooked (TorchScript) for ``what``."""
    if not loaded.capturable:
        raise UsageError(
            f"{loaded.spec.text} is a TorchScript archive: PyTorch cannot hook its inner layers, "
            f"so {what} is not possible. Save the model with torch.export (.pt2), or save its "
            "state dict and pass --arch."
        )


@contextlib.contextmanager
def framework_logs_hidden(active: bool) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while TensorFlow starts up.

    TensorFlow's C++ runtime logs start-up lines (oneDNN, CUDA probing) straight
    to fd 2, before ``TF_CPP_MIN_LOG_LEVEL`` takes effect; a command-line user
    should see only multiviz's own one-line errors. Python exceptions are
    unaffected: they are reported after fd 2 is restored. ``--debug`` keeps
    everything.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
