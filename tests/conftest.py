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
    from sql_dl.photos import make_photo_dir

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


def write_catalog(folder: Path, body: str, name: str = "models.yaml") -> Path:
    path = folder / name
    path.write_text(body)
    return path
