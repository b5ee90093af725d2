"""Executor runtime: ONNX Runtime sessions cached per Python worker, batched inference.

A UDF closure carries a :class:`ModelRef` (made on the driver); everything that
touches the cache lives in module-level functions of this importable module, so
executors share one cache per worker process (a nested function would carry a
*copy* of module globals when pickled). The cache is a small lock-guarded LRU
keyed by the ONNX file's sha256, the thread count and the providers, so a model
is loaded once per worker and reused across tasks and queries. It relies on
Spark reusing Python workers (``spark.python.worker.reuse=true``, the default);
idle workers exit after about a minute and the next query loads the model again.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import ModelUnavailableError

CACHE_CAPACITY = int(os.environ.get("SQL_DL_MODEL_CACHE_SIZE", "4"))
_lock = threading.Lock()
_sessions: OrderedDict = OrderedDict()
_warnings: set = set()


@dataclass(frozen=True)
class ModelRef:
    """What an executor needs to find, check and run one model; made and validated on the driver."""

    name: str
    path: str
    sha256: str
    device: str  # "auto" | "cpu" | "cuda"
    batch_size: int
    event_log: str | None = None  # JSON-lines file that records model loads (tests, operations)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def task_threads() -> int:
    """ONNX Runtime intra-op threads: the cores Spark gave this task (spark.task.cpus)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is not None:
        return max(1, context.cpus())
    return os.cpu_count() or 1


def _task_gpu() -> int | None:
    from pyspark import TaskContext

    context = TaskContext.get()
    gpu = context.resources().get("gpu") if context is not None else None
    return int(gpu.addresses[0]) if gpu is not None and gpu.addresses else None


def providers(device: str) -> list:
    """ONNX Runtime providers for a catalog device; ``cuda`` without CUDA is an error, ``auto`` falls back."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ModelUnavailableError("device: cuda, but this onnxruntime has no CUDA execution provider "
                                    "(install onnxruntime-gpu on a GPU machine, or set device: auto|cpu)")
    if device == "cpu" or not has_cuda:
        if device == "auto" and _task_gpu() is not None:
            _warn_once("device: auto: Spark gave this task a GPU, but this onnxruntime has no CUDA execution "
                       "provider (install onnxruntime-gpu); running on CPU")
        return ["CPUExecutionProvider"]
    gpu = _task_gpu()
    return [("CUDAExecutionProvider", {"device_id": gpu or 0}), "CPUExecutionProvider"]


def _log_event(ref: ModelRef, event: dict) -> None:
    if ref.event_log:
        with open(ref.event_log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"model": ref.name, "pid": os.getpid(), **event}) + "\n")


def shipped_name(sha256: str) -> str:
    """The name a model travels under with SparkContext.addFile: its content hash."""
    return f"sql-dl-{sha256}.onnx"


def model_path(ref: ModelRef) -> str:
    """The copy Spark shipped to this executor (no shared filesystem needed), else the catalog's path."""
    try:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(shipped_name(ref.sha256))
        if os.path.isfile(shipped):
            return shipped
    except Exception:  # noqa: BLE001 - outside a Spark worker there is no SparkFiles root
        pass
    return ref.path


def _load(ref: ModelRef, threads: int, provider_list: list):
    import onnxruntime as ort

    started = time.perf_counter()
    path = model_path(ref)
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except FileNotFoundError:
        raise ModelUnavailableError(f"model '{ref.name}': {path} is not on this executor") from None
    if hashlib.sha256(blob).hexdigest() != ref.sha256:
        raise ModelUnavailableError(f"model '{ref.name}': {ref.path} changed since the catalog was registered "
                                    "(sha256 differs); register the catalog again")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(blob, sess_options=options, providers=provider_list)
    _check_cuda_started(ref, provider_list, session.get_providers())
    _log_event(ref, {"event": "load", "sha256": ref.sha256, "threads": threads, "path": path,
                     "seconds": round(time.perf_counter() - started, 4)})
    return session


def _check_cuda_started(ref: ModelRef, wanted: list, got: list) -> None:
    """ONNX Runtime silently drops a CUDA provider that fails to start (no driver, no device): refuse that for
    device: cuda, warn once for auto."""
    if not any(p == "CUDAExecutionProvider" or p[0] == "CUDAExecutionProvider" for p in wanted):
        return
    if "CUDAExecutionProvider" not in got:
        message = f"model '{ref.name}': the CUDA execution provider did not start on this executor"
        if ref.device == "cuda":
            raise ModelUnavailableError(message + " (device: cuda); check the NVIDIA driver and CUDA libraries")
        _warn_once(message + "; running on CPU (device: auto)")


def _warn_once(message: str) -> None:
    if message not in _warnings:
        _warnings.add(message)
        logging.getLogger("sql_dl").warning("%s", message)


def _freeze_heap() -> None:
    """Exempt everything alive now (pyspark, pandas, pyarrow, onnxruntime, ... ~100,000 objects) from the
    cycle collector. PySpark's daemon runs a full ``gc.collect()`` after every task of a reused worker, and
    over that heap each one cost 35-55 ms (measured): ~1.5 core-ms per image for a 32-file task. Frozen
    objects are still freed by reference counting; only cycles among them are never collected."""
    gc.freeze()


def get_session(ref: ModelRef):
    """The cached ONNX Runtime session for this model in this worker, loading it on first use."""
    threads, provider_list = task_threads(), providers(ref.device)
    key = (ref.sha256, threads, repr(provider_list))
    with _lock:  # one load at a time: two tasks in a worker must not both load the same model
        session = _sessions.get(key)
        if session is None:
            session = _load(ref, threads, provider_list)
            _sessions[key] = session
            _freeze_heap()
            while len(_sessions) > CACHE_CAPACITY:
                _sessions.popitem(last=False)
        _sessions.move_to_end(key)
        return session


def run(ref: ModelRef, tensor: np.ndarray, output_names: list) -> list:
    """Run the model on ``tensor`` in chunks of the entry's batch size; concatenated outputs in order."""
    session = get_session(ref)
    return _run_chunks(ref, session, {session.get_inputs()[0].name: tensor}, output_names)


def run_feeds(ref: ModelRef, feeds: dict, output_names: list) -> list:
    """Like :func:`run` for models with several inputs: ``feeds`` maps input name -> batch (same row count)."""
    return _run_chunks(ref, get_session(ref), feeds, output_names)


def _run_chunks(ref: ModelRef, session, feeds: dict, output_names: list) -> list:
    rows = len(next(iter(feeds.values())))
    chunks = [session.run(output_names, {name: value[i:i + ref.batch_size] for name, value in feeds.items()})
              for i in range(0, rows, ref.batch_size)]
    _log_event(ref, {"event": "infer", "rows": rows})
    return [np.concatenate([chunk[j] for chunk in chunks]) for j in range(len(output_names))]


_memo: tuple | None = None  # (key, the input kept alive so its buffers are not reused, result)


def memoized(key: tuple, keep_alive: object, compute):
    """The result for ``key`` if it is the batch seen last in this worker, else ``compute()`` remembered.

    One entry is enough: Spark hands all UDFs of one evaluation the same batch one after another."""
    global _memo
    memo = _memo
    if memo is not None and memo[0] == key:
        return memo[2]
    result = compute()
    _memo = (key, keep_alive, result)
    return result
