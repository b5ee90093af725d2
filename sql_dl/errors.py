"""The small exception tree of sql-dl.

Every error a user can cause is one of these, and its message is one line that
names what was wrong and where. Surfaces (CLI, server) print ``str(exc)`` and
nothing else; only bugs reach a user as a traceback.
"""
from __future__ import annotations

import re


class SqlDlError(Exception):
    """Base class: a user-facing problem with a one-line message."""


class CatalogError(SqlDlError, ValueError):
    """The catalog file, or one of its entries, is invalid."""


class ModelUnavailableError(SqlDlError):
    """A catalog entry's ONNX file is absent; the message says how to supply it."""


class ExportError(SqlDlError):
    """A model could not be exported to ONNX (unknown architecture, bad weights, offline)."""


class UsageError(SqlDlError, ValueError):
    """A Python API call (register_image_udf, register_tensor_udf, the Transformers) got arguments that do not fit."""


class ImageDecodeError(SqlDlError, ValueError):
    """One row's image could not be decoded; the row becomes NULL by default."""


def first_line(exc: BaseException, typed: bool = False) -> str:
    """The first line of ``exc``'s message (at most 300 characters), prefixed by its type when ``typed``:
    for errors raised by other libraries, whose messages run to dumps of many lines."""
    text = str(exc).strip()
    line = text.splitlines()[0][:300] if text else ""
    if not line:
        return type(exc).__name__
    return f"{type(exc).__name__}: {line}" if typed else line


def one_line(exc: BaseException) -> str:
    """The one line a user should see for ``exc``: ours as they are, Spark's without JVM or Python traces.

    Spark errors carry ``[CONDITION] message SQLSTATE: x`` plus plan dumps and, for
    Python UDFs, the worker's traceback; the first meaningful line is what matters. The Thrift server
    applies the same rule in Java to what it sends clients (``cli/java/SqlDlOperationManager.java``,
    ``OneLine.line``): keep the two in step.
    """
    if isinstance(exc, SqlDlError):
        return str(exc)
    text = str(exc)
    cause = executor_cause(text)
    if cause:
        return cause
    if "Traceback (most recent call last)" in text:  # a Python worker failed: keep its final error line
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
        errors = [ln for ln in lines if ln.split(":")[0].rsplit(".", 1)[-1].endswith(("Error", "Exception"))]
        text = errors[-1] if errors else lines[-1]
        return text.split(": ", 1)[1] if text.split(":")[0].startswith("sql_dl.") else text
    if text.startswith("An error occurred while calling o"):  # py4j's wrapper: the cause is further down
        text = _jvm_cause(text) or text
    first = first_line(Exception(text)).replace("[USER_RAISED_EXCEPTION] ", "")
    return first.split(" SQLSTATE:")[0].rstrip(" ;")


CLUSTER_DOC = "docs/cluster.md"
SHIP_ENV = (f"ship sql-dl's executor environment (make cluster-env, then spark.sqldl.executorEnv or "
            f"SQL_DL_EXECUTOR_ENV) or pip install sql-dl on every worker ({CLUSTER_DOC})")
MEMORY_FIX = ("raise spark.executor.memoryOverhead (Python workers; spark.executor.pyspark.memory if set) or "
              "lower the entry's batch_size / spark.sql.execution.arrow.maxRecordsPerBatch")
# What an executor-side failure looks like in Spark's error text -> the one line: its cause, then the fix.
_EXECUTOR_CAUSES = [
    (re.compile(r'Cannot run program "([^"]+)": error=\d+, ([^\n]+)'),
     lambda m: f"executors cannot start Python {m[1]} ({m[2].strip()}): the workers lack that interpreter; "
               + SHIP_ENV),
    (re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '([^']+)'", re.M),
     lambda m: f"executors' Python has no module '{m[1]}': " + SHIP_ENV),
    (re.compile(r"^ImportError: ([^\n:]+): failed to map segment from shared object", re.M),
     lambda m: f"a Python worker on an executor ran out of memory loading {m[1]} (its address-space limit, "
               "spark.executor.pyspark.memory, is too small): raise spark.executor.pyspark.memory or unset it"),
    (re.compile(r"^MemoryError\b(.*)$", re.M),
     lambda m: "a Python worker on an executor ran out of memory (MemoryError): " + MEMORY_FIX),
    (re.compile(r"onnxruntime[^\n]*(?:Failed to allocate memory|bad_alloc)[^\n]*"),
     lambda m: "ONNX Runtime on an executor ran out of memory: " + MEMORY_FIX),
    (re.compile(r"java\.lang\.OutOfMemoryError: ([^\n]+)"),
     lambda m: f"an executor JVM ran out of memory (OutOfMemoryError: {m[1].strip()}): raise "
               "spark.executor.memory"),
    (re.compile(r"Python worker exited unexpectedly \(crashed\)"),
     lambda m: "a Python worker on an executor died (crashed or killed; often the kernel's out-of-memory "
               "killer) in every attempt of a task: see the executor's stderr; " + MEMORY_FIX),
    (re.compile(r"ExecutorLostFailure \(([^)]*)\)(?: Reason: ([^\n]+))?"),
     lambda m: f"an executor was lost in every attempt of a task ({m[1]}{': ' + m[2].strip() if m[2] else ''}): "
               "see the worker's log; an executor killed for memory needs a larger spark.executor.memory or "
               "spark.executor.memoryOverhead"),
]


def executor_cause(text: str) -> str | None:
    """The one line for a failure on executors that Spark reports in its job-abort text (missing Python, a
    module missing there, out of memory, a lost executor): the cause and the fix, or None."""
    for pattern, line in _EXECUTOR_CAUSES:
        match = pattern.search(text)
        if match:
            return line(match)
    return None


def _jvm_cause(text: str) -> str | None:
    """py4j's ``An error occurred while calling oN.method.`` hides the cause: the failed task's exception
    (``most recent failure: Lost task ...: <exception>``) or the last ``Caused by:`` line."""
    match = re.search(r"most recent failure: Lost task [^:]*\): ([^\n]+)", text)
    if match:
        return match[1].strip()
    causes = re.findall(r"^Caused by: ([^\n]+)", text, re.M)
    if causes:
        return causes[-1].strip()
    lines = [line for line in text.splitlines()[1:] if line.strip() and not line.lstrip().startswith("at ")]
    return lines[0].lstrip(": ").strip() if lines else None
