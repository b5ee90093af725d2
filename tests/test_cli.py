"""The `sql-dl` command, run as a user runs it: a real process, a real Spark session, real photos."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import CATALOG, ROOT, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.cli.command import main
from sql_dl.cli.shell import is_complete, split_statements

SQL_DL = str(Path(sys.executable).with_name("sql-dl"))


def run_cli(*args: str, stdin: str | None = None, cwd: Path = ROOT, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SQL_DL_LOG_DIR": str(cwd / "logs"), **env_extra}
    return subprocess.run([SQL_DL, *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_sql_json_over_binaryfile_run_on_files_syntax(photo_dir, tmp_path):
    query = (f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
             f"FROM binaryFile.`{photo_dir}/*.jpg` ORDER BY file; SELECT 1 AS one, 'a;b' AS text, CAST(0.1 AS FLOAT) AS f")
    state = str(tmp_path / "state")  # what the user was already told lives here
    result = run_cli("sql", "--master", "local[2]", "--format", "json", "-e", query, XDG_STATE_HOME=state)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[-1] == {"one": 1, "text": "a;b", "f": 0.1}, "a FLOAT shown as float32 holds it, as over JDBC"
    labels = {r["file"]: r["label"] for r in rows[:-1]}
    assert len(labels) >= 7 and labels["coffee.jpg"] == "espresso"
    # stderr: one warning line naming the models without ONNX files, and nothing from the JVM
    missing = [spec.name for spec in load_catalog(CATALOG) if not spec.available]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (f"sql-dl: warning: {len(missing)} models have no ONNX file yet: "
                                            f"{', '.join(missing)} (onnx paths are relative to the catalog's "
                                            f"folder, {ROOT}); their functions fail until you run `sql-dl models "
                                            "export NAME` (`sql-dl models list` shows them)")


def test_sql_file_csv_then_error_gives_one_line_and_exit_1(tmp_path, photo_dir):
    script = tmp_path / "q.sql"
    script.write_text(f"-- labels; with a comment\nSELECT regexp_extract(path, '[^/]+$', 0) AS file,\n"
                      f"  predict_efficientnet_lite0_topk(content, 2) AS top\n"
                      f"FROM binaryFile.`{photo_dir}/coffee.jpg`;\n"
                      f"SELECT predict_inception(content) FROM binaryFile.`{photo_dir}/coffee.jpg`;\n"
                      f"SELECT 'never reached';\n")
    result = run_cli("sql", "--master", "local[2]", "--format", "csv", "-f", str(script))
    assert result.returncode == 1
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["file", "top"] and rows[1][0] == "coffee.jpg"
    assert json.loads(rows[1][1])[0]["label"] == "espresso"
    assert "never reached" not in result.stdout
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("sql-dl: error:")]
    assert errors == [errors[0]] and "model 'inception' is not available" in errors[0]
    assert "Traceback" not in result.stderr and "\tat org.apache" not in result.stderr


def test_interactive_prompt_multiline_statements_errors_and_a_fresh_home(photo_dir, tmp_path):
    """A new user: no history file yet, run from some directory; logs and tables go to per-user folders (XDG),
    nothing into the working directory."""
    session = ("SELECT 40 +\n 2 AS answer;\nSELEC broken;\nCREATE TABLE t AS SELECT 1 AS one;\n"
               f"SELECT predict_efficientnet_lite0(content) AS label\n FROM binaryFile.`{photo_dir}/coffee.jpg`;\n")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SQL_DL_LOG_DIR", "XDG_STATE_HOME", "XDG_DATA_HOME",
                                                            "SQL_DL_HISTORY")}
    result = subprocess.run([SQL_DL, "sql", "--master", "local[1]", "--format", "json", "--catalog", str(CATALOG)],
                            input=session, capture_output=True, text=True, cwd=work, timeout=300,
                            env={**env, "HOME": str(home)})
    assert result.returncode == 0
    assert (home / ".sql_dl_history").is_file(), "the first session writes the history file"
    assert list(work.iterdir()) == []
    assert (home / ".local" / "state" / "sql-dl" / "logs" / "spark.log").is_file()
    assert (home / ".local" / "share" / "sql-dl" / "warehouse" / "t").is_dir()
    assert result.stdout.endswith("\n"), "end of input (Ctrl-D) leaves the prompt on a line of its own"
    assert '{"answer": 42}' in result.stdout and '{"label": "espresso"}' in result.stdout
    assert "sql-dl: error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'" in result.stderr


def test_models_list_json():
    result = CliRunner().invoke(main, ["models", "list", "--format", "json", "--catalog", str(CATALOG)])
    assert result.exit_code == 0
    entries = {e["name"]: e for e in map(json.loads, result.output.splitlines())}
    assert entries["efficientnet_lite0"]["available"] is True
    assert entries["efficientnet_lite0"]["onnx"].endswith("models/efficientnet_lite0.onnx")
    assert entries["inception"]["available"] is False
    assert "predict_inception" in entries["inception"]["functions"]
    assert (entries["inception"]["version"], entries["inception"]["aliases"]) == ("1", "default")


def test_models_list_and_describe_show_every_version(tmp_path):
    from test_lifecycle import catalog_text

    catalog = write_catalog(tmp_path, catalog_text())
    result = CliRunner().invoke(main, ["models", "list", "--format", "json", "--catalog", str(catalog)])
    rows = [(e["version"], e["aliases"], e["functions"] != []) for e in map(json.loads, result.output.splitlines())]
    assert rows == [("1", "default,champion", True), ("2", "candidate", False)]
    result = CliRunner().invoke(main, ["models", "describe", "lite@candidate", "--catalog", str(catalog)])
    assert json.loads(result.output)["onnx"].endswith("efficientnet_lite0.int8.onnx")


def test_models_describe_shows_the_resolved_entry():
    result = CliRunner().invoke(main, ["models", "describe", "efficientnet_lite0", "--catalog", str(CATALOG)])
    described = json.loads(result.output)
    assert described["preprocessing"].startswith("224x224 RGB NCHW float32; resize shorter side 256 (bilinear)")
    assert len(described["sha256"]) == 64 and described["source"]["exporter"] == "efficientnet_lite0"


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  m:\n    onnx: m.onnx\n    input: {size: [224]}\n    outputs: {scores: s}\n")
    result = CliRunner().invoke(main, ["models", "list", "--catalog", str(bad)])
    assert result.exit_code == 1
    assert result.output == ("Error: models.yaml: entry 'm': input.size must be two positive integers "
                             "[height, width], got [224]\n")
    result = CliRunner().invoke(main, ["models", "describe", "nope", "--catalog", str(CATALOG)])
    names = ", ".join(sorted(spec.name for spec in load_catalog(CATALOG)))
    assert result.output == f"Error: models.yaml: no model named 'nope'. Available: {names}\n"


@pytest.mark.parametrize("text,expected", [
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT ';' AS s;", ["SELECT ';' AS s"]),
    ("SELECT `a;b` FROM t -- trailing; comment\n;", ["SELECT `a;b` FROM t"]),
    ("SELECT 'it\\'s;' ;;", ["SELECT 'it\\'s;'"]),
])
def test_statement_splitting(text, expected):
    assert split_statements(text) == expected


def test_prompt_buffer_completion():
    assert is_complete("SELECT 1;\n") and not is_complete("SELECT ';\n") and not is_complete("SELECT 1\n")


def test_progress_line_on_long_queries(spark):
    from sql_dl.cli.shell import run_script

    out, err = io.StringIO(), io.StringIO()
    query = "SELECT count(s) AS n FROM (SELECT reflect('java.lang.Thread', 'sleep', 400L) AS s FROM range(0, 8, 1, 8))"
    assert run_script(spark, query, "json", out, err, progress=True) == 0
    assert out.getvalue() == '{"n": 8}\n'
    assert "/8 tasks]" in err.getvalue() and err.getvalue().endswith("\r\033[K")


def test_a_broken_catalog_fails_before_spark_starts(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("models:\n  m:\n    onnx: m.onnx\n    input: {size: [224]}\n    outputs: {scores: s}\n")
    result = run_cli("sql", "-e", "SELECT 1", "--catalog", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("Error: broken.yaml: entry 'm': input.size must be two positive integers [height, width], "
                             "got [224]\n")
    assert not (tmp_path / "logs" / "jvm-stderr.log").exists(), "no JVM was started"


def read_until(fd: int, marker: bytes, seconds: float) -> bytes:
    """What a terminal shows until ``marker`` appears (or the time runs out)."""
    import select
    import time

    seen, deadline = b"", time.monotonic() + seconds
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_ctrl_c_cancels_the_running_query_and_keeps_the_session(tmp_path):
    """In a real terminal (a pty): Ctrl-C during a long query cancels its Spark jobs, prints one line and
    returns to the prompt with the session alive; Ctrl-D then ends the shell with exit code 0."""
    import pty
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell, with the pty as its terminal
        os.chdir(tmp_path)
        os.execve(SQL_DL, [SQL_DL, "sql", "--master", "local[2]", "--catalog", str(CATALOG), "--no-progress"],
                  {**os.environ, "SQL_DL_LOG_DIR": str(tmp_path / "logs"), "SQL_DL_HISTORY": str(tmp_path / "h")})
    try:
        assert b"sql-dl> " in read_until(fd, b"sql-dl> ", 180)
        os.write(fd, b"SELECT count(*) FROM range(0, 1000000000000, 1, 2);\n")  # minutes of work
        time.sleep(3)
        started = time.monotonic()
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to the shell's process group
        shown = read_until(fd, b"sql-dl> ", 60)
        assert b"sql-dl: query cancelled (Ctrl-C)" in shown, shown[-2000:]
        assert b"Traceback" not in shown and b"Py4J" not in shown and time.monotonic() - started < 30
        os.write(fd, b"SELECT 40 + 2 AS answer;\n")
        assert b"42" in read_until(fd, b"sql-dl> ", 120), "the session survived"
        os.write(fd, b"\x04")  # Ctrl-D
        read_until(fd, b"\x00", 30)
    finally:
        for _ in range(100):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_the_missing_models_warning_is_said_once_until_the_set_changes(tmp_path, monkeypatch):
    from sql_dl.registry.register import _changed_since_last_said

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    catalog = tmp_path / "models.yaml"
    assert _changed_since_last_said(catalog, ["inception", "resnet50"])
    assert not _changed_since_last_said(catalog, ["inception", "resnet50"])
    assert _changed_since_last_said(catalog, ["inception"]), "an exported model changes what is missing"


def test_table_cells_of_several_lines_and_float32_values():
    import io as text_io

    from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType, StructField, StructType

    from sql_dl.cli.shell import narrow, write_rows

    out = text_io.StringIO()
    write_rows(["info"], [["Function: f\nUsage: f(image) - a label"]], "table", out)
    lines = out.getvalue().splitlines()
    assert [line.rstrip("| ") for line in lines[3:5]] == ["| Function: f", "| Usage: f(image) - a label"]
    assert {len(line) for line in lines[:-1]} == {len("| Usage: f(image) - a label |")}, "as wide as the longest line"
    topk = ArrayType(StructType([StructField("label", StringType()), StructField("index", IntegerType()),
                                 StructField("score", FloatType())]))
    assert narrow([{"label": "espresso", "index": 967, "score": 0.954243540763855}], topk) == [
        {"label": "espresso", "index": 967, "score": 0.95424354}]
