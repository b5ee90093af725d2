"""The Python half of sql-dl's JVM functions: a catalog's functions, serialized the way Spark's JVM runs them.

``SqlDlExtensions`` (the JVM half) runs ``python -m sql_dl.extension`` when the first Spark session with the
extension starts and whenever the catalog file changes; :func:`sql_dl.registry.register_catalog` writes the
same records in-process. This module validates the catalog, checks every version's model, stages each ONNX
file under its content hash, and writes the records the JVM builds every SQL function from:

- ``udf KEY ...``: one kind of one version (KEY is ``NAME@VERSION/kind``), the Arrow UDF pickled exactly as
  pyspark pickles one for the JVM (``(function, return type)``, cloudpickle), its eval type, return type,
  and its lineage (model, version, sha256) for the audit line;
- ``fail KEY SQL``: a version whose model is absent, as SQL that fails with one line;
- ``function NAME KIND TARGET RETURNS texts``: a SQL name and the KEY it runs (an entry's functions run its
  default version), or no KEY for the model-as-argument functions (``ml_predict``, ...);
- ``ref KIND REF KEY``: what 'NAME', 'NAME@ALIAS' and 'NAME@VERSION' mean to those functions;
- ``ship PATH`` (a staged model file), ``table SQL`` (the models table), ``warning TEXT``.

The file is text, one record a line, tab-separated fields each base64-encoded (so any bytes and newlines
travel). The functions therefore run as they do when registered from Python: the same executor code, model
cache and NULL-with-reason policy.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Iterator

from pyspark.serializers import CloudPickleSerializer

from ..catalog import allowed_model_dirs, load_catalog
from ..executor.kinds import ERROR, KINDS, Kind, error_task
from ..specs import Catalog, ModelSpec
from .describe import description, generic_description
from .inspect import missing_warning, random_weights_warning
from .models_table import model_row, table_sql
from .shipping import stage_file
from .tasks import Prepared, Settings, prepare_versions

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def _record(*fields: str | bytes) -> str:
    return "\t".join(base64.b64encode(f.encode() if isinstance(f, str) else f).decode() for f in fields) + "\n"


def udf_record(key: str, udf, lineage: dict) -> str:
    """A runnable UDF (one kind of one version); the python that runs it is the one preparing it, unless
    spark.pyspark.python says otherwise (the JVM decides)."""
    command = CloudPickleSerializer().dumps((udf.func, udf.returnType))
    fields = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in lineage.items())
    return _record("udf", key, udf.returnType.json(), str(udf.evalType), command, PYTHON_VERSION, sys.executable,
                   fields)


def fail_record(key: str, kind: Kind, message: str) -> str:
    """A version whose model cannot run: SQL failing with ``message`` in one line, typed like ``kind``."""
    literal = message.replace("\\", "\\\\").replace("'", "\\'")
    return _record("fail", key, f"CAST(raise_error('{literal}') AS {kind.returns.simpleString()})")


def function_record(name: str, kind: Kind, target: str, text: dict) -> str:
    """A SQL name: ``target`` is the key it runs, or "" when its first argument names the model."""
    return _record("function", name, kind.name, target, kind.returns.simpleString(), text["usage"],
                   text["arguments"], text["examples"], text["note"])


def version_kinds(spec: ModelSpec) -> list[str]:
    """The kinds a version can run: every per-entry kind whose outputs it has."""
    return [name for name, kind in KINDS.items()
            if kind.per_entry and all(spec.outputs.get(role) for role in kind.needs)]


def key(spec: ModelSpec, kind: str) -> str:
    return f"{spec.ref}/{kind}"


def records(catalog: Catalog, prepared: list[Prepared], error_entries: list | None = None,
            warnings: bool = True) -> Iterator[str]:
    """Every record for ``catalog``'s checked versions. ``error_entries`` adds entries sql_dl_error knows
    besides this catalog's; ``warnings=False`` leaves warnings to the caller (Python registration logs them)."""
    entries, missing, rows, infos = [], [], [], {}
    for item in prepared:
        spec, info, task = item.spec, item.info, item.task
        rows.append(model_row(spec, info, item.missing))
        if item.missing:
            missing.append(spec.ref if len(catalog.versions.get(spec.name, {})) > 1 else spec.name)
            for kind in version_kinds(spec):
                yield fail_record(key(spec, kind), KINDS[kind], item.missing)
            continue
        infos[spec.ref] = info
        if info.random_weights and warnings:
            yield _record("warning", random_weights_warning(spec))
        yield _record("ship", str(stage_file(spec.onnx, info.sha256)))
        lineage = {"model": spec.name, "version": spec.version, "sha256": info.sha256}
        for kind in version_kinds(spec):
            yield udf_record(key(spec, kind), KINDS[kind].udf(task, spec.functions.get(kind)), lineage)
        if "default" in spec.aliases:
            entries.append((spec.name, task.input, task.decoder))
    yield from _names(catalog, infos)
    yield udf_record(ERROR.sql_name, ERROR.udf(error_task((error_entries or []) + entries)), {})
    yield function_record(ERROR.sql_name, ERROR, ERROR.sql_name, description(ERROR))
    yield _record("table", table_sql(rows))
    if missing and warnings:
        yield _record("warning", missing_warning(missing, catalog.path))


def _names(catalog: Catalog, infos: dict) -> Iterator[str]:
    """Each entry's SQL names (its default version), the model-as-argument names, and the refs they accept."""
    for spec in catalog:
        for kind, function in spec.functions.items():
            yield function_record(function, KINDS[kind], key(spec, kind),
                                  description(KINDS[kind], spec, infos.get(spec.ref)))
    for kind in KINDS.values():
        if kind.generic:
            yield function_record(kind.generic, kind, "", generic_description(kind))
    for name, versions in catalog.versions.items():
        refs = {name: catalog.models[name], **{f"{name}@{v}": spec for v, spec in versions.items()},
                **{f"{name}@{a}": versions[v] for a, v in catalog.aliases.get(name, {}).items()}}
        for ref, spec in refs.items():
            for kind in version_kinds(spec):
                yield _record("ref", kind, ref.lower(), key(spec, kind))


def prepare(catalog_path: str | Path, out: str | Path, settings: Settings) -> None:
    """Validate the catalog and write its records to ``out``: what ``python -m sql_dl.extension`` does."""
    catalog = load_catalog(catalog_path, allowed_model_dirs(settings.model_dirs))
    write_records(catalog, prepare_versions(catalog, settings), out)


def write_records(catalog: Catalog, prepared: list[Prepared], out: str | Path, **options) -> None:
    """The records to ``out``, atomically: the JVM never reads half a file."""
    text = "".join(records(catalog, prepared, **options))
    partial = Path(f"{out}.part")
    partial.write_text(text, encoding="ascii")
    partial.replace(out)
