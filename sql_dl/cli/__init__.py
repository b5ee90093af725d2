"""The `sql-dl` command: the SQL shell, model management, the Thrift server and its password check."""
