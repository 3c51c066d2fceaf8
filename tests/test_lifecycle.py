"""The record's lifecycle with an injected clock: closing and reopening, death, an explicit
deletion request honoured within three months, and the purge ten years after closure: the data
key destroyed, every clinical row gone, a non-clinical trace kept, the audit trail intact."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.crypto import envelope
from dmp.domain.ins import Ins
from dmp.errors import Conflict, Forbidden, IntegrityFailure, NotFound
from dmp.identity.actor import system_actor
from dmp.jobs import maintenance, scheduler
from dmp.records import lifecycle
from dmp.runtime import Runtime
from dmp.stats import counters
from tests.factories import (
    GP,
    T0,
    demographics_for,
    desk,
    ins_for,
    new_document,
    open_record,
    pro,
)

PATIENT_TABLES = (
    "documents",
    "document_contents",
    "patient_keys",
    "professional_permissions",
    "notifications",
    "first_accesses",
    "records",
)


def _holder(rt: Runtime, ins: Ins) -> object:
    return rt.access(actors.patient_actor(rt, ins))


def _rows(rt: Runtime, patient_id: str) -> dict[str, int]:
    with rt.engine.connect() as conn:
        out = {
            t: conn.execute(
                sa.select(sa.func.count())
                .select_from(sa.table(t, sa.column("patient_id")))
                .where(sa.column("patient_id") == patient_id)
            ).scalar_one()
            for t in PATIENT_TABLES
        }
        out["patients"] = conn.execute(
            sa.text("SELECT count(*) FROM patients WHERE id = :p"), {"p": patient_id}
        ).scalar_one()
    return out


def _record(rt: Runtime, ins: Ins) -> object:
    return rt.access(system_actor("t")).read_record(ins)


def test_closing_sets_the_purge_date_and_reopening_clears_it(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(71)
    open_record(world, ins)
    holder = world.access(actors.patient_actor(world, ins))
    holder.close_record(ins, "je ferme")
    with pytest.raises(Conflict):
        holder.close_record(ins, "encore")
    gate = world.access(system_actor("t"))
    key = gate.read_record(ins).key
    with world.engine.connect() as conn:
        due = conn.execute(
            sa.text("SELECT purge_due_at FROM records WHERE patient_id = :p"), {"p": key}
        ).scalar_one()
    assert str(due).startswith("2036-03-02")  # ten years after the closure (T0)
    with pytest.raises(Forbidden):
        world.access(pro(world, GP)).declare_consent(ins)  # closed: professionals refused
    world.access(desk()).reopen_record(ins)  # at a desk, at the holder's request
    assert gate.read_record(ins).status == "active"
    with world.engine.connect() as conn:
        due = conn.execute(
            sa.text("SELECT purge_due_at FROM records WHERE patient_id = :p"), {"p": key}
        ).scalar_one()
    assert due is None
    with pytest.raises(Conflict):
        holder.reopen_record(ins)  # not closed
    world.access(pro(world, GP)).declare_consent(ins)
    assert counters.verify_counters(world) == []  # active/closed figures follow
    kinds = [n["kind"] for n in gate.notifications(ins)]
    assert kinds.count("record_closed") == 1 and kinds.count("record_reopened") == 1


def test_the_purge_ten_years_after_closure(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(72)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(T0, title="Compte rendu"), b"secret content")
    gp.search_documents(ins)
    key = _record(world, ins).key  # type: ignore[attr-defined]
    # What a copy of the database taken now would hold: a sealed chunk and its data key id.
    with world.engine.connect() as conn:
        sealed, key_id = conn.execute(
            sa.text("SELECT sealed, key_id FROM document_contents WHERE patient_id = :p"),
            {"p": key},
        ).one()
    world.access(actors.patient_actor(world, ins)).close_record(ins, "fin")
    closed_at = clock.now()

    clock.set(closed_at + timedelta(days=3652) - timedelta(days=1))  # not yet ten years
    scheduler.run_once(world, "w")
    assert _rows(world, key)["documents"] == 1
    with pytest.raises(Conflict):
        world.access(system_actor("purge")).purge_record(ins)  # not due

    clock.set(datetime(2036, 3, 2, 9, 30, tzinfo=UTC))  # closure + 10 years
    report = scheduler.run_once(world, "w")
    assert "purged: 1 records" in report.lines
    assert _rows(world, key) == dict.fromkeys((*PATIENT_TABLES, "patients"), 0)
    # The data key is gone (crypto-shredding): no row of the database names it any more, and
    # the chunk copied before the purge opens with no key the service still holds.
    with world.engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM patient_keys WHERE key_id = :k"), {"k": key_id}
        ).scalar_one()
    assert left == 0
    context = envelope.content_context(key, doc.content_id)
    for kek in world.keyring.keks.values():
        with pytest.raises(IntegrityFailure):
            envelope.open_chunks(kek, [sealed], context)
    # A non-clinical trace remains; the audit trail verifies, the purge in its chain.
    with world.engine.connect() as conn:
        trace = lifecycle.purge_trace(conn, key)
        last = conn.execute(
            sa.text("SELECT action FROM audit_events WHERE chain_id = :p ORDER BY seq DESC"),
            {"p": key},
        ).first()
    assert trace is not None and trace["reason"] == "retention" and trace["documents"] == 1
    assert trace["departement"] == "37"
    assert last is not None and last[0] == "record.purge"
    assert maintenance.verify_audit(world).ok
    # The published figures still agree with a recount (the trace keeps the record's share).
    counters.fold_pending(world)
    assert counters.verify_counters(world) == []
    # The record is gone: the INS names no record; a new one may be opened for that person.
    with pytest.raises(NotFound):
        world.access(system_actor("t")).read_record(ins)
    open_record(world, ins)
    assert _record(world, ins).key != key  # type: ignore[attr-defined]


def test_a_deletion_request_is_honoured_within_three_months(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(73)
    open_record(world, ins)
    key = _record(world, ins).key  # type: ignore[attr-defined]
    holder = world.access(actors.patient_actor(world, ins))
    due = holder.request_deletion(ins)
    assert due == T0 + timedelta(days=world.settings.deletion_days)
    assert _record(world, ins).status == "closed"  # type: ignore[attr-defined]
    clock.set(due - timedelta(minutes=1))
    scheduler.run_once(world, "w")
    assert _rows(world, key)["patients"] == 1
    clock.set(due)
    scheduler.run_once(world, "w")
    assert _rows(world, key)["patients"] == 0
    with world.engine.connect() as conn:
        trace = lifecycle.purge_trace(conn, key)
    assert trace is not None and trace["reason"] == "deletion_request"
    assert maintenance.verify_audit(world).ok


def test_death_closes_the_record_for_good(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(74)
    open_record(world, ins)
    with pytest.raises(Forbidden):
        world.access(actors.patient_actor(world, ins)).declare_death(ins, T0)  # system only
    world.access(system_actor("deaths")).declare_death(ins, T0 - timedelta(days=1))
    record = _record(world, ins)
    assert record.status == "closed" and record.closure_reason == "décès"  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        world.access(desk()).reopen_record(ins)
    with pytest.raises(Forbidden):
        world.access(pro(world, GP)).search_documents(ins)


@pytest.mark.postgres
def test_concurrent_purges_and_provisioning_openings_happen_once(
    world: Runtime, clock: FixedClock
) -> None:
    """Twenty purges of one record race: one purges, the others find nothing; four workers
    open the same provisioned records at once (the rule's lease bypassed): each opens once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from dmp.errors import DmpError
    from dmp.jobs.provisioning import Provisioning

    ins = ins_for(75)
    open_record(world, ins)
    key = _record(world, ins).key  # type: ignore[attr-defined]
    world.access(system_actor("t")).request_deletion(ins)
    clock.advance(timedelta(days=world.settings.deletion_days))
    barrier = threading.Barrier(20)

    def purge(_: int) -> object:
        barrier.wait()
        try:
            return world.access(system_actor("purge")).purge_record(ins)
        except DmpError as exc:
            return exc

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(purge, range(20)))
    assert sum(isinstance(r, int) for r in results) == 1
    assert all(isinstance(r, NotFound) for r in results if not isinstance(r, int))
    with world.engine.connect() as conn:
        assert lifecycle.purge_trace(conn, key) is not None
    assert maintenance.verify_audit(world).ok

    service = Provisioning(world)
    informed = (clock.now() - timedelta(days=50)).date().isoformat()
    people = [(ins_for(i), demographics_for(ins_for(i))) for i in range(400, 420)]
    lines = [
        f"{ins.value},1.2.250.1.213.1.4.10,EXEMPLE,ALIX,{d.sex},{d.birth_date},37003,{informed}"
        for ins, d in people
    ]
    service.import_csv("ins,oid,nom,prenoms,sexe,naissance,commune,informe_le\n" + "\n".join(lines))
    start = threading.Barrier(4)

    def open_due(_: int) -> int:
        start.wait()
        return Provisioning(world).open_due()

    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(open_due, range(4)))
    assert sum(opened) == 20
    assert service.counts() == {"opened": 20}
    assert counters.verify_counters(world) == []


