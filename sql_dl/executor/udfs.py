"""The vectorized Arrow UDFs that run on executors: decode -> preprocess -> ONNX Runtime -> outputs.

Each UDF is a scalar ``arrow_udf`` (Spark 4.1+): images
arrive as Arrow arrays (binary, or the image source's struct) with no pandas
conversion, and results leave as Arrow arrays. The closures carry only a
frozen :class:`Task`; model loading and caching happen in
:mod:`sql_dl.executor.runtime`'s module-level functions (see its docstring for why).
A row whose image cannot be decoded becomes NULL; the query goes on.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from . import runtime
from ..errors import ImageDecodeError
from ..specs import InputSpec, OutputSpec
from .images import image_to_pixels, to_tensor


@dataclass(frozen=True)
class Task:
    """Everything an executor needs for one catalog entry (labels travel with it: no shared filesystem)."""

    ref: runtime.ModelRef
    input: InputSpec
    outputs: OutputSpec
    labels: tuple
    decoder: Callable | None = None  # a catalog-named hook from udfs/, pickled by value
    on_error: str = "null"  # "null": a bad image gives NULL; "fail": it fails the query, naming the row


def decode_batch(images: pa.Array, spec: InputSpec, decoder: Callable | None = None,
                 on_error: str = "null", first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Arrow images -> (valid mask, NHWC uint8 batch of the valid rows). NULL rows are masked out; so are bad
    images, unless ``on_error`` is "fail": then the first one raises, naming where it is."""
    valid = np.zeros(len(images), dtype=bool)
    pixels = []
    for row, cell in enumerate(images.to_pylist()):
        if cell is None:
            continue
        try:
            pixels.append(image_to_pixels(cell, spec, decoder))
        except ImageDecodeError as exc:
            if on_error == "fail":
                raise ImageDecodeError(f"{describe_cell(cell, first_row + row)}: {exc} (on_error: fail)") from None
            continue
        valid[row] = True
    height, width = spec.size
    batch = np.stack(pixels) if pixels else np.zeros((0, height, width, 3), np.uint8)
    return valid, batch


def describe_cell(cell: object, row: int) -> str:
    """Where a bad image is, for the one-line error: the image source names its file; for bytes, the
    content hash finds it (``WHERE sha2(content, 256) LIKE 'prefix%'``)."""
    if isinstance(cell, dict):
        return f"image {cell.get('origin') or f'in row {row} of the batch'}"
    digest = hashlib.sha256(cell).hexdigest()[:16]
    return (f"image in row {row} of a batch of partition {_partition()} ({len(cell)} bytes, sha256 {digest}...; "
            f"find it with WHERE sha2(content, 256) LIKE '{digest}%')")


def _partition() -> str:
    from pyspark import TaskContext

    context = TaskContext.get()
    return str(context.partitionId()) if context is not None else "?"


def infer(task: Task, images: pa.Array) -> tuple[np.ndarray, dict]:
    """Run the model on one Arrow batch: (valid mask, every output the entry names, for the valid rows).

    Rows are decoded and run ``batch_size`` at a time, so each chunk's pixels are still in the CPU caches
    when the network reads them (decoding the whole Arrow batch first measured ~3% slower, bench/NOTES.md).
    All outputs come from one ONNX Runtime run and are remembered for the batch, so a query that calls
    predict_NAME and featurize_NAME on the same column (one Arrow evaluation, same input buffers) runs
    the network once.
    """
    names = task.outputs.onnx_names()

    def compute() -> tuple[np.ndarray, dict]:
        valid, parts = np.zeros(len(images), dtype=bool), {name: [] for name in names}
        for start in range(0, len(images), task.ref.batch_size):
            chunk = images.slice(start, task.ref.batch_size)
            chunk_valid, batch = decode_batch(chunk, task.input, task.decoder, task.on_error, start)
            valid[start:start + len(chunk)] = chunk_valid
            if len(batch):
                for name, out in zip(names, runtime.run(task.ref, to_tensor(batch, task.input), names)):
                    parts[name].append(out)
        return valid, {name: np.concatenate(v) if v else np.zeros((0, 1), np.float32) for name, v in parts.items()}

    return runtime.memoized(_batch_key(task, images), images, compute)


def _batch_key(task: Task, images: pa.Array) -> tuple:
    """Identifies this batch's data by its Arrow buffers (kept alive by the memo, so never reused)."""
    buffers = tuple(b.address if b is not None else 0 for b in images.buffers())
    return (task.ref.sha256, id(task.decoder), task.input, task.outputs, task.on_error, images.offset,
            len(images), buffers)
