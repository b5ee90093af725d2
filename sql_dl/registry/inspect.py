"""Driver side: open an entry's model once and check it against the entry, before any task runs.

The file's sha256 (the catalog's, or the one the exporter recorded beside the file), the input's rank and
size, the output names, the label count: each mismatch is one :class:`CatalogError` line naming the
entry. The model is opened through :mod:`sql_dl.executor.backends`, as executors open it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import CatalogError, first_line
from ..executor import backends, runtime
from ..executor.backends import TensorInfo
from ..executor.kinds import ROLES
from ..executor.outputs import load_labels
from ..specs import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    sha256: str
    classes: int | None
    feature_size: int | None
    random_weights: bool = False  # exported with --weights random: a test model whose answers mean nothing
    backend: str | None = None  # the runtime executors are told to use (the session's spark.sqldl.backend or the entry's)


def export_record(spec: ModelSpec) -> dict:
    """What `sql-dl models export` recorded beside the file (``<file>.onnx.json``), or {}."""
    path = Path(str(spec.onnx) + ".json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        raise CatalogError(f"{spec.where()}: {path.name} is not valid JSON (export the model again)") from None


def expected_sha256(spec: ModelSpec) -> str | None:
    """The catalog's sha256, else the one our exporter recorded beside the file."""
    return spec.sha256 or export_record(spec).get("sha256")


def missing_message(spec: ModelSpec) -> str:
    how = (f"`sql-dl models export {spec.name} --weights pretrained` (downloads) or --weights PATH (a local "
           ".pth/.safetensors)") if spec.source.get("exporter") else "an ONNX file"
    who = spec.name if spec.version == "1" else spec.ref
    return (f"model '{who}' is not available: {spec.onnx} does not exist; supply it with {how}, "
            f"or copy an ONNX file to that path")


def missing_warning(names: list[str], catalog: Path) -> str:
    """The one line that names every entry without its model file."""
    return (f"{len(names)} models have no ONNX file yet: {', '.join(names)} (onnx paths are relative to the "
            f"catalog's folder, {catalog.parent}); their functions fail until you run `sql-dl models export NAME` "
            "(`sql-dl models list` shows them)")


def open_checked(path: Path, where: str) -> backends.LoadedModel:
    """The model at ``path`` opened on the driver's CPU, or one CatalogError line saying why not."""
    try:
        return backends.get().open(str(path))
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own exception types for bad files
        raise CatalogError(f"{where}: onnx {path.name} cannot be loaded: {first_line(exc)}") from None


def inspect_model(spec: ModelSpec) -> ModelInfo:
    """Open the model once on the driver and check it against the entry; one-line CatalogError otherwise."""
    actual = runtime.file_sha256(str(spec.onnx))
    expected = expected_sha256(spec)
    if expected and actual != expected:
        raise CatalogError(f"{spec.where()}: sha256 of {spec.onnx.name} is {actual[:12]}..., the catalog expects "
                           f"{expected[:12]}... (file changed or corrupt: export it again or fix sha256)")
    model = open_checked(spec.onnx, spec.where())
    _check_input(spec, model.inputs)
    outputs = {o.name: o.shape for o in model.outputs}
    sizes = {}
    for role in ROLES:
        name = spec.outputs.get(role)
        if name is None:
            continue
        if name not in outputs:
            raise CatalogError(f"{spec.where()}: outputs.{role} {name!r} is not an output of the model "
                               f"(it has: {', '.join(outputs)})")
        last = outputs[name][-1] if outputs[name] else None
        sizes[role] = last if isinstance(last, int) else None  # a symbolic dimension ('N') is not a size
    if sizes.get("scores") is not None:
        labels = len(load_labels(spec.labels))
        if labels != sizes["scores"]:
            raise CatalogError(f"{spec.where()}: labels has {labels} names but output {spec.outputs.get('scores')!r}"
                               f" has {sizes['scores']} classes")
    random_weights = export_record(spec).get("weights") == "random"
    return ModelInfo(actual, sizes.get("scores"), sizes.get("features"), random_weights)


def random_weights_warning(spec: ModelSpec) -> str:
    return (f"model '{spec.name}' has RANDOM weights (exported with --weights random): its answers mean nothing; "
            f"export it with `sql-dl models export {spec.name}` (pretrained) or --weights PATH")


def _check_input(spec: ModelSpec, inputs: list[TensorInfo]) -> None:
    if len(inputs) != 1:
        raise CatalogError(f"{spec.where()}: image models take one input; {spec.onnx.name} has {len(inputs)} "
                           f"({', '.join(i.name for i in inputs)})")
    shape = list(inputs[0].shape)
    h, w = spec.input.size
    expected = [None, 3, h, w] if spec.input.layout == "nchw" else [None, h, w, 3]
    if len(shape) != 4:
        raise CatalogError(f"{spec.where()}: the model's input {inputs[0].name!r} has rank {len(shape)} "
                           f"(shape {shape}); input.layout {spec.input.layout} needs rank 4 {expected}")
    for got, want in zip(shape[1:], expected[1:]):
        if isinstance(got, int) and got != want:
            raise CatalogError(f"{spec.where()}: the model's input shape is {shape}, but input.size/layout "
                               f"say {expected}")
