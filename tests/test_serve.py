"""`dmp serve` for real: a process on loopback, migrations under a lock, JSON logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from dmp.config import Settings
from dmp.records.database import head_revision


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "DMP_DATA_DIR": str(settings.data_dir), "DMP_TEST_MODE": "true"}
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    return env


def test_serve_answers_health_and_logs_json(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        _run_server(settings, port, log, log_path)
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    requests = [x for x in lines if x.get("message") == "request"]
    assert {x["route"] for x in requests} >= {"/health", "/api/records/{ins}"}
    assert all("request_id" in x for x in requests)
    # The raw path (holding an INS) never reaches the log.
    assert "170013700310003" not in json.dumps(lines)
    assert (settings.data_dir / "keyring.json").exists()


def _run_server(settings: Settings, port: int, log: IO[str], log_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port)],
        env=_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json()["database"]["migration"] == head_revision()
        assert r.headers["x-request-id"]
        assert "server" not in r.headers  # no banner naming the server software
        assert r.headers["x-content-type-options"] == "nosniff"
        api = httpx.get(f"http://127.0.0.1:{port}/api/records/170013700310003", timeout=2)
        assert api.headers["cache-control"] == "no-store" and "server" not in api.headers
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_server_process_takes_its_startup_objects_out_of_the_collector(
    settings: Settings,
) -> None:
    """The factory `dmp serve` runs in each worker freezes what startup built, so that the
    cyclic collector's full passes no longer walk it (passes of about 110 ms were the
    consultation's p99 on SQLite, docs/performance.md)."""
    code = (
        "import gc\n"
        "from dmp.config import load_settings\n"
        "from dmp.runtime import Runtime\n"
        "Runtime.start(load_settings()).close()  # migrated, as `dmp serve` does first\n"
        "from dmp.app import app_from_env\n"
        "before = gc.get_freeze_count()\n"
        "app_from_env()\n"
        "print(before, gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = (int(n) for n in done.stdout.split()[-2:])
    assert before == 0 and after > 50_000, done.stdout


def test_concurrent_migrations_do_not_collide(settings: Settings) -> None:
    env = _env(settings)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dmp.cli", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    url = settings.effective_database_url
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            == head_revision()
        )
    engine.dispose()


def test_the_expected_revision_is_alembics_head() -> None:
    """Start-up skips Alembic when the schema is at EXPECTED_REVISION: it must be the head."""
    from dmp.records import database

    assert database.head_revision() == database.EXPECTED_REVISION


def test_a_second_server_on_a_busy_port_says_so_and_ctrl_c_stops_cleanly(
    settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    first = subprocess.Popen(
        [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port)],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and first.poll() is None, "did not start"
                time.sleep(0.2)
        # The README's restart in test mode while the first server runs.
        second = subprocess.run(
            [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port)],
            env=_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert f"error: 127.0.0.1:{port} is already in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(2)  # Ctrl-C
        _, err = first.communicate(timeout=20)
    assert first.returncode == 0, err
    assert "error: " not in err and "interrupted" not in err and "Traceback" not in err
    assert "dmp: stopped" in err


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "did not start"
        time.sleep(0.2)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_before_the_server_stops(settings: Settings, workers: int) -> None:
    """DMP_DRAIN_SECONDS: after SIGTERM, /health says 503 (a balancer takes the node out) while
    every other request is still served; the server stops when the drain time is over."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env={**_env(settings), "DMP_DRAIN_SECONDS": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(port, proc)
        proc.terminate()
        stopped_at = time.monotonic()
        seen: list[tuple[float, int]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            # A new connection each time: with two workers, either may answer.
            while time.monotonic() - stopped_at < 2.0:
                health = client.get("/health", headers={"connection": "close"})
                seen.append((time.monotonic() - stopped_at, health.status_code))
                assert client.get("/fhir/metadata").status_code == 200  # still serving
                time.sleep(0.1)
        # The supervisor passes SIGTERM on to its workers (it looks every 0.5 s): from then
        # on, only 503.
        first = next(i for i, (_, status) in enumerate(seen) if status == 503)
        assert seen[first][0] < 1.0, seen
        assert {status for _, status in seen[first:]} == {503}, seen
        assert len(seen) - first >= 5, seen
        assert proc.wait(timeout=30) is not None
        assert time.monotonic() - stopped_at >= 2.5  # it waited for the drain
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
