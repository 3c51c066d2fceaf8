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
from dmp.access.views import NewList
from dmp.domain.ins import Ins
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import ServiceUnavailable
from dmp.records import audit_log, direct, documents, keys, patients
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
    monkeypatch.setattr(direct, "_plan", lambda *_: None)


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


# What differs by nature between two publications: their ids, unique ids, times, sealed bytes.
_OWN = {
    "id",
    "logical_id",
    "unique_id",
    "content_id",
    "submitted_at",
    "version_at",
    "created_at",
    "due_at",
    "subject_id",
    "document_ids",
    "sealed",
}
_WRITTEN = ("documents", "document_lists", "notifications", "document_contents", "patient_keys")


def _stored(world: Runtime) -> dict[str, list[dict[str, Any]]]:
    with world.engine.connect() as conn:
        return {
            t: [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))]  # noqa: S608
            for t in _WRITTEN
        }


def _shape(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(repr({k: v for k, v in r.items() if k not in _OWN}) for r in rows)


def test_a_publications_writes_are_sqlalchemys(
    world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two publications of one shape (content of three chunks, hidden from the patient: two
    notices queued; a submission set), one written on the driver and one through SQLAlchemy,
    store the same rows but for their own ids, times and sealed bytes: the columns a
    publication leaves out take their server defaults on both; both read back; the trail
    verifies."""
    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    content = bytes(range(256)) * 3000  # 768,000 bytes: three chunks

    def publish() -> str:
        meta = new_document(world.clock.now(), invisible_patient=True)
        envoi = NewList("submissionset", (0,), title="Envoi")
        return cardiologist.deposit_batch(INS, [(meta, content, None)], [envoi])[0].logical_id

    def added(before: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        after = _stored(world)
        return {t: [r for r in after[t] if r not in before[t]] for t in _WRITTEN}

    monkeypatch.setattr(direct, "_plans", {})
    opened = _stored(world)
    on_driver = publish()
    first = added(opened)
    taken = {id(statement) for statement, plan in direct._plans.values() if plan is not None}
    assert {
        id(documents._unique_id_statement()),
        id(documents._INSERT_DOCUMENT),
        id(documents._INSERT_CONTENT),
        id(documents._INSERT_LIST),
        id(patients._INSERT_NOTIFICATIONS),
        id(keys._ACTIVE_KEY),
        id(audit_log._LOCK_HEAD),
    } <= taken, "a publication's statements, on the driver"
    assert [len(first[t]) for t in _WRITTEN] == [1, 1, 2, 3, 1]
    assert {(n["status"], n["attempts"]) for n in first["notifications"]} == {("pending", 0)}
    assert first["documents"][0]["latest"] is True
    _through_sqlalchemy(monkeypatch)
    before = _stored(world)
    through_sqlalchemy = publish()
    second = added(before)
    assert second["patient_keys"] == [], "the record's data key, used again"
    for table in _WRITTEN[:-1]:
        assert _shape(second[table]) == _shape(first[table]), table
    cardiologist.declare_consent(INS)
    for logical_id in (on_driver, through_sqlalchemy):
        assert cardiologist.read_content(INS, logical_id)[1] == content
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
        conn.execute(
            sa.text(
                "CREATE TABLE direct_probe "
                "(k text PRIMARY KEY, v text, d text NOT NULL DEFAULT 'server')"
            )
        )
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
_WIDE = sa.table(
    "direct_probe", sa.column("k", sa.String), sa.column("v", _Marked()), sa.column("d", sa.String)
)
_INSERT_WIDE = sa.insert(_WIDE)
_PYTHON_DEFAULT = sa.Table(
    "direct_probe",
    sa.MetaData(),
    sa.Column("k", sa.String, primary_key=True),
    sa.Column("v", _Marked()),
    sa.Column("d", sa.String, default="python"),
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


def _probe(conn: sa.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sa.text("SELECT k, v, d FROM direct_probe ORDER BY k"))]


def test_an_insert_names_the_columns_it_is_given(engine: sa.Engine) -> None:
    """As SQLAlchemy renders an INSERT: the columns a row leaves out take their server
    defaults; one plan per set of columns, whatever their order."""
    with engine.begin() as conn:
        direct.execute(conn, _INSERT_WIDE, {"k": "a", "v": "x"})
        direct.execute(conn, _INSERT_WIDE, {"k": "b", "v": None, "d": "given"})
        direct.execute(conn, _INSERT_WIDE, {"v": "y", "k": "c"})
        assert _probe(conn) == [
            ("a", "in:x", "server"),
            ("b", None, "given"),
            ("c", "in:y", "server"),
        ]
    plans = [plan for key, (_, plan) in direct._plans.items() if key[0] == id(_INSERT_WIDE)]
    assert len(plans) == 2 and None not in plans


def test_a_default_computed_in_python_is_left_to_sqlalchemy(engine: sa.Engine) -> None:
    statement = sa.insert(_PYTHON_DEFAULT)
    with engine.begin() as conn:
        direct.execute(conn, statement, {"k": "a"})
        assert _probe(conn) == [("a", None, "python")]
    assert direct._plans[(id(statement), "postgresql", frozenset({"k"}))][1] is None


def test_many_rows_in_one_driver_call(engine: sa.Engine) -> None:
    """The rows of an INSERT without RETURNING (a document's chunks, notifications) in one
    executemany, each value through its type, the listeners told; rows naming other columns
    than the first are refused as SQLAlchemy refuses them."""
    seen: list[tuple[str, Any, bool]] = []

    def listener(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        seen.append((statement, params, many))

    sa.event.listen(engine, "before_cursor_execute", listener)
    rows = [{"k": f"k{n}", "v": f"v{n}"} for n in range(3)]
    with engine.begin() as conn:
        direct.execute_many(conn, _INSERT_WIDE, rows)
        direct.execute_many(conn, _INSERT_WIDE, [])
        assert _probe(conn) == [(f"k{n}", f"in:v{n}", "server") for n in range(3)]
    sa.event.remove(engine, "before_cursor_execute", listener)
    inserts = [(p, many) for sql, p, many in seen if sql.startswith("INSERT")]
    assert inserts == [([{"k": f"k{n}", "v": f"in:v{n}"} for n in range(3)], True)]
    with pytest.raises(sa.exc.StatementError), engine.begin() as conn:
        direct.execute_many(conn, _INSERT_WIDE, [{"k": "x", "v": "1"}, {"k": "y"}])


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
