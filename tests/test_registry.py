"""Registration checks each model on the driver and rejects faults with one line before any task runs."""
from __future__ import annotations

import shutil

import pytest

from conftest import EFFICIENTNET_ONNX, tiny_model, write_catalog
from sql_dl.errors import CatalogError
from sql_dl.registry import register_catalog


def entry(onnx, extra: str = "", name: str = "lite_copy", size: str = "[224, 224]") -> str:
    return (f"models:\n  {name}:\n    onnx: {onnx}\n    input: {{size: {size}, resize: 256}}\n"
            f"    outputs: {{scores: logits, features: features}}\n{extra}")


@pytest.fixture()
def tiny(tmp_path):
    return tiny_model(tmp_path / "tiny.onnx")


def register(spark, tmp_path, body: str):
    return register_catalog(spark, write_catalog(tmp_path, body))


def test_a_valid_custom_catalog_registers_its_names(spark, tmp_path, photo_dir):
    registered = register(spark, tmp_path, entry(EFFICIENTNET_ONNX, "    functions: {predict: what_is_it}\n"))
    assert set(registered.functions) == {"what_is_it", "predict_lite_copy_topk", "featurize_lite_copy"}
    label = spark.sql(f"SELECT what_is_it(content) FROM binaryFile.`{photo_dir}/coffee.jpg`").first()[0]
    assert label == "espresso"


def test_sha256_mismatch(spark, tmp_path, tiny):
    with pytest.raises(CatalogError, match=r"^models\.yaml: entry 'lite_copy': sha256 of tiny\.onnx is "
                                          r"[0-9a-f]{12}\.\.\., the catalog expects 000000000000\.\.\."):
        register(spark, tmp_path, entry(tiny, "    sha256: '" + "0" * 64 + "'\n"))


def test_sidecar_sha256_written_by_the_exporter_is_checked(spark, tmp_path, tiny):
    copy = tmp_path / "m.onnx"
    shutil.copy(tiny, copy)
    (tmp_path / "m.onnx.json").write_text('{"sha256": "' + "f" * 64 + '"}')
    with pytest.raises(CatalogError, match=r"sha256 of m\.onnx is .* the catalog expects ffffffffffff"):
        register(spark, tmp_path, entry(copy))


def test_label_count_differs_from_the_output_size(spark, tmp_path, tiny):
    (tmp_path / "labels.txt").write_text("\n".join(f"class {i}" for i in range(10)))
    with pytest.raises(CatalogError, match=r"entry 'lite_copy': labels has 10 names but output 'logits' has 1000 "
                                          r"classes"):
        register(spark, tmp_path, entry(tiny, "    labels: labels.txt\n"))


def test_input_size_differs_from_the_model(spark, tmp_path, tiny):
    with pytest.raises(CatalogError, match=r"entry 'lite_copy': the model's input shape is \['batch', 3, 224, 224\], "
                                          r"but input.size/layout say \[None, 3, 299, 299\]"):
        register(spark, tmp_path, entry(tiny, size="[299, 299]").replace("resize: 256", "resize: 320"))


def test_input_of_the_wrong_rank(spark, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1000])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "flat.onnx")
    with pytest.raises(CatalogError, match=r"the model's input 'x' has rank 2 \(shape \['batch', 1000\]\); "
                                          r"input.layout nchw needs rank 4"):
        register(spark, tmp_path, entry(tmp_path / "flat.onnx").replace(", features: features", ""))


def test_output_name_not_in_the_model(spark, tmp_path, tiny):
    with pytest.raises(CatalogError, match=r"outputs\.features 'pooled' is not an output of the model \(it has: "
                                          r"logits, features\)"):
        register(spark, tmp_path, entry(tiny).replace("features: features", "features: pooled"))


def test_name_clashing_with_a_spark_builtin(spark, tmp_path, tiny):
    with pytest.raises(CatalogError, match=r"functions\.predict 'abs' clashes with Spark's built-in function"):
        register(spark, tmp_path, entry(tiny, "    functions: {predict: abs}\n"))


