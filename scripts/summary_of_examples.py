"""Run the summary-of-care reader on the ANS CI-SIS example documents, where they are present.

Those examples carry no licence and stay out of the repository (tests use documents written for
the project in the same structure, tests/summary_fixtures.py). This prints, for each example
found, the lines the summary reads from it, as docs/summary.md shows them.

    python3 scripts/summary_of_examples.py FOLDER   # a folder holding the ANS CI-SIS examples
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from dmp.domain.summary import extract

EXAMPLES = (
    "VSM_1.4_2022.01.xml",
    "VAC_2023.01.xml",
    "BIO-CR-BIO_2024.01_TSH_1.xml",
    "CNAM-HR_2021.01.xml",
)


def main() -> int:
    if len(sys.argv) != 2:
        print(
            "usage: summary_of_examples.py FOLDER (a copy of the ANS CI-SIS examples)",
            file=sys.stderr,
        )
        return 2
    folder = Path(sys.argv[1])
    found = [folder / name for name in EXAMPLES if (folder / name).is_file()]
    if not found:
        print(f"no ANS example found in {folder}", file=sys.stderr)
        return 1
    for path in found:
        print(f"{path.name}:")
        for e in extract(path.read_bytes(), date.today()):
            detail = f" — {e.detail}" if e.detail else ""
            code = f" [{e.code[0]}|{e.code[1]}]" if e.code else ""
            print(f"  {e.kind:<11} {e.label}{detail} ({e.on or 'date non précisée'}){code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
