"""Lower-precision variants of an exported model: int8 (ONNX Runtime static quantization) and fp16 (GPU).

Driver/build-time only. An entry with ``precision: int8`` or ``fp16`` is exported in fp32 first (and
verified against PyTorch), then converted; the conversion is compared with the fp32 model on the bundled
real photos (top-1 agreement) and timed against it, and both figures go into ``<file>.onnx.json``.
int8: QDQ format, per-channel int8 weights, uint8 activations, MinMax ranges calibrated on the photos,
their mirror images and two crops each. fp16: ONNX Runtime's float16 converter with float32 inputs and
outputs kept, for CUDA (CPU kernels for fp16 are few and slow).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from ..specs import ModelSpec
from ..executor import backends
from ..executor.images import decode_bytes, resize_and_crop, to_rgb, to_tensor
from ..samples.photos import calibration_images, sample_photos

INT8_MIN_AGREEMENT = 0.7  # top-1 agreement with fp32 on the bundled photos below which verify fails
# How `precision: int8` quantizes, chosen with bench/int8_levers.py (bench/NOTES.md has the measurements):
# per-channel weights; reduce_range (7-bit weights) avoids the u8s8 overflow of AVX2 CPUs without VNNI.
INT8_OPTIONS = {"calibrate_method": "MinMax", "per_channel": True, "reduce_range": True,
                "activation_type": "QUInt8", "weight_type": "QInt8"}


def photo_tensors(spec: ModelSpec) -> np.ndarray:
    """The bundled photos, preprocessed: what int8 is compared with fp32 on."""
    images = [decode_bytes(p.read_bytes()) for p in sample_photos()]
    return to_tensor(np.stack([resize_and_crop(im, spec.input) for im in images]), spec.input)


def calibration_tensors(spec: ModelSpec) -> np.ndarray:
    """Calibration samples from images disjoint from the photos: each whole, mirrored, and two crops."""
    from PIL import Image, ImageOps

    samples = []
    for path in calibration_images():
        with Image.open(path) as image:
            im = to_rgb(image.copy())  # copy: read the pixels before the file closes
        samples += [im, ImageOps.mirror(im), im.crop((0, 0, im.width * 3 // 4, im.height * 3 // 4)),
                    im.crop((im.width // 4, im.height // 4, im.width, im.height))]
    return to_tensor(np.stack([resize_and_crop(im, spec.input) for im in samples]), spec.input)


def depthwise_and_end_nodes(path: Path, depthwise: bool = True, ends: bool = True) -> list[str]:
    """Node names int8 tends to hurt most: depthwise convolutions (group > 1), the first convolution and the
    classifier head. Quantization options may keep them in float."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    grouped = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return (grouped if depthwise else []) + ([convs[0].name] + heads[-1:] if ends and convs else [])


