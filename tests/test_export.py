"""Exports are checked against PyTorch; every way an export can go wrong is one clear line."""
from __future__ import annotations

import pytest

from conftest import CATALOG, EFFICIENTNET_ONNX, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.errors import ExportError
from sql_dl.samples.photos import sample_photos

torch = pytest.importorskip("torch")  # the export extra; `make test` installs it
from sql_dl.build.export import build_torch_model, export_onnx, verify  # noqa: E402


def test_efficientnet_lite0_onnx_matches_pytorch_on_real_photos():
    spec = load_catalog(CATALOG).get("efficientnet_lite0")
    result = verify(spec, build_torch_model(spec, "pretrained"), EFFICIENTNET_ONNX)
    assert result.inputs == len(sample_photos()) + 1 >= 6
    assert result.max_relative_error < 1e-4
    assert result.top5_agreement == 1.0


def test_efficientnet_lite0_pretrained_weights_recognise_the_photos():
    """Real weights, not random ones: the cat and the espresso are recognised by the PyTorch model."""
    from sql_dl.executor.images import decode_bytes, resize_and_crop, to_tensor
    from sql_dl.executor.outputs import load_labels

    spec = load_catalog(CATALOG).get("efficientnet_lite0")
    model = build_torch_model(spec, "pretrained")
    photos = {p.stem: p for p in sample_photos()}
    batch = to_tensor(__import__("numpy").stack([resize_and_crop(decode_bytes(photos[n].read_bytes()), spec.input)
                                                 for n in ("chelsea", "coffee")]), spec.input)
    with torch.no_grad():
        logits = model(torch.from_numpy(batch))[0]
    labels = [load_labels("imagenet")[i] for i in logits.argmax(1)]
    assert labels[0] in {"tabby", "tiger cat", "Egyptian cat"} and labels[1] == "espresso"


def test_inception_exports_with_random_weights_and_verifies(tmp_path):
    spec = load_catalog(CATALOG).get("inception")
    path = export_onnx(spec, "random", tmp_path)
    assert path == tmp_path / "inception_v3.onnx"
    record = __import__("json").loads((tmp_path / "inception_v3.onnx.json").read_text())
    assert len(record["sha256"]) == 64 and record["weights"] == "random"
    assert (record["classes"], record["features"]) == (1000, 2048)


def test_unknown_architecture_is_one_line(tmp_path):
    catalog = write_catalog(tmp_path, "models:\n  m:\n    onnx: m.onnx\n    source: {exporter: torchvision, arch: "
                                      "resnet_9000}\n    input: {size: [224, 224]}\n    outputs: {scores: logits}\n")
    with pytest.raises(ExportError, match=r"^models\.yaml: entry 'm': source\.arch 'resnet_9000' is not a "
                                          r"torchvision classification model$"):
        export_onnx(load_catalog(catalog).get("m"), "random", tmp_path)


def test_unknown_exporter_is_one_line(tmp_path):
    catalog = write_catalog(tmp_path, "models:\n  m:\n    onnx: m.onnx\n    input: {size: [224, 224]}\n"
                                      "    outputs: {scores: logits}\n")
    with pytest.raises(ExportError, match=r"entry 'm': source\.exporter must be one of \['efficientnet_lite0', "
                                          r"'timm', 'torchvision'\] to export it here, got None"):
        export_onnx(load_catalog(catalog).get("m"), "random", tmp_path)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    spec = load_catalog(CATALOG).get("inception")
    with pytest.raises(ExportError, match=r"^weights do not match inception_v3: \d+ missing \(e\.g\. .+\), "
                                          r"\d+ unexpected \(e\.g\. .+\)"):
        export_onnx(spec, str(weights), tmp_path)


def test_weights_file_that_is_not_weights(tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ExportError, match=r"cannot read weights .*bogus\.pth"):
        export_onnx(load_catalog(CATALOG).get("efficientnet_lite0"), str(bogus), tmp_path)


def test_unreachable_download_is_one_line(tmp_path, monkeypatch):
    # A real download attempt through a proxy port nothing listens on: fails the same way as offline.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ExportError, match=r"^cannot download torchvision weights for 'inception' \(.*\); offline, "
                                          r"pass --weights PATH"):
        export_onnx(load_catalog(CATALOG).get("inception"), "pretrained", tmp_path)
