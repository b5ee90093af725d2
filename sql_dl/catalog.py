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
from pathlib import Path
from typing import Any

import yaml

from .errors import CatalogError
from .executor.kinds import DEFAULT_KINDS, KINDS, ROLES
from .specs import Catalog, InputSpec, ModelSpec, OutputSpec

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
ON_ERROR = ("null", "fail")  # a row whose image cannot be decoded: NULL (the query goes on) or fail the query
# Rows per ONNX Runtime call when an entry names none. On CPUs 8 is never slower than 32 (bench/NOTES.md:
# EfficientNet-Lite0 0 to 1.5 core-ms cheaper per image across repeated runs; ResNet50 equal) and halves
# ONNX Runtime's arena (190 vs 450 MiB for EfficientNet-Lite0); GPUs want large batches to fill the device.
DEFAULT_BATCH = {"cpu": 8, "auto": 8, "cuda": 32}
DEFAULT_FIELDS = ("batch_size", "device", "on_error", "backend")  # what `defaults:` may set for every entry


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
        raise CatalogError(f"{path}: catalog file not found (a relative catalog path is taken from the current "
                           f"directory, {Path.cwd()}: pass --catalog or catalog= with the file's path)") from None
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
    roles = " and/or ".join(repr(role) for role in ROLES)
    if not isinstance(raw, dict):
        raise e.fail("outputs", f"a mapping with {roles}", raw)
    e.check_known(raw, (*ROLES, "scores_are"), "outputs.")
    names = {}
    for role in ROLES:
        value = raw.get(role)
        if value is not None and (not isinstance(value, str) or not value):
            raise e.fail("outputs." + role, "the name of an ONNX output", value)
        names[role] = value
    if not any(names.values()):
        raise CatalogError(f"{e.where}: outputs must name at least one of {roles.replace('and/', '')} "
                           "(the ONNX output names, e.g. scores: logits)")
    scores_are = e.choice(raw, "scores_are", ("logits", "probabilities"), "logits", "outputs.")
    return OutputSpec.of(scores_are, **names)


def entry_kinds() -> tuple[str, ...]:
    """The keys a functions: mapping may use: every per-entry kind of the table, read when a catalog loads."""
    return tuple(name for name, kind in KINDS.items() if kind.per_entry)


def _functions(e: _Entry, name: str, outputs: OutputSpec) -> dict:
    """kind -> SQL name: the default kinds whose outputs the entry has, plus any named in functions:."""
    kinds = entry_kinds()
    raw = e.raw.get("functions", {})
    if not isinstance(raw, dict):
        raise e.fail("functions", f"a mapping of {'/'.join(kinds)} to SQL names", raw)
    e.check_known(raw, kinds, "functions.")
    functions = {}
    for kind_name in kinds:
        kind = KINDS[kind_name]
        has_outputs = all(outputs.get(role) for role in kind.needs)
        default = kind.sql_name.format(model=name) if has_outputs and kind_name in DEFAULT_KINDS else None
        value = raw.get(kind_name, default)
        if value is None or value is False:
            continue
        if not isinstance(value, str) or not IDENTIFIER.match(value):
            raise e.fail("functions." + kind_name, "a SQL identifier (letters, digits, _) or null", value)
        if not has_outputs:
            missing = next(role for role in kind.needs if not outputs.get(role))
            raise CatalogError(f"{e.where}: functions.{kind_name} needs outputs.{missing} to name an ONNX output")
        functions[kind_name] = value.lower()  # Spark function names are case-insensitive
    return functions


ENTRY_FIELDS = ("onnx", "sha256", "source", "input", "labels", "outputs", "batch_size", "device", "precision",
                "on_error", "functions", "versions", "aliases", "backend")
# What one version may set for itself; input: is merged over the entry's (so a version names only what differs)
VERSION_FIELDS = ("onnx", "sha256", "source", "input", "labels", "outputs", "precision")
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEFAULT_ALIAS = "default"  # the version predict_NAME and friends run
# fp32, int8, fp16: what the ONNX file holds; bf16: an fp32 file that OpenVINO computes in bf16
PRECISIONS = ("fp32", "bf16", "int8", "fp16")
BACKEND_CHOICES = ("onnxruntime", "openvino", "auto")  # sql_dl.executor.backends.CHOICES, without importing it


def _model_spec(name: str, raw: dict, file_name: str, base: Path, version: str = "1",
                aliases: tuple = (), versioned: bool = False) -> ModelSpec:
    """One version of an entry; ``raw`` is the entry's fields with the version's merged in."""
    where = f"{file_name}: entry '{name}'" + (f" version '{version}'" if versioned else "")
    e = _Entry(where, raw, base)
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
        functions=_functions(e, name, outputs), catalog_file=file_name, version=version, aliases=aliases,
        backend=_backend(e, device),
    )


