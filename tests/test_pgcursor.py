"""The engine's psycopg cursor (dmp.records.pgcursor): its description, built when first read,
says what psycopg's would say, for the result it was taken from."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from dmp.records import pgcursor
from dmp.records.database import make_engine
from tests.conftest import ON_POSTGRES, PG_URL, POSTGRES_ONLY


@pytest.fixture
def cursor() -> Iterator[pgcursor.Cursor]:
    if not ON_POSTGRES:
        pytest.skip(POSTGRES_ONLY)
    url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, cursor_factory=pgcursor.Cursor) as conn:
        cur = conn.cursor()
        assert isinstance(cur, pgcursor.Cursor)
        yield cur


def _psycopg(cur: pgcursor.Cursor) -> list[tuple[object, ...]] | None:
    """psycopg's own description of the current result, as plain tuples."""
    described = psycopg.Cursor.description.__get__(cur)
    return None if described is None else [tuple(c) for c in described]


def _ours(cur: pgcursor.Cursor) -> list[tuple[object, ...]] | None:
    described = cur.description
    return None if described is None else [tuple(c) for c in described]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 AS a, 'x'::text AS b, now() AS c, NULL::numeric(5,2) AS d",
        "SELECT 1 AS a WHERE false",  # no rows: still the columns
        "SELECT",  # a result of rows without columns: an empty description, not None
        "CREATE TEMP TABLE t (x int)",  # no result rows: None
        "SET search_path TO public",
    ],
)
def test_the_description_is_psycopgs(cursor: pgcursor.Cursor, sql: str) -> None:
    cursor.execute(sql)
    ours, theirs = _ours(cursor), _psycopg(cursor)
    assert ours == theirs
    described = cursor.description
    if described is not None:
        assert len(described) == len(theirs or [])
        assert bool(described) == bool(theirs)
        assert [c.name for c in described[:]] == [c[0] for c in theirs or []]


def test_an_insert_returning_rows_is_described(cursor: pgcursor.Cursor) -> None:
    cursor.execute("CREATE TEMP TABLE r (id serial, v text)")
    cursor.execute("INSERT INTO r (v) VALUES ('a') RETURNING id, v")
    assert [c.name for c in cursor.description or []] == ["id", "v"]
    cursor.execute("INSERT INTO r (v) VALUES ('b')")
    assert cursor.description is None


def test_columns_read_after_the_cursor_moved_on_are_refused(cursor: pgcursor.Cursor) -> None:
    cursor.execute("SELECT 1 AS first")
    early = cursor.description
    assert early is not None
    cursor.execute("SELECT 2 AS second")
    with pytest.raises(RuntimeError, match="moved on"):
        early[0]
    read = cursor.description
    assert read is not None and read[0].name == "second"
    cursor.execute("SELECT 3 AS third")
    assert read[0].name == "second"  # read while current: kept as it was


def test_the_service_engine_uses_it_and_sqlalchemy_reads_through_it() -> None:
    if not ON_POSTGRES:
        pytest.skip(POSTGRES_ONLY)
    engine = make_engine(PG_URL, pool_size=1)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            assert isinstance(raw.cursor(), pgcursor.Cursor)
            # A statement SQLAlchemy has not cached, one it has, and raw SQL: rows by name.
            stmt = sa.select(sa.literal(1).label("one"), sa.literal("x").label("ex"))
            for _ in range(2):
                row = conn.execute(stmt).one()
                assert (row.one, row.ex) == (1, "x")
            result = conn.exec_driver_sql("SELECT 2 AS two, 3 AS three")
            assert list(result.keys()) == ["two", "three"] and result.one() == (2, 3)
    finally:
        engine.dispose()
