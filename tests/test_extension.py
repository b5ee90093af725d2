"""sql-dl's Spark extension: the catalog's functions in every session a JVM creates, with no Python call by
the user, shown with pyspark's own stock bin/spark-sql shell run as a real script. (New sessions of a
server: tests/test_server.py and test_connect.py; spark.newSession() on a cluster: tests/test_cluster.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CATALOG, ROOT, write_catalog

SPARK_HOME = Path(__import__("pyspark").__file__).parent
LABELS = ("SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
          "FROM binaryFile.`{photos}/*.jpg` ORDER BY file")


@pytest.fixture(scope="module")
def expected(spark, photo_dir) -> dict:
    """The labels of the session sql-dl builds itself: what every other session must answer."""
    return {r.file: r.label for r in spark.sql(LABELS.format(photos=photo_dir)).collect()}


def spark_sql(tmp_path: Path, sql: str, *extra: str) -> subprocess.CompletedProcess:
    """pyspark's own bin/spark-sql, configured only by the lines `sql-dl extension` prints."""
    properties = tmp_path / "sql-dl.conf"
    printed = subprocess.run([str(Path(sys.executable).with_name("sql-dl")), "extension", "--catalog", str(CATALOG)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
    properties.write_text(printed.stdout + "".join(f"{line}\n" for line in extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}  # nothing but the conf file
    return subprocess.run([str(SPARK_HOME / "bin" / "spark-sql"), "--master", "local[2]", "--properties-file",
                           str(properties), "--conf", "spark.sql.catalogImplementation=in-memory", "-S", "-e", sql],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)


def test_the_stock_spark_sql_shell_answers_like_sql_dl(tmp_path, photo_dir, expected):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.jpg").write_bytes(b"hello, not a JPEG")
    result = spark_sql(tmp_path, f"{LABELS.format(photos=photo_dir)}; "
                                 "DESCRIBE FUNCTION EXTENDED predict_efficientnet_lite0; "
                                 f"SELECT predict_efficientnet_lite0(content), sql_dl_error(content) "
                                 f"FROM binaryFile.`{bad}/*.jpg`; "
                                 f"SELECT predict_inception(content) FROM binaryFile.`{photo_dir}/coffee.jpg`;")
    assert result.returncode != 0, "the last statement names a model whose file is absent"
    assert "[USER_RAISED_EXCEPTION] model 'inception' is not available: " in result.stderr
    lines = result.stdout.splitlines()
    labels = dict(line.split("\t") for line in lines[:len(expected)])
    assert labels == expected
    card = "\n".join(lines[len(expected):-1])
    assert "Usage: predict_efficientnet_lite0(image) - the top-1 label (STRING)" in card
    assert "model: efficientnet_lite0" in card and "sha256: " in card
    assert lines[-1] == "NULL\tnot a recognised image format"


def test_a_bad_catalog_registers_nothing_and_says_why_in_one_line(tmp_path):
    broken = write_catalog(tmp_path, "models:\n  m:\n    onnx: m.onnx\n    input: {size: [224]}\n"
                                     "    outputs: {scores: logits}\n", "broken.yaml")
    result = spark_sql(tmp_path, "SELECT 1 AS one", f"spark.sqldl.catalog {broken}")  # the later line wins
    assert result.returncode == 0 and result.stdout.strip() == "1"
    assert ("sql-dl: error: broken.yaml: entry 'm': input.size must be two positive integers [height, width], "
            "got [224] (no sql-dl functions registered)") in result.stderr.splitlines()


def test_python_version_skew_fails_with_one_line(tmp_path, photo_dir):
    """Functions prepared by one Python and run by workers of another: pyspark's own version check, one line."""
    fake = tmp_path / "python-claiming-3.10"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c \"import runpy, sys; import sql_dl.registry.records as p; "
                    f"p.PYTHON_VERSION = '3.10'; sys.argv = sys.argv[2:]; "
                    f"runpy.run_module('sql_dl.extension', run_name='__main__')\" \"$@\"\n")
    fake.chmod(0o755)
    result = spark_sql(tmp_path, f"SELECT predict_efficientnet_lite0(content) FROM binaryFile.`{photo_dir}/coffee.jpg`",
                       f"spark.sqldl.python {fake}")
    assert result.returncode != 0
    worker = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (f"[PYTHON_VERSION_MISMATCH] Python in worker has different version: {worker} than that in driver: "
            "3.10") in result.stderr
