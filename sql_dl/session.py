"""Build a SparkSession configured from sql-dl's Spark settings with the catalog registered.

Settings come from ``sql_dl/conf/spark-defaults.conf`` (package data, so a wheel
install keeps them; ``SQL_DL_CONF_DIR`` names another folder), then from the caller. JVM logs go to ``spark.log`` and the
JVM's own stderr to ``jvm-stderr.log`` in :func:`log_dir` (``SQL_DL_LOG_DIR`` moves both), so
the console shows only sql-dl's own one-line messages.
Python workers run this interpreter (``sys.executable``): otherwise Spark starts
``python3`` from PATH, which may lack the packages the UDFs need. On a cluster whose executors do not share
the driver's environment, ``spark.sqldl.executorEnv`` (or ``SQL_DL_EXECUTOR_ENV``) names a packed environment
(``make cluster-env``) that Spark ships with ``spark.archives`` and executors run as ``./env/bin/python``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from .catalog import allowed_model_dirs, load_catalog
from .errors import SqlDlError
from .extension import extension_classes
from .paths import data_dir, state_dir
from .registry import MODEL_DIRS_CONF, Registered, register_catalog
from .spark_conf import conf_dir, read_spark_defaults

EXECUTOR_ENV_CONF = "spark.sqldl.executorEnv"
EXECUTOR_PYTHON = "./env/bin/python"  # inside the archive Spark unpacks into each executor's folder as ``env``


def executor_env_settings(archive: str | Path) -> dict:
    """The settings that give executors the packed environment ``archive`` (a ``venv-pack`` tar.gz) instead
    of the driver's Python: Spark ships and unpacks it (``spark.archives``), workers run its interpreter, and
    the driver (and the extension's preparer) keep this one."""
    path = Path(archive).expanduser().resolve()
    if not path.is_file():
        raise SqlDlError(f"executor environment {path} does not exist: build it with `make cluster-env` "
                         "(docs/cluster.md)")
    return {"spark.archives": f"{path}#env", "spark.pyspark.python": EXECUTOR_PYTHON,
            "spark.pyspark.driver.python": sys.executable}


def log_dir() -> Path:
    """Spark's logs: ``SQL_DL_LOG_DIR``, else ~/.local/state/sql-dl/logs."""
    return Path(os.environ.get("SQL_DL_LOG_DIR") or state_dir() / "logs").resolve()


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point fd 2 at ``path`` while the JVM starts: the JVM (and the Python workers it forks) inherit it,
    so launcher notices and worker output land in the log, not on the user's console."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as target:
        os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def spark_settings(extra: dict | None = None) -> dict:
    settings = read_spark_defaults(conf_dir() / "spark-defaults.conf")
    log4j = conf_dir() / "log4j2.properties"
    if log4j.is_file():
        java = f"-Dlog4j2.configurationFile={log4j.as_uri()} -Dsql_dl.log.dir={log_dir()}"
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            settings[key] = f"{settings[key]} {java}" if settings.get(key) else java  # keep the conf file's flags
    settings.setdefault("spark.pyspark.python", sys.executable)  # a conf file may name the workers' Python
    # sql-dl's JVM half (the functions' builders, reloads, the audit line) on the driver's class path
    settings["spark.driver.extraClassPath"] = os.pathsep.join(
        filter(None, [settings.get("spark.driver.extraClassPath"), str(extension_classes())]))
    # tables made without a path (CREATE TABLE ... AS SELECT) go to a per-user folder, not ./spark-warehouse
    settings.setdefault("spark.sql.warehouse.dir", str(data_dir() / "warehouse"))
    for key, value in (extra or {}).items():
        if key == "spark.archives" and settings.get(key):
            value = f"{settings[key]},{value}"  # the executor environment and the caller's archives
        elif key.endswith(("extraJavaOptions", "extraClassPath")) and settings.get(key):
            separator = " " if key.endswith("Options") else os.pathsep
            value = settings[key] + separator + value  # add to ours (logging), do not replace it
        settings[key] = value
    return settings


def quiet_pyspark_error_logs() -> None:
    """pyspark logs every failed query as a multi-kilobyte JSON record with the JVM trace, on top of
    raising it; the exception itself carries the message, so those loggers are turned off."""
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def build_session(master: str | None = None, catalog: str | Path | None = "models.yaml",
                  app_name: str = "sql-dl", conf: dict | None = None) -> SparkSession:
    """A SparkSession from sql-dl's Spark settings (master ``local[*]`` unless given) with ``catalog`` registered."""
    if catalog is not None:  # a broken catalog is one line in about a second, before Spark's ~9 s start
        catalog = load_catalog(catalog, allowed_model_dirs((conf or {}).get(MODEL_DIRS_CONF)))
    master = master or os.environ.get("SQL_DL_MASTER", "local[*]")
    conf = dict(conf or {})
    archive = conf.pop(EXECUTOR_ENV_CONF, None) or os.environ.get("SQL_DL_EXECUTOR_ENV")
    if archive and not master.startswith("local"):  # local executors are this process's children: same Python
        conf = {**executor_env_settings(archive), **conf}
        # pyspark gives every Python function the interpreter PYSPARK_PYTHON names (SparkContext.pythonExec)
        os.environ["PYSPARK_PYTHON"] = EXECUTOR_PYTHON
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in spark_settings(conf).items():
        builder = builder.config(key, value)
    with _stderr_to(log_dir() / "jvm-stderr.log"):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    quiet_pyspark_error_logs()
    if catalog is not None:
        spark.sql_dl = register_catalog(spark, catalog)  # type: ignore[attr-defined]
    return spark


__all__ = ["build_session", "Registered"]
