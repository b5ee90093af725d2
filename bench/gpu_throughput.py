"""GPU benchmark (run on a machine with an NVIDIA GPU and onnxruntime-gpu: `make gpu` then this script).

    .venv/bin/python bench/gpu_throughput.py [--images 1024] [--models efficientnet_lite0,resnet50]

(a) ONNX Runtime's CUDA provider alone on preprocessed tensors, batch 8..128; (b) the SQL path with the entry
on `device: cuda` over binaryFile, all CPU cores decoding; the decode-bound limit (cores / decode core-ms) tells
whether the GPU or the CPUs bound (b). Writes bench-out/gpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import yaml
from corpus import OUT, image_folder
from throughput import bench_catalog, preprocess, timed

from sql_dl import build_session
from sql_dl.catalog import load_catalog
from sql_dl.registry.devices import cuda_provider


def cuda_ceiling(path: str, tensor, batches=(8, 32, 64, 128)) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CUDAExecutionProvider"])
    name = session.get_inputs()[0].name
    tried = {}
    for batch in batches:
        session.run(None, {name: tensor[:batch]})  # warm-up: kernels, cuDNN autotuning
        started = time.perf_counter()
        for i in range(0, len(tensor), batch):
            session.run(None, {name: tensor[i:i + batch]})
        tried[f"batch {batch}"] = len(tensor) / (time.perf_counter() - started)
    best = max(tried, key=tried.get)
    return {"img_s": tried[best], "config": best, "tried": tried}


def cuda_catalog() -> str:
    """The benchmark catalog with every entry on device: cuda."""
    data = yaml.safe_load(bench_catalog().read_text())
    for entry in data["models"].values():
        entry["device"] = "cuda"
    path = OUT / "bench-gpu.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    args = parser.parse_args()
    if not cuda_provider():
        sys.exit("gpu_throughput: this onnxruntime has no CUDA execution provider (run `make gpu` on a GPU machine)")
    folder, _ = image_folder(args.images)
    files = sorted(folder.glob("*.jpg"))
    catalog_path = cuda_catalog()
    catalog, cores = load_catalog(catalog_path), os.cpu_count() or 1
    spark = build_session(master=f"local[{cores}]", catalog=catalog_path)
    report = {"images": len(files), "cores": cores, "models": {}}
    for name in args.models.split(","):
        spec = catalog.get(name)
        tensor, decode_ms = preprocess(spec, files)
        result = {"a": cuda_ceiling(str(spec.onnx), tensor), "decode_core_ms": decode_ms,
                  "decode_bound_img_s": cores * 1000 / decode_ms,
                  **timed(spark, {"b": (f"SELECT count(predict_{name}(content)) FROM binaryFile.`{folder}/*.jpg`",
                                        len(files))}, args.repeats)}
        report["models"][name] = result
        print(f"{name:20s} (a) CUDA alone {result['a']['img_s']:8.1f} img/s [{result['a']['config']}]   "
              f"(b) SQL {result['b']['img_s']:8.1f} img/s   decode-bound {result['decode_bound_img_s']:8.1f} img/s"
              f"   b/a {result['b']['img_s'] / result['a']['img_s']:.2f}", flush=True)
    spark.stop()
    (OUT / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
