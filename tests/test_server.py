"""`sql-dl serve` with real clients: beeline (JDBC) and PyHive against a real multi-session server process,
and a pyspark Spark Connect client against `sql-dl serve --connect`."""
from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import CATALOG, ROOT
from sql_dl.catalog import load_catalog
from sql_dl.cli.command import main
from sql_dl.registry.inspect import missing_message

pytest.importorskip("pyhive")
from pyhive import hive  # noqa: E402

SQL_DL = str(Path(sys.executable).with_name("sql-dl"))
SPARK_HOME = Path(__import__("pyspark").__file__).parent
PREDICT = ("SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
           "FROM photos ORDER BY file")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def first_line(process: subprocess.Popen, timeout: float = 180) -> str:
    """The process's first stdout line, or '' if it prints none within ``timeout`` (a hung server fails the
    test instead of hanging the suite)."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().strip() if ready else ""


class Server:
    """A `sql-dl serve` process; ``stop`` sends SIGTERM and returns the exit code."""

    def __init__(self, tmp: Path, photo_dir: Path, *args: str):
        self.port = free_port()
        init = tmp / "init.sql"
        # a table, not a temporary view: every connection has its own session, and sees the catalog's tables
        init.write_text(f"CREATE TABLE photos USING binaryFile OPTIONS (path '{photo_dir}/*.jpg');\n")
        self.process = subprocess.Popen(
            [SQL_DL, "serve", "--port", str(self.port), "--master", "local[2]", "--init", str(init), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "SQL_DL_LOG_DIR": str(tmp / "logs")})
        self.ready = first_line(self.process)
        if not self.ready:
            self.process.kill()
        self.jvms = children(self.process.pid)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def errors(self) -> str:
        """What the server said on stderr (after it stopped), for assertion messages."""
        self.stop() if self.process.poll() is None else None
        return self.process.stderr.read()

    def cursor(self, **kwargs):
        return hive.connect(host="127.0.0.1", port=self.port, username="analyst", **kwargs).cursor()


@pytest.fixture(scope="module")
def server(tmp_path_factory, photo_dir):
    running = Server(tmp_path_factory.mktemp("server"), photo_dir)
    assert running.ready == f"listening on 127.0.0.1:{running.port}", running.errors()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def expected_labels(photo_dir) -> dict:
    """The answer of `sql-dl sql --format json` on the same photos: what every client must also get."""
    query = PREDICT.replace("FROM photos", f"FROM binaryFile.`{photo_dir}/*.jpg`")
    result = subprocess.run([SQL_DL, "sql", "--master", "local[2]", "--format", "json", "-e", query],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return {row["file"]: row["label"] for row in map(json.loads, result.stdout.splitlines())}


def beeline(port: int, sql: str, *auth: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SPARK_HOME / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/default",
                           *(auth or ("-n", "analyst")), "--silent=true", "--outputformat=csv2", "-e", sql],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "SPARK_HOME": str(SPARK_HOME)})


def test_beeline_functions_predict_and_describe(server, expected_labels):
    result = beeline(server.port, f"SHOW USER FUNCTIONS; {PREDICT}; "
                                  "DESCRIBE FUNCTION EXTENDED predict_efficientnet_lite0;")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    functions = {r[0] for r in rows[1:rows.index(["file", "label"])]}
    assert {"predict_efficientnet_lite0", "predict_efficientnet_lite0_topk", "featurize_efficientnet_lite0",
            "predict_inception"} <= functions
    start = rows.index(["file", "label"]) + 1
    labels = {r[0]: r[1] for r in rows[start:start + len(expected_labels)]}
    assert labels == expected_labels
    description = "\n".join(",".join(r) for r in rows[start + len(expected_labels):])
    for fact in ("model: efficientnet_lite0", "224x224", "labels: imagenet (1000 classes)",
                 "source: exporter=efficientnet_lite0", "sha256: "):
        assert fact in description


def test_pyhive_functions_predict_and_describe(server, expected_labels):
    cursor = server.cursor()
    cursor.execute("SHOW USER FUNCTIONS")
    assert "predict_efficientnet_lite0" in {r[0] for r in cursor.fetchall()}
    cursor.execute(PREDICT)
    assert dict(cursor.fetchall()) == expected_labels
    cursor.execute("DESCRIBE FUNCTION EXTENDED predict_efficientnet_lite0")
    description = "\n".join(r[0] for r in cursor.fetchall())
    assert "Usage: predict_efficientnet_lite0(image) - the top-1 label (STRING)" in description
    assert "input: 224x224 RGB NCHW float32" in description and "sha256: " in description


def test_flat_label_and_score_columns_for_bi_tools(server, expected_labels):
    cursor = server.cursor()
    cursor.execute("SELECT regexp_extract(path, '[^/]+$', 0) AS file, inline(predict_efficientnet_lite0_topk(content, 1)) "
                   "FROM photos ORDER BY file")
    assert [(d[0], d[1]) for d in cursor.description] == [
        ("file", "STRING_TYPE"), ("label", "STRING_TYPE"), ("index", "INT_TYPE"), ("score", "FLOAT_TYPE")]
    rows = cursor.fetchall()
    assert {r[0]: r[1] for r in rows} == expected_labels
    assert all(0 < r[3] <= 1 for r in rows)
    cursor.execute("SELECT predict_efficientnet_lite0_topk(content, 2) FROM photos LIMIT 1")
    assert isinstance(cursor.fetchall()[0][0], str), "PyHive returns arrays and structs as JSON text"


def test_eight_concurrent_clients_twenty_queries_each(server, expected_labels):
    errors, answers = [], []

    def client(number: int) -> None:
        try:
            cursor = server.cursor()
            for i in range(20):
                name = sorted(expected_labels)[(number + i) % len(expected_labels)]
                cursor.execute(f"SELECT predict_efficientnet_lite0(content) FROM photos WHERE path LIKE '%/{name}'")
                answers.append((name, cursor.fetchall()[0][0]))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors
    assert len(answers) == 160
    assert all(expected_labels[name] == label for name, label in answers)


def test_each_connection_has_its_own_session(server, expected_labels):
    """A temporary view and a SET made by one client are invisible to another connected at the same time;
    both call the catalog's functions (a connection opened after start-up gets them too)."""
    first, second = server.cursor(), server.cursor()
    first.execute("CREATE TEMPORARY VIEW mine AS SELECT predict_efficientnet_lite0(content) AS label FROM photos")
    first.execute("SET spark.sql.shuffle.partitions=3")
    first.execute("SELECT count(*) FROM mine")
    assert first.fetchall() == [(len(expected_labels),)]
    with pytest.raises(Exception, match=r"TABLE_OR_VIEW_NOT_FOUND"):
        second.execute("SELECT * FROM mine")
    second.execute("SET spark.sql.shuffle.partitions")
    assert second.fetchall()[0][1] != "3"
    from_beeline = beeline(server.port, "SHOW VIEWS; SELECT sql_dl_error(X'00') AS why;")
    assert from_beeline.returncode == 0, from_beeline.stderr
    assert "mine" not in from_beeline.stdout and "not a recognised image format" in from_beeline.stdout
    first.execute("SET spark.sql.shuffle.partitions")
    assert first.fetchall()[0][1] == "3"


