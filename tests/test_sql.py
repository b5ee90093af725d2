"""The catalog's SQL functions on a real Spark session, real photos and the real EfficientNet-Lite0."""
from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import LongType

from conftest import CATALOG, read_events
from sql_dl.catalog import load_catalog
from sql_dl.executor.images import decode_bytes, resize_and_crop, to_tensor
from sql_dl.executor.outputs import load_labels

torch = pytest.importorskip("torch")  # the reference model; `make test` installs the export extra
from sql_dl.build.export import build_torch_model  # noqa: E402

SPEC = load_catalog(CATALOG).get("efficientnet_lite0")


@pytest.fixture(scope="module")
def reference(photo_dir):
    """PyTorch's (logits, features) for each photo, on the same preprocessed input the UDF uses."""
    model = build_torch_model(SPEC, "pretrained")
    files = sorted(photo_dir.glob("*.jpg"))
    batch = to_tensor(np.stack([resize_and_crop(decode_bytes(f.read_bytes()), SPEC.input) for f in files]),
                      SPEC.input)
    with torch.no_grad():
        logits, features = model(torch.from_numpy(batch))
    return {f.name: (logits[i].numpy(), features[i].numpy()) for i, f in enumerate(files)}


def by_file(rows, key="path"):
    return {r[key].rsplit("/", 1)[-1]: r for r in rows}


def test_sql_top5_equals_pytorch_top5(spark, photo_dir, reference):
    rows = by_file(spark.sql(f"SELECT path, predict_efficientnet_lite0_topk(content, 5) AS top "
                             f"FROM binaryFile.`{photo_dir}/*.jpg`").collect())
    assert set(rows) == set(reference)
    labels = load_labels("imagenet")
    for name, (logits, _) in reference.items():
        expected = np.argsort(-logits, kind="stable")[:5]
        top = rows[name]["top"]
        assert [t["index"] for t in top] == list(expected), name
        assert [t["label"] for t in top] == [labels[i] for i in expected]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose([t["score"] for t in top], probs[expected], rtol=1e-3, atol=1e-5)


def test_predict_is_the_top1_label_and_the_photos_are_recognised(spark, photo_dir, reference):
    rows = by_file(spark.sql(f"SELECT path, predict_efficientnet_lite0(content) AS label "
                             f"FROM binaryFile.`{photo_dir}/*.jpg`").collect())
    labels = load_labels("imagenet")
    for name, (logits, _) in reference.items():
        assert rows[name]["label"] == labels[int(logits.argmax())]
    assert rows["coffee.jpg"]["label"] == "espresso"
    assert rows["chelsea.jpg"]["label"] in {"tabby", "tiger cat", "Egyptian cat"}


def test_image_source_and_binary_file_give_the_same_top1(spark, photo_dir):
    from_bytes = by_file(spark.sql(f"SELECT path, predict_efficientnet_lite0(content) AS label "
                                   f"FROM binaryFile.`{photo_dir}/*.jpg`").collect())
    from_struct = by_file(spark.sql(f"SELECT image.origin AS path, predict_efficientnet_lite0(image) AS label "
                                    f"FROM image.`{photo_dir}/*.jpg`").collect())
    assert len(from_struct) == len(from_bytes) >= 7
    assert {n: r["label"] for n, r in from_struct.items()} == {n: r["label"] for n, r in from_bytes.items()}


def test_featurize_equals_the_pytorch_pooled_features(spark, photo_dir, reference):
    rows = by_file(spark.sql(f"SELECT path, featurize_efficientnet_lite0(content) AS f "
                             f"FROM binaryFile.`{photo_dir}/*.jpg`").collect())
    for name, (_, features) in reference.items():
        assert len(rows[name]["f"]) == 1280
        np.testing.assert_allclose(rows[name]["f"], features, rtol=1e-4, atol=1e-4)


def test_null_in_null_out_and_undecodable_rows_are_null(spark):
    row = spark.sql("SELECT predict_efficientnet_lite0(CAST(NULL AS BINARY)) AS a, "
                    "predict_efficientnet_lite0(X'00010203') AS b, "
                    "predict_efficientnet_lite0_topk(CAST(NULL AS BINARY), 3) AS c, "
                    "featurize_efficientnet_lite0(CAST('not an image' AS BINARY)) AS d").collect()[0]
    assert row.asDict() == {"a": None, "b": None, "c": None, "d": None}


