"""The table of function kinds: every kind is complete, and a new kind needs that table and nothing else."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql.types import DataType, IntegerType

from conftest import tiny_model, write_catalog
from sql_dl.api.sources import ship_by_value
from sql_dl.catalog import entry_kinds, load_catalog
from sql_dl.errors import CatalogError, UsageError
from sql_dl.executor import kinds
from sql_dl.executor.kinds import KINDS, ROLES, Kind
from sql_dl.executor.udfs import infer
from sql_dl.registry import register_catalog


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_every_kind_declares_what_the_registry_and_docs_read(kind):
    assert kind.name and set(kind.needs) <= set(ROLES)
    assert isinstance(kind.returns, DataType) and kind.returns.simpleString()
    assert kind.usage.startswith("_FUNC_(image") and callable(kind.batch)
    name = kind.sql_name.format(model="m")
    assert name.isidentifier() and (("m" in name.split("_")) == kind.per_entry)
    params, returns = kind.sql_signature()
    assert params.startswith("image STRING") and returns == kind.returns.simpleString()


def test_a_udf_refuses_a_wrong_argument_count_in_one_line():
    udf = KINDS["topk"].udf(task=None)
    with pytest.raises(UsageError, match=r"^topk\(image, k\) takes 2 argument\(s\), got 3$"):
        udf.func(pa.array([b""]), pa.array([1]), pa.array([2]))
    with pytest.raises(UsageError, match=r"^topk: no argument 'n'"):
        KINDS["topk"].udf(task=None, n=3)


def argmax_batch(task, images: pa.Array) -> pa.Array:
    """A kind defined outside sql-dl: the index of the best class, as INT."""
    valid, outputs = infer(task, images)
    best = outputs[task.outputs.get("scores")].argmax(axis=1).astype(np.int32)
    full = np.zeros(len(images), np.int32)
    full[valid] = best
    return pa.array(full, pa.int32(), mask=~valid)


def test_a_new_kind_is_one_table_entry_away(spark, tmp_path, photo_dir, monkeypatch):
    ship_by_value(argmax_batch)  # this test module is not importable on executors
    monkeypatch.setitem(KINDS, "argmax", Kind("argmax", "argmax_{model}", ("scores",), IntegerType(), argmax_batch,
                                              "_FUNC_(image) - the best class index of model '{model}'."))
    assert "argmax" in entry_kinds()
    tiny = tiny_model(tmp_path / "tiny.onnx")
    body = (f"models:\n  tiny_kind:\n    onnx: {tiny}\n    input: {{size: [224, 224]}}\n"
            "    outputs: {scores: logits}\n    functions: {argmax: best_of_tiny}\n")
    registered = register_catalog(spark, write_catalog(tmp_path, body))
    assert registered.functions["best_of_tiny"] == ("tiny_kind", "argmax")
    rows = spark.sql(f"SELECT best_of_tiny(content) AS best, predict_tiny_kind_topk(content, 1)[0].index AS top "
                     f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()
    assert len(rows) >= 7 and all(r.best == r.top for r in rows)
    described = "\n".join(r[0] for r in spark.sql("DESCRIBE FUNCTION best_of_tiny").collect())
    assert "the best class index of model 'tiny_kind'" in described


def test_functions_mapping_names_only_kinds_of_the_table(tmp_path):
    body = ("models:\n  m:\n    onnx: m.onnx\n    input: {size: [8, 8]}\n    outputs: {scores: logits}\n"
            "    functions: {segment: seg_m}\n")
    with pytest.raises(CatalogError, match=r"unknown field 'functions\.segment' \(known: predict, topk, featurize, "
                                          r"probabilities, detail\)"):
        load_catalog(write_catalog(tmp_path, body))


def test_error_kind_is_registered_once_per_session_not_per_entry():
    assert [k.sql_name for k in KINDS.values() if not k.per_entry] == ["sql_dl_error"]
    assert kinds.ERROR is KINDS["error"]
