"""Preprocessing equals a torchvision reference; both image encodings decode to the same pixels."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import CATALOG
from sql_dl.catalog import load_catalog
from sql_dl.errors import ImageDecodeError
from sql_dl.executor.images import decode_bytes, from_spark_struct, image_to_pixels, resize_and_crop, to_tensor
from sql_dl.samples.photos import sample_photos

torchvision = pytest.importorskip("torchvision")  # the export extra; `make test` installs it
from torchvision import transforms as T  # noqa: E402

SPECS = list(load_catalog(CATALOG))


def reference(image: Image.Image, spec) -> np.ndarray:
    """torchvision's Resize + CenterCrop + ToTensor + Normalize for the same InputSpec."""
    mode = getattr(T.InterpolationMode, spec.input.interpolation.upper())
    steps = [T.Resize(spec.input.resize, interpolation=mode), T.CenterCrop(spec.input.size), T.PILToTensor(),
             T.ConvertImageDtype(__import__("torch").float32)]
    tensor = T.Compose(steps)(image) * 255.0 * spec.input.scale
    return T.Normalize(spec.input.mean, spec.input.std)(tensor).numpy()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("photo", sample_photos(), ids=lambda p: p.name)
def test_preprocessing_matches_torchvision(spec, photo):
    """Equal up to the rounding of resized pixels: we resize only the cropped region (Pillow's resize box), so
    a few values land one or two uint8 levels from torchvision's resize-then-crop."""
    image = decode_bytes(photo.read_bytes())
    ours = to_tensor(resize_and_crop(image, spec.input)[None], spec.input)[0]
    expected = reference(Image.open(photo).convert("RGB"), spec)
    assert ours.shape == expected.shape == (3, *spec.input.size)
    level = (np.float32(spec.input.scale) / np.asarray(spec.input.std, np.float32)).reshape(3, 1, 1)
    levels = np.abs(ours - expected) / level
    assert levels.max() <= 2.001 and (levels > 0.01).mean() < 0.02, (levels.max(), (levels > 0.01).mean())


def test_large_jpegs_decode_at_reduced_scale_close_to_a_full_decode():
    spec = SPECS[0].input
    photo = Image.open(sample_photos()[0]).convert("RGB")
    large = io.BytesIO()
    photo.resize((photo.width * 4, photo.height * 4), Image.Resampling.BICUBIC).save(large, "JPEG", quality=92)
    reduced, full = decode_bytes(large.getvalue(), spec), decode_bytes(large.getvalue())
    assert min(reduced.size) >= spec.resize and reduced.size[0] <= full.size[0] // 2  # DCT scaling happened
    ours, exact = (to_tensor(resize_and_crop(i, spec)[None], spec)[0] for i in (reduced, full))
    level = np.float32(spec.scale) / np.asarray(spec.std, np.float32).reshape(3, 1, 1)
    assert (np.abs(ours - exact) / level).mean() < 1.5  # within 1.5 uint8 levels on average


def spark_struct(image: Image.Image, mode: str) -> dict:
    """What Spark's image source yields: BGR(A) or grey bytes with OpenCV mode codes."""
    pixels = np.asarray(image.convert(mode))
    if mode == "L":
        return {"origin": "x", "height": pixels.shape[0], "width": pixels.shape[1], "nChannels": 1, "mode": 0,
                "data": pixels.tobytes()}
    channels = pixels.shape[2]
    order = [2, 1, 0, 3][:channels]
    return {"origin": "x", "height": pixels.shape[0], "width": pixels.shape[1], "nChannels": channels,
            "mode": {3: 16, 4: 24}[channels], "data": pixels[:, :, order].tobytes()}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_image_struct_and_bytes_give_identical_pixels(mode):
    image = Image.open(sample_photos()[0]).convert(mode)
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")  # lossless, so both paths must agree exactly
    spec = SPECS[0].input
    from_bytes = image_to_pixels(encoded.getvalue(), spec)
    from_struct = image_to_pixels(spark_struct(image, mode), spec)
    np.testing.assert_array_equal(from_bytes, from_struct)


def test_bgr_models_get_bgr_channels():
    spec = SPECS[0].input
    bgr = type(spec)(**{**vars(spec), "color": "bgr"})
    image = decode_bytes(sample_photos()[0].read_bytes())
    np.testing.assert_array_equal(resize_and_crop(image, bgr), resize_and_crop(image, spec)[:, :, ::-1])


def test_nhwc_layout_and_uint8_dtype():
    spec = SPECS[0].input
    raw = type(spec)(**{**vars(spec), "layout": "nhwc", "dtype": "uint8"})
    batch = np.random.default_rng(1).integers(0, 255, (2, *spec.size, 3), dtype=np.uint8)
    out = to_tensor(batch, raw)
    assert out.dtype == np.uint8 and out.shape == (2, *spec.size, 3)
    np.testing.assert_array_equal(out, batch)


@pytest.mark.parametrize("data,message", [
    (b"", "empty content"),
    (b"this is not an image", "not a recognised image format"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "cannot decode image|not a recognised"),
])
def test_undecodable_bytes_raise_image_decode_error(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_bytes(data)


def test_invalid_image_source_row_is_a_decode_error():
    row = {"origin": "file:/x/broken.jpg", "height": -1, "width": -1, "nChannels": -1, "mode": -1, "data": b""}
    with pytest.raises(ImageDecodeError, match=r"^invalid image row \(Spark could not read the file\)$"):
        from_spark_struct(row)
