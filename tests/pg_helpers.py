"""Throwaway PostgreSQL databases for the tests that need one of their own (a restore target,
a cluster of nodes), created beside the test database and dropped afterwards."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

CREATEDB_NEEDED = (
    "PostgreSQL-only test: the test role needs CREATEDB (or to be a superuser) to create a "
    "database of its own (ALTER ROLE <role> CREATEDB, as .ci/run does)"
)


def may(engine: sa.Engine, attribute: str) -> bool:
    """Whether the engine's role holds a role attribute (``rolcreatedb``, ``rolcreaterole``);
    a superuser needs none (a newcomer's laptop often runs as one)."""
    roles = sa.table("pg_roles", sa.column("rolname"), sa.column("rolsuper"), sa.column(attribute))
    query = sa.select(sa.or_(roles.c[attribute], roles.c.rolsuper)).where(
        roles.c.rolname == sa.func.current_user()
    )
    with engine.connect() as conn:
        return bool(conn.execute(query).scalar_one())


@contextlib.contextmanager
def scratch_database(database_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the test database's server, as the test's role; its URL."""
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    if not may(admin, "rolcreatedb"):
        # Skipped once the connection is back in its pool: disposing of the engine with a
        # connection still out left that connection open until garbage collection.
        admin.dispose()
        pytest.skip(CREATEDB_NEEDED)
    name = f"{prefix}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(admin, name)


def drop_database(admin: sa.Engine, name: str) -> None:
    """Drop a throwaway database. FORCE ends the sessions of the test's own role, but not an
    autovacuum worker (the server's own role) that started on the freshly restored tables: a
    role without pg_signal_backend is refused until it ends, so the drop is tried again for a
    while (it ends within seconds). The engine is disposed of whatever happens."""
    try:
        for attempt in range(60):
            try:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                return
            except sa.exc.ProgrammingError as exc:
                if "pg_signal_backend" not in str(exc) or attempt == 59:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()
