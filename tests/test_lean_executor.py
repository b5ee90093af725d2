"""The layout keeps its promises: only sql_dl.build imports torch; only the backends module touches the
model runtime's inference objects; executors need only the base dependencies."""
from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sql_dl

PACKAGE = Path(sql_dl.__file__).parent
HEAVY = ("torch", "torchvision", "onnx", "timm", "efficientnet_lite_pytorch", "skimage", "sklearn", "nncf",
         "openvino")


def _modules(exclude: str) -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "sql_dl.")
            if not m.name.startswith(exclude)]


def test_every_module_outside_build_imports_without_torch():
    """Import every module but sql_dl.build.* (and the sample data, which needs the photos extra) in a fresh
    interpreter: none of them may pull in torch or the other export packages."""
    names = [n for n in _modules("sql_dl.build") if not n.startswith("sql_dl.samples")]
    assert "sql_dl.executor.kinds" in names and "sql_dl.cli.command" in names  # the walk really found them
    code = (f"import importlib, sys\nfor name in {names!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_only_the_backends_module_opens_models_with_a_runtime(runtime):
    """The runtime seam: other modules go through sql_dl.executor.backends (build-time quantization aside)."""
    allowed = {PACKAGE / "executor" / "backends.py", PACKAGE / "build" / "precision.py"}
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path not in allowed and re.search(rf"^\s*(import {runtime}|from {runtime})",
                                                      path.read_text(), re.M)]
    assert offenders == []
    precision = (PACKAGE / "build" / "precision.py").read_text()
    assert "InferenceSession" not in precision and f"import {runtime} as" not in precision
    assert "compile_model" not in precision and not re.search(r"^\s*(import|from) openvino", precision, re.M)


def test_install_requires_lists_no_export_packages():
    from importlib.metadata import requires

    base = [r for r in requires("sql-dl") if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in base}
    assert names == {"pyspark", "onnxruntime", "numpy", "pillow", "pyarrow", "pandas", "pyyaml", "click"}
