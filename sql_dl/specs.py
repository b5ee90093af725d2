"""The specs every stage passes along: frozen, picklable records of what a catalog entry says.

The catalog (:mod:`sql_dl.catalog`) makes them from YAML, the Python API from arguments; the registry
checks them against the model file, and executors run what they describe. They hold data only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import CatalogError


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
    """Which ONNX output plays each role a function kind reads (``scores``, ``features``, ...)."""

    names: tuple  # ((role, ONNX output name), ...): a mapping kept hashable, so specs stay frozen and picklable
    scores_are: str = "logits"  # "logits" (softmax applied) | "probabilities"

    @classmethod
    def of(cls, scores_are: str = "logits", **names: str | None) -> "OutputSpec":
        return cls(tuple(sorted((role, name) for role, name in names.items() if name is not None)), scores_are)

    def get(self, role: str) -> str | None:
        """The ONNX output name for ``role``, or None when the model has none."""
        return dict(self.names).get(role)

    def onnx_names(self) -> list[str]:
        """Every ONNX output the entry reads, each once: what one model run computes."""
        return list(dict.fromkeys(name for _, name in self.names))

    def as_dict(self) -> dict:
        return {**dict(self.names), "scores_are": self.scores_are}


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
    precision: str  # "fp32" | "bf16" | "int8" | "fp16": what the model computes in (bf16: fp32 file, OpenVINO)
    on_error: str  # "null" | "fail": what a row whose image cannot be decoded does
    functions: dict = field(compare=False)  # kind (predict|topk|featurize) -> SQL function name
    catalog_file: str
    version: str = "1"  # which of the entry's versions this spec is (an entry without versions: has "1")
    aliases: tuple = ()  # the entry's aliases naming this version (default, champion, ...)
    backend: str = "onnxruntime"  # "onnxruntime" | "openvino" | "auto": the runtime executors open it with

    @property
    def available(self) -> bool:
        return self.onnx.is_file()

    def where(self) -> str:
        return f"{self.catalog_file}: entry '{self.name}'"

    @property
    def ref(self) -> str:
        """NAME@VERSION: how SQL names exactly this version."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Catalog:
    path: Path
    models: dict  # entry name -> the ModelSpec of its default version
    versions: dict = field(default_factory=dict)  # entry name -> {version -> ModelSpec}, in catalog order
    aliases: dict = field(default_factory=dict)  # entry name -> {alias -> version}

    def get(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise CatalogError(f"{self.path.name}: no model named {name!r}. Available: "
                               f"{', '.join(sorted(self.models))}")
        return self.models[name]

    def __iter__(self):
        """The default version of every entry: what the per-entry functions run."""
        return iter(self.models.values())

    def all_versions(self) -> list:
        """Every version of every entry, entries in catalog order."""
        return [spec for name in self.models for spec in self.versions.get(name, {name: self.models[name]}).values()]

    def resolve(self, ref: str) -> ModelSpec:
        """'NAME', 'NAME@ALIAS' or 'NAME@VERSION' -> that version's spec; one line listing what exists if none."""
        name, _, tag = ref.strip().partition("@")
        spec = self.get(name.lower())
        versions, aliases = self.versions.get(spec.name, {spec.version: spec}), self.aliases.get(spec.name, {})
        if not tag:
            return spec
        version = aliases.get(tag, tag)
        if version not in versions:
            raise CatalogError(f"{self.path.name}: model '{spec.name}' has no version or alias {tag!r}; versions: "
                               f"{', '.join(versions)}; aliases: {', '.join(f'{a}={v}' for a, v in aliases.items())}")
        return versions[version]
