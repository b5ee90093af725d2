"""Where a Python API model comes from: a ``torch.nn.Module``, an ONNX file path or bytes, or a catalog entry.

Every kind ends as an ONNX file on the driver, shipped to executors by content hash like catalog models
(:func:`sql_dl.registry.ship_file`), so executors need only the model runtime. A Module is exported here with
export.py's settings and compared with PyTorch before anything runs: an export can run and answer wrongly.
Files made here are written to the driver's staging folder under the very name executors receive them by
(``sql-dl-<sha256>.onnx``), so the same model passed twice is written and shipped once.
"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import registry
from ..catalog import IDENTIFIER
from ..errors import CatalogError, ModelUnavailableError, UsageError, first_line
from ..executor import backends, runtime
from ..executor.backends import LoadedModel
from ..executor.udfs import Task
from ..specs import ModelSpec

DEFAULT_CATALOG = "models.yaml"  # registered on first use when a session registered none
CHECK_ROWS = 5  # the export traces 2 rows; verification runs 5, so a batch dimension fixed by mistake shows


# --------------------------------------------------------------------------- arguments every register_* takes

def model_options(batch_size: Any, device: Any, what: str) -> dict:
    """The batch_size and device a caller gave, checked."""
    options = {}
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise UsageError(f"{what}: batch_size must be a positive integer, got {batch_size!r}")
        options["batch_size"] = batch_size
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"{what}: device must be auto, cpu or cuda, got {device!r}")
        options["device"] = device
    return options


def check_function_name(spark: Any, name: Any, what: str) -> None:
    """A SQL identifier that does not shadow one of Spark's built-in functions."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise UsageError(f"{what}: the function name must be a SQL identifier (letters, digits, _)")
    if registry.is_builtin(spark, name):
        raise UsageError(f"{what}: '{name}' clashes with Spark's built-in function of that name; choose another")



def is_remote(spark: Any) -> bool:
    """A Spark Connect session (no SparkContext on this side: nothing can be shipped from here)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def require_classic(spark: Any, what: str) -> None:
    if is_remote(spark):
        raise UsageError(f"{what} needs a classic Spark session (it ships the model to executors from this "
                         "process); over Spark Connect, add the model to the server's catalog (`sql-dl serve "
                         "--connect --catalog ...`): its functions are in every Connect session")


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


def open_model(path: Path, what: str) -> LoadedModel:
    try:
        return backends.get().open(str(path))
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types for bad files
        raise UsageError(f"{what}: {path.name} is not a loadable ONNX model: "
                         f"{first_line(exc, typed=True)}") from None


# --------------------------------------------------------------------------- torch modules

def is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")  # a Module exists only once torch is imported: never import it here
    return torch is not None and isinstance(model, torch.nn.Module)


def export_module(module: Any, inputs: list, input_names: list, name_outputs: Callable[[int], list],
                  what: str) -> tuple[Path, str]:
    """Export ``module`` with the build settings, check the runtime against PyTorch on ``inputs``
    (CHECK_ROWS rows each), and return the shipped file. ``name_outputs(n)`` names n outputs."""
    from ..build.export import RELATIVE_TOLERANCE, relative_error
    from ..build.user_module import export_user_module

    blob, names, expected = export_user_module(module, inputs, input_names, name_outputs, what)
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
