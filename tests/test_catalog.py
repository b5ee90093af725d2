"""The catalog loader: the default catalog is valid, and each malformed catalog gets its one-line error."""
from __future__ import annotations

import pickle

import pytest

from conftest import CATALOG, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.errors import CatalogError

GOOD_ENTRY = """\
  resnet50:
    onnx: models/resnet50.onnx
    input: {size: [224, 224], resize: 256, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    outputs: {scores: logits, features: features}
"""


def catalog_with(tmp_path, entry: str, header: str = "models:\n"):
    return load_catalog(write_catalog(tmp_path, header + entry))


@pytest.mark.parametrize("spec", list(load_catalog(CATALOG)), ids=lambda s: s.name)
def test_every_default_entry_is_complete_and_picklable(spec):
    # Specs travel to executors inside UDF closures: they must pickle and compare equal.
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.functions["predict"] == f"predict_{spec.name}"
    assert spec.functions["topk"] == f"predict_{spec.name}_topk"
    assert spec.functions["featurize"] == f"featurize_{spec.name}"
    assert spec.onnx.is_absolute() and spec.onnx.suffix == ".onnx"
    assert spec.source.get("exporter"), "every default entry says how its ONNX file is produced"
    assert f"{spec.input.size[0]}x{spec.input.size[1]}" in spec.input.describe()


def test_default_catalog_values():
    catalog = load_catalog(CATALOG)
    lite = catalog.get("efficientnet_lite0")
    assert lite.input.mean == (127.0, 127.0, 127.0) and lite.input.scale == 1.0
    assert lite.input.resize == 256 and lite.input.crop == "center"
    assert catalog.get("inception").input.size == (299, 299)
    assert "predict_inception" in catalog.get("inception").functions.values()


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(CatalogError, match=r"no model named 'nope'\. Available: convnext_tiny, .*efficientnet_lite0, "
                                          r".*inception, "):
        load_catalog(CATALOG).get("nope")


def test_function_names_are_configurable_and_can_be_switched_off(tmp_path):
    catalog = catalog_with(tmp_path, GOOD_ENTRY + "    functions: {predict: classify_photo, topk: null}\n")
    assert catalog.get("resnet50").functions == {"predict": "classify_photo", "featurize": "featurize_resnet50"}


def test_batch_size_defaults_to_8_on_cpu_and_32_on_gpus_unless_set(tmp_path):
    gpu = GOOD_ENTRY.replace("resnet50:", "resnet50_gpu:") + "    device: cuda\n"
    sized = GOOD_ENTRY.replace("resnet50:", "resnet50_sized:") + "    batch_size: 16\n"
    catalog = catalog_with(tmp_path, GOOD_ENTRY + gpu + sized)
    assert [catalog.get(n).batch_size for n in ("resnet50", "resnet50_gpu", "resnet50_sized")] == [8, 32, 16]
    catalog = catalog_with(tmp_path, GOOD_ENTRY, header="defaults: {batch_size: 4}\nmodels:\n")
    assert catalog.get("resnet50").batch_size == 4


def test_relative_paths_resolve_against_the_catalog_folder(tmp_path):
    spec = catalog_with(tmp_path, GOOD_ENTRY).get("resnet50")
    assert spec.onnx == (tmp_path / "models" / "resnet50.onnx").resolve()
    assert not spec.available


