"""``python -m sql_dl.extension CATALOG OUT [EVENT_LOG ON_ERROR MODEL_DIRS BACKEND]``: run by the JVM half of the
extension. Exit code 0 and the record file, or 1 and one line on stderr saying what is wrong."""
from __future__ import annotations

import sys

from ..errors import SqlDlError
from ..registry.tasks import Settings
from ..registry.records import prepare


def main(argv: list[str]) -> int:
    catalog, out, *rest = argv
    event_log, on_error, model_dirs, backend = (rest + ["", "", "", ""])[:4]
    try:
        prepare(catalog, out, Settings(event_log or None, on_error or None, model_dirs or None, backend or None))
    except SqlDlError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
