from __future__ import annotations

import threading
from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa

from dmp.access import audit
from dmp.clock import FixedClock
from dmp.errors import Forbidden
from dmp.jobs import maintenance
from dmp.records.schema import audit_events, audit_heads
from dmp.runtime import Runtime
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
    report = maintenance.verify_audit(world)
    assert report.ok, report.fault
    # The patient's five, and the directory import of the fixture (a system job's event).
    assert len(_events(world, chain)) == 5
    assert (report.chains, report.events) == (2, 5 + 1)


def test_changed_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(
        world,
        "UPDATE audit_events SET actor_id = 'someone-else' WHERE chain_id = :c AND seq = 3",
        c=chain,
    )
    fault = maintenance.verify_audit(world).fault
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
    fault = maintenance.verify_audit(world).fault
    assert fault is not None and fault.seq == 2


def test_deleted_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_events WHERE chain_id = :c AND seq = 2", c=chain)
    fault = maintenance.verify_audit(world).fault
    assert fault is not None
    assert (fault.chain_id, fault.seq) == (chain, 2)
    assert "missing" in fault.problem


def test_deleted_last_event_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_events WHERE chain_id = :c AND seq = 5", c=chain)
    fault = maintenance.verify_audit(world).fault
    assert fault is not None and fault.chain_id == chain
    assert "5 events were written" in fault.problem


def test_reordered_events_are_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "UPDATE audit_events SET seq = 100 WHERE chain_id = :c AND seq = 2", c=chain)
    _exec(world, "UPDATE audit_events SET seq = 2 WHERE chain_id = :c AND seq = 3", c=chain)
    _exec(world, "UPDATE audit_events SET seq = 3 WHERE chain_id = :c AND seq = 100", c=chain)
    fault = maintenance.verify_audit(world).fault
    assert fault is not None
    assert (fault.chain_id, fault.seq) == (chain, 2)


def test_removed_chain_head_is_detected(world: Runtime) -> None:
    chain = _activity(world)
    _exec(world, "DELETE FROM audit_heads WHERE chain_id = :c", c=chain)
    fault = maintenance.verify_audit(world).fault
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
    assert maintenance.verify_audit(world).ok


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
    report = maintenance.verify_audit(world)
    assert report.ok, report.fault
    assert report.events == 21 + 1  # the opening + 20 deposits; the fixture's directory import


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_events SET reason = 'X'", "DELETE FROM audit_events"],
)
def test_the_database_refuses_to_change_events(world: Runtime, sql: str) -> None:
    _activity(world)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), world.engine.begin() as conn:
        conn.execute(sa.text(sql))
    assert maintenance.verify_audit(world).ok


def _rewrite_chain(
    rt: Runtime, chain: str, seq: int, secret: bytes | None, key_id: str | None = None
) -> None:
    """What whoever holds the database can do: change one event's reason, recompute its hash
    and every later one's with the public algorithm (or a guessed key), and the head."""
    lift_audit_protection(rt.engine)
    with rt.engine.begin() as conn:
        rows = conn.execute(
            sa.select(audit_events)
            .where(audit_events.c.chain_id == chain, audit_events.c.seq >= seq)
            .order_by(audit_events.c.seq)
        ).all()
        prev = conn.execute(
            sa.select(audit_events.c.hash).where(
                audit_events.c.chain_id == chain, audit_events.c.seq == seq - 1
            )
        ).scalar_one()
        for r in rows:
            event = {str(k): v for k, v in r._asdict().items() if k != "hash"}
            event["prev_hash"] = prev
            if r.seq == seq:
                event["reason"] = "ALLOW_SYSTEM"
            event["key_id"] = key_id
            new_hash = audit.event_mac(event, secret)
            conn.execute(
                audit_events.update()
                .where(audit_events.c.chain_id == chain, audit_events.c.seq == r.seq)
                .values(
                    reason=event["reason"], prev_hash=prev, hash=new_hash, key_id=event["key_id"]
                )
            )
            prev = new_hash
        conn.execute(
            audit_heads.update().where(audit_heads.c.chain_id == chain).values(last_hash=prev)
        )


@pytest.mark.parametrize("guess", ["plain-sha256", "wrong-key"])
def test_a_full_rewrite_with_the_database_alone_is_detected(world: Runtime, guess: str) -> None:
    """Defect: the chain was plain SHA-256, so changing an event and recomputing the following
    hashes and the head passed verification. The MAC key lives in the key ring, not the
    database."""
    chain = _activity(world)
    if guess == "plain-sha256":
        _rewrite_chain(world, chain, 3, None)
    else:
        _rewrite_chain(world, chain, 3, b"k" * 32, world.keyring.active_audit_key_id)
    report = maintenance.verify_audit(world)
    assert not report.ok
    assert report.fault is not None and report.fault.seq == 3
    # The same rewrite with the real key would pass: the key is what protects the trail.
    ring = world.keyring
    assert ring.active_audit_key_id is not None
    key_id = ring.active_audit_key_id
    _rewrite_chain(world, chain, 3, ring.audit_keys[key_id], key_id)
    assert maintenance.verify_audit(world).ok


