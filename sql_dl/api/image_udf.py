"""``register_image_udf``: your own image model as a Spark SQL function.

It is Deep Learning Pipelines' ``registerKerasImageUDF`` for PyTorch and ONNX models. It makes the same
Arrow UDFs (a function kind of :mod:`sql_dl.executor.kinds`), run on the same executor runtime and model
cache as the catalog's functions: only where the model and its preprocessing come from differs
(:mod:`.sources`). Every mistake in a call is one :class:`~sql_dl.errors.UsageError` line naming the
argument; rows that cannot be used give NULL.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pyspark.sql import SparkSession

from .. import registry
from ..catalog import DEFAULT_BATCH, ON_ERROR, input_spec
from ..errors import UsageError
from ..executor.backends import LoadedModel
from ..executor.images import to_tensor
from ..executor.kinds import KINDS
from ..executor.udfs import Task
from ..specs import InputSpec, ModelSpec, OutputSpec
from . import sources

# output= -> the function kind it runs
IMAGE_OUTPUTS = {"label": "predict", "topk": "topk", "probabilities": "probabilities", "features": "featurize"}
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
    sources.require_classic(spark, what)
    sources.check_function_name(spark, name, what)
    if output not in IMAGE_OUTPUTS:
        raise UsageError(f"{what}: output must be one of {', '.join(IMAGE_OUTPUTS)}; got {output!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise UsageError(f"{what}: k must be a positive integer, got {k!r}")
    if scores_are not in ("logits", "probabilities"):
        raise UsageError(f"{what}: scores_are must be logits or probabilities, got {scores_are!r}")
    if on_error not in ON_ERROR:
        raise UsageError(f"{what}: on_error must be null or fail, got {on_error!r}")
    task = image_task(spark, name, model, preprocessor, input_size, labels, output, scores_are,
                      {**sources.model_options(batch_size, device, what), "on_error": on_error}, what)
    kind = KINDS[IMAGE_OUTPUTS[output]]
    return spark.udf.register(name, kind.udf(task, name, k=k) if output == "topk" else kind.udf(task, name))


def image_task(spark: SparkSession, name: str, model: Any, preprocessor: Preprocessor, input_size: Any,
               labels: Any, output: str, scores_are: str, options: dict, what: str) -> Task:
    """Resolve the model, its preprocessing and labels into a checked, shipped :class:`Task`."""
    base = sources.catalog_entry(spark, model)[0] if sources.is_entry_name(model) else None
    if base is not None:
        path, opened = base.onnx, sources.open_model(base.onnx, what)
        spec, decoder = _preprocessing(preprocessor, input_size, base.input, opened.inputs[0].shape, what)
    elif sources.is_torch_module(model):
        spec, decoder = _preprocessing(preprocessor, input_size, None, None, what)
        path, _ = _export_image_module(model, spec, what)
        opened = sources.open_model(path, what)
    else:
        path, _ = sources.onnx_file(model, what)
        opened = sources.open_model(path, what)
        spec, decoder = _preprocessing(preprocessor, input_size, None, opened.inputs[0].shape, what)
    if decoder is not None:
        sources.ship_by_value(decoder)
    outputs = base.outputs if base is not None else _image_outputs(opened, scores_are, output)
    needed = "features" if output == "features" else "scores"
    if outputs.get(needed) is None:
        raise UsageError(f"{what}: entry '{base.name}' has no {needed} output (outputs.{needed}), needed for "
                         f"output={output!r}")
    label_source = _labels(labels, outputs, opened, base, what) if outputs.get("scores") else "imagenet"
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


def _image_outputs(model: LoadedModel, scores_are: str, output: str) -> OutputSpec:
    """Only the output this function reads: features need no labels, scores no features output."""
    names = [o.name for o in model.outputs]
    scores = "logits" if "logits" in names else names[0]
    if output == "features":
        return OutputSpec.of(scores_are, features="features" if "features" in names else scores)
    return OutputSpec.of(scores_are, scores=scores)


def _labels(labels: Any, outputs: OutputSpec, model: LoadedModel, base: ModelSpec | None, what: str) -> str:
    """The catalog's labels form: 'imagenet' or a text file (lists are written to one); counts are checked
    against the scores output by registry.inspect_model."""
    if labels is None and base is not None:
        return base.labels
    if labels is None:
        classes = {o.name: o.shape for o in model.outputs}[outputs.get("scores")][-1]
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


