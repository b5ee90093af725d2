"""A caller's own ``torch.nn.Module`` (the Python API's ``model=``) exported to ONNX bytes.

Torch stays here, in the build package: :mod:`sql_dl.api.sources` writes the bytes, ships them and
compares the runtime's answers with the PyTorch outputs returned here.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UsageError, first_line
from .export import torch_to_onnx


def torch_outputs(module: Any, inputs: list, what: str) -> list[np.ndarray]:
    import torch

    shapes = ", ".join(str(list(x.shape)) for x in inputs)
    try:
        with torch.no_grad():
            result = module(*[torch.from_numpy(x) for x in inputs])
    except Exception as exc:  # noqa: BLE001 - a user's model: report its failure in one line
        raise UsageError(f"{what}: the torch model cannot run on inputs of shape {shapes}: "
                         f"{first_line(exc, typed=True)}") from None
    result = result if isinstance(result, (tuple, list)) else (result,)
    if not result or not all(isinstance(t, torch.Tensor) for t in result):
        raise UsageError(f"{what}: the torch model must return a tensor or a tuple of tensors, "
                         f"got {type(result).__name__}")
    return [t.detach().cpu().numpy() for t in result]


def export_user_module(module: Any, inputs: list, input_names: list, name_outputs: Callable[[int], list],
                       what: str) -> tuple[bytes, list[str], list[np.ndarray]]:
    """(ONNX bytes, output names, PyTorch's outputs on ``inputs``) for ``module`` run in eval mode; every
    submodule's train/eval mode is restored afterwards. The export traces the first two rows."""
    import torch

    modes = {part: part.training for part in module.modules()}  # restored as they were, part by part
    module.eval()
    try:
        expected = torch_outputs(module, inputs, what)
        names = name_outputs(len(expected))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            torch_to_onnx(module, tuple(torch.from_numpy(x[:2]) for x in inputs), path, input_names, names,
                          f"the torch model of {what}")
            return path.read_bytes(), names, expected
    finally:
        for part, training in modes.items():
            part.training = training
