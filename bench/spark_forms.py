"""The baselines of the benchmark, written the way their users write them, around the same decoding code:
Spark's predict_batch_udf fed by a decode UDF (its documented input is a flattened tensor column), and a
row-at-a-time Python UDF (Deep Learning Pipelines' per-row pattern); plus first-query and one-row latency."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml.functions import predict_batch_udf
from pyspark.sql.functions import arrow_udf, pandas_udf, udf
from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType

from sql_dl.executor import runtime
from sql_dl.executor.images import image_to_pixels, to_tensor
from sql_dl.executor.udfs import Task


def decode_udf(task: Task):
    """binary -> the model's input tensor, flattened (predict_batch_udf takes tensors as 1-D arrays)."""
    def decode(contents: pd.Series) -> pd.Series:
        return pd.Series([to_tensor(image_to_pixels(c, task.input)[None], task.input).ravel() for c in contents])
    return pandas_udf(decode, ArrayType(FloatType()))


def predict_batch_form(task: Task):
    """predict_batch_udf with an ONNX Runtime session, one thread per task as Spark gives it one core."""
    def make_predict_fn():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(runtime.model_path(task.ref), options, providers=["CPUExecutionProvider"])
        name, labels = session.get_inputs()[0].name, np.array(task.labels, dtype=object)

        def predict(images: np.ndarray) -> np.ndarray:
            return labels[session.run([task.outputs.get("scores")], {name: images})[0].argmax(axis=1)]
        return predict

    height, width = task.input.size
    return predict_batch_udf(make_predict_fn, return_type=StringType(), batch_size=task.ref.batch_size,
                             input_tensor_shapes=[[3, height, width]])


def row_udf(task: Task):
    """One image per call: decode, run a batch of one, top-1 label (the model cached per worker)."""
    def predict(content):  # no type hints: Spark 4 would read them as a request for an Arrow UDF
        tensor = to_tensor(image_to_pixels(content, task.input)[None], task.input)
        scores = runtime.run(task.ref, tensor, [task.outputs.get("scores")])[0]
        return task.labels[int(scores.argmax())]
    return udf(predict, StringType())


def lengths_udf():
    """The cost of passing images through a Python worker and back, doing nothing with them: an Arrow UDF that
    returns each image's length (the reference that shows sql-dl's own per-row overhead)."""
    def lengths(contents: pa.Array) -> pa.Array:
        return pc.binary_length(contents)
    return arrow_udf(lengths, IntegerType())


def latencies(spark, image: Path, model: str = "efficientnet_lite0", repeats: int = 10) -> dict:
    """First predict of the session (Python workers start, model loads) and the warm one-row median."""
    query = f"SELECT predict_{model}(content) FROM binaryFile.`{image}`"
    started = time.perf_counter()
    spark.sql(query).collect()
    first = time.perf_counter() - started
    warm = []
    for _ in range(repeats):
        started = time.perf_counter()
        spark.sql(query).collect()
        warm.append(time.perf_counter() - started)
    return {"first_s": first, "warm_ms": statistics.median(warm) * 1000}
