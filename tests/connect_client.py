"""Run by tests/test_connect.py in its own process: a pyspark Spark Connect client (no SparkContext, no
JVM here) against `sql-dl serve --connect`. Prints one JSON object with what it got."""
from __future__ import annotations

import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sql_dl import DeepImageFeaturizer, DeepImagePredictor, register_image_udf


def main(url: str, photos: str) -> None:
    spark = SparkSession.builder.remote(url).getOrCreate()
    out: dict = {"sql": {r.file: r.label for r in spark.sql(
        "SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label "
        "FROM photos").collect()}}
    frame = spark.read.format("binaryFile").load(f"{photos}/*.jpg").withColumn(
        "file", F.regexp_extract("path", "[^/]+$", 0))
    out["dataframe"] = {r.file: r.label for r in frame.select(
        "file", F.call_function("predict_efficientnet_lite0", "content").alias("label")).collect()}
    featurized = DeepImageFeaturizer(inputCol="content", outputCol="f", modelName="efficientnet_lite0").transform(frame)
    out["feature_sizes"] = sorted({len(r.f) for r in featurized.select("f").collect()})
    predicted = DeepImagePredictor(inputCol="content", outputCol="top", modelName="efficientnet_lite0",
                                   decodePredictions=True, topK=2).transform(frame)
    out["topk"] = {r.file: [t.label for t in r.top] for r in predicted.select("file", "top").collect()}
    out["generic"] = {r.file: [r.label, r.version] for r in spark.sql(
        "SELECT regexp_extract(path, '[^/]+$', 0) AS file, ml_predict('efficientnet_lite0@default', content) AS label, "
        "ml_predict_detail('efficientnet_lite0', content).version AS version FROM photos").collect()}
    out["models"] = sorted(r.name for r in spark.sql("SELECT name FROM sql_dl_models() WHERE available").collect())
    try:
        register_image_udf(spark, "mine", "efficientnet_lite0")
        out["register"] = "registered"
    except Exception as exc:  # noqa: BLE001 - the one-line message is what the test checks
        out["register"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
