"""Models as governed data in SQL: versions and aliases, ml_* functions with the model as an argument, lineage
on every row, the sql_dl_models table, the catalog followed while a session runs, and the audit line.

Two real versions of one entry: EfficientNet-Lite0 fp32 (version 1) and its int8 quantization (version 2),
on the suite's real photos, in the suite's shared Spark session."""
from __future__ import annotations

import threading
import time

import pytest

from conftest import ROOT, read_events, tiny_model, write_catalog
from sql_dl import register_catalog
from sql_dl.registry.jvm_functions import jvm_functions

FP32, INT8 = ROOT / "models" / "efficientnet_lite0.onnx", ROOT / "models" / "efficientnet_lite0.int8.onnx"


def catalog_text(default: str = "1", name: str = "lite", extra: str = "") -> str:
    return (f"models:\n  {name}:\n"
            "    input: {size: [224, 224], resize: 256, scale: 1.0, mean: [127.0, 127.0, 127.0], "
            "std: [128.0, 128.0, 128.0]}\n"
            "    outputs: {scores: logits, features: features}\n"
            f"    functions: {{predict: predict_{name}, detail: predict_{name}_detail}}\n"
            "    versions:\n"
            f"      '1': {{onnx: {FP32}, source: {{exporter: efficientnet_lite0, weights: pretrained}}}}\n"
            f"      '2': {{onnx: {INT8}, precision: int8}}\n"
            f"    aliases: {{default: '{default}', champion: '1', candidate: '2'}}\n" + extra)


@pytest.fixture()
def lite(spark, tmp_path, photo_dir):
    if not INT8.is_file():
        pytest.fail("models/efficientnet_lite0.int8.onnx is missing: run the suite with `make test`")
    path = write_catalog(tmp_path, catalog_text())
    register_catalog(spark, path)
    spark.read.format("binaryFile").load(str(photo_dir)).createOrReplaceTempView("lifecycle_photos")
    return path


def one_column(spark, sql: str) -> list:
    return [row[0] for row in spark.sql(sql).collect()]


