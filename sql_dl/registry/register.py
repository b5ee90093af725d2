"""Driver side: validate each catalog entry's ONNX model and register its SQL functions.

Everything checkable is checked here, before any task runs: the file's sha256,
the model's input rank and size, the output names, the label count, function
names clashing with Spark built-ins. An entry whose ONNX file is absent still
gets its function names, as SQL functions that fail with one line saying how
to supply the model; all other entries register normally.
"""
from __future__ import annotations

import hashlib
import json
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import SparkSession

from ..catalog import ON_ERROR, allowed_model_dirs, load_catalog
from ..errors import CatalogError
from ..executor import runtime
from ..paths import state_dir
from ..executor.kinds import ERROR, KINDS, error_task
from ..executor.outputs import load_labels
from ..executor.udfs import Task
from ..specs import Catalog, ModelSpec
from .describe import describe_function
from .devices import check_devices, cuda_provider, nvidia_present, spark_facts
from .hooks import load_decoder
from .inspect import ModelInfo, inspect_model, missing_message, missing_warning, random_weights_warning
from .shipping import ship_file

log = logging.getLogger("sql_dl")
EVENT_LOG_CONF = "spark.sqldl.eventLog"
ON_ERROR_CONF = "spark.sqldl.onError"  # null|fail for every entry of this session, over the catalog's choice
MODEL_DIRS_CONF = "spark.sqldl.modelDirs"  # comma-separated directories models may come from (else any)
_warned: set = set()
# SparkContext -> the Registered results of its register_catalog calls, oldest first: the pyspark.ml
# Transformers and the Python API look catalog entries up here (weak: a stopped context is forgotten)
_registrations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Registered:
    """What :func:`register_catalog` did: SQL function -> (entry, kind), and unavailable entries -> reason."""

    catalog: Catalog
    functions: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # entry -> ModelInfo, for available entries
    tasks: dict = field(default_factory=dict)  # entry -> udfs.Task, what executors run (for Python callers)


def is_builtin(spark: SparkSession, name: str) -> bool:
    """Whether ``name`` is one of Spark's built-in functions (asked of the JVM's registry: a SHOW SYSTEM
    FUNCTIONS query costs a second or more in a young session)."""
    jvm = spark._jvm
    identifier = jvm.org.apache.spark.sql.catalyst.FunctionIdentifier(name.lower())
    return bool(jvm.org.apache.spark.sql.catalyst.analysis.FunctionRegistry.builtin().functionExists(identifier))


@dataclass(frozen=True)
class Settings:
    """The spark.sqldl.* settings that shape registration, read once from a session (or given by the JVM)."""

    event_log: str | None = None  # spark.sqldl.eventLog
    on_error: str | None = None  # spark.sqldl.onError: null|fail for every entry, over the catalog's choice
    model_dirs: str | None = None  # spark.sqldl.modelDirs


def session_settings(spark: SparkSession) -> Settings:
    return Settings(spark.conf.get(EVENT_LOG_CONF, None) or None, session_on_error(spark),
                    spark.conf.get(MODEL_DIRS_CONF, None) or None)


def make_task(spec: ModelSpec, settings: Settings, decoder: Callable | None = None) -> tuple[ModelInfo, Task]:
    """Check the model on the driver and make the Task executors run (catalog entries and Python API models
    alike; ``decoder`` is the API's callable preprocessor, else the entry's hook). Needs no Spark."""
    info = inspect_model(spec)
    if decoder is None and spec.input.decoder:
        decoder = load_decoder(spec.input.decoder, spec.where())
    ref = runtime.ModelRef(spec.name, str(spec.onnx), info.sha256, spec.device, spec.batch_size, settings.event_log)
    on_error = check_on_error(settings.on_error) or spec.on_error
    return info, Task(ref, spec.input, spec.outputs, load_labels(spec.labels), decoder, on_error)


def prepare_task(spark: SparkSession, spec: ModelSpec, decoder: Callable | None = None) -> tuple[ModelInfo, Task]:
    """:func:`make_task` with the session's settings, and the model shipped to its executors."""
    info, task = make_task(spec, session_settings(spark), decoder)
    ship_file(spark, spec.onnx, info.sha256)
    return info, task


