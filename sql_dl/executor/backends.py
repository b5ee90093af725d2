"""The runtime seam: every other module opens, inspects and runs models through this one interface.

A backend turns an ONNX model (bytes or a path) into a :class:`LoadedModel`: its input and output
signature as plain data (:class:`TensorInfo`, numpy dtype names), a ``run`` over numpy batches, and the
device and precision it really runs in. Two implementations: ONNX Runtime (a base dependency) and OpenVINO
(optional: ``pip install 'sql-dl[openvino]'``; its CPU plugin reads the same ONNX files). Only this module
imports ``onnxruntime``'s or ``openvino``'s inference objects (build-time quantization tools aside).
"""
from __future__ import annotations

import importlib.util
import sys
import threading
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
    precision: str  # what it really computes in: "fp32" | "bf16" | "int8" | "fp16" (a runtime may not honour a hint)
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class Backend:
    """Opens models. ``device`` is the catalog's auto | cpu | cuda; ``gpu`` the device id Spark gave the task."""

    name = ""
    module = ""  # the Python module the runtime installs

    def installed(self) -> bool:
        """Whether this Python environment has the runtime (found without importing it)."""
        return importlib.util.find_spec(self.module) is not None

    def cuda_available(self) -> bool:
        raise NotImplementedError

    def open(self, model: bytes | str, threads: int | None = None, device: str = "cpu",
             gpu: int | None = None, precision: str = "fp32") -> LoadedModel:
        """``precision`` is what the catalog asks for: fp32 | bf16 (a compute precision for fp32 weights) |
        int8 | fp16 (what the file holds)."""
        raise NotImplementedError


class _OrtModel(LoadedModel):
    backend = "onnxruntime"

    def __init__(self, session: Any, precision: str) -> None:
        self._session = session
        self.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        self.precision = precision  # ONNX Runtime computes in what the file holds
        self.inputs = [_info(i) for i in session.get_inputs()]
        self.outputs = [_info(o) for o in session.get_outputs()]

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(output_names, feeds)


def _info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, (int, str)) else None for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, ONNX_DTYPES.get(arg.type, arg.type))


class OnnxRuntime(Backend):
    name = "onnxruntime"
    module = "onnxruntime"

    def cuda_available(self) -> bool:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()

    def open(self, model: bytes | str, threads: int | None = None, device: str = "cpu",
             gpu: int | None = None, precision: str = "fp32") -> LoadedModel:
        """Raises ModelUnavailableError for device: cuda without CUDA; any load failure propagates as ORT's."""
        import onnxruntime as ort

        if precision == "bf16":
            raise ModelUnavailableError("precision bf16 runs on OpenVINO only (set backend: openvino or auto)")

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
        return _OrtModel(ort.InferenceSession(model, sess_options=options, providers=providers), precision)


# OpenVINO's element types for the compute precision it reports back -> the catalog's names
_OV_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class _OpenVinoModel(LoadedModel):
    backend = "openvino"
    device = "cpu"

    def __init__(self, model: Any, compiled: Any, precision: str) -> None:
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: callers sharing a model take turns
        self.inputs = [_ov_info(port) for port in model.inputs]
        self.outputs = [_ov_info(port) for port in model.outputs]
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino Type: f32, bf16, f16
        ran = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        # an int8 (QDQ) file runs its quantized layers in int8 whatever the hint; the hint governs the rest
        self.precision = "int8" if precision == "int8" else _OV_PRECISIONS.get(ran, ran)

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            # share_inputs: the feeds are contiguous numpy batches, read in place; outputs are copied out
            results = self._request.infer({name: np.ascontiguousarray(value) for name, value in feeds.items()},
                                          share_inputs=True)
            return [results[name] for name in output_names]


def _ov_info(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except (TypeError, RuntimeError):
        dtype = str(port.get_element_type())
    return TensorInfo(port.get_any_name(), shape, dtype)


class OpenVino(Backend):
    """OpenVINO's CPU plugin. Precision is always explicit: OpenVINO's own default on CPUs with AMX or
    AVX512_BF16 is bf16, so fp32 entries pin INFERENCE_PRECISION_HINT to f32."""

    name = "openvino"
    module = "openvino"
    _core: Any = None

    def core(self) -> Any:
        if self._core is None:
            import openvino

            type(self)._core = openvino.Core()
        return self._core

    def cuda_available(self) -> bool:
        return False

    def native_bf16(self) -> bool:
        """Whether this CPU computes bf16 in hardware (AMX or AVX512_BF16), as OpenVINO reports it."""
        return "BF16" in self.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")

    def open(self, model: bytes | str, threads: int | None = None, device: str = "cpu",
             gpu: int | None = None, precision: str = "fp32") -> LoadedModel:
        if device == "cuda":
            raise ModelUnavailableError("backend openvino runs on the CPU; device: cuda needs backend onnxruntime "
                                        "(onnxruntime-gpu)")
        if precision == "fp16":
            raise ModelUnavailableError("precision fp16 runs on GPUs with onnxruntime-gpu; backend openvino is CPU only")
        core = self.core()
        graph = core.read_model(model)  # a path or the ONNX file's bytes: the ONNX frontend reads both
        config: dict = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        return _OpenVinoModel(graph, core.compile_model(graph, "CPU", config), precision)


BACKENDS: dict[str, Backend] = {"onnxruntime": OnnxRuntime(), "openvino": OpenVino()}
DEFAULT = "onnxruntime"
CHOICES = (*BACKENDS, "auto")  # what `backend:` and spark.sqldl.backend accept


def get(name: str = DEFAULT) -> Backend:
    """The backend ``name``; one line when it is unknown or not installed in this Python environment."""
    if name not in BACKENDS:
        raise ModelUnavailableError(f"no model runtime named {name!r}. Available: {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    if not backend.installed():
        raise ModelUnavailableError(f"backend {name} is not installed in this Python environment "
                                    f"({sys.executable}): pip install 'sql-dl[{name}]', or set backend: auto")
    return backend


def installed() -> list[str]:
    """The backends this Python environment can run, the default first."""
    return [name for name, backend in BACKENDS.items() if backend.installed()]

