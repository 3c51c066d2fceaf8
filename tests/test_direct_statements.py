"""The hottest statements on the driver's cursor (dmp.records.direct) read and write what
SQLAlchemy would, bind and read values through their types, fail as SQLAlchemy fails, and stay
visible to ``before_cursor_execute`` listeners. PostgreSQL only: elsewhere the statements run
through SQLAlchemy itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from dmp.access.audit import verify
from dmp.domain.ins import Ins
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import ServiceUnavailable
from dmp.records import direct, documents, patients
from dmp.records.database import make_engine
from dmp.records.schema import records
from dmp.records.types import AuthorizedPatient, DocumentCriteria
from dmp.runtime import Runtime
from tests.cda_fixtures import CDA_PATIENT
from tests.conftest import ON_POSTGRES, PG_URL, POSTGRES_ONLY
from tests.factories import CARDIOLOGIST, new_document, open_record, pro

INS = Ins(*CDA_PATIENT)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if not ON_POSTGRES:
        pytest.skip(POSTGRES_ONLY)


def _through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement through SQLAlchemy, as on another engine."""
    monkeypatch.setattr(direct, "_plan", lambda dialect, statement: None)


def _reads(world: Runtime, now: datetime) -> dict[str, Any]:
    """Every caller of the direct path, as the gate calls them, on one record."""
    out: dict[str, Any] = {}
    with world.engine.begin() as conn:
        key = patients.find_patient_id(conn, INS.oid, INS.value)
        assert key is not None
        out["lookup"] = key
        out["lookup unknown"] = patients.find_patient_id(conn, INS.oid, "199999999999999")
        for ps in (CARDIOLOGIST, "899999999999", None):
            out[f"standing {ps}"] = patients.load_standing(conn, key, ps)
            out[f"standing {ps} night"] = patients.load_standing(
                conn, key, ps, now - timedelta(hours=3)
            )
        out["standing unknown"] = patients.load_standing(conn, "0" * 32, CARDIOLOGIST)
        scope = AuthorizedPatient(key, out[f"standing {CARDIOLOGIST}"].departement)
        every = DocumentVisibility()
        shown = DocumentVisibility(masked="none", hide_invisible_patient_at=now)
        for name, criteria in {
            "page": DocumentCriteria(statuses=("current",)),
            "oldest first": DocumentCriteria(oldest_first=True, limit=2),
            "second page": DocumentCriteria(limit=2, offset=2),
            "past the end": DocumentCriteria(limit=2, offset=50),
            "dates": DocumentCriteria(
                service_from=now - timedelta(days=3), service_to=now - timedelta(days=1)
            ),
            "types (an expanding IN)": DocumentCriteria(type_codes=("11488-4",)),
            "none": DocumentCriteria(document_id="0" * 32),
        }.items():
            for seen, visibility in (("all", every), ("shown", shown)):
                out[f"search {name} {seen}"] = documents.search(conn, scope, visibility, criteria)
        for doc in out["search page all"][0]:
            out[f"content {doc.logical_id}"] = documents.load_content(conn, scope, doc.content_id)
        with pytest.raises(LookupError):
            documents.load_content(conn, scope, "0" * 32)
    return out


