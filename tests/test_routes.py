"""Structural guarantees: every route reaches patient data only through the gate."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Route

from dmp.app import create_app
from dmp.front.deps import PUBLIC_ROUTES
from dmp.runtime import Runtime

SRC = Path(__file__).resolve().parents[1] / "src" / "dmp"


def _depends_on_gate(dependant: Dependant) -> bool:
    """True when the route depends on an access gate (``__dmp_gate__``): the JSON API's, or a
    FHIR one bound to scopes."""
    return any(
        getattr(d.call, "__dmp_gate__", False) or _depends_on_gate(d)
        for d in dependant.dependencies
    )


def _walk(routes: Iterable[object]) -> Iterator[object]:
    """Every route, descending into included routers (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None) or getattr(route, "app", None)
        if inner is not None and hasattr(inner, "routes") and not isinstance(route, Route):
            yield from _walk(inner.routes)
        else:
            yield route


def test_every_route_is_public_by_name_or_goes_through_the_gate(rt: Runtime) -> None:
    app = create_app(rt)
    checked = 0
    for route in _walk(app.routes):
        assert isinstance(route, Route), f"unexpected route type {type(route).__name__}"
        if route.name in PUBLIC_ROUTES:
            continue
        assert isinstance(route, APIRoute), f"route {route.path} is not an API route"
        assert _depends_on_gate(route.dependant), f"route {route.name} bypasses the access gate"
        checked += 1
    assert checked >= 8  # the walk did see the record routes


def test_public_routes_exist_and_are_few(rt: Runtime) -> None:
    names = {r.name for r in _walk(create_app(rt).routes) if isinstance(r, Route)}
    assert "health" in names
    assert PUBLIC_ROUTES - names <= {"redoc_html", "swagger_ui_redirect"}


def test_only_the_gate_creates_authorized_patient() -> None:
    """AuthorizedPatient is the proof of a policy decision: constructed by the kernel only."""
    creators = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name == "AuthorizedPatient":
                    creators.append(path.relative_to(SRC).as_posix())
    assert creators and set(creators) == {"access/kernel.py"}


def _direct_calls(dependant: Dependant) -> Iterator[object]:
    for d in dependant.dependencies:
        yield d.call


def test_no_route_takes_the_runtime(rt: Runtime) -> None:
    """Routes get a gate bound to their grant, or a narrow object (the token endpoint, the
    public statistics); never the runtime, which holds the engine and the key ring."""
    from dmp.front import deps

    app = create_app(rt)
    for route in _walk(app.routes):
        if not isinstance(route, APIRoute):
            continue
        assert deps.runtime not in set(_direct_calls(route.dependant)), route.name
        hints = getattr(route.endpoint, "__annotations__", {})
        assert not any("Runtime" in str(h) for h in hints.values()), route.name


def test_the_adapter_lint_passes_and_catches_a_runtime(tmp_path: Path) -> None:
    """scripts/lint_adapters.py (run by ./scripts/check) fails on an adapter module that
    reaches the runtime or the engine."""
    import subprocess
    import sys

    script = SRC.parents[1] / "scripts" / "lint_adapters.py"
    ok = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "dmp" / "fhir"
    bad.mkdir(parents=True)
    (bad / "routes.py").write_text(
        "from dmp.runtime import Runtime\n\ndef f(rt: Runtime) -> None:\n    rt.engine.dispose()\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "dmp")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "fhir/routes.py:1" in out.stdout and "fhir/routes.py:4" in out.stdout


@pytest.mark.parametrize(
    ("where", "code", "finding"),
    [
        (
            "jobs/backup.py",
            "from dmp.access import audit\n\ndef f(conn):\n    audit.write(conn, action=1)\n",
            "jobs/backup.py:4: writes an audit event (audit.write)",
        ),
        (
            "jobs/directory.py",
            "from dmp.access.audit import write_events\n",
            "jobs/directory.py:1: imports the audit writer write_events",
        ),
        (
            "jobs/letters.py",
            "from dmp.access import audit as trail\n\ndef f(conn):\n    trail.write(conn)\n",
            "jobs/letters.py:4: writes an audit event (audit.write)",
        ),
        (
            "access/portal.py",
            "from dmp.records import audit_log\n\ndef f(c):\n"
            "    audit_log.append_after(c, 1, 2, [])\n",
            "access/portal.py:4: appends audit rows (audit_log.append_after)",
        ),
    ],
)
def test_the_audit_lint_catches_a_writer_outside_the_kernel(
    tmp_path: Path, where: str, code: str, finding: str
) -> None:
    """Only the kernel writes audit events (issue 22): a job or a module of the gate that
    writes one by hand fails scripts/lint_adapters.py; the kernel itself passes."""
    import subprocess
    import sys

    script = SRC.parents[1] / "scripts" / "lint_adapters.py"
    root = tmp_path / "dmp"
    (root / where).parent.mkdir(parents=True)
    (root / where).write_text(code, encoding="utf-8")
    (root / "access").mkdir(exist_ok=True)
    (root / "access" / "kernel.py").write_text(
        "from dmp.access import audit\n\ndef f(conn):\n    audit.write_events(conn, [])\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    assert finding in out.stdout, out.stdout
    assert "access/kernel.py" not in out.stdout


def test_an_adapter_reaching_a_private_attribute_fails_the_lint() -> None:
    """``access._rt.keyring`` in an adapter passed both linters (issue 22); ruff's SLF001,
    configured in pyproject.toml for src/, now refuses it (tests may look inside)."""
    import shutil
    import subprocess
    import sys

    root = SRC.parents[1]
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    code = "def f(access):\n    return access._rt.keyring\n"
    out = subprocess.run(
        [ruff, "check", "--stdin-filename", "src/dmp/fhir/leak.py", "-"],
        input=code,
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert out.returncode == 1
    assert "SLF001" in out.stdout, out.stdout
