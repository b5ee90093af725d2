"""The function kinds: what a model's outputs become in SQL. One table, one place to add a kind.

Each :class:`Kind` declares its SQL name template, its extra SQL arguments, the output roles it reads
(``scores``, ``features``: a catalog entry maps each to an ONNX output name), its Spark return type (the
Arrow type follows from it), its batch function and its usage text. The catalog validates ``functions:``
against this table, the registry registers and describes every function from it, the Python API and the
pyspark.ml Transformers build their UDFs from it, and ``sql_dl_error`` is registered through it too.

Every UDF is a scalar ``arrow_udf`` (Spark 4.1+). Scalar, not iterator, UDFs: Spark evaluates several of
them in one Python worker over the same batch, so predict + featurize in one query share a worker, a
loaded model and (through :func:`.udfs.infer`) one network run. Iterator UDFs each get their own
evaluation node and worker: two model copies, two runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.functions import arrow_udf
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import ArrayType, DataType, FloatType, IntegerType, StringType, StructField, StructType

from ..errors import UsageError
from ..specs import InputSpec
from .images import decode_error, image_to_pixels
from .outputs import scatter, features_array, probabilities, top1_array, topk_array
from .udfs import Task, infer


@dataclass(frozen=True)
class Arg:
    """An SQL argument after the image."""

    name: str
    sql_type: str  # "INT" | "STRING": what the Arrow column must hold (checked per batch)
    text: str  # for DESCRIBE FUNCTION
    optional: bool = False
    positive: bool = False  # an INT that must be >= 1 where not NULL

    def check(self, column: pa.Array, call: str) -> None:
        """One line naming the call, the argument and the expected type, for a column that does not fit."""
        kind = column.type
        fits = pa.types.is_null(kind) or (pa.types.is_integer(kind) if self.sql_type == "INT" else
                                          pa.types.is_string(kind) or pa.types.is_large_string(kind))
        if not fits:
            raise UsageError(f"{call}: {self.name} must be {self.sql_type}, got {sql_type_name(kind)}")
        smallest = pc.min(column).as_py() if self.positive and pa.types.is_integer(kind) else None
        if smallest is not None and smallest < 1:
            raise UsageError(f"{call}: {self.name} must be a positive integer, got {smallest}")


def sql_type_name(arrow_type: pa.DataType) -> str:
    """How SQL names an Arrow column's type, for messages (STRING, INT, DOUBLE, DECIMAL, ...)."""
    names = {"string": "STRING", "large_string": "STRING", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INT",
             "int64": "BIGINT", "float": "FLOAT", "double": "DOUBLE", "bool": "BOOLEAN", "binary": "BINARY",
             "date32[day]": "DATE"}
    text = str(arrow_type)
    return "DECIMAL" if text.startswith("decimal") else names.get(text, text.upper())


def check_image(images: pa.Array, call: str) -> None:
    """Encoded bytes (BINARY) or the image data source's struct; anything else is one line."""
    kind = images.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_null(kind):
        return
    if pa.types.is_struct(kind) and {"data", "mode", "height", "width"} <= {f.name for f in kind}:
        return
    raise UsageError(f"{call}: image must be BINARY (binaryFile's content) or the image data source's struct, "
                     f"got {sql_type_name(kind)}")


