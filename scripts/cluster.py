"""A Spark standalone cluster on loopback, and the packed Python environment its executors run.

``python scripts/cluster.py env``   builds ``build/cluster/executor-env.tar.gz``: a virtual environment with
                                    sql-dl's executor dependencies only (no extras, no pyspark: the workers'
                                    Spark distribution brings pyspark.zip), packed by ``venv-pack``.
``python scripts/cluster.py up``    starts Spark's own Master and two Workers (``spark-class``, 1 core each,
                                    own work folders, bound to 127.0.0.1) and prints the master URL.
``python scripts/cluster.py down``  stops every process ``up`` started, by the PIDs it recorded.

The workers run with the machine's environment, not the driver's: no virtual environment on ``PATH``, no
``PYSPARK_PYTHON``, no ``PYTHONPATH``. Executors get their Python from the packed environment, shipped by
Spark itself (``spark.archives``). ``make cluster-env``, ``make cluster-up`` and ``make cluster-down`` run
these; ``tests/test_standalone.py`` uses the same functions.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "build" / "cluster"
ENV_ARCHIVE = STATE / "executor-env.tar.gz"
# sql-dl's executor dependencies: the base install without pyspark (the workers' Spark has it) or click
# (the command is driver-only). Versions come from constraints.txt.
EXECUTOR_PACKAGES = ["onnxruntime", "numpy", "pillow", "pyarrow", "pandas", "pyyaml"]


def spark_home() -> Path:
    """The Spark distribution the master and workers run: pip's pyspark folder (bin/spark-class, jars/,
    python/lib/pyspark.zip, which executors put on their Python path)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def machine_path() -> str:
    """PATH without the driver's virtual environment: what a worker machine's shell would have."""
    venv = Path(sys.prefix).resolve()
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not Path(p).resolve().is_relative_to(venv)]
    return os.pathsep.join(keep)


