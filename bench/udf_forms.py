"""Which vectorized UDF form should carry images? sql-dl's scalar arrow_udf (Arrow in, Arrow out) against an
iterator pandas_udf running the very same decode + ONNX Runtime + output code, side by side in one session;
and predict + featurize in one query (one network run per image) against predict alone.

    .venv/bin/python bench/udf_forms.py [--images 256] [--repeats 3]

Prints images/s per query (median of the repeats) and the ratios.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import StringType

from sql_dl import build_session
from sql_dl.samples.photos import make_photo_dir
from sql_dl.executor.kinds import predict_batch


def pandas_form(task):
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for images in batches:
            yield predict_batch(task, pa.array(images, pa.binary())).to_pandas()
    return pandas_udf(predict, StringType())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sql-dl-bench-"))
    photos = make_photo_dir(folder / "src")
    for i in range(args.images):  # real photos, repeated to the requested count
        (folder / f"{i:05d}.jpg").write_bytes(photos[i % len(photos)].read_bytes())
    spark = build_session()
    task = spark.sql_dl.tasks["efficientnet_lite0"]
    frame = spark.read.format("binaryFile").load(str(folder / "*.jpg")).cache()
    frame.count()
    spark.udf.register("predict_pandas_form", pandas_form(task))
    frame.createOrReplaceTempView("photos")
    queries = {"arrow_udf": "SELECT count(predict_efficientnet_lite0(content)) FROM photos",
               "pandas_udf": "SELECT count(predict_pandas_form(content)) FROM photos",
               "arrow predict+featurize": "SELECT count(predict_efficientnet_lite0(content)), "
                                          "count(featurize_efficientnet_lite0(content)) FROM photos"}
    timings = {form: [] for form in queries}
    for form, query in queries.items():  # warm both: model load + worker start
        spark.sql(query).collect()
    for _ in range(args.repeats):
        for form, query in queries.items():
            started = time.perf_counter()
            spark.sql(query).collect()
            timings[form].append(args.images / (time.perf_counter() - started))
    medians = {form: statistics.median(v) for form, v in timings.items()}
    for form, value in medians.items():
        print(f"{form:24s} {value:8.1f} img/s  (runs: {', '.join(f'{v:.1f}' for v in timings[form])})")
    print(f"arrow/pandas {medians['arrow_udf'] / medians['pandas_udf']:.3f}")
    print(f"(predict+featurize)/predict {medians['arrow predict+featurize'] / medians['arrow_udf']:.3f}")


if __name__ == "__main__":
    main()
