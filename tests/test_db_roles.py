"""The running service uses a least-privileged PostgreSQL role: it reads and writes rows, but
runs no DDL and can only append to the audit table. Migrations run as the schema's owner
(DMP_MIGRATION_DATABASE_URL), which grants the runtime role its rights after each upgrade."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dmp.auth import actors
from dmp.config import Settings
from dmp.errors import ConfigurationError
from dmp.jobs import maintenance
from dmp.records import database
from dmp.runtime import Runtime
from dmp.stats import counters
from tests.conftest import POSTGRES_ONLY
from tests.factories import GP, ins_for, load_directory, new_document, open_record, pro
from tests.pg_helpers import may

CREATEROLE_NEEDED = (
    "PostgreSQL-only test: the test role needs CREATEROLE (or to be a superuser) to create a "
    "runtime role (ALTER ROLE <role> CREATEROLE, as .ci/run does)"
)


@pytest.fixture
def runtime_url(settings: Settings, database_url: str) -> Iterator[str]:
    """A fresh login role with no rights at all, and its URL on the test database."""
    if not database_url:
        pytest.skip(POSTGRES_ONLY)
    owner = sa.create_engine(database_url)
    if not may(owner, "rolcreaterole"):
        owner.dispose()
        pytest.skip(CREATEROLE_NEEDED)
    role, password = f"dmp_app_{secrets.token_hex(4)}", secrets.token_hex(16)
    with owner.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        yield (
            make_url(database_url)
            .set(username=role, password=password)
            .render_as_string(hide_password=False)
        )
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
            conn.exec_driver_sql(f"REVOKE ALL ON SCHEMA public FROM {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()


def _denied(engine: sa.Engine, statement: str) -> str:
    """Run one statement as the runtime role; return PostgreSQL's refusal."""
    with pytest.raises(sa.exc.ProgrammingError) as refused, engine.begin() as conn:
        conn.exec_driver_sql(statement)
    return str(refused.value.orig)


def test_the_service_runs_as_a_role_without_ddl_or_audit_rewrites(
    settings: Settings, database_url: str, runtime_url: str, tmp_path: Path
) -> None:
    split = settings.model_copy(
        update={"database_url": runtime_url, "migration_database_url": database_url}
    )
    # The role has no right yet: the service sees no readable schema, migrates as the owner
    # and grants the role what it needs.
    rt = Runtime.start(split)
    try:
        assert rt.engine.url.username == make_url(runtime_url).username
        load_directory(rt)
        ins = ins_for(41)
        open_record(rt, ins)
        gp = rt.access(pro(rt, GP))
        gp.declare_consent(ins)
        view = gp.deposit_document(ins, new_document(rt.clock.now()), b"compte rendu")
        assert gp.read_content(ins, view.logical_id)[1] == b"compte rendu"
        counters.fold_pending(rt)
        rt.access(actors.patient_actor(rt, ins)).close_record(ins, "choix")
        report = maintenance.verify_audit(rt)
        assert report.ok, report

        engine = rt.engine
        assert "permission denied" in _denied(engine, "CREATE TABLE intruder (i int)")
        assert "must be owner" in _denied(engine, "ALTER TABLE documents ADD COLUMN x int")
        assert "must be owner" in _denied(engine, "DROP TABLE stats_pending")
        assert "permission denied" in _denied(engine, "UPDATE audit_events SET action = action")
        assert "permission denied" in _denied(engine, "DELETE FROM audit_events")
        assert "permission denied" in _denied(engine, "TRUNCATE audit_events")
        assert "must be owner" in _denied(
            engine, "DROP TRIGGER audit_events_append_only ON audit_events"
        )
        assert "permission denied" in _denied(
            engine, "UPDATE alembic_version SET version_num = '0001'"
        )
        # Rows it may write: an ordinary table.
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE records SET status = status")
    finally:
        rt.close()
    # `dmp db upgrade` with both URLs migrates as the owner and grants again (idempotent).
    assert maintenance.upgrade_database(split) == database.EXPECTED_REVISION


def test_one_role_cannot_be_both(settings: Settings, database_url: str) -> None:
    if not database_url:
        pytest.skip(POSTGRES_ONLY)
    owner = database.make_engine(database_url, pool_size=1)
    try:
        with pytest.raises(ConfigurationError, match="different roles"):
            database.grant_runtime(owner, owner.url.username or "")
    finally:
        owner.dispose()


def test_a_migration_url_must_be_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql"):
        Settings(data_dir=tmp_path, migration_database_url="sqlite:///x.db")
