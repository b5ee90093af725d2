"""Which int8 quantization keeps EfficientNet-Lite0's (or ResNet50's) answers? Quantizes the fp32 model several
ways, calibrated on images *disjoint* from the evaluation set, and reports the top-1 agreement with fp32 on the
benchmark's real-size JPEGs and the speed-up (ONNX Runtime, 1 thread, batch 8).

    .venv/bin/python bench/int8_levers.py [--model efficientnet_lite0] [--images 256]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from corpus import image_folder
from throughput import bench_catalog, preprocess

from sql_dl.catalog import load_catalog
from sql_dl.build.precision import calibration_tensors, depthwise_and_end_nodes, quantize_int8

VARIANTS = {
    "minmax u8s8 (ORT defaults)": {"reduce_range": False},
    "minmax u8s8 reduce_range": {},
    "percentile reduce_range": {"calibrate_method": "Percentile"},
    "entropy reduce_range": {"calibrate_method": "Entropy"},
    "minmax u8u8 (uint8 weights)": {"reduce_range": False, "weight_type": "QUInt8"},
    "minmax reduce_range, Conv/Gemm only (Add in float)": {"op_types_to_quantize": ["Conv", "Gemm", "MatMul"]},
    "minmax reduce_range, first conv + head in float": {"keep_float": lambda p: depthwise_and_end_nodes(p, False)},
    "minmax reduce_range, depthwise convs in float": {"keep_float": lambda p: depthwise_and_end_nodes(p, True, False)},
    "minmax reduce_range, depthwise + ends in float": {"keep_float": depthwise_and_end_nodes},
}


def run(path: str, tensor: np.ndarray) -> tuple[np.ndarray, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(["logits"], {"image": tensor[:8]})
    outputs, times = [], []
    for i in range(0, len(tensor), 8):
        started = time.perf_counter()
        outputs.append(session.run(["logits"], {"image": tensor[i:i + 8]})[0])
        times.append(time.perf_counter() - started)
    return np.concatenate(outputs), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--only", default=None, help="comma-separated variant numbers (1-based)")
    args = parser.parse_args()
    spec = load_catalog(bench_catalog()).get(args.model)
    folder, _ = image_folder(args.images)
    tensor, _ = preprocess(spec, sorted(folder.glob("*.jpg")))
    reference, fp32_time = run(str(spec.onnx), tensor)
    print(f"calibration: {len(calibration_tensors(spec))} samples from images not in the evaluation set")
    with tempfile.TemporaryDirectory() as tmp:
        chosen = {int(i) for i in args.only.split(",")} if args.only else None
        for number, (name, options) in enumerate(VARIANTS.items(), 1):
            if chosen and number not in chosen:
                continue
            target = Path(tmp) / "q.onnx"
            started = time.perf_counter()
            quantize_int8(spec, spec.onnx, target, **options)
            made = time.perf_counter() - started
            logits, int8_time = run(str(target), tensor)
            agree = (logits.argmax(1) == reference.argmax(1)).mean()
            print(f"{name:50s} top-1 agreement {agree:6.1%}  speed-up {fp32_time / int8_time:4.2f}x  "
                  f"({made:.0f} s to make)", flush=True)


if __name__ == "__main__":
    main()
