"""Models travel to executors by content hash, through Spark's own file distribution.

No shared filesystem is assumed: the driver hard-links (or copies) each ONNX file into a staging folder
under ``sql-dl-<sha256>.onnx`` and adds it with ``SparkContext.addFile``, once per context; executors find
it with ``SparkFiles`` and check the hash again when they load it (:mod:`sql_dl.executor.runtime`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from ..executor import runtime

_shipped: set = set()


def staging_dir() -> Path:
    """Driver-side folder of files shipped to executors (and of models made by the Python API)."""
    staging = Path(tempfile.gettempdir()) / f"sql-dl-{os.getuid()}" / "ship"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def stage_file(onnx: Path, sha256: str) -> Path:
    """The staged copy of ``onnx`` under the name executors look for, made once."""
    target = staging_dir() / runtime.shipped_name(sha256)
    if not target.exists():
        try:
            os.link(onnx, target)  # same filesystem: no copy
        except OSError:
            shutil.copyfile(onnx, target)
    return target


def ship_file(spark: SparkSession, onnx: Path, sha256: str) -> None:
    """Send the ONNX file whose sha256 is known to every executor of ``spark``'s context."""
    target = stage_file(onnx, sha256)
    key = (spark.sparkContext.applicationId, sha256)  # not id(): a later context may reuse a stopped one's id
    if key not in _shipped:
        spark.sparkContext.addFile(str(target))
        _shipped.add(key)
