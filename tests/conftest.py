"""One Spark session and one set of real photos for the whole suite (a session costs ~10 s)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "models.yaml"
EFFICIENTNET_ONNX = ROOT / "models" / "efficientnet_lite0.onnx"


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    from sql_dl.samples.photos import make_photo_dir

    folder = tmp_path_factory.mktemp("photos")
    make_photo_dir(folder)
    return folder


@pytest.fixture(scope="session")
def event_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("events") / "events.jsonl"


@pytest.fixture(scope="session")
def spark(event_log):
    if not EFFICIENTNET_ONNX.is_file():
        pytest.fail("models/efficientnet_lite0.onnx is missing: run the suite with `make test`, which builds it")
    from sql_dl import build_session

    session = build_session(master="local[2]", catalog=CATALOG, conf={"spark.sqldl.eventLog": str(event_log)})
    yield session
    session.stop()


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tiny_model(path: Path, size: tuple = (224, 224), classes: int = 1000, features: int = 8) -> Path:
    """A tiny image classifier in ONNX (mean colour -> features -> logits), for tests where what matters is
    how a model is checked, shipped or registered, not what it recognises. Built without torch."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("w1", (3, features)), ("w2", (features, classes)))]
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w1"], ["features"]),
             helper.make_node("MatMul", ["features", "w2"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                           ["batch", 3, *size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
                               helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
                              weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def write_catalog(folder: Path, body: str, name: str = "models.yaml") -> Path:
    path = folder / name
    path.write_text(body)
    return path
