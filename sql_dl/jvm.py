"""sql-dl's own Java classes (the Thrift server's password check, the Spark extension), compiled on first
use with the Janino compiler that pyspark's jars ship, so no JDK is needed; cached by source and Spark."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from .errors import SqlDlError


def pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def compile_java(source: Path, class_file: str, cache: Path | None = None) -> Path:
    """The folder holding ``source`` compiled (``class_file`` is its path inside, e.g. sqldl/X.class)."""
    jars = pyspark_jars()
    key = hashlib.sha256(source.read_bytes() + str(jars).encode()).hexdigest()[:16]
    root = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sql-dl"
    out = root / f"{source.stem}-{key}"
    if (out / class_file).is_file():
        return out
    janino = [str(next(jars.glob(f"{name}-*.jar"))) for name in ("janino", "commons-compiler")]
    classpath = os.pathsep.join(str(j) for j in sorted(jars.glob("*.jar")))
    partial = out.with_name(f"{out.name}.{os.getpid()}.part")
    partial.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["java", "-cp", os.pathsep.join(janino), "org.codehaus.commons.compiler.samples.CompilerDemo",
                             "-d", str(partial), "-classpath", classpath, str(source)], capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise SqlDlError(f"compiling {source.name} failed: {detail}")
    try:
        partial.replace(out)  # atomic: a concurrent compile of the same source leaves one complete folder
    except OSError:
        pass  # another process finished first: its folder is as good as ours
    return out
