"""`make bench`: sql-dl's SQL path against the ONNX Runtime ceiling, Spark's predict_batch_udf and a row-at-a-time
Python UDF, on the same real-size JPEGs, the same models and the same cores, in one run.

    .venv/bin/python bench/throughput.py [--images N] [--repeats 3] [--models efficientnet_lite0,resnet50]

Each model gets enough images that one query runs ~8-10 s (IMAGES: EfficientNet-Lite0 1024, ResNet50 256;
``--images`` sets one count for all): Spark's fixed cost per query (~0.25 s of planning and task launch, which
the ceiling never pays) is then a few percent of it. The first 256 of them are also queried alone
("b256", the same images as a 256-file run), to show that fixed cost.

(a) ONNX Runtime alone on pre-decoded, preprocessed tensors, best of processes x threads x batch size;
(b) sql-dl: SELECT count(predict_NAME(content)) FROM binaryFile; (c) the same model through
pyspark.ml.functions.predict_batch_udf with the same decoding (a decode UDF producing the tensor column, as
Spark's documentation builds its inputs); (d) a row-at-a-time Python UDF; (e) the image data source instead of
binaryFile; then int8 against fp32, decoding cost, first-query and one-row latency; then the machine (CPU model and
flags) and each backend x precision, ceiling and SQL (bench/backend_matrix.py). ResNet50 has random weights
(its published ones need a download; speed does not depend on them). Prints a table, the ratios b/a, b/c, b/d
last, and writes bench-out/bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import yaml
import backend_matrix
from ceiling import best_ceiling, measure
from cpu_use import core_ms_per_image, process_cpu
from corpus import OUT, image_folder
from spark_forms import decode_udf, latencies, lengths_udf, predict_batch_form, row_udf

from sql_dl import build_session
from sql_dl.catalog import load_catalog
from sql_dl.specs import ModelSpec
from sql_dl.executor.images import image_to_pixels, to_tensor

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"efficientnet_lite0": 1024, "resnet50": 256}
SMALL = 256  # the image count of the b256 row


def bench_catalog() -> Path:
    """The default entries for lite0 (+int8) and resnet50 (+int8), with resnet50 files under bench-out/models."""
    raw = yaml.safe_load((ROOT / "models.yaml").read_text())["models"]
    entries = {name: dict(raw[name]) for name in ("efficientnet_lite0", "efficientnet_lite0_int8", "resnet50")}
    for entry in entries.values():
        entry["onnx"] = str((ROOT / entry["onnx"]).resolve())
        entry.pop("functions", None)
    entries["resnet50"]["onnx"] = str(OUT / "models" / "resnet50.onnx")
    entries["resnet50_int8"] = {**entries["resnet50"], "onnx": str(OUT / "models" / "resnet50.int8.onnx"),
                                "precision": "int8"}
    path = OUT / "bench.yaml"
    OUT.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "models": entries}, sort_keys=False))
    catalog = load_catalog(path)
    for name in ("resnet50", "resnet50_int8"):
        if not catalog.get(name).available:
            from sql_dl.build.export import export_onnx

            print(f"exporting {name} (random weights) ...", flush=True)
            export_onnx(catalog.get(name), weights="random")
    return path


def preprocess(spec: ModelSpec, files: list[Path]) -> tuple[np.ndarray, float]:
    """All images as the model's input tensor, and :func:`decode_cost` over the first SMALL of them."""
    data = [f.read_bytes() for f in files]
    return np.concatenate(list(_chunks(spec, data))), decode_cost(spec, data[:SMALL])


def _chunks(spec: ModelSpec, data: list[bytes]):
    """The model's input tensor, the entry's batch size of images at a time, as the UDF makes it."""
    for i in range(0, len(data), spec.batch_size):
        yield to_tensor(np.stack([image_to_pixels(d, spec.input) for d in data[i:i + spec.batch_size]]), spec.input)


def decode_cost(spec: ModelSpec, data: list[bytes]) -> float:
    """Decode + preprocess in core-ms per image, as the UDF does it: bytes in memory, a chunk at a time, each
    chunk's arrays freed and their memory reused (keeping them also timed the first-touch page faults of fresh
    memory, ~0.3 core-ms). The median chunk, since on this shared VM a burst of host steal is charged to
    whichever thread was running; this thread only, not the py4j threads beside it."""
    costs, chunks = [], _chunks(spec, data)
    while True:
        started = time.thread_time()
        chunk = next(chunks, None)
        if chunk is None:
            return statistics.median(costs)
        costs.append((time.thread_time() - started) * 1000 / len(chunk))


