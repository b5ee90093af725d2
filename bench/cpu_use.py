"""Where a query's CPU goes: CPU seconds of the Spark JVM and of the PySpark worker processes, read from Linux's
/proc before and after a run (elsewhere: nothing, and the benchmark prints no breakdown)."""
from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _kind(cmdline: list[str]) -> str | None:
    if cmdline and Path(cmdline[0]).name == "java":
        return "jvm"
    if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
        return "python"
    return None


def spark_processes() -> dict[int, str]:
    """{pid: "jvm"|"python"} of every JVM and PySpark daemon/worker process on this machine."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            kind = _kind((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue  # the process ended while we read it
        if kind is not None:
            found[int(entry.name)] = kind
    return found


def process_cpu() -> dict[tuple[int, str], float]:
    """{(pid, "jvm"|"python"): CPU seconds (user + system) since it started} for every JVM and PySpark worker."""
    found = {}
    for pid, kind in spark_processes().items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[(pid, kind)] = (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
    return found


def core_ms_per_image(before: dict, after: dict, images: int) -> dict[str, float]:
    """{"jvm": core-ms per image, "python": ...} spent between two :func:`process_cpu` readings."""
    spent = {"jvm": 0.0, "python": 0.0}
    for key, seconds in after.items():
        spent[key[1]] += seconds - before.get(key, 0.0)
    return {kind: value * 1000 / images for kind, value in spent.items()}
