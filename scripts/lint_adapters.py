#!/usr/bin/env python3
"""Adapters get a gate bound to their grant, or a narrow object; never the runtime or the engine.

    python3 scripts/lint_adapters.py [SRC_DIR]     # default: src/dmp; exit 1 on a finding

An adapter module (the HTTP APIs, the FHIR API, the statistics pages, the `dmp` command) may not
import ``dmp.access.runtime``, name ``Runtime``, or touch an ``.engine``: routes get a gate or a
narrow object from ``api/deps.py``, commands an ``Operator`` (``jobs/operator.py``). The
dependency module and the application wiring (``app.py``) are the only exceptions. import-linter
keeps the adapters away from the records layer and SQLAlchemy; this keeps them away from the
objects that hold the database and the keys.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ADAPTERS = ("api", "fhir", "stats", "web", "cli")
ALLOWED = {"api/deps.py"}


def _imports_runtime(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "dmp.access.runtime"
    return isinstance(node, ast.Import) and any(a.name == "dmp.access.runtime" for a in node.names)


def findings(root: Path) -> list[str]:
    out: list[str] = []
    for package in ADAPTERS:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in ALLOWED:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                problem = None
                if _imports_runtime(node):
                    problem = "imports dmp.access.runtime"
                elif isinstance(node, ast.Name) and node.id == "Runtime":
                    problem = "names Runtime"
                elif isinstance(node, ast.Attribute) and node.attr == "engine":
                    problem = "touches an engine"
                if problem:
                    out.append(f"{rel}:{getattr(node, 'lineno', 0)}: {problem}")
    return out


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "src" / "dmp"
    found = findings(root)
    for line in found:
        print(line)
    if found:
        print("adapters get a gate or a narrow object, never the runtime or the engine")
        return 1
    print(f"adapter lint: {', '.join(ADAPTERS)} reach no runtime and no engine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