def register_catalog(spark: SparkSession, path: str | Path | Catalog = "models.yaml") -> Registered:
    """Validate the catalog at ``path`` (or take one already loaded) and register every entry's SQL functions
    in ``spark``.

    Raises :class:`CatalogError` (one line) for an invalid catalog or model. An
    entry whose ONNX file is absent is registered as functions that fail with
    instructions, and one warning names the absent entries.
    """
    catalog = path if isinstance(path, Catalog) else load_catalog(
        path, allowed_model_dirs(spark.conf.get(MODEL_DIRS_CONF, None) or None))
    _check_devices(spark, catalog)
    session_on_error(spark)  # a bad spark.sqldl.onError fails here, once, before any entry
    result = Registered(catalog)
    for spec in catalog:
        for kind, fn in spec.functions.items():
            if is_builtin(spark, fn):
                raise CatalogError(f"{spec.where()}: functions.{kind} '{fn}' clashes with Spark's built-in "
                                   f"function of that name; choose another name")
        if not spec.available:
            _register_missing(spark, spec, result)
            continue
        info, task = prepare_task(spark, spec)
        if info.random_weights:
            _warn_once(random_weights_warning(spec))
        for kind, fn in spec.functions.items():
            spark.udf.register(fn, KINDS[kind].udf(task, fn))
            describe_function(spark, fn, KINDS[kind], spec, info)
            result.functions[fn] = (spec.name, kind)
        result.models[spec.name] = info
        result.tasks[spec.name] = task
    _register_error_function(spark, result)
    _warn_missing(result)
    _registrations.setdefault(spark.sparkContext, []).append(result)
    return result


def _register_error_function(spark: SparkSession, result: Registered) -> None:
    """sql_dl_error knows every entry registered in this Spark session (its decoding and decoder hook)."""
    entries = {name: (name, task.input, task.decoder) for registered in registrations(spark)
               for name, task in registered.tasks.items()}
    entries.update({name: (name, task.input, task.decoder) for name, task in result.tasks.items()})
    spark.udf.register(ERROR.sql_name, ERROR.udf(error_task(list(entries.values()))))
    describe_function(spark, ERROR.sql_name, ERROR)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _check_devices(spark: SparkSession, catalog: Catalog) -> None:
    """Refuse device: cuda that cannot run here; warn once when auto entries fall back from a usable GPU."""
    available = [spec for spec in catalog if spec.available]
    if not any(spec.device != "cpu" for spec in available):
        return
    conf, local = spark_facts(spark)
    warning = check_devices(available, conf, local, cuda_provider(), nvidia_present())
    if warning:
        _warn_once(warning)


def session_on_error(spark: SparkSession) -> str | None:
    """The session's bad-image policy (spark.sqldl.onError), or None to use each entry's on_error."""
    return check_on_error(spark.conf.get(ON_ERROR_CONF, None))


def check_on_error(value: str | None) -> str | None:
    value = (value or "").strip().lower() or None
    if value is not None and value not in ON_ERROR:
        raise CatalogError(f"{ON_ERROR_CONF} must be one of {'|'.join(ON_ERROR)}, got {value!r}")
    return value


def registrations(spark: SparkSession) -> list:
    """Every :class:`Registered` catalog of the SparkContext behind ``spark``, oldest first."""
    return list(_registrations.get(spark.sparkContext, []))


def _warn_missing(result: Registered) -> None:
    """One line naming the entries without a model file, said once per process and, across commands, again
    only when that set changes (remembered per catalog in the user's state folder)."""
    new = [name for name in result.missing if (str(result.catalog.path), name) not in _warned]
    _warned.update((str(result.catalog.path), name) for name in new)
    if not new or not _changed_since_last_said(result.catalog.path, sorted(result.missing)):
        return
    if len(new) == 1:
        log.warning("%s", result.missing[new[0]])
    elif new:
        log.warning("%s", missing_warning(new, result.catalog.path))


def _changed_since_last_said(catalog: Path, missing: list[str]) -> bool:
    state = state_dir() / f"missing-{hashlib.sha256(str(catalog).encode()).hexdigest()[:16]}.json"
    try:
        if state.is_file() and json.loads(state.read_text()) == missing:
            return False
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(missing))
    except (OSError, ValueError):
        pass  # no state folder: say it every time rather than never
    return True


def _register_missing(spark: SparkSession, spec: ModelSpec, result: Registered) -> None:
    message = missing_message(spec)
    result.missing[spec.name] = message
    for kind, fn in spec.functions.items():
        # a Python UDF of the kind's type that fails with the message: one registration call each (a SQL
        # function per name cost ~75 ms of parsing), and it stays typed for queries that use its result
        spark.udf.register(fn, KINDS[kind].unavailable_udf(message, fn))
        result.functions[fn] = (spec.name, kind)
