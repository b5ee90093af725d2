"""The `sql-dl sql` shell: statement splitting, result formatting, the interactive prompt."""
from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, TextIO

import numpy as np

from ..errors import SqlDlError, one_line

FORMATS = ("table", "json", "csv")
HISTORY = Path(os.environ.get("SQL_DL_HISTORY", Path.home() / ".sql_dl_history"))


def split_statements(text: str) -> list[str]:
    """Split SQL on ``;`` outside quotes, backticks and ``--`` comments; drop empty statements."""
    statements, current, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`" and i + 1 < len(text):
                current.append(text[i:i + 2])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def is_complete(buffer: str) -> bool:
    """A prompt buffer is complete when it ends with ``;`` outside quotes."""
    stripped = buffer.rstrip()
    return stripped.endswith(";") and len(split_statements(stripped + " x")) > len(split_statements(stripped))


def plain(value: Any) -> Any:
    """A Spark value as JSON-able data: Rows to objects, bytes to a short hex note, times to ISO."""
    if hasattr(value, "asDict"):
        return {k: plain(v) for k, v in value.asDict(recursive=False).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return "NULL"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def narrow(value: Any, data_type: Any) -> Any:
    """A plain value with every FLOAT (float32) shown as float32 holds it: 0.95424354, not the double
    0.954243540763855 pyspark hands over (JDBC clients print the former)."""
    from pyspark.sql.types import ArrayType, FloatType, MapType, StructType

    if value is None:
        return None
    if isinstance(data_type, FloatType):
        return float(str(np.float32(value)))
    if isinstance(data_type, ArrayType):
        return [narrow(v, data_type.elementType) for v in value]
    if isinstance(data_type, StructType):
        return {f.name: narrow(value.get(f.name), f.dataType) for f in data_type.fields}
    if isinstance(data_type, MapType):
        return {k: narrow(v, data_type.valueType) for k, v in value.items()}
    return value


def write_rows(columns: list[str], rows: Iterable, fmt: str, out: TextIO, types: list | None = None) -> None:
    """``types``: the columns' Spark types, when known (FLOAT columns are then shown as float32)."""
    if types is not None:
        rows = [[narrow(plain(v), t) for v, t in zip(row, types)] for row in rows]
    if fmt == "json":  # one JSON object per row, keys = column names
        for row in rows:
            out.write(json.dumps({c: plain(v) for c, v in zip(columns, row)}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _cell(v) for v in row])
    else:
        _write_table(columns, [[_cell(v) for v in row] for row in rows], out)


def _write_table(columns: list[str], cells: list[list[str]], out: TextIO) -> None:
    """A text table; a cell of several lines (DESCRIBE FUNCTION's text) spans as many table lines."""
    lines_of = [[cell.splitlines() or [""] for cell in row] for row in cells]
    widths = [max([len(c)] + [len(piece) for r in lines_of for piece in r[i]]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt_row = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
    body = [fmt_row([cell[i] if i < len(cell) else "" for cell in row])
            for row in lines_of for i in range(max(len(cell) for cell in row))]
    out.write("\n".join([line, fmt_row(columns), line, *body, line]) + "\n")
    out.write(f"({len(cells)} row{'s' if len(cells) != 1 else ''})\n")


class Progress:
    """While a query runs longer than ``delay`` seconds, show its Spark stage and task counts on one line."""

    def __init__(self, spark: Any, err: TextIO, delay: float = 1.0, interval: float = 0.5):
        self.tracker, self.err, self.delay, self.interval = spark.sparkContext.statusTracker(), err, delay, interval
        self.done = threading.Event()
        self.shown = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Progress":
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.thread.join()
        if self.shown:
            self.err.write("\r\033[K")
            self.err.flush()

    def _run(self) -> None:
        if self.done.wait(self.delay):
            return
        while not self.done.is_set():
            stages = [self.tracker.getStageInfo(s) for s in self.tracker.getActiveStageIds()]
            parts = [f"stage {s.stageId}: {s.numCompletedTasks}/{s.numTasks} tasks" for s in stages if s]
            if parts:
                self.err.write("\r\033[K[" + "; ".join(parts) + "]")
                self.err.flush()
                self.shown = True
            self.done.wait(self.interval)


class QueryCancelled(SqlDlError):
    """Ctrl-C stopped the running query (its Spark jobs were cancelled); the session goes on."""


def _run_cancellably(spark: Any, statement: str) -> tuple[list, list, list]:
    """(columns, rows, column types) of ``statement``, run in a thread under its own Spark job group, so that Ctrl-C here
    cancels the query's jobs (tasks interrupted, Python workers freed) instead of breaking py4j mid-call."""
    group, result = f"sql-dl-{uuid.uuid4().hex}", {}

    def work() -> None:
        try:
            spark.sparkContext.setJobGroup(group, statement[:200], interruptOnCancel=True)
            frame = spark.sql(statement)
            result["rows"], result["columns"] = frame.collect(), frame.columns
            result["types"] = [field.dataType for field in frame.schema.fields]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            result["error"] = exc

    thread = threading.Thread(target=work, name="sql-dl query", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        spark.sparkContext.cancelJobGroup(group)
        thread.join()
        raise QueryCancelled("query cancelled (Ctrl-C)") from None
    if "error" in result:
        raise result["error"]
    return result["columns"], result["rows"], result["types"]


def run_statement(spark: Any, statement: str, fmt: str, out: TextIO = sys.stdout, progress: TextIO | None = None
                  ) -> None:
    with Progress(spark, progress) if progress is not None else contextlib.nullcontext():
        columns, rows, types = _run_cancellably(spark, statement)
    if columns and (rows or fmt != "json"):
        write_rows(columns, rows, fmt, out, types)


def run_script(spark: Any, text: str, fmt: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
               progress: bool = False) -> int:
    """Run each statement; stop at the first error with one line on ``err``; return the exit code."""
    for statement in split_statements(text):
        try:
            run_statement(spark, statement, fmt, out, err if progress else None)
        except QueryCancelled as exc:
            err.write(f"sql-dl: {exc}\n")
            return 130  # as shells report a command stopped by SIGINT
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line and exit code 1
            err.write(f"sql-dl: error: {one_line(exc)}\n")
            return 1
    return 0


def _say_catalog_changes(spark: Any) -> None:
    """What the catalog watcher did since the last prompt (a reload, or a broken edit it refused)."""
    from ..registry.jvm_functions import jvm_functions

    try:
        said = jvm_functions(spark).drain_messages()
    except Exception:  # noqa: BLE001 - a message channel, never a reason to stop the prompt
        return
    for line in said.splitlines():
        print(line, file=sys.stderr)


def interactive(spark: Any, fmt: str, progress: bool = False) -> int:
    """A prompt: statements end with ``;``, history in ~/.sql_dl_history, errors do not end the session."""
    try:
        import readline
    except ImportError:
        readline = None  # type: ignore[assignment]
    if readline is not None and HISTORY.is_file():  # a first run has no history yet: it is written at the end
        try:
            readline.read_history_file(HISTORY)
        except OSError:
            pass
    buffer = ""
    while True:
        if not buffer:
            _say_catalog_changes(spark)
        try:
            line = input("sql-dl> " if not buffer else "     -> ")
        except EOFError:
            print()  # Ctrl-D: leave the user's shell prompt on a line of its own
            break
        except KeyboardInterrupt:
            buffer = ""
            print()
            continue
        if not buffer and line.strip().lower() in ("quit", "exit", "quit;", "exit;"):
            break
        buffer += line + "\n"
        if is_complete(buffer):
            try:
                run_script(spark, buffer, fmt, progress=progress)
            except KeyboardInterrupt:  # between statements, while printing: drop the rest, keep the session
                print()
            buffer = ""
    if readline is not None:
        try:
            readline.write_history_file(HISTORY)
        except OSError:
            pass
    return 0


__all__ = ["FORMATS", "interactive", "run_script", "split_statements", "write_rows"]
