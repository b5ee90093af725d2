"""The small exception tree of sql-dl.

Every error a user can cause is one of these, and its message is one line that
names what was wrong and where. Surfaces (CLI, server) print ``str(exc)`` and
nothing else; only bugs reach a user as a traceback.
"""


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
    if "Traceback (most recent call last)" in text:  # a Python worker failed: keep its final error line
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
        errors = [ln for ln in lines if ln.split(":")[0].rsplit(".", 1)[-1].endswith(("Error", "Exception"))]
        text = errors[-1] if errors else lines[-1]
        return text.split(": ", 1)[1] if text.split(":")[0].startswith("sql_dl.") else text
    first = first_line(exc).replace("[USER_RAISED_EXCEPTION] ", "")
    return first.split(" SQLSTATE:")[0].rstrip(" ;")
