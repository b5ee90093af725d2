"""A real multi-process cluster: models shipped to executor JVMs by content hash, and an executor killed
in the middle of a query; the query still returns every row, correctly."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, read_events

COPIES = 240  # real photos repeated: enough tasks that a kill lands mid-query


def executor_jvms() -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"CoarseGrainedExecutorBackend" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_executor_killed_mid_query_loses_no_row(spark, photo_dir, tmp_path):
    expected = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(photo_dir.glob("*.jpg"))
    for i in range(COPIES):
        (folder / f"{i:04d}-{sources[i % len(sources)].name}").write_bytes(sources[i % len(sources)].read_bytes())
    events = tmp_path / "events.jsonl"
    job = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cluster_job.py"), str(folder), str(events)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "SQL_DL_LOG_DIR": str(tmp_path / "logs")})
    deadline = time.monotonic() + 240
    while not any(e["event"] == "infer" for e in read_events(events)) and time.monotonic() < deadline:
        assert job.poll() is None, job.stderr.read()
        time.sleep(0.2)
    victims = executor_jvms()
    assert len(victims) == 2, "local-cluster[2,...] runs two executor JVMs"
    os.kill(victims[0], signal.SIGKILL)
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-2000:]
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == COPIES, "no row lost"
    assert all(row["label"] == expected[row["file"].split("-", 1)[1]] for row in rows)
    loads = [e for e in read_events(events) if e["event"] == "load"]
    # each executor loads the copy Spark shipped into its own work folder, named by content hash
    assert all(e["path"].endswith(f"/sql-dl-{e['sha256']}.onnx") and "/work/app-" in e["path"] for e in loads)
    assert len({Path(e["path"]).parent for e in loads}) >= 2, "several executors, each with its own copy"
    for app in {Path(e["path"]).parent.parent for e in loads}:  # local-cluster keeps them under SPARK_HOME/work
        shutil.rmtree(app, ignore_errors=True)
