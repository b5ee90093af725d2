"""sql-dl: deep-learning models as Spark SQL functions.

    from sql_dl import build_session
    spark = build_session(catalog="models.yaml")
    spark.sql("SELECT path, predict_efficientnet_lite0(content) FROM binaryFile.`photos/*.jpg`").show()
"""
from .api.image_udf import register_image_udf
from .api.tensor_udf import register_tensor_udf
from .catalog import load_catalog
from .errors import CatalogError, ExportError, ImageDecodeError, ModelUnavailableError, SqlDlError, UsageError
from .api.ml import DeepImageFeaturizer, DeepImagePredictor, cache_features
from .registry import Registered, register_catalog
from .specs import Catalog, InputSpec, ModelSpec, OutputSpec
from .session import build_session

__version__ = "0.1.0"
__all__ = [
    "Catalog", "CatalogError", "DeepImageFeaturizer", "DeepImagePredictor", "ExportError", "ImageDecodeError",
    "InputSpec", "ModelSpec", "ModelUnavailableError", "OutputSpec", "Registered", "SqlDlError", "UsageError",
    "build_session", "cache_features", "load_catalog", "register_catalog", "register_image_udf",
    "register_tensor_udf",
]
