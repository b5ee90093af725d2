"""The standalone cluster against local mode on the same machine (`make cluster-bench`, docs/cluster.md).

Prints, side by side: EfficientNet-Lite0 throughput over the same JPEG corpus in ``local[2]`` and on the 2-worker
standalone cluster (1 core each, executors running the packed environment); the first query's cost of shipping
that environment (the first query of a fresh cluster session with the packed environment against one whose
executors run the driver's Python, both after a warm-up application, and the archive's size); the executors' resident memory (executor JVMs and
their Python workers) after the runs. Each session runs in its own process (one SparkContext per process).

    .venv/bin/python bench/cluster.py [--images 1024] [--repeats 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

QUERY = "SELECT count(predict_efficientnet_lite0(content)) AS n FROM binaryFile.`{folder}/*.jpg`"
FIRST = "SELECT predict_efficientnet_lite0(content) AS label FROM binaryFile.`{folder}/*.jpg`"


def _cluster():
    spec = importlib.util.spec_from_file_location("sql_dl_cluster_script", ROOT / "scripts" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def measure(master: str, folder: str, photos: str, images: int, repeats: int, archive: str) -> dict:
    """In this process: a session on ``master``, its first query over ``photos``, then ``repeats`` timed passes
    over ``folder``."""
    from sql_dl import build_session

    conf = {"spark.sqldl.executorEnv": archive} if archive else {}
    started = time.perf_counter()
    spark = build_session(master=master, conf=conf)
    result = {"session_s": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    spark.sql(FIRST.format(folder=photos)).collect()
    result["first_query_s"] = round(time.perf_counter() - started, 2)
    spark.sql(QUERY.format(folder=folder)).collect()  # warm: every executor has its Python workers and model
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert spark.sql(QUERY.format(folder=folder)).collect()[0].n == images
        passes.append(images / (time.perf_counter() - started))
    result["img_per_s"] = [round(p, 1) for p in passes]
    spark.stop()
    return result


def run_child(master: str, folder: Path, photos: Path, images: int, repeats: int, archive: str,
              cluster=None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("SQL_DL_EXECUTOR_ENV", None)
    child = subprocess.Popen([sys.executable, __file__, "--child", master, str(folder), str(photos), str(images),
                              str(repeats), archive], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"bench session on {master} failed (see ~/.local/state/sql-dl/logs/spark.log)")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from corpus import image_folder
    from sql_dl.samples.photos import make_photo_dir

    cluster = _cluster()
    folder, _ = image_folder(args.images)
    photos = ROOT / "bench-out" / "photos"
    make_photo_dir(str(photos))
    archive = cluster.ENV_ARCHIVE
    if not archive.is_file():
        raise SystemExit(f"{archive} is missing: run `make cluster-env`")
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")

    report = {"local[2]": run_child("local[2]", folder, photos, args.images, args.repeats, "")}
    running = cluster.start(ROOT / "bench-out" / "cluster", workers=2)
    try:
        # the cluster's first application warms its JVMs and the page cache: not counted
        run_child(running.url, folder, photos, args.images, 0, "")
        report["standalone, packed env"] = run_child(running.url, folder, photos, args.images, args.repeats,
                                                     str(archive))
        report["standalone, driver's Python"] = run_child(running.url, folder, photos, args.images, 0, "")
        # after the application ends its executors are gone: measure a live one instead, started for this
        report["standalone, packed env"]["executor_rss_mib"] = live_executor_rss(cluster, running, photos, archive)
    finally:
        cluster.stop(running)
    print(f"CPU: {cpu}, {os.cpu_count()} cores; {args.images} JPEGs (bench/corpus.py), EfficientNet-Lite0; "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"packed environment: {archive.stat().st_size / 1e6:.0f} MB ({archive.name}, venv-pack)")
    for name, result in report.items():
        print(f"{name:30s} {json.dumps(result)}")
    packed, plain = report["standalone, packed env"], report["standalone, driver's Python"]
    print(f"cost of shipping the packed environment: session start +{packed['session_s'] - plain['session_s']:.1f} s "
          f"(the driver unpacks it too), first query +{packed['first_query_s'] - plain['first_query_s']:.1f} s")
    local, standalone = (statistics.median(report[k]["img_per_s"]) for k in ("local[2]", "standalone, packed env"))
    print(f"standalone / local[2] throughput: {standalone / local:.2f}")


def live_executor_rss(cluster, running, photos: Path, archive: Path) -> dict:
    """RSS of the executors (JVM + Python workers) while a session holds them after a query."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = ("import sys, time; from sql_dl import build_session; s = build_session(master=sys.argv[1], "
            "conf={'spark.sqldl.executorEnv': sys.argv[2]}); "
            f"s.sql({FIRST!r}.format(folder=sys.argv[3])).collect(); print('ready', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code, running.url, str(archive), str(photos)],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        child.stdout.readline()
        result = {}
        for index, worker in enumerate(running.workers):
            tree = cluster.descendants(worker["pid"])
            jvms = [p for p in tree if b"CoarseGrainedExecutorBackend" in Path(f"/proc/{p}/cmdline").read_bytes()]
            pythons = [p for p in tree if p not in jvms]
            result[f"worker{index}"] = {"jvm": rss_mib(jvms), "python": rss_mib(pythons)}
        return result
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        master, folder, photos, images, repeats, archive = sys.argv[2:8]
        print(json.dumps(measure(master, folder, photos, int(images), int(repeats), archive)))
    else:
        main()
