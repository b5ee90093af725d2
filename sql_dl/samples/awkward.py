"""Image files of every awkward kind, made from one real photo: what real folders hold besides clean JPEGs.

``decodable(photo)`` gives files that must get a label (other formats, modes, bit depths, an EXIF
rotation, an animation, a 1x1 image); ``broken(photo)`` gives files that must give NULL and a reason
(empty, text, truncated, decompression bombs). Tests, the load benchmark and the demo use them, so the
bad-input matrix is written once.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_bytes(pixels: np.ndarray, width: int | None = None, height: int | None = None) -> bytes:
    """A PNG written by hand: 8- or 16-bit grey (HxW) or RGB (HxWx3) — Pillow cannot write 16-bit RGB —
    optionally declaring another width x height in its header than the pixels it holds (a bomb)."""
    depth = 16 if pixels.dtype == np.uint16 else 8
    color_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(pixels.shape[0], -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width or pixels.shape[1], height or pixels.shape[0], depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg_declaring(photo: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0/SOF2) is patched to declare width x height."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = photo.find(marker)
        if at >= 0:
            return photo[:at + 5] + struct.pack(">HH", height, width) + photo[at + 9:]
    raise ValueError("no baseline or progressive frame header in this JPEG")


def exif_rotated(image: Image.Image) -> bytes:
    """The photo stored on its side with EXIF orientation 6, as phones write it: upright once applied."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    return _encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif)


def decodable(photo: bytes) -> dict[str, bytes]:
    """File name -> bytes of images that must decode and get a label."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    grey = np.asarray(image.convert("L"))
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))
    inverted = Image.fromarray(255 - np.asarray(image))
    return {
        "grey.jpg": _encode(image.convert("L"), "JPEG", quality=92),
        "grey16.png": png_bytes(grey.astype(np.uint16) * 257),
        "rgb16.png": png_bytes(np.asarray(image).astype(np.uint16) * 257),
        "rgba.png": _encode(rgba, "PNG"),
        "palette.png": _encode(palette, "PNG"),
        "palette-transparent.png": _encode(transparent, "PNG"),
        "cmyk.jpg": _encode(image.convert("CMYK"), "JPEG", quality=95),
        "exif-rotated.jpg": exif_rotated(image),
        "progressive.jpg": _encode(image, "JPEG", quality=90, progressive=True),
        "animated.gif": _encode(image, "GIF", save_all=True, append_images=[inverted], duration=100, loop=0),
        "image.webp": _encode(image, "WEBP", quality=90),
        "image.bmp": _encode(image, "BMP"),
        "image.tiff": _encode(image, "TIFF"),
        "png-named.jpg": _encode(image, "PNG"),
        "one-pixel.png": _encode(image.resize((1, 1)), "PNG"),
    }


def broken(photo: bytes) -> dict[str, bytes]:
    """File name -> bytes that must give NULL and a reason, never allocate the declared size."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    small = np.asarray(image.resize((16, 16)))
    return {
        "empty.jpg": b"",
        "text.jpg": b"this is a text file named .jpg\n",
        "truncated.jpg": photo[: len(photo) // 3],
        "truncated.png": _encode(image, "PNG")[:2000],
        "header-only.jpg": photo[:400],
        "bomb.png": png_bytes(small, width=12_000, height=12_000),  # 144 Mpx declared, 16x16 held
        "bomb.jpg": jpeg_declaring(photo, 60_000, 60_000),  # 3.6 Gpx declared: 10.8 GB if decoded
    }
