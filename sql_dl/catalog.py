"""Load and validate ``models.yaml`` into frozen, picklable model specs.

This is the first stage of the data path (catalog -> registry -> runtime ->
outputs). Everything that can be checked without Spark is checked here, and
every problem is a one-line :class:`CatalogError` naming the file, the entry and
the field, e.g. ``models.yaml: entry 'resnet50': input.size must be two positive
integers, got [224]``. The file is read with a safe YAML loader that also
rejects duplicate keys, so a catalog can never run code.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CatalogError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
FUNCTION_KINDS = ("predict", "topk", "featurize")
RESERVED_FUNCTIONS = {"sql_dl_error"}  # registered by sql-dl itself
ON_ERROR = ("null", "fail")  # a row whose image cannot be decoded: NULL (the query goes on) or fail the query
# Rows per ONNX Runtime call when an entry names none. On CPUs 8 is never slower than 32 (bench/NOTES.md:
# EfficientNet-Lite0 ~1.5 core-ms cheaper per image in one session, equal in the next; ResNet50 equal) and halves
# ONNX Runtime's arena (190 vs 450 MiB for EfficientNet-Lite0); GPUs want large batches to fill the device.
DEFAULT_BATCH = {"cpu": 8, "auto": 8, "cuda": 32}
DEFAULT_FIELDS = ("batch_size", "device", "on_error")  # what `defaults:` may set for every entry


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor; data, not code."""

    size: tuple[int, int]  # (height, width) fed to the model
    resize: int | None  # shorter side resized to this, keeping aspect; None = stretch to size
    crop: str  # "center" | "none"
    interpolation: str
    color: str  # channel order the model expects: "rgb" | "bgr"
    scale: float  # pixel values are multiplied by this first ...
    mean: tuple[float, float, float]  # ... then (x - mean) / std per channel
    std: tuple[float, float, float]
    layout: str  # "nchw" | "nhwc"
    dtype: str  # "float32" | "uint8" (uint8 feeds raw pixels, no normalisation)
    decoder: str | None = None  # "/abs/path/udfs/module.py:function", a hook that turns bytes into pixels

    def describe(self) -> str:
        """One line for docs, the CLI and DESCRIBE FUNCTION."""
        h, w = self.size
        resize = "stretch" if self.resize is None else f"shorter side {self.resize}"
        norm = "raw uint8" if self.dtype == "uint8" else (
            f"x*{self.scale:g}, mean {list(self.mean)}, std {list(self.std)}")
        return (f"{h}x{w} {self.color.upper()} {self.layout.upper()} {self.dtype}; resize {resize} "
                f"({self.interpolation}), crop {self.crop}; {norm}")


@dataclass(frozen=True)
class OutputSpec:
    """Which ONNX outputs hold class scores and pooled features."""

    scores: str | None
    scores_are: str  # "logits" (softmax applied) | "probabilities"
    features: str | None


@dataclass(frozen=True)
class ModelSpec:
    """One validated catalog entry."""

    name: str
    onnx: Path  # absolute
    sha256: str | None
    source: dict = field(compare=False)  # how the ONNX file is produced (exporter, arch, weights)
    input: InputSpec
    labels: str  # "imagenet" or an absolute path to a text file, one label per line
    outputs: OutputSpec
    batch_size: int
    device: str  # "auto" | "cpu" | "cuda"
    precision: str  # "fp32" | "int8" | "fp16": what the ONNX file holds (export converts to it)
    on_error: str  # "null" | "fail": what a row whose image cannot be decoded does
    functions: dict = field(compare=False)  # kind (predict|topk|featurize) -> SQL function name
    catalog_file: str

    @property
    def available(self) -> bool:
        return self.onnx.is_file()

    def where(self) -> str:
        return f"{self.catalog_file}: entry '{self.name}'"