def quantize_int8(spec: ModelSpec, fp32: Path, target: Path, **options) -> None:
    """Static QDQ quantization with ranges from :func:`calibration_tensors`; ``options`` override
    :data:`INT8_OPTIONS` (quantize_static's arguments, plus ``keep_float``: a function of the prepared model
    path returning node names to leave in float)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    samples = calibration_tensors(spec)

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.feed = iter([{"image": samples[i:i + 1]} for i in range(len(samples))])

        def get_next(self):
            return next(self.feed, None)

    settings = {**INT8_OPTIONS, **options}
    keep_float = settings.pop("keep_float", None)
    settings["calibrate_method"] = getattr(CalibrationMethod, settings["calibrate_method"])
    settings["activation_type"] = getattr(QuantType, settings["activation_type"])
    settings["weight_type"] = getattr(QuantType, settings["weight_type"])
    prepared = target.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared))
        if keep_float is not None:
            settings["nodes_to_exclude"] = keep_float(prepared)
        quantize_static(str(prepared), str(target), Samples(), quant_format=QuantFormat.QDQ, **settings)
    finally:
        prepared.unlink(missing_ok=True)


QUANTIZERS = ("onnxruntime", "nncf")  # source.quantizer of a precision: int8 entry (default onnxruntime)
# NNCF's post-training quantization: full (not fast) bias correction, ranges from the same calibration samples
NNCF_OPTIONS = {"fast_bias_correction": False, "preset": "performance"}


def quantize_int8_nncf(spec: ModelSpec, fp32: Path, target: Path, **options) -> None:
    """NNCF post-training quantization of the ONNX graph (QDQ, runs on ONNX Runtime and OpenVINO alike), with
    bias correction; ``options`` override :data:`NNCF_OPTIONS` (nncf.quantize's arguments)."""
    try:
        import nncf
    except ImportError:
        raise ImportError("source.quantizer: nncf needs the quantize extra: pip install 'sql-dl[quantize]'") from None
    import onnx

    samples = calibration_tensors(spec)
    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    settings = {**NNCF_OPTIONS, **options}
    preset = settings.pop("preset", None)
    if preset is not None:
        settings["preset"] = getattr(nncf.QuantizationPreset, preset.upper())
    overflow_fix = settings.pop("overflow_fix", None)
    if overflow_fix is not None:  # 7-bit weights in every layer: AVX2 without VNNI saturates u8 x s8 sums
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

        settings["advanced_parameters"] = AdvancedQuantizationParameters(
            overflow_fix=getattr(OverflowFix, overflow_fix.upper()))
    dataset = nncf.Dataset([samples[i:i + 1] for i in range(len(samples))], lambda x: {name: x})
    quantized = nncf.quantize(model, dataset, subset_size=len(samples), **settings)
    onnx.save(quantized, str(target))


def convert_fp16(fp32: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(target))


def _timed_run(path: Path, batch: np.ndarray, device: str, backend: str = "onnxruntime",
               precision: str = "fp32") -> tuple[np.ndarray, float, str]:
    """Logits, median seconds of 5 runs, and the precision the runtime really computed in."""
    session = backends.get(backend).open(str(path), device=device, precision=precision)
    session.run(["logits"], {"image": batch})  # warm-up
    times, logits = [], None
    for _ in range(5):
        started = time.perf_counter()
        logits = session.run(["logits"], {"image": batch})[0]
        times.append(time.perf_counter() - started)
    return logits, statistics.median(times), session.precision


def _variant_backends(spec: ModelSpec) -> list[str]:
    """The runtimes a variant is measured on: bf16 exists on OpenVINO only, fp16 (CUDA) on ONNX Runtime only,
    int8 files run on every installed CPU runtime."""
    if spec.precision == "bf16":
        return ["openvino"]
    if spec.precision == "fp16":
        return ["onnxruntime"]
    return backends.installed()


def compare(spec: ModelSpec, fp32: Path, variant: Path) -> dict:
    """The variant against fp32 (ONNX Runtime) on the bundled photos, on each runtime that can run it: top-1
    agreement, max relative error of the logits, speed-up (fp32 time / variant time, median of 5), and what the
    runtime really computed in. The top-level figures are those of the entry's backend (auto: the fastest)."""
    device = "cuda" if spec.precision == "fp16" else "cpu"
    if device == "cuda" and not backends.get().cuda_available():
        return {"top1_agreement_vs_fp32": None, "speedup_vs_fp32": None, "note": "fp16 is measured on a GPU only"}
    if spec.precision == "bf16" and not backends.BACKENDS["openvino"].installed():
        return {"top1_agreement_vs_fp32": None, "speedup_vs_fp32": None,
                "note": "bf16 is measured with OpenVINO: pip install 'sql-dl[openvino]'"}
    batch = np.concatenate([photo_tensors(spec)] * 4)
    reference, fp32_time, _ = _timed_run(fp32, batch, device)
    scale = float(np.abs(reference).max())
    results = {}
    for name in _variant_backends(spec):
        logits, variant_time, ran = _timed_run(variant, batch, device, name, spec.precision)
        results[name] = {"top1_agreement_vs_fp32": float((logits.argmax(1) == reference.argmax(1)).mean()),
                         "max_relative_error_vs_fp32": float(np.abs(logits - reference).max() / scale),
                         "speedup_vs_fp32": round(fp32_time / variant_time, 3), "computed_in": ran}
    chosen = spec.backend if spec.backend in results else max(results, key=lambda n: results[n]["speedup_vs_fp32"])
    return {**results[chosen], "backend": chosen, "by_backend": results, "photos": len(batch) // 4}
