"""Lower-precision variants: the int8 EfficientNet-Lite0 built by `make`, measured against fp32; fp16 is GPU-only."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import CATALOG, ROOT, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.cli.command import main
from sql_dl.errors import CatalogError
from sql_dl.build.precision import INT8_MIN_AGREEMENT
from sql_dl.registry.devices import cuda_provider

INT8 = ROOT / "models" / "efficientnet_lite0.int8.onnx"


def test_int8_model_holds_int8_weights_and_was_compared_with_fp32_on_real_photos():
    """Speed is reported (the record, `models verify`) and measured by `make bench`, not asserted here."""
    import onnx

    record = json.loads((INT8.parent / (INT8.name + ".json")).read_text())
    assert record["precision"] == "int8" and record["photos"] >= 7
    assert record["top1_agreement_vs_fp32"] >= INT8_MIN_AGREEMENT
    graph = onnx.load(str(INT8)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(int8_weights) >= len(convs) > 0  # every convolution's weights stored as int8
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) >= len(convs)
    assert INT8.stat().st_size < (ROOT / "models" / "efficientnet_lite0.onnx").stat().st_size / 3


def test_int8_functions_answer_in_sql(spark, photo_dir):
    rows = {r.file: r for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0_int8(content) AS int8, "
        f"predict_efficientnet_lite0(content) AS fp32, size(featurize_efficientnet_lite0_int8(content)) AS n "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    assert rows["coffee.jpg"].int8 == "espresso"  # the photo fp32 is sure of (p = 0.95)
    assert all(r.n == 1280 for r in rows.values())
    agreement = sum(r.int8 == r.fp32 for r in rows.values()) / len(rows)
    assert agreement >= INT8_MIN_AGREEMENT


def test_verify_reports_int8_agreement_with_fp32():
    result = CliRunner().invoke(main, ["models", "verify", "efficientnet_lite0_int8", "--catalog", str(CATALOG)])
    assert result.exit_code == 0, result.output
    assert "int8 on onnxruntime: top-1 agreement with fp32" in result.output and "max relative error" in result.output
    assert result.output.rstrip().endswith("(ok)")


def test_fp16_is_refused_without_a_cuda_device(tmp_path):
    body = ("models:\n  m:\n    onnx: m.onnx\n    precision: fp16\n    input: {size: [224, 224]}\n"
            "    outputs: {scores: logits}\n")
    with pytest.raises(CatalogError, match=r"entry 'm': precision fp16 runs on GPUs only"):
        load_catalog(write_catalog(tmp_path, body))
    assert load_catalog(write_catalog(tmp_path, body.replace("precision: fp16", "precision: fp16\n    device: cuda")))


FP32 = ROOT / "models" / "efficientnet_lite0.onnx"


def test_fp16_conversion_halves_the_weights_and_keeps_float32_inputs(tmp_path):
    import onnx

    from sql_dl.build.precision import convert_fp16

    convert_fp16(FP32, tmp_path / "m.fp16.onnx")
    assert (tmp_path / "m.fp16.onnx").stat().st_size < FP32.stat().st_size * 0.6
    graph = onnx.load(str(tmp_path / "m.fp16.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # callers still feed float32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


@pytest.mark.skipif(not cuda_provider(), reason="running fp16 needs a GPU (onnxruntime-gpu with CUDA)")
def test_fp16_on_the_gpu_agrees_with_fp32(tmp_path):
    import dataclasses

    from sql_dl.build.precision import compare, convert_fp16

    convert_fp16(FP32, tmp_path / "m.fp16.onnx")
    spec = dataclasses.replace(load_catalog(CATALOG).get("efficientnet_lite0"), precision="fp16", device="cuda")
    result = compare(spec, FP32, tmp_path / "m.fp16.onnx")
    assert result["top1_agreement_vs_fp32"] >= 0.99


needs_openvino = pytest.mark.skipif(not __import__("sql_dl.executor.backends", fromlist=["x"]).BACKENDS[
    "openvino"].installed(), reason="openvino is not installed (pip install 'sql-dl[openvino]')")


@needs_openvino
def test_bf16_export_records_what_the_cpu_really_computed_in(tmp_path):
    """bf16 is the fp32 file computed in bf16 by OpenVINO; on a CPU without AMX/AVX512_BF16 the record says fp32."""
    from sql_dl.build.export import export_onnx, sidecar
    from sql_dl.executor.backends import BACKENDS

    path = export_onnx(load_catalog(CATALOG).get("efficientnet_lite0_bf16"), "pretrained", tmp_path)
    record = json.loads(sidecar(path).read_text())
    native = BACKENDS["openvino"].native_bf16()
    assert record["precision"] == "bf16" and record["backend"] == "openvino"
    assert record["computed_in"] == ("bf16" if native else "fp32")
    assert record["top1_agreement_vs_fp32"] >= (0.99 if native else 1.0)
    assert record["max_relative_error_vs_fp32"] < (0.05 if native else 1e-4)


@needs_openvino
@pytest.mark.timeout(600)
def test_nncf_int8_export_is_compared_with_fp32_on_every_backend(tmp_path):
    import onnx

    from sql_dl.build.export import export_onnx, sidecar

    path = export_onnx(load_catalog(CATALOG).get("efficientnet_lite0_int8_nncf"), "pretrained", tmp_path)
    record = json.loads(sidecar(path).read_text())
    assert record["quantizer"] == "nncf" and set(record["by_backend"]) == {"onnxruntime", "openvino"}
    for result in record["by_backend"].values():
        assert result["top1_agreement_vs_fp32"] >= INT8_MIN_AGREEMENT and result["computed_in"] == "int8"
    graph = onnx.load(str(path)).graph
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) >= sum(n.op_type == "Conv" for n in graph.node)


def test_unknown_quantizer_is_one_line(tmp_path):
    import dataclasses

    from sql_dl.build.export import export_onnx
    from sql_dl.errors import ExportError

    spec = load_catalog(CATALOG).get("efficientnet_lite0_int8")
    spec = dataclasses.replace(spec, source={**spec.source, "quantizer": "tensorrt"})
    with pytest.raises(ExportError, match=r"source\.quantizer must be one of onnxruntime\|nncf, got 'tensorrt'"):
        export_onnx(spec, "pretrained", tmp_path)
