"""The runtime backends: OpenVINO beside ONNX Runtime, precision said out loud, `backend: auto` chosen by a timed
run, and executors without OpenVINO (a subprocess where the module cannot be imported)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import CATALOG, EFFICIENTNET_ONNX, ROOT, read_events, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.errors import CatalogError, ModelUnavailableError
from sql_dl.executor import backends, runtime

needs_openvino = pytest.mark.skipif(not backends.BACKENDS["openvino"].installed(),
                                    reason="openvino is not installed (pip install 'sql-dl[openvino]')")


def photo_batch() -> np.ndarray:
    from sql_dl.build.precision import photo_tensors

    return photo_tensors(load_catalog(CATALOG).get("efficientnet_lite0"))


@needs_openvino
def test_openvino_fp32_answers_like_onnxruntime_on_real_photos():
    batch = photo_batch()
    ort = backends.get("onnxruntime").open(str(EFFICIENTNET_ONNX), threads=1)
    ov = backends.get("openvino").open(EFFICIENTNET_ONNX.read_bytes(), threads=1)
    assert (ov.backend, ov.device, ov.precision) == ("openvino", "cpu", "fp32")
    assert [(i.name, i.shape, i.dtype) for i in ov.inputs] == [("image", (None, 3, 224, 224), "float32")]
    assert [o.name for o in ov.outputs] == [o.name for o in ort.outputs] == ["logits", "features"]
    expected = ort.run(["logits", "features"], {"image": batch})
    actual = ov.run(["logits", "features"], {"image": batch})
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and np.abs(a - e).max() / np.abs(e).max() < 1e-4
    assert (actual[0].argmax(1) == expected[0].argmax(1)).all()


@needs_openvino
def test_bf16_says_what_this_cpu_really_computes_in():
    """On CPUs without AMX/AVX512_BF16 OpenVINO accepts the bf16 hint and computes in fp32: the model says so."""
    openvino = backends.BACKENDS["openvino"]
    model = openvino.open(str(EFFICIENTNET_ONNX), threads=1, precision="bf16")
    assert model.precision == ("bf16" if openvino.native_bf16() else "fp32")
    with pytest.raises(ModelUnavailableError, match="bf16 runs on OpenVINO only"):
        backends.get("onnxruntime").open(str(EFFICIENTNET_ONNX), precision="bf16")


def lite_ref(tmp_path, backend: str, precision: str = "fp32", name: str = "lite") -> runtime.ModelRef:
    return runtime.ModelRef(name, str(EFFICIENTNET_ONNX), runtime.file_sha256(str(EFFICIENTNET_ONNX)), "cpu", 8,
                            str(tmp_path / "events.jsonl"), "1", backend, precision, ((3, 224, 224), "float32"))


@needs_openvino
def test_auto_times_both_backends_on_the_entry_input_and_logs_the_choice(tmp_path):
    ref = lite_ref(tmp_path, "auto", name="lite_auto")
    batch = photo_batch()
    logits = runtime.run(ref, batch, ["logits"])[0]
    load = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "load"][-1]
    timings = load["auto_ms_per_batch"]
    assert set(timings) == {"onnxruntime", "openvino"} and all(t > 0 for t in timings.values())
    faster = timings["openvino"] < runtime.AUTO_MARGIN * timings["onnxruntime"]
    assert load["backend"] == ("openvino" if faster else "onnxruntime")
    assert load["requested"] == {"backend": "auto", "precision": "fp32"} and load["precision"] == "fp32"
    reference = backends.get().open(str(EFFICIENTNET_ONNX)).run(["logits"], {"image": batch})[0]
    assert (logits.argmax(1) == reference.argmax(1)).all()


WITHOUT_OPENVINO = """
import logging, sys
sys.modules["openvino"] = None  # this interpreter cannot import openvino, like a base install
logging.basicConfig(level=logging.WARNING, format="%(message)s")
import numpy as np
from sql_dl.executor import runtime
ref = runtime.ModelRef("lite", {path!r}, runtime.file_sha256({path!r}), "cpu", 8, None, "1", {backend!r})
batch = np.zeros((3, 3, 224, 224), np.float32)
for _ in range(2):
    runtime.run(ref, batch, ["logits"])
    runtime._models.clear()