def test_the_gates_reads_are_sqlalchemys(world: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    cardiologist.declare_consent(INS)
    now = world.clock.now()
    for days in range(5):
        cardiologist.deposit_document(
            INS,
            new_document(
                now - timedelta(days=days),
                title=f"CR {days}",
                masked_ps=days == 1,
                invisible_patient=days == 2,
            ),
            b"x",
        )
    cardiologist.search_documents(INS)  # a first access: the facts' answers differ
    direct_answers = _reads(world, now)
    taken = sum(plan is not None for _, plan in direct._plans.values())
    assert taken >= 5, "the lookup, the facts (day, night), the page, the content: direct"
    _through_sqlalchemy(monkeypatch)
    assert _reads(world, now) == direct_answers
    page, total = direct_answers["search page all"]
    assert total == 5 and len(page) == 5
    assert all(d.service_start.tzinfo is UTC for d in page), "UTC datetimes, as the type reads"
    assert direct_answers[f"standing {CARDIOLOGIST}"].accessed_before
    contents = [v for k, v in direct_answers.items() if k.startswith("content ")]
    assert len(contents) == 5 and all(
        key is not None and len(chunks) == 1 for key, chunks in contents
    )


def test_a_consultations_audit_append_is_sqlalchemys(
    world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two consultations, one appended on the driver and one through SQLAlchemy, leave the
    same events (but their times and hashes) and the trail verifies."""
    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    cardiologist.declare_consent(INS)
    cardiologist.search_documents(INS)
    cardiologist.search_documents(INS)
    _through_sqlalchemy(monkeypatch)
    cardiologist.search_documents(INS)
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT seq, action, actor_id, outcome, reason, targets FROM audit_events "
                "WHERE action = 'document.search' ORDER BY seq"
            )
        ).all()
    assert len(rows) == 3
    assert [r[1:] for r in rows[1:]] == [rows[0][1:]] * 2
    assert [r[0] for r in rows] == sorted({r[0] for r in rows})
    report = verify(world.engine, world.audit_keys())
    assert report.ok, report


class _Marked(TypeDecorator[str]):
    """Marks a value on its way in and on its way out: both processors must run."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else f"in:{value}"

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else f"{value}:out"


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    engine = make_engine(PG_URL, pool_size=2)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS direct_probe"))
        conn.execute(sa.text("CREATE TABLE direct_probe (k text PRIMARY KEY, v text)"))
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE direct_probe"))
    engine.dispose()


_PROBE = sa.table("direct_probe", sa.column("k", sa.String), sa.column("v", _Marked()))
_INSERT = (
    sa.insert(_PROBE)
    .values(k=sa.bindparam("k", type_=sa.String), v=sa.bindparam("v", type_=_Marked()))
    .returning(_PROBE.c.k, _PROBE.c.v)
)
_SELECT = sa.select(_PROBE.c.k, _PROBE.c.v, sa.literal("fixed").label("c")).where(
    _PROBE.c.k == sa.bindparam("k", type_=sa.String)
)


def test_values_go_through_their_types_both_ways(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        inserted = direct.execute(conn, _INSERT, {"k": "a", "v": "x"})
        assert inserted.keys == ("k", "v") and inserted.rows == [("a", "in:x:out")]
        assert conn.execute(sa.text("SELECT v FROM direct_probe")).scalar() == "in:x"
        found = direct.execute(conn, _SELECT, {"k": "a"})
        assert found.first() == {"k": "a", "v": "in:x:out", "c": "fixed"}
        assert found.first() == conn.execute(_SELECT, {"k": "a"}).one()._asdict()
        assert direct.execute(conn, _SELECT, {"k": "b"}).first() is None


def test_a_statement_outside_a_transaction_begins_one(engine: sa.Engine) -> None:
    """As SQLAlchemy's execute does: the connection's commit then commits the write."""
    with engine.connect() as conn:
        direct.execute(conn, _INSERT, {"k": "a", "v": "x"})
        assert conn.in_transaction()
        conn.commit()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT k FROM direct_probe")).scalars().all() == ["a"]


def test_listeners_see_the_statement(engine: sa.Engine) -> None:
    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", listener)
    with engine.begin() as conn:
        direct.execute(conn, _SELECT, {"k": "a"})
    assert len(seen) == 1
    assert seen[0][0].startswith("SELECT direct_probe.k") and seen[0][1]["k"] == "a"


def test_a_driver_error_is_sqlalchemys(engine: sa.Engine) -> None:
    """A unique violation is SQLAlchemy's IntegrityError (the callers catch it), and nothing
    of the failed transaction stays."""
    with engine.begin() as conn:
        direct.execute(conn, _INSERT, {"k": "a", "v": "x"})
    with engine.connect() as conn:
        direct.execute(conn, _INSERT, {"k": "b", "v": "y"})
        with pytest.raises(sa.exc.IntegrityError):
            direct.execute(conn, _INSERT, {"k": "a", "v": "z"})
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT k FROM direct_probe")).scalars().all() == ["a"]


def test_a_missing_value_is_refused_before_the_database(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.ArgumentError, match="'k'"), engine.begin() as conn:
        direct.execute(conn, _SELECT, {})
    with pytest.raises(sa.exc.ArgumentError, match="'v'"), engine.begin() as conn:
        direct.execute(conn, _INSERT, {"k": "a"})  # a value with a type to go through


def test_a_lost_connection_is_unavailability_and_leaves_the_pool(engine: sa.Engine) -> None:
    """The server ends the session under a statement: a 503 (the engine's handle_error), the
    connection invalidated, and the next checkout works."""
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        conn.commit()
        killer = make_engine(PG_URL, pool_size=1)
        with killer.begin() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        killer.dispose()
        with pytest.raises(ServiceUnavailable):
            direct.execute(conn, _SELECT, {"k": "a"})
        assert conn.invalidated
    with engine.begin() as conn:
        assert direct.execute(conn, _SELECT, {"k": "a"}).rows == []


def test_the_plans_are_bounded(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "_MAX_PLANS", 3)
    monkeypatch.setattr(direct, "_plans", {})
    with engine.begin() as conn:
        for k in range(7):
            statement = _SELECT.where(_PROBE.c.v != f"n{k}")
            assert direct.execute(conn, statement, {"k": "a"}).rows == []
            assert len(direct._plans) <= 3


def test_an_expanding_in_is_an_array(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """IN and NOT IN lists, empty or not, with values through their type, read what
    SQLAlchemy reads; a parameter rendered at execution some other way takes SQLAlchemy's path."""
    listed = sa.bindparam("ks", expanding=True, type_=sa.String)
    unlisted = sa.bindparam("vs", expanding=True, type_=_Marked())
    statement = sa.select(_PROBE.c.k).where(_PROBE.c.k.in_(listed), _PROBE.c.v.not_in(unlisted))
    literal = sa.select(_PROBE.c.k).where(
        _PROBE.c.k == sa.bindparam("k", type_=sa.String, literal_execute=True)
    )
    cases: list[dict[str, Any]] = [
        {"ks": ["a", "b", "c"], "vs": ["y"]},
        {"ks": ("a", "c"), "vs": []},
        {"ks": [], "vs": ["x"]},
        {"ks": ["a", "b"], "vs": ["x", "y"]},
        {"ks": ["c"], "vs": ["x"]},
    ]
    with engine.begin() as conn:
        for k, v in (("a", "x"), ("b", "y"), ("c", None)):
            direct.execute(conn, _INSERT, {"k": k, "v": v})
        ours = [sorted(direct.execute(conn, statement, p).rows) for p in cases]
        assert direct.execute(conn, literal, {"k": "b"}).rows == [("b",)]
    assert direct._plans[(id(statement), "postgresql")][1] is not None
    assert direct._plans[(id(literal), "postgresql")][1] is None
    # a: "in:x", b: "in:y", c: NULL (NOT IN of an empty list holds even for NULL)
    assert ours == [[("a",)], [("a",), ("c",)], [], [], []]
    _through_sqlalchemy(monkeypatch)
    with engine.begin() as conn:
        assert [sorted(direct.execute(conn, statement, p).rows) for p in cases] == ours


def test_the_time_columns_are_utc() -> None:
    """The facts' and the page's datetimes are aware and in UTC, as UtcDateTime reads them,
    whatever the session's time zone (checked on a session in Paris)."""
    if not ON_POSTGRES:
        pytest.skip(POSTGRES_ONLY)
    engine = make_engine(PG_URL, pool_size=1)
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    statement = sa.select(
        sa.bindparam("t", type_=sa.DateTime(timezone=True)).label("raw"),
        sa.cast(sa.bindparam("u", type_=sa.String), records.c.closed_at.type).label("utc"),
    )
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL TIME ZONE 'Europe/Paris'"))
            row = direct.execute(conn, statement, {"t": at, "u": at.isoformat()}).first()
    finally:
        engine.dispose()
    assert row is not None
    assert row["utc"] == at and row["utc"].tzinfo is UTC
    assert row["raw"] == at and row["raw"].utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("prepared", [True, False])
def test_statements_are_prepared_as_the_engine_says(prepared: bool) -> None:
    """Behind a pooler that cannot keep prepared statements (DMP_DB_PREPARED_STATEMENTS=false),
    the direct path prepares nothing either."""
    engine = make_engine(PG_URL, pool_size=1, prepared=prepared)
    statement = sa.select(sa.bindparam("n", type_=sa.Integer).label("n"))
    try:
        with engine.begin() as conn:
            for n in range(8):  # psycopg prepares what a connection ran five times
                assert direct.execute(conn, statement, {"n": n}).scalar() == n
            kept = conn.execute(sa.text("SELECT statement FROM pg_prepared_statements")).all()
    finally:
        engine.dispose()
    assert any("%(n)s" in s or "$1" in s for (s,) in kept) is prepared, kept