@dataclass(frozen=True)
class Kind:
    """One kind of SQL function over an image model."""

    name: str  # the key of a catalog entry's functions: mapping
    sql_name: str  # template for the default SQL name; {model} is the entry's name
    needs: tuple[str, ...]  # output roles the batch function reads
    returns: DataType
    batch: Callable  # (task, images: pa.Array, *extra argument arrays) -> pa.Array of ``returns``
    usage: str  # DESCRIBE FUNCTION's usage line; {model} and {features} are filled in
    args: tuple[Arg, ...] = ()  # extra SQL arguments after the image
    per_entry: bool = True  # False: one function for the whole session (sql_dl_error)
    example_args: str = "content"
    generic: str | None = None  # the SQL name taking the model as its first argument: ml_predict('NAME@ALIAS', ...)

    def udf(self, task: object, sql_name: str | None = None, **fixed: object):
        """The Arrow UDF running this kind for ``task`` as the SQL function ``sql_name`` (named in messages);
        ``fixed`` binds extra arguments to constants (the Python API's ``output="topk", k=5``)."""
        batch, args = self.batch, [arg for arg in self.args if arg.name not in fixed]
        unknown = set(fixed) - {arg.name for arg in self.args}
        if unknown:
            raise UsageError(f"{self.name}: no argument {sorted(unknown)[0]!r}")
        shape = self.shape(sql_name)

        def run(images: pa.Array, *columns: pa.Array) -> pa.Array:
            if len(columns) > len(args) or len(columns) < sum(not arg.optional for arg in args):
                raise UsageError(f"{shape} takes {1 + len(args)} argument(s), got {1 + len(columns)}")
            check_image(images, shape)
            for arg, column in zip(args, columns):
                arg.check(column, shape)
            given = dict(zip((arg.name for arg in args), columns))
            extra = [pa.array([fixed[a.name]] * len(images)) if a.name in fixed else given.get(a.name)
                     for a in self.args]
            return batch(task, images, *extra)

        run.__name__ = run.__qualname__ = self.name if self.per_entry else self.sql_name
        return arrow_udf(run, self.returns)

    def shape(self, sql_name: str | None = None) -> str:
        """How a call looks, for messages: predict_lite0_topk(image, k)."""
        args = ", ".join(["image"] + [f"[{a.name}]" if a.optional else a.name for a in self.args])
        return f"{sql_name or (self.name if self.per_entry else self.sql_name)}({args})"

    def sql_signature(self) -> tuple[str, str]:
        """(parameters, return type) in SQL, for a stand-in function with this kind's shape."""
        params = ", ".join(["image STRING"] + [f"{arg.name} {arg.sql_type}" for arg in self.args])
        return params, self.returns.simpleString()


# --------------------------------------------------------------------------- batch functions

def predict_batch(task: Task, images: pa.Array) -> pa.Array:
    valid, outputs = infer(task, images)
    return top1_array(outputs[task.outputs.get("scores")], valid, task.labels)


