"""Where a Python API model comes from: a ``torch.nn.Module``, an ONNX file path or bytes, or a catalog entry.

Every kind ends as an ONNX file on the driver, shipped to executors by content hash like catalog models
(:func:`sql_dl.registry.ship_file`), so executors need only onnxruntime. A Module is exported here with
export.py's settings and compared with PyTorch before anything runs: an export can run and answer wrongly.
Files made here are written to the driver's staging folder under the very name executors receive them by
(``sql-dl-<sha256>.onnx``), so the same model passed twice is written and shipped once.
"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import registry, runtime
from .catalog import IDENTIFIER, ModelSpec
from .errors import CatalogError, ModelUnavailableError, UsageError
from .udfs import Task

DEFAULT_CATALOG = "models.yaml"  # registered on first use when a session registered none
CHECK_ROWS = 5  # the export traces 2 rows; verification runs 5, so a batch dimension fixed by mistake shows


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


# --------------------------------------------------------------------------- catalog entries

def catalog_entry(spark: Any, name: str) -> tuple[ModelSpec, Task]:
    """Entry ``name`` of the catalogs this session registered (the newest first); models.yaml is registered
    when there is none, so Transformers work in a session built without sql-dl."""
    found = registry.registrations(spark) or [registry.register_catalog(spark, DEFAULT_CATALOG)]
    for registered in reversed(found):
        if name in registered.missing:
            raise ModelUnavailableError(registered.missing[name])
        if name in registered.tasks:
            return registered.catalog.get(name), registered.tasks[name]
    available = sorted({entry for registered in found for entry in registered.catalog.models})
    raise CatalogError(f"no catalog entry named {name!r}. Available: {', '.join(available)}")


def is_entry_name(model: Any) -> bool:
    """A bare identifier that is not an existing file names a catalog entry."""
    return isinstance(model, str) and bool(IDENTIFIER.match(model)) and not Path(model).is_file()


# --------------------------------------------------------------------------- ONNX files and bytes

def write_onnx(blob: bytes) -> tuple[Path, str]:
    """ONNX bytes -> (driver file named by sha256, sha256), written once."""
    sha = hashlib.sha256(blob).hexdigest()
    path = registry.staging_dir() / runtime.shipped_name(sha)
    if not path.exists():
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_bytes(blob)
        partial.replace(path)  # atomic: a concurrent reader never sees half a model
    return path, sha


def existing_file(value: str | Path, what: str, label: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"{what}: {label} file {path} does not exist")
    return path


def onnx_file(model: Any, what: str) -> tuple[Path, str]:
    """An ONNX path or bytes -> (driver file, sha256); anything else is one line saying what is accepted."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return write_onnx(bytes(model))
    if isinstance(model, (str, Path)):
        path = existing_file(model, what, "model")
        return path, runtime.file_sha256(str(path))
    raise UsageError(f"{what}: model must be a torch.nn.Module, an ONNX file path or bytes, or a catalog entry "
                     f"name; got {type(model).__name__}")


def open_model(path: Path, what: str) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for bad files
        raise UsageError(f"{what}: {path.name} is not a loadable ONNX model: {first_line(exc)}") from None


# --------------------------------------------------------------------------- torch modules

def is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")  # a Module exists only once torch is imported: never import it here
    return torch is not None and isinstance(model, torch.nn.Module)


def _torch_outputs(module: Any, inputs: list, what: str) -> list[np.ndarray]:
    import torch

    shapes = ", ".join(str(list(x.shape)) for x in inputs)
    try:
        with torch.no_grad():
            result = module(*[torch.from_numpy(x) for x in inputs])
    except Exception as exc:  # noqa: BLE001 - a user's model: report its failure in one line
        raise UsageError(f"{what}: the torch model cannot run on inputs of shape {shapes}: {first_line(exc)}") \
            from None
    result = result if isinstance(result, (tuple, list)) else (result,)
    if not result or not all(isinstance(t, torch.Tensor) for t in result):
        raise UsageError(f"{what}: the torch model must return a tensor or a tuple of tensors, "
                         f"got {type(result).__name__}")
    return [t.detach().cpu().numpy() for t in result]


def export_module(module: Any, inputs: list, input_names: list, name_outputs: Callable[[int], list],
                  what: str) -> tuple[Path, str]:
    """Export ``module`` (eval mode) with export.py's settings, check ONNX Runtime against PyTorch on
    ``inputs`` (CHECK_ROWS rows each), and return the shipped file. ``name_outputs(n)`` names n outputs."""
    from .export import RELATIVE_TOLERANCE, relative_error, torch_to_onnx

    import torch

    modes = {part: part.training for part in module.modules()}  # restored as they were, part by part
    module.eval()
    try:
        expected = _torch_outputs(module, inputs, what)
        names = name_outputs(len(expected))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            torch_to_onnx(module, tuple(torch.from_numpy(x[:2]) for x in inputs), path, input_names, names,
                          f"the torch model of {what}")
            blob = path.read_bytes()
    finally:
        for part, training in modes.items():
            part.training = training
    path, sha = write_onnx(blob)
    actual = open_model(path, what).run(names, dict(zip(input_names, inputs)))
    error = relative_error([a.astype(np.float64) for a in actual], [e.astype(np.float64) for e in expected])
    if not error < RELATIVE_TOLERANCE:
        path.unlink(missing_ok=True)
        raise UsageError(f"{what}: the ONNX export of the torch model disagrees with PyTorch on {len(inputs[0])} "
                         f"rows (max relative error {error:.2e}, tolerance {RELATIVE_TOLERANCE:g}); export it "
                         f"yourself and pass the ONNX file")
    return path, sha


# --------------------------------------------------------------------------- callables travel by value

def _installed(module: Any) -> bool:
    """The standard library and installed packages: executors import those themselves."""
    top = module.__name__.partition(".")[0]
    if top in sys.stdlib_module_names or top in ("sql_dl", "pyspark"):
        return True
    file = getattr(module, "__file__", None)
    if file is None:
        return True  # built into the interpreter
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    return any(Path(file).resolve().is_relative_to(Path(root).resolve()) for root in roots)


def ship_by_value(function: Callable) -> None:
    """Executors cannot import a caller's own module (a notebook's, a script's, a test file's), so cloudpickle
    sends that module's code by value, as hooks.py does for decoder hooks; ``__main__`` already travels so."""
    from pyspark import cloudpickle

    module = sys.modules.get(getattr(function, "__module__", None) or "")
    if module is not None and module.__name__ != "__main__" and not _installed(module):
        cloudpickle.register_pickle_by_value(module)


def positive_shape(value: Any, what: str, label: str) -> tuple[int, ...]:
    """A shape of positive ints (no batch dimension), or one line naming the bad value."""
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value):
        return tuple(int(v) for v in value)
    raise UsageError(f"{what}: {label} must be a list of positive integers, got {value!r}")
