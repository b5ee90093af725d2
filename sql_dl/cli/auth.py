"""Password authentication for the Thrift server, and the rule that guards binding.

Without authentication the server may bind only a loopback address. ``--auth
password`` turns on HiveServer2's CUSTOM authentication with a small Java class
(``sql_dl/java/``) compiled at first use by the Janino compiler that ships in
pyspark's jars, so no JDK is needed; it checks logins against a file of salted
SHA-256 hashes that ``sql-dl passwd`` writes.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import socket
from pathlib import Path

from ..errors import SqlDlError
from ..jvm import compile_java

AUTHENTICATOR = "sqldl.auth.SqlDlPasswordAuthenticator"
SOURCE = Path(__file__).with_name("java") / "SqlDlPasswordAuthenticator.java"
# hive.server2.authentication values that make the server check who connects
AUTHENTICATING = {"CUSTOM", "LDAP", "KERBEROS", "PAM"}


class AuthError(SqlDlError):
    """Binding or authentication is misconfigured."""


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise AuthError(f"cannot resolve host {host!r}") from None
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, hive_authentication: str) -> None:
    if hive_authentication.upper() not in AUTHENTICATING and not is_loopback(host):
        raise AuthError(f"refusing to bind {host} without authentication: anyone who reaches it could run queries. "
                        "Use --auth password --password-file FILE (users added with `sql-dl passwd`), or "
                        "--hiveconf hive.server2.authentication=LDAP|KERBEROS with its settings, or bind 127.0.0.1")


def password_line(user: str, password: str) -> str:
    salt = secrets.token_hex(16)
    return f"{user}:{salt}:{hashlib.sha256((salt + password).encode()).hexdigest()}"


def add_user(path: str | Path, user: str, password: str) -> None:
    """Add or replace ``user`` in the password file (mode 600)."""
    if not user or ":" in user or not password:
        raise AuthError("user names must be non-empty without ':', and passwords non-empty")
    path = Path(path)
    lines = [ln for ln in (path.read_text().splitlines() if path.is_file() else []) if not ln.startswith(user + ":")]
    path.write_text("\n".join(lines + [password_line(user, password)]) + "\n")
    os.chmod(path, 0o600)


def compile_authenticator(cache: Path | None = None) -> Path:
    """The folder holding the compiled authenticator class (compiled once per source version)."""
    try:
        return compile_java(SOURCE, "sqldl/auth/SqlDlPasswordAuthenticator.class", cache)
    except SqlDlError as exc:
        raise AuthError(f"the password authenticator: {exc}") from None


def password_settings(password_file: str | Path) -> dict:
    """Spark/Hive settings that make the Thrift server check logins against ``password_file``."""
    path = Path(password_file).resolve()
    if not path.is_file():
        raise AuthError(f"password file {path} does not exist: create it with `sql-dl passwd {path} USER`")
    return {
        "hive.server2.authentication": "CUSTOM",
        "hive.server2.custom.authentication.class": AUTHENTICATOR,
        "spark.driver.extraClassPath": str(compile_authenticator()),
        # Hive reads the class in a fresh HiveConf at each login, which sees JVM system properties only
        "spark.driver.extraJavaOptions": (f"-Dsqldl.password.file={path} "
                                          f"-Dhive.server2.custom.authentication.class={AUTHENTICATOR}"),
    }
