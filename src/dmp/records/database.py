"""Engines for SQLite and PostgreSQL, and migrations applied under a lock."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dmp.errors import ConfigurationError, ServiceUnavailable
from dmp.records import group_commit, pgcursor

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")
# Arbitrary constant naming the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x444D50
# The newest migration (a test checks it is Alembic's head). Knowing it lets a process that
# finds the schema current skip loading Alembic at all: every `dmp` command starts faster.
EXPECTED_REVISION = "0019"


def _unavailable(context: sa.engine.ExceptionContext) -> None:
    """A database that is down, restarting, out of connections or (SQLite) locked too long is
    a 503 with Retry-After, never a 500: the request changed nothing and may be retried. The
    pool drops broken connections itself (is_disconnect), so the service recovers alone."""
    original = context.original_exception
    if context.dialect is not None and context.dialect.name == "sqlite":
        # SQLite's OperationalError also means "no such table": only a lock is unavailability.
        unavailable = "locked" in str(original) or "busy" in str(original)
    else:
        # psycopg's OperationalError: refused or lost connections, too many clients, shutdown.
        unavailable = type(original).__name__ == "OperationalError"
    if context.is_disconnect or unavailable:
        raise ServiceUnavailable(
            "the database is unavailable for a moment; retry shortly"
        ) from context.sqlalchemy_exception


# The group writer of each SQLite engine on disk made with group commit on.
_GROUPS: weakref.WeakKeyDictionary[Engine, group_commit.GroupCommit] = weakref.WeakKeyDictionary()


def make_engine(
    url: str, *, pool_size: int = 8, prepared: bool = True, group: bool = True
) -> Engine:
    """The engine for ``url``. ``prepared`` (PostgreSQL): psycopg prepares a statement on the
    server once a connection has run it five times; off (``DMP_DB_PREPARED_STATEMENTS=false``)
    behind a pooler that hands each transaction any server connection (PgBouncer before 1.21
    in transaction mode), where a statement prepared on one is missing on the next. ``group``
    (SQLite on disk): reads hand their audit appends to a group writer (:func:`group_writer`);
    off with ``DMP_DB_GROUP_COMMIT=false``."""
    engine = _make_engine(url, pool_size=pool_size, prepared=prepared)
    engine.update_execution_options(dmp_prepared=prepared)
    sa.event.listen(engine, "handle_error", _unavailable)
    on_disk = engine.url.database not in (None, "", ":memory:")
    if group and engine.dialect.name == "sqlite" and on_disk:
        _GROUPS[engine] = group_commit.GroupCommit(engine)
    return engine


def group_writer(engine: Engine) -> group_commit.GroupCommit | None:
    """The engine's group writer (SQLite on disk, group commit on), else None: on
    PostgreSQL every transaction writes beside the others, and a read appends its own event."""
    return _GROUPS.get(engine)


def prepares_statements(engine: Engine) -> bool:
    """Whether ``engine`` was made with server-side prepared statements (for a process that
    makes its own engine on the same URL)."""
    return bool(engine.get_execution_options().get("dmp_prepared", True))


def _make_engine(url: str, *, pool_size: int = 8, prepared: bool = True) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[1] if "///" in url else ""
        if db_path and db_path != ":memory:":
            # Whichever command comes first: the directory 0700, the database 0600 (SQLite
            # gives its WAL and shared-memory files the database file's mode). Only a missing
            # file is created here: opening and closing a descriptor on an existing database
            # would drop the POSIX locks SQLite holds on it from this process, and another
            # process could then corrupt it (sqlite.org/howtocorrupt.html, 2.2.1).
            path = Path(db_path)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        on_disk = db_path and db_path != ":memory:"
        _configure_sqlite(engine, f"{db_path}.writer.lock" if on_disk else None)
        return engine
    # No pre-ping: a checkout costs no round trip. A connection found broken fails the request
    # that met it and invalidates the pool (SQLAlchemy's disconnect handling), so the next
    # checkouts get fresh connections.
    # A request waits at most 5 s for a connection of this process's pool (all busy), then
    # gets a 503 (POOL_EXHAUSTED below), rather than queueing without end.
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={
            "cursor_factory": pgcursor.Cursor,  # a result's columns built when first read
            **({} if prepared else {"prepare_threshold": None}),
        },
    )


# Errors outside the driver that mean "unavailable": the pool's wait for a connection ended.
POOL_EXHAUSTED: tuple[type[Exception], ...] = (sa.exc.TimeoutError,)


_TURN_TIMEOUT = 30.0  # seconds, SQLite's busy_timeout below


class _Arrivals:
    """This process's writers in the order they came: one at a time goes on to the lock file,
    so the kernel chooses between the processes' first writers only, and a writer is not
    overtaken by those of its own process that came after it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy = False
        self._waiting: collections.deque[threading.Event] = collections.deque()

    def take(self, timeout: float = _TURN_TIMEOUT) -> None:
        """The turn, or ServiceUnavailable (a 503) after ``timeout`` seconds, as SQLite's
        busy handler would give up: a writer waiting on a transaction of its own process that
        waits for it (a deadlock) fails instead of hanging."""
        with self._guard:
            if not self._busy:
                self._busy = True
                return
            ready = threading.Event()
            self._waiting.append(ready)
        if ready.wait(timeout):
            return  # handed over by give(): busy stays set
        with self._guard:
            if ready.is_set():  # handed over just as the wait ended
                return
            self._waiting.remove(ready)
        raise ServiceUnavailable("the database is busy; retry shortly")

    def give(self) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._busy = False


