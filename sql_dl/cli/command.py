"""The `sql-dl` command: a spark-sql style shell, model management, the demo.

Errors reach the user as one line (``Error: ...``) with exit code 1; Spark and
Python tracebacks stay in Spark's log (``~/.local/state/sql-dl/logs/spark.log``; ``SQL_DL_LOG_DIR``).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from ..catalog import load_catalog
from ..errors import SqlDlError, one_line
from .shell import FORMATS, interactive, run_script, write_rows

CATALOG = click.option("--catalog", default="models.yaml", show_default=True, type=click.Path(dir_okay=False),
                       help="The model catalog (YAML).")
MASTER = click.option("--master", default=None,
                      help="Spark master URL (default: local[*]). Executors run the driver's Python unless "
                           "SQL_DL_EXECUTOR_ENV names a packed environment (make cluster-env; docs/cluster.md).")


def _quiet_logging() -> None:
    """sql-dl warnings as one line on stderr; py4j's connection chatter off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sql-dl: warning: %(message)s"))
    logging.getLogger("sql_dl").addHandler(handler)
    logging.getLogger("sql_dl").propagate = False
    logging.getLogger("py4j").setLevel(logging.CRITICAL)


class _Commands(click.Group):
    """Every command's SqlDlError becomes one line (``Error: ...``, exit code 1) here, in one place."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SqlDlError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="sql-dl")
def main() -> None:
    """sql-dl: deep-learning models as Spark SQL functions."""
    _quiet_logging()


@main.command("sql")
@click.option("-e", "query", default=None, help="Run this SQL (one or more statements separated by ;) and exit.")
@click.option("-f", "file", default=None, type=click.File("r"), help="Run the statements in this file and exit.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="json: one JSON object per row, keys = column names.")
@click.option("--progress/--no-progress", default=None,
              help="Show stage/task progress of queries running over a second (default: when stderr is a terminal).")
@CATALOG
@MASTER
def sql_command(query: str | None, file, fmt: str, progress: bool | None, catalog: str, master: str | None) -> None:
    """A spark-sql style shell with every catalog function registered.

    With neither -e nor -f, an interactive prompt: end statements with ';'.
    """
    from ..session import build_session

    spark = build_session(master=master, catalog=catalog)
    progress = sys.stderr.isatty() if progress is None else progress
    if query is not None or file is not None:
        sys.exit(run_script(spark, query if query is not None else file.read(), fmt, progress=progress))
    sys.exit(interactive(spark, fmt, progress))


@main.group()
def models() -> None:
    """List, describe, export and verify the catalog's models; write new entries."""


def _entry_summary(spec) -> dict:
    from ..registry import export_record

    record = export_record(spec) if spec.available else {}
    weights = "RANDOM (untrained)" if record.get("weights") == "random" else record.get("weights")
    return {"name": spec.name, "version": spec.version, "aliases": ",".join(spec.aliases), "onnx": str(spec.onnx),
            "available": spec.available,
            "functions": sorted(spec.functions.values()) if "default" in spec.aliases else [],
            "input_size": list(spec.input.size),
            "feature_size": record.get("features"), "weights": weights, "device": spec.device,
            "labels": spec.labels if spec.labels == "imagenet" else Path(spec.labels).name}


@models.command("list")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@CATALOG
def models_list(fmt: str, catalog: str) -> None:
    """Every version of every catalog entry: its ONNX file, whether it is present, its aliases, the SQL
    functions that run it."""
    entries = [_entry_summary(spec) for spec in load_catalog(catalog).all_versions()]
    if fmt == "json":
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    columns = ["name", "version", "aliases", "available", "input_size", "feature_size", "weights", "functions"]
    write_rows(columns, [[e[c] for c in columns] for e in entries], "table", sys.stdout)


@models.command("describe")
@click.argument("name")
@CATALOG
def models_describe(name: str, catalog: str) -> None:
    """One entry (NAME, NAME@ALIAS or NAME@VERSION), resolved: preprocessing, outputs, labels, sha256, source."""
    from ..registry import expected_sha256

    spec = load_catalog(catalog).resolve(name)
    info = {**_entry_summary(spec), "sha256": expected_sha256(spec) if spec.available else None, "source": spec.source,
            "preprocessing": spec.input.describe(), "outputs": spec.outputs.as_dict(), "batch_size": spec.batch_size}
    click.echo(json.dumps(info, indent=2))


@models.command("export")
@click.argument("name")
@click.option("--weights", default="pretrained", show_default=True,
              help="pretrained (the entry's published weights; may download), random (offline tests), "
                   "or PATH to a local .pth/.safetensors.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Write here instead of the entry's path.")