def test_file_that_is_not_onnx(spark, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(CatalogError, match=r"entry 'lite_copy': onnx junk\.onnx cannot be loaded: "):
        register(spark, tmp_path, entry(tmp_path / "junk.onnx"))


def test_model_dirs_from_the_session_conf_refuse_models_elsewhere(spark, tmp_path, tiny):
    from sql_dl.registry import MODEL_DIRS_CONF

    try:
        spark.conf.set(MODEL_DIRS_CONF, f"{tmp_path}/approved, {tmp_path}/also-approved")
        with pytest.raises(CatalogError, match=r"onnx \S+tiny\.onnx is outside the allowed model "
                                              r"directories \(\S+/approved, \S+/also-approved;"):
            register(spark, tmp_path, entry(tiny))
        spark.conf.set(MODEL_DIRS_CONF, str(tiny.parent))
        assert "predict_lite_copy" in register(spark, tmp_path, entry(tiny)).functions
    finally:
        spark.conf.unset(MODEL_DIRS_CONF)


def test_random_weights_say_so_everywhere_and_warn_once(spark, tmp_path, tiny):
    """A model exported with --weights random is a test model: its description, `models list` and one
    warning at registration say so, whatever the catalog's source claims."""
    import json
    import logging

    from click.testing import CliRunner

    from sql_dl.cli.command import main

    (tmp_path / "tiny.onnx.json").write_text(json.dumps({"weights": "random"}))
    body = entry(tiny, "    source: {exporter: torchvision, arch: resnet18, weights: IMAGENET1K_V1}\n",
                 name="untrained")
    records: list = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # on sql-dl's own logger: the CLI turns its propagation off
    logging.getLogger("sql_dl").addHandler(handler)
    try:
        register(spark, tmp_path, body)
        register(spark, tmp_path, body)
    finally:
        logging.getLogger("sql_dl").removeHandler(handler)
    warnings = [r.getMessage() for r in records if "RANDOM weights" in r.getMessage()]
    assert warnings == ["model 'untrained' has RANDOM weights (exported with --weights random): its answers mean "
                        "nothing; export it with `sql-dl models export untrained` (pretrained) or --weights PATH"]
    card = "\n".join(r[0] for r in spark.sql("DESCRIBE FUNCTION EXTENDED predict_untrained").collect())
    assert "weights=IMAGENET1K_V1 -- exported with RANDOM weights: its answers mean nothing" in card
    listed = CliRunner().invoke(main, ["models", "list", "--format", "json", "--catalog", str(tmp_path / "models.yaml")])
    assert json.loads(listed.output)["weights"] == "RANDOM (untrained)"


def test_register_catalog_into_a_session_sql_dl_did_not_build(tmp_path, photo_dir):
    """A plain SparkSession (no sql-dl class on its class path): register_catalog loads sql-dl's JVM half by a
    class loader of its own, every function kind and the models table work, and the session gets sql-dl's
file-listing threshold (it had none of its own)."""
    import subprocess
    import sys

    from conftest import CATALOG

    script = tmp_path / "foreign.py"
    script.write_text(
        "import sys\nfrom pyspark.sql import SparkSession\nfrom sql_dl import register_catalog\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.pyspark.python', sys.executable)"
        ".config('spark.ui.enabled', 'false').getOrCreate()\n"
        f"register_catalog(spark, {str(CATALOG)!r})\n"
        "row = spark.sql(\"SELECT predict_efficientnet_lite0(content) AS label, "
        "ml_predict_detail('efficientnet_lite0@default', content).version AS version "
        f"FROM binaryFile.`{photo_dir / 'coffee.jpg'}`\").collect()[0]\n"
        "models = spark.sql('SELECT count(*) FROM sql_dl_models').collect()[0][0]\n"
        "print(spark.conf.get('spark.sql.sources.parallelPartitionDiscovery.threshold'))\n"
        "print(row.label, row.version, models)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    from sql_dl.catalog import load_catalog

    assert result.stdout.split()[-3:] == ["espresso", "1", str(len(load_catalog(CATALOG).all_versions()))]
    # the file-listing setting the speed of a folder of photos needs travels with the functions
    assert result.stdout.split()[-4] == "10000"
