"""The runtime seam: every other module opens, inspects and runs models through this one interface.

A backend turns an ONNX model (bytes or a path) into a :class:`LoadedModel`: its input and output
signature as plain data (:class:`TensorInfo`, numpy dtype names), a ``run`` over numpy batches, and the
device it really runs on. ONNX Runtime is the implementation here; a second runtime (OpenVINO) is one
more :class:`Backend` subclass registered in :data:`BACKENDS`, and no caller changes. Only this module
imports ``onnxruntime``'s inference objects (build-time quantization tools aside).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelUnavailableError

# ONNX element types -> numpy dtype names; a model using any other type is refused with its name
ONNX_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(bool)": "bool"}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: name, shape (ints for fixed dimensions; a name, or None, for dynamic
    ones), dtype."""

    name: str
    shape: tuple
    dtype: str  # a numpy dtype name, or the runtime's own type string when numpy has none


class LoadedModel:
    """A model opened by a backend, ready to run batches."""

    backend: str
    device: str  # where it really runs: "cpu" | "cuda"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class Backend:
    """Opens models. ``device`` is the catalog's auto | cpu | cuda; ``gpu`` the device id Spark gave the task."""

    name = ""

    def cuda_available(self) -> bool:
        raise NotImplementedError

    def open(self, model: bytes | str, threads: int | None = None, device: str = "cpu",
             gpu: int | None = None) -> LoadedModel:
        raise NotImplementedError


class _OrtModel(LoadedModel):
    backend = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self._session = session
        self.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        self.inputs = [_info(i) for i in session.get_inputs()]
        self.outputs = [_info(o) for o in session.get_outputs()]

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(output_names, feeds)


def _info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, (int, str)) else None for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, ONNX_DTYPES.get(arg.type, arg.type))


class OnnxRuntime(Backend):
    name = "onnxruntime"

    def cuda_available(self) -> bool:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()

    def open(self, model: bytes | str, threads: int | None = None, device: str = "cpu",
             gpu: int | None = None) -> LoadedModel:
        """Raises ModelUnavailableError for device: cuda without CUDA; any load failure propagates as ORT's."""
        import onnxruntime as ort

        if device == "cuda" and not self.cuda_available():
            raise ModelUnavailableError("device: cuda, but this onnxruntime has no CUDA execution provider "
                                        "(install onnxruntime-gpu on a GPU machine, or set device: auto|cpu)")
        providers: list = ["CPUExecutionProvider"]
        if device != "cpu" and self.cuda_available():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu or 0}))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return _OrtModel(ort.InferenceSession(model, sess_options=options, providers=providers))


BACKENDS: dict[str, Backend] = {"onnxruntime": OnnxRuntime()}
DEFAULT = "onnxruntime"


def get(name: str = DEFAULT) -> Backend:
    if name not in BACKENDS:
        raise ModelUnavailableError(f"no model runtime named {name!r}. Available: {', '.join(BACKENDS)}")
    return BACKENDS[name]

