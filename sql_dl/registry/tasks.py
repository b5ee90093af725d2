"""What executors run for each version of a catalog entry, made on the driver without Spark.

:func:`make_task` checks one model (:mod:`.inspect`) and builds the :class:`~sql_dl.executor.udfs.Task` its
UDFs carry; :func:`prepare_versions` does it for every version of a catalog. Both the Python registration
(:mod:`.register`) and the JVM's records (:mod:`.records`) start here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from ..catalog import BACKEND_CHOICES, ON_ERROR
from ..errors import CatalogError
from ..executor import runtime
from ..executor.outputs import load_labels
from ..executor.udfs import Task
from ..specs import Catalog, ModelSpec
from .hooks import load_decoder
from .inspect import ModelInfo, inspect_model, missing_message

ON_ERROR_CONF = "spark.sqldl.onError"  # null|fail for every entry of this session, over the catalog's choice
BACKEND_CONF = "spark.sqldl.backend"  # onnxruntime|openvino|auto for every entry of this session


@dataclass(frozen=True)
class Settings:
    """The spark.sqldl.* settings that shape registration, read once from a session (or given by the JVM)."""

    event_log: str | None = None  # spark.sqldl.eventLog
    on_error: str | None = None  # spark.sqldl.onError: null|fail for every entry, over the catalog's choice
    model_dirs: str | None = None  # spark.sqldl.modelDirs
    backend: str | None = None  # spark.sqldl.backend: the runtime for every entry, over the catalog's choice


def make_task(spec: ModelSpec, settings: Settings, decoder: Callable | None = None) -> tuple[ModelInfo, Task]:
    """Check the model on the driver and make the Task executors run (catalog entries and Python API models
    alike; ``decoder`` is the API's callable preprocessor, else the entry's hook). Needs no Spark."""
    info = inspect_model(spec)
    if decoder is None and spec.input.decoder:
        decoder = load_decoder(spec.input.decoder, spec.where())
    h, w = spec.input.size
    sample = ((3, h, w) if spec.input.layout == "nchw" else (h, w, 3), spec.input.dtype)
    ref = runtime.ModelRef(spec.name, str(spec.onnx), info.sha256, spec.device, spec.batch_size, settings.event_log,
                           spec.version, backend_for(spec, settings.backend), spec.precision, sample)
    on_error = check_on_error(settings.on_error) or spec.on_error
    info = dataclasses.replace(info, backend=ref.backend)
    return info, Task(ref, spec.input, spec.outputs, load_labels(spec.labels), decoder, on_error)


def check_backend(value: str | None) -> str | None:
    value = (value or "").strip().lower() or None
    if value is not None and value not in BACKEND_CHOICES:
        raise CatalogError(f"{BACKEND_CONF} must be one of {'|'.join(BACKEND_CHOICES)}, got {value!r}")
    return value


def backend_for(spec: ModelSpec, session: str | None) -> str:
    """The session's backend (spark.sqldl.backend) over the entry's; bf16 entries keep OpenVINO (the only
    runtime with bf16) and fp16 / CUDA entries keep ONNX Runtime."""
    backend = check_backend(session) or spec.backend
    if spec.precision == "bf16" and backend == "onnxruntime":
        raise CatalogError(f"{spec.where()}: precision bf16 runs on OpenVINO only, but {BACKEND_CONF} is "
                           "onnxruntime: set it to openvino or auto, or unset it")
    if backend == "openvino" and (spec.device == "cuda" or spec.precision == "fp16"):
        raise CatalogError(f"{spec.where()}: backend openvino runs on the CPU; device cuda / precision fp16 need "
                           "onnxruntime")
    return backend


def check_on_error(value: str | None) -> str | None:
    value = (value or "").strip().lower() or None
    if value is not None and value not in ON_ERROR:
        raise CatalogError(f"{ON_ERROR_CONF} must be one of {'|'.join(ON_ERROR)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Prepared:
    """One version of an entry, checked: its info and task, or why it cannot run (its file is absent)."""

    spec: ModelSpec
    info: ModelInfo | None = None
    task: Task | None = None
    missing: str | None = None


def prepare_versions(catalog: Catalog, settings: Settings) -> list[Prepared]:
    """Every version of every entry, in catalog order; raises CatalogError (one line) for a bad model."""
    prepared = []
    for spec in catalog.all_versions():
        if not spec.available:
            prepared.append(Prepared(spec, missing=missing_message(spec)))
            continue
        info, task = make_task(spec, settings)
        prepared.append(Prepared(spec, info, task))
    return prepared
