"""Turn model outputs into SQL values: top-1 label, top-k structs, feature arrays.

Executor-side and vectorized: scores arrive as one (rows, classes) array per
batch, and results leave as Arrow arrays, with NULL for rows that had no image.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa


@lru_cache(maxsize=16)
def load_labels(labels: str) -> tuple[str, ...]:
    """'imagenet' (bundled) or a text file with one label per line."""
    path = Path(__file__).with_name("data") / "imagenet_labels.txt" if labels == "imagenet" else Path(labels)
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def probabilities(scores: np.ndarray, scores_are: str) -> np.ndarray:
    """Row-wise softmax of logits (stable), or the scores as they are when already probabilities."""
    if scores_are == "probabilities":
        return scores.astype(np.float32, copy=False)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)


def scatter(valid: np.ndarray, values: list, length: int) -> list:
    """Place per-valid-row values back at their row positions, None elsewhere."""
    out: list = [None] * length
    for row, value in zip(np.flatnonzero(valid), values):
        out[row] = value
    return out


def top1_array(scores: np.ndarray, valid: np.ndarray, labels: tuple[str, ...]) -> pa.Array:
    names = [labels[i] for i in scores.argmax(axis=1)] if len(scores) else []
    return pa.array(scatter(valid, names, len(valid)), pa.string())


def topk_array(probs: np.ndarray, valid: np.ndarray, ks: np.ndarray, labels: tuple[str, ...],
               arrow_type: pa.DataType) -> pa.Array:
    """ARRAY<STRUCT<label, index, score>> (``arrow_type``) best first; ``ks`` holds each valid row's k
    (NULL k -> NULL)."""
    rows = []
    for p, k in zip(probs, ks):
        if k is None or k < 0:
            rows.append(None)
            continue
        k = min(int(k), p.shape[0])
        best = np.argpartition(-p, k - 1)[:k] if 0 < k < p.shape[0] else np.arange(p.shape[0])[:k]
        best = best[np.argsort(-p[best], kind="stable")]
        rows.append([{"label": labels[i], "index": int(i), "score": float(p[i])} for i in best])
    return pa.array(scatter(valid, rows, len(valid)), arrow_type)


def features_array(features: np.ndarray, valid: np.ndarray, value_type: pa.DataType = pa.float32()) -> pa.Array:
    """(valid_rows, ...) -> ARRAY<FLOAT> (or of ``value_type``) per row, flattened, built without Python loops."""
    width = int(np.prod(features.shape[1:])) if len(features) else 0
    flat = features.reshape(len(features), width).astype(value_type.to_pandas_dtype(), copy=False)
    counts = np.where(valid, width, 0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.ravel(), value_type),
                                    type=pa.list_(value_type), mask=pa.array(~valid))
