"""`dmp backup` and `dmp restore`: a backup restored into an empty database gives back every
document byte for byte and every audit chain intact; the key ring stays apart."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dmp.config import Settings
from dmp.errors import InvalidInput
from dmp.jobs import backup as backups
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from tests.factories import GP, ins_for, load_directory, new_document, open_record, pro
from tests.pg_helpers import drop_database, scratch_database


@pytest.fixture
def empty_target(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an empty database sharing the source's key ring: a new SQLite file, or a
    new PostgreSQL database dropped afterwards."""
    ring = {"keyring_path": settings.effective_keyring_path}
    if not database_url:
        yield Settings(data_dir=tmp_path / "restored", test_mode=True, **ring)
        return
    with scratch_database(database_url, "dmp_restore") as url:
        yield Settings(data_dir=tmp_path / "restored", database_url=url, test_mode=True, **ring)


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


def _which(tool: str) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} (PostgreSQL's client tools) is needed"
    return found


def _tamper(backup: Path, settings: Settings, database_url: str, sql: str) -> Path:
    """The same backup with one change made to its data after `dmp backup` wrote it (and its
    manifest copied as it was), as an attacker with the backup file would."""
    altered = backup.with_name("altered.backup")
    manifest = backup.with_name(backup.name + ".manifest.json")
    altered.with_name(altered.name + ".manifest.json").write_bytes(manifest.read_bytes())
    if not database_url:
        altered.write_bytes(backup.read_bytes())
        with contextlib.closing(sqlite3.connect(altered)) as conn:
            conn.execute(sql)
            conn.commit()
        return altered
    # PostgreSQL: restore into a scratch database, change it, dump it again.
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    name = f"dmp_tamper_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(database_url).set(database=name)
    env = {**os.environ, "PGPASSWORD": str(url.password or "")}
    uri = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    try:
        subprocess.run(
            [_which("pg_restore"), "--no-owner", f"--dbname={uri}", str(backup)],
            env=env,
            check=True,
        )
        scratch = sa.create_engine(url.render_as_string(hide_password=False))
        with scratch.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
            conn.exec_driver_sql(sql)
        scratch.dispose()
        subprocess.run(
            [
                _which("pg_dump"),
                "--format=custom",
                "--no-owner",
                f"--file={altered}",
                f"--dbname={uri}",
            ],
            env=env,
            check=True,
        )
    finally:
        drop_database(admin, name)
    return altered


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        ("records", "UPDATE records SET medecin_traitant = '810000000041'"),
        ("documents", "UPDATE documents SET masked_ps = NOT masked_ps"),
        (
            "patient_keys",  # each patient's wrapped data key swapped for another patient's
            "UPDATE patient_keys SET wrapped = (SELECT p2.wrapped FROM patient_keys p2 "
            "WHERE p2.patient_id <> patient_keys.patient_id LIMIT 1)",
        ),
        ("document_contents", "DELETE FROM document_contents WHERE chunk = 1"),
    ],
)
def test_a_backup_altered_after_it_was_written_is_refused(
    rt: Runtime,
    settings: Settings,
    empty_target: Settings,
    tmp_path: Path,
    database_url: str,
    table: str,
    sql: str,
) -> None:
    """Issue 22: a backup whose GP designation or mask flag was changed was restored (and the
    nurse then read the patient as their GP); a changed content chunk and a swapped wrapped
    data key were accepted too. The manifest names the table; the target stays empty."""
    _fill(rt)
    out = tmp_path / "dmp.backup"
    backups.backup(settings, out)
    altered = _tamper(out, settings, database_url, sql)
    with pytest.raises(InvalidInput, match=f"the table {table} differs"):
        backups.restore(empty_target, altered)
    if database_url:
        engine = sa.create_engine(empty_target.effective_database_url)
        try:
            with engine.connect() as conn:
                assert sa.inspect(conn).get_table_names() == []  # nothing of it was kept
        finally:
            engine.dispose()
    else:  # refused before anything was copied
        assert not (empty_target.data_dir / "dmp.sqlite3").exists()
    # The untouched backup restores.
    assert backups.restore(empty_target, out).authenticated


def test_a_manifest_rewritten_without_the_key_ring_is_refused(
    rt: Runtime, settings: Settings, empty_target: Settings, tmp_path: Path
) -> None:
    _fill(rt)
    out = tmp_path / "dmp.backup"
    backups.backup(settings, out)
    side = out.with_name(out.name + ".manifest.json")
    found = json.loads(side.read_text())
    found["tables"]["records"]["sha256"] = "0" * 64  # an attacker adjusting the digests
    side.write_text(json.dumps(found))
    with pytest.raises(InvalidInput, match="not written under this key ring"):
        backups.restore(empty_target, out)
    side.unlink()
    with pytest.raises(InvalidInput, match="no manifest"):
        backups.restore(empty_target, out)
