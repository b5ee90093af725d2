"""Run by tests/test_cluster.py in its own process: the driver of a standalone cluster whose executors run the
packed environment (``SQL_DL_EXECUTOR_ENV``). Writes the application id to ``app_file`` once the session exists,
times the query once undisturbed, prints one JSON object per result row of the next one, waits for ``go_file`` (the test kills and restarts a
worker meanwhile), then answers the same query from a new session (the extension's path) and prints those rows."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sql_dl import build_session
from sql_dl.extension import extension_settings

QUERY = ("SELECT regexp_extract(path, '[^/]+$', 0) AS file, {call} AS label FROM binaryFile.`{folder}/*.jpg`")


def wait_for_executors(spark, count: int, seconds: float) -> None:
    tracker = spark.sparkContext._jsc.sc().statusTracker()
    deadline = time.monotonic() + seconds
    while len(tracker.getExecutorInfos()) - 1 < count and time.monotonic() < deadline:  # the driver counts too
        time.sleep(0.2)


def timed(action) -> float:
    started = time.monotonic()
    action()
    return round(time.monotonic() - started, 2)


def second_query(spark, folder: str) -> list:
    """The query after the worker's restart, from a new session (the extension's functions)."""
    session = spark.newSession()
    # ~20 files a task, 4 rows a batch: the test kills a Python worker in the middle of a task
    session.conf.set("spark.sql.files.maxPartitionBytes", str(24 << 20))  # each file counts 1 MB more (openCost)
    return session.sql(QUERY.format(call="predict_efficientnet_lite0_topk(content, 1)[0].label",
                                    folder=folder)).collect()


def main(master: str, folder: str, event_log: str, app_file: str, go_file: str) -> None:
    spark = build_session(master=master, conf={
        "spark.sqldl.eventLog": event_log,
        "spark.sql.files.maxPartitionBytes": "200000",  # many small partitions: tasks to lose and re-run
        "spark.sql.execution.arrow.maxRecordsPerBatch": "4",  # several batches a task: a kill lands mid-task
        "spark.task.maxFailures": "4",
        "spark.executor.memory": "1g",
        **extension_settings("models.yaml"),  # new sessions get the functions through the extension
    })
    query = QUERY.format(call="predict_efficientnet_lite0(content)", folder=folder)
    spark.sql(query).collect()  # warm: executors unpack the environment, start Python workers, load the model
    # undisturbed, warm: the times the disturbed queries are compared with
    print(json.dumps({"seconds": timed(lambda: spark.sql(query).collect()), "query": "0-1"}), flush=True)
    print(json.dumps({"seconds": timed(lambda: second_query(spark, folder)), "query": "0-2"}), flush=True)
    Path(app_file).write_text(spark.sparkContext.applicationId)
    started = time.monotonic()
    rows = spark.sql(query).collect()
    print(json.dumps({"seconds": round(time.monotonic() - started, 2), "query": 1}), flush=True)
    for row in rows:
        print(json.dumps({**row.asDict(), "query": 1}), flush=True)
    deadline = time.monotonic() + 240
    while not Path(go_file).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    wait_for_executors(spark, 2, seconds=120)  # the restarted worker's executor registers with this driver
    started = time.monotonic()
    other = second_query(spark, folder)
    print(json.dumps({"seconds": round(time.monotonic() - started, 2), "query": 2}), flush=True)
    for row in other:
        print(json.dumps({**row.asDict(), "query": 2}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:6])