@dataclass(frozen=True)
class Catalog:
    path: Path
    models: dict

    def get(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise CatalogError(f"{self.path.name}: no model named {name!r}. Available: {sorted(self.models)}")
        return self.models[name]

    def __iter__(self):
        return iter(self.models.values())


# --------------------------------------------------------------------------- YAML

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise CatalogError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except CatalogError as exc:
        raise CatalogError(f"{path.name}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path.name}: {where}not valid YAML: {problem}") from None


# --------------------------------------------------------------------------- fields

class _Entry:
    """Reads one entry's fields, turning each problem into a one-line error."""

    def __init__(self, where: str, raw: Any, base: Path):
        self.where, self.base = where, base
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: must be a mapping of fields, got {raw!r}")
        self.raw = raw

    def fail(self, field_name: str, expected: str, value: Any) -> CatalogError:
        return CatalogError(f"{self.where}: {field_name} must be {expected}, got {value!r}")

    def check_known(self, mapping: dict, known: tuple, prefix: str = "") -> None:
        for key in mapping:
            if key not in known:
                raise CatalogError(f"{self.where}: unknown field '{prefix}{key}' (known: {', '.join(known)})")

    def choice(self, mapping: dict, key: str, options: tuple, default: str, prefix: str = "") -> str:
        value = mapping.get(key, default)
        if value not in options:
            raise self.fail(prefix + key, "one of " + "|".join(options), value)
        return value

    def positive_int(self, mapping: dict, key: str, default: int | None, prefix: str = "") -> int:
        value = mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(prefix + key, "a positive integer", value)
        return value

    def triple(self, mapping: dict, key: str, default: tuple, positive: bool = False) -> tuple:
        value = mapping.get(key, list(default))
        ok = (isinstance(value, list) and len(value) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
              and (not positive or all(v > 0 for v in value)))
        if not ok:
            kind = "positive numbers" if positive else "numbers"
            raise self.fail("input." + key, f"three {kind} (one per channel)", value)
        return tuple(float(v) for v in value)

    def path(self, key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "a file path (relative to the catalog)", value)
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.base / path).resolve()


INPUT_FIELDS = ("size", "resize", "crop", "interpolation", "color", "scale", "mean", "std", "layout", "dtype",
                "decoder")
HOOK = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_][A-Za-z0-9_]*)$")


def _decoder(e: _Entry, raw: dict) -> str | None:
    """A hook is named as MODULE:FUNCTION and must live in udfs/MODULE.py beside the catalog: no other code."""
    value = raw.get("decoder")
    if value is None:
        return None
    match = HOOK.match(value) if isinstance(value, str) else None
    if not match:
        raise e.fail("input.decoder", "MODULE:FUNCTION naming a function in udfs/MODULE.py", value)
    path = (e.base / "udfs" / f"{match.group(1)}.py").resolve()
    if not path.is_file():
        raise e.fail("input.decoder", f"a function in an existing file; {path} does not exist", value)
    return f"{path}:{match.group(2)}"


