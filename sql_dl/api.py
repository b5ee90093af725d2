"""The Python API: register your own image or tensor model as a Spark SQL function.

``register_image_udf`` is Deep Learning Pipelines' ``registerKerasImageUDF`` for PyTorch and ONNX models;
``register_tensor_udf`` serves non-image models, as its KerasTransformer/TensorFrames did. Both make the
same Arrow UDFs, run on the same executor runtime and model cache as the catalog's functions: only where
the model and its preprocessing come from differs (sources.py). Every mistake in a call is one
:class:`~sql_dl.errors.UsageError` line naming the argument; rows that cannot be used give NULL.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pyspark.sql import SparkSession

from . import registry, runtime, sources
from .catalog import DEFAULT_BATCH, IDENTIFIER, ON_ERROR, InputSpec, ModelSpec, OutputSpec, input_spec
from .errors import UsageError
from .images import to_tensor
from .tensors import TensorInput, TensorOutput, TensorTask, tensor_udf
from .udfs import Task, featurize_udf, fixed_topk_udf, predict_udf, probabilities_udf

IMAGE_OUTPUTS = ("label", "topk", "probabilities", "features")
Preprocessor = Mapping | InputSpec | Callable[[bytes], Any] | None


def register_image_udf(spark: SparkSession, name: str, model: Any, preprocessor: Preprocessor = None, *,
                       input_size: Sequence[int] | None = None, labels: Any = None, output: str = "label",
                       k: int = 5, scores_are: str = "logits", batch_size: int | None = None,
                       device: str | None = None, on_error: str = "null") -> Callable:
    """Register ``model`` as the SQL function ``name(image)``; returns the function for DataFrame code too.

    ``model``: a ``torch.nn.Module`` (exported to ONNX here and checked against PyTorch), an ONNX file path
    or bytes, or a catalog entry name. ``preprocessor``: a mapping like a catalog entry's ``input:`` (its
    ``decoder`` may be a callable), an :class:`InputSpec`, or a callable taking encoded bytes and returning
    HxWx3 (or HxW) uint8 pixels, which are then stretched to ``input_size`` and scaled to [0, 1].
    ``output``: ``label`` (STRING), ``topk`` (the ``k`` best as ARRAY<STRUCT<label, index, score>>),
    ``probabilities`` or ``features`` (ARRAY<FLOAT>). A model output named ``logits`` (else the first) holds
    the scores; one named ``features`` (else the scores output) the features. ``on_error``: ``null`` (a bad
    image gives NULL) or ``fail`` (it fails the query, naming the row), as the catalog's field.
    """
    what = f"register_image_udf({name!r})"
    _check_function_name(spark, name, what)
    if output not in IMAGE_OUTPUTS:
        raise UsageError(f"{what}: output must be one of {', '.join(IMAGE_OUTPUTS)}; got {output!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise UsageError(f"{what}: k must be a positive integer, got {k!r}")
    if scores_are not in ("logits", "probabilities"):
        raise UsageError(f"{what}: scores_are must be logits or probabilities, got {scores_are!r}")
    if on_error not in ON_ERROR:
        raise UsageError(f"{what}: on_error must be null or fail, got {on_error!r}")
    task = image_task(spark, name, model, preprocessor, input_size, labels, output, scores_are,
                      {**_options(batch_size, device, what), "on_error": on_error}, what)
    function = fixed_topk_udf(task, k) if output == "topk" else {
        "label": predict_udf, "probabilities": probabilities_udf, "features": featurize_udf}[output](task)
    return spark.udf.register(name, function)


def image_task(spark: SparkSession, name: str, model: Any, preprocessor: Preprocessor, input_size: Any,
               labels: Any, output: str, scores_are: str, options: dict, what: str) -> Task:
    """Resolve the model, its preprocessing and labels into a checked, shipped :class:`Task`."""
    base = sources.catalog_entry(spark, model)[0] if sources.is_entry_name(model) else None
    if base is not None:
        path, session = base.onnx, sources.open_model(base.onnx, what)
        spec, decoder = _preprocessing(preprocessor, input_size, base.input, session.get_inputs()[0].shape, what)
    elif sources.is_torch_module(model):
        spec, decoder = _preprocessing(preprocessor, input_size, None, None, what)
        path, _ = _export_image_module(model, spec, what)
        session = sources.open_model(path, what)
    else:
        path, _ = sources.onnx_file(model, what)
        session = sources.open_model(path, what)
        spec, decoder = _preprocessing(preprocessor, input_size, None, session.get_inputs()[0].shape, what)
    if decoder is not None:
        sources.ship_by_value(decoder)
    outputs = base.outputs if base is not None else _image_outputs(session, scores_are, output)
    needed = "features" if output == "features" else "scores"
    if getattr(outputs, needed) is None:
        raise UsageError(f"{what}: entry '{base.name}' has no {needed} output (outputs.{needed}), needed for "
                         f"output={output!r}")
    label_source = _labels(labels, outputs, session, base, what) if outputs.scores else "imagenet"
    if base is not None:
        model_spec = dataclasses.replace(base, input=spec, labels=label_source, outputs=outputs,
                                         batch_size=options.get("batch_size", base.batch_size),
                                         device=options.get("device", base.device),
                                         on_error=options.get("on_error", base.on_error))
    else:
        device = options.get("device", "auto")
        model_spec = ModelSpec(name=name, onnx=Path(path), sha256=None, source={}, input=spec, labels=label_source,
                               outputs=outputs, batch_size=options.get("batch_size", DEFAULT_BATCH[device]),
                               device=device, precision="fp32",
                               on_error=options.get("on_error", "null"), functions={},
                               catalog_file="register_image_udf")
    return registry.prepare_task(spark, model_spec, decoder)[1]


def _options(batch_size: Any, device: Any, what: str) -> dict:
    options = {}
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise UsageError(f"{what}: batch_size must be a positive integer, got {batch_size!r}")
        options["batch_size"] = batch_size
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"{what}: device must be auto, cpu or cuda, got {device!r}")
        options["device"] = device
    return options


def _check_function_name(spark: SparkSession, name: Any, what: str) -> None:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise UsageError(f"{what}: the function name must be a SQL identifier (letters, digits, _)")
    if name.lower() in registry._system_functions(spark):
        raise UsageError(f"{what}: '{name}' clashes with Spark's built-in function of that name; choose another")


# --------------------------------------------------------------------------- image preprocessing

def _preprocessing(preprocessor: Preprocessor, input_size: Any, default: InputSpec | None, model_shape: Any,
                   what: str) -> tuple[InputSpec, Callable | None]:
    """(InputSpec, callable decoder or None) from the preprocessor, input_size, an entry's own input spec
    (``default``) or the model's static input shape."""
    size = _input_size(input_size, what)
    if isinstance(preprocessor, InputSpec) or (preprocessor is None and default is not None):
        fixed = preprocessor or default
        if size is not None and size != fixed.size:
            raise UsageError(f"{what}: input_size {list(size)} differs from the preprocessing's size "
                             f"{list(fixed.size)}; give a preprocessor with that size to change it")
        return fixed, None
    if callable(preprocessor):
        preprocessor = {"decoder": preprocessor}
    if not isinstance(preprocessor, (Mapping, type(None))):
        raise UsageError(f"{what}: preprocessor must be a mapping like a catalog entry's input:, an InputSpec, or "
                         f"a callable taking encoded bytes and returning HxWx3 uint8 pixels; got "
                         f"{type(preprocessor).__name__}")
    raw = dict(preprocessor or {})
    decoder = raw.pop("decoder") if callable(raw.get("decoder")) else None
    if decoder is not None:
        raw.setdefault("resize", "stretch")  # the callable decides the geometry; pixels are fitted to size
    raw["size"] = _declared_size(size, raw.get("size"), model_shape, raw.get("layout", "nchw"), what)
    return input_spec(raw, f"{what}: preprocessor"), decoder