def test_verification_runs_beside_live_writes(world: Runtime) -> None:
    """Defect: verify reported tampering when an event was committed while it ran."""
    _activity(world)
    gp = world.access(pro(world, GP))
    ins = ins_for(1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                gp.search_documents(ins)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(15):
            report = maintenance.verify_audit(world)
            assert report.ok, report.fault
    finally:
        stop.set()
        thread.join()
    assert not errors


def test_a_clock_with_another_offset_keeps_chains_valid(world: Runtime) -> None:
    """Defect: an event written at 10:30+01:00 was hashed with its offset but stored in UTC."""
    clock = world.clock
    assert isinstance(clock, FixedClock)
    clock.set(T0.astimezone(timezone(timedelta(hours=1))))
    _activity(world)
    report = maintenance.verify_audit(world)
    assert report.ok, report.fault


def test_readers_never_take_the_write_lock(world: Runtime) -> None:
    """Defect: on SQLite, `dmp audit verify` and the public statistics took the write lock, so
    a long verification stopped every deposit. They read a snapshot now: with a writer holding
    its transaction open, both finish at once."""
    from dmp.stats import figures as statistics

    _activity(world)
    done: list[str] = []

    def readers() -> None:
        assert maintenance.verify_audit(world).ok
        statistics.adoption(world)
        done.append("read")

    with world.engine.begin() as writer:
        writer.execute(sa.text("UPDATE records SET mask_all = mask_all"))
        thread = threading.Thread(target=readers)
        thread.start()
        thread.join(timeout=10)
        assert done == ["read"]


def test_a_stale_chain_head_falls_back_to_the_locked_one(world: Runtime) -> None:
    """The kernel appends with the head its facts read, in one statement that checks the head
    did not move; when it did (a concurrent writer), the events are chained after the locked
    head instead, never beside it."""
    from dmp.access.audit import EventSpec, RequestContext, write_events
    from dmp.domain.codes import AuditAction, Outcome, PurposeOfUse
    from dmp.identity.actor import system_actor

    chain = _activity(world)
    stale = (1, "0" * 64)  # the chain has five events by now
    with world.engine.begin() as conn:
        write_events(
            conn,
            [EventSpec(AuditAction.RECORD_READ), EventSpec(AuditAction.HISTORY_READ)],
            actor=system_actor("test"),
            patient_id=chain,
            purpose=PurposeOfUse.NORMAL,
            outcome=Outcome.SUCCESS,
            reason="ALLOW_SYSTEM",
            ctx=RequestContext(),
            at=world.clock.now(),
            key=world.audit_key,
            head=stale,
        )
    assert [seq for seq, _ in _events(world, chain)] == [1, 2, 3, 4, 5, 6, 7]
    report = maintenance.verify_audit(world)
    assert report.ok, report.fault


def _many_chains(rt: Runtime) -> list[str]:
    """Records of several patients: chains in several of the sixteen ranges of chain ids."""
    chains = []
    gp = rt.access(pro(rt, GP))
    for i in range(40, 52):
        ins = ins_for(i)
        open_record(rt, ins)
        gp.declare_consent(ins)
        chains.append(gp.deposit_document(ins, new_document(T0), b"x").patient_id)
    return chains


def test_a_verification_in_small_batches_reads_across_their_bounds(
    world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    from dmp.records import audit_log

    _many_chains(world)
    whole = audit.verify(world.engine, world.audit_keys())
    monkeypatch.setattr(audit_log, "scan_in", functools.partial(audit_log.scan_in, batch=2))
    small = audit.verify(world.engine, world.audit_keys())
    assert whole.ok and small.ok
    assert (small.chains, small.events) == (whole.chains, whole.events)
    with world.engine.connect() as conn:
        assert (
            whole.events
            == conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar()
        )
        assert (
            whole.chains
            == conn.execute(sa.select(sa.func.count()).select_from(audit_heads)).scalar()
        )


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_events SET actor_id = 'x' WHERE chain_id = :c AND seq = 2",
        "DELETE FROM audit_events WHERE chain_id = :c AND seq = 1",
        "DELETE FROM audit_heads WHERE chain_id = :c",
    ],
)
def test_processes_in_parallel_find_what_one_process_finds(world: Runtime, tamper: str) -> None:
    chains = sorted(_many_chains(world))
    parallel = audit.verify(world.engine, world.audit_keys(), workers=2, parallel_from=0)
    assert parallel.ok
    _exec(world, tamper, c=chains[len(chains) // 2])
    alone = audit.verify(world.engine, world.audit_keys())
    together = audit.verify(world.engine, world.audit_keys(), workers=2, parallel_from=0)
    assert alone.fault is not None and alone.fault.chain_id == chains[len(chains) // 2]
    assert together == alone