def _probabilities(task: Task, images: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    valid, outputs = infer(task, images)
    scores = outputs[task.outputs.get("scores")]
    return valid, probabilities(scores, task.outputs.scores_are) if len(scores) else scores


def topk_batch(task: Task, images: pa.Array, ks: pa.Array) -> pa.Array:
    valid, probs = _probabilities(task, images)
    k_values = np.asarray(ks.to_pylist(), dtype=object)[valid]
    return topk_array(probs, valid, k_values, task.labels, TOPK_ARROW)


def featurize_batch(task: Task, images: pa.Array) -> pa.Array:
    valid, outputs = infer(task, images)
    return features_array(outputs[task.outputs.get("features")], valid)


def detail_batch(task: Task, images: pa.Array) -> pa.Array:
    """The top-1 label and probability with the model name, version and sha256 that produced them."""
    valid, probs = _probabilities(task, images)
    ref = task.ref
    rows = [{"label": task.labels[i], "score": float(p[i]), "model": ref.name, "version": ref.version,
             "sha256": ref.sha256} for p, i in zip(probs, probs.argmax(axis=1) if len(probs) else [])]
    return pa.array(scatter(valid, rows, len(valid)), DETAIL_ARROW)


def probabilities_batch(task: Task, images: pa.Array) -> pa.Array:
    """Class probabilities (softmax of logits unless the model gives probabilities) as ARRAY<FLOAT>."""
    return features_array(*_probabilities(task, images)[::-1])


@dataclass(frozen=True)
class ErrorTask:
    """What ``sql_dl_error`` needs: every registered entry's preprocessing and decoder hook, by name."""

    entries: tuple = ()  # ((entry name, InputSpec, decoder hook or None), ...)
    hooks: tuple = field(default=(), compare=False)  # the distinct decoder hooks among them


def error_task(entries: list[tuple[str, InputSpec, Callable | None]]) -> ErrorTask:
    hooks = tuple({id(hook): hook for _, _, hook in entries if hook is not None}.values())
    return ErrorTask(tuple(entries), hooks)


def error_batch(task: ErrorTask, images: pa.Array, models: pa.Array | None = None) -> pa.Array:
    """Why each row's image gives NULL (one line), or NULL when it decodes. With a model name, exactly
    that entry's decoding and preprocessing; without, a row any entry can decode (the standard decoder or
    one of the catalog's decoder hooks) has no error."""
    cells = images.to_pylist()
    names = models.to_pylist() if models is not None else [None] * len(cells)
    return pa.array([_why(task, cell, name) for cell, name in zip(cells, names)], pa.string())


def _why(task: ErrorTask, cell: object, model: str | None) -> str | None:
    if model is None:
        reasons = [decode_error(cell)] + [decode_error(cell, hook) for hook in task.hooks]
        return None if None in reasons else reasons[0]
    entry = next((e for e in task.entries if e[0] == model.lower()), None)
    if entry is None:
        raise UsageError(f"sql_dl_error: no catalog entry named {model!r}. Available: "
                         f"{', '.join(e[0] for e in task.entries) or 'none'}")
    if cell is None:
        return "the image is NULL"
    try:
        image_to_pixels(cell, entry[1], entry[2])
    except Exception as exc:  # noqa: BLE001 - ImageDecodeError and anything a hook raises, as one line
        return str(exc)
    return None


# --------------------------------------------------------------------------- the table

TOPK_TYPE = ArrayType(StructType([StructField("label", StringType()), StructField("index", IntegerType()),
                                  StructField("score", FloatType())]))
TOPK_ARROW = to_arrow_type(TOPK_TYPE)
FLOATS = ArrayType(FloatType())
DETAIL_TYPE = StructType([StructField(name, FloatType() if name == "score" else StringType())
                          for name in ("label", "score", "model", "version", "sha256")])
DETAIL_ARROW = to_arrow_type(DETAIL_TYPE)

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("predict", "predict_{model}", ("scores",), StringType(), predict_batch,
         "_FUNC_(image) - the top-1 label (STRING) of model '{model}'.", generic="ml_predict"),
    Kind("topk", "predict_{model}_topk", ("scores",), TOPK_TYPE, topk_batch,
         "_FUNC_(image, k) - the k best labels of model '{model}' as ARRAY<STRUCT<label: STRING, index: INT, "
         "score: FLOAT>>, best first; scores are probabilities.",
         args=(Arg("k", "INT", "how many labels (INT)", positive=True),), example_args="content, 5",
         generic="ml_predict_topk"),
    Kind("featurize", "featurize_{model}", ("features",), FLOATS, featurize_batch,
         "_FUNC_(image) - the pooled features (ARRAY<FLOAT>, {features} values) of model '{model}'.",
         generic="ml_featurize"),
    Kind("probabilities", "probabilities_{model}", ("scores",), FLOATS, probabilities_batch,
         "_FUNC_(image) - the class probabilities (ARRAY<FLOAT>, one per label) of model '{model}'.",
         generic="ml_probabilities"),
    Kind("detail", "predict_{model}_detail", ("scores",), DETAIL_TYPE, detail_batch,
         "_FUNC_(image) - the top-1 label with its lineage, STRUCT<label: STRING, score: FLOAT, model: STRING, "
         "version: STRING, sha256: STRING>: which version of model '{model}' answered the row.",
         generic="ml_predict_detail"),
    Kind("error", "sql_dl_error", (), StringType(), error_batch,
         "_FUNC_(image[, model]) - why the image gives NULL (one line), or NULL when it decodes; with a "
         "model name, as that catalog entry decodes and preprocesses it.",
         args=(Arg("model", "STRING", "a catalog entry's name (optional)", optional=True),), per_entry=False),
)}
# Kinds a catalog entry gets unless its functions: mapping says otherwise (the others on request).
DEFAULT_KINDS = ("predict", "topk", "featurize")
ROLES = tuple(dict.fromkeys(role for kind in KINDS.values() for role in kind.needs))
ERROR = KINDS["error"]