def worker_environment(java_home: str | None = None) -> dict:
    """The environment the master and workers start with: the machine's, minus every Python setting the
    driver has (so an executor that is not given an environment cannot reach the driver's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "VIRTUAL_ENV", "SPARK_CONF_DIR",
                        "SQL_DL_EXECUTOR_ENV", "SQL_DL_MASTER", "PYTHONHOME")}
    env.update(PATH=machine_path(), SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_NO_DAEMONIZE="1")
    if java_home:
        env["JAVA_HOME"] = java_home
    return env


def build_env(out: Path = ENV_ARCHIVE, python: str | None = None, venv_pack: str | None = None) -> Path:
    """Build the executors' packed environment at ``out`` (made again from scratch each time)."""
    python = python or getattr(sys, "_base_executable", sys.executable)  # the driver's Python version
    venv = out.parent / "executor-venv"
    shutil.rmtree(venv, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-c", str(ROOT / "constraints.txt"), *EXECUTOR_PACKAGES], check=True)
    # sql-dl itself, not editable (venv-pack refuses editable installs), without its driver-side requirements
    subprocess.run(pip + ["--no-deps", "--no-warn-conflicts", str(ROOT)], check=True, cwd=out.parent)
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)  # setuptools' build folder
    if out.exists():
        out.unlink()
    command = [venv_pack] if venv_pack else [sys.executable, "-m", "venv_pack"]
    # what executors never run: installers, test suites, C headers (~80 of ~460 MB unpacked)
    excludes = ["lib/*/site-packages/pip/*", "lib/*/site-packages/pip-*", "lib/*/site-packages/setuptools/*",
                "lib/*/site-packages/setuptools-*", "lib/*/site-packages/_distutils_hack/*",
                "lib/*/site-packages/distutils-precedence.pth", "lib/*/site-packages/pkg_resources/*",
                "lib/*/site-packages/pandas/tests/*", "lib/*/site-packages/pyarrow/tests/*",
                "lib/*/site-packages/pyarrow/include/*", "lib/*/site-packages/numpy/*/tests/*"]
    subprocess.run(command + ["-p", str(venv), "-o", str(out), "-q",
                              *[arg for pattern in excludes for arg in ("--exclude", pattern)]], check=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running standalone cluster: what was started and where its files are."""

    state: str
    master_port: int
    master_pid: int = 0
    workers: list = field(default_factory=list)  # [{"pid", "port", "ui", "dir"}]

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def save(self) -> None:
        Path(self.state, "cluster.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, state: Path = STATE) -> "Cluster | None":
        path = Path(state, "cluster.json")
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def _spark_class(cls_name: str, args: list, log: Path, env: dict) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # spark-class execs the JVM, so this PID is the master's or worker's JVM
        return subprocess.Popen([str(spark_home() / "bin" / "spark-class"), cls_name, *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def start_worker(cluster: Cluster, index: int, env: dict | None = None) -> dict:
    """Start worker ``index`` (again, after a crash: same port, same work folder)."""
    state = Path(cluster.state)
    if index < len(cluster.workers):
        worker = cluster.workers[index]
    else:
        worker = {"port": free_port(), "ui": free_port(), "dir": str(state / f"worker-{index}")}
        cluster.workers.append(worker)
    Path(worker["dir"]).mkdir(parents=True, exist_ok=True)
    proc = _spark_class("org.apache.spark.deploy.worker.Worker",
                        [cluster.url, "--host", "127.0.0.1", "--port", str(worker["port"]), "--webui-port",
                         str(worker["ui"]), "--cores", "1", "--memory", "2g", "--work-dir", worker["dir"]],
                        state / f"worker-{index}.log", env or worker_environment())
    worker["pid"] = proc.pid
    cluster.save()
    return worker


def start(state: Path = STATE, workers: int = 2, timeout: float = 90) -> Cluster:
    """Start a master and ``workers`` workers; return once every worker has registered."""
    state.mkdir(parents=True, exist_ok=True)
    if (old := Cluster.load(state)) is not None:
        stop(old)
    for log in state.glob("*.log"):
        log.unlink()
    env = worker_environment()
    cluster = Cluster(str(state), free_port())
    ui = free_port()
    cluster.master_pid = _spark_class("org.apache.spark.deploy.master.Master",
                                      ["--host", "127.0.0.1", "--port", str(cluster.master_port),
                                       "--webui-port", str(ui)], state / "master.log", env).pid
    cluster.save()
    for index in range(workers):
        start_worker(cluster, index, env)
    wait_registered(cluster, workers, timeout)
    return cluster


def wait_registered(cluster: Cluster, count: int, timeout: float = 90) -> None:
    """Wait until the master's log shows ``count`` worker registrations since it started."""
    log = Path(cluster.state) / "master.log"
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.is_file() else ""
        if text.count("Registering worker") >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not register within {timeout:.0f} s; see {log}")
        time.sleep(0.3)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (executor JVMs under a worker, Python workers under an executor)."""
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to ``pid`` and everything it started; the PIDs signalled."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        _signal(victim, sig)
    return victims


def stop(cluster: Cluster | None) -> None:
    """Stop every process the cluster started (workers with their executors and Python workers, the master),
    by PID, and remove the workers' folders (each executor unpacked the environment there)."""
    if cluster is None:
        return
    started = [w["pid"] for w in cluster.workers if w.get("pid")] + [cluster.master_pid]
    # the whole tree first: once a worker exits, its executors are re-parented and no longer found under it
    everything = [*started, *(child for pid in started for child in descendants(pid))]
    for pid in everything:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3  # a worker stops its executors on SIGTERM; then no more waiting
    while any(_alive(pid) for pid in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in everything:
        _signal(pid, signal.SIGKILL)
    for pid in started:  # reap the ones this process started
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    Path(cluster.state, "cluster.json").unlink(missing_ok=True)
    for worker in cluster.workers:
        shutil.rmtree(worker["dir"], ignore_errors=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["env", "up", "down"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--venv-pack", default=None, help="the venv-pack command (default: python -m venv_pack)")
    args = parser.parse_args(argv)
    if args.action == "env":
        print(build_env(venv_pack=args.venv_pack))
    elif args.action == "up":
        cluster = start(workers=args.workers)
        print(cluster.url)
        print(f"# stop with: make cluster-down (PIDs in {Path(cluster.state) / 'cluster.json'})", file=sys.stderr)
    else:
        stop(Cluster.load())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
