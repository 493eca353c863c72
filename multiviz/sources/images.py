"""Reading images from disk and preparing them for a model.

Pillow reads the files; NumPy does the rest. Whatever a file holds —
greyscale, RGBA, a palette, 16-bit greyscale, CMYK, a float TIFF — it becomes
a float32 RGB array in ``[0, 1]`` at full precision (a 16-bit image keeps its
16 bits until the very end), then a :class:`Preprocess` resizes, crops and
normalises it. What comes back is an :class:`ImageBatch` with both what a
person should see (``display``, uint8 HWC) and what the model takes
(``inputs``, in the framework's layout).

Sources: one image file of any format Pillow reads, a folder of them (sorted
by name, numbers in names compared as numbers), or a ``.npy`` array.

Colour conventions (each written down once, here):

* transparency is composited onto white (what a viewer shows on a white page);
* greyscale is copied into the three channels;
* a model that takes one channel gets luminance, ITU-R BT.601's
  ``Y = 0.299 R + 0.587 G + 0.114 B`` (:func:`luminance`); an image whose
  three channels are equal (a greyscale file, a one-channel ``.npy``) is kept
  as it is;
* 16-bit images are scaled by 1/65535, 8-bit by 1/255.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multiviz.core.params import names_parameters
from multiviz.errors import ImageError, InputShapeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA_BT601",
    "ImageBatch",
    "Preprocess",
    "boxes_to_input",
    "image_files",
    "load_images",
    "luminance",
    "mask_to_input",
    "preprocess_images",
    "read_image",
    "read_images",
]

#: ImageNet channel statistics, in [0, 1] units (torchvision's constants).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ITU-R BT.601 luma weights of R, G, B: what a one-channel model is fed.
LUMA_BT601: tuple[float, float, float] = (0.299, 0.587, 0.114)

_LAYOUTS = ("channels_first", "channels_last")

#: The largest image (width x height) read without ``max_pixels=``: 40 megapixels.
#: A PNG of a few hundred kilobytes can declare 144 megapixels, which decode
#: to gigabytes; the size is read from the file's header and checked before
#: any pixel is decoded. Pillow's own limit (a warning above 89 megapixels, an
#: error above 179) is far above what a network takes.
DEFAULT_MAX_PIXELS = 40_000_000


# --------------------------------------------------------------------------- reading


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (not recursive), sorted by name.

    Numbers inside names sort as numbers (``img2`` before ``img10``); files
    Pillow does not know by extension (``README.txt``) are left out.

    Raises:
        ImageError: ``folder`` does not exist or holds no image file.

    Example:
        >>> image_files("no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ImageError: No file or folder 'no/such/folder'...
    """
    folder = Path(folder)
    suffixes = _known_suffixes()
    found = (
        [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
        if folder.is_dir()
        else []
    )
    if not folder.exists():
        raise ImageError(f"No file or folder {str(folder)!r}. Check the path.")
    if not found:
        raise ImageError(
            f"No image files in {str(folder)!r}. Put .png/.jpg/... files (or .npy arrays) "
            "there, or pass one image file."
        )
    return sorted(found, key=_natural_key)


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read one image file as float32 RGB, shape ``(H, W, 3)``, values in ``[0, 1]``.

    Args:
        path: any format Pillow reads. Greyscale, palette, RGBA / LA (composited
            onto white), CMYK, YCbCr, 1-bit, 16-bit greyscale (``I;16``),
            32-bit integer (values 0..65535) and float (values in [0, 1])
            images are converted; the EXIF orientation of a photo is applied;
            of an animation, the first frame is read.
        max_pixels: the largest width x height read (default 40 megapixels,
            :data:`DEFAULT_MAX_PIXELS`). The size comes from the file's header
            and a larger image is refused before any pixel is decoded (a small
            file can declare gigabytes of pixels). ``None``: no multiviz limit
            (Pillow still refuses images above its own ``Image.MAX_IMAGE_PIXELS``
            x 2, and warns above it).

    Returns:
        float32 array ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ImageError: the file is missing, is not an image Pillow can decode, has
            more than ``max_pixels`` pixels, or its pixel values cannot be
            mapped to RGB (the message says why).

    Example:
        >>> read_image("missing.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ImageError: Image file not found: 'missing.png'...
    """
    path = Path(path)
    max_pixels = _check_max_pixels(max_pixels)
    if not path.is_file():
        raise ImageError(f"Image file not found: {str(path)!r}. Check the path.")
    try:
        with Image.open(path) as im:  # reads the header only
            _refuse_large(im.size, max_pixels, str(path))
            im.seek(0)
            _refuse_large(im.size, max_pixels, str(path))
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block should not hide a readable image
                pass
            im.load()
            return pil_to_rgb(im, source=str(path))
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{str(path)!r} is larger than Pillow's own limit ({err})."
            "\nhint: raise PIL.Image.MAX_IMAGE_PIXELS only for a file you trust"
        ) from err
    except UnidentifiedImageError as err:
        raise ImageError(
            f"{str(path)!r} is not an image Pillow can read (unknown or corrupt format). "
            "Pass a PNG/JPEG/... file, or a .npy array."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(
            f"{str(path)!r} could not be decoded ({err}); the file is corrupt or truncated. "
            "Re-save it, or pass another image."
        ) from err


def pil_to_rgb(im: object, source: str = "image") -> np.ndarray:
    """Convert a Pillow image of any mode to float32 RGB ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ImageError: a mode whose values cannot be mapped to [0, 1] (a float
            image outside [0, 1], a 32-bit integer image outside 0..65535) or a
            mode Pillow cannot convert to RGB.

    Example:
        >>> from PIL import Image
        >>> pil_to_rgb(Image.new("LA", (2, 1), (0, 0)))[0, 0].tolist()  # transparent -> white
        [1.0, 1.0, 1.0]
    """
    mode = im.mode  # type: ignore[attr-defined]
    if mode.startswith("I;16"):
        return _grey_to_rgb(np.asarray(im, dtype=np.float32) / 65535.0)
    if mode == "I":
        values = np.asarray(im)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"{source} is a 32-bit integer image with values in [{lo}, {hi}]; multiviz reads "
                "integer images as 16-bit (0..65535). Save it as an 8/16-bit image or as a .npy "
                "float array in [0, 1]."
            )
        return _grey_to_rgb(values.astype(np.float32) / 65535.0)
    if mode == "F":
        values = np.asarray(im, dtype=np.float32)
        return _grey_to_rgb(_unit_float(values, source))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):  # type: ignore[attr-defined]
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0  # type: ignore[attr-defined]
        alpha = rgba[..., 3:]
        return np.ascontiguousarray(rgba[..., :3] * alpha + (1.0 - alpha), dtype=np.float32)
    if mode == "RGB":
        return np.asarray(im, dtype=np.float32) / 255.0
    try:
        rgb = im.convert("RGB")  # type: ignore[attr-defined]
    except (ValueError, OSError) as err:
        raise ImageError(
            f"{source} has pixel mode {mode!r}, which Pillow cannot convert to RGB ({err}). "
            "Save it as an RGB or greyscale image."
        ) from err
    return np.asarray(rgb, dtype=np.float32) / 255.0


def read_array(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` image or batch as float32 RGB ``(N, H, W, 3)`` in ``[0, 1]``.

    Accepted shapes: ``(H, W)`` greyscale; ``(H, W, C)`` or ``(N, H, W, C)``
    with ``C`` in {1, 3} (channels last); ``(C, H, W)`` or ``(N, C, H, W)``
    with ``C`` in {1, 3} when the last axis cannot be channels (so
    :func:`multiviz.sample_image`'s ``(3, 64, 64)`` works). Values: uint8
    (/255), uint16 (/65535), bool, or float in ``[0, 1]``. Loaded with
    ``allow_pickle=False``.

    Raises:
        ImageError: the file is unreadable, holds an object array, has another
            shape, or float values outside [0, 1].

    Example:
        >>> read_array("missing.npy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ImageError: Array file not found: 'missing.npy'...
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"Array file not found: {str(path)!r}. Check the path.")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ImageError(
            f"{str(path)!r} is not a readable .npy array without pickle ({err}). "
            "Save images with np.save(path, array) from a numeric array."
        ) from err
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"{str(path)!r} holds several arrays (.npz); pass a single-array .npy.")
    src = str(path)
    if arr.dtype == np.uint8:
        values = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        values = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        values = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        values = _unit_float(arr.astype(np.float32), src)
    else:
        raise ImageError(
            f"{src} has dtype {arr.dtype}; .npy images must be uint8, uint16, bool or float in "
            "[0, 1]. Convert it, e.g. (a / a.max()).astype('float32')."
        )
    batch = _to_nhwc(values, src)
    if batch.shape[-1] == 1:
        batch = np.repeat(batch, 3, axis=-1)
    return np.ascontiguousarray(batch, dtype=np.float32)


def read_images(
    source: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[list[np.ndarray], list[str]]:
    """Read a file, a folder of images or a ``.npy`` array.

    Args:
        source: an image file, a folder of them, or a ``.npy`` array.
        max_pixels: the largest width x height of an image file (see
            :func:`read_image`); default 40 megapixels.

    Returns:
        ``(images, names)``: float32 RGB ``(H, W, 3)`` arrays in ``[0, 1]`` (they
        may differ in size) and one name per image (the file name; for a
        ``.npy`` batch ``"name.npy[i]"``).

    Raises:
        ImageError: nothing readable there, or an image above ``max_pixels``
            (see :func:`read_image`).

    Example:
        >>> read_images("nowhere.jpg")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multiviz.errors.ImageError: Image file not found: 'nowhere.jpg'...
    """
    source = Path(source)
    max_pixels = _check_max_pixels(max_pixels)
    paths = image_files(source) if source.is_dir() else [source]
    images: list[np.ndarray] = []
    names: list[str] = []
    for path in paths:
        if path.suffix.lower() == ".npy":
            batch = read_array(path)
            images.extend(batch)
            names.extend(
                [path.name] if len(batch) == 1 else [f"{path.name}[{i}]" for i in range(len(batch))]
            )
        else:
            images.append(read_image(path, max_pixels=max_pixels))
            names.append(path.name)
    return images, names


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image in ``[0, 1]`` becomes a model input.

    Steps, in order: resize (``resize_shorter`` then a centre crop to ``size``
    — torchvision's recipe — or straight to ``size``), then normalise (either
    ``(x - mean) / std`` on ``[0, 1]`` values, or ``transform`` on ``[0, 255]``
    values — a ``keras.applications`` ``preprocess_input``), then lay out for
    the framework.

    Attributes:
        name: what the preset is called (shown in reports).
        size: final ``(height, width)``; ``None`` keeps each image's own size.
        resize_shorter: resize the shorter side to this, keeping the aspect
            ratio, then centre-crop to ``size``. ``None``: resize straight to
            ``size`` (the aspect ratio may change).
        mean: per-channel mean in [0, 1] units, or ``None``.
        std: per-channel standard deviation in [0, 1] units, or ``None``.
        transform: a function of a float32 NHWC batch in [0, 255] returning the
            model input (NHWC); used instead of mean/std when set.
        layout: ``"channels_first"`` (PyTorch) or ``"channels_last"`` (Keras).
        channels: 3 feeds RGB; 1 feeds luminance (:func:`luminance`, ITU-R
            BT.601), for a model that takes one channel. ``mean``/``std``
            then hold one value each (three equal values are taken as one).

    Example:
        >>> p = Preprocess("imagenet", size=(224, 224), resize_shorter=256,
        ...                mean=IMAGENET_MEAN, std=IMAGENET_STD)
        >>> p.override(size=(112, 112)).resize_shorter
        128
    """

    name: str = "plain"
    size: tuple[int, int] | None = None
    resize_shorter: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    layout: str = "channels_first"
    channels: int = 3

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise ValueError(
                f"`layout` must be one of {_LAYOUTS}. Received: layout={self.layout!r}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3. Received: channels={self.channels!r}")
        if self.channels == 1:
            for name in ("mean", "std"):
                values = getattr(self, name)
                if values is not None and len(set(values)) > 1:
                    raise ImageError(
                        f"`{name}` (--{name}) must be one value for a one-channel model (it is "
                        f"fed luminance). Received: {name}={values}"
                    )
                if values is not None and len(values) > 1:
                    object.__setattr__(self, name, (values[0],))
        if (self.mean is None) != (self.std is None):
            raise ValueError("Pass both `mean` and `std`, or neither.")
        from multiviz.core.checks import check_numbers

        if self.mean is not None:
            check_numbers(self.mean, "mean")
        if self.std is not None:
            check_numbers(self.std, "std", low=0, low_open=True)

    @property
    def normalizes(self) -> bool:
        """True when values are changed beyond the plain [0, 1] scaling."""
        return self.transform is not None or self.mean is not None

    def override(
        self,
        *,
        size: tuple[int, int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize: bool = True,
        layout: str | None = None,
    ) -> Preprocess:
        """A copy with command-line style overrides applied.

        A new ``size`` scales ``resize_shorter`` by the same ratio (256/224
        stays 256/224). ``mean``/``std`` replace the preset's normalisation;
        ``normalize=False`` drops all normalisation (plain [0, 1] values).
        """
        changed = self
        if size is not None:
            shorter = None
            if self.resize_shorter is not None and self.size is not None:
                shorter = round(min(size) * self.resize_shorter / min(self.size))
            changed = replace(changed, size=tuple(size), resize_shorter=shorter)
        if mean is not None or std is not None:
            mean_t = tuple(float(v) for v in (mean if mean is not None else (0.0, 0.0, 0.0)))
            std_t = tuple(float(v) for v in (std if std is not None else (1.0, 1.0, 1.0)))
            changed = replace(changed, mean=mean_t, std=std_t, transform=None, name="custom")
        if not normalize:
            changed = replace(changed, mean=None, std=None, transform=None, name="[0, 1]")
        if layout is not None:
            changed = replace(changed, layout=layout)
        return changed

    def describe(self) -> str:
        """Exactly what is done to an image, in one sentence (for reports).

        Example:
            >>> Preprocess("builtin", size=(64, 64)).describe()
            'builtin: resized to 64x64 (stretched: the aspect ratio is not kept), values in [0, 1], not normalised'
            >>> Preprocess("imagenet", size=(224, 224), resize_shorter=256,
            ...            mean=IMAGENET_MEAN, std=IMAGENET_STD).describe()  # doctest: +ELLIPSIS
            'imagenet: shorter side resized to 256 and centre-cropped to 224x224, then (x - mean) / std ...'
        """
        parts = []
        if self.size is None:
            parts.append("kept at its own size")
        elif self.resize_shorter is not None:
            parts.append(
                f"shorter side resized to {self.resize_shorter} and centre-cropped to "
                f"{self.size[0]}x{self.size[1]}"
            )
        else:
            parts.append(
                f"resized to {self.size[0]}x{self.size[1]} (stretched: the aspect ratio is not kept)"
            )
        if self.transform is not None:
            name = getattr(self.transform, "__module__", "") or ""
            qual = getattr(self.transform, "__qualname__", "transform")
            where = f"{name}.{qual}" if name and "<" not in qual else qual
            parts.append(f"then {where} on values in [0, 255]")
        elif self.mean is not None:
            mean = ", ".join(f"{v:.3g}" for v in self.mean)
            std = ", ".join(f"{v:.3g}" for v in self.std or ())
            parts.append(f"then (x - mean) / std on values in [0, 1], mean ({mean}), std ({std})")
        else:
            parts.append("values in [0, 1], not normalised")
        if self.channels == 1:
            parts.insert(1, "converted to one channel: luminance 0.299 R + 0.587 G + 0.114 B")
        return f"{self.name}: " + ", ".join(parts)


@dataclass
class ImageBatch:
    """Images ready for a model, and the same images as a person sees them.

    Attributes:
        display: uint8 ``(N, H, W, 3)``: the resized, cropped RGB images.
        inputs: float32 model input, ``(N, C, H, W)`` or ``(N, H, W, C)``
            according to ``layout``; ``C`` is ``prep.channels`` (1: luminance).
        names: one name per image.
        layout: ``"channels_first"`` or ``"channels_last"``.
    """

    display: np.ndarray
    inputs: np.ndarray
    names: list[str]
    layout: str

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        from multiviz.core.views import array_summary, plural

        names = ", ".join(self.names[:4]) + (", …" if len(self.names) > 4 else "")
        return (
            f"ImageBatch({plural(len(self), 'image')}: {names}\n"
            f"  inputs   {array_summary(self.inputs)} ({self.layout})\n"
            f"  display  {array_summary(self.display)})"
        )

    @property
    def channels_first(self) -> np.ndarray:
        """``inputs`` as ``(N, C, H, W)`` whatever the layout."""
        return self.inputs if self.layout == "channels_first" else np.moveaxis(self.inputs, -1, 1)


def preprocess_images(
    images: Sequence[np.ndarray], prep: Preprocess, names: Sequence[str] | None = None
) -> ImageBatch:
    """Resize, crop and normalise RGB images into one batch.

    Args:
        images: float32 ``(H, W, 3)`` arrays in ``[0, 1]`` (as :func:`read_image` returns).
        prep: the recipe.
        names: one name per image (for messages and reports).

    Returns:
        An :class:`ImageBatch`.

    Raises:
        InputShapeError: ``prep.size`` is ``None`` and the images differ in size
            (the message says to pass a size).

    Example:
        >>> img = np.ones((4, 6, 3), np.float32)
        >>> b = preprocess_images([img], Preprocess(size=(2, 3)))
        >>> b.display.shape, b.inputs.shape
        ((1, 2, 3, 3), (1, 3, 2, 3))
    """
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    if not images:
        raise ImageError("No images to process.")
    sized = [_resize_and_crop(img, prep) for img in images]
    shapes = {im.shape for im in sized}
    if len(shapes) > 1:
        listing = ", ".join(
            f"{n}: {im.shape[0]}x{im.shape[1]}" for n, im in zip(names, sized, strict=True)
        )
        raise InputShapeError(
            f"Images of different sizes cannot form one batch ({listing}). "
            "Pass a size (--size 224) so every image is resized to it."
        )
    batch = np.stack(sized).astype(np.float32)
    display = np.clip(np.rint(batch * 255.0), 0, 255).astype(np.uint8)
    if prep.channels == 1:
        batch = luminance(batch)
    if prep.transform is not None:
        inputs = np.asarray(prep.transform(batch * 255.0), dtype=np.float32)
    elif prep.mean is not None:
        mean = np.asarray(prep.mean, np.float32)
        std = np.asarray(prep.std, np.float32)
        inputs = (batch - mean) / std
    else:
        inputs = batch
    if prep.layout == "channels_first":
        inputs = np.moveaxis(inputs, -1, 1)
    return ImageBatch(display, np.ascontiguousarray(inputs, dtype=np.float32), names, prep.layout)


@names_parameters
def load_images(
    source: str | Path, prep: Preprocess, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageBatch:
    """Read ``source`` (file, folder or ``.npy``) and preprocess it into a batch.

    ``max_pixels``: the largest width x height of an image file, checked
    before decoding (see :func:`read_image`); default 40 megapixels.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.zeros((5, 7, 3), np.uint8))
        >>> load_images(path, Preprocess(layout="channels_last")).inputs.shape
        (1, 5, 7, 3)
    """
    if not isinstance(prep, Preprocess):
        raise TypeError(
            "`prep` must be a multiviz.sources.images.Preprocess (e.g. Preprocess(size=(64, 64))). "
            f"Received: prep={prep!r}"
        )
    images, names = read_images(source, max_pixels=max_pixels)
    return preprocess_images(images, prep, names)


# --------------------------------------------------------------------------- helpers


def _check_max_pixels(max_pixels: int | None) -> int | None:
    if max_pixels is None:
        return None
    from multiviz.core.checks import check_number

    return int(check_number(max_pixels, "max_pixels", low=1, integer=True))


def _refuse_large(size: tuple[int, int], max_pixels: int | None, source: str) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels."""
    w, h = size
    if max_pixels is None or w * h <= max_pixels:
        return
    raise ImageError(
        f"{source!r} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
        f"{max_pixels / 1e6:g} megapixels; refused before decoding."
        "\nhint: for a large image you trust, pass --max-pixels N (API: max_pixels=N), "
        "or shrink it first"
    )


def _geometry(h: int, w: int, prep: Preprocess) -> tuple[int, int, int, int] | None:
    """Where an ``h x w`` image goes: resized to ``(new_h, new_w)``, cropped at ``(top, left)``.

    ``None`` when ``prep`` keeps the image's own size.
    """
    if prep.size is None:
        return None
    out_h, out_w = prep.size
    if prep.resize_shorter is None:
        return out_h, out_w, 0, 0
    # torchvision.transforms.Resize(int): shorter side -> n, longer side truncated
    n = prep.resize_shorter
    new_h, new_w = (n, int(n * w / h)) if h <= w else (int(n * h / w), n)
    top = round((new_h - out_h) / 2.0)
    left = round((new_w - out_w) / 2.0)
    if top < 0 or left < 0:
        raise InputShapeError(
            f"Cannot crop {out_h}x{out_w} from an image resized to {new_h}x{new_w}. "
            "Pass a smaller --size."
        )
    return new_h, new_w, top, left


def _resize_and_crop(img: np.ndarray, prep: Preprocess) -> np.ndarray:
    where = _geometry(img.shape[0], img.shape[1], prep)
    if where is None or prep.size is None:
        return img
    new_h, new_w, top, left = where
    img = _resize(img, (new_h, new_w))
    return img[top : top + prep.size[0], left : left + prep.size[1]]


def boxes_to_input(boxes: np.ndarray, shape: tuple[int, int], prep: Preprocess) -> np.ndarray:
    """Boxes on an original image, moved to the model input :func:`preprocess_images` makes of it.

    Args:
        boxes: ``(k, 4)`` boxes ``(x0, y0, x1, y1)`` in the original image's
            pixels (``x`` the column; ends exclusive).
        shape: the original image's ``(H, W)``.
        prep: the recipe the image goes through.

    Returns:
        float64 ``(k, 4)`` in the input's pixels: scaled as the image is
        resized, shifted by the crop, clipped to the input (a box the crop cuts
        away entirely becomes empty).

    Example:
        >>> prep = Preprocess(size=(4, 4), resize_shorter=4)
        >>> boxes_to_input(np.array([[0, 0, 4, 2]]), (4, 8), prep).tolist()   # 4x8 -> 4x8, crop 2
        [[0.0, 0.0, 2.0, 2.0]]
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    where = _geometry(int(shape[0]), int(shape[1]), prep)
    if where is None or prep.size is None:
        return b
    new_h, new_w, top, left = where
    b[:, [0, 2]] = b[:, [0, 2]] * (new_w / shape[1]) - left
    b[:, [1, 3]] = b[:, [1, 3]] * (new_h / shape[0]) - top
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, prep.size[1])
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, prep.size[0])
    return b


def mask_to_input(mask: np.ndarray, prep: Preprocess) -> np.ndarray:
    """A region mask of an original image, resized and cropped as the image is; bool ``(h, w)``.

    The mask (any numbers; nonzero is inside) is resized bilinearly as a
    fraction of inside, then thresholded at one half.

    Example:
        >>> m = np.zeros((4, 8)); m[:, :2] = 1
        >>> mask_to_input(m, Preprocess(size=(2, 4))).astype(int).tolist()
        [[1, 0, 0, 0], [1, 0, 0, 0]]
    """
    inside = (np.asarray(mask) != 0).astype(np.float32)[..., None]
    return _resize_and_crop(inside, prep)[..., 0] >= 0.5


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased when shrinking (Pillow's filter, as torchvision's PIL path)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32)).resize(
                (w, h), Image.BILINEAR
            )
        )
        for c in range(img.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """One channel from RGB: ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``.

    Args:
        rgb: float ``(..., 3)``, channels last, values in ``[0, 1]``.

    Returns:
        float32 ``(..., 1)`` in ``[0, 1]``. Where R, G and B are equal (a
        greyscale image copied into three channels), that value exactly.

    Example:
        >>> luminance(np.array([[1.0, 0.0, 0.0], [0.25, 0.25, 0.25]])).ravel().tolist()
        [0.29899999499320984, 0.25]
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    y = rgb @ np.asarray(LUMA_BT601, np.float32)
    return np.where(grey, rgb[..., 0], y)[..., None].astype(np.float32)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1), dtype=np.float32)


def _unit_float(values: np.ndarray, source: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageError(f"{source} holds NaN or infinite values; an image must be finite.")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"{source} is a float image with values in [{lo:.4g}, {hi:.4g}]; float images must "
            "be in [0, 1]. Rescale it, or save it as uint8."
        )
    return values


def _to_nhwc(values: np.ndarray, source: str) -> np.ndarray:
    shape = values.shape
    if values.ndim == 2:
        return values[None, :, :, None]
    if values.ndim in (3, 4):
        batch = values if values.ndim == 4 else values[None]
        if batch.shape[-1] in (1, 3):
            return batch
        if batch.shape[1] in (1, 3):
            return np.moveaxis(batch, 1, -1)
    raise ImageError(
        f"{source} has shape {shape}; a .npy image must be (H, W), (H, W, C), (N, H, W, C), "
        "(C, H, W) or (N, C, H, W) with C = 1 or 3."
    )


def _natural_key(path: Path) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def _known_suffixes() -> set[str]:
    return {ext.lower() for ext in Image.registered_extensions()} | {".npy"}