def wait_for(condition, timeout: float = 60.0) -> float:
    """Seconds until ``condition()`` holds (the watcher re-reads a changed catalog within a few seconds)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "the catalog change was not picked up in time"
        time.sleep(0.25)
    return time.monotonic() - started


def default_version(spark) -> str:
    return one_column(spark, "SELECT ml_predict_detail('lite', content).version FROM lifecycle_photos LIMIT 1")[0]


def test_model_argument_accepts_name_alias_and_version(spark, lite):
    rows = spark.sql("SELECT predict_lite(content) AS own, ml_predict('lite', content) AS by_name, "
                     "ml_predict('lite@champion', content) AS champion, ml_predict('LITE@1', content) AS v1, "
                     "ml_predict('lite@candidate', content) AS candidate, ml_predict('lite@2', content) AS v2, "
                     "size(ml_featurize('lite@2', content)) AS width, "
                     "ml_predict_topk('lite@2', content, 3)[0].label AS top "
                     "FROM lifecycle_photos WHERE path LIKE '%coffee%'").collect()
    row = rows[0]
    assert row.own == row.by_name == row.champion == row.v1 == "espresso"
    assert row.candidate == row.v2 == row.top == "espresso"  # int8 agrees on this photo
    assert row.width == 1280


def test_detail_says_which_version_and_file_answered(spark, lite):
    from sql_dl.executor.runtime import file_sha256

    details = spark.sql("SELECT predict_lite_detail(content) AS own, ml_predict_detail('lite@candidate', content) "
                        "AS candidate FROM lifecycle_photos").collect()
    assert {(d.own.model, d.own.version, d.own.sha256) for d in details} == {("lite", "1", file_sha256(str(FP32)))}
    assert {(d.candidate.version, d.candidate.sha256) for d in details} == {("2", file_sha256(str(INT8)))}
    assert all(0 < d.own.score <= 1 for d in details)


def test_unknown_model_and_column_model_fail_with_one_line(spark, lite):
    with pytest.raises(Exception, match=r"ml_predict: no model 'nope' with a predict function; models: .*lite") as e:
        spark.sql("SELECT ml_predict('nope', content) FROM lifecycle_photos").collect()
    with pytest.raises(Exception, match=r"ml_predict: the first argument must be a constant STRING naming the model"):
        spark.sql("SELECT ml_predict(path, content) FROM lifecycle_photos").collect()
    assert "\n" not in str(e.value).strip().splitlines()[0]


def test_models_table_has_a_row_per_version(spark, lite):
    rows = {row.version: row for row in spark.sql("SELECT * FROM sql_dl_models() WHERE name = 'lite'").collect()}
    assert set(rows) == {"1", "2"}
    assert rows["1"].aliases == ["default", "champion"] and rows["1"].is_default
    assert rows["1"].functions == ["featurize_lite", "predict_lite", "predict_lite_detail", "predict_lite_topk"]
    assert rows["2"].functions == []
    assert rows["2"].aliases == ["candidate"] and rows["2"].precision == "int8"
    assert rows["1"].label_count == 1000 and rows["1"].feature_size == 1280 and rows["1"].available
    assert rows["1"].input.startswith("224x224 RGB NCHW float32")
    view = spark.sql("SELECT version, sha256 FROM default.sql_dl_models WHERE name = 'lite'").collect()
    assert sorted(view) == sorted((r.version, r.sha256) for r in rows.values())


def test_models_table_says_why_a_version_cannot_run_and_flags_random_weights(spark, tmp_path):
    tiny = tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "tiny.onnx.json").write_text('{"weights": "random"}')
    path = write_catalog(tmp_path, "models:\n  tiny:\n    input: {size: [224, 224]}\n"
                                   "    outputs: {scores: logits}\n    versions:\n"
                                   f"      a: {{onnx: {tiny}}}\n      b: {{onnx: {tmp_path / 'absent.onnx'}}}\n"
                                   "    aliases: {default: a}\n")
    register_catalog(spark, path)
    rows = {r.version: r for r in spark.sql("SELECT * FROM sql_dl_models() WHERE name = 'tiny'").collect()}
    assert rows["a"].available and rows["a"].random_weights and rows["a"].unavailable_reason is None
    assert not rows["b"].available and "absent.onnx does not exist" in rows["b"].unavailable_reason
    with pytest.raises(Exception, match=r"model 'tiny@b' is not available: .*absent.onnx does not exist"):
        spark.sql("SELECT ml_predict('tiny@b', X'00')").collect()


def test_a_moved_alias_is_followed_by_the_next_query(spark, lite):
    assert default_version(spark) == "1"
    lite.write_text(catalog_text(default="2"))
    seconds = wait_for(lambda: default_version(spark) == "2")
    assert set(one_column(spark, "SELECT predict_lite_detail(content).version FROM lifecycle_photos")) == {"2"}
    assert seconds < 30


def test_a_planned_query_keeps_the_version_it_was_planned_with(spark, lite):
    planned = spark.sql("SELECT predict_lite_detail(content).version AS v FROM lifecycle_photos")  # analysed now
    lite.write_text(catalog_text(default="2"))
    wait_for(lambda: default_version(spark) == "2")
    assert {row.v for row in planned.collect()} == {"1"}


def test_rows_of_a_running_query_never_mix_versions(spark, lite, photo_dir):
    many = spark.read.format("binaryFile").load([str(photo_dir)] * 12).repartition(6)
    many.createOrReplaceTempView("lifecycle_many")
    result: dict = {}
    running = threading.Thread(target=lambda: result.update(rows=spark.sql(
        "SELECT predict_lite_detail(content).version AS v FROM lifecycle_many").collect()))
    running.start()
    time.sleep(1.0)
    lite.write_text(catalog_text(default="2"))
    running.join(timeout=240)
    assert len(result["rows"]) == many.count() and len({row.v for row in result["rows"]}) == 1


def test_a_broken_edit_keeps_the_previous_catalog_serving(spark, lite):
    jvm_functions(spark).drain_messages()
    lite.write_text(catalog_text(default="3"))
    deadline = time.monotonic() + 60
    said = ""
    while "keeps serving" not in said and time.monotonic() < deadline:
        time.sleep(0.5)
        said += jvm_functions(spark).drain_messages()
    line = next(line for line in said.splitlines() if "keeps serving" in line)
    assert "aliases.default names version '3', which is not among versions: 1, 2" in line
    assert line.endswith("(the previous catalog keeps serving)")
    assert default_version(spark) == "1"


def test_removed_entries_fail_with_one_line_and_new_entries_appear(spark, lite):
    lite.write_text(catalog_text(name="lite2"))
    wait_for(lambda: spark.sql("SELECT * FROM sql_dl_models() WHERE name = 'lite2'").count() == 2)
    assert one_column(spark, "SELECT predict_lite2(content) FROM lifecycle_photos WHERE path LIKE '%coffee%'") \
        == ["espresso"]
    with pytest.raises(Exception, match=r"predict_lite is no longer in the catalog .*its entry was removed"):
        spark.sql("SELECT predict_lite(content) FROM lifecycle_photos").collect()


def test_each_query_leaves_an_audit_line(spark, lite, event_log):
    def audit_lines() -> list:
        return [e for e in read_events(event_log) if e.get("event") == "query" and e.get("function") == "ml_predict"]

    before = len(audit_lines())  # the event log is the whole suite's: look only at lines this query adds
    spark.sql("SELECT ml_predict('lite@candidate', content) FROM lifecycle_photos").collect()
    wait_for(lambda: len(audit_lines()) > before, timeout=30)
    line = audit_lines()[before]
    rows = spark.table("lifecycle_photos").count()
    assert (line["model"], line["version"], line["rows"], line["status"]) == ("lite", "2", rows, "succeeded")
    assert len(line["sha256"]) == 64 and line["query_id"] and line["user"]
