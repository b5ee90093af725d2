"""Driver side: validate each catalog entry's ONNX model and register its SQL functions.

Everything checkable is checked here, before any task runs: the file's sha256,
the model's input rank and size, the output names, the label count, function
names clashing with Spark built-ins. An entry whose ONNX file is absent still
gets its function names, as SQL functions that fail with one line saying how
to supply the model; all other entries register normally.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import SparkSession

from . import runtime
from .catalog import ON_ERROR, Catalog, ModelSpec, allowed_model_dirs, load_catalog
from .describe import describe_function
from .devices import check_devices, cuda_provider, spark_facts
from .errors import CatalogError
from .hooks import load_decoder
from .outputs import load_labels
from .udfs import FEATURES_SQL_TYPE, TOPK_SQL_TYPE, UDF_FACTORIES, Task, error_udf

log = logging.getLogger("sql_dl")
EVENT_LOG_CONF = "spark.sqldl.eventLog"
ON_ERROR_CONF = "spark.sqldl.onError"  # null|fail for every entry of this session, over the catalog's choice
MODEL_DIRS_CONF = "spark.sqldl.modelDirs"  # comma-separated directories models may come from (else any)
ERROR_FUNCTION = "sql_dl_error"  # why an image gives NULL; registered with every catalog
_warned: set = set()
_shipped: set = set()
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


@dataclass(frozen=True)
class ModelInfo:
    sha256: str
    classes: int | None
    feature_size: int | None


def export_record(spec: ModelSpec) -> dict:
    """What `sql-dl models export` recorded beside the file (``<file>.onnx.json``), or {}."""
    path = Path(str(spec.onnx) + ".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        raise CatalogError(f"{spec.where()}: {path.name} is not valid JSON (export the model again)") from None


def expected_sha256(spec: ModelSpec) -> str | None:
    """The catalog's sha256, else the one our exporter recorded beside the file."""
    return spec.sha256 or export_record(spec).get("sha256")


def missing_message(spec: ModelSpec) -> str:
    how = (f"`sql-dl models export {spec.name} --weights pretrained` (downloads) or --weights PATH (a local "
           ".pth/.safetensors)") if spec.source.get("exporter") else "an ONNX file"
    return (f"model '{spec.name}' is not available: {spec.onnx} does not exist; supply it with {how}, "
            f"or copy an ONNX file to that path")