def _everything(rt: Runtime) -> str:
    """Every row of every table, as text (what a copy of the database would show)."""
    inspector = sa.inspect(rt.engine)
    with rt.engine.connect() as conn:
        return "\n".join(
            repr(conn.execute(sa.text(f'SELECT * FROM "{table}"')).all())  # noqa: S608
            for table in inspector.get_table_names()
        )


def test_a_purge_leaves_nothing_that_names_the_holder(world: Runtime, clock: FixedClock) -> None:
    """Issue 22: two audit rows kept the purged holder's INS (actor id ``patient:<INS>``) and
    two pending statistics rows stayed. After the purge neither the INS nor the names are
    anywhere in the database: not in any row (the trail uses a keyed pseudonym), and, on
    SQLite, not in the file once vacuumed."""
    from dmp.auth.portal import Portal
    from dmp.jobs.provisioning import Provisioning

    ins = ins_for(73)
    demo = demographics_for(ins)
    informed = (clock.now() - timedelta(days=60)).date().isoformat()
    line = f"{ins.value},{ins.oid},ZORGLUB,PHILOMENE,{demo.sex},{demo.birth_date},37003,{informed}"
    Provisioning(world).import_csv("ins,oid,nom,prenoms,sexe,naissance,commune,informe_le\n" + line)
    Provisioning(world).open_due()
    holder = world.access(actors.patient_actor(world, ins))
    letter = world.access(desk()).issue_activation_code(ins)
    portal = Portal(world)
    enrol = portal.set_password(
        portal.start_activation(letter.login, letter.code, "192.0.2.7"),
        "une phrase de passe assez longue",
        "une phrase de passe assez longue",
    )
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    assert full.device  # a device row for the account
    holder.declare_care_team(ins, GP)
    holder.deposit_document(ins, new_document(T0, title="Mes allergies"), b"pollen")
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    gp.search_documents(ins)  # a pending statistics row
    assert ins.value in _everything(world) and "ZORGLUB" in _everything(world)
    holder.request_deletion(ins)
    clock.advance(timedelta(days=world.settings.deletion_days))
    world.access(system_actor("purge")).purge_record(ins)

    dump = _everything(world)
    for clue in (ins.value, "ZORGLUB", "PHILOMENE", "Mes allergies"):
        assert clue not in dump, clue
    assert maintenance.verify_audit(world).ok
    assert counters.verify_counters(world) == []
    if world.engine.dialect.name == "sqlite":
        import sqlite3

        world.engine.dispose()  # nobody else holds the file while it is vacuumed
        path = world.settings.data_dir / "dmp.sqlite3"
        with contextlib.closing(sqlite3.connect(path)) as raw_conn:
            raw_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw_conn.execute("VACUUM")
        raw = b"".join(p.read_bytes() for p in path.parent.glob("dmp.sqlite3*"))
        for clue in (ins.value, "ZORGLUB", "PHILOMENE"):
            assert clue.encode() not in raw, clue
