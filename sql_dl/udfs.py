"""The vectorized Arrow UDFs that run on executors: decode -> preprocess -> ONNX Runtime -> outputs.

Each UDF is an iterator-of-``pyarrow.Array`` ``arrow_udf`` (Spark 4.1+): images
arrive as Arrow arrays (binary, or the image source's struct) with no pandas
conversion, and results leave as Arrow arrays. The closures carry only a
frozen :class:`Task`; model loading and caching happen in
:mod:`sql_dl.runtime`'s module-level functions (see its docstring for why).
A row whose image cannot be decoded becomes NULL; the query goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Tuple

import numpy as np
import pyarrow as pa
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType, StructField, StructType

from . import runtime
from .catalog import InputSpec, OutputSpec
from .errors import ImageDecodeError
from .images import image_to_pixels, to_tensor
from .outputs import features_array, probabilities, top1_array, topk_array

TOPK_SQL_TYPE = ArrayType(StructType([StructField("label", StringType()), StructField("index", IntegerType()),
                                      StructField("score", FloatType())]))
FEATURES_SQL_TYPE = ArrayType(FloatType())


@dataclass(frozen=True)
class Task:
    """Everything an executor needs for one catalog entry (labels travel with it: no shared filesystem)."""

    ref: runtime.ModelRef
    input: InputSpec
    outputs: OutputSpec
    labels: tuple
    decoder: Callable | None = None  # a catalog-named hook from udfs/, pickled by value


def decode_batch(images: pa.Array, spec: InputSpec,
                 decoder: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Arrow images -> (valid mask, NHWC uint8 batch of the valid rows). Bad or NULL rows are masked out."""
    valid = np.zeros(len(images), dtype=bool)
    pixels = []
    for row, cell in enumerate(images.to_pylist()):
        if cell is None:
            continue
        try:
            pixels.append(image_to_pixels(cell, spec, decoder))
        except ImageDecodeError:
            continue
        valid[row] = True
    height, width = spec.size
    batch = np.stack(pixels) if pixels else np.zeros((0, height, width, 3), np.uint8)
    return valid, batch


def infer(task: Task, images: pa.Array, output_names: list) -> tuple[np.ndarray, list]:
    """Run the model on one Arrow batch: (valid mask, outputs for the valid rows)."""
    valid, batch = decode_batch(images, task.input, task.decoder)
    if not valid.any():
        return valid, [np.zeros((0, 1), np.float32) for _ in output_names]
    return valid, runtime.run(task.ref, to_tensor(batch, task.input), output_names)


def predict_batch(task: Task, images: pa.Array) -> pa.Array:
    valid, (scores,) = infer(task, images, [task.outputs.scores])
    return top1_array(scores, valid, task.labels)


def topk_batch(task: Task, images: pa.Array, ks: pa.Array) -> pa.Array:
    valid, (scores,) = infer(task, images, [task.outputs.scores])
    probs = probabilities(scores, task.outputs.scores_are) if len(scores) else scores
    k_values = np.asarray(ks.to_pylist(), dtype=object)[valid]
    return topk_array(probs, valid, k_values, task.labels)


def featurize_batch(task: Task, images: pa.Array) -> pa.Array:
    valid, (features,) = infer(task, images, [task.outputs.features])
    return features_array(features, valid)


def predict_udf(task: Task):
    def predict(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for images in batches:
            yield predict_batch(task, images)
    return arrow_udf(predict, StringType())


def topk_udf(task: Task):
    def predict_topk(batches: Iterator[Tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:
        for images, ks in batches:
            yield topk_batch(task, images, ks)
    return arrow_udf(predict_topk, TOPK_SQL_TYPE)


def featurize_udf(task: Task):
    def featurize(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for images in batches:
            yield featurize_batch(task, images)
    return arrow_udf(featurize, FEATURES_SQL_TYPE)


UDF_FACTORIES = {"predict": predict_udf, "topk": topk_udf, "featurize": featurize_udf}
