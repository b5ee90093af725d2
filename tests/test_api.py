"""The Python API: your own PyTorch or ONNX model as a SQL function, image or tensor, on the SQL path's runtime."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import EFFICIENTNET_ONNX
from sql_dl import register_image_udf, register_tensor_udf
from sql_dl.catalog import InputSpec, input_spec, load_catalog
from sql_dl.samples.digits import digit_images
from sql_dl.errors import CatalogError, ModelUnavailableError, UsageError, one_line
from sql_dl.executor.images import image_to_pixels, to_tensor

torch = pytest.importorskip("torch")  # the models under test are PyTorch models; `make test` installs torch

PREPROCESSOR = {"size": [32, 32], "resize": "stretch", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


class SmallCNN(torch.nn.Module):
    """conv-bn-relu-pool -> 16 features -> 10 classes; returns (logits, features) like sql-dl's exports."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, stride=2), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN()
    model.train()
    with torch.no_grad():  # batch-norm statistics from data, so outputs are not degenerate
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


@pytest.fixture(scope="module")
def images(spark, photo_dir):
    """Real photos and rendered digits as (name, content) rows, plus one row that is not an image."""
    digits, _ = digit_images(size=48, limit=12)
    rows = [(f"digit{i}", data) for i, data in enumerate(digits)]
    rows += [(p.stem, p.read_bytes()) for p in sorted(photo_dir.glob("*.jpg"))]
    frame = spark.createDataFrame(rows + [("junk", b"not an image")], "name STRING, content BINARY")
    frame.createOrReplaceTempView("api_images")
    return dict(rows)


def torch_outputs(model, images: dict, spec: InputSpec) -> dict:
    """The torch model's (logits, features) per image, on the very tensors the UDF feeds ONNX Runtime."""
    names = sorted(images)
    batch = to_tensor(np.stack([image_to_pixels(images[n], spec) for n in names]), spec)
    with torch.no_grad():
        logits, features = model(torch.from_numpy(batch))
    return {n: (logits[i].numpy(), features[i].numpy()) for i, n in enumerate(names)}


