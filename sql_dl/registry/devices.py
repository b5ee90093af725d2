"""Driver-side device checks: is CUDA usable by ONNX Runtime here, and is a GPU present or configured?

``device: cuda`` without a CUDA execution provider is refused at registration in local mode (the executors
share the driver's Python environment there); ``device: auto`` falls back to CPU, and says so in one warning
when a GPU is there to be used (present or given to tasks by Spark) but ONNX Runtime cannot use it. A CPU-only
machine running ``auto`` is the normal case and gets no warning.
"""
from __future__ import annotations

from pathlib import Path

from ..executor import backends
from ..specs import ModelSpec
from ..errors import CatalogError

GPU_CONFS = ("spark.task.resource.gpu.amount", "spark.executor.resource.gpu.amount", "spark.driver.resource.gpu.amount")


def cuda_provider() -> bool:
    """Whether the model runtime here can use CUDA."""
    return backends.get().cuda_available()


def nvidia_present() -> bool:
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()


def gpu_reason(conf: dict, gpu_present: bool) -> str | None:
    """Why a GPU looks available to this application (a Spark GPU resource, an NVIDIA device), or None."""
    for key in GPU_CONFS:
        if str(conf.get(key) or "0") not in ("0", "0.0"):
            return f"{key} is set"
    return "an NVIDIA GPU is present" if gpu_present else None


def check_devices(specs: list[ModelSpec], conf: dict, local: bool, has_cuda: bool,
                  gpu_present: bool = False) -> str | None:
    """Raise for ``device: cuda`` that cannot work; return the one warning for ``auto`` entries falling back."""
    if has_cuda:
        return None
    for spec in specs:
        if spec.device == "cuda" and local:
            raise CatalogError(f"{spec.where()}: device: cuda, but this onnxruntime has no CUDA execution provider "
                               "(on a GPU machine `make gpu` installs onnxruntime-gpu: README 'GPUs'), "
                               "or set device: auto|cpu")
    auto = [spec.name for spec in specs if spec.device == "auto"]
    reason = gpu_reason(conf, gpu_present)
    if auto and reason:
        return (f"device: auto runs {', '.join(auto)} on CPU: {reason}, but this onnxruntime has no CUDA "
                "execution provider (on a GPU machine `make gpu` installs onnxruntime-gpu: README 'GPUs')")
    return None


def spark_facts(spark) -> tuple[dict, bool]:
    """(the GPU-related confs, whether the master is local) of a running session."""
    spark_conf = spark.sparkContext.getConf()
    return {key: spark_conf.get(key, None) for key in GPU_CONFS}, spark.sparkContext.master.startswith("local")
