"""Device policy: cuda that cannot run is refused at registration, auto falls back to CPU with one warning when a
GPU is there to be used, and the GPU path itself runs where a GPU is (skipped cleanly without one)."""
from __future__ import annotations

import pytest

from conftest import tiny_model, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.registry.devices import check_devices, cuda_provider
from sql_dl.errors import CatalogError
from sql_dl.registry import register_catalog


def catalog(tmp_path, device: str):
    onnx = tiny_model(tmp_path / "tiny.onnx")
    return write_catalog(tmp_path, f"models:\n  on_{device}:\n    onnx: {onnx}\n    device: {device}\n"
                                   "    input: {size: [224, 224]}\n    outputs: {scores: logits}\n")


def test_cuda_without_a_cuda_provider_is_refused_in_local_mode(tmp_path):
    specs = list(load_catalog(catalog(tmp_path, "cuda")))
    with pytest.raises(CatalogError, match=r"^models\.yaml: entry 'on_cuda': device: cuda, but this onnxruntime has "
                                          r"no CUDA execution provider"):
        check_devices(specs, {}, local=True, has_cuda=False)
    assert check_devices(specs, {}, local=False, has_cuda=False) is None  # executors may differ: they check
    assert check_devices(specs, {}, local=True, has_cuda=True) is None


def test_auto_warns_once_only_when_a_gpu_is_there_to_use(tmp_path):
    specs = list(load_catalog(catalog(tmp_path, "auto")))
    configured = {"spark.task.resource.gpu.amount": "1"}
    warning = check_devices(specs, configured, local=True, has_cuda=False)
    assert warning == ("device: auto runs on_auto on CPU: spark.task.resource.gpu.amount is set, but this "
                       "onnxruntime has no CUDA execution provider (on a GPU machine `make gpu` installs "
                       "onnxruntime-gpu: README 'GPUs')")
    assert check_devices(specs, {}, local=True, has_cuda=False, gpu_present=False) is None  # the normal case
    present = check_devices(specs, {}, local=True, has_cuda=False, gpu_present=True)
    assert present is not None and "on_auto on CPU: an NVIDIA GPU is present" in present
    assert check_devices(specs, configured, local=True, has_cuda=True, gpu_present=True) is None


@pytest.mark.skipif(cuda_provider(), reason="this machine has CUDA: registration must accept device: cuda")
def test_registering_a_cuda_entry_here_fails_with_one_line(spark, tmp_path):
    with pytest.raises(CatalogError, match="device: cuda, but this onnxruntime has no CUDA"):
        register_catalog(spark, catalog(tmp_path, "cuda"))


@pytest.mark.skipif(not cuda_provider(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_entry_runs_on_the_gpu_and_agrees_with_cpu(spark, tmp_path, photo_dir, event_log):
    for device in ("cuda", "cpu"):
        (tmp_path / device).mkdir()
        register_catalog(spark, catalog(tmp_path / device, device))
    rows = spark.sql(f"SELECT predict_on_cuda(content) AS gpu, predict_on_cpu(content) AS cpu "
                     f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()
    assert len(rows) >= 7 and all(r.gpu == r.cpu for r in rows)
