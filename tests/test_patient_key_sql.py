"""Every statement on a patient's request path filters on that patient's key.

The SQL of each benchmark workload (W1 consultation, W2 publication, W3 retrieval, W5 the
patient's history, and a read by id) is recorded as it reaches the database driver. Each
statement that touches a patient table must name the patient key of that table (``patient_id``,
``chain_id`` for the audit chain, ``id`` for ``patients``) with a bound value equal to the
patient's key, or insert rows carrying it: that is what lets patient tables be distributed by
patient (Citus) with every request routed to one shard (docs/performance.md). The one exception
is the INS index lookup, which turns an INS into the key, and only when the process does not
already know the answer.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.ins import Ins, make_ins_value
from dmp.records import schema
from dmp.runtime import Runtime
from tests.cda_fixtures import CDA_PATIENT
from tests.factories import CARDIOLOGIST, open_record, pro
from tests.fhir_helpers import bearer, example

INS = Ins(*CDA_PATIENT)
KEY_COLUMN = {
    "patients": "id",
    "audit_events": "chain_id",
    "audit_heads": "chain_id",
    **{
        t.name: "patient_id"
        for t in schema.metadata.sorted_tables
        if "patient_id" in t.c and t.name not in ("audit_events", "patients")
    },
}
# The INS index lookup: an INS in, a key out, nothing else read.
INS_LOOKUP = re.compile(
    r"^SELECT patients\.id\s+FROM patients\s+WHERE patients\.ins_value = (\S+) "
    r"AND patients\.ins_oid = (\S+)$"
)
# A bound parameter as each driver renders it: %(name)s (psycopg) or ? (sqlite).
PARAM = r"(%\((?P<name>\w+)\)s|\?)"


class Recorder:
    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self.statements.append((" ".join(statement.split()), params))


@pytest.fixture
def recorded(world: Runtime) -> Iterator[tuple[TestClient, Recorder, Runtime]]:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    recorder = Recorder()
    sa.event.listen(world.engine, "before_cursor_execute", recorder)
    try:
        with TestClient(create_app(world)) as client:
            yield client, recorder, world
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", recorder)


def _tables(sql: str) -> set[str]:
    return {
        t
        for t in KEY_COLUMN
        if re.search(rf"\b(FROM|JOIN|INTO|UPDATE)\s+{t}\b", sql) or re.search(rf"\b{t}\.\w+", sql)
    }


def _bound(params: Any, name: str | None) -> Any:
    if name is not None and isinstance(params, dict):
        return params[name]
    return None  # positional (SQLite): the structure is checked; PostgreSQL checks the value


def _inserted(params: Any, column: str) -> list[Any]:
    """The key values an INSERT binds (named parameters: ``patient_id``, ``chain_id_0``...)."""
    rows = params if isinstance(params, (list, tuple)) else [params]
    pattern = re.compile(rf"^{column}(_+\d+)?$")
    return [v for r in rows if isinstance(r, dict) for n, v in r.items() if pattern.match(n)]


def problems(statements: list[tuple[str, Any]], key: str) -> list[str]:
    """What breaks the rule, statement by statement (empty when all is well)."""
    found = []
    for sql, params in statements:
        if sql.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")):
            continue
        if INS_LOOKUP.match(sql):
            continue
        for table in sorted(_tables(sql)):
            column = KEY_COLUMN[table]
            if sql.startswith("INSERT INTO " + table) or re.search(
                rf"\bINSERT INTO {table} \(", sql
            ):
                cols = re.search(rf"INSERT INTO {table} \(([^)]*)\)", sql)
                if cols is None or column not in [c.strip() for c in cols.group(1).split(",")]:
                    found.append(f"insert into {table} without {column}: {sql[:160]}")
                elif any(v != key for v in _inserted(params, column)):
                    found.append(f"insert into {table} for another patient: {sql[:160]}")
                continue
            match = re.search(rf"\b{table}\.{column} = {PARAM}", sql)
            if match is None:
                found.append(f"{table} read or changed without its {column}: {sql[:200]}")
                continue
            value = _bound(params, match.group("name"))
            if value is not None and value != key:
                found.append(f"{table}.{column} bound to {value!r}, not the patient: {sql[:160]}")
    return found


def test_every_workload_statement_filters_on_the_patient_key(
    recorded: tuple[TestClient, Recorder, Runtime],
) -> None:
    client, recorder, world = recorded
    cardio = bearer(world, pro(world, CARDIOLOGIST))
    patient = bearer(world, actors.patient_actor(world, INS))
    ident = f"urn:oid:{INS.oid}%7C{INS.value}"
    key = world.access(actors.patient_actor(world, INS)).read_record(INS).key
    world.patient_index.forget((INS.oid, INS.value))  # the first request looks the INS up

    def run(method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        recorder.statements.clear()
        r = client.request(method, path, headers=headers, json=body)
        assert r.status_code in (200, 201), r.text
        return r, list(recorder.statements)

    workloads = {}
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS)
    _, workloads["W2 publication"] = run("POST", "/fhir", cardio, bundle)
    r, workloads["W1 consultation"] = run(
        "GET", f"/fhir/DocumentReference?patient.identifier={ident}&_count=20", cardio
    )
    doc_id = r.json()["entry"][0]["resource"]["id"]
    _, workloads["W1 again (INS known)"] = run(
        "GET", f"/fhir/DocumentReference?patient.identifier={ident}", cardio
    )
    _, workloads["read by id"] = run("GET", f"/fhir/DocumentReference/{doc_id}", cardio)
    _, workloads["W3 retrieval"] = run("GET", f"/fhir/Binary/{doc_id}", cardio)
    _, workloads["W5 history"] = run("GET", f"/fhir/AuditEvent?patient={ident}", patient)

    for name, statements in workloads.items():
        assert statements, name
        assert problems(statements, key) == [], name
    # The INS was looked up once; once known, the consultation reads by key only.
    lookups = [s for s, _ in workloads["W1 again (INS known)"] if INS_LOOKUP.match(s)]
    assert lookups == []
    assert any(INS_LOOKUP.match(s) for s, _ in workloads["W2 publication"])


def test_the_check_sees_a_statement_without_the_key() -> None:
    """The checker itself: a statement reading documents by their own id alone, or bound to
    another patient, is reported."""
    pg = "SELECT documents.id FROM documents WHERE documents.logical_id = %(x)s"
    assert problems([(pg, {"x": "d"})], "k")
    other = "SELECT documents.id FROM documents WHERE documents.patient_id = %(pid)s"
    assert problems([(other, {"pid": "someone-else"})], "k")
    assert problems([(other, {"pid": "k"})], "k") == []
    insert = "INSERT INTO documents (id, logical_id) VALUES (%(id)s, %(logical_id)s)"
    assert problems([(insert, {"id": "d", "logical_id": "l"})], "k")
    keyed = "INSERT INTO audit_events (chain_id, seq) SELECT %(chain_id_0)s AS chain_id, %(s)s"
    assert problems([(keyed, {"chain_id_0": "someone-else", "s": 1})], "k")
    assert problems([(keyed, {"chain_id_0": "k", "s": 1})], "k") == []


def test_a_stale_index_entry_is_caught_by_the_facts(world: Runtime) -> None:
    """The process remembers INS -> key; an entry that names another record (an INS that
    changed hands, a record gone) is detected by the INS the facts return, never served."""
    other = Ins(INS.oid, make_ins_value("2840537003001"))
    open_record(world, INS)
    open_record(world, other)
    patient = actors.patient_actor(world, INS)
    mine = world.access(patient).read_record(INS).key
    theirs = world.access(actors.patient_actor(world, other)).read_record(other).key
    world.patient_index.put((INS.oid, INS.value), theirs)  # stale: names the other record
    assert world.access(patient).read_record(INS).key == mine
    assert world.patient_index.get((INS.oid, INS.value)) == mine


@pytest.mark.parametrize("night", [False, True], ids=["by-day", "at-night"])
def test_a_consultation_runs_few_statements(world: Runtime, night: bool) -> None:
    """A professional's repeated consultation (W1), issue 26's budget: on PostgreSQL three
    statements (the facts, the page of documents with its total, the audit append carrying the
    pending access count); on SQLite the append is three (head, events, count). The
    first-access row is written at the first consultation only: the facts say whether there
    was one (it was inserted at every read). At night the facts also say whether the holder
    was told of this professional's night access (it was looked for by a statement of its own
    at every night read)."""
    from datetime import UTC, datetime

    from tests.factories import new_document

    if night:  # 23:30 in Paris
        world.clock.set(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # type: ignore[attr-defined]
    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    cardiologist.declare_consent(INS)
    cardiologist.deposit_document(INS, new_document(world.clock.now()), b"x")
    url = f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}"
    work = _statements_of_a_second_read(world, url)
    assert not any("first_accesses" in s.split(" WHERE ")[0] for s in work), work
    assert len(work) <= (3 if world.engine.dialect.name == "postgresql" else 5), work


def test_only_a_read_at_night_asks_for_the_night_notice(world: Runtime) -> None:
    """The night variant of the facts is a read's (notices.on_professional_read): a deposit at
    night reads no notice; a search at night does, with its facts."""
    from datetime import UTC, datetime

    from tests.factories import new_document

    world.clock.set(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # type: ignore[attr-defined]
    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    cardiologist.declare_consent(INS)

    def notice_reads(action: Callable[[], object]) -> list[str]:
        recorder = Recorder()
        sa.event.listen(world.engine, "before_cursor_execute", recorder)
        try:
            action()
        finally:
            sa.event.remove(world.engine, "before_cursor_execute", recorder)
        return [
            s for s, _ in recorder.statements if s.startswith("SELECT") and "notifications" in s
        ]

    deposit = new_document(world.clock.now())
    assert notice_reads(lambda: cardiologist.deposit_document(INS, deposit, b"x")) == []
    assert len(notice_reads(lambda: cardiologist.search_documents(INS))) >= 1


def test_a_retrieval_runs_few_statements(world: Runtime) -> None:
    """A professional's repeated retrieval (W3): on PostgreSQL four statements (the facts, the
    document's row, its content with the data key that seals it, the audit append); on SQLite
    the append is three. The key was read by a statement of its own (issue 26)."""
    from tests.factories import new_document

    open_record(world, INS)
    cardiologist = world.access(pro(world, CARDIOLOGIST))
    cardiologist.declare_consent(INS)
    doc = cardiologist.deposit_document(INS, new_document(world.clock.now()), b"<x/>")
    key = world.access(actors.patient_actor(world, INS)).read_record(INS).key
    work = _statements_of_a_second_read(world, f"/fhir/Binary/{key}.{doc.logical_id}")
    assert not any(s.startswith("SELECT patient_keys.") for s in work), work
    assert len(work) <= (4 if world.engine.dialect.name == "postgresql" else 6), work


def _statements_of_a_second_read(world: Runtime, url: str) -> list[str]:
    """The statements (transaction control left out) of the cardiologist's second GET of
    ``url``: the first access is behind."""
    recorder = Recorder()
    with TestClient(create_app(world)) as client:
        headers = bearer(world, pro(world, CARDIOLOGIST))
        assert client.get(url, headers=headers).status_code == 200  # the first access
        sa.event.listen(world.engine, "before_cursor_execute", recorder)
        try:
            answer = client.get(url, headers=headers)
        finally:
            sa.event.remove(world.engine, "before_cursor_execute", recorder)
    assert answer.status_code == 200, answer.text
    return [s for s, _ in recorder.statements if not s.startswith(("BEGIN", "COMMIT"))]


class Builds:
    """Counts SQLAlchemy statements constructed, by the function of ours that built them."""

    def __init__(self) -> None:
        self.sites: Counter[str] = Counter()

    @contextmanager
    def watching(self) -> Iterator[None]:
        import sqlalchemy.sql.dml as dml
        import sqlalchemy.sql.selectable as selectable

        originals = {
            cls: cls.__init__ for cls in (selectable.Select, dml.Insert, dml.Update, dml.Delete)
        }

        def counted(original: Any) -> Any:
            def init(obj: Any, *args: Any, **kwargs: Any) -> None:
                frame: FrameType | None = sys._getframe(1)
                while frame is not None and "/dmp/" not in frame.f_code.co_filename:
                    frame = frame.f_back
                if frame is not None:
                    self.sites[f"{frame.f_code.co_filename}:{frame.f_code.co_name}"] += 1
                original(obj, *args, **kwargs)

            return init

        for cls, original in originals.items():
            cls.__init__ = counted(original)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for cls, original in originals.items():
                cls.__init__ = original  # type: ignore[method-assign]


def test_hot_paths_build_no_statement(recorded: tuple[TestClient, Recorder, Runtime]) -> None:
    """Issue 26: building a SQLAlchemy statement cost more than running it (about 95 us of a
    255 us key lookup). Once each shape has been seen, a publication (W2), a consultation
    (W1), a retrieval (W3) and a read by id build none: their statements are built once and
    their values bound at execution."""
    client, _, world = recorded
    cardio = bearer(world, pro(world, CARDIOLOGIST))
    ident = f"urn:oid:{INS.oid}%7C{INS.value}"

    def publish(n: int) -> str:
        _publish(client, cardio, n)
        found = client.get(f"/fhir/DocumentReference?patient.identifier={ident}", headers=cardio)
        return str(found.json()["entry"][0]["resource"]["id"])

    doc_id = publish(1)
    requests = {
        "W1 consultation": f"/fhir/DocumentReference?patient.identifier={ident}&_count=20",
        "W3 retrieval": f"/fhir/Binary/{doc_id}",
        "read by id": f"/fhir/DocumentReference/{doc_id}",
    }
    for path in requests.values():
        assert client.get(path, headers=cardio).status_code == 200
    built = {}
    for name, path in requests.items():
        builds = Builds()
        with builds.watching():
            assert client.get(path, headers=cardio).status_code == 200
        built[name] = dict(builds.sites)
    world.patient_index.forget((INS.oid, INS.value))  # a process that has not met this INS
    builds = Builds()
    with builds.watching():
        assert client.get(requests["W1 consultation"], headers=cardio).status_code == 200
    built["W1, the INS looked up"] = dict(builds.sites)
    builds = Builds()
    with builds.watching():
        publish(2)
    built["W2 publication"] = dict(builds.sites)
    assert built == {name: {} for name in built}


def _publish(client: TestClient, headers: dict[str, str], n: int) -> None:
    """The DMP guide's ITI-65 example, its unique ids made the ``n``-th of their kind."""
    text = json.dumps(example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS))
    for uid in ("urn:oid:1.2.3.4.5.6.7.8", "urn:oid:1.2.250.1.213.1.4.8.99999.2"):
        text = text.replace(f'"{uid}"', f'"{uid}.{n}"')
    r = client.post("/fhir", headers=headers, json=json.loads(text))
    assert r.status_code in (200, 201), r.text


