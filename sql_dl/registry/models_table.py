"""The models table: one row per version of every catalog entry, as SQL sees it (``sql_dl_models``).

The rows are made on the driver from the catalog and each model's inspection, and travel as one
``SELECT ... FROM VALUES`` query: the ``sql_dl_models()`` table function parses it in every session and
``default.sql_dl_models`` is a view over the same text, so BI tools list and browse it like any table.
"""
from __future__ import annotations

import json

from ..executor.outputs import load_labels
from ..specs import ModelSpec
from .inspect import ModelInfo

# (column, SQL type, what it says): docs/sql.md lists these
COLUMNS = (
    ("name", "STRING", "the catalog entry"),
    ("version", "STRING", "the version ('1' for an entry without versions:)"),
    ("aliases", "ARRAY<STRING>", "the aliases naming this version (default, champion, ...)"),
    ("is_default", "BOOLEAN", "whether the entry's own functions (predict_NAME, ...) run this version"),
    ("functions", "ARRAY<STRING>", "the entry's SQL functions that run this version"),
    ("input", "STRING", "size, layout, dtype and preprocessing in words"),
    ("label_count", "INT", "how many labels the scores have"),
    ("feature_size", "INT", "the length of featurize's vector, NULL without features"),
    ("precision", "STRING", "fp32, int8 or fp16: what the ONNX file holds"),
    ("device", "STRING", "auto, cpu or cuda"),
    ("sha256", "STRING", "the ONNX file's sha256 (the catalog's when the file is absent)"),
    ("source", "STRING", "how the file was made (JSON: exporter, arch, weights)"),
    ("random_weights", "BOOLEAN", "exported with random weights: its answers mean nothing"),
    ("available", "BOOLEAN", "whether the ONNX file is there and passed the checks"),
    ("unavailable_reason", "STRING", "why not, when not available"),
    ("onnx", "STRING", "the ONNX file's path on the driver"),
)


def model_row(spec: ModelSpec, info: ModelInfo | None, missing: str | None) -> dict:
    is_default = "default" in spec.aliases
    return {
        "name": spec.name, "version": spec.version, "aliases": list(spec.aliases), "is_default": is_default,
        "functions": sorted(spec.functions.values()) if is_default else [], "input": spec.input.describe(),
        "label_count": info.classes if info else len(load_labels(spec.labels)),
        "feature_size": info.feature_size if info else None, "precision": spec.precision, "device": spec.device,
        "sha256": info.sha256 if info else spec.sha256, "source": json.dumps(spec.source, sort_keys=True),
        "random_weights": bool(info and info.random_weights) or spec.source.get("weights") == "random",
        "available": info is not None, "unavailable_reason": missing, "onnx": str(spec.onnx),
    }


def _literal(value: object, sql_type: str) -> str:
    if value is None:
        return f"CAST(NULL AS {sql_type})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"CAST({value} AS {sql_type})"
    if isinstance(value, list):
        return f"CAST(array({', '.join(_literal(v, 'STRING') for v in value)}) AS {sql_type})"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def table_sql(rows: list[dict]) -> str:
    """The rows as one query with typed columns (a view's text and the table function's plan)."""
    values = ", ".join("(" + ", ".join(_literal(row[name], sql_type) for name, sql_type, _ in COLUMNS) + ")"
                       for row in rows)
    return f"SELECT * FROM VALUES {values} AS models({', '.join(name for name, _, _ in COLUMNS)})"