def test_torch_cnn_in_sql_equals_the_torch_model_on_the_same_inputs(spark, cnn, images):
    labels = [f"class {i}" for i in range(10)]
    for output in ("label", "topk", "probabilities", "features"):
        register_image_udf(spark, f"cnn_{output}", cnn, PREPROCESSOR, labels=labels, output=output, k=3)
    rows = {r.name: r for r in spark.sql(
        "SELECT name, cnn_label(content) AS label, cnn_topk(content) AS top, cnn_probabilities(content) AS p, "
        "cnn_features(content) AS f FROM api_images").collect()}
    spec = input_spec(PREPROCESSOR, "test")
    expected = torch_outputs(cnn, images, spec)
    assert len(expected) == 19
    for name, (logits, features) in expected.items():
        probs = torch.softmax(torch.from_numpy(logits), 0).numpy()
        row = rows[name]
        assert row.label == labels[int(logits.argmax())], name
        assert [t["index"] for t in row.top] == list(np.argsort(-logits, kind="stable")[:3]), name
        np.testing.assert_allclose(row.p, probs, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(row.f, features, rtol=1e-4, atol=1e-5)
    assert rows["junk"].asDict() == {"name": "junk", "label": None, "top": None, "p": None, "f": None}


def test_the_returned_function_works_in_dataframe_code(spark, cnn, images):
    function = register_image_udf(spark, "cnn_df", cnn, PREPROCESSOR)
    frame = spark.table("api_images")
    from_df = {r.name: r.label for r in frame.select("name", function("content").alias("label")).collect()}
    from_sql = {r.name: r.label for r in spark.sql("SELECT name, cnn_df(content) AS label FROM api_images").collect()}
    assert from_df == from_sql and from_df["junk"] is None
    assert set(from_df.values()) - {None} <= {str(i) for i in range(10)}, "labels default to class indices"


def test_export_runs_in_eval_mode_and_leaves_the_module_as_it_was(spark, cnn, images):
    register_image_udf(spark, "cnn_from_eval", cnn, PREPROCESSOR, output="probabilities")
    cnn.train()
    cnn.body[1].eval()  # a mixed state, restored part by part
    try:
        register_image_udf(spark, "cnn_from_train", cnn, PREPROCESSOR, output="probabilities")
        assert cnn.training and not cnn.body[1].training and cnn.body[4].training
    finally:
        cnn.eval()
    rows = spark.sql("SELECT cnn_from_eval(content) AS a, cnn_from_train(content) AS b FROM api_images").collect()
    assert all(r.a == r.b for r in rows) and sum(r.a is not None for r in rows) == 19


def pillow_stretch(data: bytes) -> np.ndarray:
    """A callable preprocessor, defined in this test module: executors cannot import it, so it goes by value.
    It decodes large JPEGs at reduced scale down to twice the target, as the declarative path does."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (64, 64))
    image = image.convert("RGB")
    return np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR))


def test_callable_preprocessor_travels_by_value_and_equals_the_declarative_one(spark, cnn, images):
    register_image_udf(spark, "cnn_callable", cnn, pillow_stretch, input_size=(32, 32), output="features")
    register_image_udf(spark, "cnn_declared", cnn, {"size": [32, 32], "resize": "stretch"}, output="features")
    rows = spark.sql("SELECT name, cnn_callable(content) AS a, cnn_declared(content) AS b FROM api_images").collect()
    assert len(rows) == 20
    for row in rows:
        assert row.a == row.b, row.name
    assert [r.a for r in rows if r.name == "junk"] == [None], "a raising preprocessor gives NULL"


def test_onnx_bytes_path_and_catalog_entry_answer_as_the_catalog_function(spark, images):
    lite0 = load_catalog(EFFICIENTNET_ONNX.parent.parent / "models.yaml").get("efficientnet_lite0")
    register_image_udf(spark, "lite_bytes", EFFICIENTNET_ONNX.read_bytes(), lite0.input)
    register_image_udf(spark, "lite_path", str(EFFICIENTNET_ONNX), lite0.input)
    register_image_udf(spark, "lite_entry", "efficientnet_lite0", output="topk", k=5)
    rows = spark.sql("SELECT lite_bytes(content) AS a, lite_path(content) AS b, predict_efficientnet_lite0(content) "
                     "AS c, lite_entry(content) AS d, predict_efficientnet_lite0_topk(content, 5) AS e "
                     "FROM api_images").collect()
    assert all(r.a == r.b == r.c and r.d == r.e for r in rows)
    assert "espresso" in {r.a for r in rows}


class TwoInTwoOut(torch.nn.Module):
    """x: [4], y: [2, 3] -> score: [batch] (one number per row), vector: [batch, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.x = torch.nn.Linear(4, 3)

    def forward(self, x, y):
        vector = self.x(x) * y.sum(dim=1)
        return vector.sum(dim=1), vector


def test_tensor_model_with_two_inputs_and_two_outputs_equals_torch(spark):
    torch.manual_seed(1)
    model = TwoInTwoOut().eval()
    register_tensor_udf(spark, "two_in_two_out", model, {"x": [4], "y": [2, 3]}, output_names=["score", "vector"])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((6, 2, 3)).astype(np.float32)
    rows = [(i, x[i].tolist(), y[i].reshape(-1).tolist(), y[i].tolist()) for i in range(6)]
    bad = [(6, [1.0, 2.0, 3.0], [0.0] * 6, [[0.0] * 3] * 2),  # x too short
           (7, x[0].tolist(), [0.0] * 5, [[0.0, 0.0, 0.0], [0.0, 0.0]]),  # y flat too short, nested ragged
           (8, None, None, None)]
    frame = spark.createDataFrame(rows + bad, "id INT, x ARRAY<FLOAT>, y_flat ARRAY<DOUBLE>, y ARRAY<ARRAY<FLOAT>>")
    result = {r.id: r for r in frame.selectExpr("id", "two_in_two_out(x, y_flat) AS flat",
                                                "two_in_two_out(x, y) AS nested").orderBy("id").collect()}
    with torch.no_grad():
        score, vector = model(torch.from_numpy(x), torch.from_numpy(y))
    for i in range(6):
        assert result[i].flat == result[i].nested
        assert result[i].flat.score == pytest.approx(float(score[i]), rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(result[i].flat.vector, vector[i].numpy(), rtol=1e-5, atol=1e-6)
    assert all(result[i].flat is None and result[i].nested is None for i in (6, 8))
    assert result[7].flat is None and result[7].nested is None


def test_tensor_onnx_file_single_output_and_strict_rows(spark, tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), dynamo=False, input_names=["features"],
                      output_names=["out"], dynamic_axes={"features": {0: "n"}, "out": {0: "n"}})
    register_tensor_udf(spark, "linear_lenient", str(path), [4])
    register_tensor_udf(spark, "linear_strict", path.read_bytes(), [4], on_error="fail")
    lenient = spark.sql("SELECT linear_lenient(array(1.0, 2.0, 3.0)) AS bad, linear_lenient(array(1, 2, 3, 4)) AS ok, "
                        "linear_strict(array(1.0, 2.0, 3.0, 4.0)) AS strict_ok").first()
    assert lenient.bad is None and len(lenient.ok) == 2 and lenient.ok == lenient.strict_ok
    with pytest.raises(Exception) as caught:
        spark.sql("SELECT linear_strict(x) FROM VALUES (array(1.0, 2.0, 3.0, 4.0)), (array(1.0, 2.0, 3.0)) AS t(x)"
                  ).collect()
    assert one_line(caught.value) == ("register_tensor_udf('linear_strict'): input 'features': a row holds 3 values "
                                      "(1.0, 2.0, 3.0), not the declared shape [4] (4 values)")


def flat_classifier():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()


@pytest.mark.parametrize("call,error,message", [
    (lambda s: register_image_udf(s, "m", flat_classifier(), PREPROCESSOR, output="logits"), UsageError,
     r"^register_image_udf\('m'\): output must be one of label, topk, probabilities, features; got 'logits'$"),
    (lambda s: register_image_udf(s, "m", flat_classifier(), input_size=(16, 16)), UsageError,
     r"^register_image_udf\('m'\): the torch model cannot run on inputs of shape \[5, 3, 16, 16\]: RuntimeError: "),
    (lambda s: register_image_udf(s, "m", EFFICIENTNET_ONNX.read_bytes(), input_size=(299, 299)), CatalogError,
     r"^register_image_udf: entry 'm': the model's input shape is \['batch', 3, 224, 224\], but input.size/layout "
     r"say \[None, 3, 299, 299\]$"),
    (lambda s: register_image_udf(s, "m", "efficientnet_lite0", input_size=(299, 299)), UsageError,
     r"input_size \[299, 299\] differs from the preprocessing's size \[224, 224\]"),
    (lambda s: register_image_udf(s, "m", 42), UsageError,
     r"^register_image_udf\('m'\): model must be a torch.nn.Module, an ONNX file path or bytes, or a catalog entry "
     r"name; got int$"),
    (lambda s: register_image_udf(s, "m", "/nowhere/model.onnx", input_size=(8, 8)), UsageError,
     r"^register_image_udf\('m'\): model file /nowhere/model.onnx does not exist$"),
    (lambda s: register_image_udf(s, "m", "inception"), ModelUnavailableError,
     r"^model 'inception' is not available: .* does not exist; supply it with"),
    (lambda s: register_image_udf(s, "m", "no_such_model"), CatalogError,
     r"^no catalog entry named 'no_such_model'. Available: .*efficientnet_lite0"),
    (lambda s: register_image_udf(s, "m", flat_classifier(), PREPROCESSOR, labels=["a", "b"]), CatalogError,
     r"entry 'm': labels has 2 names but output 'logits' has 10 classes$"),
    (lambda s: register_image_udf(s, "abs", flat_classifier(), PREPROCESSOR), UsageError,
     r"'abs' clashes with Spark's built-in function of that name"),
    (lambda s: register_image_udf(s, "my-model", flat_classifier(), PREPROCESSOR), UsageError,
     r"the function name must be a SQL identifier"),
    (lambda s: register_image_udf(s, "m", flat_classifier(), {"size": [32, 32], "colour": "rgb"}), CatalogError,
     r"^register_image_udf\('m'\): preprocessor: unknown field 'input.colour'"),
    (lambda s: register_tensor_udf(s, "t", torch.nn.Linear(4, 2), [5]), UsageError,
     r"^register_tensor_udf\('t'\): the torch model cannot run on inputs of shape \[5, 5\]: RuntimeError: "),
    (lambda s: register_tensor_udf(s, "t", EFFICIENTNET_ONNX, [3, 224]), UsageError,
     r"^register_tensor_udf\('t'\): input 'image' is declared \[3, 224\] per row, but the model takes "
     r"\['batch', 3, 224, 224\]"),
    (lambda s: register_tensor_udf(s, "t", EFFICIENTNET_ONNX, {"pixels": [3, 224, 224]}), UsageError,
     r"the model has no input 'pixels' \(it has: image \['batch', 3, 224, 224\]\)$"),
    (lambda s: register_tensor_udf(s, "t", EFFICIENTNET_ONNX, [3, 224, 224], output_names=["probs"]), UsageError,
     r"the model has no output 'probs' \(it has: logits, features\)$"),
    (lambda s: register_tensor_udf(s, "t", torch.nn.Linear(4, 2), [4, -1]), UsageError,
     r"^register_tensor_udf\('t'\): input_shapes must be a list of positive integers, got \[4, -1\]$"),
], ids=["unknown-output", "torch-wrong-input-size", "onnx-wrong-input-size", "entry-wrong-input-size",
        "not-a-model", "no-such-file", "entry-without-onnx", "unknown-entry", "label-count", "builtin-name",
        "bad-name", "bad-preprocessor-field", "tensor-torch-shape", "tensor-onnx-shape", "tensor-input-name",
        "tensor-output-name", "tensor-bad-shape"])
def test_mistakes_are_one_line_errors(spark, call, error, message):
    with pytest.raises(error, match=message) as caught:
        call(spark)
    assert "\n" not in str(caught.value)
