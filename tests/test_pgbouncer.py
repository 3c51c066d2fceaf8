"""Debian's PgBouncer in transaction pooling in front of PostgreSQL: ``dmp serve`` through it
(``DMP_DB_PREPARED_STATEMENTS=false``: PgBouncer 1.18 keeps no prepared statement across the
server connections it hands out), under publications and consultations from several clients;
migrations too go through it (their lock is transaction-level). Every request answers, every
acknowledged document is stored whole, once, and the audit trail verifies.

Runs in the PostgreSQL pass; .ci/run installs PgBouncer and fails if this test was skipped."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench import crash, nodes
from sqlalchemy.engine import make_url

from dmp.config import Settings
from tests.conftest import PG_URL, POSTGRES_ONLY
from tests.mail import free_port
from tests.pg_helpers import scratch_database

NEEDS_PGBOUNCER = "PgBouncer test: needs PgBouncer (apt-get install pgbouncer)"


def _config(root: Path, port: int, url: str) -> Path:
    u = make_url(url)
    (root / "userlist.txt").write_text(f'"{u.username}" "{u.password}"\n')
    config = root / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
{u.database} = host={u.host or "127.0.0.1"} port={u.port or 5432} dbname={u.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {root}/userlist.txt
pool_mode = transaction
default_pool_size = 6
max_client_conn = 200
logfile = {root}/pgbouncer.log
"""
    )
    return config


@contextlib.contextmanager
def pgbouncer(url: str) -> Iterator[str]:
    """PgBouncer on loopback in front of ``url``'s database; the URL through it."""
    root = Path(tempfile.mkdtemp(prefix="dmp-pgbouncer-"))
    port = free_port()
    config = _config(root, port, url)
    command = ["pgbouncer", str(config)]
    if os.geteuid() == 0:  # PgBouncer will not run as root
        pwd.getpwnam("postgres")
        shutil.chown(root, "postgres")
        for f in root.iterdir():
            shutil.chown(f, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    proc = subprocess.Popen(command, start_new_session=True, cwd="/")
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert proc.poll() is None and time.monotonic() < deadline, (
                (root / "pgbouncer.log").read_text() if (root / "pgbouncer.log").exists() else ""
            )
            time.sleep(0.1)
        yield make_url(url).set(port=port).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def test_the_service_works_through_pgbouncer_in_transaction_pooling(tmp_path: Path) -> None:
    if not PG_URL.startswith("postgresql"):
        pytest.skip(POSTGRES_ONLY)
    if shutil.which("pgbouncer") is None:
        pytest.skip(NEEDS_PGBOUNCER)
    with scratch_database(PG_URL, "dmp_bouncer") as direct, pgbouncer(direct) as pooled:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=pooled,
            test_mode=True,
            db_prepared_statements=False,
        )
        publishers = crash._prepare(settings, 3)  # migrates through PgBouncer
        port = free_port()
        env = {**os.environ, "DMP_DB_PREPARED_STATEMENTS": "false", "DMP_DB_POOL_SIZE": "4"}
        server = subprocess.Popen(
            [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port), "--workers", "2"],
            env={
                **env,
                "DMP_DATA_DIR": str(settings.data_dir),
                "DMP_DATABASE_URL": pooled,
                "DMP_TEST_MODE": "true",
                "DMP_LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.2)
            load = nodes.Load(base, publishers)
            load.start()
            try:
                # Well past five runs of each statement on every server connection: with
                # prepared statements on, PgBouncer 1.18 fails these ("prepared statement
                # ... does not exist").
                load.wait_requests(400, seconds=120)
            finally:
                result = load.finish()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        assert result.problems == [] and result.failures == [], (
            result.problems[:3],
            result.failures[:3],
        )
        checked = crash.CrashResult("postgresql", 1, len(publishers))
        checked.acknowledged = sum(1 for s in load.sent.values() if s.acknowledged)
        crash._check(settings, load.sent, checked)
        assert checked.problems == []
        assert checked.acknowledged == checked.acknowledged_found > 0
        assert checked.audit_intact and checked.counters_match
