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


class ImageDecodeError(SqlDlError, ValueError):
    """One row's image could not be decoded; the row becomes NULL by default."""
