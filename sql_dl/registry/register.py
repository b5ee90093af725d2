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
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import SparkSession

from ..catalog import allowed_model_dirs, load_catalog
from ..errors import CatalogError
from ..paths import state_dir
from ..executor.udfs import Task
from ..spark_conf import conf_dir, read_spark_defaults
from ..specs import Catalog, ModelSpec
from .devices import check_devices, cuda_provider, nvidia_present, spark_facts
from .inspect import ModelInfo, missing_warning, random_weights_warning
from .jvm_functions import jvm_functions
from .records import write_records
from .shipping import ship_file
from .tasks import (BACKEND_CONF, ON_ERROR_CONF, Prepared, Settings, check_backend, check_on_error, make_task,
                    prepare_versions)

log = logging.getLogger("sql_dl")
EVENT_LOG_CONF = "spark.sqldl.eventLog"
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


def session_settings(spark: SparkSession) -> Settings:
    return Settings(spark.conf.get(EVENT_LOG_CONF, None) or None, session_on_error(spark),
                    spark.conf.get(MODEL_DIRS_CONF, None) or None, check_backend(spark.conf.get(BACKEND_CONF, None)))


def prepare_task(spark: SparkSession, spec: ModelSpec, decoder: Callable | None = None) -> tuple[ModelInfo, Task]:
    """:func:`make_task` with the session's settings, and the model shipped to its executors."""
    info, task = make_task(spec, session_settings(spark), decoder)
    ship_file(spark, spec.onnx, info.sha256)
    return info, task


def register_catalog(spark: SparkSession, path: str | Path | Catalog = "models.yaml") -> Registered:
    """Validate the catalog at ``path`` (or take one already loaded) and register every entry's SQL functions
    in ``spark``: each entry's own functions (its default version), the model-as-argument functions
    (``ml_predict``, ...), ``sql_dl_error`` and the models table (``sql_dl_models``).

    The functions follow the catalog file: when it changes, the next query plans with the new aliases and
    entries (a file that no longer validates leaves these in place). Raises :class:`CatalogError` (one line)
    for an invalid catalog or model. An entry whose ONNX file is absent is registered as functions that fail
    with instructions, and one warning names the absent entries.
    """
    catalog = path if isinstance(path, Catalog) else load_catalog(
        path, allowed_model_dirs(spark.conf.get(MODEL_DIRS_CONF, None) or None))
    _check_devices(spark, catalog)
    session_on_error(spark)  # a bad spark.sqldl.onError fails here, once, before any entry
    for spec in catalog:
        for kind, fn in spec.functions.items():
            if is_builtin(spark, fn):
                raise CatalogError(f"{spec.where()}: functions.{kind} '{fn}' clashes with Spark's built-in "
                                   f"function of that name; choose another name")
    settings = session_settings(spark)
    prepared = prepare_versions(catalog, settings)
    result = _registered(catalog, prepared)
    earlier = [(name, task.input, task.decoder) for registered in registrations(spark)
               for name, task in registered.tasks.items() if name not in result.tasks]
    for item in prepared:
        if item.info is not None:
            ship_file(spark, item.spec.onnx, item.info.sha256)
            if item.info.random_weights:
                _warn_once(random_weights_warning(item.spec))
    with tempfile.TemporaryDirectory(prefix="sql-dl-records-") as folder:
        records = Path(folder) / "records.txt"
        write_records(catalog, prepared, records, error_entries=earlier, warnings=False)
        problem = jvm_functions(spark).install(spark._jsparkSession, str(catalog.path), str(records),
                                               (settings.event_log, settings.on_error, settings.model_dirs,
                                                settings.backend))
    if problem:
        _warn_once(problem)
    _warn_missing(result)
    _apply_file_listing_setting(spark)
    _registrations.setdefault(spark.sparkContext, []).append(result)
    return result


# A glob over more files than this is listed by a Spark job, one task per file, instead of on the driver; Spark's
# default (32) makes every query over a folder of photos pay that job: in a session built with only
# SparkSession.builder, EfficientNet-Lite0 over 256 files answered at 66 img/s, and at 108 with this setting
# (bench/user_session.py). Its value is sql-dl's spark-defaults.conf's.
LISTING = "spark.sql.sources.parallelPartitionDiscovery.threshold"


def _apply_file_listing_setting(spark: SparkSession) -> None:
    """Give a session the user built sql-dl's file-listing threshold, unless the user set one."""
    if spark.conf.get(LISTING, None) is None:
        value = read_spark_defaults(conf_dir() / "spark-defaults.conf").get(LISTING)
        if value:
            spark.conf.set(LISTING, value)
            log.info("%s=%s: a glob's files are listed on the driver (set it before registering to keep "
                     "another value)", LISTING, value)


def _registered(catalog: Catalog, prepared: list[Prepared]) -> Registered:
    """What the Python API and the pyspark.ml Transformers read: each entry's default version."""
    result = Registered(catalog)
    for item in prepared:
        spec = item.spec
        if "default" not in spec.aliases:
            continue
        for kind, fn in spec.functions.items():
            result.functions[fn] = (spec.name, kind)
        if item.missing:
            result.missing[spec.name] = item.missing
        else:
            result.models[spec.name], result.tasks[spec.name] = item.info, item.task
    return result


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
