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
import subprocess
from pathlib import Path

from ..errors import SqlDlError

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


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def compile_authenticator(cache: Path | None = None) -> Path:
    """The folder holding the compiled authenticator class (compiled once per source version)."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + str(_pyspark_jars()).encode()).hexdigest()[:16]
    out = (cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sql-dl") / f"auth-{key}"
    if (out / "sqldl" / "auth" / "SqlDlPasswordAuthenticator.class").is_file():
        return out
    jars = _pyspark_jars()
    janino = [str(next(jars.glob(f"{name}-*.jar"))) for name in ("janino", "commons-compiler")]
    classpath = os.pathsep.join(str(j) for j in sorted(jars.glob("*.jar")))
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["java", "-cp", os.pathsep.join(janino), "org.codehaus.commons.compiler.samples.CompilerDemo",
                             "-d", str(out), "-classpath", classpath, str(SOURCE)], capture_output=True, text=True)
    if result.returncode != 0:
        raise AuthError(f"compiling the password authenticator failed: {result.stderr.strip().splitlines()[-1:]}")
    return out


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
