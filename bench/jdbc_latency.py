"""Latency of one-row predict queries over JDBC (the Thrift server + PyHive) against the same query run
directly in the same Spark session, side by side in one process.

    .venv/bin/python bench/jdbc_latency.py [--repeats 30] [--port 10099]

Prints first-query latency (model not loaded yet), then medians and p90 of warm queries.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pyhive import hive

from sql_dl.samples.photos import make_photo_dir
from sql_dl.cli.server import ServeOptions, start, stop

ONE_ROW = "SELECT predict_efficientnet_lite0(content) FROM photos WHERE path LIKE '%/coffee.jpg'"


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def summary(name: str, millis: list) -> str:
    ordered = sorted(millis)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{name:34s} median {statistics.median(ordered):7.1f} ms   p90 {p90:7.1f} ms   (n={len(ordered)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--port", type=int, default=10099)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sql-dl-jdbc-"))
    make_photo_dir(folder)
    init = folder / "init.sql"
    init.write_text(f"CREATE TABLE photos USING binaryFile OPTIONS (path '{folder}/*.jpg');\n")
    spark, server = start(ServeOptions(port=args.port, init=str(init)))
    try:
        cursor = hive.connect(host="127.0.0.1", port=args.port, username="bench").cursor()

        def jdbc(sql: str):
            return lambda: (cursor.execute(sql), cursor.fetchall())

        direct = lambda: spark.sql(ONE_ROW).collect()  # noqa: E731
        print(f"{'first predict over JDBC (cold model)':34s} {timed(jdbc(ONE_ROW)):7.1f} ms")
        for _ in range(3):
            jdbc(ONE_ROW)()
            direct()
        rows = {"SELECT 1 over JDBC": [], "one-row predict over JDBC": [], "one-row predict, spark.sql": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
            rows["SELECT 1 over JDBC"].append(timed(jdbc("SELECT 1")))
            rows["one-row predict over JDBC"].append(timed(jdbc(ONE_ROW)))
            rows["one-row predict, spark.sql"].append(timed(direct))
        for name, millis in rows.items():
            print(summary(name, millis))
        ratio = statistics.median(rows["one-row predict over JDBC"]) / statistics.median(rows["one-row predict, spark.sql"])
        print(f"JDBC / direct (median): {ratio:.2f}")
    finally:
        stop(spark, server)


if __name__ == "__main__":
    main()