def _configure_sqlite(engine: Engine, writer_lock: str | None) -> None:
    """Pragmas, and writers taking turns.

    Every transaction of the service but content streaming writes (a read appends its audit
    event), so it starts with ``BEGIN IMMEDIATE``, SQLite's write lock. A writer that finds
    that lock taken sleeps in SQLite's busy handler in growing steps (1, 2, 5 ... 100 ms)
    while the lock is held for a millisecond or two: that made the tail of a consultation
    (p99 0.65-0.9 s at 8 or 32 clients, issue 26). So writers of every process first queue on
    an ``flock`` of a file beside the database (``<database>.writer.lock``): the kernel wakes
    a waiter the moment the lock is released, and SQLite's lock is then free, or held by a
    process that does not queue (the ``sqlite3`` shell, a backup), whose wait stays SQLite's
    busy handler, bounded by ``busy_timeout``. A thread that already holds the turn through
    another connection does not queue again (it would wait for itself), and a writer queued
    behind its own process's writers for as long as ``busy_timeout`` gives up with a 503."""
    holders: set[int] = set()  # threads holding the turn
    arrivals = _Arrivals()

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        if writer_lock is not None:
            record.info["writer_fd"] = os.open(writer_lock, os.O_RDWR | os.O_CREAT, 0o600)
        # Let SQLAlchemy, not the driver, decide when transactions begin (SQLAlchemy's
        # documented pysqlite recipe), so that BEGIN IMMEDIATE below applies.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(_TURN_TIMEOUT * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock at the start: a deferred transaction that reads and then writes
        # fails with SQLITE_BUSY when another writer committed in between. Connections marked
        # read-only (content streaming) do not take it, so a download blocks no writer.
        readonly = conn.get_execution_options().get("dmp_readonly", False)
        if conn.info.get("query_only", False) != readonly:
            # A read-only transaction cannot write, even by mistake: a write in a deferred
            # transaction would take SQLite's lock behind the writers' turn, or fail on a
            # snapshot another writer moved past. Switched only when it changes, on the
            # driver's connection (a setting, as the pragmas at connect: a few microseconds).
            conn.connection.dbapi_connection.execute(f"PRAGMA query_only={int(readonly)}")
            conn.info["query_only"] = readonly
        fd = None if readonly else conn.info.get("writer_fd")
        me = threading.get_ident()
        if fd is not None and me not in holders:
            arrivals.take()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                arrivals.give()
                raise
            holders.add(me)
            conn.info["writer_held"] = me
        try:
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
        except BaseException:
            _release(conn.info)
            raise

    def _release(info: dict[str, Any]) -> None:
        # At the end of the transaction (SQLAlchemy's commit and rollback events come just
        # before the driver's COMMIT or ROLLBACK: the next writer may meet SQLite's lock for
        # that instant, and then waits in the busy handler's first, shortest step).
        holder = info.pop("writer_held", None)
        if holder is not None:
            holders.discard(holder)
            fcntl.flock(info["writer_fd"], fcntl.LOCK_UN)
            arrivals.give()

    sa.event.listen(engine, "commit", lambda conn: _release(conn.info))
    sa.event.listen(engine, "rollback", lambda conn: _release(conn.info))
    # A connection back in the pool holds no turn, whatever ended its transaction.
    sa.event.listen(engine, "checkin", lambda _dbapi, record: _release(record.info))

    @sa.event.listens_for(engine, "close")
    def _on_close(dbapi_conn: Any, record: Any) -> None:
        _release(record.info)
        fd = record.info.pop("writer_fd", None)
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[sa.Connection]:
    """A read-only connection on one consistent snapshot of the database, for long reads
    (audit verification, statistics): on PostgreSQL a REPEATABLE READ read-only transaction; on
    SQLite a deferred transaction, which in WAL mode reads one snapshot and takes no write lock,
    so it blocks no writer and no writer changes what it sees."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            conn = conn.execution_options(dmp_readonly=True)
        with conn.begin():
            yield conn


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at :data:`EXPECTED_REVISION` (one small query, no Alembic)."""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(dmp_readonly=True)
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        return False
    return version == EXPECTED_REVISION


