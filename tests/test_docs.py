"""The manual stays true: the CLI reference is the commands' real --help, every catalog field and function
kind is documented, and the docs speak of the product, not of how it was built."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from sql_dl.catalog import DEFAULT_FIELDS, ENTRY_FIELDS, INPUT_FIELDS
from sql_dl.cli.reference import commands, render
from sql_dl.executor.kinds import KINDS, ROLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_cli_reference_is_generated_from_the_real_help():
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == render(), "docs/cli.md is stale: run `make docs`"


def test_readme_names_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name, _ in commands()[1:] if name not in readme]
    assert missing == [], f"README's command synopsis lacks {missing}"


def test_catalog_reference_documents_every_field_and_kind():
    text = (DOCS / "catalog.md").read_text(encoding="utf-8")
    fields = {"version", "defaults", "models", *DEFAULT_FIELDS, *ENTRY_FIELDS, *INPUT_FIELDS, *ROLES, "scores_are",
              *(name for name, kind in KINDS.items() if kind.per_entry)}
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert missing == [], f"docs/catalog.md does not document {missing}"


HISTORY = re.compile(r"\b(in session \d|sessions? \d+(-\d+)?\b|this run|the run before|the issue|"
                     r"so far|the default then)", re.I)


def _prose_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "bench" / "NOTES.md", *DOCS.glob("*.md")]
    return files + sorted((ROOT / "sql_dl").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))


@pytest.mark.parametrize("path", _prose_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_and_comments_describe_the_product_not_its_history(path):
    hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if HISTORY.search(line)]
    assert hits == []
