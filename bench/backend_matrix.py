"""Each backend x precision, ceiling and SQL, side by side: which runtime and which precision pays on this machine.

    .venv/bin/python bench/backend_matrix.py [--images 256] [--repeats 3]

Records the machine (CPU model; the flags that decide precision: avx2, avx512f, avx512_vnni / avx_vnni,
avx512_bf16, amx_bf16 / amx_int8; what OpenVINO reports it can compute in). For EfficientNet-Lite0 and each
variant (fp32; int8 by ONNX Runtime's quantizer and by NNCF; bf16) on each backend that can run it:
(a) the runtime alone on pre-decoded tensors, in the SQL path's configuration (one process per core, one
thread each, the entry's batch size), and (b) ``SELECT count(predict_ENTRY(content))`` with the entry's
``backend:`` set, both interleaved round-robin with the others (medians); plus ``backend: auto``; and top-1
agreement with fp32 (ONNX Runtime) for every non-fp32 row. Variant files are built under bench-out/models.
Writes bench-out/backend_matrix.json; `make bench` (bench/throughput.py) runs it after its own table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import yaml
from ceiling import concurrent_rate
from corpus import OUT, image_folder

from sql_dl.catalog import load_catalog
from sql_dl.executor import backends

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
# entry name suffix -> (ONNX file, precision, source additions). `make models` builds the first two; bf16 computes
# on the fp32 file; the NNCF file is built under bench-out/models when absent
VARIANTS = {"": (ROOT / "models" / "efficientnet_lite0.onnx", "fp32", {}),
            "_int8": (ROOT / "models" / "efficientnet_lite0.int8.onnx", "int8", {}),
            "_nncf": (OUT / "models" / "efficientnet_lite0.int8-nncf.onnx", "int8", {"quantizer": "nncf"}),
            "_bf16": (ROOT / "models" / "efficientnet_lite0.onnx", "bf16", {})}
BASE = "efficientnet_lite0"


def machine() -> dict:
    """CPU model, the precision-relevant flags, and what OpenVINO says the CPU computes in natively."""
    model, flags, generation = platform.processor() or "?", set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            elif key.strip() in ("cpu family", "model", "stepping"):
                generation.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if generation:  # a VM's model name may be just "AMD EPYC": family/model tell Zen 2 (23/49) from Zen 4 (25/17)
        model += f" (family {generation.get('cpu family')}, model {generation.get('model')}, stepping " \
                 f"{generation.get('stepping')})"
    record = {"cpu": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS},
              "installed_backends": backends.installed()}
    if backends.BACKENDS["openvino"].installed():
        record["openvino_capabilities"] = list(backends.BACKENDS["openvino"].core().get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"))
    return record


def bench_catalog(backend_rows: list[tuple[str, str]]) -> Path:
    """One entry per (variant, backend) row, every file under bench-out/models (exported when absent)."""
    raw = yaml.safe_load((ROOT / "models.yaml").read_text())["models"][BASE]
    base = {k: v for k, v in raw.items() if k not in ("functions", "onnx")}
    entries = {}
    for suffix, backend in backend_rows:
        file, precision, source = VARIANTS[suffix]
        entries[f"{BASE}{suffix}_{backend.replace('onnxruntime', 'ort').replace('openvino', 'ov')}"] = {
            **base, "onnx": str(file), "precision": precision, "backend": backend,
            "source": {**base["source"], **source}}
    path = OUT / "backends.yaml"
    (OUT / "models").mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "models": entries}, sort_keys=False))
    catalog = load_catalog(path)
    for spec in catalog:
        if not spec.available:
            from sql_dl.build.export import export_onnx

            print(f"exporting {spec.onnx.name} ...", flush=True)
            export_onnx(spec, weights="pretrained")
    return path


def _share(backend: str, path: str, precision: str, batch: int, share: np.ndarray, barrier, results) -> None:
    model = backends.get(backend).open(path, threads=1, precision=precision)
    name = model.inputs[0].name
    model.run([model.outputs[0].name], {name: share[:batch]})  # warm-up
    barrier.wait()
    started = time.perf_counter()
    for i in range(0, len(share), batch):
        model.run([model.outputs[0].name], {name: share[i:i + batch]})
    results.put(time.perf_counter() - started)


def ceiling(backend: str, path: str, precision: str, tensor: np.ndarray, batch: int) -> float:
    """Images/s of one single-thread process per core, each running its share: the SQL path's configuration."""
    return concurrent_rate(_share, (backend, path, precision, batch), tensor, os.cpu_count() or 1)


def rows_for_this_machine() -> list[tuple[str, str]]:
    rows = [("", "onnxruntime"), ("_int8", "onnxruntime"), ("_nncf", "onnxruntime")]
    if backends.BACKENDS["openvino"].installed():
        rows += [("", "openvino"), ("", "auto"), ("_int8", "openvino"), ("_nncf", "openvino"), ("_bf16", "openvino")]
    return rows


