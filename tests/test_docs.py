"""The documentation shows what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from dmp.access.matrix import load_matrix
from dmp.access.matrix_doc import matrix_table
from dmp.access.policy import Reason

DOCS = Path(__file__).resolve().parents[1] / "docs"
TESTS = Path(__file__).resolve().parent


def test_matrix_table_in_access_rules_is_current() -> None:
    text = (DOCS / "access-rules.md").read_text(encoding="utf-8")
    embedded = text.split("<!-- matrix-table:start -->\n", 1)[1].split(
        "\n<!-- matrix-table:end -->"
    )[0]
    assert embedded == matrix_table(load_matrix())


def test_every_reason_code_is_documented() -> None:
    text = (DOCS / "access-rules.md").read_text(encoding="utf-8")
    undocumented = [r.value for r in Reason if f"`{r.value}`" not in text]
    assert undocumented == []


def test_tests_named_in_access_rules_exist() -> None:
    text = (DOCS / "access-rules.md").read_text(encoding="utf-8")
    names = set(re.findall(r"`(test_[a-z0-9_]+)", text))
    defined = set()
    for path in TESTS.glob("test_*.py"):
        defined |= set(
            re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(encoding="utf-8"), re.M)
        )
    assert names, "no test named in docs/access-rules.md"
    assert names - defined == set()


def test_readme_lists_every_setting() -> None:
    from dmp.config import ENVIRONMENT_VARIABLES

    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    missing = [env for env, _, _ in ENVIRONMENT_VARIABLES if f"`{env}`" not in readme]
    assert missing == []
