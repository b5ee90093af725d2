"""The texts `DESCRIBE FUNCTION EXTENDED` shows for each function: usage, arguments, examples, and the model
card (model, version, input, labels, source, sha256). They travel in the records (:mod:`.records`) and
become each function's ``ExpressionInfo`` in the JVM, so a BI tool or beeline user can learn them over JDBC.
"""
from __future__ import annotations

from ..executor.kinds import Kind
from ..specs import ModelSpec
from .inspect import ModelInfo


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
             f"onnx: {spec.onnx}", f"sha256: {info.sha256}", f"device: {spec.device}, batch size {spec.batch_size}",
             f"backend: {_backend_text(info.backend or spec.backend)}, precision {spec.precision}"]
    return "\n" + "".join(f"    {line}\n" for line in lines) + "  "


def _backend_text(backend: str) -> str:
    if backend != "auto":
        return backend
    return ("auto (each executor times the installed runtimes on this input at first load and keeps the faster; "
            "the event log records the choice)")


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
    usage = head.replace("_FUNC_(", "_FUNC_(model, ") + ") - " + rest.replace("model '{model}'", "the model") \
        .replace(", {features} values", "")
    extra = "".join(f"      * {arg.name} - {arg.text}\n" for arg in kind.args)
    return {"usage": usage, "arguments": GENERIC_ARGUMENTS.format(extra=extra),
            "examples": EXAMPLES.format(args="'efficientnet_lite0@default', " + kind.example_args),
            "note": GENERIC_NOTE}
