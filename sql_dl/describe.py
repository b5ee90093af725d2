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

from .catalog import ModelSpec

log = logging.getLogger("sql_dl")

USAGE = {
    "predict": "_FUNC_(image) - the top-1 label (STRING) of model '{name}'.",
    "topk": "_FUNC_(image, k) - the k best labels of model '{name}' as ARRAY<STRUCT<label: STRING, index: INT, "
            "score: FLOAT>>, best first; scores are probabilities.",
    "featurize": "_FUNC_(image) - the pooled features (ARRAY<FLOAT>, {features} values) of model '{name}'.",
}
ARGUMENTS = """
    Arguments:
      * image - encoded image bytes (binaryFile's content) or the struct of Spark's image data source
{k}  """
EXAMPLES = """
    Examples:
      > SELECT path, _FUNC_({args}) FROM binaryFile.`photos/*.jpg`;
  """


def note(spec: ModelSpec, sha256: str, classes: int | None) -> str:
    labels = spec.labels if spec.labels == "imagenet" else spec.labels.rsplit("/", 1)[-1]
    lines = [f"model: {spec.name}", f"input: {spec.input.describe()}",
             f"labels: {labels} ({classes if classes is not None else '?'} classes)",
             f"source: {', '.join(f'{k}={v}' for k, v in spec.source.items()) or 'an ONNX file'}",
             f"onnx: {spec.onnx}", f"sha256: {sha256}", f"device: {spec.device}, batch size {spec.batch_size}"]
    return "\n" + "".join(f"    {line}\n" for line in lines) + "  "


def describe_function(spark: SparkSession, function: str, kind: str, spec: ModelSpec, sha256: str,
                      classes: int | None, features: int | None) -> None:
    """Replace the empty description Spark gave the Python UDF ``function`` (best effort)."""
    try:
        jvm = spark._jvm
        registry = spark._jsparkSession.sessionState().functionRegistry()
        identifier = next(k for k in _keys(registry) if k.funcName() == function)
        builder = registry.lookupFunctionBuilder(identifier).get()
        current = registry.lookupFunction(identifier).get()
        k_line = "      * k - how many labels (INT)\n" if kind == "topk" else ""
        info = jvm.org.apache.spark.sql.catalyst.expressions.ExpressionInfo(
            current.getClassName(), None, function,
            USAGE[kind].format(name=spec.name, features=features or "?"),
            ARGUMENTS.format(k=k_line), EXAMPLES.format(args="content, 5" if kind == "topk" else "content"),
            note(spec, sha256, classes), "", "", "", "python_udf")
        registry.registerFunction(identifier, info, builder)
    except Exception as exc:  # noqa: BLE001 - descriptions are documentation, never a reason to fail
        log.debug("could not describe %s: %s", function, exc)


def _keys(registry):
    iterator = registry.listFunction().iterator()
    while iterator.hasNext():
        yield iterator.next()
