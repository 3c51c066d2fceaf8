"""Backups of the database, and restores into an empty database.

SQLite: the online backup API (a consistent copy taken while the service runs). PostgreSQL:
``pg_dump`` in its custom format, restored with ``pg_restore`` in one transaction. The key ring
is never inside a backup: a stolen backup alone opens no document. It is backed up apart (a
copy of the ring file, kept elsewhere), and a restore checks that the ring in place holds every
key the restored database needs, then verifies every audit chain.

A backup is written under a temporary name and renamed when complete, with mode 0600: no half
backup ever carries the final name, and no other user can read one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from dmp.access.audit import VerifyReport
from dmp.config import Settings
from dmp.crypto.keyring import KeyRing, load_keyring
from dmp.domain.codes import AuditAction
from dmp.errors import ConfigurationError, InvalidInput
from dmp.jobs import maintenance, manifest
from dmp.records import database
from dmp.runtime import Runtime


@dataclass(frozen=True)
class BackupReport:
    path: Path
    dialect: str
    size: int
    revision: str | None


@dataclass(frozen=True)
class RestoreReport:
    dialect: str
    revision: str | None
    keys: maintenance.KeyReport
    audit: VerifyReport | None  # None when the key ring cannot open the restored data
    authenticated: bool = False  # the manifest's MAC was checked with the key ring


def _owner_url(settings: Settings) -> str:
    """The URL that may read and create everything: the migration role when there is one."""
    return settings.migration_database_url or settings.effective_database_url


def _sqlite_path(url: str) -> Path:
    path = make_url(url).database
    if not path or path == ":memory:":
        raise ConfigurationError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment carrying it (never on
    a command line another user could read)."""
    parsed: URL = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None)
    return uri.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(
            f"{name} is not installed: install PostgreSQL's client tools (Debian: "
            "postgresql-client), the same major version as the server or newer"
        )
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    # An argument list, no shell; the tool comes from PATH (pg_dump, pg_restore).
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
        raise InvalidInput(f"{what} failed: {detail}")


@contextlib.contextmanager
def _partial(out: Path) -> Iterator[Path]:
    """A private temporary file beside ``out``, renamed to it only when the work succeeds."""
    if out.exists():
        raise InvalidInput(f"{out} already exists: a backup never overwrites a file")
    if not out.parent.is_dir():
        raise InvalidInput(f"no directory {out.parent} to write the backup into")
    tmp = out.with_name(f".{out.name}.partial")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def backup(settings: Settings, out: Path) -> BackupReport:
    """Copy the database to ``out`` while the service may run, and its manifest beside it
    (``dmp.jobs.manifest``: rows and digests of every table of the copy, MACed under the key
    ring); the copy includes the audit event recording it (actor ``system:backup``)."""
    side = manifest.manifest_path(out)
    if side.exists():
        raise InvalidInput(f"{side} already exists: a backup never overwrites a file")
    rt = Runtime.start(settings)
    try:
        maintenance.system_event(rt, "backup", AuditAction.DATABASE_BACKUP, out.name)
        revision = database.current_revision(rt.engine)
        ring = rt.keyring
    finally:
        rt.close()
    url = _owner_url(settings)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    with _partial(out) as tmp:
        if dialect == "sqlite":
            source = sqlite3.connect(_sqlite_path(url))
            target = sqlite3.connect(tmp)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            tables = _sqlite_digests(tmp)
        else:
            tables = _pg_dump(url, tmp)
    manifest.write(side, ring, dialect, tables)
    return BackupReport(out, dialect, out.stat().st_size, revision)


def _sqlite_digests(path: Path) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            return manifest.digests(conn)
    finally:
        engine.dispose()


def _pg_dump(url: str, out: Path) -> dict[str, dict[str, object]]:
    """pg_dump and the digests from one snapshot: the manifest describes exactly the dump."""
    engine = sa.create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
            uri, env = _libpq(url)
            _run(
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={out}", f"--dbname={uri}"],
                env,
                "pg_dump",
            )  # fmt: skip
            return manifest.digests(conn)
    finally:
        engine.dispose()


def _is_empty(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def restore(settings: Settings, source: Path) -> RestoreReport:
    """Load a backup into an empty database, grant the runtime role if there is one, then
    check the key ring against the restored data and verify every audit chain. What is loaded
    must be what the manifest beside the backup says (its MAC checked with the key ring when
    the ring is there): a backup altered after `dmp backup` wrote it is refused, naming the
    table, and nothing of it stays in the target."""
    if not source.is_file():
        raise InvalidInput(f"no backup file {source}")
    stated = manifest.read(manifest.manifest_path(source))
    ring_path = settings.effective_keyring_path
    ring = load_keyring(ring_path) if ring_path.exists() else None
    url = _owner_url(settings)
    if url.startswith("sqlite"):
        target_path = _sqlite_path(url)
        if target_path.exists() and not _is_empty(url):
            raise InvalidInput(
                f"{target_path} already holds a database: restore into an empty one "
                "(move the file away first)"
            )
        try:
            origin = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True)
            origin.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError:
            raise InvalidInput(f"{source} is not a SQLite backup made by `dmp backup`") from None
        # Checked on the backup itself, before anything is loaded.
        authenticated = manifest.check(stated, ring, _sqlite_digests(source))
        database.make_engine(url).dispose()  # creates the directory 0700 and the file 0600
        target = sqlite3.connect(target_path)
        try:
            origin.backup(target)
        finally:
            target.close()
            origin.close()
    else:
        if not _is_empty(url):
            raise InvalidInput("the target database is not empty: restore into an empty one")
        uri, env = _libpq(url)
        _run(
            [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
             "--single-transaction", f"--dbname={uri}", str(source)],
            env,
            "pg_restore",
        )  # fmt: skip
        authenticated = _check_loaded(url, stated, ring)
        if settings.migration_database_url:
            owner = database.make_engine(settings.migration_database_url, pool_size=1)
            try:
                database.grant_runtime(
                    owner, make_url(settings.effective_database_url).username or ""
                )
            finally:
                owner.dispose()
    keys = maintenance.check_keys_offline(settings)
    engine_name = "sqlite" if url.startswith("sqlite") else "postgresql"
    if not keys.ok:
        return RestoreReport(engine_name, None, keys, None, authenticated)
    rt = Runtime.start(settings)  # applies the migrations a backup from an older version lacks
    try:
        report = maintenance.verify_audit(rt)
        if report.ok:
            maintenance.system_event(rt, "restore", AuditAction.DATABASE_RESTORE, source.name)
        revision = database.current_revision(rt.engine)
    finally:
        rt.close()
    return RestoreReport(engine_name, revision, keys, report, authenticated)


def _check_loaded(url: str, stated: dict[str, object], ring: KeyRing | None) -> bool:
    """The restored PostgreSQL database against the manifest; on a difference the target is
    emptied again (it was empty before: nothing stored is lost) and the restore refused."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = manifest.digests(conn)
        try:
            return manifest.check(stated, ring, tables)
        except InvalidInput:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
            raise
    finally:
        engine.dispose()
