"""First-query and warm one-row latency of a catalog function on every surface a session lives on.

    .venv/bin/python bench/surface_latency.py [--repeats 10]

Surfaces: a session sql-dl builds (register_catalog), a new session of the same JVM (the
extension's functions), pyspark's stock bin/spark-sql shell configured by `sql-dl extension`, a
multi-session `sql-dl serve` reached by PyHive (a new connection, a new Spark session), and `sql-dl serve
--connect` reached by a pyspark Spark Connect client. The query is EfficientNet-Lite0's top-1 label of one
JPEG. "first" is the first query of a fresh session (model load and shipping included); "warm" is the
median of the following ones. Start-up (JVM, session, catalog preparation) is reported apart. Prints a
table and writes bench-out/surface_latency.json; record `lscpu`'s model name beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_server import Server  # noqa: E402  (a real server process, as the tests start it)

from sql_dl.samples.photos import make_photo_dir  # noqa: E402

OUT = ROOT / "bench-out"
SPARK_HOME = Path(__import__("pyspark").__file__).parent


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def series(run, repeats: int) -> dict:
    first = timed(run)
    warm = [timed(run) for _ in range(repeats)]
    return {"first_s": round(first, 3), "warm_ms": round(1000 * statistics.median(warm), 1)}


def python_sessions(query: str, repeats: int) -> dict:
    """In a child process: the session sql-dl builds, then a new session of the same JVM."""
    code = f"""
import json, statistics, sys, time
sys.path.insert(0, {str(ROOT / 'bench')!r})
from surface_latency import series, timed
from sql_dl import build_session
from sql_dl.extension import extension_settings
started = time.perf_counter()
spark = build_session(master="local[2]", catalog="models.yaml", conf=extension_settings("models.yaml"))
start = time.perf_counter() - started
built = series(lambda: spark.sql({query!r}).collect(), {repeats})
other = spark.newSession()
print(json.dumps({{"sql-dl session (Python registration)": {{"start_s": round(start, 2), **built}},
                  "new session (extension)": series(lambda: other.sql({query!r}).collect(), {repeats})}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def stock_shell(query: str, repeats: int) -> dict:
    """bin/spark-sql prints "Time taken" per statement: the first and the median of the rest."""
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "sql-dl.conf"
        conf.write_text(subprocess.run([str(Path(sys.executable).with_name("sql-dl")), "extension"], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
        started = time.perf_counter()
        result = subprocess.run([str(SPARK_HOME / "bin" / "spark-sql"), "--master", "local[2]", "--properties-file",
                                 str(conf), "--conf", "spark.sql.catalogImplementation=in-memory", "-e",
                                 ";".join([query] * (repeats + 1))], capture_output=True, text=True, cwd=folder)
        total = time.perf_counter() - started
    taken = [float(t) for t in re.findall(r"Time taken: ([0-9.]+) seconds", result.stderr)]
    if len(taken) != repeats + 1:
        raise RuntimeError(f"spark-sql failed: {result.stderr[-500:]}")
    return {"start_s": round(total - sum(taken), 2), "first_s": round(taken[0], 3),
            "warm_ms": round(1000 * statistics.median(taken[1:]), 1)}


def thrift(photos: Path, query: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        server = Server(Path(folder), photos)
        start = time.perf_counter() - started
        try:
            cursor = server.cursor()  # a new connection: a new Spark session

            def run() -> None:
                cursor.execute(query)
                cursor.fetchall()

            return {"start_s": round(start, 2), **series(run, repeats)}
        finally:
            server.stop()


def connect(photos: Path, query: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        server = Server(Path(folder), photos, "--connect")
        start = time.perf_counter() - started
        try:
            code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / 'bench')!r})
from surface_latency import series
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote("sc://127.0.0.1:{server.port}").getOrCreate()
print(json.dumps(series(lambda: spark.sql({query!r}).collect(), {repeats})))
"""
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            return {"start_s": round(start, 2), **json.loads(result.stdout.strip().splitlines()[-1])}
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("SQL_DL_LOG_DIR", str(OUT / "logs"))
    photos = OUT / "latency-photos"
    make_photo_dir(photos)
    query = f"SELECT predict_efficientnet_lite0(content) FROM binaryFile.`{photos}/coffee.jpg`"
    report = {"cpu": cpu_model(), **python_sessions(query, args.repeats),
              "stock bin/spark-sql (extension)": stock_shell(query, args.repeats),
              "sql-dl serve, PyHive (new session)": thrift(photos, query.replace(f"binaryFile.`{photos}/coffee.jpg`",
                                                                                 "photos WHERE path LIKE '%coffee.jpg'"),
                                                          args.repeats),
              "sql-dl serve --connect, Connect client": connect(photos, query, args.repeats)}
    print(f"CPU: {report['cpu']}")
    print(f"{'surface':45} {'start s':>8} {'first s':>8} {'warm ms':>8}")
    for surface, figures in report.items():
        if surface != "cpu":
            print(f"{surface:45} {figures.get('start_s', ''):>8} {figures['first_s']:>8} {figures['warm_ms']:>8}")
    OUT.mkdir(exist_ok=True)
    (OUT / "surface_latency.json").write_text(json.dumps(report, indent=2) + "\n")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
