"""Chapter 31 of *Spark: The Definitive Guide* (Deep Learning Pipelines), step by step, on sql-dl.

    .venv/bin/python examples/transfer_learning.py              # all 1,797 digits, ~3 min on 2 cores
    .venv/bin/python examples/transfer_learning.py --limit 400  # a quicker subset

1. read images into a DataFrame (binaryFile over label=K folders: the label comes from the folder name);
2. transfer learning: DeepImageFeaturizer (EfficientNet-Lite0, ImageNet weights) + LogisticRegression in a
   Pipeline, fitted on the training split;
3. evaluate it on the held-out split (every 4th image);
4. predict with a named model: DeepImagePredictor(decodePredictions=True) on the bundled photos;
5. register a model as a SQL function (register_image_udf; the PyTorch EfficientNet-Lite0 when the export
   extra is installed, as the chapter registers Keras' InceptionV3, else its ONNX file) and query it in SQL.

The data are scikit-learn's bundled handwritten digits (sql_dl.samples.digits), so nothing is downloaded. The last
line printed is a JSON summary of the figures (tests/test_examples.py reads it).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sql_dl import DeepImageFeaturizer, DeepImagePredictor, build_session, load_catalog, register_image_udf
from sql_dl.samples.digits import write_digit_folders
from sql_dl.samples.photos import make_photo_dir

MODEL = "efficientnet_lite0"
CATALOG = Path(__file__).resolve().parent.parent / "models.yaml"  # the checkout's catalog


def read_images(spark: SparkSession, folder: Path) -> DataFrame:
    """1. Images in a DataFrame: path, content (bytes), label (from label=K/), id (from NNNN.png)."""
    return (spark.read.format("binaryFile").load(str(folder))
            .withColumn("label", F.col("label").cast("double"))
            .withColumn("id", F.regexp_extract("path", r"(\d+)\.png$", 1).cast("int")))


def transfer_learning(train: DataFrame, test: DataFrame, max_iter: int, reg_param: float) -> tuple:
    """2-3. Featurizer + logistic regression in a Pipeline; accuracy on the held-out images."""
    featurizer = DeepImageFeaturizer(inputCol="content", outputCol="features", modelName=MODEL)
    classifier = LogisticRegression(maxIter=max_iter, regParam=reg_param, labelCol="label")
    model = Pipeline(stages=[featurizer, classifier]).fit(train)
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol="label")
    return model, evaluator.evaluate(model.transform(test))


def predict_photos(spark: SparkSession, photos: Path) -> dict:
    """4. A named model's top labels for each photo."""
    images = spark.read.format("binaryFile").load(str(photos / "*.jpg"))
    predictor = DeepImagePredictor(inputCol="content", outputCol="top", modelName=MODEL, decodePredictions=True,
                                   topK=3)
    rows = predictor.transform(images).select(F.regexp_extract("path", "[^/]+$", 0).alias("file"), "top").collect()
    return {row.file: [t.label for t in row.top] for row in rows}


def register_model(spark: SparkSession) -> str:
    """5. Register a model as a SQL function; returns what was registered."""
    spec = load_catalog(CATALOG).get(MODEL)
    try:
        from sql_dl.build.export import build_torch_model

        model, kind = build_torch_model(spec, "pretrained"), "torch.nn.Module"
    except Exception:  # noqa: BLE001 - no export extra (torch): the ONNX file does the same
        model, kind = str(spec.onnx), "ONNX file"
    register_image_udf(spark, "my_lite0_udf", model, preprocessor=spec.input)
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N digits (default: all 1,797)")
    parser.add_argument("--size", type=int, default=64, help="digit images are drawn at SIZE x SIZE pixels")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--reg-param", type=float, default=0.01)
    parser.add_argument("--master", default=None, help="Spark master (default local[*])")
    parser.add_argument("--out", default=None, help="folder for the images (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="sql-dl-example-"))
    started = time.perf_counter()

    spark = build_session(master=args.master, catalog=CATALOG)
    images = read_images(spark, write_digit_folders(out / "digits", args.size, args.limit))
    train, test = images.filter("id % 4 != 0"), images.filter("id % 4 = 0")
    model, accuracy = transfer_learning(train, test, args.max_iter, args.reg_param)
    print(f"transfer learning: {train.count()} training and {test.count()} test images, "
          f"test set accuracy = {accuracy:.4f}")

    make_photo_dir(out / "photos")
    top = predict_photos(spark, out / "photos")
    for file, labels in sorted(top.items()):
        print(f"{file}: {', '.join(labels)}")

    kind = register_model(spark)
    sql = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, my_lite0_udf(content) AS label "
                    f"FROM binaryFile.`{out / 'photos'}/*.jpg`").collect()
    print(f"registered a {kind} as my_lite0_udf:", {row.file: row.label for row in sql})
    print(json.dumps({"train": train.count(), "test": test.count(), "accuracy": accuracy, "top": top,
                      "sql": {row.file: row.label for row in sql}, "registered": kind,
                      "seconds": round(time.perf_counter() - started, 1)}))
    spark.stop()


if __name__ == "__main__":
    main()
