"""sql-dl as a Spark extension: the catalog's functions in every Spark session a JVM creates.

Three settings install it (:func:`extension_settings` gives them; ``sql-dl extension`` prints them):
``spark.sql.extensions=sqldl.SqlDlExtensions``, ``spark.driver.extraClassPath`` naming the compiled class,
and ``spark.sqldl.catalog``. The JVM half (``SqlDlExtensions.java``) runs ``python -m sql_dl.extension``
(:mod:`sql_dl.registry.records`) when the first session starts and when the catalog changes, and builds
Spark's own Python UDF expressions from the records it writes, in every session.
"""
from __future__ import annotations

from pathlib import Path

from ..jvm import compile_java

EXTENSION_CLASS = "sqldl.SqlDlExtensions"
SOURCE = Path(__file__).with_name("SqlDlExtensions.java")


def extension_classes() -> Path:
    """The folder to put on the driver's class path (compiled on first use, then cached)."""
    return compile_java(SOURCE, "sqldl/SqlDlExtensions.class")


def extension_settings(catalog: str | Path) -> dict:
    """The Spark settings that put ``catalog``'s functions into every session of a JVM."""
    return {"spark.sql.extensions": EXTENSION_CLASS, "spark.driver.extraClassPath": str(extension_classes()),
            "spark.sqldl.catalog": str(Path(catalog).expanduser().resolve())}
