"""Decode one row's image and preprocess it into the model's input tensor.

Executor-side, so it needs only numpy and Pillow. An image arrives either as
encoded bytes (binaryFile's ``content``) or as the struct of Spark's image data
source (pixels in BGR order, OpenCV modes 0/16/24). Both become an RGB uint8
array, then the entry's :class:`InputSpec` (resize, crop, colour order,
normalisation, layout) is applied exactly as torchvision's ``Resize`` +
``CenterCrop`` + ``ToTensor`` + ``Normalize`` would on a PIL image.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..specs import InputSpec
from ..errors import ImageDecodeError

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
}
# OpenCV type codes used by Spark's image source -> channel count
_SPARK_MODES = {0: 1, 16: 3, 24: 4}


# Refuse, before decoding, images that declare more pixels than this (decompression bombs): 64 Mpx is
# 192 MB of RGB. SQL_DL_MAX_IMAGE_PIXELS changes it. Pillow's own guard starts warning only at 89 Mpx.
MAX_PIXELS = int(os.environ.get("SQL_DL_MAX_IMAGE_PIXELS", 64_000_000))
# Our check above replaces Pillow's warning (89-179 Mpx), which would only clutter executor logs.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def decode_bytes(data: bytes, spec: InputSpec | None = None) -> Image.Image:
    """Encoded image bytes -> an RGB PIL image, upright (EXIF orientation applied), first frame of an
    animation; grey, 16-bit, palette, RGBA and CMYK converted (see :func:`to_rgb`). With the ``spec`` it is
    for, a JPEG at least four times the size that spec resizes to is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
    DCT scaling) but never below twice that size, so the antialiased resize still makes the final 2x or more
    reduction as it would from the full image: far less work for phone-size photos, the same answer."""
    if not data:
        raise ImageDecodeError("empty content (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(f"image declares {width}x{height} pixels, more than the limit of {MAX_PIXELS:,} "
                                   "(SQL_DL_MAX_IMAGE_PIXELS)")
        if spec is not None and image.format == "JPEG":
            width, height = _needed_size(image.size, spec)
            image.draft("RGB", (2 * width, 2 * height))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an already upright image
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its limit, fired first
        raise ImageDecodeError(f"refused before decoding: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from None


def _needed_size(size: tuple[int, int], spec: InputSpec) -> tuple[int, int]:
    """The size the resize step makes of an image of ``size`` (either orientation when stretching, since
    EXIF may still rotate it): a reduced-scale decode must stay at least this large."""
    if spec.resize is None:
        side = max(spec.size)
        return side, side
    return _shorter_side_size(size, spec.resize)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB as torchvision's loader does (``convert("RGB")``: alpha dropped, grey
    replicated), except where that conversion is wrong: 16-bit grey would clip to white, so it keeps its
    top 8 bits; a palette with transparency goes through RGBA (Pillow warns otherwise)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(image).astype(np.uint32)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def from_spark_struct(row: dict[str, Any]) -> Image.Image:
    """A row of Spark's image source (BGR/BGRA/grey bytes) -> an RGB PIL image."""
    height, width, channels, mode = row["height"], row["width"], row["nChannels"], row["mode"]
    data = row["data"]
    if height is None or height <= 0 or width <= 0 or not data:
        raise ImageDecodeError("invalid image row (Spark could not read the file)")
    if _SPARK_MODES.get(mode) != channels or len(data) != height * width * channels:
        raise ImageDecodeError(f"unsupported image struct: mode {mode}, {channels} channels, "
                               f"{len(data)} bytes for {width}x{height}")
    pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels)
    if channels == 1:
        return Image.fromarray(pixels[:, :, 0], "L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, 2::-1]), "RGB")  # BGR(A) -> RGB


def resize_and_crop(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize (shorter side or stretch) and centre-crop to ``spec.size``: HxWx3 uint8 in spec.color order."""
    out_h, out_w = spec.size
    resample = _RESAMPLE[spec.interpolation]
    resized = _shorter_side_size(image.size, spec.resize) if spec.resize is not None else (out_w, out_h)
    if spec.resize is not None and spec.crop == "center" and resized[0] >= out_w and resized[1] >= out_h:
        # Resize only the region the centre crop keeps (Pillow's resize box, same source geometry as
        # resize-then-crop): ~40% less work; values differ from resize-then-crop by float rounding only.
        left, top, right, bottom = _center_box(resized, (out_w, out_h))
        sx, sy = image.size[0] / resized[0], image.size[1] / resized[1]
        image = image.resize((out_w, out_h), resample, box=(left * sx, top * sy, right * sx, bottom * sy))
    else:
        image = image.resize(resized, resample)
        if spec.resize is not None and spec.crop == "center":  # a crop larger than the image pads, as torchvision
            image = image.crop(_center_box(image.size, (out_w, out_h)))
    pixels = np.asarray(image)
    if pixels.shape[:2] != (out_h, out_w):
        raise ImageDecodeError(f"image is {pixels.shape[1]}x{pixels.shape[0]} after resize; the model needs "
                               f"{out_w}x{out_h} (set input.crop: center or input.resize: stretch)")
    return pixels[:, :, ::-1] if spec.color == "bgr" else pixels


def _shorter_side_size(size: tuple[int, int], target: int) -> tuple[int, int]:
    """torchvision's rule: the shorter side becomes ``target``, the longer one is truncated."""
    w, h = size
    if w <= h:
        return target, int(target * h / w)
    return int(target * w / h), target


def _center_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop box (rounding half to even as it does)."""
    w, h = size
    cw, ch = crop
    left, top = int(round((w - cw) / 2.0)), int(round((h - ch) / 2.0))
    return left, top, left + cw, top + ch


def to_tensor(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """NHWC uint8 batch -> the model's tensor (normalised float32, or raw uint8), in spec.layout."""
    channels = (1, 3, 1, 1) if spec.layout == "nchw" else (1, 1, 1, 3)
    if spec.layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)  # a view: the one copy below writes NCHW directly
    if spec.dtype != "float32":
        return np.ascontiguousarray(batch)
    # mean/std are declared in the model's channel order (spec.color); cast, scale and copy in one pass
    scale = (np.float32(spec.scale) / np.asarray(spec.std, np.float32)).reshape(channels)
    shift = (-np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).reshape(channels)
    tensor = np.multiply(batch, scale, dtype=np.float32, order="C")
    tensor += shift
    return tensor


def from_hook(data: bytes, decoder: Callable[[bytes], Any]) -> Image.Image:
    """Bytes -> RGB image through a catalog-named decoder hook (udfs/), which returns HxW(x3) uint8."""
    try:
        pixels = decoder(data)
    except Exception as exc:  # noqa: BLE001 - any failure of the hook marks this row NULL
        raise ImageDecodeError(f"decoder hook {getattr(decoder, '__name__', '?')} failed: "
                               f"{type(exc).__name__}: {exc}") from None
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise ImageDecodeError(f"decoder hook returned {pixels.dtype} {pixels.shape}; expected HxWx3 or HxW uint8")
    return Image.fromarray(pixels).convert("RGB")


def decode_error(value: Any, decoder: Callable[[bytes], Any] | None = None) -> str | None:
    """Why this cell would be NULL (the decoding error, one line), or None when it decodes."""
    if value is None:
        return "the image is NULL"
    try:
        if isinstance(value, dict):
            from_spark_struct(value)
        elif decoder is not None:
            from_hook(value, decoder)
        else:
            decode_bytes(value)
    except ImageDecodeError as exc:
        return str(exc)
    return None


def image_to_pixels(value: Any, spec: InputSpec, decoder: Callable[[bytes], Any] | None = None) -> np.ndarray:
    """One cell (bytes or image-source struct as a dict) -> HxWx3 uint8, ready to batch."""
    if isinstance(value, dict):
        image = from_spark_struct(value)
    else:
        image = from_hook(value, decoder) if decoder is not None else decode_bytes(value, spec)
    return resize_and_crop(image, spec)
