"""The executor path imports no torch: executors need only onnxruntime, numpy, pillow, pyarrow, pyspark, pyyaml."""
from __future__ import annotations

import subprocess
import sys


def test_executor_modules_do_not_import_torch():
    code = ("import sys, sql_dl, sql_dl.udfs, sql_dl.runtime, sql_dl.images, sql_dl.outputs, sql_dl.registry\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'onnx', 'efficientnet_lite_pytorch') if m in sys.modules)\n"
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_install_requires_lists_no_export_packages():
    from importlib.metadata import requires

    base = [r for r in requires("sql-dl") if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in base}
    assert names == {"pyspark", "onnxruntime", "numpy", "pillow", "pyarrow", "pandas", "pyyaml", "click"}
