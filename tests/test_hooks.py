"""Decoder hooks: the only code a catalog can name, from udfs/ beside it, shipped to executors by value."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import EFFICIENTNET_ONNX, ROOT, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.errors import CatalogError
from sql_dl.registry import register_catalog


def hook_catalog(folder, decoder: str = "decoders:npy_image") -> str:
    return (f"models:\n  lite_npy:\n    onnx: {EFFICIENTNET_ONNX}\n"
            f"    input: {{size: [224, 224], resize: 256, scale: 1.0, mean: [127, 127, 127], std: [128, 128, 128], "
            f"decoder: '{decoder}'}}\n    outputs: {{scores: logits}}\n")


@pytest.fixture()
def hook_folder(tmp_path):
    (tmp_path / "udfs").mkdir()
    shutil.copy(ROOT / "udfs" / "decoders.py", tmp_path / "udfs" / "decoders.py")
    return tmp_path


def test_npy_files_through_a_decoder_hook_get_the_same_labels_as_jpegs(spark, hook_folder, photo_dir):
    npy_dir = hook_folder / "arrays"
    npy_dir.mkdir()
    for photo in sorted(photo_dir.glob("*.jpg")):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(Image.open(photo).convert("RGB")))
        (npy_dir / f"{photo.stem}.npy").write_bytes(buffer.getvalue())
    (npy_dir / "broken.npy").write_bytes(b"not an array")
    register_catalog(spark, write_catalog(hook_folder, hook_catalog(hook_folder)))
    from_npy = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '([^/]+)\\\\.npy$', 1) AS file, predict_lite_npy(content) AS label "
        f"FROM binaryFile.`{npy_dir}/*.npy`").collect()}
    from_jpg = {r.file: r.label for r in spark.sql(
        f"SELECT regexp_extract(path, '([^/]+)\\\\.jpg$', 1) AS file, predict_efficientnet_lite0(content) AS label "
        f"FROM binaryFile.`{photo_dir}/*.jpg`").collect()}
    assert from_npy.pop("broken") is None
    assert from_npy == from_jpg
    why = {r.file: (r.any_entry, r.this_entry, r.plain) for r in spark.sql(
        f"SELECT regexp_extract(path, '([^/]+)\\\\.npy$', 1) AS file, sql_dl_error(content) AS any_entry, "
        f"sql_dl_error(content, 'lite_npy') AS this_entry, sql_dl_error(content, 'efficientnet_lite0') AS plain "
        f"FROM binaryFile.`{npy_dir}/*.npy`").collect()}
    broken = why.pop("broken")
    # rows the entry's hook decodes have no error, asked generally or for that entry; the standard decoder
    # (an entry without the hook) still cannot read them
    assert all(any_entry is None and this_entry is None for any_entry, this_entry, _ in why.values())
    assert {plain for _, _, plain in why.values()} == {"not a recognised image format"}
    assert broken[1].startswith("decoder hook npy_image failed: ValueError") and broken[0] is not None


@pytest.mark.parametrize("decoder,message", [
    ("decoders.npy_image", r"input\.decoder must be MODULE:FUNCTION naming a function in udfs/MODULE\.py"),
    ("../evil:run", r"input\.decoder must be MODULE:FUNCTION"),
    ("elsewhere:decode", r"input\.decoder must be a function in an existing file; .*udfs/elsewhere\.py does not exist"),
])
def test_decoder_must_name_a_function_in_udfs(hook_folder, decoder, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog(write_catalog(hook_folder, hook_catalog(hook_folder, decoder)))


def test_decoder_function_missing_or_module_broken(spark, hook_folder):
    with pytest.raises(CatalogError, match=r"entry 'lite_npy': input\.decoder: decoders\.py has no function 'nope'"):
        register_catalog(spark, write_catalog(hook_folder, hook_catalog(hook_folder, "decoders:nope")))
    (hook_folder / "udfs" / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(CatalogError, match=r"input\.decoder: importing broken\.py failed: RuntimeError: boom"):
        register_catalog(spark, write_catalog(hook_folder, hook_catalog(hook_folder, "broken:decode")))
