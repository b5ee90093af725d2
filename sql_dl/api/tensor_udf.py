"""``register_tensor_udf``: a non-image model (arrays in, arrays out) as a Spark SQL function.

It serves what Deep Learning Pipelines' KerasTransformer/TensorFrames did, on the same executor runtime
and model cache as the catalog's functions (:mod:`sql_dl.executor.tensors`). Every mistake in a call is
one :class:`~sql_dl.errors.UsageError` line naming the argument; rows of another shape give NULL.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pyspark.sql import SparkSession

from .. import registry
from ..catalog import ON_ERROR
from ..errors import UsageError
from ..executor import runtime
from ..executor.backends import LoadedModel
from ..executor.tensors import TensorInput, TensorOutput, TensorTask, tensor_udf
from . import sources

# numpy dtypes a tensor model may take and give
TENSOR_DTYPES = ("float32", "float64", "float16", "int64", "int32")

def register_tensor_udf(spark: SparkSession, name: str, model: Any, input_shapes: Any, *,
                        output_names: Sequence[str] | None = None, batch_size: int = 64, device: str = "auto",
                        on_error: str = "null") -> Callable:
    """Register a non-image model as the SQL function ``name(x1, x2, ...)``, one array column per input.

    ``input_shapes``: each input's shape without the batch dimension, in argument order: a list (one input),
    a list of lists, or a mapping of ONNX input name -> shape. Rows hold flat arrays of prod(shape) numbers or
    nested arrays of those sizes. ``model``: a ``torch.nn.Module`` (float32 inputs; exported here and checked
    against PyTorch), an ONNX file path or bytes, or a catalog entry name. The function returns the output
    (FLOAT for a [batch] output, else ARRAY<FLOAT> flattened; LONG for integer outputs), or a struct of
    ``output_names`` (default: every model output). ``on_error="fail"`` fails the query on a row of another
    shape instead of giving NULL.
    """
    what = f"register_tensor_udf({name!r})"
    sources.require_classic(spark, what)
    sources.check_function_name(spark, name, what)
    if on_error not in ON_ERROR:
        raise UsageError(f"{what}: on_error must be null or fail, got {on_error!r}")
    options = sources.model_options(batch_size, device, what)
    shapes = _input_shapes(input_shapes, what)
    if output_names is not None and (isinstance(output_names, str) or not all(
            isinstance(n, str) and n for n in output_names) or not output_names):
        raise UsageError(f"{what}: output_names must be a list of output names, got {output_names!r}")
    path, sha = _tensor_model(spark, model, shapes, output_names, what)
    opened = sources.open_model(path, what)
    inputs, batch = _match_inputs(opened, shapes, what)
    outputs = _select_outputs(opened, output_names, what)
    registry.ship_file(spark, path, sha)
    event_log = spark.conf.get(registry.EVENT_LOG_CONF, None) or None
    ref = runtime.ModelRef(name, str(path), sha, options["device"], batch or options["batch_size"], event_log)
    return spark.udf.register(name, tensor_udf(TensorTask(ref, inputs, outputs, on_error == "fail", what)))


def _input_shapes(input_shapes: Any, what: str) -> list[tuple[str | None, tuple]]:
    """[(ONNX input name or None for 'by position', shape)], in SQL argument order."""
    if isinstance(input_shapes, Mapping) and input_shapes:
        return [(str(key), sources.positive_shape(value, what, f"input_shapes[{key!r}]"))
                for key, value in input_shapes.items()]
    if isinstance(input_shapes, Sequence) and not isinstance(input_shapes, str) and input_shapes:
        if all(isinstance(v, (int, np.integer)) for v in input_shapes):
            return [(None, sources.positive_shape(input_shapes, what, "input_shapes"))]
        return [(None, sources.positive_shape(v, what, f"input_shapes[{i}]")) for i, v in enumerate(input_shapes)]
    raise UsageError(f"{what}: input_shapes must be a shape like [4], a list of shapes, or a mapping of input "
                     f"name -> shape; got {input_shapes!r}")


def _tensor_model(spark: SparkSession, model: Any, shapes: list, output_names: Any, what: str) -> tuple[Path, str]:
    if sources.is_entry_name(model):
        spec = sources.catalog_entry(spark, model)[0]
        return spec.onnx, runtime.file_sha256(str(spec.onnx))
    if not sources.is_torch_module(model):
        return sources.onnx_file(model, what)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((sources.CHECK_ROWS, *shape), dtype=np.float32) for _, shape in shapes]
    names = [given or f"input_{i}" for i, (given, _) in enumerate(shapes)]

    def name_outputs(count: int) -> list:
        if output_names is None:
            return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        if len(output_names) != count:
            raise UsageError(f"{what}: output_names has {len(output_names)} names; the torch model returns "
                             f"{count} tensors")
        return list(output_names)

    return sources.export_module(model, inputs, names, name_outputs, what)


def _match_inputs(model: LoadedModel, shapes: list, what: str) -> tuple[tuple, int | None]:
    """TensorInputs in argument order, checked against the model; and 1 when the model fixes batch 1."""
    model_inputs = model.inputs
    listed = ", ".join(f"{i.name} {list(i.shape)}" for i in model_inputs)
    if len(shapes) != len(model_inputs):
        raise UsageError(f"{what}: input_shapes declares {len(shapes)} input(s); the model takes "
                         f"{len(model_inputs)} ({listed})")
    by_name = {i.name: i for i in model_inputs}
    result, fixed_batch = [], None
    for position, (name, shape) in enumerate(shapes):
        info = by_name.get(name) if name is not None else model_inputs[position]
        if info is None:
            raise UsageError(f"{what}: the model has no input {name!r} (it has: {listed})")
        dims = list(info.shape)
        if len(dims) != len(shape) + 1 or any(isinstance(m, int) and m != s for m, s in zip(dims[1:], shape)):
            raise UsageError(f"{what}: input {info.name!r} is declared {list(shape)} per row, but the model takes "
                             f"{dims} (the first dimension is the batch)")
        if isinstance(dims[0], int):
            if dims[0] != 1:
                raise UsageError(f"{what}: input {info.name!r} fixes the batch size to {dims[0]}; export the model "
                                 "with a dynamic batch dimension")
            fixed_batch = 1
        if info.dtype not in TENSOR_DTYPES:
            raise UsageError(f"{what}: input {info.name!r} is {info.dtype}; supported: {', '.join(TENSOR_DTYPES)}")
        result.append(TensorInput(info.name, shape, info.dtype))
    return tuple(result), fixed_batch


def _select_outputs(model: LoadedModel, output_names: Any, what: str) -> tuple:
    available = {o.name: o for o in model.outputs}
    result = []
    for name in output_names or list(available):
        if name not in available:
            raise UsageError(f"{what}: the model has no output {name!r} (it has: {', '.join(available)})")
        kind = available[name].dtype
        if kind not in TENSOR_DTYPES:
            raise UsageError(f"{what}: output {name!r} is {kind}; supported: {', '.join(TENSOR_DTYPES)}")
        dtype = "int64" if kind.startswith("int") else "float32"
        result.append(TensorOutput(name, len(available[name].shape) == 1, dtype))
    return tuple(result)
