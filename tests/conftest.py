"""Shared fixtures: a real database (SQLite by default, PostgreSQL when DMP_TEST_DATABASE_URL
names one), a controlled clock, and plain factory functions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import Phase
from hypothesis import settings as hypothesis_settings

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.runtime import Runtime
from tests.browser import chromium  # noqa: F401 - one browser for the whole session
from tests.factories import T0, load_directory
from tests.live_server import server_url  # noqa: F401 - a real server for outside clients
from tests.oidc import provider_tools  # noqa: F401 - node and npm for the OpenID provider

# `pytest --hypothesis-profile=mutation`: no shrinking, to check quickly that a mutant of the
# policy turns the property tests red (shrinking a failure through the database is slow).
hypothesis_settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate]
)

PG_URL = os.environ.get("DMP_TEST_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")
# The reason .ci/run looks for: in its PostgreSQL pass no test may be skipped for it.
POSTGRES_ONLY = "PostgreSQL-only test: set DMP_TEST_DATABASE_URL=postgresql+psycopg://... to run it"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres") and not ON_POSTGRES:
            item.add_marker(pytest.mark.skip(reason=POSTGRES_ONLY))


@pytest.fixture(scope="session")
def database_url() -> str:
    return PG_URL or ""


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            tables = (
                conn.execute(
                    sa.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename <> 'alembic_version'"
                    )
                )
                .scalars()
                .all()
            )
            if tables:
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    if database_url:
        _truncate_postgres_once(database_url)
    return Settings(data_dir=tmp_path / "data", database_url=database_url, test_mode=True)


_migrated: set[str] = set()


def _audit_protected(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_events_append_only'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _truncate_postgres_once(url: str) -> None:
    # A tampering test dropped the append-only trigger: rebuild the schema from the migrations.
    if url in _migrated and _audit_protected(url):
        _truncate_postgres(url)
    else:
        # First use in this session: start from an empty schema so migrations run for real.
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
        _migrated.add(url)


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    runtime = Runtime.start(settings, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def world(rt: Runtime) -> Runtime:
    """A runtime with the test directory loaded."""
    load_directory(rt)
    return rt


@pytest.fixture(autouse=True)
def _responses_meet_the_profiles_they_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every FHIR response of the suite is checked against the PDSm profiles it claims
    (tests/profiles.py), and every one, claiming or not, for FHIR JSON's ele-1 (no empty
    element); a response that breaks one fails the test that received it."""
    import sys

    import dmp.app  # noqa: F401 - every FHIR route module imported
    from dmp.fhir import common
    from tests import profiles

    original = common.fhir

    def checked(body: object, status: int = 200, headers: dict[str, str] | None = None) -> object:
        problems = profiles.claimed_problems(body) + profiles.empty_values(body, "response")
        assert not problems, "a response breaks a profile it claims:\n" + "\n".join(problems[:10])
        return original(body, status, headers)

    # Every module of the FHIR adapter that answers through common.fhir (a new one included).
    for name, module in list(sys.modules.items()):
        if name.startswith("dmp.fhir") and getattr(module, "fhir", None) is original:
            monkeypatch.setattr(module, "fhir", checked)