def timed(spark, forms: dict, repeats: int) -> dict:
    """Median images/s of each form: a (SQL query, images it must answer), timed here, or a callable that measures
    itself and returns images/s (the ceiling). Queries are warmed up first (Python workers, model loads, the
    JVM's JIT over a full scan), then every form runs round-robin, so drift on this shared machine hits all
    alike. Each query's CPU is split into the JVM's and the Python workers' (core-ms per image)."""
    for form, query in forms.items():
        if not callable(query):
            answered = spark.sql(query[0]).first()[0]
            if answered != query[1]:
                raise SystemExit(f"{query[0]!r} answered {answered} of {query[1]} images")
    rates: dict = {form: [] for form in forms}
    cpu: dict = {form: [] for form in forms}
    for _ in range(repeats):
        for form, query in forms.items():
            if callable(query):
                rates[form].append(query())
                continue
            (sql, images), before, started = query, process_cpu(), time.perf_counter()
            spark.sql(sql).collect()
            rates[form].append(images / (time.perf_counter() - started))
            cpu[form].append(core_ms_per_image(before, process_cpu(), images))
    results = {}
    for form, runs in rates.items():
        results[form] = {"img_s": statistics.median(runs), "runs": [round(x, 1) for x in runs]}
        if cpu[form]:
            results[form]["core_ms"] = {k: round(statistics.median(c[k] for c in cpu[form]), 2)
                                        for k in cpu[form][0]}
    return results


def sql_forms(spark, name: str, folder: Path, images: int, repeats: int, ceiling, decode) -> dict:
    """(a) the ceiling's best configuration again, (b) sql-dl, (c) predict_batch_udf, (d) row UDF, (e) the image
    source, int8, decoding alone on one core (as img/s), and two reference queries that show what reading the
    files costs (the JVM alone) and what passing them through a Python worker costs (an Arrow UDF that only
    measures lengths)."""
    task = spark.sql_dl.tasks[name]
    spark.udf.register(f"pbu_{name}", predict_batch_form(task))
    spark.udf.register(f"decode_{name}", decode_udf(task))
    spark.udf.register(f"row_{name}", row_udf(task))
    spark.udf.register("bench_lengths", lengths_udf())
    source = f"binaryFile.`{folder}/*.jpg`"
    forms = {
        "a": ceiling,
        "decode": decode,
        "b": (f"SELECT count(predict_{name}(content)) FROM {source}", images),
        "c": (f"SELECT count(pbu_{name}(decode_{name}(content))) FROM {source}", images),
        "d": (f"SELECT count(row_{name}(content)) FROM {source}", images),
        "e": (f"SELECT count(predict_{name}(image)) FROM image.`{folder}/*.jpg`", images),
        "int8": (f"SELECT count(predict_{name}_int8(content)) FROM {source}", images),
        "read": (f"SELECT count(length(content)) FROM {source}", images),
        "pass": (f"SELECT count(bench_lengths(content)) FROM {source}", images),
    }
    if images > SMALL:  # the corpus is deterministic: these are the first SMALL files of the folder
        small = f"binaryFile.`{image_folder(SMALL)[0]}/*.jpg`"
        forms["b256"] = (f"SELECT count(predict_{name}(content)) FROM {small}", SMALL)
    return timed(spark, forms, repeats)