def _input_size(input_size: Any, what: str) -> tuple | None:
    if input_size is None:
        return None
    size = sources.positive_shape(input_size, what, "input_size")
    if len(size) != 2:
        raise UsageError(f"{what}: input_size must be (height, width), got {input_size!r}")
    return size


def _declared_size(size: tuple | None, declared: Any, model_shape: Any, layout: str, what: str) -> Any:
    """input_size, else the preprocessor's size, else the (height, width) the model's input fixes."""
    if size is not None:
        if declared is not None and list(declared) != list(size):
            raise UsageError(f"{what}: input_size {list(size)} differs from the preprocessor's size {declared!r}")
        return list(size)
    if declared is not None:
        return declared
    dims = model_shape[2:] if layout == "nchw" else (model_shape or [None] * 3)[1:3]
    if model_shape is not None and len(model_shape) == 4 and all(isinstance(d, int) for d in dims):
        return list(dims)
    raise UsageError(f"{what}: give input_size=(height, width): the model's input does not fix it")


def _export_image_module(module: Any, spec: InputSpec, what: str) -> tuple[Path, str]:
    """A torch image model -> verified ONNX; it returns class scores, or (scores, features)."""
    pixels = np.random.default_rng(0).integers(0, 256, (sources.CHECK_ROWS, *spec.size, 3), dtype=np.uint8)

    def names(count: int) -> list:
        if count > 2:
            raise UsageError(f"{what}: an image model returns class scores, or (scores, features); the torch "
                             f"model returns {count} tensors")
        return ["logits", "features"][:count]

    return sources.export_module(module, [to_tensor(pixels, spec)], ["image"], names, what)


