"""The Python half of the Spark extension: a catalog's functions, serialized the way Spark's JVM runs them.

``SqlDlExtensions`` (the JVM half, ``spark.sql.extensions``) runs ``python -m sql_dl.extension`` once per
JVM, when the first Spark session starts. This module then does what :func:`sql_dl.registry.register_catalog`
does, minus Spark: it validates the catalog, checks every model, stages each ONNX file under its content
hash, and writes one record per SQL function: the Arrow UDF pickled exactly as pyspark pickles one for the
JVM (``(function, return type)``, cloudpickle), its eval type, return type and DESCRIBE FUNCTION texts. The
JVM builds Spark's own Python UDF expression from each record in every session, and ships the staged
files with ``SparkContext.addFile``. The functions therefore run as they do when registered from Python:
the same executor code, model cache and NULL-with-reason policy.

The record file is text, one record a line, tab-separated fields each base64-encoded (so any bytes and
newlines travel): ``function``, ``expression`` (a function whose model is absent: SQL that fails with
one line), ``ship`` (a staged model file), ``warning``.
"""
from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Iterator

from pyspark.serializers import CloudPickleSerializer

from ..catalog import allowed_model_dirs, load_catalog
from ..executor.kinds import ERROR, KINDS, Kind, error_task
from ..registry.describe import description
from ..registry.inspect import missing_message, missing_warning, random_weights_warning
from ..registry.register import Settings, make_task
from ..registry.shipping import stage_file

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def _record(*fields: str | bytes) -> str:
    return "\t".join(base64.b64encode(f.encode() if isinstance(f, str) else f).decode() for f in fields) + "\n"


def function_record(name: str, kind: Kind, udf, text: dict) -> str:
    """One SQL function as the JVM needs it; the python that runs it is the one preparing it, unless
    spark.pyspark.python says otherwise (the JVM decides)."""
    command = CloudPickleSerializer().dumps((udf.func, udf.returnType))
    return _record("function", name, udf.returnType.json(), str(udf.evalType), command, text["usage"],
                   text["arguments"], text["examples"], text["note"], PYTHON_VERSION, sys.executable)


def unavailable_record(name: str, kind: Kind, message: str, text: dict) -> str:
    """A function that fails with ``message`` in one line, typed like ``kind``: SQL the JVM parses."""
    literal = message.replace("\\", "\\\\").replace("'", "\\'")
    sql = f"CAST(raise_error('{literal}') AS {kind.returns.simpleString()})"
    return _record("expression", name, sql, text["usage"], text["arguments"], text["examples"], text["note"])


def records(catalog_path: str, settings: Settings) -> Iterator[str]:
    """Every record for the catalog at ``catalog_path``; raises SqlDlError (one line) for a bad catalog."""
    catalog = load_catalog(catalog_path, allowed_model_dirs(settings.model_dirs))
    entries, missing = [], []
    for spec in catalog:
        if not spec.available:
            missing.append(spec.name)
            for kind, function in spec.functions.items():
                yield unavailable_record(function, KINDS[kind], missing_message(spec), description(KINDS[kind], spec))
            continue
        info, task = make_task(spec, settings)
        if info.random_weights:
            yield _record("warning", random_weights_warning(spec))
        yield _record("ship", str(stage_file(spec.onnx, info.sha256)))
        for kind, function in spec.functions.items():
            udf = KINDS[kind].udf(task, function)
            yield function_record(function, KINDS[kind], udf, description(KINDS[kind], spec, info))
        entries.append((spec.name, task.input, task.decoder))
    yield function_record(ERROR.sql_name, ERROR, ERROR.udf(error_task(entries)), description(ERROR))
    if missing:
        yield _record("warning", missing_warning(missing, catalog.path))


def prepare(catalog_path: str, out: str | Path, settings: Settings) -> None:
    """Write the records to ``out`` (atomically: the JVM never reads half a file)."""
    text = "".join(records(catalog_path, settings))
    partial = Path(f"{out}.part")
    partial.write_text(text, encoding="ascii")
    partial.replace(out)
