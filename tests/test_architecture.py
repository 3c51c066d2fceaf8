"""docs/architecture.md's tree is the code's: every module of src/dmp is listed where it is, and
every listed module exists (issue 22: the tree missed web/ and eight modules)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dmp"
ENTRY = re.compile(r"^( {2}| {4})(\S+)\s")


def _doc() -> str:
    return (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _listed(text: str) -> set[str]:
    block = text.split("```\nsrc/dmp/\n", 1)[1].split("```", 1)[0]
    listed: set[str] = set()
    package = ""
    for line in block.splitlines():
        m = ENTRY.match(line)
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent == 2:
            package = name if name.endswith("/") else ""
            listed.add(name)
        else:
            assert package, f"{name} is indented under no package"
            listed.add(package + name)
    return listed


def _code() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if path.name == "__init__.py" or rel.startswith("records/migrations/"):
            continue
        found.add(rel)
    for init in SRC.glob("*/__init__.py"):
        found.add(init.parent.name + "/")
    if (SRC / "records" / "migrations").is_dir():
        found.add("records/migrations/")
    return found


def test_the_tree_in_the_docs_is_the_tree_of_the_code() -> None:
    listed, code = _listed(_doc()), _code()
    assert code - listed == set(), "modules missing from docs/architecture.md"
    assert listed - code == set(), "docs/architecture.md lists modules that do not exist"


def test_the_comparison_sees_a_module_left_out_or_made_up() -> None:
    text = _doc()
    kernel = next(line for line in text.splitlines() if line.startswith("    kernel.py "))
    without = text.replace(kernel + "\n", "")
    assert "access/kernel.py" in _code() - _listed(without)
    invented = text.replace(kernel, kernel + "\n    gate.py               the old name")
    assert "access/gate.py" in _listed(invented) - _code()