def agreement(spark, folder: Path, fp32: str, int8: str) -> dict:
    """Top-1 agreement of int8 with fp32: over all images, and split by how sure fp32 is (top-1 p > 0.5)."""
    rows = spark.sql(f"SELECT predict_{fp32}(content) = predict_{int8}(content) AS same, "
                     f"predict_{fp32}_topk(content, 1)[0].score AS p FROM binaryFile.`{folder}/*.jpg`").collect()
    sure = [r.same for r in rows if r.p > 0.5]
    unsure = [r.same for r in rows if r.p <= 0.5]
    return {"top1_agreement": sum(r.same for r in rows) / len(rows),
            "fp32_sure": {"images": len(sure), "agreement": sum(sure) / len(sure) if sure else None},
            "fp32_unsure": {"images": len(unsure), "agreement": sum(unsure) / len(unsure) if unsure else None}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, help="one image count for every model (default: IMAGES)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--backend-images", type=int, default=SMALL, help="images per backend x precision row "
                                                                          "(0: skip those rows)")
    args = parser.parse_args()
    os.environ.setdefault("SQL_DL_MODEL_CACHE_SIZE", "16")  # the backend rows' 8 entries stay loaded per worker
    catalog_path = bench_catalog()
    catalog = load_catalog(catalog_path)
    cores = os.cpu_count() or 1
    event_log = OUT / "bench-events.jsonl"
    event_log.unlink(missing_ok=True)
    spark = build_session(master=f"local[{cores}]", catalog=catalog_path,
                          conf={"spark.sqldl.eventLog": str(event_log)})
    first = sorted(image_folder(SMALL)[0].glob("*.jpg"))[0]
    report: dict = {"cores": cores, "machine": backend_matrix.machine(), "latency": latencies(spark, first),
                    "models": {}}
    for name in args.models.split(","):
        spec, images = catalog.get(name), args.images or IMAGES.get(name, SMALL)
        folder, _ = image_folder(images)
        files = sorted(folder.glob("*.jpg"))
        tensor, decode_ms = preprocess(spec, files)
        print(f"{name}: {len(files)} images; decode + preprocess {decode_ms:.2f} core-ms/image; searching the "
              "ceiling ...", flush=True)
        sweep = best_ceiling(spec, tensor, cores)
        result = {"images": len(files), "ceiling_sweep": sweep}
        processes, threads, batch = sweep["best"]
        data = [f.read_bytes() for f in files[:SMALL]]
        result.update(sql_forms(spark, name, folder, len(files), args.repeats,
                                lambda: measure(str(spec.onnx), tensor, processes, threads, batch),
                                lambda: 1000 / decode_cost(spec, data)))
        del tensor
        result["a"]["config"] = sweep["config"]
        result["int8"].update(agreement(spark, folder, name, f"{name}_int8"))
        report["models"][name] = result
    if args.backend_images:
        report["backends"] = backend_matrix.run(spark, args.backend_images, args.repeats, event_log)
    spark.stop()
    print_report(report)
    if "backends" in report:
        backend_matrix.print_report({"machine": report["machine"], **report["backends"]})
    (OUT / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {OUT / 'bench.json'}")


FORMS = {"a": "(a) ONNX Runtime alone, best config", "decode": "decode + preprocess alone, one core",
         "b": "(b) sql-dl SQL (binaryFile)",
         "b256": f"(b) over the first {SMALL} files alone", "c": "(c) predict_batch_udf",
         "d": "(d) row-at-a-time Python UDF", "e": "(e) sql-dl SQL (image source)", "int8": "sql-dl SQL, int8 model",
         "read": "reference: read the files only (JVM)", "pass": "reference: files through a no-op Arrow UDF"}


def print_report(report: dict) -> None:
    print(f"\nreal-size JPEGs (500x375 / 375x500), {report['cores']} cores, medians; core-ms: CPU per image in the "
          f"Spark JVM and in the Python workers")
    print(f"{'model':18s} {'form':44s} {'img/s':>7s} {'ms/img':>7s} {'JVM':>6s} {'Python':>7s}")
    for model, result in report["models"].items():
        print(f"{model:18s} {result['images']} images")
        for form, label in FORMS.items():
            if form not in result:
                continue
            rate, cpu = result[form]["img_s"], result[form].get("core_ms", {})
            split = f"{cpu['jvm']:6.1f} {cpu['python']:7.1f}" if cpu else f"{'':6s} {'':7s}"
            extra = f"  [{result['a']['config']}]" if form == "a" else ""
            print(f"{model:18s} {label:44s} {rate:7.1f} {1000 / rate:7.1f} {split}{extra}")
        print_int8(model, result)
        print_budget(model, result, report["cores"])
    latency = report["latency"]
    print(f"first query (model not loaded) {latency['first_s']:.2f} s; warm one-row query median "
          f"{latency['warm_ms']:.0f} ms")
    print("\nratios")
    for model, result in report["models"].items():
        print(f"{model:18s} e/b {result['e']['img_s'] / result['b']['img_s']:.2f}")
    for model, result in report["models"].items():
        b = result["b"]["img_s"]
        small = f"   ({SMALL} files alone: b/a {result['b256']['img_s'] / result['a']['img_s']:.2f})" \
            if "b256" in result else ""
        print(f"{model:18s} b/a {b / result['a']['img_s']:.2f}   b/c {b / result['c']['img_s']:.2f}   "
              f"b/d {b / result['d']['img_s']:.2f}   over {result['images']} images{small}")


def print_int8(model: str, result: dict) -> None:
    int8 = result["int8"]
    sure, unsure = int8["fp32_sure"], int8["fp32_unsure"]
    split = ", ".join(f"{part['agreement']:.1%} of {part['images']} where fp32's top-1 p {cut}"
                      for part, cut in ((sure, "> 0.5"), (unsure, "<= 0.5")) if part["images"])
    print(f"{model:18s} int8 top-1 agreement with fp32 {int8['top1_agreement']:.1%} ({split}); "
          f"int8/fp32 SQL {int8['img_s'] / result['b']['img_s']:.2f}x")


def print_budget(model: str, result: dict, cores: int) -> None:
    """Where (b)'s CPU goes, against the ceiling: the ceiling spends only inference; SQL also decodes and reads."""
    cpu = result["b"].get("core_ms")
    if not cpu:
        return
    inference = cores * 1000 / result["a"]["img_s"]
    decode, read = 1000 / result["decode"]["img_s"], result["read"]["core_ms"]["jvm"]
    print(f"{model:18s} (b) per image: inference alone {inference:.1f} core-ms (the ceiling's), decode "
          f"{decode:.1f}, reading files (JVM) {read:.1f}; measured JVM {cpu['jvm']:.1f} + Python {cpu['python']:.1f}"
          f" -> b/a can be at most {inference / (inference + decode + read):.2f} on these cores")


if __name__ == "__main__":
    main()
