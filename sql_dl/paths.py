"""Per-user folders (XDG base directories), so no command writes into whatever directory it runs from."""
from __future__ import annotations

import os
from pathlib import Path


def user_dir(kind: str, fallback: str) -> Path:
    """``$XDG_<kind>_HOME/sql-dl``, else ``~/<fallback>/sql-dl``; kind is STATE (logs, what was said) or DATA."""
    base = os.environ.get(f"XDG_{kind}_HOME") or str(Path.home() / fallback)
    return Path(base) / "sql-dl"


def state_dir() -> Path:
    return user_dir("STATE", ".local/state")


def data_dir() -> Path:
    return user_dir("DATA", ".local/share")
