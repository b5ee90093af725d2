"""Every awkward kind of image file decodes to what a viewer shows, or is refused with a reason, never a crash
or a multi-gigabyte allocation."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sql_dl.samples.awkward import broken, decodable
from sql_dl.errors import ImageDecodeError
from sql_dl.executor.images import decode_bytes, decode_error
from sql_dl.samples.photos import photo_jpeg

PHOTO = photo_jpeg("coffee")
UPRIGHT = np.asarray(Image.open(io.BytesIO(PHOTO)).convert("RGB")).astype(np.int16)
GOOD, BAD = decodable(PHOTO), broken(PHOTO)


def mean_abs_diff(image: Image.Image, reference: np.ndarray = UPRIGHT) -> float:
    pixels = np.asarray(image).astype(np.int16)
    assert pixels.shape == reference.shape
    return float(np.abs(pixels - reference).mean())


@pytest.mark.parametrize("name", sorted(set(GOOD) - {"one-pixel.png"}))
def test_every_decodable_kind_gives_the_photo_in_rgb(name):
    image = decode_bytes(GOOD[name])
    assert image.mode == "RGB" and image.size == (UPRIGHT.shape[1], UPRIGHT.shape[0])
    grey = name.startswith("grey")
    reference = np.repeat(np.asarray(Image.fromarray(UPRIGHT.astype(np.uint8)).convert("L"))[..., None], 3, 2)
    assert mean_abs_diff(image, reference.astype(np.int16) if grey else UPRIGHT) < 4.0, name


def test_16_bit_grey_keeps_its_tones_instead_of_clipping_to_white():
    pixels = np.asarray(decode_bytes(GOOD["grey16.png"]))
    assert 60 < pixels.mean() < 200 and pixels.std() > 20  # Pillow's plain convert("RGB") gives all 255


def test_exif_orientation_is_applied_so_phone_photos_are_upright():
    stored = Image.open(io.BytesIO(GOOD["exif-rotated.jpg"]))
    assert stored.size == (UPRIGHT.shape[0], UPRIGHT.shape[1])  # on its side in the file
    assert mean_abs_diff(decode_bytes(GOOD["exif-rotated.jpg"])) < 4.0


def test_animated_gif_uses_its_first_frame():
    assert mean_abs_diff(decode_bytes(GOOD["animated.gif"])) < 6.0  # the second frame is the negative


def test_one_pixel_image_decodes():
    assert decode_bytes(GOOD["one-pixel.png"]).size == (1, 1)


@pytest.mark.parametrize("name, reason", [
    ("empty.jpg", "empty content (0 bytes)"),
    ("text.jpg", "not a recognised image format"),
    ("truncated.jpg", "cannot decode image: image file is truncated"),
    ("truncated.png", "cannot decode image: image file is truncated"),
    ("header-only.jpg", "cannot decode image: "),
    ("bomb.png", "image declares 12000x12000 pixels, more than the limit of 64,000,000 (SQL_DL_MAX_IMAGE_PIXELS)"),
    ("bomb.jpg", "refused before decoding: Image size (3600000000 pixels) exceeds limit"),
])
def test_broken_files_raise_one_line_saying_why(name, reason):
    with pytest.raises(ImageDecodeError) as caught:
        decode_bytes(BAD[name])
    assert str(caught.value).startswith(reason) and "\n" not in str(caught.value)
    assert decode_error(BAD[name]) == str(caught.value)


def test_bombs_are_refused_without_allocating_their_declared_size():
    """In a process limited to 1 GiB of address space: decoding either bomb would need 0.4-10.8 GB."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from sql_dl.samples.awkward import broken\nfrom sql_dl.executor.images import decode_error\n"
            "from sql_dl.samples.photos import photo_jpeg\nbad = broken(photo_jpeg('coffee'))\n"
            "print(decode_error(bad['bomb.png'])); print(decode_error(bad['bomb.jpg']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    png, jpg = done.stdout.splitlines()
    assert png.startswith("image declares 12000x12000") and jpg.startswith("refused before decoding")
