"""A folder of good and bad files: the query succeeds, every good file gets the label it gets alone, every bad
one NULL and a reason; with on_error: fail, one line names the bad file instead."""
from __future__ import annotations

import pytest

from conftest import EFFICIENTNET_ONNX, write_catalog
from sql_dl.samples.awkward import broken, decodable
from sql_dl.errors import CatalogError, one_line
from sql_dl.samples.photos import photo_jpeg
from sql_dl.registry import ON_ERROR_CONF, register_catalog

PHOTO = photo_jpeg("coffee")
GOOD, BAD = decodable(PHOTO), broken(PHOTO)
LABEL = "predict_efficientnet_lite0"


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, photo_dir):
    folder = tmp_path_factory.mktemp("mixed")
    for name, data in {**GOOD, **BAD}.items():
        (folder / name).write_bytes(data)
    for photo in ("chelsea.jpg", "astronaut.jpg"):
        (folder / photo).write_bytes((photo_dir / photo).read_bytes())
    return folder


def labels_of(spark, glob: str) -> dict:
    return {r.file: (r.label, r.why) for r in spark.sql(
        f"SELECT regexp_extract(path, '[^/]+$', 0) AS file, {LABEL}(content) AS label, sql_dl_error(content) AS why "
        f"FROM binaryFile.`{glob}`").collect()}


def test_mixed_folder_good_files_labelled_as_alone_bad_files_null_with_reason(spark, mixed_dir):
    mixed = labels_of(spark, f"{mixed_dir}/*")
    listed = {p.name for p in mixed_dir.iterdir() if p.stat().st_size > 0}  # binaryFile lists no empty files
    assert set(mixed) == listed
    good = listed - set(BAD)
    for name in sorted(good):
        assert mixed[name] == labels_of(spark, f"{mixed_dir}/{name}")[name], name
        assert mixed[name][0] is not None and mixed[name][1] is None, name
    for name in sorted(listed & set(BAD)):
        label, why = mixed[name]
        assert label is None and why and "\n" not in why, name
    assert mixed["exif-rotated.jpg"][0] == mixed["progressive.jpg"][0] == "espresso"  # upright, like the photo
    assert mixed["chelsea.jpg"][0] in {"tabby", "tiger cat", "Egyptian cat"}


def test_image_source_rows_spark_could_not_read_are_null_and_no_row_is_lost(spark, mixed_dir):
    rows = spark.sql(f"SELECT image.origin AS origin, image.height AS height, {LABEL}(image) AS label, "
                     f"sql_dl_error(image) AS why FROM image.`{mixed_dir}/*`").collect()
    assert len(rows) == sum(1 for p in mixed_dir.iterdir() if p.stat().st_size > 0)
    by_file = {r.origin.rsplit("/", 1)[-1]: r for r in rows}
    invalid = {name for name, r in by_file.items() if r.height == -1}  # Spark's own reader gave up on these
    assert {"text.jpg", "bomb.jpg", "header-only.jpg"} <= invalid
    for name in invalid:
        assert by_file[name].label is None and by_file[name].why.startswith("invalid image row"), name
    assert by_file["progressive.jpg"].label == "espresso" and by_file["progressive.jpg"].why is None
    assert all((r.label is None) == (r.why is not None) for r in rows)


def strict_catalog(tmp_path, policy: str = "    on_error: fail\n"):
    return write_catalog(tmp_path, f"models:\n  strict:\n    onnx: {EFFICIENTNET_ONNX}\n"
                                   f"    input: {{size: [224, 224], resize: 256, scale: 1.0, mean: [127, 127, 127], "
                                   f"std: [128, 128, 128]}}\n    outputs: {{scores: logits}}\n{policy}")


def test_on_error_fail_stops_the_query_with_one_line_that_finds_the_file(spark, tmp_path, mixed_dir):
    register_catalog(spark, strict_catalog(tmp_path))
    with pytest.raises(Exception) as caught:
        spark.sql(f"SELECT predict_strict(content) FROM binaryFile.`{mixed_dir}/truncated.*`").collect()
    message = one_line(caught.value)
    assert "cannot decode image: image file is truncated" in message and "(on_error: fail)" in message, message
    digest = message.split("LIKE '")[1].split("%")[0]
    found = spark.sql(f"SELECT regexp_extract(path, '[^/]+$', 0) FROM binaryFile.`{mixed_dir}/*` "
                      f"WHERE sha2(content, 256) LIKE '{digest}%'").collect()
    assert [r[0] for r in found] in (["truncated.jpg"], ["truncated.png"])
    good = spark.sql(f"SELECT predict_strict(content) FROM binaryFile.`{mixed_dir}/progressive.jpg`").first()[0]
    assert good == "espresso"


def test_on_error_fail_names_the_file_for_image_source_rows(spark, tmp_path, mixed_dir):
    register_catalog(spark, strict_catalog(tmp_path))
    with pytest.raises(Exception) as caught:
        spark.sql(f"SELECT predict_strict(image) FROM image.`{mixed_dir}/text.jpg`").collect()
    assert one_line(caught.value) == (f"image file://{mixed_dir}/text.jpg: invalid image row "
                                      "(Spark could not read the file) (on_error: fail)")


def test_session_policy_overrides_the_catalog_and_is_checked(spark, tmp_path):
    catalog = strict_catalog(tmp_path, policy="")
    assert register_catalog(spark, catalog).tasks["strict"].on_error == "null"
    try:
        spark.conf.set(ON_ERROR_CONF, "fail")
        assert register_catalog(spark, catalog).tasks["strict"].on_error == "fail"
        spark.conf.set(ON_ERROR_CONF, "skip")
        with pytest.raises(CatalogError, match=r"^spark\.sqldl\.onError must be one of null\|fail, got 'skip'$"):
            register_catalog(spark, catalog)
    finally:
        spark.conf.unset(ON_ERROR_CONF)


def test_catalog_defaults_can_set_the_policy(tmp_path):
    from sql_dl.catalog import load_catalog

    path = write_catalog(tmp_path, strict_catalog(tmp_path, "").read_text().replace(
        "models:", "defaults: {on_error: fail}\nmodels:"))
    assert load_catalog(path).get("strict").on_error == "fail"
