"""`dmp backup` and `dmp restore`: a backup restored into an empty database gives back every
document byte for byte and every audit chain intact; the key ring stays apart."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dmp.access.runtime import Runtime
from dmp.config import Settings
from dmp.errors import InvalidInput
from dmp.jobs import backup as backups
from dmp.jobs import maintenance
from tests.factories import GP, ins_for, load_directory, new_document, open_record, pro

CREATEDB_NEEDED = (
    "PostgreSQL-only test: the test role needs CREATEDB to restore into a new database "
    "(ALTER ROLE <role> CREATEDB, as .ci/run does)"
)


@pytest.fixture
def empty_target(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an empty database sharing the source's key ring: a new SQLite file, or a
    new PostgreSQL database dropped afterwards."""
    ring = {"keyring_path": settings.effective_keyring_path}
    if not database_url:
        yield Settings(data_dir=tmp_path / "restored", test_mode=True, **ring)
        return
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        allowed = conn.execute(
            sa.text("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
        if not allowed:
            admin.dispose()
            pytest.skip(CREATEDB_NEEDED)
        name = f"dmp_restore_{secrets.token_hex(4)}"
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield Settings(data_dir=tmp_path / "restored", database_url=url, test_mode=True, **ring)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _fill(rt: Runtime) -> dict[str, bytes]:
    """Records, documents of several sizes (one over the content chunk size), accesses."""
    load_directory(rt)
    gp = rt.access(pro(rt, GP))
    stored: dict[str, bytes] = {}
    for i in range(3):
        ins = ins_for(70 + i)
        open_record(rt, ins)
        gp.declare_consent(ins)
        for size in (1, 5000, 3 * 1024 * 1024 + 7):
            content = os.urandom(size)
            view = gp.deposit_document(ins, new_document(rt.clock.now()), content)
            stored[f"{i}/{view.logical_id}"] = content
        gp.search_documents(ins)
    return stored


def _read_all(rt: Runtime, keys: list[str]) -> dict[str, bytes]:
    gp = rt.access(pro(rt, GP))
    return {k: gp.read_content(ins_for(70 + int(k[0])), k[2:])[1] for k in keys}


def test_backup_then_restore_gives_back_every_byte_and_chain(
    rt: Runtime, settings: Settings, empty_target: Settings, tmp_path: Path
) -> None:
    stored = _fill(rt)
    before = maintenance.verify_audit(rt)
    out = tmp_path / "dmp.backup"
    report = backups.backup(settings, out)  # the service still runs meanwhile
    assert report.size > 9 * 1024 * 1024  # three large documents inside
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.partial"))
    with pytest.raises(InvalidInput, match="already exists"):
        backups.backup(settings, out)

    restored = backups.restore(empty_target, out)
    assert restored.keys.ok
    assert restored.audit is not None and restored.audit.ok
    # Every event of the source, plus the backup's own event (taken before the copy).
    assert restored.audit.events == before.events + 1
    again = Runtime.start(empty_target)
    try:
        assert _read_all(again, list(stored)) == stored
        with again.engine.connect() as conn:
            actions = conn.execute(
                sa.text("SELECT action, actor_id FROM audit_events WHERE action LIKE 'database.%'")
            ).all()
        assert sorted(map(tuple, actions)) == [
            ("database.backup", "system:backup"),
            ("database.restore", "system:restore"),
        ]
        assert maintenance.verify_audit(again).ok
    finally:
        again.close()

    # A second restore into the now full database is refused, and loses nothing.
    with pytest.raises(InvalidInput, match="empty"):
        backups.restore(empty_target, out)
    again = Runtime.start(empty_target)
    try:
        assert _read_all(again, list(stored)) == stored
    finally:
        again.close()


def test_a_restore_without_its_key_ring_says_so(
    rt: Runtime, settings: Settings, empty_target: Settings, tmp_path: Path
) -> None:
    _fill(rt)
    out = tmp_path / "dmp.backup"
    backups.backup(settings, out)
    elsewhere = empty_target.model_copy(update={"keyring_path": tmp_path / "other-ring.json"})
    report = backups.restore(elsewhere, out)
    assert not report.keys.ok and not report.keys.ring_found
    assert report.audit is None
    assert not (tmp_path / "other-ring.json").exists()  # no new ring made for sealed data


def test_not_a_backup(settings: Settings, empty_target: Settings, tmp_path: Path) -> None:
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all" * 100)
    with pytest.raises(InvalidInput):
        backups.restore(empty_target, junk)
    with pytest.raises(InvalidInput, match="no backup file"):
        backups.restore(empty_target, tmp_path / "missing.backup")


def test_backup_and_restore_commands(
    rt: Runtime, settings: Settings, empty_target: Settings, tmp_path: Path, database_url: str
) -> None:
    if database_url:
        pytest.skip("the commands are the same on both engines; run on SQLite (no new database)")
    _fill(rt)
    rt.close()

    def dmp(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DMP_DATA_DIR": str(s.data_dir), "DMP_TEST_MODE": "true"}
        env["DMP_KEYRING"] = str(s.effective_keyring_path)
        return subprocess.run(
            [sys.executable, "-m", "dmp.cli", *args], env=env, capture_output=True, text=True
        )

    out = tmp_path / "cli.backup"
    made = dmp(settings, "backup", str(out))
    assert made.returncode == 0, made.stderr
    assert "key ring is not in it" in made.stderr
    done = dmp(empty_target, "restore", str(out))
    assert done.returncode == 0, done.stderr
    assert "audit trail intact" in done.stdout
    refused = dmp(empty_target, "restore", str(out))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "empty" in refused.stderr
