"""Real photos that ship inside registry wheels (scikit-image, scikit-learn), for the demo and tests.

No network is needed: these files are part of installed packages. ``make_photo_dir``
writes them as JPEGs into a folder so that ``binaryFile.`DIR/*.jpg``` finds them.
"""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from PIL import Image

# (package, file inside the package, what it shows)
PHOTOS = [
    ("skimage", "data/chelsea.png", "a tabby cat"),
    ("skimage", "data/coffee.png", "a cup of espresso"),
    ("skimage", "data/rocket.jpg", "a rocket on its launch pad"),
    ("skimage", "data/astronaut.png", "an astronaut"),
    ("skimage", "data/motorcycle_left.png", "a motorcycle"),
    ("sklearn", "datasets/images/china.jpg", "a Chinese temple"),
    ("sklearn", "datasets/images/flower.jpg", "a flower"),
]


# Real images that are *not* the photos above, for calibrating int8 models: the photos are what int8 is
# evaluated on, so calibration must not see them. Textures, micrographs, astronomy, grey scans.
CALIBRATION = [("skimage", f"data/{name}") for name in (
    "brick.png", "grass.png", "gravel.png", "color.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
    "motorcycle_right.png", "coins.png", "camera.png", "moon.png", "page.png", "cell.png", "clock_motion.png")]


def calibration_images() -> list[Path]:
    """Paths of the installed calibration images (scikit-image's data)."""
    found = []
    for package, relative in CALIBRATION:
        base = _package_dir(package)
        if base is not None and (base / relative).is_file():
            found.append(base / relative)
    return found


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent if spec and spec.origin else None


def sample_photos() -> list[Path]:
    """Paths of the bundled photos that are installed (install the 'photos' extra for all of them)."""
    found = []
    for package, relative, _ in PHOTOS:
        base = _package_dir(package)
        if base is not None and (base / relative).is_file():
            found.append(base / relative)
    return found


def photo_jpeg(stem: str = "coffee") -> bytes:
    """One bundled photo as the JPEG bytes that :func:`make_photo_dir` writes for it."""
    source = next((p for p in sample_photos() if p.stem == stem), None)
    if source is None:
        raise FileNotFoundError(f"bundled photo {stem!r} not found: pip install scikit-image scikit-learn")
    with Image.open(source) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def make_photo_dir(target: str | Path) -> list[Path]:
    """Write every bundled photo into ``target`` as ``NAME.jpg`` (quality 95); return the paths."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sample_photos():
        out = target / (source.stem + ".jpg")
        if not out.exists():
            with Image.open(source) as image:
                image.convert("RGB").save(out, quality=95)
        written.append(out)
    if not written:
        raise FileNotFoundError("no bundled photos found: pip install scikit-image scikit-learn")
    return written
