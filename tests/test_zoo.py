"""Every catalog entry exports from PyTorch to ONNX and matches PyTorch; preprocessing stays as the weights say."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CATALOG, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.cli.command import main
from sql_dl.errors import ExportError

torch = pytest.importorskip("torch")  # the export extra; `make test` installs it
from sql_dl.build.export import build_torch_model, export_onnx  # noqa: E402
from sql_dl.build.zoo import entry  # noqa: E402

FEATURES = {"efficientnet_lite0": 1280, "inception": 2048, "xception": 2048, "resnet50": 2048, "vgg16": 4096,
            "vgg19": 4096, "resnet18": 512, "mobilenet_v3_large": 1280, "efficientnet_b0": 1280,
            "convnext_tiny": 768, "vit_b_16": 768, "efficientnet_lite0_int8": 1280,
            "efficientnet_lite0_int8_nncf": 1280, "efficientnet_lite0_bf16": 1280}
SPECS = list(load_catalog(CATALOG))


def test_the_catalog_offers_deep_learning_pipelines_models_and_modern_ones():
    assert set(FEATURES) == {spec.name for spec in SPECS}
    assert "predict_inception" in load_catalog(CATALOG).get("inception").functions.values()


@pytest.mark.parametrize("spec", [s for s in SPECS if s.source.get("exporter") != "efficientnet_lite0"],
                         ids=lambda s: s.name)
def test_export_with_random_weights_matches_pytorch(spec, tmp_path):
    import onnxruntime as ort

    path = export_onnx(spec, "random", tmp_path)  # raises unless rel. error < 1e-4 and top-5 identical
    record = json.loads((tmp_path / f"{path.name}.json").read_text())
    assert record["max_relative_error"] < 1e-4
    assert (record["classes"], record["features"]) == (1000, FEATURES[spec.name])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str), "the batch dimension is dynamic"
    for batch in (1, 3):
        image = np.random.default_rng(batch).standard_normal((batch, 3, *spec.input.size), dtype=np.float32)
        logits, features = session.run(None, {"image": image})
        assert logits.shape == (batch, 1000) and features.shape == (batch, FEATURES[spec.name])
    assert np.ptp(logits) > 0, "random weights give non-degenerate outputs"
    path.unlink()  # VGG files are 550 MB


@pytest.mark.parametrize("spec", [s for s in SPECS if s.source.get("exporter") in ("torchvision", "timm")],
                         ids=lambda s: s.name)
def test_preprocessing_equals_the_weights_own_metadata(spec):
    expected = entry(spec.name, spec.source["exporter"], spec.source["arch"], spec.source["weights"]
                     if spec.source["exporter"] == "torchvision" else "DEFAULT")["input"]
    actual = spec.input
    assert list(actual.size) == expected["size"] and actual.resize == expected["resize"]
    assert actual.interpolation == expected["interpolation"] and actual.crop == expected["crop"]
    assert list(actual.mean) == expected["mean"] and list(actual.std) == expected["std"]
    assert actual.scale == pytest.approx(1 / 255)


def test_models_new_prints_an_entry_from_metadata(tmp_path):
    result = CliRunner().invoke(main, ["models", "new", "r50", "--exporter", "torchvision", "--arch", "resnet50",
                                       "--weights", "IMAGENET1K_V1"])
    assert result.exit_code == 0
    spec = load_catalog(write_catalog(tmp_path, "models:\n" + result.output)).get("r50")
    assert spec.input.resize == 256 and spec.source["weights"] == "IMAGENET1K_V1"


def test_verify_command_agrees_and_catches_other_weights(tmp_path):
    spec = load_catalog(CATALOG).get("resnet18")
    export_onnx(spec, "random", tmp_path)
    catalog = write_catalog(tmp_path, "models:\n  resnet18:\n    onnx: resnet18.onnx\n    source: {exporter: torchvision, arch: resnet18}\n"
                              "    input: {size: [224, 224], resize: 256}\n    outputs: {scores: logits, features: features}\n")
    result = CliRunner().invoke(main, ["models", "verify", "resnet18", "--catalog", str(catalog)])
    assert result.exit_code == 0 and result.output.startswith("resnet18: 8 inputs, max relative error")
    assert result.output.rstrip().endswith("top-5 agreement 100% (ok)")
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(__import__("torchvision").models.resnet18().state_dict(), other)
    result = CliRunner().invoke(main, ["models", "verify", "resnet18", "--weights", str(other), "--catalog", str(catalog)])
    assert result.exit_code == 1 and "(MISMATCH)" in result.output


def test_unknown_timm_architecture_is_one_line(tmp_path):
    catalog = write_catalog(tmp_path, "models:\n  m:\n    onnx: m.onnx\n    source: {exporter: timm, arch: nope_net}\n"
                                      "    input: {size: [224, 224]}\n    outputs: {scores: logits}\n")
    with pytest.raises(ExportError, match=r"^models\.yaml: entry 'm': source\.arch 'nope_net' is not a timm model$"):
        export_onnx(load_catalog(catalog).get("m"), "random", tmp_path)


def test_unreachable_timm_download_is_one_line(tmp_path, monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(ExportError, match=r"^cannot download timm weights for 'xception' \(\w+\); offline, pass "
                                          r"--weights PATH"):
        build_torch_model(load_catalog(CATALOG).get("xception"), "pretrained")


def test_random_weights_are_reproducible_for_verify():
    spec = load_catalog(CATALOG).get("resnet18")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        first, second = (build_torch_model(spec, "random")(x)[0] for _ in range(2))
    assert torch.equal(first, second)