def _entry_versions(name: Any, raw: Any, file_name: str, base: Path, defaults: dict) -> tuple[dict, dict]:
    """An entry's versions ({version: ModelSpec}) and aliases ({alias: version}); an entry without
    ``versions:`` is one version named "1" that ``default`` names."""
    where = f"{file_name}: entry '{name}'"
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise CatalogError(f"{where}: the entry name must be a SQL identifier (letters, digits, _)")
    e = _Entry(where, {**defaults, **raw} if isinstance(raw, dict) else raw, base)
    e.check_known(e.raw, ENTRY_FIELDS)
    shared = {k: v for k, v in e.raw.items() if k not in ("versions", "aliases")}
    if "versions" not in e.raw:
        if "aliases" in e.raw:
            raise CatalogError(f"{where}: aliases need versions: (a mapping of version name -> onnx, sha256, ...)")
        return {"1": _model_spec(name, shared, file_name, base, "1", (DEFAULT_ALIAS,))}, {DEFAULT_ALIAS: "1"}
    raw_versions = e.raw["versions"]
    if not isinstance(raw_versions, dict) or not raw_versions:
        raise e.fail("versions", "a non-empty mapping of version name -> fields (onnx, sha256, ...)", raw_versions)
    for key in ("onnx", "sha256"):
        if key in shared:
            raise CatalogError(f"{where}: {key} belongs to each version when the entry has versions: "
                               f"(move it under versions.NAME)")
    for version in raw_versions:
        if not VERSION_NAME.match(str(version)):
            raise e.fail(f"versions.{version}", "named with letters, digits, '.', '_' or '-'", version)
    aliases = _aliases(e, [str(v) for v in raw_versions])
    versions = {}
    for version, fields in raw_versions.items():
        version = str(version)
        if not isinstance(fields, dict):
            raise e.fail(f"versions.{version}", f"a mapping of {', '.join(VERSION_FIELDS)}", fields)
        e.check_known(fields, VERSION_FIELDS, f"versions.{version}.")
        merged = {**shared, **fields}
        if isinstance(shared.get("input"), dict) and isinstance(fields.get("input"), dict):
            merged["input"] = {**shared["input"], **fields["input"]}
        named = tuple(alias for alias, target in aliases.items() if target == version)
        versions[version] = _model_spec(name, merged, file_name, base, version, named, versioned=True)
    _check_distinct_files(where, versions)
    return versions, aliases


def _aliases(e: _Entry, versions: list[str]) -> dict:
    raw = e.raw.get("aliases", {DEFAULT_ALIAS: versions[0]} if len(versions) == 1 else None)
    if raw is None:
        raise CatalogError(f"{e.where}: aliases.{DEFAULT_ALIAS} is required with several versions (the version "
                           f"the entry's functions run), e.g. aliases: {{{DEFAULT_ALIAS}: '{versions[-1]}'}}")
    if not isinstance(raw, dict):
        raise e.fail("aliases", "a mapping of alias -> version", raw)
    aliases = {}
    for alias, version in raw.items():
        if not isinstance(alias, str) or not IDENTIFIER.match(alias):
            raise e.fail("aliases", "keyed by identifiers (letters, digits, _)", alias)
        if alias in versions:
            raise CatalogError(f"{e.where}: alias '{alias}' is also a version name: NAME@{alias} would be ambiguous")
        if str(version) not in versions:
            raise CatalogError(f"{e.where}: aliases.{alias} names version {version!r}, which is not among "
                               f"versions: {', '.join(versions)}")
        aliases[alias] = str(version)
    if DEFAULT_ALIAS not in aliases:
        raise CatalogError(f"{e.where}: aliases.{DEFAULT_ALIAS} is required (the version the entry's functions run)")
    return aliases


def _check_distinct_files(where: str, versions: dict) -> None:
    seen: dict = {}
    for version, spec in versions.items():
        if spec.onnx in seen:
            raise CatalogError(f"{where}: versions '{seen[spec.onnx]}' and '{version}' name the same onnx file "
                               f"{spec.onnx}; each version is its own file")
        seen[spec.onnx] = version


def _precision(e: _Entry) -> str:
    precision = e.choice(e.raw, "precision", PRECISIONS, "fp32")
    if precision == "fp16" and e.raw.get("device") != "cuda":
        raise CatalogError(f"{e.where}: precision fp16 runs on GPUs only (CPU kernels for it are few and slow): "
                           "set device: cuda, or use precision int8 or fp32")
    if precision == "bf16" and (e.raw.get("backend", "onnxruntime") == "onnxruntime" or e.raw.get("device") == "cuda"):
        raise CatalogError(f"{e.where}: precision bf16 runs on OpenVINO's CPU plugin only: set backend: openvino "
                           "(or auto) and device: auto|cpu")
    return precision


def _backend(e: _Entry, device: str) -> str:
    backend = e.choice(e.raw, "backend", BACKEND_CHOICES, "onnxruntime")
    if backend == "openvino" and device == "cuda":
        raise CatalogError(f"{e.where}: backend openvino runs on the CPU: set device: auto|cpu, or backend: "
                           "onnxruntime for CUDA")
    return backend


def _check_unique_functions(models: dict, file_name: str) -> None:
    owner: dict = {kind.sql_name: "sql-dl itself" for kind in KINDS.values() if not kind.per_entry}
    for spec in models.values():
        for kind, fn in spec.functions.items():
            if fn in owner:
                raise CatalogError(f"{file_name}: entry '{spec.name}': functions.{kind} '{fn}' is already "
                                   f"registered by {owner[fn]}")
            owner[fn] = f"entry '{spec.name}'"


def _check_allowed(specs: list, allowed: list[Path]) -> None:
    """Model and label files must resolve (symlinks followed) inside one of the allowed directories."""
    for spec in specs:
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
    versions, aliases = {}, {}
    for entry, raw in data["models"].items():
        versions[entry], aliases[entry] = _entry_versions(entry, raw, name, path.parent, defaults)
    models = {entry: versions[entry][aliases[entry][DEFAULT_ALIAS]] for entry in versions}
    _check_unique_functions(models, name)
    catalog = Catalog(path=path, models=models, versions=versions, aliases=aliases)
    allowed = allowed_model_dirs() if allowed_dirs is None else allowed_dirs
    if allowed:
        _check_allowed(catalog.all_versions(), allowed)
    return catalog


__all__: list[str] = ["Catalog", "InputSpec", "ModelSpec", "OutputSpec", "load_catalog"]
