"""sql-dl's speed in a session the user builds, against the same in sql-dl's own session, side by side.

Each session runs in its own process (one SparkContext per process), over the same real-size JPEGs cached in 2
partitions (so the query measures the model path, not file reading):

- "user": ``SparkSession.builder.master("local[2]").getOrCreate()`` and ``register_catalog`` — no sql-dl
  settings at all, as in a notebook;
- "sql-dl": ``build_session(master="local[2]")`` (sql-dl's spark-defaults.conf).

In each, round-robin over ``--repeats`` rounds, medians: (a) the ONNX Runtime ceiling (the configuration
bench/ceiling.py finds best, on pre-decoded tensors), (b) ``SELECT count(predict_efficientnet_lite0(content))``,
(c2) ``predict_batch_udf`` as a competent user writes it: decoding inside its predict function straight from
the binary column, sql-dl's own decoding code, ONNX Runtime with one thread per task; and (files) the same
sql-dl query reading the files themselves (binaryFile), where the session's file-source settings decide how
files are packed into tasks.

    .venv/bin/python bench/user_session.py [--images 256] [--repeats 3] [--ceiling P,T,B] [--sessions user,sql-dl]

Prints b/a and b/c2 per session; ``make bench`` runs it after bench/throughput.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
MODEL = "efficientnet_lite0"
SESSIONS = ("user", "sql-dl")


def competent_form(task):
    """predict_batch_udf over the binary column: the predict function decodes, then runs ONNX Runtime."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import StringType

    from sql_dl.executor import runtime
    from sql_dl.executor.images import image_to_pixels, to_tensor

    def make_predict_fn():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # Spark runs one task per core
        session = ort.InferenceSession(runtime.model_path(task.ref), options, providers=["CPUExecutionProvider"])
        name, labels = session.get_inputs()[0].name, np.array(task.labels, dtype=object)
        scores = task.outputs.get("scores")

        def predict(contents: np.ndarray) -> np.ndarray:
            batch = to_tensor(np.stack([image_to_pixels(c, task.input) for c in contents]), task.input)
            return labels[session.run([scores], {name: batch})[0].argmax(axis=1)]
        return predict

    return predict_batch_udf(make_predict_fn, return_type=StringType(), batch_size=task.ref.batch_size)


def session(kind: str):
    from sql_dl import build_session, register_catalog

    if kind == "sql-dl":
        spark = build_session(master="local[2]", catalog=ROOT / "models.yaml")
        return spark, spark.sql_dl
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    return spark, register_catalog(spark, ROOT / "models.yaml")


def child(kind: str, folder: str, config: list[int], repeats: int) -> dict:
    from ceiling import measure
    from throughput import preprocess, timed

    from sql_dl.catalog import load_catalog

    spark, registered = session(kind)
    spec = load_catalog(ROOT / "models.yaml").get(MODEL)
    files = sorted(Path(folder).glob("*.jpg"))
    tensor, _ = preprocess(spec, files)
    photos = spark.read.format("binaryFile").load(f"{folder}/*.jpg").repartition(2).cache()
    photos.createOrReplaceTempView("photos")
    assert photos.count() == len(files)
    spark.udf.register("competent_predict", competent_form(registered.tasks[MODEL]))
    forms = {"a": lambda: measure(str(spec.onnx), tensor, *config),
             "b": (f"SELECT count(predict_{MODEL}(content)) FROM photos", len(files)),
             "c2": ("SELECT count(competent_predict(content)) FROM photos", len(files)),
             "files": (f"SELECT count(predict_{MODEL}(content)) FROM binaryFile.`{folder}/*.jpg`", len(files))}
    result = timed(spark, forms, repeats)
    spark.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ceiling", help="PROCESSES,THREADS,BATCH for (a) instead of searching for the best")
    parser.add_argument("--sessions", default=",".join(SESSIONS))
    args = parser.parse_args()
    from backend_matrix import machine
    from ceiling import best_ceiling
    from corpus import image_folder
    from throughput import preprocess

    from sql_dl.catalog import load_catalog

    folder, _ = image_folder(args.images)
    spec = load_catalog(ROOT / "models.yaml").get(MODEL)
    if args.ceiling:
        processes, threads, batch = map(int, args.ceiling.split(","))
        best = {"best": [processes, threads, batch],
                "config": f"{processes} process(es) x {threads} thread(s), batch {batch}"}
    else:
        tensor, _ = preprocess(spec, sorted(folder.glob("*.jpg")))
        print(f"{MODEL}: {args.images} images; searching the ceiling ...", flush=True)
        best = best_ceiling(spec, tensor, 2)
        del tensor
    report = {"machine": machine(), "images": args.images, "ceiling_config": best["config"], "sessions": {}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"),
                                                                      os.environ.get("PYTHONPATH")])),
           # as in an activated virtual environment: Spark's Python workers run `python3` from PATH
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    for kind in args.sessions.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(folder), json.dumps(best["best"]),
                              str(args.repeats)], capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"the {kind} session failed: {out.stderr.strip().splitlines()[-1:]}")
        report["sessions"][kind] = json.loads(out.stdout.strip().splitlines()[-1])
    print_report(report)
    (ROOT / "bench-out").mkdir(exist_ok=True)
    (ROOT / "bench-out" / "user_session.json").write_text(json.dumps(report, indent=2) + "\n")


def print_report(report: dict) -> None:
    cpu = report["machine"]
    print(f"\n{cpu.get('cpu', '?')}; {report['images']} JPEGs cached in 2 partitions, local[2], medians "
          f"(img/s); (a) {report['ceiling_config']}")
    print("(b) sql-dl and (c2) the competent predict_batch_udf over the cached photos; (files) sql-dl reading the "
          "files (binaryFile); core-ms per image in the Spark JVM / the Python workers")
    print(f"{'session':8s} {'(a) ceiling':>11s} {'(b) sql-dl':>10s} {'(c2) pbu':>9s} {'b/a':>5s} {'b/c2':>5s} "
          f"{'(files)':>8s} {'files/a':>7s}   core-ms b, c2, files")
    for kind, result in report["sessions"].items():
        a, b, c2, files = (result[form]["img_s"] for form in ("a", "b", "c2", "files"))
        cpu = ", ".join(f"{result[f]['core_ms']['jvm']:.1f}/{result[f]['core_ms']['python']:.1f}"
                        for f in ("b", "c2", "files"))
        print(f"{kind:8s} {a:11.1f} {b:10.1f} {c2:9.1f} {b / a:5.2f} {b / c2:5.2f} {files:8.1f} {files / a:7.2f}"
              f"   {cpu}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, folder, config, repeats = sys.argv[2:6]
        print(json.dumps(child(kind, folder, json.loads(config), int(repeats))))
    else:
        main()