def _input_spec(e: _Entry) -> InputSpec:
    raw = e.raw.get("input")
    if not isinstance(raw, dict):
        raise e.fail("input", "a mapping with at least 'size'", raw)
    e.check_known(raw, INPUT_FIELDS, "input.")
    size = raw.get("size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise e.fail("input.size", "two positive integers [height, width]", size)
    resize = raw.get("resize", min(size))
    if resize == "stretch":
        resize = None
    elif isinstance(resize, bool) or not isinstance(resize, int) or resize < min(size):
        raise e.fail("input.resize", f"'stretch' or an integer >= the shorter input side {min(size)}", resize)
    dtype = e.choice(raw, "dtype", ("float32", "uint8"), "float32", "input.")
    scale = raw.get("scale", 1 / 255)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise e.fail("input.scale", "a positive number", scale)
    if dtype == "uint8" and any(k in raw for k in ("scale", "mean", "std")):
        raise CatalogError(f"{e.where}: input.scale/mean/std do not apply when input.dtype is uint8 "
                           "(raw pixels are fed): remove them or use dtype float32")
    return InputSpec(
        size=(size[0], size[1]),
        resize=resize,
        crop=e.choice(raw, "crop", ("center", "none"), "center", "input."),
        interpolation=e.choice(raw, "interpolation", INTERPOLATIONS, "bilinear", "input."),
        color=e.choice(raw, "color", ("rgb", "bgr"), "rgb", "input."),
        scale=float(scale),
        mean=e.triple(raw, "mean", (0.0, 0.0, 0.0)),
        std=e.triple(raw, "std", (1.0, 1.0, 1.0), positive=True),
        layout=e.choice(raw, "layout", ("nchw", "nhwc"), "nchw", "input."),
        dtype=dtype,
        decoder=_decoder(e, raw),
    )


def input_spec(raw: Any, where: str, base: Path | None = None) -> InputSpec:
    """An ``input:`` mapping as the catalog reads it, for the Python API's declarative preprocessors."""
    return _input_spec(_Entry(where, {"input": raw}, base or Path.cwd()))


def _output_spec(e: _Entry) -> OutputSpec:
    raw = e.raw.get("outputs", {})
    if not isinstance(raw, dict):
        raise e.fail("outputs", "a mapping with 'scores' and/or 'features'", raw)
    e.check_known(raw, ("scores", "scores_are", "features"), "outputs.")
    names = {}
    for key in ("scores", "features"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise e.fail("outputs." + key, "the name of an ONNX output", value)
        names[key] = value
    if names["scores"] is None and names["features"] is None:
        raise CatalogError(f"{e.where}: outputs must name at least one of 'scores' or 'features' "
                           "(the ONNX output names, e.g. scores: logits)")
    return OutputSpec(names["scores"], e.choice(raw, "scores_are", ("logits", "probabilities"), "logits",
                                                 "outputs."), names["features"])


def _functions(e: _Entry, name: str, outputs: OutputSpec) -> dict:
    raw = e.raw.get("functions", {})
    if not isinstance(raw, dict):
        raise e.fail("functions", "a mapping of predict/topk/featurize to SQL names", raw)
    e.check_known(raw, FUNCTION_KINDS, "functions.")
    defaults = {"predict": f"predict_{name}", "topk": f"predict_{name}_topk", "featurize": f"featurize_{name}"}
    needs = {"predict": outputs.scores, "topk": outputs.scores, "featurize": outputs.features}
    functions = {}
    for kind in FUNCTION_KINDS:
        value = raw.get(kind, defaults[kind] if needs[kind] else None)
        if value is None or value is False:
            continue
        if not isinstance(value, str) or not IDENTIFIER.match(value):
            raise e.fail("functions." + kind, "a SQL identifier (letters, digits, _) or null", value)
        if not needs[kind]:
            output = "features" if kind == "featurize" else "scores"
            raise CatalogError(f"{e.where}: functions.{kind} needs outputs.{output} to name an ONNX output")
        functions[kind] = value.lower()  # Spark function names are case-insensitive
    return functions


ENTRY_FIELDS = ("onnx", "sha256", "source", "input", "labels", "outputs", "batch_size", "device", "precision",
                "on_error", "functions")


def _model_spec(name: Any, raw: Any, file_name: str, base: Path, defaults: dict) -> ModelSpec:
    where = f"{file_name}: entry '{name}'"
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise CatalogError(f"{where}: the entry name must be a SQL identifier (letters, digits, _)")
    e = _Entry(where, {**defaults, **raw} if isinstance(raw, dict) else raw, base)
    e.check_known(e.raw, ENTRY_FIELDS)
    if "onnx" not in e.raw:
        raise CatalogError(f"{where}: onnx is required (the path of the model's ONNX file)")
    sha = e.raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256.match(sha)):
        raise e.fail("sha256", "64 lowercase hex digits, quoted", sha)
    source = e.raw.get("source", {})
    if not isinstance(source, dict):
        raise e.fail("source", "a mapping (exporter, arch, weights)", source)
    labels = e.raw.get("labels", "imagenet")
    if labels != "imagenet":
        labels_path = e.path("labels", labels)
        if not labels_path.is_file():
            raise e.fail("labels", "'imagenet' or an existing text file, one label per line", labels)
        labels = str(labels_path)
    outputs = _output_spec(e)
    device = e.choice(e.raw, "device", ("auto", "cpu", "cuda"), "auto")
    return ModelSpec(
        name=name, onnx=e.path("onnx", e.raw["onnx"]), sha256=sha, source=source,
        input=_input_spec(e), labels=labels, outputs=outputs,
        batch_size=e.positive_int(e.raw, "batch_size", DEFAULT_BATCH[device]),
        device=device,
        precision=_precision(e),
        on_error=e.choice(e.raw, "on_error", ON_ERROR, "null"),
        functions=_functions(e, name, outputs), catalog_file=file_name,
    )


def _precision(e: _Entry) -> str:
    precision = e.choice(e.raw, "precision", ("fp32", "int8", "fp16"), "fp32")
    if precision == "fp16" and e.raw.get("device") != "cuda":
        raise CatalogError(f"{e.where}: precision fp16 runs on GPUs only (CPU kernels for it are few and slow): "
                           "set device: cuda, or use precision int8 or fp32")
    return precision


def _check_unique_functions(models: dict, file_name: str) -> None:
    owner: dict = {name: "sql-dl itself" for name in RESERVED_FUNCTIONS}
    for spec in models.values():
        for kind, fn in spec.functions.items():
            if fn in owner:
                raise CatalogError(f"{file_name}: entry '{spec.name}': functions.{kind} '{fn}' is already "
                                   f"registered by {owner[fn]}")
            owner[fn] = f"entry '{spec.name}'"


def _check_allowed(models: dict, allowed: list[Path]) -> None:
    """Model and label files must resolve (symlinks followed) inside one of the allowed directories."""
    for spec in models.values():
        files = [("onnx", spec.onnx)] + ([("labels", Path(spec.labels))] if spec.labels != "imagenet" else [])
        for field_name, path in files:
            if not any(path.is_relative_to(folder) for folder in allowed):
                raise CatalogError(f"{spec.where()}: {field_name} {path} is outside the allowed model "
                                   f"directories ({', '.join(map(str, allowed))}; SQL_DL_MODEL_DIRS / "
                                   "spark.sqldl.modelDirs)")


def allowed_model_dirs(setting: str | None = None) -> list[Path]:
    """The allowed model directories: ``setting`` (comma- or os.pathsep-separated), else SQL_DL_MODEL_DIRS;
    empty means no restriction."""
    value = setting if setting is not None else os.environ.get("SQL_DL_MODEL_DIRS", "")
    parts = [p.strip() for p in re.split(rf"[,{re.escape(os.pathsep)}]", value) if p.strip()]
    return [Path(p).expanduser().resolve() for p in parts]


def load_catalog(path: str | Path = "models.yaml", allowed_dirs: list[Path] | None = None) -> Catalog:
    """Read and validate a catalog file; raise :class:`CatalogError` with one line on any problem.

    ``allowed_dirs`` (default: :func:`allowed_model_dirs`) confines every model and label file to those
    directories, so a catalog cannot point the server at arbitrary files."""
    path = Path(path).expanduser().resolve()
    data = _read_yaml(path)
    name = path.name
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise CatalogError(f"{name}: the top level must be a mapping with a non-empty 'models:' mapping "
                           "of entry name -> fields")
    unknown = set(data) - {"version", "defaults", "models"}
    if unknown:
        raise CatalogError(f"{name}: unknown top-level key(s) {sorted(unknown)} (known: version, defaults, models)")
    if data.get("version", 1) != 1:
        raise CatalogError(f"{name}: version must be 1, got {data['version']!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(DEFAULT_FIELDS):
        raise CatalogError(f"{name}: defaults may set only {', '.join(DEFAULT_FIELDS)}, got {defaults!r}")
    models = {n: _model_spec(n, raw, name, path.parent, defaults) for n, raw in data["models"].items()}
    _check_unique_functions(models, name)
    allowed = allowed_model_dirs() if allowed_dirs is None else allowed_dirs
    if allowed:
        _check_allowed(models, allowed)
    return Catalog(path=path, models=models)



__all__: list[str] = ["Catalog", "InputSpec", "ModelSpec", "OutputSpec", "load_catalog"]
