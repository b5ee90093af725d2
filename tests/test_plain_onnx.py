"""Any ONNX image model works from a catalog entry alone: here an NHWC uint8 model with its own normalisation
and a probabilities output, made outside sql-dl's exporter, gives the same answers as the default entry."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import CATALOG, write_catalog
from sql_dl.catalog import load_catalog
from sql_dl.registry import register_catalog

torch = pytest.importorskip("torch")
from sql_dl.build.export import build_torch_model  # noqa: E402


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory):
    """EfficientNet-Lite0 taking raw uint8 NHWC pixels and returning softmax probabilities."""
    lite = build_torch_model(load_catalog(CATALOG).get("efficientnet_lite0"), "pretrained")

    class RawPixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lite = lite

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() - 127.0) / 128.0
            return torch.softmax(self.lite(x)[0], dim=1)

    folder = tmp_path_factory.mktemp("plain")
    example = torch.zeros(1, 224, 224, 3, dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(RawPixels().eval(), (example,), str(folder / "raw.onnx"), dynamo=False, input_names=["pixels"],
                          output_names=["probs"], dynamic_axes={"pixels": {0: "n"}, "probs": {0: "n"}},
                          opset_version=17)
    return folder


def test_nhwc_uint8_model_with_probabilities_from_an_entry_alone(spark, raw_model, photo_dir):
    catalog = write_catalog(raw_model, "models:\n  lite_raw:\n    onnx: raw.onnx\n"
                                       "    input: {size: [224, 224], resize: 256, layout: nhwc, dtype: uint8}\n"
                                       "    outputs: {scores: probs, scores_are: probabilities}\n")
    registered = register_catalog(spark, catalog)
    assert set(registered.functions) == {"predict_lite_raw", "predict_lite_raw_topk"}  # no features output
    rows = spark.sql(f"SELECT path, predict_lite_raw_topk(content, 3) AS raw, "
                     f"predict_efficientnet_lite0_topk(content, 3) AS ref FROM binaryFile.`{photo_dir}/*.jpg`").collect()
    assert len(rows) >= 7
    for row in rows:
        assert [t.label for t in row.raw] == [t.label for t in row.ref], row.path
        np.testing.assert_allclose([t.score for t in row.raw], [t.score for t in row.ref], atol=1e-4)
