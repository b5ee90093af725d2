"""Run by tests/test_cluster.py in its own process: the SQL path on a real multi-process cluster
(local-cluster: separate executor JVMs and Python workers). Writes the application id to ``app_file`` as
soon as the session exists (the test kills only that application's executors), then prints one JSON object
per result row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sql_dl import build_session


def main(folder: str, event_log: str, app_file: str) -> None:
    spark = build_session(master="local-cluster[2,1,1024]", conf={
        "spark.sqldl.eventLog": event_log,
        "spark.sql.files.maxPartitionBytes": "200000",  # many small partitions: tasks to lose and re-run
        "spark.task.maxFailures": "4",
        "spark.executor.memory": "1g",
    })
    Path(app_file).write_text(spark.sparkContext.applicationId)
    rows = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
                     f"FROM binaryFile.`{folder}/*.jpg`").collect()
    for row in rows:
        print(json.dumps(row.asDict()), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:4])