def test_sqlalchemy_lists_tables_views_and_columns_for_bi_tools(server, expected_labels):
    """What a BI tool (Apache Superset) does through SQLAlchemy: browse tables, views and columns, then query.
    sql-dl's sqldl:// dialect reads Spark's SHOW TABLES/VIEWS (hive:// lists every table as '')."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqldl://analyst@127.0.0.1:{server.port}/default")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE VIEW IF NOT EXISTS jpeg_paths AS SELECT path FROM photos"))
        inspector = sqlalchemy.inspect(connection)
        assert "photos" in inspector.get_table_names() and "jpeg_paths" not in inspector.get_table_names()
        assert "jpeg_paths" in inspector.get_view_names()
        assert [c["name"] for c in inspector.get_columns("photos")] == ["path", "modificationTime", "length",
                                                                         "content"]
        rows = connection.execute(sqlalchemy.text(PREDICT)).fetchall()
    assert dict(rows) == expected_labels


LONG_QUERY = "SELECT count(*) FROM range(0, 1000000000000, 1, 2)"  # minutes of work on both cores


def answers_promptly(server, expected_labels, seconds: float = 60) -> bool:
    """A one-row predict answers within ``seconds``: nothing else is holding the executors' task slots."""
    started = time.monotonic()
    cursor = server.cursor()
    cursor.execute(PREDICT)
    return dict(cursor.fetchall()) == expected_labels and time.monotonic() - started < seconds


@pytest.mark.parametrize("how", ["cancel", "disconnect"])
def test_a_client_cancel_or_disconnect_stops_its_query(server, expected_labels, how):
    from TCLIService.ttypes import TOperationState

    connection = hive.connect(host="127.0.0.1", port=server.port, username="analyst")
    cursor = connection.cursor()
    cursor.execute(LONG_QUERY, async_=True)
    time.sleep(2)
    assert cursor.poll().operationState == TOperationState.RUNNING_STATE
    if how == "cancel":
        cursor.cancel()
        assert cursor.poll().operationState == TOperationState.CANCELED_STATE
    else:
        connection.close()
    assert answers_promptly(server, expected_labels), "the long query's tasks were stopped"


def test_single_session_mode_shares_views_when_asked(tmp_path, photo_dir):
    shared = Server(tmp_path, photo_dir, "--single-session")
    try:
        assert shared.ready.startswith("listening on"), shared.errors()
        shared.cursor().execute("CREATE TEMPORARY VIEW ours AS SELECT 42 AS answer")
        cursor = shared.cursor()
        cursor.execute("SELECT answer FROM ours")
        assert cursor.fetchall() == [(42,)]
    finally:
        assert shared.stop() == 0