def _alembic_config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[sa.Connection]:
    """One migrating process at a time: an advisory lock on PostgreSQL, a file lock on SQLite."""
    if engine.dialect.name == "postgresql":
        # A transaction-level lock, taken in the migrations' own transaction and released by
        # its commit or rollback: nothing outlives the transaction, so it holds behind
        # PgBouncer's transaction pooling too (a session lock would stay on whichever server
        # connection took it).
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            yield conn
        return
    db_path = engine.url.database or ""
    lock_path = Path(f"{db_path}.migrate.lock") if db_path not in ("", ":memory:") else None
    with contextlib.ExitStack() as stack:
        if lock_path is not None:
            fh = stack.enter_context(lock_path.open("a"))
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with engine.connect() as conn:
            yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with _migration_lock(engine) as conn:
        command.upgrade(_alembic_config(conn), revision)
        conn.commit()


# Tables the running service may only read and append to (never UPDATE, DELETE or TRUNCATE).
APPEND_ONLY = ("audit_events",)
READ_ONLY = ("alembic_version",)


def grant_runtime(owner: Engine, role: str) -> None:
    """Give the service's runtime role what it needs and nothing more, as the schema's owner:
    rows of every table (SELECT, INSERT, UPDATE, DELETE), only SELECT and INSERT on the audit
    table, only SELECT on Alembic's version; no DDL (PostgreSQL 15 gives PUBLIC no CREATE on the
    public schema, and the role owns nothing). Idempotent; run after each migration."""
    if owner.dialect.name != "postgresql":
        raise ConfigurationError("a separate runtime role needs PostgreSQL")
    if role == owner.url.username:
        raise ConfigurationError(
            "DMP_DATABASE_URL and DMP_MIGRATION_DATABASE_URL must name different roles"
        )
    with owner.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        who = quote(role)
        schema = quote(conn.execute(sa.text("SELECT current_schema()")).scalar_one())
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {who}")
        conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {who}")
        conn.exec_driver_sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}"
        )
        for table in APPEND_ONLY:
            conn.exec_driver_sql(f"REVOKE UPDATE, DELETE ON {quote(table)} FROM {who}")
        for table in READ_ONLY:
            conn.exec_driver_sql(f"REVOKE INSERT, UPDATE, DELETE ON {quote(table)} FROM {who}")
        conn.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}")


def migrate(engine: Engine, migration_url: str = "") -> None:
    """Bring the schema to the head revision. With a migration URL (PostgreSQL), the migration
    role runs the migrations and then grants the runtime role (the user of ``engine``) its
    rights; without one, the service's own role migrates (SQLite, or a single-role setup)."""
    if not migration_url:
        upgrade(engine)
        return
    owner = make_engine(migration_url, pool_size=1)
    try:
        upgrade(owner)
        grant_runtime(owner, engine.url.username or "")
    finally:
        owner.dispose()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def head_revision() -> str | None:
    """The newest migration the code carries (read from the scripts once: 7 ms, and `/health`
    reports it to load balancers several times a second)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