@CATALOG
def models_export(name: str, weights: str, out: str | None, catalog: str) -> None:
    """Export an entry to ONNX, verify it against PyTorch, record its sha256."""
    from ..build.export import export_onnx

    path = export_onnx(load_catalog(catalog).get(name), weights, out)
    click.echo(f"exported {name} -> {path} (verified against PyTorch{_precision_note(path)})")


def _precision_note(path: Path) -> str:
    from ..build.export import sidecar

    record = json.loads(sidecar(path).read_text())
    if record.get("top1_agreement_vs_fp32") is None:
        return ""
    return "; " + _comparison_text(record)


def _comparison_text(record: dict) -> str:
    """One line for a lower-precision variant: agreement and error against fp32, speed, what ran where."""
    ran = f" on {record['backend']}" if record.get("backend") else ""
    actual = record.get("computed_in")
    native = f" (computed in {actual}: not native on this CPU)" if actual and actual != record["precision"] else ""
    error = record.get("max_relative_error_vs_fp32")
    return (f"{record['precision']}{ran}{native}: top-1 agreement with fp32 {record['top1_agreement_vs_fp32']:.0%} "
            f"on {record['photos']} photos" + (f", max relative error {error:.1e}" if error is not None else "")
            + f", {record['speedup_vs_fp32']:.2f}x the fp32 speed")


@models.command("verify")
@click.argument("name")
@click.option("--weights", default=None, help="The weights the ONNX file was exported from (default: as recorded "
                                              "at export in <file>.onnx.json).")
@CATALOG
def models_verify(name: str, weights: str | None, catalog: str) -> None:
    """Run PyTorch and ONNX Runtime on the same real photos and a random tensor; exit 1 if they disagree."""
    from ..build.export import build_torch_model, verify
    from ..registry import export_record

    spec = load_catalog(catalog).get(name)
    if not spec.available:
        raise click.ClickException(f"{spec.onnx} does not exist: run `sql-dl models export {name}` first")
    weights = weights or export_record(spec).get("weights") or "pretrained"
    if spec.precision != "fp32":
        sys.exit(_verify_lower_precision(spec, weights))
    result = verify(spec, build_torch_model(spec, weights), spec.onnx)
    click.echo(f"{name}: {result.inputs} inputs, max relative error {result.max_relative_error:.2e}, "
               f"top-5 agreement {result.top5_agreement:.0%} ({'ok' if result.ok else 'MISMATCH'})")
    if not result.ok:
        sys.exit(1)


def _verify_lower_precision(spec, weights: str) -> int:
    """int8/fp16 files are compared with a fresh fp32 export of the same weights (itself checked against PyTorch)."""
    import dataclasses
    import tempfile

    from ..build.export import export_onnx
    from ..build.precision import INT8_MIN_AGREEMENT, compare

    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(dataclasses.replace(spec, precision="fp32"), weights, folder)
        result = compare(spec, fp32, spec.onnx)
    agreement = result["top1_agreement_vs_fp32"]
    if agreement is None:
        click.echo(f"{spec.name}: {result['note']}")
        return 0
    ok = agreement >= INT8_MIN_AGREEMENT
    others = [f"{name} {r['top1_agreement_vs_fp32']:.0%}, {r['speedup_vs_fp32']:.2f}x"
              for name, r in result.get("by_backend", {}).items() if name != result.get("backend")]
    click.echo(f"{spec.name}: {_comparison_text({'precision': spec.precision, **result})}"
               + (f"; also {'; '.join(others)}" if others else "") + f" ({'ok' if ok else 'MISMATCH'})")
    return 0 if ok else 1


@models.command("new")
@click.argument("name")
@click.option("--exporter", type=click.Choice(("torchvision", "timm")), required=True)
@click.option("--arch", required=True, help="A torchvision or timm model name, e.g. resnet50, legacy_xception.")
@click.option("--weights", default="DEFAULT", show_default=True, help="torchvision weights name (e.g. IMAGENET1K_V2).")
def models_new(name: str, exporter: str, arch: str, weights: str) -> None:
    """Print a catalog entry whose preprocessing comes from the weights' own metadata (append it to models.yaml)."""
    from ..build.zoo import entry_yaml

    click.echo(entry_yaml(name, exporter, arch, weights), nl=False)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs authentication.")
@click.option("--port", default=None, type=int, help="Port to listen on  [default: 10000; 15002 with --connect]")
@click.option("--init", "init", default=None, type=click.Path(exists=True, dir_okay=False),
              help="SQL file run once at start in the server's own session, e.g. CREATE TABLE photos USING "
                   "binaryFile OPTIONS (path '...'): tables and views it creates are seen by every session.")
