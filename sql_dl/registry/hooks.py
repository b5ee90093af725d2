"""Load the decoder hooks a catalog names (``input.decoder: MODULE:FUNCTION`` -> ``udfs/MODULE.py``).

This is the only place catalog-named code is imported, and only from the
``udfs/`` folder beside the catalog. The module is registered with cloudpickle
to travel *by value*, so executors need neither the file nor a shared filesystem.

A decoder takes one cell's encoded bytes and returns an HxWx3 (RGB) or HxW (grey)
uint8 array; raising an exception marks that row NULL.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from ..errors import CatalogError


def load_decoder(reference: str, where: str) -> Callable[[bytes], object]:
    """``/abs/udfs/module.py:function`` -> the function, ready to be pickled by value."""
    from pyspark import cloudpickle

    path, _, name = reference.rpartition(":")
    module_name = f"sql_dl_udfs_{Path(path).stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - a user's module: report it in one line
            raise CatalogError(f"{where}: input.decoder: importing {Path(path).name} failed: "
                               f"{type(exc).__name__}: {exc}") from None
        sys.modules[module_name] = module
        cloudpickle.register_pickle_by_value(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise CatalogError(f"{where}: input.decoder: {Path(path).name} has no function {name!r}")
    return function
