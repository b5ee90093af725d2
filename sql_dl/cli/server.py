"""`sql-dl serve`: Spark's HiveServer2-compatible Thrift server, or a Spark Connect server, with every
catalog function in every session.

The server runs inside this Python process's Spark driver (the JVM is our child). The catalog reaches
every session through sql-dl's Spark extension (:mod:`sql_dl.extension`): each JDBC/ODBC connection gets
its own Spark session (its temporary views, ``SET`` values and current database are its own), and so does
each Spark Connect client; ``--single-session`` shares one session among all JDBC connections instead.
``--init`` runs once, in the server's own session: the tables and (non-temporary) views it creates are
seen by every session, its temporary views only in single-session mode. A failed statement reaches a
JDBC/ODBC client as the one line the shell prints (:func:`sql_dl.errors.one_line`) and its SQLSTATE, not as
a Java stack trace: statements run as ``SqlDlOperationManager.java``'s operations (in ``java/``, compiled on
first use like the password check). The server prints ``listening on HOST:PORT`` once the port accepts
connections, and on SIGTERM or SIGINT stops the server, the session and the JVM, and exits 0. The catalog
is followed while it runs: a changed file (or SIGHUP) is prepared again and the next query of every session
plans with it; a file that no longer validates leaves the previous catalog serving, and the reason is printed.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SqlDlError, one_line
from ..extension import extension_settings
from ..jvm import compile_java
from ..registry.jvm_functions import jvm_functions
from ..session import build_session, log_dir
from .auth import check_bind, password_settings
from .shell import split_statements

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
OPERATIONS = Path(__file__).with_name("java") / "SqlDlOperationManager.java"


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int | None = None  # 10000 for JDBC/ODBC, 15002 for Spark Connect
    catalog: str = "models.yaml"
    master: str | None = None
    init: str | None = None  # a .sql file run once at start (e.g. CREATE TABLE photos USING binaryFile ...)
    auth: str = "none"  # "none" | "password"
    password_file: str | None = None
    hiveconf: dict = field(default_factory=dict)  # extra hive.server2.* settings (LDAP, Kerberos, ...)
    single_session: bool = False  # all JDBC connections share one Spark session
    connect: bool = False  # serve Spark Connect instead of JDBC/ODBC

    def __post_init__(self) -> None:
        if self.port is None:
            self.port = 15002 if self.connect else 10000


def operation_classes() -> Path:
    """The folder holding the compiled statement operations that give clients one-line errors."""
    return compile_java(OPERATIONS, "sqldl/server/SqlDlOperationManager.class")


def server_settings(options: ServeOptions) -> dict:
    settings = extension_settings(options.catalog)
    if options.connect:
        if options.auth != "none" or options.hiveconf or options.single_session:
            raise SqlDlError("--connect serves Spark Connect, which has no login: --auth, --hiveconf and "
                             "--single-session apply to the JDBC/ODBC server only")
        check_bind(options.host, "NONE")
        settings.update({"spark.plugins": CONNECT_PLUGIN, "spark.connect.grpc.binding.port": str(options.port),
                         "spark.connect.grpc.binding.address": options.host})
        return settings
    settings.update({
        "spark.sql.hive.thriftServer.singleSession": str(options.single_session).lower(),
        "hive.server2.thrift.port": str(options.port),
        "hive.server2.thrift.bind.host": options.host,
        "hive.server2.transport.mode": "binary",
    })
    classpath = [settings["spark.driver.extraClassPath"], str(operation_classes())]
    if options.auth == "password":
        if not options.password_file:
            raise SqlDlError("--auth password needs --password-file FILE (create it with `sql-dl passwd FILE USER`)")
        auth = password_settings(options.password_file)
        classpath.append(auth.pop("spark.driver.extraClassPath"))
        settings.update(auth)
    settings["spark.driver.extraClassPath"] = os.pathsep.join(classpath)
    settings.update(options.hiveconf)
    check_bind(options.host, settings.get("hive.server2.authentication", "NONE"))
    return settings


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SqlDlError(f"cannot listen on {host}:{port}: {exc.strerror} (is another server running? "
                             "choose another --port)") from None


def _wait_until_listening(host: str, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SqlDlError(f"the Thrift server did not start listening on {host}:{port} within {timeout:.0f} s "
                     f"(see {log_dir() / 'spark.log'})")


def run_init(spark, path: str) -> None:
    text = Path(path).read_text()
    for number, statement in enumerate(split_statements(text), start=1):
        try:
            spark.sql(statement).collect()
        except Exception as exc:  # noqa: BLE001 - one line naming the file and statement
            raise SqlDlError(f"{path}: statement {number} failed: {one_line(exc)}") from None


def _check_extension(spark) -> None:
    """Every client gets a new session: make sure the extension gave new sessions the functions."""
    try:
        spark.newSession().sql("DESCRIBE FUNCTION sql_dl_error").collect()
    except Exception:  # noqa: BLE001 - the reason is in the JVM's log, which the message names
        raise SqlDlError("new Spark sessions have no sql-dl functions: the extension could not prepare the "
                         f"catalog (see {log_dir() / 'jvm-stderr.log'})") from None


def start(options: ServeOptions):
    """Build the session, run ``--init``, start the Thrift server; returns (spark, server) once listening."""
    settings = server_settings(options)
    _check_port_free(options.host, options.port)
    spark = build_session(master=options.master, catalog=options.catalog, app_name="sql-dl serve", conf=settings)
    try:
        if options.init:
            run_init(spark, options.init)
        server = None
        if not options.connect:
            server = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2\
                .startWithContext(spark._jsparkSession.sqlContext())
            spark._jvm.sqldl.server.SqlDlOperationManager.install(server)  # before we announce the port
        _check_extension(spark)
        _wait_until_listening(options.host, options.port)
    except BaseException:
        stop(spark)
        raise
    return spark, server


def stop(spark, server=None) -> None:
    """Stop the server, the session and the JVM (our child process): nothing is left behind."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    for step in (lambda: server and server.stop(), spark.stop, lambda: gateway and gateway.shutdown()):
        try:
            step()
        except Exception:  # noqa: BLE001 - keep stopping: the JVM must go whatever failed before
            pass
    if process is not None:
        try:
            process.stdin.close()  # the JVM exits when its stdin closes
            process.wait(timeout=15)
        except Exception:  # noqa: BLE001
            process.kill()
            process.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


def serve(options: ServeOptions, announce=print) -> int:
    """Run until SIGTERM/SIGINT; return the exit code (0 on a clean stop). SIGHUP re-reads the catalog now
    (it is also re-read within about a second of the file changing); what a reload says is printed."""
    stopping, reloading = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, lambda *_: reloading.set())
    spark, server = start(options)
    functions = jvm_functions(spark)
    functions.drain_messages()  # start-up warnings were already logged once by the Python registration
    announce(f"listening on {options.host}:{options.port}")
    while not stopping.wait(0.5):
        said = functions.drain_messages()
        if reloading.is_set():
            reloading.clear()
            said += functions.reload_all()
        for line in said.splitlines():
            announce(line)
    stop(spark, server)
    return 0