@click.option("--single-session", is_flag=True,
              help="All JDBC/ODBC connections share one Spark session (temporary views, SET values).")
@click.option("--connect", is_flag=True, help="Serve Spark Connect (sc://HOST:PORT) instead of JDBC/ODBC.")
@click.option("--auth", type=click.Choice(("none", "password")), default="none", show_default=True)
@click.option("--password-file", default=None, type=click.Path(dir_okay=False),
              help="For --auth password: users and salted hashes, written by `sql-dl passwd`.")
@click.option("--hiveconf", multiple=True, metavar="KEY=VALUE",
              help="Extra HiveServer2 settings, e.g. hive.server2.authentication=LDAP (repeatable).")
@CATALOG
@MASTER
def serve_command(host: str, port: int | None, init: str | None, single_session: bool, connect: bool, auth: str,
                  password_file: str | None, hiveconf: tuple, catalog: str, master: str | None) -> None:
    """A HiveServer2-compatible Thrift (JDBC/ODBC) server, or a Spark Connect server, with every catalog
    function in every client's session."""
    from .server import ServeOptions, serve

    settings = dict(item.split("=", 1) for item in hiveconf if "=" in item)
    if len(settings) != len(hiveconf):
        raise click.ClickException("--hiveconf takes KEY=VALUE")
    options = ServeOptions(host, port, catalog, master, init, auth, password_file, settings, single_session, connect)
    sys.exit(serve(options, announce=lambda line: click.echo(line)))


@main.command("extension")
@click.option("--defaults/--no-defaults", default=True, show_default=True,
              help="Also print sql-dl's tuned Spark settings (Arrow batch size, worker reuse, file packing).")
@click.option("--executor-env", default=None, envvar="SQL_DL_EXECUTOR_ENV", type=click.Path(dir_okay=False),
              help="A packed environment (make cluster-env) for executors that lack sql-dl: adds spark.archives "
                   "and the executor and driver Python settings. Default: $SQL_DL_EXECUTOR_ENV.")
@CATALOG
def extension_command(defaults: bool, executor_env: str | None, catalog: str) -> None:
    """Print spark-defaults.conf lines that put the catalog's functions into every Spark session of a stock
    Spark tool (bin/spark-sql, a Thrift server, a Spark Connect server, spark-submit).

    Use them as `--properties-file FILE` or append them to $SPARK_HOME/conf/spark-defaults.conf.
    """
    from ..extension import extension_settings
    from ..spark_conf import PACKAGE_CONF, read_spark_defaults

    load_catalog(catalog)  # a bad catalog is one line here, not at the tool's start-up
    settings = {**(read_spark_defaults(PACKAGE_CONF / "spark-defaults.conf") if defaults else {}),
                **extension_settings(catalog), "spark.pyspark.python": sys.executable}
    if executor_env:
        from ..session import executor_env_settings

        settings.update(executor_env_settings(executor_env))
    for key, value in settings.items():
        click.echo(f"{key} {value}")


@main.command("passwd")
@click.argument("password_file", type=click.Path(dir_okay=False))
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
def passwd_command(password_file: str, user: str, password_stdin: bool) -> None:
    """Add or change USER in the password file that `sql-dl serve --auth password` checks."""
    from .auth import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    add_user(password_file, user, password)
    click.echo(f"{user} saved in {password_file}")


@main.command("demo")
@click.option("--photos", default="data/photos", show_default=True, type=click.Path(file_okay=False))
@CATALOG
@MASTER
def demo(photos: str, catalog: str, master: str | None) -> None:
    """Label real photos with EfficientNet-Lite0 through Spark SQL."""
    from ..samples.photos import make_photo_dir
    from ..session import build_session

    make_photo_dir(photos)
    spark = build_session(master=master, catalog=catalog)
    query = (f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, top[0].label AS label, "
             f"round(top[0].score, 3) AS score\n"
             f"FROM (SELECT path, predict_efficientnet_lite0_topk(content, 1) AS top\n"
             f"      FROM binaryFile.`{Path(photos).resolve()}/*.jpg`)\nORDER BY file")
    click.echo(query + ";")
    sys.exit(run_script(spark, query, "table"))


def run() -> None:
    """Entry point that turns anything unexpected into one line too."""
    try:
        main(standalone_mode=True)
    except Exception as exc:  # noqa: BLE001
        click.echo(f"Error: {one_line(exc)}", err=True)
        sys.exit(1)