def _image_outputs(session: Any, scores_are: str, output: str) -> OutputSpec:
    """Only the output this function reads: features need no labels, scores no features output."""
    names = [o.name for o in session.get_outputs()]
    scores = "logits" if "logits" in names else names[0]
    if output == "features":
        return OutputSpec(None, scores_are, "features" if "features" in names else scores)
    return OutputSpec(scores, scores_are, None)


def _labels(labels: Any, outputs: OutputSpec, session: Any, base: ModelSpec | None, what: str) -> str:
    """The catalog's labels form: 'imagenet' or a text file (lists are written to one); counts are checked
    against the scores output by registry.inspect_model."""
    if labels is None and base is not None:
        return base.labels
    if labels is None:
        classes = {o.name: o.shape for o in session.get_outputs()}[outputs.scores][-1]
        if classes == 1000:
            return "imagenet"
        if not isinstance(classes, int):
            raise UsageError(f"{what}: give labels=[...]: the model's output {outputs.scores!r} does not fix its "
                             "class count")
        labels = [str(i) for i in range(classes)]
    if labels == "imagenet":
        return labels
    if isinstance(labels, (str, Path)):
        return str(sources.existing_file(labels, what, "labels"))
    if isinstance(labels, Sequence) and labels and all(
            isinstance(v, str) and v.strip() and "\n" not in v for v in labels):
        text = "\n".join(labels) + "\n"
        path = registry.staging_dir() / f"labels-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
        path.write_text(text, encoding="utf-8")
        return str(path)
    raise UsageError(f"{what}: labels must be 'imagenet', a text file (one label per line) or a list of "
                     f"non-empty one-line strings; got {labels!r:.80}")


# --------------------------------------------------------------------------- tensor models

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
    _check_function_name(spark, name, what)
    if on_error not in ON_ERROR:
        raise UsageError(f"{what}: on_error must be null or fail, got {on_error!r}")
    options = _options(batch_size, device, what)
    shapes = _input_shapes(input_shapes, what)
    if output_names is not None and (isinstance(output_names, str) or not all(
            isinstance(n, str) and n for n in output_names) or not output_names):
        raise UsageError(f"{what}: output_names must be a list of output names, got {output_names!r}")
    path, sha = _tensor_model(spark, model, shapes, output_names, what)
    session = sources.open_model(path, what)
    inputs, batch = _match_inputs(session, shapes, what)
    outputs = _select_outputs(session, output_names, what)
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


ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32"}


def _match_inputs(session: Any, shapes: list, what: str) -> tuple[tuple, int | None]:
    """TensorInputs in argument order, checked against the model; and 1 when the model fixes batch 1."""
    model_inputs = session.get_inputs()
    listed = ", ".join(f"{i.name} {i.shape}" for i in model_inputs)
    if len(shapes) != len(model_inputs):
        raise UsageError(f"{what}: input_shapes declares {len(shapes)} input(s); the model takes "
                         f"{len(model_inputs)} ({listed})")
    by_name = {i.name: i for i in model_inputs}
    result, fixed_batch = [], None
    for position, (name, shape) in enumerate(shapes):
        info = by_name.get(name) if name is not None else model_inputs[position]
        if info is None:
            raise UsageError(f"{what}: the model has no input {name!r} (it has: {listed})")
        dims = info.shape
        if len(dims) != len(shape) + 1 or any(isinstance(m, int) and m != s for m, s in zip(dims[1:], shape)):
            raise UsageError(f"{what}: input {info.name!r} is declared {list(shape)} per row, but the model takes "
                             f"{dims} (the first dimension is the batch)")
        if isinstance(dims[0], int):
            if dims[0] != 1:
                raise UsageError(f"{what}: input {info.name!r} fixes the batch size to {dims[0]}; export the model "
                                 "with a dynamic batch dimension")
            fixed_batch = 1
        if info.type not in ONNX_TYPES:
            raise UsageError(f"{what}: input {info.name!r} is {info.type}; supported: {', '.join(ONNX_TYPES)}")
        result.append(TensorInput(info.name, shape, ONNX_TYPES[info.type]))
    return tuple(result), fixed_batch


def _select_outputs(session: Any, output_names: Any, what: str) -> tuple:
    available = {o.name: o for o in session.get_outputs()}
    result = []
    for name in output_names or list(available):
        if name not in available:
            raise UsageError(f"{what}: the model has no output {name!r} (it has: {', '.join(available)})")
        kind = ONNX_TYPES.get(available[name].type, "")
        if not kind:
            raise UsageError(f"{what}: output {name!r} is {available[name].type}; supported: {', '.join(ONNX_TYPES)}")
        dtype = "int64" if kind.startswith("int") else "float32"
        result.append(TensorOutput(name, len(available[name].shape) == 1, dtype))
    return tuple(result)