print("ran on", runtime.get_model(ref).backend)
"""


@pytest.mark.parametrize("backend", ["auto", "openvino"])
def test_executors_without_openvino_fall_back_once_or_fail_in_one_line(backend):
    code = WITHOUT_OPENVINO.format(path=str(EFFICIENTNET_ONNX), backend=backend)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if backend == "auto":
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ran on onnxruntime"
        warnings = [line for line in result.stderr.splitlines() if "openvino is not installed" in line]
        assert len(warnings) == 1, result.stderr  # once per worker, not once per load
    else:
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.endswith("model 'lite': backend openvino is asked for, but openvino is not installed on this "
                             "executor (pip install 'sql-dl[openvino]', or set backend: auto)"), result.stderr


ENTRY = ("models:\n  m:\n    onnx: m.onnx\n    input: {size: [224, 224]}\n    outputs: {scores: logits}\n")


def test_backend_is_an_entry_field_and_a_default(tmp_path):
    assert load_catalog(write_catalog(tmp_path, ENTRY)).get("m").backend == "onnxruntime"
    assert load_catalog(write_catalog(tmp_path, ENTRY + "    backend: openvino\n")).get("m").backend == "openvino"
    spec = load_catalog(write_catalog(tmp_path, "defaults: {backend: auto}\n" + ENTRY)).get("m")
    assert spec.backend == "auto"


@pytest.mark.parametrize("extra,message", [
    ("    backend: tensorrt\n", r"entry 'm': backend must be one of onnxruntime\|openvino\|auto, got 'tensorrt'"),
    ("    precision: bf16\n", r"entry 'm': precision bf16 runs on OpenVINO's CPU plugin only: set backend: openvino"),
    ("    backend: openvino\n    device: cuda\n", r"entry 'm': backend openvino runs on the CPU"),
])
def test_bad_backend_settings_are_one_line(tmp_path, extra, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog(write_catalog(tmp_path, ENTRY + extra))


def test_bf16_entries_keep_openvino_whatever_the_session_says(tmp_path):
    from sql_dl.registry.tasks import Settings, make_task

    body = ENTRY.replace("m.onnx", str(EFFICIENTNET_ONNX)).replace("{size: [224, 224]}", "{size: [224, 224], resize: 256}")
    spec = load_catalog(write_catalog(tmp_path, body + "    backend: auto\n    precision: bf16\n")).get("m")
    assert make_task(spec, Settings(backend="auto"))[1].ref.backend == "auto"
    with pytest.raises(CatalogError, match=r"precision bf16 runs on OpenVINO only, but spark\.sqldl\.backend is "
                                           r"onnxruntime"):
        make_task(spec, Settings(backend="onnxruntime"))
    with pytest.raises(CatalogError, match=r"^spark\.sqldl\.backend must be one of onnxruntime\|openvino\|auto"):
        make_task(spec, Settings(backend="tvm"))


@needs_openvino
def test_session_setting_runs_every_entry_on_openvino_in_sql(spark, tmp_path, photo_dir, event_log):
    from sql_dl.registry import register_catalog
    from sql_dl.registry.tasks import BACKEND_CONF

    catalog = write_catalog(tmp_path, f"models:\n  lite_ov:\n    onnx: {EFFICIENTNET_ONNX}\n"
                                      f"    input: {{size: [224, 224], resize: 256, scale: 1.0, mean: [127, 127, 127], "
                                      f"std: [128, 128, 128]}}\n    outputs: {{scores: logits}}\n")
    try:
        spark.conf.set(BACKEND_CONF, "openvino")
        register_catalog(spark, catalog)
    finally:
        spark.conf.unset(BACKEND_CONF)
    rows = dict(spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0), predict_lite_ov(content) "
                          f"FROM binaryFile.`{photo_dir}/*.jpg`").collect())
    assert rows["coffee.jpg"] == "espresso"
    loads = [e for e in read_events(event_log) if e.get("model") == "lite_ov" and e["event"] == "load"]
    assert loads and {(e["backend"], e["precision"]) for e in loads} == {("openvino", "fp32")}
    text = "\n".join(r[0] for r in spark.sql("DESCRIBE FUNCTION EXTENDED predict_lite_ov").collect())
    assert "backend: openvino, precision fp32" in text
    assert json.loads(json.dumps(loads[0]))["requested"]["backend"] == "openvino"
