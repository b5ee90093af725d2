"""build_session: sql_dl/conf/spark-defaults.conf, our logging flags and a caller's settings all reach the JVM."""
from __future__ import annotations

import configparser
from pathlib import Path

import sql_dl
from conftest import ROOT
from sql_dl.session import conf_dir, read_spark_defaults, spark_settings

JAVA = "spark.driver.extraJavaOptions"


def test_jvm_flags_from_the_conf_file_logging_and_the_caller_are_all_kept():
    from_file = read_spark_defaults(conf_dir() / "spark-defaults.conf")[JAVA]
    java = spark_settings({JAVA: "-Dsqldl.example=1"})[JAVA]
    assert java.startswith(from_file + " ")
    assert "-Dlog4j2.configurationFile=" in java and java.endswith(" -Dsqldl.example=1")


def test_spark_settings_ship_inside_the_package(monkeypatch):
    """A wheel install (executors, a cluster's driver) keeps them: they are package data, not checkout files."""
    monkeypatch.delenv("SQL_DL_CONF_DIR", raising=False)
    assert conf_dir() == Path(sql_dl.__file__).parent / "conf"
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    declared = setup["options.package_data"]["sql_dl"].split()
    assert {"conf/*.conf", "conf/*.properties"} <= set(declared)
    assert sorted(p.name for p in conf_dir().iterdir()) == ["log4j2.properties", "spark-defaults.conf"]


def test_the_running_jvm_got_the_conf_files_jit_thresholds(spark):
    arguments = list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
                     .getInputArguments())
    assert "-XX:Tier4InvocationThreshold=100000" in arguments
    assert any(a.startswith("-Dlog4j2.configurationFile=") for a in arguments)


def test_small_image_files_are_packed_about_120_to_a_partition(spark, tmp_path):
    """spark-defaults.conf's openCostInBytes (1 MB): 256 small files make 3 tasks, not Spark's 8."""
    for i in range(256):
        (tmp_path / f"{i:03d}.jpg").write_bytes(bytes([i]) * 50_000)
    frame = spark.sql(f"SELECT path FROM binaryFile.`{tmp_path}/*.jpg`")
    assert frame.rdd.getNumPartitions() == 3
    assert frame.count() == 256
