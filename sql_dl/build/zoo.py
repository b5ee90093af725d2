"""Catalog entries written from the weights' own metadata, so nobody retypes preprocessing.

torchvision weights carry ``transforms()`` (resize, crop, interpolation, mean/std);
timm models carry a pretrained config (input size, crop_pct, interpolation,
mean/std). ``entry()`` turns either into a catalog entry, `sql-dl models new`
prints it as YAML, and a test checks that every entry of the default catalog
still equals what its weights say. Driver/build-time only.
"""
from __future__ import annotations

import math

import yaml

from ..errors import ExportError


def torchvision_input(arch: str, weights: str = "DEFAULT") -> tuple[dict, str]:
    """(input mapping, resolved weights name) from torchvision's weights metadata (no download)."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise ExportError(f"{arch!r} is not a torchvision classification model") from None
    try:
        chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except KeyError:
        raise ExportError(f"{arch}: weights {weights!r} not found. Available: {[w.name for w in enum]}") from None
    t = chosen.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    spec = {"size": [crop, crop], "resize": resize, "crop": "center", "interpolation": t.interpolation.value,
            "mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std]}
    return spec, chosen.name


def timm_input(arch: str) -> tuple[dict, str]:
    """(input mapping, pretrained tag) from timm's pretrained config (no download)."""
    try:
        import timm
    except ImportError:
        raise ExportError("timm models need the export extra (pip install 'sql-dl[export]')") from None
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except Exception:  # noqa: BLE001 - timm raises several types for unknown names
        cfg = None
    if cfg is None:
        raise ExportError(f"{arch!r} is not a timm model with a pretrained config")
    _, height, width = cfg.input_size
    resize = math.floor(min(height, width) / cfg.crop_pct)  # timm's eval transform: scale, then centre crop
    spec = {"size": [height, width], "resize": resize, "crop": "center", "interpolation": cfg.interpolation,
            "mean": [float(v) for v in cfg.mean], "std": [float(v) for v in cfg.std]}
    return spec, cfg.tag or "DEFAULT"


def entry(name: str, exporter: str, arch: str, weights: str = "DEFAULT") -> dict:
    """A complete catalog entry for a torchvision or timm classifier."""
    if exporter == "torchvision":
        spec, weights = torchvision_input(arch, weights)
    elif exporter == "timm":
        spec, weights = timm_input(arch)
    else:
        raise ExportError(f"exporter must be torchvision or timm, got {exporter!r}")
    return {"onnx": f"models/{name}.onnx", "source": {"exporter": exporter, "arch": arch, "weights": weights},
            "input": spec, "labels": "imagenet", "outputs": {"scores": "logits", "features": "features"}}


def entry_yaml(name: str, exporter: str, arch: str, weights: str = "DEFAULT") -> str:
    body = yaml.safe_dump({name: entry(name, exporter, arch, weights)}, sort_keys=False, default_flow_style=None)
    return "".join("  " + line + "\n" for line in body.splitlines())
