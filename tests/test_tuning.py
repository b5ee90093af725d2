"""Tuning with CrossValidator/TrainValidationSplit over the featurizer's modelName and the classifier's
parameters: with cache_features each model runs once per image, however many folds and grid points."""
from __future__ import annotations

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
from pyspark.sql import functions as F

from conftest import CATALOG, EFFICIENTNET_ONNX, read_events, write_catalog
from sql_dl import DeepImageFeaturizer, cache_features
from sql_dl.catalog import load_catalog
from sql_dl.samples.digits import write_digit_folders
from sql_dl.registry import register_catalog

torch = pytest.importorskip("torch")  # exports the second model (random weights); `make test` installs it
from sql_dl.build.export import export_onnx  # noqa: E402

MODELS = ["efficientnet_lite0", "resnet18"]
IMAGES = 90


@pytest.fixture(scope="module")
def tuning_catalog(spark, tmp_path_factory):
    """EfficientNet-Lite0 (real weights) and a random-weight ResNet-18, registering no SQL functions."""
    folder = tmp_path_factory.mktemp("tuning")
    export_onnx(load_catalog(CATALOG).get("resnet18"), "random", folder)
    none = "    functions: {predict: null, topk: null, featurize: null}\n"
    body = (f"models:\n  efficientnet_lite0:\n    onnx: {EFFICIENTNET_ONNX}\n"
            "    input: {size: [224, 224], resize: 256, scale: 1.0, mean: [127, 127, 127], std: [128, 128, 128]}\n"
            f"    outputs: {{scores: logits, features: features}}\n{none}"
            "  resnet18:\n    onnx: resnet18.onnx\n    input: {size: [224, 224], resize: 256, mean: [0.485, 0.456, 0.406], "
            "std: [0.229, 0.224, 0.225]}\n"
            f"    outputs: {{scores: logits, features: features}}\n{none}")
    return register_catalog(spark, write_catalog(folder, body))


@pytest.fixture(scope="module")
def digits(spark, tmp_path_factory):
    folder = write_digit_folders(tmp_path_factory.mktemp("digits"), size=48, limit=IMAGES)
    return spark.read.format("binaryFile").load(str(folder)).withColumn("label", F.col("label").cast("double"))


def pipeline_and_grid(max_iter: int = 15) -> tuple:
    featurizer = DeepImageFeaturizer(inputCol="content", outputCol="features", modelName=MODELS[0])
    classifier = LogisticRegression(maxIter=max_iter)
    grid = (ParamGridBuilder().addGrid(featurizer.modelName, MODELS)
            .addGrid(classifier.regParam, [0.01, 0.1]).build())
    return Pipeline(stages=[featurizer, classifier]), grid


def rows_inferred(event_log, run) -> dict:
    """Images each model ran on while ``run()`` ran (the runtime's infer events)."""
    before = len(read_events(event_log))
    result = run()
    rows: dict = {}
    for event in read_events(event_log)[before:]:
        if event["event"] == "infer":
            rows[event["model"]] = rows.get(event["model"], 0) + event["rows"]
    return rows, result


def test_cross_validation_over_model_name_runs_each_model_once_per_image(spark, tuning_catalog, digits, event_log):
    assert set(tuning_catalog.tasks) == set(MODELS) and not tuning_catalog.functions
    runs, cached = rows_inferred(event_log, lambda: cache_features(digits, "content", MODELS))
    assert runs == {name: IMAGES for name in MODELS}, "one run per image and model"
    pipeline, grid = pipeline_and_grid()
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, evaluator=evaluator, numFolds=3, parallelism=2,
                        seed=7)
    runs, model = rows_inferred(event_log, lambda: cv.fit(cached))
    assert runs == {}, "3 folds x 4 grid points and the final refit read the kept features"
    assert len(model.avgMetrics) == 4 and max(model.avgMetrics) > 0.5
    best = model.bestModel.stages[0].getModelName()
    print(f"CV over {MODELS}: avg accuracy {[round(float(m), 3) for m in model.avgMetrics]}, best {best}")
    # the best model still works on images it has not seen: it runs the model then
    runs, _ = rows_inferred(event_log, lambda: model.transform(digits.filter("label = 3")).collect())
    assert runs == {best: digits.filter("label = 3").count()}
    cached.unpersist()


def test_train_validation_split_reads_the_kept_features_too(spark, tuning_catalog, digits, event_log):
    cached = cache_features(digits, "content", MODELS)
    pipeline, grid = pipeline_and_grid()
    split = TrainValidationSplit(estimator=pipeline, estimatorParamMaps=grid, trainRatio=0.75, parallelism=2, seed=3,
                                 evaluator=MulticlassClassificationEvaluator(metricName="accuracy"))
    runs, model = rows_inferred(event_log, lambda: split.fit(cached))
    assert runs == {} and len(model.validationMetrics) == 4
    cached.unpersist()


def test_without_kept_features_every_fold_and_grid_point_runs_the_model_again(spark, tuning_catalog, digits,
                                                                                event_log):
    pipeline, grid = pipeline_and_grid(max_iter=5)
    grid = [m for m in grid if m[pipeline.getStages()[0].modelName] == MODELS[0]]  # one model, two regParams
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, numFolds=2, parallelism=1, seed=7,
                        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"))
    runs, _ = rows_inferred(event_log, lambda: cv.fit(digits))
    print(f"without cache_features: {runs} image runs for {IMAGES} images (2 folds x 2 grid points + refit)")
    assert runs[MODELS[0]] >= 5 * IMAGES