MALFORMED = [
    # (catalog text, expected message)
    (GOOD_ENTRY.replace("size: [224, 224]", "size: [224]"),
     r"^models\.yaml: entry 'resnet50': input\.size must be two positive integers \[height, width\], got \[224\]$"),
    (GOOD_ENTRY.replace("size: [224, 224]", "size: [224, -1]"),
     r"entry 'resnet50': input\.size must be two positive integers"),
    (GOOD_ENTRY.replace("resize: 256", "resize: 100"),
     r"entry 'resnet50': input\.resize must be 'stretch' or an integer >= the shorter input side 224, got 100"),
    (GOOD_ENTRY.replace("std: [0.229, 0.224, 0.225]", "std: [0.229, 0, 0.225]"),
     r"entry 'resnet50': input\.std must be three positive numbers \(one per channel\), got \[0\.229, 0, 0\.225\]"),
    (GOOD_ENTRY.replace("mean: [0.485, 0.456, 0.406]", "mean: [0.485, 0.456]"),
     r"entry 'resnet50': input\.mean must be three numbers"),
    (GOOD_ENTRY + "    device: tpu\n", r"entry 'resnet50': device must be one of auto\|cpu\|cuda, got 'tpu'"),
    (GOOD_ENTRY + "    batch_size: 0\n", r"entry 'resnet50': batch_size must be a positive integer, got 0"),
    (GOOD_ENTRY + "    sha256: abc\n", r"entry 'resnet50': sha256 must be 64 lowercase hex digits, quoted, got 'abc'"),
    (GOOD_ENTRY + "    labels: no-such-labels.txt\n",
     r"entry 'resnet50': labels must be 'imagenet' or an existing text file"),
    (GOOD_ENTRY + "    colour: rgb\n", r"entry 'resnet50': unknown field 'colour' \(known: onnx, sha256"),
    (GOOD_ENTRY.replace("interpolation", "x") + "    input2: 1\n", r"unknown field 'input2'"),
    (GOOD_ENTRY.replace("    onnx: models/resnet50.onnx\n", ""), r"entry 'resnet50': onnx is required"),
    (GOOD_ENTRY.replace("outputs: {scores: logits, features: features}", "outputs: {}"),
     r"entry 'resnet50': outputs must name at least one of 'scores' or 'features'"),
    (GOOD_ENTRY.replace("outputs: {scores: logits, features: features}", "outputs: {features: f}")
     + "    functions: {predict: p}\n", r"entry 'resnet50': functions\.predict needs outputs\.scores"),
    (GOOD_ENTRY + "    functions: {predict: 'drop table'}\n",
     r"entry 'resnet50': functions\.predict must be a SQL identifier"),
    (GOOD_ENTRY + GOOD_ENTRY.replace("resnet50:", "resnet50b:").replace(
        "outputs: {scores: logits, features: features}",
        "outputs: {scores: logits}\n    functions: {predict: predict_resnet50}"),
     r"entry 'resnet50b': functions\.predict 'predict_resnet50' is already registered by entry 'resnet50'"),
    (GOOD_ENTRY + "    functions: {predict: sql_dl_error}\n",
     r"entry 'resnet50': functions\.predict 'sql_dl_error' is already registered by sql-dl itself"),
    (GOOD_ENTRY + GOOD_ENTRY, r"^models\.yaml: line 6: duplicate key 'resnet50'$"),
    (GOOD_ENTRY.replace("input: {size", "input: {size: [1, 1], size"), r"line 4: duplicate key 'size'"),
    (GOOD_ENTRY.replace("resnet50:", "resnet-50:"), r"entry 'resnet-50': the entry name must be a SQL identifier"),
    (GOOD_ENTRY.replace("input: {", "input: {dtype: uint8, "),
     r"input\.scale/mean/std do not apply when input\.dtype is uint8"),
    ("  - not a mapping\n", r"^models\.yaml: the top level must be a mapping with a non-empty 'models:' mapping"),
    (GOOD_ENTRY + "  bad: [\n", r"^models\.yaml: line \d+: not valid YAML"),
]


