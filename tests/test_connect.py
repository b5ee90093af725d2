"""`sql-dl serve --connect`: a real Spark Connect server, and a real pyspark Connect client in its own process
calling the catalog's functions from SQL, DataFrame code and the pyspark.ml Transformers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from test_server import Server

pytest.importorskip("grpc", reason="the Spark Connect client needs pyspark[connect]")


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory, photo_dir):
    running = Server(tmp_path_factory.mktemp("connect"), photo_dir, "--connect")
    assert running.ready == f"listening on 127.0.0.1:{running.port}", running.errors()
    yield running
    assert running.stop() == 0


def test_a_connect_client_calls_the_catalog_functions_everywhere(connect_server, photo_dir, spark):
    expected = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "connect_client.py"),
                             f"sc://127.0.0.1:{connect_server.port}", str(photo_dir)],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["sql"] == expected and got["dataframe"] == expected
    assert got["feature_sizes"] == [1280]
    assert {file: top[0] for file, top in got["topk"].items()} == expected
    assert got["generic"] == {file: [label, "1"] for file, label in expected.items()}  # ml_* over Connect
    assert "efficientnet_lite0" in got["models"]
    assert got["register"].startswith("UsageError: register_image_udf('mine') needs a classic Spark session")
    assert "\n" not in got["register"]


def test_connect_refuses_options_it_cannot_honour():
    from click.testing import CliRunner

    from sql_dl.cli.command import main

    result = CliRunner().invoke(main, ["serve", "--connect", "--auth", "password"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --connect serves Spark Connect, which has no login")