def test_a_publication_runs_few_statements(
    recorded: tuple[TestClient, Recorder, Runtime],
) -> None:
    """A second publication on a record (W2, one document and its SubmissionSet): on
    PostgreSQL nine statements: the facts, the chain head locked (the facts saw it: no
    create-if-missing first), the data key, the unique-id check, the content, the document
    (read back by RETURNING, not by a query of its own), the patient's notice, the List, the
    audit append (eleven before). On SQLite the append is three statements."""
    client, recorder, world = recorded
    cardio = bearer(world, pro(world, CARDIOLOGIST))
    _publish(client, cardio, 1)
    recorder.statements.clear()
    _publish(client, cardio, 2)
    work = [s for s, _ in recorder.statements if not s.startswith(("BEGIN", "COMMIT"))]
    assert len(work) <= (9 if world.engine.dialect.name == "postgresql" else 11), work


def test_the_unique_id_check_reads_the_first_versions_index(
    recorded: tuple[TestClient, Recorder, Runtime],
) -> None:
    """A publication's unique-id check asks the unique index's own question (first
    versions), so the database answers from that index and never reads the record's other
    rows: on a record of 1,500 documents (the load test's busiest) the check read them all,
    about 1 ms a publication, half the database's work of a W2 publication."""
    client, recorder, world = recorded
    _publish(client, bearer(world, pro(world, CARDIOLOGIST)), 1)
    checks = [
        (sql, params)
        for sql, params in recorder.statements
        # IN through SQLAlchemy (SQLite), = ANY of an array on the driver (PostgreSQL)
        if ("unique_id IN" in sql or "unique_id = ANY" in sql)
        and sql.lstrip().startswith("SELECT documents.id")
    ]
    assert len(checks) == 1, recorder.statements
    sql, params = checks[0]
    with world.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        if world.engine.dialect.name == "postgresql":
            cur.execute("SET enable_seqscan = off")  # a tiny table: make the planner choose
            cur.execute("SET plan_cache_mode = force_generic_plan")  # as once prepared
            cur.execute("EXPLAIN " + sql, params)
        else:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " ".join(str(row) for row in cur.fetchall())
        cur.close()
        conn.rollback()
    assert "ux_documents_patient_unique" in plan, plan