@pytest.mark.parametrize("entry,message", MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_malformed_catalog_is_rejected_with_one_line(tmp_path, entry, message):
    with pytest.raises(CatalogError, match=message) as caught:
        catalog_with(tmp_path, entry)
    assert "\n" not in str(caught.value)


def test_yaml_tags_cannot_run_code(tmp_path):
    body = "models: !!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(CatalogError, match=r"not valid YAML: could not determine a constructor"):
        load_catalog(write_catalog(tmp_path, body))


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.yaml: catalog file not found"):
        load_catalog(tmp_path / "nope.yaml")


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(CatalogError, match=r"unknown top-level key\(s\) \['modles'\]"):
        catalog_with(tmp_path, GOOD_ENTRY, header="modles: 1\nmodels:\n")


def test_model_dirs_confine_model_files_when_set(tmp_path):
    allowed = tmp_path / "models"
    allowed.mkdir()
    catalog_with(tmp_path, GOOD_ENTRY)  # writes models.yaml
    assert load_catalog(tmp_path / "models.yaml", allowed_dirs=[allowed.resolve()]).get("resnet50")
    elsewhere = GOOD_ENTRY.replace("models/resnet50.onnx", "../outside/resnet50.onnx")
    (tmp_path / "models.yaml").write_text("models:\n" + elsewhere)
    with pytest.raises(CatalogError, match=r"^models\.yaml: entry 'resnet50': onnx /\S+/outside/resnet50\.onnx is "
                                          r"outside the allowed model directories"):
        load_catalog(tmp_path / "models.yaml", allowed_dirs=[allowed.resolve()])


def test_a_symlink_cannot_escape_the_model_dirs(tmp_path, monkeypatch):
    allowed, secret = tmp_path / "models", tmp_path / "secret"
    allowed.mkdir(), secret.mkdir()
    (secret / "resnet50.onnx").write_bytes(b"x")
    (allowed / "resnet50.onnx").symlink_to(secret / "resnet50.onnx")
    catalog_with(tmp_path, GOOD_ENTRY)
    monkeypatch.setenv("SQL_DL_MODEL_DIRS", str(allowed))
    with pytest.raises(CatalogError, match=r"onnx /\S+/secret/resnet50\.onnx is outside the allowed model dir"):
        load_catalog(tmp_path / "models.yaml")


VERSIONED = """\
  resnet50:
    input: {size: [224, 224], resize: 256, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    outputs: {scores: logits, features: features}
    versions:
      "1": {onnx: models/v1.onnx, source: {exporter: torchvision, arch: resnet50, weights: IMAGENET1K_V1}}
      "2": {onnx: models/v2.onnx, input: {resize: 232}, precision: int8}
    aliases: {default: "2", champion: "2", candidate: "1"}
"""


def test_versions_and_aliases(tmp_path):
    catalog = catalog_with(tmp_path, VERSIONED)
    default = catalog.get("resnet50")
    assert default.version == "2" and default.aliases == ("default", "champion") and default.precision == "int8"
    one = catalog.resolve("resnet50@candidate")
    assert one.version == "1" and one.onnx == tmp_path / "models" / "v1.onnx" and one.precision == "fp32"
    assert one.input.resize == 256 and default.input.resize == 232  # input: merged field by field
    assert default.input.mean == one.input.mean
    assert catalog.resolve("RESNET50").ref == "resnet50@2" and catalog.resolve("resnet50@1") == one
    assert [spec.ref for spec in catalog.all_versions()] == ["resnet50@1", "resnet50@2"]
    assert pickle.loads(pickle.dumps(catalog.versions)) == catalog.versions


def test_an_entry_without_versions_is_version_1_its_default(tmp_path):
    catalog = catalog_with(tmp_path, GOOD_ENTRY)
    assert catalog.aliases == {"resnet50": {"default": "1"}}
    assert catalog.resolve("resnet50@default").ref == "resnet50@1"


def test_unknown_refs_say_what_exists(tmp_path):
    catalog = catalog_with(tmp_path, VERSIONED)
    with pytest.raises(CatalogError, match=r"^models\.yaml: no model named 'nope'\. Available: resnet50$"):
        catalog.resolve("nope@1")
    with pytest.raises(CatalogError, match=r"^models\.yaml: model 'resnet50' has no version or alias '3'; versions: 1, 2; "
                                           r"aliases: default=2, champion=2, candidate=1$"):
        catalog.resolve("resnet50@3")


VERSION_ERRORS = [
    (VERSIONED.replace('default: "2"', 'default: "3"'),
     r"^models\.yaml: entry 'resnet50': aliases\.default names version '3', which is not among versions: 1, 2$"),
    (VERSIONED.replace("models/v2.onnx", "models/v1.onnx"),
     r"^models\.yaml: entry 'resnet50': versions '1' and '2' name the same onnx file .*v1\.onnx; each version is "
     r"its own file$"),
    (VERSIONED.replace('aliases: {default: "2", champion: "2", candidate: "1"}', "aliases: {champion: '1'}"),
     r"^models\.yaml: entry 'resnet50': aliases\.default is required \(the version the entry's functions run\)$"),
    (VERSIONED.replace('    aliases: {default: "2", champion: "2", candidate: "1"}\n', ""),
     r"^models\.yaml: entry 'resnet50': aliases\.default is required with several versions"),
    (VERSIONED.replace('champion: "2"', '"1": "2"'),
     r"^models\.yaml: entry 'resnet50': aliases must be keyed by identifiers"),
    (VERSIONED.replace("precision: int8", "batch_size: 4"),
     r"^models\.yaml: entry 'resnet50': unknown field 'versions\.2\.batch_size' \(known: onnx, sha256, source, "),
    (VERSIONED.replace("    versions:", "    onnx: models/x.onnx\n    versions:"),
     r"^models\.yaml: entry 'resnet50': onnx belongs to each version when the entry has versions:"),
    (GOOD_ENTRY + "    aliases: {default: '1'}\n",
     r"^models\.yaml: entry 'resnet50': aliases need versions:"),
    (VERSIONED.replace('"2": {onnx', '"two words": {onnx'),
     r"^models\.yaml: entry 'resnet50': versions\.two words must be named with letters, digits"),
    (VERSIONED.replace('input: {resize: 232}', 'input: {resize: 100}'),
     r"^models\.yaml: entry 'resnet50' version '2': input\.resize must be 'stretch' or an integer >= the shorter"),
]


@pytest.mark.parametrize("entry,message", VERSION_ERRORS, ids=[m[1][36:80] for m in VERSION_ERRORS])
def test_bad_versions_and_aliases_are_one_line(tmp_path, entry, message):
    with pytest.raises(CatalogError, match=message) as caught:
        catalog_with(tmp_path, entry)
    assert "\n" not in str(caught.value)
