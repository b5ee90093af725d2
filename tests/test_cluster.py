"""A real multi-process cluster: models shipped to executor JVMs by content hash, and an executor killed
in the middle of a query; Spark re-runs its tasks and the query still returns every row, correctly."""
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


def executor_jvms(app_id: str) -> list[int]:
    """The executor JVMs of application ``app_id`` only (their command line names it): never another
    application's."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in args and app_id.encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


def wait_for(condition, job: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert job.poll() is None, job.stderr.read()[-2000:]
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.2)


def test_executor_killed_mid_query_loses_no_row(spark, photo_dir, tmp_path):
    expected = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(photo_dir.glob("*.jpg"))
    for i in range(COPIES):
        (folder / f"{i:04d}-{sources[i % len(sources)].name}").write_bytes(sources[i % len(sources)].read_bytes())
    events, app_file = tmp_path / "events.jsonl", tmp_path / "app-id"
    job = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cluster_job.py"), str(folder), str(events),
                            str(app_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "SQL_DL_LOG_DIR": str(tmp_path / "logs")})
    wait_for(lambda: app_file.is_file() and app_file.read_text(), job, 120, "application id")
    wait_for(lambda: any(e["event"] == "infer" for e in read_events(events)), job, 240, "inference")
    victims = executor_jvms(app_file.read_text())
    assert len(victims) == 2, "local-cluster[2,...] runs two executor JVMs for this application"
    os.kill(victims[0], signal.SIGKILL)
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-2000:]
    rows = [json.loads(line) for line in out.splitlines()]
    first, new_session = [r for r in rows if "session" not in r], [r for r in rows if "session" in r]
    assert len(first) == COPIES, "no row lost"
    assert all(row["label"] == expected[row["file"].split("-", 1)[1]] for row in first)
    assert sorted(map(json.dumps, new_session)) == sorted(json.dumps({**r, "session": "new"}) for r in first), \
        "a new session answers through the extension, on the same executors, the same"
    infers = [e for e in read_events(events) if e["event"] == "infer"]
    assert any(e["attempt"] >= 1 for e in infers), "the killed executor's tasks ran again as new attempts"
    loads = [e for e in read_events(events) if e["event"] == "load"]
    # each executor loads the copy Spark shipped into its own work folder, named by content hash
    assert all(e["path"].endswith(f"/sql-dl-{e['sha256']}.onnx") and "/work/app-" in e["path"] for e in loads)
    assert len({Path(e["path"]).parent for e in loads}) >= 2, "several executors, each with its own copy"
    for app in {Path(e["path"]).parent.parent for e in loads}:  # local-cluster keeps them under SPARK_HOME/work
        shutil.rmtree(app, ignore_errors=True)
