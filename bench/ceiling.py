"""(a) of the benchmark: ONNX Runtime alone on tensors already decoded and preprocessed, all cores, searching
processes x threads x batch size for the best throughput (so the ceiling is not a fixed, beatable config)."""
from __future__ import annotations

import multiprocessing
import time

import numpy as np

from sql_dl.specs import ModelSpec

BATCHES = (1, 8, 32)


def _share(path: str, threads: int, batch: int, share: np.ndarray, barrier, results) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: share[:batch]})  # warm-up: first-run allocations
    barrier.wait()
    started = time.perf_counter()
    for i in range(0, len(share), batch):
        session.run(None, {name: share[i:i + batch]})
    results.put(time.perf_counter() - started)


def concurrent_rate(target, args: tuple, tensor: np.ndarray, processes: int) -> float:
    """Images/s of ``processes`` spawned processes, each calling ``target(*args, share, barrier, results)`` on its
    share of ``tensor``: they start timing together (the barrier) and the slowest one decides."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=target, args=(*args, share, barrier, results))
               for share in np.array_split(tensor, processes)]
    for worker in workers:
        worker.start()
    slowest = max(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return len(tensor) / slowest


def measure(path: str, tensor: np.ndarray, processes: int, threads: int, batch: int) -> float:
    """Images/s of ``processes`` processes, each running its share of ``tensor`` concurrently."""
    return concurrent_rate(_share, (path, threads, batch), tensor, processes)


def best_ceiling(spec: ModelSpec, tensor: np.ndarray, cores: int, images: int = 128) -> dict:
    """The best configuration, one run each over ``images`` of the tensors: {"img_s", "config", "best":
    (processes, threads, batch), "tried"}. A single best-of run flatters the ceiling on a noisy machine, so the
    benchmark measures the chosen configuration again, round-robin with the SQL forms, and reports that median."""
    tried, configs = {}, {}
    for processes in sorted({1, cores}):
        for batch in BATCHES:
            config = f"{processes} process(es) x {cores // processes} thread(s), batch {batch}"
            configs[config] = (processes, cores // processes, batch)
            tried[config] = measure(str(spec.onnx), tensor[:images], processes, cores // processes, batch)
            print(f"  (a) {config:40s} {tried[config]:7.1f} img/s", flush=True)
    best = max(tried, key=tried.get)
    return {"img_s": tried[best], "config": best, "best": configs[best], "tried": tried}
