"""Benchmark image folders made from the bundled real photos: real-size JPEGs (500x375 or 375x500, random crops,
flips and qualities, so no two files are alike), optionally with broken files mixed in. Deterministic for a seed;
written under bench-out/ (git-ignored) and reused when already complete."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image

from sql_dl.samples.awkward import broken
from sql_dl.samples.photos import photo_jpeg, sample_photos

OUT = Path(__file__).resolve().parent.parent / "bench-out"


def _variant(source: Image.Image, rng: random.Random) -> bytes:
    w, h = source.size
    scale = rng.uniform(0.7, 1.0)
    cw, ch = int(w * scale), int(h * scale)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = source.crop((left, top, left + cw, top + ch))
    image = image.resize((500, 375) if cw >= ch else (375, 500), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=rng.randint(85, 95))
    return out.getvalue()


def image_folder(count: int, bad_every: int = 0, seed: int = 7) -> tuple[Path, dict]:
    """``count`` files (every ``bad_every``-th one broken) -> (folder, {"good": n, "bad": {name: kind}})."""
    folder = OUT / f"images-{count}-bad{bad_every}-seed{seed}"
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        return folder, json.loads(manifest_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sample_photos()]
    bad_kinds = {k: v for k, v in broken(photo_jpeg("coffee")).items() if v}  # binaryFile lists no empty files
    manifest: dict = {"good": 0, "bad": {}}
    for i in range(count):
        if bad_every and i % bad_every == bad_every - 1:
            kind = sorted(bad_kinds)[(i // bad_every) % len(bad_kinds)]
            name = f"{i:05d}-{kind}"
            (folder / name).write_bytes(bad_kinds[kind])
            manifest["bad"][name] = kind
        else:
            (folder / f"{i:05d}.jpg").write_bytes(_variant(rng.choice(sources), rng))
            manifest["good"] += 1
    manifest_path.write_text(json.dumps(manifest))
    return folder, manifest
