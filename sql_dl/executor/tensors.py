"""Tensor (non-image) models on executors: array columns in, model outputs out, as one Arrow UDF.

Each SQL argument feeds one model input and holds, per row, either a flat array of ``prod(shape)``
numbers or nested arrays whose levels have the declared sizes (``ARRAY<ARRAY<FLOAT>>`` for shape
``[2, 3]``). Columns become batches from their Arrow offsets, without a Python loop over values. A NULL
row, or a row of another shape, gives NULL, as an undecodable image does on the SQL path; with
``on_error="fail"`` a row of another shape fails the query with one line naming the input, the row and
both sizes. Several outputs come back as a struct with one field per output.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import pyarrow as pa
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import ArrayType, DataType, FloatType, LongType, StructField, StructType

from . import runtime
from ..errors import UsageError
from .outputs import features_array


@dataclass(frozen=True)
class TensorInput:
    name: str  # the ONNX input it feeds
    shape: tuple  # per row, without the batch dimension
    dtype: str  # numpy dtype the model takes


@dataclass(frozen=True)
class TensorOutput:
    name: str
    scalar: bool  # the ONNX output is [batch]: one number per row, not an array
    dtype: str  # "float32" | "int64"


@dataclass(frozen=True)
class TensorTask:
    """Everything an executor needs to run one tensor model (made and checked on the driver)."""

    ref: runtime.ModelRef
    inputs: tuple
    outputs: tuple
    strict: bool  # on_error="fail": a row of another shape fails the query instead of giving NULL
    what: str  # how error messages name the function


def _lengths_needed(depth: int, shape: tuple, where: str) -> list[int]:
    """List lengths each nesting level must have: outer levels one dimension each, the innermost the rest."""
    if depth > len(shape):
        raise UsageError(f"{where} is nested {depth} deep, but its declared shape {list(shape)} has "
                         f"{len(shape)} dimension(s)")
    return [*shape[:depth - 1], prod(shape[depth - 1:])]


def _all_good(good: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per row: whether every element in its span [start, end) is good (a cumulative count, no loop)."""
    bad = np.concatenate([[0], np.cumsum(~good)])
    return bad[ends] == bad[starts]


def _levels(data_type: pa.DataType) -> int:
    """How many list levels a column type nests (ARRAY<ARRAY<FLOAT>> -> 2)."""
    depth = 0
    while pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        depth, data_type = depth + 1, data_type.value_type
    return depth


def parse_column(column: pa.Array, item: TensorInput, task: TensorTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of the declared shape, each row's first value in ``values``, the leaf values as a numpy array).

    Walks the list levels keeping each row's span of elements: a row is good when every list in its span
    has the length its level needs and nothing in it is NULL."""
    where = f"{task.what}: input '{item.name}'"
    depth = _levels(column.type)
    if depth == 0:
        raise UsageError(f"{where} must be an array of numbers, got {column.type}")
    not_null = ~np.asarray(column.is_null(), dtype=bool)
    ok = not_null.copy()
    starts, ends = np.arange(len(column)), np.arange(1, len(column) + 1)
    array = column
    for want in _lengths_needed(depth, item.shape, where):
        offsets = np.asarray(array.offsets)  # the slice's own offsets, into the unsliced .values
        good = (np.diff(offsets) == want) & ~np.asarray(array.is_null(), dtype=bool)
        ok &= _all_good(good, starts, ends)
        starts, ends, array = offsets[starts], offsets[ends], array.values
    if pa.types.is_decimal(array.type):
        array = array.cast(pa.float64())  # SQL literals such as 1.5 are DECIMAL
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise UsageError(f"{where} must hold numbers, got arrays of {array.type}")
    if array.null_count:
        ok &= _all_good(~np.asarray(array.is_null(), dtype=bool), starts, ends)
    values = array.to_numpy(zero_copy_only=False)
    if task.strict and (not_null & ~ok).any():
        row = int(np.flatnonzero(not_null & ~ok)[0])  # batch positions mean nothing to a user: show the values
        shown = values[starts[row]:min(ends[row], starts[row] + 6)].tolist()
        more = ", ..." if ends[row] - starts[row] > 6 else ""
        raise UsageError(f"{where}: a row holds {int(ends[row] - starts[row])} values ({str(shown)[1:-1]}{more}), "
                         f"not the declared shape {list(item.shape)} ({prod(item.shape)} values)")
    return ok, starts, values


def _gather(values: np.ndarray, starts: np.ndarray, item: TensorInput) -> np.ndarray:
    """Each row's prod(shape) consecutive values, as one (rows, *shape) batch in the model's dtype."""
    index = starts[:, None] + np.arange(prod(item.shape))
    return values[index].reshape(len(starts), *item.shape).astype(item.dtype, copy=False)


def _to_arrow(values: np.ndarray, valid: np.ndarray, output: TensorOutput) -> pa.Array:
    value_type = pa.float32() if output.dtype == "float32" else pa.int64()
    if not output.scalar:
        return features_array(values, valid, value_type)
    full = np.zeros(len(valid), dtype=output.dtype)
    full[valid] = values.reshape(-1)
    return pa.array(full, value_type, mask=~valid)


def tensor_batch(task: TensorTask, columns: tuple) -> pa.Array:
    """One Arrow batch: parse every input, run the model once on the rows good in all of them."""
    parsed = [parse_column(column, item, task) for column, item in zip(columns, task.inputs)]
    valid = np.logical_and.reduce([ok for ok, _, _ in parsed])
    names = [output.name for output in task.outputs]
    if valid.any():
        feeds = {item.name: _gather(values, starts[valid], item) for (_, starts, values), item in zip(parsed, task.inputs)}
        results = runtime.run_feeds(task.ref, feeds, names)
    else:
        results = [np.zeros((0, 1), np.float32) for _ in names]
    arrays = [_to_arrow(values, valid, output) for values, output in zip(results, task.outputs)]
    if len(arrays) == 1:
        return arrays[0]
    return pa.StructArray.from_arrays(arrays, names=names, mask=pa.array(~valid))


def _sql_type(output: TensorOutput) -> DataType:
    base = FloatType() if output.dtype == "float32" else LongType()
    return base if output.scalar else ArrayType(base)


def return_type(task: TensorTask) -> DataType:
    """One output: its type; several: a struct with a field per output, in order."""
    if len(task.outputs) == 1:
        return _sql_type(task.outputs[0])
    return StructType([StructField(output.name, _sql_type(output)) for output in task.outputs])


def tensor_udf(task: TensorTask):
    def run_tensor_model(*columns: pa.Array) -> pa.Array:
        return tensor_batch(task, columns)
    return arrow_udf(run_tensor_model, return_type(task))
