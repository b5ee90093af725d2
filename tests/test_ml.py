"""pyspark.ml Transformers: the SQL path's features and predictions, in Pipelines, saved and loaded, and
transfer learning on a real labelled image set (scikit-learn's handwritten digits)."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.sql import functions as F

from conftest import ROOT, read_events
from sql_dl import DeepImageFeaturizer, DeepImagePredictor
from sql_dl.samples.digits import write_digit_folders
from sql_dl import registry
from sql_dl.errors import CatalogError, ModelUnavailableError, UsageError

MODEL = "efficientnet_lite0"
DIGITS = 400  # the first 400 of 1,797; every 4th is held out: 300 to train, 100 to test
ACCURACY_THRESHOLD = 0.85  # measured 0.91 on this split (0.964 on all 1,797: examples/transfer_learning.py)


@pytest.fixture(scope="module")
def photos(spark, photo_dir):
    return spark.read.format("binaryFile").load(str(photo_dir / "*.jpg")).withColumn(
        "file", F.regexp_extract("path", "[^/]+$", 0))


@pytest.fixture(scope="module")
def digits(spark, tmp_path_factory):
    folder = write_digit_folders(tmp_path_factory.mktemp("digits"), size=64, limit=DIGITS)
    frame = (spark.read.format("binaryFile").load(str(folder))
             .withColumn("label", F.col("label").cast("double"))
             .withColumn("id", F.regexp_extract("path", r"(\d+)\.png$", 1).cast("int")))
    return frame.filter("id % 4 != 0"), frame.filter("id % 4 = 0")


@pytest.fixture(scope="module")
def fitted(digits):
    train, _ = digits
    featurizer = DeepImageFeaturizer(inputCol="content", outputCol="features", modelName=MODEL)
    return Pipeline(stages=[featurizer, LogisticRegression(maxIter=30, regParam=0.05)]).fit(train)


def test_featurizer_equals_featurize_in_sql_for_bytes_and_image_structs(spark, photos, photo_dir):
    featurizer = DeepImageFeaturizer(inputCol="content", outputCol="vector", modelName=MODEL)
    rows = featurizer.transform(photos).selectExpr("file", "vector", f"featurize_{MODEL}(content) AS sql").collect()
    assert len(rows) == 7
    for row in rows:
        assert row.vector.toArray().dtype == np.float64 and len(row.vector) == 1280
        assert np.array_equal(row.vector.toArray(), np.asarray(row.sql, np.float32).astype(np.float64)), row.file
    structs = spark.read.format("image").load(str(photo_dir / "*.jpg"))
    from_struct = featurizer.setInputCol("image").transform(structs).selectExpr(
        "vector", f"featurize_{MODEL}(image) AS sql").collect()
    assert all(np.array_equal(r.vector.toArray(), np.asarray(r.sql, np.float32)) for r in from_struct)


def test_predictor_gives_probabilities_or_the_decoded_top_k(photos):
    vectors = DeepImagePredictor(inputCol="content", outputCol="p", modelName=MODEL)
    decoded = DeepImagePredictor(inputCol="content", outputCol="top", modelName=MODEL, decodePredictions=True, topK=3)
    rows = decoded.transform(vectors.transform(photos)).selectExpr(
        "file", "p", "top", f"predict_{MODEL}_topk(content, 3) AS sql").collect()
    for row in rows:
        p = row.p.toArray()
        assert len(p) == 1000 and p.sum() == pytest.approx(1.0, abs=1e-4)
        assert row.top == row.sql
        assert int(p.argmax()) == row.top[0]["index"] and p.max() == pytest.approx(row.top[0].score, rel=1e-6)
    assert {r.file: r.top[0].label for r in rows}["coffee.jpg"] == "espresso"


def test_transfer_learning_accuracy_on_held_out_digits(fitted, digits):
    train, test = digits
    assert (train.count(), test.count()) == (300, 100)
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(fitted.transform(test))
    print(f"transfer learning on {DIGITS} digits: test accuracy {accuracy:.3f}")
    assert accuracy >= ACCURACY_THRESHOLD


def test_pipeline_model_save_and_load_give_identical_predictions(fitted, digits, tmp_path):
    _, test = digits
    fitted.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert isinstance(loaded.stages[0], DeepImageFeaturizer) and loaded.stages[0].getModelName() == MODEL
    before = {r.id: (r.prediction, r.probability) for r in fitted.transform(test).select("id", "prediction",
                                                                                         "probability").collect()}
    after = {r.id: (r.prediction, r.probability) for r in loaded.transform(test).select("id", "prediction",
                                                                                        "probability").collect()}
    assert len(before) == 100 and after == before


def test_transformers_save_and_load_their_params(tmp_path):
    predictor = DeepImagePredictor(inputCol="image", outputCol="top", modelName=MODEL, decodePredictions=True, topK=7)
    predictor.save(str(tmp_path / "predictor"))
    loaded = DeepImagePredictor.load(str(tmp_path / "predictor"))
    assert (loaded.getInputCol(), loaded.getOutputCol(), loaded.getModelName(), loaded.getDecodePredictions(),
            loaded.getTopK()) == ("image", "top", MODEL, True, 7)
    assert DeepImagePredictor(inputCol="a", outputCol="b", modelName=MODEL).getTopK() == 5
    featurizer = DeepImageFeaturizer(inputCol="content", outputCol="f", modelName=MODEL)
    featurizer.save(str(tmp_path / "featurizer"))
    assert DeepImageFeaturizer.load(str(tmp_path / "featurizer")).extractParamMap() == {
        featurizer.getParam(p): v for p, v in (("inputCol", "content"), ("outputCol", "f"), ("modelName", MODEL))}


def test_transformers_share_the_sql_path_model_cache(spark, photos, event_log):
    def loads() -> list:
        return [e for e in read_events(event_log) if e["event"] == "load" and e["model"] == MODEL]

    photos.selectExpr(f"featurize_{MODEL}(content)").collect()
    DeepImageFeaturizer(inputCol="content", outputCol="f", modelName=MODEL).transform(photos).collect()
    DeepImagePredictor(inputCol="content", outputCol="p", modelName=MODEL).transform(photos).collect()
    per_worker = {}
    for event in loads():
        per_worker[(event["pid"], event["threads"])] = per_worker.get((event["pid"], event["threads"]), 0) + 1
    assert per_worker and max(per_worker.values()) == 1, "each worker loaded the model once for SQL and both"


def test_a_session_that_registered_no_catalog_gets_models_yaml(spark, photos, monkeypatch):
    import weakref

    monkeypatch.setattr(registry.register, "_registrations", weakref.WeakKeyDictionary())  # as if none was registered
    monkeypatch.chdir(ROOT)
    rows = DeepImageFeaturizer(inputCol="content", outputCol="f", modelName=MODEL).transform(photos).collect()
    assert len(rows) == 7 and all(len(r.f) == 1280 for r in rows)
    assert [r.catalog.path for r in registry.registrations(spark)] == [ROOT / "models.yaml"]


@pytest.mark.parametrize("transformer,error,message", [
    (DeepImageFeaturizer(inputCol="content", outputCol="f", modelName="inception"), ModelUnavailableError,
     r"^model 'inception' is not available: .*inception_v3\.onnx does not exist; supply it with"),
    (DeepImageFeaturizer(inputCol="content", outputCol="f", modelName="inceptionv3"), CatalogError,
     r"^no catalog entry named 'inceptionv3'\. Available: .*efficientnet_lite0"),
    (DeepImageFeaturizer(inputCol="content", outputCol="f"), UsageError,
     r"^DeepImageFeaturizer: set modelName \(e\.g\. DeepImageFeaturizer\(inputCol='content'"),
    (DeepImagePredictor(inputCol="content", outputCol="p", modelName=MODEL, decodePredictions=True, topK=0),
     UsageError, r"^DeepImagePredictor: topK must be a positive integer, got 0$"),
], ids=["entry-without-onnx", "unknown-entry", "no-model-name", "bad-top-k"])
def test_mistakes_are_one_line_errors(photos, transformer, error, message):
    with pytest.raises(error, match=message) as caught:
        transformer.transform(photos)
    assert "\n" not in str(caught.value)