def run(spark, images: int, repeats: int, event_log: Path) -> dict:
    """The rows, measured round-robin, in ``spark`` (a session whose ``spark.sqldl.eventLog`` is ``event_log``);
    the bench's entries are registered into it."""
    from sql_dl.registry import register_catalog
    from throughput import preprocess

    path = bench_catalog(rows_for_this_machine())
    catalog = load_catalog(path)
    register_catalog(spark, path)
    folder, _ = image_folder(images)
    files = sorted(folder.glob("*.jpg"))
    reference_spec = catalog.get(f"{BASE}_ort")
    tensor, _ = preprocess(reference_spec, files)
    source = f"binaryFile.`{folder}/*.jpg`"
    forms: dict = {}
    for spec in catalog:
        forms[f"{spec.name} ceiling"] = (spec.backend, spec)
        forms[f"{spec.name} sql"] = f"SELECT count(predict_{spec.name}(content)) FROM {source}"
    for form, what in forms.items():  # warm-up: Python workers, model loads (auto's timed choice), the JIT
        if isinstance(what, str):
            spark.sql(what).collect()
    runs: dict = {form: [] for form in forms}
    for _ in range(repeats):
        for form, what in forms.items():
            if isinstance(what, str):
                started = time.perf_counter()
                spark.sql(what).collect()
                runs[form].append(len(files) / (time.perf_counter() - started))
            elif what[0] != "auto":
                backend, spec = what
                runs[form].append(ceiling(backend, str(spec.onnx), spec.precision, tensor, spec.batch_size))
    result = {form: {"img_s": round(statistics.median(r), 1), "runs": [round(x, 1) for x in r]}
              for form, r in runs.items() if r}
    fp32 = f"{BASE}_ort"
    for spec in catalog:
        if spec.name != fp32:
            same = spark.sql(f"SELECT avg(CAST(predict_{fp32}(content) = predict_{spec.name}(content) AS DOUBLE)) "
                             f"FROM {source}").first()[0]
            result[f"{spec.name} sql"]["top1_agreement_vs_fp32"] = round(same, 4)
    return {"images": len(files), "rows": result, "ran": _what_ran(event_log, catalog)}


def _what_ran(event_log: Path, catalog) -> dict:
    """Entry -> the backends and precisions its Python workers loaded it with (auto's choice, bf16 -> fp32).
    Workers keep one loaded model per file and requested backend, whichever entry named it first (the
    reference row's file is also the bench's own efficientnet_lite0): loads are matched by both, not by name."""
    loaded: dict = {}
    if event_log.is_file():
        for line in event_log.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "load":
                key = (event["sha256"], event.get("requested", {}).get("backend"))
                loaded.setdefault(key, set()).add(f"{event['backend']} {event['precision']}")
    return {spec.name: sorted(loaded.get((hashlib.sha256(spec.onnx.read_bytes()).hexdigest(), spec.backend), []))
            for spec in catalog}


def print_report(report: dict) -> None:
    m = report["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on)
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores; flags: {flags}; OpenVINO computes natively in: "
          f"{', '.join(m.get('openvino_capabilities', ['(not installed)']))}")
    rows, base = report["rows"], report["rows"].get(f"{BASE}_ort sql", {}).get("img_s")
    print(f"EfficientNet-Lite0, {report['images']} JPEGs, medians of round-robin rounds")
    print(f"{'entry (variant, backend)':34s} {'ceiling':>8s} {'SQL':>8s} {'SQL/ORT fp32 SQL':>17s} {'top-1 vs fp32':>14s}")
    names = dict.fromkeys(form.rsplit(" ", 1)[0] for form in rows)
    for name in names:
        ceil, sql = rows.get(f"{name} ceiling", {}).get("img_s"), rows.get(f"{name} sql", {})
        agree = sql.get("top1_agreement_vs_fp32")
        print(f"{name:34s} {ceil if ceil else '':>8} {sql.get('img_s', ''):>8} "
              f"{sql['img_s'] / base if base and sql else float('nan'):16.2f}x "
              f"{f'{agree:.1%}' if agree is not None else 'reference':>14s}  ran: "
              f"{', '.join(report['ran'].get(name, []))}")


def main() -> None:
    # every row's model stays loaded in each Python worker (the default keeps 4): a reload per query would time
    # OpenVINO's compilation and auto's timed choice instead of inference
    os.environ.setdefault("SQL_DL_MODEL_CACHE_SIZE", "16")
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sql_dl import build_session

    report = {"machine": machine()}
    event_log = OUT / "backends-events.jsonl"
    event_log.unlink(missing_ok=True)
    spark = build_session(master=f"local[{os.cpu_count() or 1}]", catalog=bench_catalog(rows_for_this_machine()),
                          conf={"spark.sqldl.eventLog": str(event_log)})
    report.update(run(spark, args.images, args.repeats, event_log))
    spark.stop()
    print_report(report)
    (OUT / "backend_matrix.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {OUT / 'backends.json'}")


if __name__ == "__main__":
    main()
