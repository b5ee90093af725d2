"""Source-level guarantees of SECURITY.md: nothing in the package or its hooks can unpickle a file, load YAML
unsafely, or load torch weights as arbitrary pickles."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.joinpath("sql_dl").rglob("*.py"), *ROOT.joinpath("udfs").rglob("*.py"),
                  *ROOT.joinpath("bench").rglob("*.py")])

FORBIDDEN = [
    (r"\bpickle\.loads?\(|\bcloudpickle\.loads?\(|\bdill\.", "unpickling"),
    (r"\byaml\.(load|load_all|unsafe_load|full_load)\((?!.*Loader=_StrictLoader)", "YAML without the safe loader"),
    (r"\btorch\.load\((?!.*weights_only=True)", "torch.load without weights_only=True"),
    (r"allow_pickle=True", "numpy loading pickles"),
    (r"(?<![.\w])(eval|exec)\(", "eval/exec"),
    (r"\bshell=True", "a shell"),
]


@pytest.mark.parametrize("pattern, what", FORBIDDEN, ids=[w for _, w in FORBIDDEN])
def test_no_unsafe_loading_anywhere(pattern, what):
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in SOURCES for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not offenders, f"{what} in {offenders}"


def test_the_scan_sees_the_package():
    names = {p.name for p in SOURCES}
    assert {"catalog.py", "export.py", "images.py", "server.py", "decoders.py"} <= names
    assert re.search(FORBIDDEN[2][0], "state = torch.load(path)")  # the patterns do catch offenders
    assert not re.search(FORBIDDEN[2][0], 'torch.load(str(path), map_location="cpu", weights_only=True)')
