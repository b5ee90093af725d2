"""Hot swap: how long from a catalog edit to the first query answered by the new version, and what the
executors' Python workers hold across swaps.

    .venv/bin/python bench/swap.py [--swaps 5] [--photos 64]

One entry with six versions, each its own file (EfficientNet-Lite0 fp32, copies that differ only in their
ONNX doc string, so each has its own sha256 and is loaded as a new model). The session starts on version 0;
each swap moves ``default`` to the next version by rewriting the catalog file, then polls a one-row
``ml_predict_detail('lite', ...)`` query until it answers with the new version ("swap seconds": file written
to first answer, including the watcher's poll and the catalog's preparation), runs the full query over the
photos, and sums the resident memory (RSS) of every Python worker Spark started. Prints a table and writes
bench-out/swap.json; record `lscpu`'s model name beside the figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out"
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"


def catalog(files: list[Path], default: int) -> str:
    versions = "".join(f"      'v{i}': {{onnx: {path}}}\n" for i, path in enumerate(files))
    return ("models:\n  lite:\n"
            "    input: {size: [224, 224], resize: 256, scale: 1.0, mean: [127.0, 127.0, 127.0], "
            "std: [128.0, 128.0, 128.0]}\n"
            "    outputs: {scores: logits, features: features}\n"
            f"    versions:\n{versions}    aliases: {{default: 'v{default}'}}\n")


def versions(folder: Path, count: int) -> list[Path]:
    files = []
    model = onnx.load(str(MODEL))
    for i in range(count):
        model.doc_string = f"sql-dl swap benchmark copy {i}"
        path = folder / f"lite_v{i}.onnx"
        onnx.save(model, str(path))
        files.append(path)
    return files


def worker_rss_mib() -> tuple[float, float, int]:
    """Total RSS of Spark's Python processes (pyspark.daemon and its forked workers; a daemon is ~45 MiB, an
    idle worker ~55), the largest one's, and how many there are."""
    total, largest, count = 0, 0, 0
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = status.read_bytes().replace(b"\0", b" ")
            if b"pyspark.daemon" not in command and b"pyspark.worker" not in command:
                continue
            rss = next(line for line in (status.parent / "status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        total += int(rss.split()[1])
        largest = max(largest, int(rss.split()[1]))
        count += 1
    return total / 1024, largest / 1024, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--photos", type=int, default=64)
    args = parser.parse_args()
    from sql_dl import build_session
    from sql_dl.samples.photos import make_photo_dir

    work = Path(tempfile.mkdtemp(prefix="sql-dl-swap-"))
    files = versions(work, args.swaps + 1)
    path = work / "catalog.yaml"
    path.write_text(catalog(files, 0))
    photos = work / "photos"
    make_photo_dir(photos)
    spark = build_session(master="local[2]", catalog=path)
    spark.read.format("binaryFile").load([str(photos)] * max(1, args.photos // 8)).limit(args.photos).repartition(2) \
        .createOrReplaceTempView("swap_photos")
    # the probe reads a one-row table: over a LIMIT the Python worker stops early, and Spark replaces that
    # worker instead of reusing it (which would hide what a worker keeps)
    spark.createDataFrame(spark.sql("SELECT content FROM swap_photos LIMIT 1").collect()) \
        .createOrReplaceTempView("swap_one")
    probe = "SELECT ml_predict_detail('lite', content).version FROM swap_one"
    full = "SELECT count(predict_lite(content)) FROM swap_photos"
    spark.sql(full).collect()
    rows = [{"swap": 0, "version": "v0", "seconds": None, "full_query_s": None, **rss_row()}]
    for swap in range(1, args.swaps + 1):
        path.write_text(catalog(files, swap))
        written = time.perf_counter()
        while spark.sql(probe).collect()[0][0] != f"v{swap}":
            time.sleep(0.1)
        seconds = time.perf_counter() - written
        started = time.perf_counter()
        spark.sql(full).collect()
        rows.append({"swap": swap, "version": f"v{swap}", "seconds": round(seconds, 2),
                     "full_query_s": round(time.perf_counter() - started, 2), **rss_row()})
    spark.stop()
    print(f"{'swap':>4} {'version':>7} {'swap s':>7} {'query s':>8} {'processes':>9} {'RSS MiB':>8} "
          f"{'largest':>8}")
    for row in rows:
        print(f"{row['swap']:>4} {row['version']:>7} {row['seconds'] or '-':>7} {row['full_query_s'] or '-':>8} "
              f"{row['workers']:>9} {row['worker_rss_mib']:>8.0f} {row['largest_worker_mib']:>8.0f}")
    swaps = [row["seconds"] for row in rows[1:]]
    print(f"median swap (file written -> first answer of the new version): {statistics.median(swaps):.2f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "swap.json").write_text(json.dumps(rows, indent=1))


def rss_row() -> dict:
    total, largest, count = worker_rss_mib()
    return {"workers": count, "worker_rss_mib": round(total, 1), "largest_worker_mib": round(largest, 1)}


if __name__ == "__main__":
    sys.exit(main())
