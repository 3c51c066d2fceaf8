"""Files and secrets (issue 12): the data directory 0700 and the SQLite database 0600 whichever
command creates them first; a key ring open to other users is refused at start; responses with
patient data are never cached and never sniffed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.config import Settings
from dmp.errors import ConfigurationError
from dmp.runtime import Runtime


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_db_upgrade_first_creates_private_files(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    env = {**os.environ, "DMP_DATA_DIR": str(data)}
    env.pop("DMP_DATABASE_URL", None)
    old = os.umask(0o022)  # a usual umask: files would be 0644 by default
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dmp.cli", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700
    assert _mode(data / "dmp.sqlite3") == 0o600
    for extra in ("dmp.sqlite3-wal", "dmp.sqlite3-shm"):
        if (data / extra).exists():
            assert _mode(data / extra) & 0o077 == 0


def test_a_key_ring_open_to_others_is_refused(settings: Settings) -> None:
    rt = Runtime.start(settings)
    ring = rt.keyring.path
    rt.close()
    ring.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        Runtime.start(settings)
    ring.chmod(0o600)
    Runtime.start(settings).close()


def test_api_and_fhir_answers_are_not_cached(world: Runtime) -> None:
    with TestClient(create_app(world)) as client:
        for url in ("/api/records/170013700310003", "/fhir/Patient?identifier=x"):
            r = client.get(url)
            assert r.headers["cache-control"] == "no-store", url
            assert r.headers["x-content-type-options"] == "nosniff", url
        public = client.get("/api/stats")
        assert "no-store" not in public.headers.get("cache-control", "")


def test_a_second_engine_keeps_the_locks_of_the_first(tmp_path: Path) -> None:
    """Making an engine on a database this process already holds open must not touch the
    file outside SQLite: closing any descriptor of it drops the POSIX locks SQLite holds (the
    shared lock every WAL-mode connection keeps), and another process then believes it is the
    last user: on closing it checkpoints and deletes the WAL under the open connection's feet
    (the crash test corrupted a database that way)."""
    from dmp.records import database

    db = tmp_path / "dmp.sqlite3"
    first = database.make_engine(f"sqlite:///{db}")
    try:
        with first.connect() as held:  # stays open (checked out) throughout
            with held.begin():
                held.exec_driver_sql("CREATE TABLE t (i INTEGER)")
                held.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert Path(f"{db}-wal").exists()
            database.make_engine(f"sqlite:///{db}").dispose()
            probe = (
                "import sqlite3, sys\n"
                "c = sqlite3.connect(sys.argv[1])\n"
                "c.execute('SELECT count(*) FROM t').fetchone()\n"
                "c.close()\n"
            )
            subprocess.run([sys.executable, "-c", probe, str(db)], timeout=60, check=True)
            # Another user is still connected: the other process must have left the WAL alone.
            assert Path(f"{db}-wal").exists()
            assert held.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
    finally:
        first.dispose()
