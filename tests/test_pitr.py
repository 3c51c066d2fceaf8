"""Point-in-time recovery with Debian's pgBackRest: a PostgreSQL server of the test's own with
continuous WAL archiving to a pgBackRest repository, a full backup, documents published, then
a destructive mistake (every document's content deleted). The server is restored to the moment
before the mistake: the documents published before that moment are back byte for byte, the one
published after it is not there, the audit trail verifies. Then retention: after a new full
backup, ``expire`` removes the older backup and the WAL only it needed, so what a purge removed
does not outlive the retention window (docs/operations.md).

Runs in the PostgreSQL pass; .ci/run installs pgBackRest and fails if this test was skipped."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from dmp.auth import actors
from dmp.config import Settings
from dmp.domain.ins import Ins
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from tests.conftest import PG_URL, POSTGRES_ONLY
from tests.factories import GP, ins_for, load_directory, new_document, open_record, pro
from tests.mail import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NEEDS_PGBACKREST = "PITR test: needs pgBackRest (apt-get install pgbackrest)"


@dataclass
class Server:
    root: Path
    port: int
    user: str | None  # PostgreSQL and pgBackRest run as this user (root may not run them)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    def run(self, *command: str) -> str:
        full = list(command)
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        done = subprocess.run(full, capture_output=True, text=True, cwd="/", timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"{command[0]} {command[1:3]} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def backrest(self, *args: str) -> str:
        return self.run(
            "pgbackrest", f"--config={self.root}/pgbackrest.conf", "--stanza=dmp", *args
        )

    def start(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", f"{self.root}/pg.log",
                 "-w", "-t", "120", "start")  # fmt: skip

    def stop(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def sql(self, statement: str, db: str = "postgres") -> list[tuple[object, ...]]:
        engine = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with engine.connect() as conn:
                result = conn.exec_driver_sql(statement)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://dmp:dmp@127.0.0.1:{self.port}/dmp"


@pytest.fixture
def server() -> Iterator[Server]:
    if not PG_URL.startswith("postgresql"):
        pytest.skip(POSTGRES_ONLY)
    if shutil.which("pgbackrest") is None or not (PG_BIN / "initdb").exists():
        pytest.skip(NEEDS_PGBACKREST)
    user = None
    if os.geteuid() == 0:
        pwd.getpwnam("postgres")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="dmp-pitr-"))
    if user:
        shutil.chown(root, user)
    s = Server(root, free_port(), user)
    started = False
    try:
        s.run(str(PG_BIN / "initdb"), "-D", str(s.data), "-U", "postgres", "--auth=trust",
              "--no-sync")  # fmt: skip
        archive = f"pgbackrest --config={root}/pgbackrest.conf --stanza=dmp archive-push %p"
        with (s.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {s.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{root}'\n"
                "wal_level = replica\narchive_mode = on\n"
                f"archive_command = '{archive}'\nmax_wal_senders = 2\nfsync = off\n"
            )
        config = root / "pgbackrest.conf"
        config.write_text(
            f"[global]\nrepo1-path={root}/repo\nrepo1-retention-full=1\nstart-fast=y\n"
            f"log-path={root}/log\nlock-path={root}/lock\nspool-path={root}/spool\n"
            "log-level-console=warn\nlog-level-file=info\n\n"
            f"[dmp]\npg1-path={s.data}\npg1-port={s.port}\npg1-socket-path={root}\n"
        )
        if user:
            shutil.chown(config, user)
        s.start()
        started = True
        s.sql("CREATE ROLE dmp LOGIN PASSWORD 'dmp'")
        s.sql("CREATE DATABASE dmp OWNER dmp")
        s.backrest("stanza-create")
        s.backrest("check")
        yield s
    finally:
        if started:
            with contextlib.suppress(AssertionError):
                s.stop()
        shutil.rmtree(root, ignore_errors=True)


def _backups(server: Server) -> list[dict[str, object]]:
    info = json.loads(server.backrest("info", "--output=json"))
    return list(info[0]["backup"])


def test_a_restore_to_the_moment_before_a_mistake(server: Server, tmp_path: Path) -> None:
    server.backrest("backup", "--type=full")
    settings = Settings(data_dir=tmp_path / "data", database_url=server.url, test_mode=True)
    rt = Runtime.start(settings)
    stored: dict[str, tuple[Ins, bytes]] = {}
    try:
        load_directory(rt)
        gp = rt.access(pro(rt, GP))
        for i in range(3):
            ins = ins_for(2750 + i)
            open_record(rt, ins)
            gp.declare_consent(ins)
            content = os.urandom(1000 * (i + 1) ** 4)  # 1 KB to 81 KB
            doc = gp.deposit_document(ins, new_document(rt.clock.now(), title=f"CR {i}"), content)
            stored[doc.logical_id] = (ins, content)
        time.sleep(1.1)  # the moment to go back to, at the server's own clock
        target = str(server.sql("SELECT clock_timestamp()")[0][0])
        time.sleep(1.1)
        late_ins = ins_for(2760)
        open_record(rt, late_ins)
        late = gp.deposit_document(late_ins, new_document(rt.clock.now(), title="Tardif"), b"t")
        # The mistake: every document's content deleted (a DBA's wrong statement).
        with rt.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM document_contents")
    finally:
        rt.close()
    server.backrest("check")  # switches the WAL segment and waits until it is archived

    server.stop()
    server.backrest("restore", "--delta", "--type=time", f"--target={target}",
                    "--target-action=promote")  # fmt: skip
    server.start()
    deadline = time.monotonic() + 120
    while server.sql("SELECT pg_is_in_recovery()")[0][0]:
        assert time.monotonic() < deadline, "recovery did not end"
        time.sleep(0.2)

    rt = Runtime.start(settings)
    try:
        gp = rt.access(actors.professional_actor(rt, GP))
        for logical_id, (ins, content) in stored.items():
            _, back = gp.read_content(ins, logical_id)
            assert back == content
        with rt.engine.connect() as conn:
            missing = conn.execute(
                sa.text("SELECT count(*) FROM documents WHERE logical_id = :id"),
                {"id": late.logical_id},
            ).scalar_one()
        assert missing == 0  # published after the target moment: not restored
        audit = maintenance.verify_audit(rt)
        assert audit.ok, audit.fault
    finally:
        rt.close()


def test_expire_keeps_the_window_and_no_more(server: Server) -> None:
    """repo1-retention-full=1: once a second full backup exists, the first one and the WAL
    archived before the second began are removed (so is any purged record they held)."""
    server.backrest("backup", "--type=full")
    server.sql("CREATE TABLE mistake_window (x int)", db="dmp")
    server.backrest("check")
    server.backrest("backup", "--type=full")
    server.backrest("expire")
    backups = _backups(server)
    assert len(backups) == 1
    start = str(backups[0]["archive"]["start"])  # type: ignore[index]
    info = json.loads(server.backrest("info", "--output=json"))
    oldest = str(info[0]["archive"][0]["min"])
    assert oldest == start  # no WAL from before the kept backup
