"""sql-dl's Spark settings file: ``sql_dl/conf/spark-defaults.conf`` (package data), or the folder
``SQL_DL_CONF_DIR`` names. Read by the sessions sql-dl builds, by ``sql-dl extension``, and by
``register_catalog`` for the one setting it gives sessions the user built."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_CONF = Path(__file__).resolve().parent / "conf"


def conf_dir() -> Path:
    """The folder holding spark-defaults.conf and log4j2.properties."""
    return Path(os.environ.get("SQL_DL_CONF_DIR", PACKAGE_CONF))


def read_spark_defaults(path: Path) -> dict:
    """``key value`` lines, as in Spark's own spark-defaults.conf; # starts a comment."""
    settings = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                key, _, value = line.partition(" ")
                settings[key] = value.strip()
    return settings
