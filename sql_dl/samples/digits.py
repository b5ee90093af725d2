"""A real labelled image set available offline: scikit-learn's bundled handwritten digits as PNG files.

``load_digits`` holds 1,797 8x8 grey images (classes 0-9, 16 grey levels, ink as high values). They are
drawn here as dark ink on white, upscaled (bicubic) to ``size`` x ``size`` so an ImageNet model's own
preprocessing can take them like any photo. Needs scikit-learn (the ``photos`` extra).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def digit_images(size: int = 64, limit: int | None = None) -> tuple[list[bytes], np.ndarray]:
    """(PNG bytes per image, labels), in the data set's own order; ``limit`` keeps the first N."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[:limit], digits.target[:limit]
    encoded = []
    for pixels in images:
        grey = (255 - np.round(pixels * (255 / 16))).astype(np.uint8)  # values 0..16, 16 = full ink
        buffer = io.BytesIO()
        Image.fromarray(grey, "L").resize((size, size), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded, labels.astype(int)


def write_digit_folders(target: str | Path, size: int = 64, limit: int | None = None) -> Path:
    """``target/label=K/NNNN.png``: Spark's partition discovery then gives ``binaryFile`` a ``label`` column."""
    target = Path(target)
    for number, (data, label) in enumerate(zip(*digit_images(size, limit))):
        folder = target / f"label={label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number:04d}.png").write_bytes(data)
    return target
