"""Load: one query over N real-size JPEGs with broken files mixed in. Every good file must get a label, every
broken one NULL and a reason (rows lost: must be 0), and the Python workers' memory must stay bounded.

    .venv/bin/python bench/load_memory.py [--images 10000] [--bad-every 100] [--model efficientnet_lite0]

Worker memory is sampled from /proc every 0.2 s (resident set of every pyspark.daemon process: the daemon and
the workers it forks). Prints a table and writes bench-out/load-memory.json.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from corpus import OUT, image_folder
from cpu_use import spark_processes

from sql_dl import build_session


def python_workers() -> dict[int, int]:
    """pid -> resident KiB of every pyspark daemon/worker process on this machine."""
    found = {}
    for pid, kind in spark_processes().items():
        if kind != "python":
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # the process ended while we read it
        found[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return found


class Sampler(threading.Thread):
    """Samples (seconds, largest worker RSS MiB, sum of worker RSS MiB) until stopped."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stopped = interval, [], threading.Event()
        self.started = time.perf_counter()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            rss = python_workers()
            if rss:
                self.samples.append((time.perf_counter() - self.started, max(rss.values()) / 1024,
                                     sum(rss.values()) / 1024))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--bad-every", type=int, default=100)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    started = time.perf_counter()
    folder, manifest = image_folder(args.images, args.bad_every)
    print(f"{args.images} files in {folder} ({manifest['good']} good, {len(manifest['bad'])} broken), "
          f"made in {time.perf_counter() - started:.0f} s")
    spark = build_session()
    fn = f"predict_{args.model}"
    spark.sql(f"SELECT {fn}(content) FROM binaryFile.`{folder}/00000.jpg`").collect()  # workers up, model loaded
    sampler = Sampler()
    sampler.start()
    started = time.perf_counter()
    rows = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, {fn}(content) AS label, "
                     f"sql_dl_error(content) AS why FROM binaryFile.`{folder}/0*`").collect()
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    report = summarise(args, manifest, rows, seconds, sampler.samples)
    for key, value in report.items():
        print(f"{key:36s} {value}")
    OUT.mkdir(exist_ok=True)
    (OUT / "load-memory.json").write_text(json.dumps(report, indent=2))
    spark.stop()


def summarise(args, manifest: dict, rows: list, seconds: float, samples: list) -> dict:
    labelled = {r.file for r in rows if r.label is not None}
    null_with_reason = {r.file for r in rows if r.label is None and r.why}
    bad = set(manifest["bad"])
    peak = max(s[1] for s in samples)
    end = samples[-1][0]
    deciles = [max([s[1] for s in samples if d * end / 10 <= s[0] <= (d + 1) * end / 10] or [0]) for d in range(10)]
    return {
        "files": args.images, "rows returned": len(rows),
        "good files labelled": f"{len(labelled - bad)} of {manifest['good']}",
        "broken files NULL with a reason": f"{len(null_with_reason & bad)} of {len(bad)}",
        "rows lost": manifest["good"] + len(bad) - len(labelled - bad) - len(null_with_reason & bad),
        "seconds": round(seconds, 1), "images/s": round(args.images / seconds, 1),
        "peak RSS of one Python worker (MiB)": round(peak, 1),
        "peak RSS of all Python workers (MiB)": round(max(s[2] for s in samples), 1),
        "largest worker RSS per tenth of the run (MiB)": " ".join(f"{d:.0f}" for d in deciles),
        "samples": len(samples),
    }


if __name__ == "__main__":
    main()
