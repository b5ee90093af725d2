"""Run by tests/test_cluster.py in its own process: the SQL path on a real multi-process cluster
(local-cluster: separate executor JVMs and Python workers). Writes the application id to ``app_file`` as
soon as the session exists (the test kills only that application's executors), then prints one JSON object
per result row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sql_dl import build_session
from sql_dl.extension import extension_settings


def main(folder: str, event_log: str, app_file: str) -> None:
    spark = build_session(master="local-cluster[2,1,1024]", conf={
        "spark.sqldl.eventLog": event_log,
        "spark.sql.files.maxPartitionBytes": "200000",  # many small partitions: tasks to lose and re-run
        "spark.task.maxFailures": "4",
        "spark.executor.memory": "1g",
        **extension_settings("models.yaml"),  # new sessions get the functions through the extension
    })
    Path(app_file).write_text(spark.sparkContext.applicationId)
    rows = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
                     f"FROM binaryFile.`{folder}/*.jpg`").collect()
    for row in rows:
        print(json.dumps(row.asDict()), flush=True)
    # the extension's path: a new session, the same function built in the JVM, the model shipped by hash
    other = spark.newSession().sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, "
                                   f"predict_efficientnet_lite0_topk(content, 1)[0].label AS label "
                                   f"FROM binaryFile.`{folder}/*.jpg`").collect()
    for row in other:
        print(json.dumps({**row.asDict(), "session": "new"}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:4])
