"""sql-dl: deep-learning models as Spark SQL functions.

    from sql_dl import build_session
    spark = build_session(catalog="models.yaml")
    spark.sql("SELECT path, predict_efficientnet_lite0(content) FROM binaryFile.`photos/*.jpg`").show()

The names below are imported on first use: executors, the catalog preparer (``python -m sql_dl.extension``,
run again on every catalog change) and the CLI import only what they need (pyspark.ml alone costs ~0.6 s).
"""
from __future__ import annotations

import importlib

from .errors import CatalogError, ExportError, ImageDecodeError, ModelUnavailableError, SqlDlError, UsageError

__version__ = "0.1.0"
_LAZY = {
    "register_image_udf": ".api.image_udf", "register_tensor_udf": ".api.tensor_udf",
    "load_catalog": ".catalog", "DeepImageFeaturizer": ".api.ml", "DeepImagePredictor": ".api.ml",
    "cache_features": ".api.ml", "Registered": ".registry", "register_catalog": ".registry",
    "Catalog": ".specs", "InputSpec": ".specs", "ModelSpec": ".specs", "OutputSpec": ".specs",
    "build_session": ".session",
}
__all__ = sorted(["CatalogError", "ExportError", "ImageDecodeError", "ModelUnavailableError", "SqlDlError",
                  "UsageError", *_LAZY])


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'sql_dl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
