"""Give each registered function the text `DESCRIBE FUNCTION EXTENDED` shows: model, input, labels, sha256.

Spark registers Python UDFs with an empty description ("Usage: N/A."). Here the
same function builder is registered again under an ``ExpressionInfo`` that says
what the function computes and from which model, so a BI tool or beeline user can
learn it over JDBC. This reaches into Spark's function registry through py4j; if
a Spark version changes that, the functions still work and only lose their text.
"""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from ..executor.kinds import Kind
from ..specs import ModelSpec
from .inspect import ModelInfo

log = logging.getLogger("sql_dl")
PYTHON_UDF_CLASS = "org.apache.spark.sql.execution.python.UserDefinedPythonFunction"

ARGUMENTS = """
    Arguments:
      * image - encoded image bytes (binaryFile's content) or the struct of Spark's image data source
{extra}  """
EXAMPLES = """
    Examples:
      > SELECT path, _FUNC_({args}) FROM binaryFile.`photos/*.jpg`;
  """


def note(spec: ModelSpec, info: ModelInfo) -> str:
    """The model card: which model, file and preprocessing a function runs."""
    labels = spec.labels if spec.labels == "imagenet" else spec.labels.rsplit("/", 1)[-1]
    classes = info.classes if info.classes is not None else "?"
    aliases = f" (aliases: {', '.join(spec.aliases)})" if spec.aliases else ""
    lines = [f"model: {spec.name}", f"version: {spec.version}{aliases}", f"input: {spec.input.describe()}", f"labels: {labels} ({classes} classes)",
             f"source: {', '.join(f'{k}={v}' for k, v in spec.source.items()) or 'an ONNX file'}"
             + (" -- exported with RANDOM weights: its answers mean nothing" if info.random_weights else ""),
             f"onnx: {spec.onnx}", f"sha256: {info.sha256}", f"device: {spec.device}, batch size {spec.batch_size}"]
    return "\n" + "".join(f"    {line}\n" for line in lines) + "  "


def description(kind: Kind, spec: ModelSpec | None = None, info: ModelInfo | None = None) -> dict:
    """ExpressionInfo's texts for a function of ``kind``: usage, arguments, examples, note (the model card)."""
    usage = kind.usage.format(model=spec.name if spec else "", features=(info and info.feature_size) or "?")
    extra = "".join(f"      * {arg.name} - {arg.text}\n" for arg in kind.args)
    return {"usage": usage, "arguments": ARGUMENTS.format(extra=extra),
            "examples": EXAMPLES.format(args=kind.example_args),
            "note": note(spec, info) if spec is not None and info is not None else ""}


GENERIC_ARGUMENTS = """
    Arguments:
      * model - a constant STRING: 'NAME' (its default version), 'NAME@ALIAS' or 'NAME@VERSION'
      * image - encoded image bytes (binaryFile's content) or the struct of Spark's image data source
{extra}  """
GENERIC_NOTE = """
    The model is resolved once per query, when it is planned: every row of a query runs the same version,
    even if the catalog's aliases move while it runs. SELECT * FROM sql_dl_models lists names, versions
    and aliases.
  """


def generic_description(kind: Kind) -> dict:
    """The texts of ``kind``'s model-as-argument function (ml_predict, ...)."""
    head, _, rest = kind.usage.partition(") - ")
    usage = head.replace("_FUNC_(", "_FUNC_(model, ") + ") - " + rest.format(model="<model>", features="N")
    extra = "".join(f"      * {arg.name} - {arg.text}\n" for arg in kind.args)
    return {"usage": usage, "arguments": GENERIC_ARGUMENTS.format(extra=extra),
            "examples": EXAMPLES.format(args="'efficientnet_lite0@default', " + kind.example_args),
            "note": GENERIC_NOTE}


def describe_function(spark: SparkSession, function: str, kind: Kind, spec: ModelSpec | None = None,
                      info: ModelInfo | None = None) -> None:
    """Replace the empty description Spark gave the Python UDF ``function`` (best effort)."""
    text = description(kind, spec, info)
    try:
        jvm = spark._jvm
        registry = spark._jsparkSession.sessionState().functionRegistry()
        some = jvm.scala.Some
        # temporary functions live under system.session (Spark 4); built in one step instead of a scan of
        # every registered function, which cost ~0.1 s per function over py4j
        identifier = jvm.org.apache.spark.sql.catalyst.FunctionIdentifier(function, some("session"), some("system"))
        builder = registry.lookupFunctionBuilder(identifier).get()
        # the class DESCRIBE FUNCTION shows: what runs it (Spark's own Python UDF), not a registration lambda
        info_object = jvm.org.apache.spark.sql.catalyst.expressions.ExpressionInfo(
            PYTHON_UDF_CLASS, None, function, text["usage"], text["arguments"], text["examples"],
            text["note"], "", "", "", "python_udf")
        registry.registerFunction(identifier, info_object, builder)
    except Exception as exc:  # noqa: BLE001 - descriptions are documentation, never a reason to fail
        log.debug("could not describe %s: %s", function, exc)
