"""Executor runtime: models cached per Python worker, batched inference (through :mod:`.backends`).

A UDF closure carries a :class:`ModelRef` (made on the driver); everything that
touches the cache lives in module-level functions of this importable module, so
executors share one cache per worker process (a nested function would carry a
*copy* of module globals when pickled). The cache is a small lock-guarded LRU
keyed by the ONNX file's sha256, the thread count and the device, so a model
is loaded once per worker and reused across tasks and queries. It relies on
Spark reusing Python workers (``spark.python.worker.reuse=true``, the default);
idle workers exit after about a minute and the next query loads the model again.
"""
from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from . import backends
from ..errors import ModelUnavailableError

CACHE_CAPACITY = int(os.environ.get("SQL_DL_MODEL_CACHE_SIZE", "4"))
_lock = threading.Lock()
_models: OrderedDict = OrderedDict()
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
    version: str = "1"  # the catalog version this file is (lineage: predict_NAME_detail, the audit line)
    backend: str = "onnxruntime"  # "onnxruntime" | "openvino" | "auto" (timed on first load, see choose_backend)
    precision: str = "fp32"  # what the entry asks the runtime to compute in (fp32 | bf16 | int8 | fp16)
    sample_shape: tuple | None = None  # one input row's shape and dtype name, for auto's timed run


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


def _check_device(ref: ModelRef, backend: backends.Backend) -> None:
    """``auto`` on a task Spark gave a GPU, with a runtime that cannot use it: say so once, run on CPU."""
    if ref.device == "auto" and _task_gpu() is not None and not backend.cuda_available():
        _warn_once(f"device: auto: Spark gave this task a GPU, but {backend.name} here cannot use CUDA "
                   "(install onnxruntime-gpu); running on CPU")


