"""A real cluster: Spark's standalone Master and two Workers on loopback (scripts/cluster.py, as `make cluster-up`
starts them), executors that run the packed environment Spark ships (`make cluster-env`) instead of the driver's,
a worker SIGKILLed in the middle of a query and restarted, a Python worker killed inside an executor, and
executor-side failures reaching the user as one line with their cause and fix."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, read_events
from sql_dl.errors import one_line

COPIES = 240  # real photos repeated: enough tasks that a kill lands mid-query


def _cluster_module():
    spec = importlib.util.spec_from_file_location("sql_dl_cluster_script", ROOT / "scripts" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cluster = _cluster_module()


def executor_env() -> Path:
    """The packed environment `make cluster-env` builds; built here when it is missing or older than sql-dl's
    sources (executors must run the driver's sql-dl)."""
    archive = cluster.ENV_ARCHIVE
    sources = [*ROOT.joinpath("sql_dl").rglob("*.py"), ROOT / "setup.cfg", ROOT / "constraints.txt"]
    if archive.is_file() and archive.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return archive
    if importlib.util.find_spec("venv_pack") is None:
        pytest.fail("venv-pack is not installed in this environment: run `make install` (setup.cfg's test extra)")
    return cluster.build_env()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    archive = executor_env()
    state = tmp_path_factory.mktemp("standalone")
    running = cluster.start(state, workers=2)
    yield running, archive
    started = [running.master_pid] + [w["pid"] for w in running.workers]
    everything = started + [child for pid in started for child in cluster.descendants(pid)]
    cluster.stop(running)  # also removes the workers' folders: each executor unpacked the environment there
    assert not [pid for pid in everything if cluster._alive(pid)], "every process the cluster started is gone"


def wait_for(condition, job: subprocess.Popen, seconds: float, what: str, failure=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert job.poll() is None, failure()
        assert time.monotonic() < deadline, f"no {what} within {seconds:.0f} s"
        time.sleep(0.2)


def executors_under(pid: int) -> list[int]:
    return [child for child in cluster.descendants(pid)
            if b"CoarseGrainedExecutorBackend" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_workers_machine_python_has_no_sql_dl():
    """What the workers would run without a shipped environment: the machine's python3, without sql-dl."""
    env = cluster.worker_environment()
    python = shutil.which("python3", path=env["PATH"])
    assert python and not Path(python).resolve().is_relative_to(Path(sys.prefix).resolve())
    for module in ("sql_dl", "onnxruntime", "torch"):
        probe = subprocess.run([python, "-c", f"import {module}"], env=env, capture_output=True, text=True,
                               cwd="/")
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


def test_standalone_cluster_answers_survives_a_worker_kill_and_uses_it_again(standalone, spark, photo_dir,
                                                                           tmp_path):
    running, archive = standalone
    expected = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(photo_dir.glob("*.jpg"))
    for i in range(COPIES):
        (folder / f"{i:04d}-{sources[i % len(sources)].name}").write_bytes(sources[i % len(sources)].read_bytes())
    events, app_file, go_file = tmp_path / "events.jsonl", tmp_path / "app-id", tmp_path / "go"
    out_file, err_file = tmp_path / "job.out", tmp_path / "job.err"
    with open(out_file, "w") as out, open(err_file, "w") as err:  # files, not pipes: read while it runs
        job = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cluster_job.py"), running.url, str(folder),
                                str(events), str(app_file), str(go_file)], stdout=out, stderr=err, text=True,
                               cwd=ROOT, env={**os.environ, "SQL_DL_LOG_DIR": str(tmp_path / "logs"),
                                              "SQL_DL_EXECUTOR_ENV": str(archive)})
    job_failed = lambda: err_file.read_text()[-2000:]  # noqa: E731
    try:
        wait_for(lambda: app_file.is_file() and app_file.read_text(), job, 300, "application id", job_failed)
        undisturbed = len(read_events(events))
        wait_for(lambda: any(e["event"] == "infer" for e in read_events(events)[undisturbed:]), job, 240,
                 "inference", job_failed)
        victim = running.workers[0]
        assert executors_under(victim["pid"]), "the worker runs an executor of the job"
        cluster.kill_tree(victim["pid"])  # the worker, its executor JVM and its Python workers: a lost machine
        wait_for(lambda: '"query": 1' in out_file.read_text(), job, 300, "first query", job_failed)
        before = len(read_events(events))
        cluster.start_worker(running, 0)  # the same worker, restarted: it registers again
        cluster.wait_registered(running, 3)
        wait_for(lambda: executors_under(running.workers[0]["pid"]), job, 60, "executor on the restarted worker",
                 job_failed)
        go_file.touch()
        wait_for(lambda: any(e["event"] == "infer" for e in read_events(events)[before:]), job, 240,
                 "second query's inference", job_failed)
        # the worker that answered last is the likeliest to be inside a task still
        python_worker = [e["pid"] for e in read_events(events)[before:] if e["event"] == "infer"][-1]
        os.kill(python_worker, signal.SIGKILL)  # a Python worker inside an executor: its task is retried
        job.wait(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, job_failed()
    out = out_file.read_text()
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    timings = {r["query"]: r["seconds"] for r in rows if "seconds" in r}
    first = [r for r in rows if r.get("query") == 1 and "file" in r]
    second = [r for r in rows if r.get("query") == 2 and "file" in r]
    assert len(first) == COPIES and len(second) == COPIES, "no row lost"
    assert all(r["label"] == expected[r["file"].split("-", 1)[1]] for r in first + second), "labels as local"
    print(f"{COPIES} photos: a worker killed {timings[1]} s (undisturbed {timings['0-1']} s); after its restart, "
          f"a Python worker killed {timings[2]} s (undisturbed {timings['0-2']} s)")

    log = read_events(events)
    loads = [e for e in log if e["event"] == "load"]
    assert any(e.get("attempt", 0) >= 1 for e in log[undisturbed:before] if e["event"] == "infer"), \
        "the lost worker's tasks re-ran"
    assert any(e["attempt"] >= 1 for e in log[before:] if e["event"] == "infer"), "the killed Python worker's task re-ran"
    worker_dirs = [w["dir"] for w in running.workers]
    for load in loads:
        # executors run the shipped environment (unpacked into their own folder), never the driver's Python,
        # and load the model copy Spark shipped by content hash
        assert load["python"].endswith("/env/bin/python") and load["python"].startswith(tuple(worker_dirs))
        assert load["path"].endswith(f"/sql-dl-{load['sha256']}.onnx") and load["path"].startswith(tuple(worker_dirs))
    restarted = {Path(e["path"]).parent for e in log[before:] if e["event"] == "load"
                 and e["path"].startswith(worker_dirs[0])}
    first_round = {Path(e["path"]).parent for e in log[:before] if e["event"] == "load"}
    assert restarted - first_round, "the restarted worker's new executor ran tasks of the next query"


SUBMITTED_JOB = """import json, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()  # a stock session: the functions come from the extension
for row in spark.sql(sys.argv[1]).collect():
    print(json.dumps(row.asDict()))
"""


def test_shell_server_and_spark_submit_answer_on_the_cluster(standalone, spark, photo_dir, tmp_path, monkeypatch):
    """`sql-dl sql --master spark://`, `sql-dl serve --master spark://` with a PyHive client, and a stock
    spark-submit job with the extension's settings: the labels of local mode, from executors on the packed
    environment."""
    from test_server import PREDICT, SQL_DL, SPARK_HOME, Server

    running, archive = standalone
    query = PREDICT.replace("FROM photos", f"FROM binaryFile.`{photo_dir}/*.jpg`")
    expected = {r.file: r.label for r in spark.sql(query).collect()}
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    monkeypatch.setenv("SQL_DL_EXECUTOR_ENV", str(archive))
    monkeypatch.setenv("SQL_DL_LOG_DIR", str(tmp_path / "logs"))

    shell = subprocess.run([SQL_DL, "sql", "--master", running.url, "--format", "json", "--no-progress", "-e", query],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert {r["file"]: r["label"] for r in map(json.loads, shell.stdout.splitlines())} == expected

    settings = subprocess.run([SQL_DL, "extension", "--executor-env", str(archive)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, check=True).stdout
    (tmp_path / "cluster.conf").write_text(settings)
    (tmp_path / "job.py").write_text(SUBMITTED_JOB)
    submitted = subprocess.run([str(SPARK_HOME / "bin" / "spark-submit"), "--master", running.url,
                                "--properties-file", str(tmp_path / "cluster.conf"), str(tmp_path / "job.py"), query],
                               capture_output=True, text=True, cwd=tmp_path, timeout=300,
                               env={**os.environ, "SPARK_HOME": str(SPARK_HOME)})
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    rows = [json.loads(line) for line in submitted.stdout.splitlines() if line.startswith("{")]
    assert {r["file"]: r["label"] for r in rows} == expected

    server = Server(tmp_path, photo_dir, "--master", running.url)
    try:
        assert server.ready == f"listening on 127.0.0.1:{server.port}", server.errors()
        cursor = server.cursor()
        cursor.execute(PREDICT)
        assert dict(cursor.fetchall()) == expected
    finally:
        server.stop()


def test_executors_without_python_give_one_line_with_cause_and_fix(standalone, photo_dir, tmp_path):
    """The shell on a cluster whose workers lack the interpreter it names: the cause and the fix, one line."""
    running, _ = standalone
    conf = tmp_path / "conf"
    conf.mkdir()
    defaults = (ROOT / "sql_dl" / "conf" / "spark-defaults.conf").read_text()
    (conf / "spark-defaults.conf").write_text(defaults + "\nspark.pyspark.python /nonexistent/.venv/bin/python3\n"
                                              "spark.task.maxFailures 1\n")
    shutil.copy(ROOT / "sql_dl" / "conf" / "log4j2.properties", conf)
    env = {k: v for k, v in os.environ.items() if k not in ("SQL_DL_EXECUTOR_ENV", "PYSPARK_PYTHON")}
    result = subprocess.run([sys.executable, "-c", "from sql_dl.cli.command import run; run()", "sql", "--master",
                             running.url, "--no-progress", "-e",
                             f"SELECT predict_efficientnet_lite0(content) FROM binaryFile.`{photo_dir}/*.jpg`"],
                            capture_output=True, text=True, cwd=ROOT, timeout=240,
                            env={**env, "SQL_DL_CONF_DIR": str(conf), "SQL_DL_LOG_DIR": str(tmp_path / "logs")})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("sql-dl: error:")]
    assert errors == [result.stderr.splitlines()[-1]] and len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("sql-dl: error: executors cannot start Python /nonexistent/.venv/bin/python3 "
                                "(No such file or directory)")
    assert "make cluster-env" in errors[0] and "docs/cluster.md" in errors[0]


# Spark's texts for executor-side failures, as captured on the standalone cluster (stack frames trimmed).
PY4J = ("An error occurred while calling o193.collectToPython.\n: org.apache.spark.SparkException: Job aborted due "
        "to stage failure: Task 0 in stage 0.0 failed 2 times, most recent failure: Lost task 0.1 in stage 0.0 "
        "(TID 2) (127.0.0.1 executor 0): {cause}\n\tat org.apache.spark.api.python.PythonWorkerFactory.create"
        "(PythonWorkerFactory.scala:1)\n\nDriver stacktrace:\n\tat org.apache.spark.scheduler.DAGScheduler.x(D.scala:1)"
        "\nCaused by: {cause}\n\t... 1 more\n")
WORKER = ("An exception was thrown from the Python worker:\nTraceback (most recent call last):\n  File "
          '"/w/pyspark.zip/pyspark/worker.py", line 4207, in invoke_udf\n    func = read_udfs(\n{cause}\n')


@pytest.mark.parametrize("text,line", [
    (PY4J.format(cause='java.io.IOException: Cannot run program "/work/main/.venv/bin/python3": error=2, No such '
                       'file or directory'),
     "executors cannot start Python /work/main/.venv/bin/python3 (No such file or directory): the workers lack that "
     "interpreter; ship sql-dl's executor environment (make cluster-env, then spark.sqldl.executorEnv or "
     "SQL_DL_EXECUTOR_ENV) or pip install sql-dl on every worker (docs/cluster.md)"),
    (WORKER.format(cause="ModuleNotFoundError: No module named 'sql_dl'"),
     "executors' Python has no module 'sql_dl': ship sql-dl's executor environment (make cluster-env, then "
     "spark.sqldl.executorEnv or SQL_DL_EXECUTOR_ENV) or pip install sql-dl on every worker (docs/cluster.md)"),
    (WORKER.format(cause="ImportError: libarrow.so.2600: failed to map segment from shared object"),
     "a Python worker on an executor ran out of memory loading libarrow.so.2600 (its address-space limit, "
     "spark.executor.pyspark.memory, is too small): raise spark.executor.pyspark.memory or unset it"),
    (WORKER.format(cause="MemoryError"),
     "a Python worker on an executor ran out of memory (MemoryError): raise spark.executor.memoryOverhead (Python "
     "workers; spark.executor.pyspark.memory if set) or lower the entry's batch_size / "
     "spark.sql.execution.arrow.maxRecordsPerBatch"),
    (PY4J.format(cause="java.lang.OutOfMemoryError: Java heap space"),
     "an executor JVM ran out of memory (OutOfMemoryError: Java heap space): raise spark.executor.memory"),
    (PY4J.format(cause="org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)"),
     "a Python worker on an executor died (crashed or killed; often the kernel's out-of-memory killer) in every "
     "attempt of a task: see the executor's stderr; raise spark.executor.memoryOverhead (Python workers; "
     "spark.executor.pyspark.memory if set) or lower the entry's batch_size / "
     "spark.sql.execution.arrow.maxRecordsPerBatch"),
    (PY4J.format(cause="ExecutorLostFailure (executor 1 exited caused by one of the running tasks) Reason: "
                       "Command exited with code 137"),
     "an executor was lost in every attempt of a task (executor 1 exited caused by one of the running tasks: "
     "Command exited with code 137): see the worker's log; an executor killed for memory needs a larger "
     "spark.executor.memory or spark.executor.memoryOverhead"),
    (PY4J.format(cause="java.io.FileNotFoundException: /data/x.jpg (Permission denied)"),
     "java.io.FileNotFoundException: /data/x.jpg (Permission denied)"),
])
def test_executor_failures_are_one_line_with_cause_and_fix(text, line):
    assert one_line(Exception(text)) == line
