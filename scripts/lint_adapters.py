#!/usr/bin/env python3
"""Adapters get a gate bound to their grant, or a narrow object; never the runtime or the engine.

    python3 scripts/lint_adapters.py [SRC_DIR]     # default: src/dmp; exit 1 on a finding

An adapter module (the HTTP APIs, the FHIR API, the portal and statistics pages, the `dmp`
command, the front door they share) may not import ``dmp.runtime``, name ``Runtime``, or touch
an ``.engine``: routes get a gate or a narrow object from ``front/deps.py``, commands an
``Operator`` (``jobs/operator.py``). The dependency module and the application wiring
(``app.py``) are the only exceptions. import-linter keeps the adapters away from the records
layer and SQLAlchemy; this keeps them away from the objects that hold the database and the keys.

Second rule, for the whole of ``src/dmp``: only the kernel writes audit events. The writers of
``dmp.access.audit`` (``write``, ``write_events``, ``write_denial``) are called from
``access/kernel.py`` alone, and the records layer's append (``audit_log.append_after``) from
``access/audit.py`` alone: a job's event goes through ``Kernel.act_system``, in the transaction
of its work.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ADAPTERS = ("api", "fhir", "xds", "web", "cli", "front")
ALLOWED = {"front/deps.py"}
AUDIT_WRITERS = {"write", "write_events", "write_denial"}
KERNEL = "access/kernel.py"
AUDIT = "access/audit.py"


def _imports_runtime(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "dmp.runtime"
    return isinstance(node, ast.Import) and any(a.name == "dmp.runtime" for a in node.names)


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
                    problem = "imports dmp.runtime"
                elif isinstance(node, ast.Name) and node.id == "Runtime":
                    problem = "names Runtime"
                elif isinstance(node, ast.Attribute) and node.attr == "engine":
                    problem = "touches an engine"
                if problem:
                    out.append(f"{rel}:{getattr(node, 'lineno', 0)}: {problem}")
    return out


def _aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """The local names bound to ``dmp.access.audit`` and to ``dmp.records.audit_log``."""
    audit, audit_log = {"audit"}, {"audit_log"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("dmp.access", "dmp.records"):
            for a in node.names:
                if (node.module, a.name) == ("dmp.access", "audit"):
                    audit.add(a.asname or a.name)
                elif (node.module, a.name) == ("dmp.records", "audit_log"):
                    audit_log.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "dmp.access.audit" and a.asname:
                    audit.add(a.asname)
                elif a.name == "dmp.records.audit_log" and a.asname:
                    audit_log.add(a.asname)
    return audit, audit_log


def _audit_write(node: ast.AST, rel: str, audit: set[str], audit_log: set[str]) -> str | None:
    """What a node does that only the kernel may: write an audit event."""
    if rel == AUDIT:
        return None
    if rel == KERNEL:
        # The kernel calls the writers; it does not append rows itself.
        if isinstance(node, ast.Attribute) and node.attr == "append_after":
            return "appends audit rows itself"
        return None
    if isinstance(node, ast.ImportFrom) and node.module in (
        "dmp.access.audit",
        "dmp.records.audit_log",
    ):
        names = {a.name for a in node.names} & (AUDIT_WRITERS | {"append_after"})
        if names:
            return f"imports the audit writer {sorted(names)[0]}"
    if isinstance(node, ast.Attribute):
        owner = node.value.id if isinstance(node.value, ast.Name) else None
        if owner in audit and node.attr in AUDIT_WRITERS:
            return f"writes an audit event (audit.{node.attr})"
        if owner in audit_log and node.attr == "append_after":
            return "appends audit rows (audit_log.append_after)"
    return None


def audit_findings(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("records/"):
            continue  # the records layer defines the append; it calls nothing above it
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        audit, audit_log = _aliases(tree)
        for node in ast.walk(tree):
            problem = _audit_write(node, rel, audit, audit_log)
            if problem:
                out.append(f"{rel}:{getattr(node, 'lineno', 0)}: {problem}")
    return out


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "src" / "dmp"
    found = findings(root)
    audit_found = audit_findings(root)
    for line in found + audit_found:
        print(line)
    if found:
        print("adapters get a gate or a narrow object, never the runtime or the engine")
    if audit_found:
        print("only the kernel writes audit events: use Kernel.act_system for a job's event")
    if found or audit_found:
        return 1
    print(f"adapter lint: {', '.join(ADAPTERS)} reach no runtime and no engine")
    print("audit lint: only the kernel (access/kernel.py) writes audit events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