def inspect_model(spec: ModelSpec) -> ModelInfo:
    """Open the model once on the driver and check it against the entry; one-line CatalogError otherwise."""
    import onnxruntime as ort

    actual = runtime.file_sha256(str(spec.onnx))
    expected = expected_sha256(spec)
    if expected and actual != expected:
        raise CatalogError(f"{spec.where()}: sha256 of {spec.onnx.name} is {actual[:12]}..., the catalog expects "
                           f"{expected[:12]}... (file changed or corrupt: export it again or fix sha256)")
    try:
        session = ort.InferenceSession(str(spec.onnx), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise CatalogError(f"{spec.where()}: onnx {spec.onnx.name} cannot be loaded: "
                           f"{str(exc).splitlines()[0]}") from None
    _check_input(spec, session.get_inputs())
    outputs = {o.name: o.shape for o in session.get_outputs()}
    sizes = {}
    for key in ("scores", "features"):
        name = getattr(spec.outputs, key)
        if name is None:
            continue
        if name not in outputs:
            raise CatalogError(f"{spec.where()}: outputs.{key} {name!r} is not an output of the model "
                               f"(it has: {', '.join(outputs)})")
        last = outputs[name][-1] if outputs[name] else None
        sizes[key] = last if isinstance(last, int) else None
    if sizes.get("scores") is not None:
        labels = len(load_labels(spec.labels))
        if labels != sizes["scores"]:
            raise CatalogError(f"{spec.where()}: labels has {labels} names but output {spec.outputs.scores!r} "
                               f"has {sizes['scores']} classes")
    return ModelInfo(actual, sizes.get("scores"), sizes.get("features"))


def _check_input(spec: ModelSpec, inputs: list) -> None:
    if len(inputs) != 1:
        raise CatalogError(f"{spec.where()}: image models take one input; {spec.onnx.name} has {len(inputs)} "
                           f"({', '.join(i.name for i in inputs)})")
    shape = inputs[0].shape
    h, w = spec.input.size
    expected = [None, 3, h, w] if spec.input.layout == "nchw" else [None, h, w, 3]
    if len(shape) != 4:
        raise CatalogError(f"{spec.where()}: the model's input {inputs[0].name!r} has rank {len(shape)} "
                           f"(shape {shape}); input.layout {spec.input.layout} needs rank 4 {expected}")
    for got, want in zip(shape[1:], expected[1:]):
        if isinstance(got, int) and got != want:
            raise CatalogError(f"{spec.where()}: the model's input shape is {shape}, but input.size/layout "
                               f"say {expected}")


def ship_model(spark: SparkSession, spec: ModelSpec, sha256: str) -> None:
    """Send the ONNX file to every executor under its content hash (SparkContext.addFile), so executors need
    no shared filesystem; the executor checks the hash again when it loads the copy."""
    ship_file(spark, spec.onnx, sha256)


def staging_dir() -> Path:
    """Driver-side folder of files shipped to executors (and of models made by the Python API)."""
    staging = Path(tempfile.gettempdir()) / f"sql-dl-{os.getuid()}" / "ship"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def ship_file(spark: SparkSession, onnx: Path, sha256: str) -> None:
    """:func:`ship_model` for any ONNX file whose sha256 is known (Python API models, catalog entries)."""
    target = staging_dir() / runtime.shipped_name(sha256)
    if not target.exists():
        try:
            os.link(onnx, target)  # same filesystem: no copy
        except OSError:
            shutil.copyfile(onnx, target)
    key = (id(spark.sparkContext), sha256)
    if key not in _shipped:
        spark.sparkContext.addFile(str(target))
        _shipped.add(key)


def _system_functions(spark: SparkSession) -> set:
    return {row[0].lower() for row in spark.sql("SHOW SYSTEM FUNCTIONS").collect()}


def _register_unavailable(spark: SparkSession, name: str, kind: str, message: str) -> None:
    """A SQL function that raises ``message`` when called: one line to the user, for binary or struct input."""
    literal = message.replace("\\", "\\\\").replace("'", "\\'")
    params, returns = "image STRING", "STRING"
    if kind == "topk":
        params, returns = "image STRING, k INT", TOPK_SQL_TYPE.simpleString()
    elif kind == "featurize":
        returns = FEATURES_SQL_TYPE.simpleString()
    spark.sql(f"CREATE OR REPLACE TEMPORARY FUNCTION {name}({params}) RETURNS {returns} "
              f"RETURN raise_error('{literal}')")


def prepare_task(spark: SparkSession, spec: ModelSpec, decoder: Callable | None = None) -> tuple[ModelInfo, Task]:
    """Check the model on the driver, ship it to executors, and make the Task they run (catalog entries and
    Python API models alike; ``decoder`` is the API's callable preprocessor, else the entry's hook)."""
    info = inspect_model(spec)
    ship_model(spark, spec, info.sha256)
    if decoder is None and spec.input.decoder:
        decoder = load_decoder(spec.input.decoder, spec.where())
    event_log = spark.conf.get(EVENT_LOG_CONF, None) or None
    ref = runtime.ModelRef(spec.name, str(spec.onnx), info.sha256, spec.device, spec.batch_size, event_log)
    on_error = session_on_error(spark) or spec.on_error
    return info, Task(ref, spec.input, spec.outputs, load_labels(spec.labels), decoder, on_error)


def register_catalog(spark: SparkSession, path: str | Path = "models.yaml") -> Registered:
    """Validate the catalog at ``path`` and register every entry's SQL functions in ``spark``.

    Raises :class:`CatalogError` (one line) for an invalid catalog or model. An
    entry whose ONNX file is absent is registered as functions that fail with
    instructions, and one warning names the absent entries.
    """
    catalog = load_catalog(path, allowed_model_dirs(spark.conf.get(MODEL_DIRS_CONF, None) or None))
    builtins = _system_functions(spark)
    _check_devices(spark, catalog)
    session_on_error(spark)  # a bad spark.sqldl.onError fails here, once, before any entry
    result = Registered(catalog)
    for spec in catalog:
        for kind, fn in spec.functions.items():
            if fn in builtins:
                raise CatalogError(f"{spec.where()}: functions.{kind} '{fn}' clashes with Spark's built-in "
                                   f"function of that name; choose another name")
        if not spec.available:
            _register_missing(spark, spec, result)
            continue
        info, task = prepare_task(spark, spec)
        for kind, fn in spec.functions.items():
            spark.udf.register(fn, UDF_FACTORIES[kind](task))
            describe_function(spark, fn, kind, spec, info.sha256, info.classes, info.feature_size)
            result.functions[fn] = (spec.name, kind)
        result.models[spec.name] = info
        result.tasks[spec.name] = task
    spark.udf.register(ERROR_FUNCTION, error_udf())
    _warn_missing(result)
    _registrations.setdefault(spark.sparkContext, []).append(result)
    return result


def _check_devices(spark: SparkSession, catalog: Catalog) -> None:
    """Refuse device: cuda that cannot run here; warn once when auto entries fall back from a usable GPU."""
    available = [spec for spec in catalog if spec.available]
    if not any(spec.device != "cpu" for spec in available):
        return
    conf, local = spark_facts(spark)
    warning = check_devices(available, conf, local, cuda_provider())
    if warning and warning not in _warned:
        _warned.add(warning)
        log.warning("%s", warning)


def session_on_error(spark: SparkSession) -> str | None:
    """The session's bad-image policy (spark.sqldl.onError), or None to use each entry's on_error."""
    value = (spark.conf.get(ON_ERROR_CONF, None) or "").strip().lower() or None
    if value is not None and value not in ON_ERROR:
        raise CatalogError(f"{ON_ERROR_CONF} must be one of {'|'.join(ON_ERROR)}, got {value!r}")
    return value


def registrations(spark: SparkSession) -> list:
    """Every :class:`Registered` catalog of this session's SparkContext, oldest first."""
    return list(_registrations.get(spark.sparkContext, []))


def _warn_missing(result: Registered) -> None:
    """One warning naming each missing entry once (per process): one line, not one per entry."""
    new = [name for name in result.missing if (str(result.catalog.path), name) not in _warned]
    _warned.update((str(result.catalog.path), name) for name in new)
    if len(new) == 1:
        log.warning("%s", result.missing[new[0]])
    elif new:
        log.warning("%d models have no ONNX file yet: %s; their functions fail until you run `sql-dl models "
                    "export NAME` (`sql-dl models list` shows them)", len(new), ", ".join(new))


def _register_missing(spark: SparkSession, spec: ModelSpec, result: Registered) -> None:
    message = missing_message(spec)
    result.missing[spec.name] = message
    for kind, fn in spec.functions.items():
        _register_unavailable(spark, fn, kind, message)
        result.functions[fn] = (spec.name, kind)