def _task_attempt() -> dict:
    """Which task attempt ran a batch (retries show as attempt >= 1), for the event log."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return {} if context is None else {"partition": context.partitionId(), "attempt": context.attemptNumber()}


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


def _load(ref: ModelRef, threads: int) -> backends.LoadedModel:
    started = time.perf_counter()
    path = model_path(ref)
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except FileNotFoundError:
        raise ModelUnavailableError(
            f"model '{ref.name}': {path} is not on this executor and Spark shipped no copy named "
            f"{shipped_name(ref.sha256)}: register the catalog in the session that runs the query "
            "(build_session, register_catalog or the extension ship every present model), or put the file at "
            "that path on every worker") from None
    if hashlib.sha256(blob).hexdigest() != ref.sha256:
        raise ModelUnavailableError(f"model '{ref.name}': {ref.path} changed since the catalog was registered "
                                    "(sha256 differs); register the catalog again")
    model, backend, choice = _open(ref, blob, threads)
    if choice:
        logging.getLogger("sql_dl").info("model '%s': backend auto chose %s (ms per batch of %d: %s)", ref.name,
                                         model.backend, ref.batch_size, choice["auto_ms_per_batch"])
    _check_cuda_started(ref, backend, model)
    _check_precision(ref, model)
    _log_event(ref, {"event": "load", "version": ref.version, "sha256": ref.sha256, "threads": threads, "path": path,
                     "backend": model.backend, "device": model.device, "precision": model.precision,
                     "requested": {"backend": ref.backend, "precision": ref.precision}, **choice,
                     "python": sys.executable,  # which environment the executor runs (a shipped one on clusters)
                     "seconds": round(time.perf_counter() - started, 4)})
    return model


def _open(ref: ModelRef, blob: bytes, threads: int) -> tuple[backends.LoadedModel, backends.Backend, dict]:
    """Open with the entry's backend; ``auto`` times every installed one that can run the entry and keeps the
    fastest. Returns the model, its backend, and what auto measured (for the event log)."""
    name = ref.backend
    if ref.precision == "bf16" and name == "auto":
        name = "openvino"  # the only backend with bf16: auto has nothing to choose from
    if name == "openvino" and not backends.BACKENDS["openvino"].installed():
        raise ModelUnavailableError(f"model '{ref.name}': backend openvino is asked for, but openvino is not "
                                    "installed on this executor (pip install 'sql-dl[openvino]', or set backend: auto)")
    if name != "auto":
        backend = backends.get(name)
        _check_device(ref, backend)
        return backend.open(blob, threads, ref.device, _task_gpu(), ref.precision), backend, {}
    candidates = [backends.BACKENDS[n] for n in backends.installed()
                  if not (n == "openvino" and (ref.device == "cuda" or ref.precision == "fp16"))]
    if len(candidates) == 1 or (ref.device != "cpu" and _task_gpu() is not None):
        if not backends.BACKENDS["openvino"].installed():
            _warn_once(f"backend auto: openvino is not installed on this executor; model '{ref.name}' runs on "
                       "onnxruntime (pip install 'sql-dl[openvino]' to let auto choose)")
        backend = backends.get(backends.DEFAULT)
        _check_device(ref, backend)
        return backend.open(blob, threads, ref.device, _task_gpu(), ref.precision), backend, {}
    opened = [(backend, backend.open(blob, threads, "cpu", None, ref.precision)) for backend in candidates]
    timings = choose_backend(opened, ref.sample_shape, ref.batch_size)
    # the first (the default, onnxruntime) stays unless another is clearly faster: a shared host moves timings
    # by several per cent, and auto must never be slower than the default
    best = min(range(len(opened)), key=lambda i: timings[i] / (1.0 if i == 0 else AUTO_MARGIN))
    backend, model = opened[best]
    return model, backend, {"auto_ms_per_batch": {b.name: round(t * 1000, 2) for (b, _), t in zip(opened, timings)}}


AUTO_MARGIN = 0.95  # auto picks a non-default backend only when its batch takes under 95% of the default's
AUTO_ROUNDS = 3


def choose_backend(opened: list, sample_shape: tuple | None, batch_size: int) -> list[float]:
    """Median seconds per batch of each opened model on a random batch of the entry's own input shape, the
    backends interleaved round by round so host drift hits all alike. Models whose input shape is not known
    get +inf except the first (the default is kept)."""
    first = opened[0][1].inputs[0]
    if sample_shape is not None:
        shape, dtype = (batch_size, *sample_shape[0]), sample_shape[1]
    else:
        shape, dtype = (batch_size, *first.shape[1:]), first.dtype
    if any(not isinstance(d, int) for d in shape):
        return [0.0] + [float("inf")] * (len(opened) - 1)
    rng = np.random.default_rng(0)
    batch = (rng.integers(0, 256, shape).astype(dtype) if dtype == "uint8"
             else rng.standard_normal(shape).astype(dtype))
    runs: list[list[float]] = [[] for _ in opened]
    for round_ in range(AUTO_ROUNDS + 1):  # round 0 warms up (first-run allocations, lazy compilation)
        for i, (_, model) in enumerate(opened):
            feeds = {model.inputs[0].name: batch}
            started = time.perf_counter()
            model.run([model.outputs[0].name], feeds)
            if round_:
                runs[i].append(time.perf_counter() - started)
    return [sorted(r)[len(r) // 2] for r in runs]


def _check_precision(ref: ModelRef, model: backends.LoadedModel) -> None:
    """A runtime may compute in another precision than asked (OpenVINO runs bf16 as fp32 on CPUs without
    AMX/AVX512_BF16): say so once; the event log records what ran."""
    if ref.precision == "bf16" and model.precision != "bf16":
        _warn_once(f"model '{ref.name}': precision bf16 is not native on this CPU (no AMX or AVX512_BF16); "
                   f"{model.backend} computes in {model.precision}")


def _check_cuda_started(ref: ModelRef, backend: backends.Backend, model: backends.LoadedModel) -> None:
    """A runtime may silently drop a CUDA device that fails to start (no driver, no device): refuse that
    for device: cuda, warn once for auto."""
    if ref.device == "cpu" or not backend.cuda_available() or model.device == "cuda":
        return
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


def get_model(ref: ModelRef) -> backends.LoadedModel:
    """The cached model for this entry in this worker, loading it on first use."""
    threads = task_threads()
    key = (ref.sha256, threads, ref.device, _task_gpu(), ref.backend, ref.precision)
    with _lock:  # one load at a time: two tasks in a worker must not both load the same model
        model = _models.get(key)
        if model is None:
            model = _load(ref, threads)
            evicted = _evict_versions(ref.name)
            _models[key] = (ref.name, model)
            _freeze_heap()
            while len(_models) > CACHE_CAPACITY:
                _models.popitem(last=False)
                evicted = True
            if evicted:
                _return_freed_memory()
        _models.move_to_end(key)
        return _models[key][1]


def _evict_versions(name: str) -> bool:
    """Before another version of entry ``name`` loads, keep only its most recent one: a swapped alias leaves
    at most two versions of an entry in a worker (the one queries move to, and one still in use: the A/B
    query ``ml_predict('m@champion', x), ml_predict('m@candidate', x)`` runs without reloading)."""
    same = [key for key, (owner, _) in _models.items() if owner == name]
    for key in same[:-1]:
        del _models[key]
    return len(same) > 1


def _return_freed_memory() -> None:
    """Give an evicted model's memory back to the OS. glibc keeps freed blocks for reuse, and a worker's RSS
    then grew ~40 MiB per swap of EfficientNet-Lite0 with two versions cached; with malloc_trim it stays
    flat (bench/NOTES.md, "Hot swap")."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the allocator keeps what it keeps


def run(ref: ModelRef, tensor: np.ndarray, output_names: list) -> list:
    """Run the model on ``tensor`` in chunks of the entry's batch size; concatenated outputs in order."""
    model = get_model(ref)
    return _run_chunks(ref, model, {model.inputs[0].name: tensor}, output_names)


def run_feeds(ref: ModelRef, feeds: dict, output_names: list) -> list:
    """Like :func:`run` for models with several inputs: ``feeds`` maps input name -> batch (same row count)."""
    return _run_chunks(ref, get_model(ref), feeds, output_names)


def _run_chunks(ref: ModelRef, model: backends.LoadedModel, feeds: dict, output_names: list) -> list:
    rows = len(next(iter(feeds.values())))
    chunks = [model.run(output_names, {name: value[i:i + ref.batch_size] for name, value in feeds.items()})
              for i in range(0, rows, ref.batch_size)]
    if ref.event_log:
        _log_event(ref, {"event": "infer", "rows": rows, **_task_attempt()})
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