def test_bad_rows_do_not_disturb_good_rows_in_the_same_batch(spark, photo_dir):
    good = spark.sql(f"SELECT path, content FROM binaryFile.`{photo_dir}/*.jpg`")
    bad = spark.sql("SELECT 'file:/bad/text.jpg' AS path, CAST('hello' AS BINARY) AS content")
    rows = by_file(good.unionByName(bad).coalesce(1).selectExpr(
        "path", "predict_efficientnet_lite0(content) AS label").collect())
    assert rows["text.jpg"]["label"] is None
    assert rows["coffee.jpg"]["label"] == "espresso"


def test_topk_k_per_row_and_k_larger_than_classes(spark, photo_dir):
    row = spark.sql(f"SELECT size(predict_efficientnet_lite0_topk(content, 1)) AS one, "
                    f"size(predict_efficientnet_lite0_topk(content, 5000)) AS all, "
                    f"predict_efficientnet_lite0_topk(content, CAST(NULL AS INT)) AS none "
                    f"FROM binaryFile.`{photo_dir}/coffee.jpg`").collect()[0]
    assert (row["one"], row["all"], row["none"]) == (1, 1000, None)


def test_where_clause_on_topk_score(spark, photo_dir):
    rows = spark.sql(f"SELECT path FROM binaryFile.`{photo_dir}/*.jpg` "
                     f"WHERE predict_efficientnet_lite0_topk(content, 5)[0].score > 0.9").collect()
    assert [r.path.rsplit("/", 1)[-1] for r in rows] == ["coffee.jpg"]


def test_model_loads_once_per_worker_across_queries(spark, photo_dir, event_log):
    query = f"SELECT predict_efficientnet_lite0(content) FROM binaryFile.`{photo_dir}/*.jpg`"
    spark.sql(query).collect()
    loads = lambda: [e for e in read_events(event_log) if e["model"] == "efficientnet_lite0"  # noqa: E731
                     and e["event"] == "load"]
    before = loads()
    spark.sql(query).collect()
    spark.sql(query).collect()
    after = loads()
    assert before, "the event log records model loads"
    assert after == before, "the second and third queries reuse the loaded model"
    loads_per_pid = {}
    for event in after:
        loads_per_pid[(event["pid"], event["threads"])] = loads_per_pid.get((event["pid"], event["threads"]), 0) + 1
    assert max(loads_per_pid.values()) == 1


