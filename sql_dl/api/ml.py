"""pyspark.ml Transformers over catalog models: DeepImageFeaturizer and DeepImagePredictor.

They are Deep Learning Pipelines' two image Transformers on sql-dl's executor path: ``modelName`` names
an entry of the catalogs the session registered (``models.yaml`` is registered when there is none), and
a Transformer runs that entry's very Task, so its features equal ``featurize_NAME`` in SQL value for value
and share the worker's model cache. Both have Params, work in a ``Pipeline`` and persist with
``save``/``load`` (also inside a saved ``PipelineModel``): only their Params are saved, the model is found
again by name when the loaded stage runs.

Tuning over ``modelName``: :func:`cache_features` featurizes a DataFrame once per model and keeps the
result; a featurizer applied to that DataFrame, or to anything derived from it (CrossValidator's folds,
TrainValidationSplit's split), reads the kept features instead of running the model again.
"""
from __future__ import annotations

import re
from typing import Sequence

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.functions import call_function, col, lit

from ..errors import UsageError
from .sources import catalog_entry, is_remote, require_classic
from ..executor.kinds import KINDS
from ..executor.udfs import Task


class _CatalogModelParams(HasInputCol, HasOutputCol):
    modelName: Param = Param(Params._dummy(), "modelName",
                             "name of a catalog entry registered in the session (e.g. efficientnet_lite0)",
                             typeConverter=TypeConverters.toString)

    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def setModelName(self, value: str):
        return self._set(modelName=value)

    def setInputCol(self, value: str):
        return self._set(inputCol=value)

    def setOutputCol(self, value: str):
        return self._set(outputCol=value)

    def _check_params(self) -> None:
        """One-line errors for unset Params (the Transformer's name first)."""
        for param in (self.inputCol, self.outputCol, self.modelName):
            if not self.isDefined(param):
                raise UsageError(f"{type(self).__name__}: set {param.name} (e.g. {type(self).__name__}("
                                 f"inputCol='content', outputCol='features', modelName='efficientnet_lite0'))")

    def _task(self, spark: SparkSession) -> Task:
        """The entry's Task, registered in this (classic) session."""
        self._check_params()
        return catalog_entry(spark, self.getModelName())[1]

    def _server_function(self, kind: str, *arguments: Column) -> Column:
        """Over Spark Connect: the server's SQL function of ``kind`` for the model (its default name), which
        sql-dl's extension put into every Connect session."""
        self._check_params()
        name = KINDS[kind].sql_name.format(model=self.getModelName())
        return call_function(name, col(self.getInputCol()), *arguments)


def features_column(task: Task, input_col: str) -> Column:
    """An MLlib Vector per image: the SQL path's featurize array, converted in the JVM (no Python round trip)."""
    if task.outputs.get("features") is None:
        raise UsageError(f"model '{task.ref.name}' has no features output (outputs.features in its catalog entry)")
    return array_to_vector(KINDS["featurize"].udf(task)(col(input_col)))


def cached_column(task: Task, input_col: str) -> str:
    """Where :func:`cache_features` keeps a model's features of ``input_col``: named by the model's sha256."""
    return f"_sqldl_features_{task.ref.sha256[:16]}_{re.sub(r'[^A-Za-z0-9_]', '_', input_col)}"


class DeepImageFeaturizer(Transformer, _CatalogModelParams, DefaultParamsReadable, DefaultParamsWritable):
    """Images (binary ``content`` or the ``image`` source's struct) -> an MLlib dense Vector of the model's
    pooled features, equal to ``featurize_NAME(image)`` in SQL. Undecodable rows give NULL."""

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None,
                 modelName: str | None = None) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str | None = None, outputCol: str | None = None,
                  modelName: str | None = None) -> "DeepImageFeaturizer":
        return self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if is_remote(dataset.sparkSession):
            return dataset.withColumn(self.getOutputCol(), array_to_vector(self._server_function("featurize")))
        task = self._task(dataset.sparkSession)
        kept = cached_column(task, self.getInputCol())
        source = col(kept) if kept in dataset.columns else features_column(task, self.getInputCol())
        return dataset.withColumn(self.getOutputCol(), source)


class DeepImagePredictor(Transformer, _CatalogModelParams, DefaultParamsReadable, DefaultParamsWritable):
    """Images -> the model's class probabilities as an MLlib Vector, or with ``decodePredictions=True`` the
    ``topK`` best as ARRAY<STRUCT<label, index, score>> (as ``predict_NAME_topk`` in SQL)."""

    decodePredictions: Param = Param(Params._dummy(), "decodePredictions",
                                     "output the topK best (label, index, score) instead of the probability vector",
                                     typeConverter=TypeConverters.toBoolean)
    topK: Param = Param(Params._dummy(), "topK", "how many classes decodePredictions keeps",
                        typeConverter=TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 decodePredictions: bool = False, topK: int = 5) -> None:
        super().__init__()
        self._setDefault(decodePredictions=False, topK=5)
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                  decodePredictions: bool = False, topK: int = 5) -> "DeepImagePredictor":
        return self._set(**self._input_kwargs)

    def getDecodePredictions(self) -> bool:
        return self.getOrDefault(self.decodePredictions)

    def getTopK(self) -> int:
        return self.getOrDefault(self.topK)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if is_remote(dataset.sparkSession):
            return self._transform_remote(dataset)
        task = self._task(dataset.sparkSession)
        if task.outputs.get("scores") is None:
            raise UsageError(f"DeepImagePredictor: model '{task.ref.name}' has no scores output")
        images = col(self.getInputCol())
        if self.getDecodePredictions():
            if self.getTopK() <= 0:
                raise UsageError(f"DeepImagePredictor: topK must be a positive integer, got {self.getTopK()}")
            return dataset.withColumn(self.getOutputCol(), KINDS["topk"].udf(task, k=self.getTopK())(images))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(KINDS["probabilities"].udf(task)(images)))


    def _transform_remote(self, dataset: DataFrame) -> DataFrame:
        if not self.getDecodePredictions():
            raise UsageError("DeepImagePredictor over Spark Connect gives decodePredictions=True (the server's "
                             "predict_NAME_topk); the probability vector needs a classic Spark session")
        return dataset.withColumn(self.getOutputCol(), self._server_function("topk", lit(self.getTopK())))


def cache_features(dataset: DataFrame, inputCol: str, modelNames: Sequence[str]) -> DataFrame:
    """``dataset`` with every model's features of ``inputCol`` computed now, in one pass, and persisted.

    Use it before tuning over the featurizer's ``modelName``: each model then runs once per image, not once
    per fold and parameter combination (CrossValidator fits a Pipeline per fold and grid point, and
    LogisticRegression reads its input several times). The kept columns travel with every DataFrame derived
    from the result; ``dataset.unpersist()`` on the result frees them."""
    spark = dataset.sparkSession
    require_classic(spark, "cache_features")
    kept = dataset
    for name in dict.fromkeys([modelNames] if isinstance(modelNames, str) else modelNames):
        task = catalog_entry(spark, name)[1]
        kept = kept.withColumn(cached_column(task, inputCol), features_column(task, inputCol))
    kept = kept.persist()
    kept.count()  # materialise now: one model run per image and model
    return kept
