from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from dmp.access import admin
from dmp.access.runtime import Runtime
from dmp.errors import Forbidden
from tests.factories import (
    GP,
    NURSE,
    T0,
    ins_for,
    lift_audit_protection,
    new_document,
    open_record,
    pro,
)


def _activity(rt: Runtime) -> str:
    """Open a record, deposit and read documents; returns the patient's chain id."""
    ins = ins_for(1)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(T0), b"contenu")
    gp.read_content(ins, doc.logical_id)
    gp.search_documents(ins)
    return doc.patient_id


def _events(rt: Runtime, chain: str) -> list[sa.Row[tuple[int, str]]]:
    with rt.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT seq, event_id FROM audit_events WHERE chain_id = :c ORDER BY seq"),
                {"c": chain},
            )
        )


def _exec(rt: Runtime, sql: str, **params: object) -> None:
    """Tamper as the database owner would: the append-only triggers are dropped first."""
    lift_audit_protection(rt.engine)
    with rt.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_intact_trail_verifies(world: Runtime) -> None:
    chain = _activity(world)
    report = admin.verify_audit(world)
    assert report.ok, report.fault
    assert report.events == len(_events(world, chain)) == 5


def test_changed_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(
        world,
        "UPDATE audit_events SET actor_id = 'someone-else' WHERE chain_id = :c AND seq = 3",
        c=chain,
    )
    fault = admin.verify_audit(world).fault
    assert fault is not None
    assert (fault.chain_id, fault.seq) == (chain, 3)
    assert "changed" in fault.problem


def test_changed_hash_is_detected_by_the_next_event(world: Runtime) -> None:
    chain = _activity(world)
    # Recomputing an edited event's hash is not enough: the next event points at the old hash.
    _exec(
        world,
        "UPDATE audit_events SET hash = :h WHERE chain_id = :c AND seq = 2",
        h="f" * 64,
        c=chain,
    )
    fault = admin.verify_audit(world).fault
    assert fault is not None and fault.seq == 2


def test_deleted_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_events WHERE chain_id = :c AND seq = 2", c=chain)
    fault = admin.verify_audit(world).fault
    assert fault is not None
    assert (fault.chain_id, fault.seq) == (chain, 2)
    assert "missing" in fault.problem


def test_deleted_last_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_events WHERE chain_id = :c AND seq = 5", c=chain)
    fault = admin.verify_audit(world).fault
    assert fault is not None and fault.chain_id == chain
    assert "5 events were written" in fault.problem


def test_reordered_events_are_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "UPDATE audit_events SET seq = 100 WHERE chain_id = :c AND seq = 2", c=chain)
    _exec(world, "UPDATE audit_events SET seq = 2 WHERE chain_id = :c AND seq = 3", c=chain)
    _exec(world, "UPDATE audit_events SET seq = 3 WHERE chain_id = :c AND seq = 100", c=chain)
    fault = admin.verify_audit(world).fault
    assert fault is not None
    assert (fault.chain_id, fault.seq) == (chain, 2)


def test_removed_chain_head_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_heads WHERE chain_id = :c", c=chain)
    fault = admin.verify_audit(world).fault
    assert fault is not None and fault.chain_id == chain


def test_refusal_is_audited_although_the_request_rolled_back(world: Runtime) -> None:
    ins = ins_for(2)
    open_record(world, ins)
    with pytest.raises(Forbidden):
        world.access(pro(world, NURSE)).search_documents(ins)
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor_id, outcome, reason FROM audit_events ORDER BY at, seq")
        ).all()
    assert (NURSE, "denied", "DENY_NO_CONSENT") in [tuple(r) for r in rows]
    assert admin.verify_audit(world).ok


def test_concurrent_writers_of_one_chain_keep_it_consistent(world: Runtime) -> None:
    ins = ins_for(3)
    open_record(world, ins)
    errors: list[BaseException] = []

    def deposit(n: int) -> None:
        try:
            gp = world.access(pro(world, GP))
            for i in range(5):
                gp.deposit_document(ins, new_document(T0, title=f"doc {n}-{i}"), b"x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deposit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = admin.verify_audit(world)
    assert report.ok, report.fault
    assert report.events == 21  # the opening + 20 deposits


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_events SET reason = 'X'", "DELETE FROM audit_events"],
)
def test_the_database_refuses_to_change_events(world: Runtime, sql: str) -> None:
    _activity(world)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), world.engine.begin() as conn:
        conn.execute(sa.text(sql))
    assert admin.verify_audit(world).ok