def test_a_worker_that_loaded_a_model_exempts_its_heap_from_the_cycle_collector(spark, photo_dir):
    """PySpark runs gc.collect() after every task of a reused worker; over an unfrozen heap of pyspark, pandas,
    pyarrow and onnxruntime objects each one cost 35-55 ms. The same worker, the same batch: predict first."""
    def frozen(images: pa.Array) -> pa.Array:
        return pa.array([gc.get_freeze_count()] * len(images), pa.int64())

    spark.udf.register("test_frozen_objects", arrow_udf(frozen, LongType()))
    rows = spark.sql(f"SELECT predict_efficientnet_lite0(content) AS label, test_frozen_objects(content) AS n "
                     f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()
    assert rows and all(r.label for r in rows)
    assert min(r.n for r in rows) > 10_000, "the worker's imported modules are frozen after the model load"


def test_missing_model_fails_with_one_line_saying_how_to_supply_it(spark, photo_dir):
    from sql_dl.errors import one_line

    with pytest.raises(Exception) as caught:
        spark.sql(f"SELECT predict_inception(content) FROM binaryFile.`{photo_dir}/*.jpg`").collect()
    message = one_line(caught.value)
    assert message.startswith("model 'inception' is not available: ")
    assert "sql-dl models export inception --weights pretrained" in message and "\n" not in message
    with pytest.raises(Exception, match="model 'inception' is not available"):
        spark.sql(f"SELECT predict_inception_topk(image, 5) FROM image.`{photo_dir}/*.jpg`").collect()


def test_registration_reports_functions_and_missing_entries(spark):
    registered = spark.sql_dl
    assert registered.functions["predict_efficientnet_lite0"] == ("efficientnet_lite0", "predict")
    assert "inception" in registered.missing and "efficientnet_lite0" not in registered.missing
    assert registered.models["efficientnet_lite0"].feature_size == 1280
    assert registered.models["efficientnet_lite0"].classes == 1000
    names = {r[0] for r in spark.sql("SHOW USER FUNCTIONS").collect()}
    assert {"predict_efficientnet_lite0", "predict_efficientnet_lite0_topk", "featurize_efficientnet_lite0",
            "predict_inception"} <= {n.split(".")[-1] for n in names}


def test_predict_and_featurize_in_one_query_run_the_network_once(spark, photo_dir, event_log):
    def rows_inferred(run) -> int:
        before = len(read_events(event_log))
        run()
        return sum(e["rows"] for e in read_events(event_log)[before:] if e["event"] == "infer")

    frame = spark.sql(f"SELECT path, content FROM binaryFile.`{photo_dir}/*.jpg`")
    images = frame.count()
    both = []
    inferred = rows_inferred(lambda: both.extend(frame.selectExpr(
        "path", "predict_efficientnet_lite0(content) AS label", "featurize_efficientnet_lite0(content) AS f",
        "predict_efficientnet_lite0_topk(content, 2) AS top").collect()))
    assert inferred == images, "three functions on the same column: one run per image"
    alone = {r.path: r.label for r in frame.selectExpr("path", "predict_efficientnet_lite0(content) AS label").collect()}
    assert {r.path: r.label for r in both} == alone
    assert all(len(r.f) == 1280 and r.top[0].label == r.label for r in both)


def huge_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (valid CRCs) but holds almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_bad_rows_are_null_and_sql_dl_error_says_why(spark, photo_dir):
    coffee = (photo_dir / "coffee.jpg").read_bytes()
    bad = {"empty.jpg": b"", "text.jpg": b"just some text", "truncated.jpg": coffee[: len(coffee) // 3],
           "bomb.png": huge_png(10_000, 10_000), "bigger-bomb.png": huge_png(100_000, 100_000)}
    good = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, content FROM binaryFile.`{photo_dir}/*.jpg`")
    frame = good.unionByName(spark.createDataFrame(list(bad.items()), "file STRING, content BINARY")).coalesce(1)
    rows = {r.file: r for r in frame.selectExpr("file", "predict_efficientnet_lite0(content) AS label",
                                                "sql_dl_error(content) AS why").collect()}
    exact = {"empty.jpg": "empty content (0 bytes)", "text.jpg": "not a recognised image format",
             "bomb.png": "image declares 10000x10000 pixels, more than the limit of 64,000,000 "
                         "(SQL_DL_MAX_IMAGE_PIXELS)"}
    assert {name: rows[name].why for name in exact} == exact
    # Pillow's own guard fires first for the bigger bomb, before ours; the truncation message names the bytes
    assert rows["bigger-bomb.png"].why.startswith("refused before decoding: ") and \
        "could be decompression bomb" in rows["bigger-bomb.png"].why
    assert rows["truncated.jpg"].why.startswith("cannot decode image: image file is truncated")
    assert all(rows[name].label is None for name in bad)
    assert rows["coffee.jpg"].label == "espresso" and rows["coffee.jpg"].why is None
    assert sum(r.label is not None for r in rows.values()) == len(rows) - len(bad)


def test_invalid_image_source_rows_are_null_with_a_reason(spark, photo_dir, tmp_path):
    (tmp_path / "a.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    (tmp_path / "b.jpg").write_text("not a jpeg")
    rows = {r.file: r for r in spark.sql(
        f"SELECT regexp_extract(image.origin, '[^/]+$', 0) AS file, predict_efficientnet_lite0(image) AS label, "
        f"sql_dl_error(image) AS why FROM image.`{tmp_path}/*.jpg`").collect()}
    assert rows["a.jpg"].label == "espresso" and rows["a.jpg"].why is None
    assert rows["b.jpg"].label is None and rows["b.jpg"].why.startswith("invalid image row (Spark could not read")


@pytest.mark.parametrize("call,message", [
    ("predict_efficientnet_lite0('a string')", "predict_efficientnet_lite0(image): image must be BINARY (binaryFile's "
                                               "content) or the image data source's struct, got STRING"),
    ("predict_efficientnet_lite0(42)", "predict_efficientnet_lite0(image): image must be BINARY (binaryFile's "
                                       "content) or the image data source's struct, got INT"),
    ("predict_efficientnet_lite0(content, 2)", "predict_efficientnet_lite0(image) takes 1 argument(s), got 2"),
    ("predict_efficientnet_lite0_topk(content, '3')", "predict_efficientnet_lite0_topk(image, k): k must be INT, "
                                                      "got STRING"),
    ("predict_efficientnet_lite0_topk(content, 2.7)", "predict_efficientnet_lite0_topk(image, k): k must be INT, "
                                                      "got DECIMAL"),
    ("predict_efficientnet_lite0_topk(content, -1)", "predict_efficientnet_lite0_topk(image, k): k must be a "
                                                     "positive integer, got -1"),
    ("sql_dl_error(content, 7)", "sql_dl_error(image, [model]): model must be STRING, got INT"),
])
def test_wrong_arguments_are_one_line_naming_function_argument_and_type(spark, photo_dir, call, message):
    from sql_dl.errors import one_line

    with pytest.raises(Exception) as caught:
        spark.sql(f"SELECT {call} FROM binaryFile.`{photo_dir}/coffee.jpg`").collect()
    assert one_line(caught.value) == message
