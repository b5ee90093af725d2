"""``sqldl://`` for SQLAlchemy: PyHive's ``hive://`` dialect, with table and view listing that reads Spark's
answers, for BI tools (Apache Superset and others) that browse `sql-dl serve` through SQLAlchemy.

Spark's ``SHOW TABLES`` and ``SHOW VIEWS`` give ``namespace, tableName, isTemporary`` where Hive gives the
name alone, so ``hive://`` lists every table as ``''``. Everything else (connections, queries, columns) is
PyHive's. Install with ``pip install 'sql-dl[bi]'``; the URL is ``sqldl://USER@HOST:PORT/DATABASE``.
"""
from __future__ import annotations

from pyhive.sqlalchemy_hive import HiveDialect
from sqlalchemy import text


class SqlDlDialect(HiveDialect):
    name = "sqldl"
    supports_statement_cache = True  # it compiles SQL exactly as its parent does

    def _names(self, connection, statement: str, schema: str | None) -> list[str]:
        if schema:
            statement += " IN " + self.identifier_preparer.quote_identifier(schema)
        return [row[1] for row in connection.execute(text(statement))]  # namespace, name, isTemporary

    def get_view_names(self, connection, schema=None, **kw) -> list[str]:
        return self._names(connection, "SHOW VIEWS", schema)

    def get_table_names(self, connection, schema=None, **kw) -> list[str]:
        """Tables only: Spark's SHOW TABLES lists views too."""
        views = set(self.get_view_names(connection, schema))
        return [name for name in self._names(connection, "SHOW TABLES", schema) if name not in views]