def failing_statements() -> list[tuple[str, str, str]]:
    """(statement, SQLSTATE, the one line `sql-dl sql` prints for it): analysis errors (unknown table, wrong
    argument count), a runtime error raised by raise_error (a model whose file is absent), and an error raised
    by a Python UDF on an executor."""
    inception = load_catalog(CATALOG).get("inception")
    return [
        ("SELECT * FROM no_such_table", "42P01", "[TABLE_OR_VIEW_NOT_FOUND] The table or view `no_such_table` "
         "cannot be found. Verify the spelling and correctness of the schema and catalog."),
        ("SELECT upper('a', 'b')", "42605", "[WRONG_NUM_ARGS.WITHOUT_SUGGESTION] The `upper` requires 1 parameters "
         "but the actual number is 2. Please, refer to 'https://spark.apache.org/docs/latest/sql-ref-functions.html' "
         "for a fix."),
        ("SELECT predict_inception(content) FROM photos", "P0001", missing_message(inception)),
        ("SELECT predict_efficientnet_lite0_topk(content, -1) FROM photos", "38000",
         "predict_efficientnet_lite0_topk(image, k): k must be a positive integer, got -1"),
    ]


def test_errors_reach_clients_as_one_line(server):
    """A client gets the line the shell prints as the error message: no Java stack trace, no Spark wrapper
    prefixes, no stack frames in the Thrift status's infoMessages."""
    failures = failing_statements()
    for statement, state, line in failures:
        result = beeline(server.port, statement)
        output = result.stdout + result.stderr
        assert result.returncode == 1
        errors = [ln for ln in output.splitlines() if ln.startswith("Error: ")]
        assert errors == [f"Error: {line} (state={state},code=0)"], output
        assert "at org.apache" not in output and "HiveSQLException" not in output, output
    cursor = server.cursor()
    for statement, _, line in failures:
        with pytest.raises(hive.OperationalError) as caught:
            cursor.execute(statement)
        text = str(caught.value)
        assert caught.value.args[0].status.errorMessage == line
        assert len(text) < 600 and text.count(line) == 1 and "USER_RAISED_EXCEPTION" not in text, text


def test_sigterm_stops_cleanly_and_leaves_no_jvm(tmp_path, photo_dir):
    own = Server(tmp_path, photo_dir)  # its own server: the shared one stays up for whichever test runs next
    assert own.ready.startswith("listening on"), own.errors()
    assert own.jvms, "the server's JVM runs as its child"
    assert own.stop() == 0
    time.sleep(1)
    assert not [pid for pid in own.jvms if Path(f"/proc/{pid}").exists()]


def test_password_authentication(tmp_path, photo_dir):
    passwords = tmp_path / "passwords"
    result = CliRunner().invoke(main, ["passwd", str(passwords), "alice", "--password-stdin"], input="s3cret\n")
    assert result.exit_code == 0 and "alice:" in passwords.read_text() and "s3cret" not in passwords.read_text()
    secured = Server(tmp_path, photo_dir, "--auth", "password", "--password-file", str(passwords))
    try:
        assert secured.ready.startswith("listening on"), secured.errors()
        cursor = hive.connect(host="127.0.0.1", port=secured.port, username="alice", password="s3cret",
                              auth="CUSTOM").cursor()
        cursor.execute("SELECT 1 + 1")
        assert cursor.fetchall() == [(2,)]
        with pytest.raises(Exception, match="Error validating the login"):
            hive.connect(host="127.0.0.1", port=secured.port, username="alice", password="wrong", auth="CUSTOM")
        denied = beeline(secured.port, "SELECT 1", "-n", "alice", "-p", "wrong")
        assert "Error validating the login" in denied.stdout + denied.stderr
        allowed = beeline(secured.port, "SELECT 40 + 2 AS answer", "-n", "alice", "-p", "s3cret")
        assert allowed.stdout.split()[-2:] == ["answer", "42"]
    finally:
        assert secured.stop() == 0


def test_refuses_a_public_address_without_authentication():
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 1
    assert result.output.startswith("Error: refusing to bind 0.0.0.0 without authentication")
    assert result.output.count("\n") == 1 and "--auth password" in result.output


def test_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_failing_init_file_is_one_line_and_leaves_no_jvm(tmp_path):
    init = tmp_path / "init.sql"
    init.write_text("CREATE TEMPORARY VIEW ok AS SELECT 1;\nSELEC broken;\n")
    result = subprocess.run([SQL_DL, "serve", "--port", str(free_port()), "--master", "local[1]", "--init", str(init)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "SQL_DL_LOG_DIR": str(tmp_path / "logs")})
    assert result.returncode == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert errors == [f"Error: {init}: statement 2 failed: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'."]
