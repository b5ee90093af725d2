"""Decoder hooks a catalog may name as ``input.decoder: decoders:FUNCTION``.

A decoder receives one row's bytes and returns an HxWx3 (RGB) or HxW (grey)
uint8 array; raising marks the row NULL. Hooks are the only code a catalog can
name, and only from this folder beside the catalog.
"""
from __future__ import annotations

import io

import numpy as np


def npy_image(data: bytes) -> np.ndarray:
    """A NumPy ``.npy`` file holding an HxW or HxWx3 image (any numeric dtype, scaled to 0..255)."""
    array = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle: .npy arrays only
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / ((high - low) or 1.0) * 255.0).round().astype(np.uint8)
    return array
