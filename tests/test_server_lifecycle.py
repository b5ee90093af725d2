"""Model versions on a running `sql-dl serve`: a moved alias reaches a client that stays connected, a broken
catalog edit is survived, the models table is browsed by PyHive, beeline and SQLAlchemy, and each query's
audit line names the JDBC user."""
from __future__ import annotations

import json
import select
import time

import pytest

from test_lifecycle import catalog_text
from test_server import Server, beeline

pytest.importorskip("pyhive")
from pyhive import hive  # noqa: E402

DETAIL = "SELECT ml_predict_detail('lite', content).version AS v, predict_lite_detail(content).version AS own FROM photos"


@pytest.fixture(scope="module")
def versioned(tmp_path_factory, photo_dir):
    folder = tmp_path_factory.mktemp("versioned")
    catalog = folder / "catalog.yaml"
    catalog.write_text(catalog_text())
    running = Server(folder, photo_dir, "--catalog", str(catalog))
    assert running.ready == f"listening on 127.0.0.1:{running.port}", running.errors()
    running.catalog, running.folder = catalog, folder
    yield running
    running.stop()


def said(server: Server, text: str, timeout: float = 60) -> str:
    """The next line the server prints that contains ``text`` (it prints what each reload did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = server.process.stdout.readline()
        if text in line:
            return line.strip()
    raise AssertionError(f"the server did not say {text!r} within {timeout} s")


def versions(cursor) -> set:
    cursor.execute(DETAIL)
    return {tuple(row) for row in cursor.fetchall()}


def test_a_moved_alias_reaches_a_connected_client(versioned):
    cursor = versioned.cursor()
    assert versions(cursor) == {("1", "1")}
    versioned.catalog.write_text(catalog_text(default="2"))
    changed = time.monotonic()
    said(versioned, "reloaded")
    while versions(cursor) != {("2", "2")}:  # the same connection: nothing to reconnect
        assert time.monotonic() - changed < 60
        time.sleep(0.25)
    print(f"file change to first query on the new version: {time.monotonic() - changed:.1f} s")


def test_a_broken_edit_keeps_the_old_models_answering(versioned):
    cursor = versioned.cursor()
    before = versions(cursor)
    versioned.catalog.write_text(catalog_text(default="1").replace("outputs:", "outputz:"))
    line = said(versioned, "keeps serving")
    assert "unknown field 'outputz'" in line and line.endswith("(the previous catalog keeps serving)")
    assert versions(cursor) == before
    cursor.execute("SELECT predict_lite(content) FROM photos WHERE path LIKE '%coffee%'")
    assert cursor.fetchall() == [("espresso",)]


def test_sighup_reloads_at_once(versioned):
    import signal

    versioned.catalog.write_text(catalog_text(default="1"))
    said(versioned, "reloaded")
    assert versions(versioned.cursor()) == {("1", "1")}
    versioned.process.send_signal(signal.SIGHUP)
    assert said(versioned, "reloaded", timeout=30)


def test_models_table_through_pyhive_beeline_and_sqlalchemy(versioned):
    cursor = versioned.cursor()
    cursor.execute("SELECT name, version, aliases, is_default, available FROM sql_dl_models ORDER BY version")
    rows = cursor.fetchall()
    assert [(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows] == [
        ("lite", "1", ["default", "champion"], True, True), ("lite", "2", ["candidate"], False, True)]
    result = beeline(versioned.port, "SELECT name, version, precision FROM sql_dl_models ORDER BY version;")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == ["name,version,precision", "lite,1,fp32", "lite,2,int8"]

    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqldl://analyst@127.0.0.1:{versioned.port}/default")
    with engine.connect() as connection:
        inspector = sqlalchemy.inspect(connection)
        assert "sql_dl_models" in inspector.get_view_names() + inspector.get_table_names()
        columns = [c["name"] for c in inspector.get_columns("sql_dl_models")]
        assert columns[:4] == ["name", "version", "aliases", "is_default"] and "unavailable_reason" in columns
    hive_engine = sqlalchemy.create_engine(f"hive://analyst@127.0.0.1:{versioned.port}/default")
    with hive_engine.connect() as connection:  # the dialect Superset uses: columns and queries work
        assert [c["name"] for c in sqlalchemy.inspect(connection).get_columns("sql_dl_models")] == columns
        table = sqlalchemy.Table("sql_dl_models", sqlalchemy.MetaData(), autoload_with=connection)
        names = connection.execute(sqlalchemy.select(table.c.name, table.c.version)).fetchall()
        assert sorted(names) == [("lite", "1"), ("lite", "2")]


def test_each_query_leaves_an_audit_line_naming_the_jdbc_user(versioned):
    cursor = hive.connect(host="127.0.0.1", port=versioned.port, username="alice").cursor()
    cursor.execute("SELECT ml_predict('lite@candidate', content) FROM photos")
    answered = len(cursor.fetchall())
    audit = versioned.folder / "logs" / "audit.jsonl"
    deadline = time.monotonic() + 30
    lines: list = []
    while not lines and time.monotonic() < deadline:
        time.sleep(0.5)
        lines = [json.loads(line) for line in audit.read_text().splitlines()] if audit.is_file() else []
        lines = [line for line in lines if line["user"] == "alice" and line["function"] == "ml_predict"]
    assert lines, f"no audit line for alice in {audit}"
    assert (lines[-1]["model"], lines[-1]["version"], lines[-1]["rows"]) == ("lite", "2", answered)
    assert len(lines[-1]["sha256"]) == 64 and lines[-1]["statement"] and lines[-1]["query_id"]
