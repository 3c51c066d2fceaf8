"""Writes that race, fired 50 at a time on PostgreSQL: exactly one winner, no forked version chain.

Each of these once failed on PostgreSQL: the same uniqueId accepted twice, 40 replacements of one
document giving 6 successes, 40 PATCHes leaving 37 rows marked as the latest version, and two
multi-document bundles deadlocking on counter and audit rows taken in opposite orders.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from dmp.auth import actors
from dmp.domain.codes import PurposeOfUse
from dmp.errors import Conflict, DmpError, PreconditionFailed
from dmp.identity.actor import system_actor
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from dmp.stats import figures as statistics
from dmp.stats.counters import fold_pending, verify_counters
from tests.factories import CARDIOLOGIST, GP, NURSE, T0, ins_for, new_document, open_record, pro

pytestmark = pytest.mark.postgres

N = 50


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i < n from n threads released together; results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return work(i)
        except DmpError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def _versions(rt: Runtime, patient_id: str) -> list[tuple[str, int, bool, str]]:
    with rt.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT logical_id, version, latest, status FROM documents "
                "WHERE patient_id = :p ORDER BY logical_id, version"
            ),
            {"p": patient_id},
        ).all()
    return [(r[0], int(r[1]), bool(r[2]), str(r[3])) for r in rows]


def _assert_chains_intact(rt: Runtime, patient_id: str) -> dict[str, list[tuple[int, bool, str]]]:
    chains: dict[str, list[tuple[int, bool, str]]] = {}
    for logical, version, latest, status in _versions(rt, patient_id):
        chains.setdefault(logical, []).append((version, latest, status))
    for logical, chain in chains.items():
        assert [v for v, _, _ in chain] == list(range(1, len(chain) + 1)), logical
        assert [latest for _, latest, _ in chain] == [False] * (len(chain) - 1) + [True], logical
    return chains


@pytest.fixture
def record(world: Runtime) -> tuple[Runtime, Any, str]:
    ins = ins_for(900)
    open_record(world, ins)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(ins)  # to read back what it writes
    key = world.access(system_actor("test")).read_record(ins).key
    return world, ins, key


def test_one_unique_id_is_stored_once(record: tuple[Runtime, Any, str]) -> None:
    rt, ins, key = record
    meta = dataclasses.replace(new_document(T0), unique_id="1.2.250.1.999.1.42")
    results = _race(N, lambda _: rt.access(pro(rt, CARDIOLOGIST)).deposit_document(ins, meta, b"x"))
    won = [r for r in results if not isinstance(r, DmpError)]
    assert len(won) == 1, results
    assert all(isinstance(r, Conflict) for r in results if r not in won)
    assert len(_assert_chains_intact(rt, key)) == 1
    assert maintenance.verify_audit(rt).ok


def test_concurrent_replacements_have_one_winner(record: tuple[Runtime, Any, str]) -> None:
    rt, ins, key = record
    gate = rt.access(pro(rt, CARDIOLOGIST))
    original = gate.deposit_document(ins, new_document(T0), b"v1").logical_id
    results = _race(
        N,
        lambda _: rt.access(pro(rt, CARDIOLOGIST)).deposit_document(
            ins, new_document(T0), b"v2", replaces=original
        ),
    )
    won = [r for r in results if not isinstance(r, DmpError)]
    assert len(won) == 1, [r for r in results if isinstance(r, DmpError)][:3]
    assert all(isinstance(r, Conflict) for r in results if r not in won)
    chains = _assert_chains_intact(rt, key)
    # The original: version 1 current, version 2 superseded (once); and one replacement.
    assert chains[original] == [(1, False, "current"), (2, True, "superseded")]
    assert len(chains) == 2
    assert maintenance.verify_audit(rt).ok


def test_concurrent_patches_never_fork_the_version_chain(
    record: tuple[Runtime, Any, str],
) -> None:
    rt, ins, key = record
    doc = rt.access(pro(rt, CARDIOLOGIST)).deposit_document(ins, new_document(T0), b"x")
    # Every request names version 1 (If-Match): exactly one wins, the others get 412.
    results = _race(
        N,
        lambda i: rt.access(pro(rt, CARDIOLOGIST)).update_document(
            ins, doc.logical_id, masked_ps=i % 2 == 0, expected_version=1
        ),
    )
    won = [r for r in results if not isinstance(r, DmpError)]
    assert len(won) == 1
    assert all(isinstance(r, PreconditionFailed) for r in results if r not in won)
    # Without If-Match: each either wins or gets 409, and the chain stays one line.
    results = _race(
        N,
        lambda i: rt.access(pro(rt, CARDIOLOGIST)).update_document(
            ins, doc.logical_id, masked_ps=i % 2 == 0
        ),
    )
    won = [r for r in results if not isinstance(r, DmpError)]
    assert won
    assert all(isinstance(r, Conflict) for r in results if r not in won)
    chain = _assert_chains_intact(rt, key)[doc.logical_id]
    assert len(chain) == 2 + len(won)
    search = rt.access(pro(rt, CARDIOLOGIST)).search_documents(ins, statuses=None)
    assert [d.logical_id for d in search.items] == [doc.logical_id]


def test_concurrent_deletes_have_one_winner(record: tuple[Runtime, Any, str]) -> None:
    rt, ins, key = record
    doc = rt.access(pro(rt, CARDIOLOGIST)).deposit_document(ins, new_document(T0), b"x")
    results = _race(
        N, lambda _: rt.access(pro(rt, CARDIOLOGIST)).delete_document(ins, doc.logical_id)
    )
    assert sum(r is None for r in results) == 1
    assert len(_assert_chains_intact(rt, key)[doc.logical_id]) == 2


def test_bundles_on_many_records_do_not_deadlock(world: Runtime) -> None:
    """Bundles of several documents of several types, on records of one département, take the
    statistics counters and the audit heads in one order: none deadlocks or fails."""
    rt = world
    records = [ins_for(910 + i) for i in range(10)]
    for ins in records:
        open_record(rt, ins)
        rt.access(actors.patient_actor(rt, ins)).update_settings(ins, medecin_traitant=GP)
    types = ["11502-2", "34112-3", "11488-4", "18748-4"]

    def bundle(i: int) -> Any:
        order = types if i % 2 else list(reversed(types))
        items = [
            (dataclasses.replace(new_document(T0), type_code=t), f"{i}-{t}".encode(), None)
            for t in order
        ]
        return rt.access(pro(rt, CARDIOLOGIST)).deposit_batch(records[i % len(records)], items)

    results = _race(N, bundle)
    assert [r for r in results if isinstance(r, DmpError)] == []
    assert verify_counters(rt) == []
    assert maintenance.verify_audit(rt).ok


def test_concurrent_activations_and_closures_count_once(record: tuple[Runtime, Any, str]) -> None:
    """A change acts on facts read under the patient's chain lock: 50 concurrent activations
    count one activated account, 50 concurrent closures close once (the others: 409)."""
    rt, ins, _ = record
    holder = actors.patient_actor(rt, ins)
    results = _race(N, lambda _: rt.access(holder).activate_account(ins))
    assert [r for r in results if isinstance(r, DmpError)] == []
    results = _race(N, lambda _: rt.access(holder).close_record(ins, "choix du patient"))
    won = [r for r in results if not isinstance(r, DmpError)]
    assert len(won) == 1
    assert all(isinstance(r, Conflict) for r in results if r not in won)
    report = statistics.adoption(rt, ["37"])
    figures = report.departements[0]
    assert (figures.activated, figures.closed) == (1, 1)
    assert verify_counters(rt) == []
    assert maintenance.verify_audit(rt).ok


def test_concurrent_folds_beside_consultations_count_each_access_once(
    record: tuple[Runtime, Any, str],
) -> None:
    """Folders race each other and the consultations that add pending counts: each count lands
    in the counters exactly once (SKIP LOCKED gives folders disjoint rows; a row is deleted in
    the transaction that adds it to a counter)."""
    rt, ins, _ = record
    cardio = pro(rt, CARDIOLOGIST)

    def work(i: int) -> Any:
        if i % 2:
            return fold_pending(rt, batch=3)
        return rt.access(cardio).search_documents(ins)

    results = _race(N, work)
    assert [r for r in results if isinstance(r, DmpError)] == []
    fold_pending(rt)
    with rt.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stats_pending")).scalar_one() == 0
    figures = statistics.adoption(rt, ["37"]).departements[0]
    assert figures.accesses.get("normal") == N // 2
    assert verify_counters(rt) == []


def test_simultaneous_first_emergency_reads_open_one_window(world: Runtime) -> None:
    """Fifty first emergency reads of one record by one professional, at once: one window,
    one emergency.open event, one notice to the holder (issue 22: two windows were opened)."""
    ins = ins_for(901)
    open_record(world, ins)
    nurse = pro(world, NURSE)
    results = _race(
        50,
        lambda i: world.access(
            nurse, PurposeOfUse.EMERGENCY, justification="patient inconscient", patient=ins
        ).search_documents(ins, limit=10),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    with world.engine.connect() as conn:
        windows = conn.execute(sa.text("SELECT count(*) FROM emergency_accesses")).scalar_one()
        opened = conn.execute(
            sa.text("SELECT count(*) FROM audit_events WHERE action = 'emergency.open'")
        ).scalar_one()
        told = conn.execute(
            sa.text(
                "SELECT count(*) FROM notifications WHERE kind = 'emergency_access' "
                "AND recipient_kind = 'patient'"
            )
        ).scalar_one()
    assert (windows, opened, told) == (1, 1, 1)
    assert maintenance.verify_audit(world).ok


def test_one_vihf_assertion_sent_fifty_times_at_once_is_accepted_once(world: Runtime) -> None:
    """The XDS.b door's replay check under a race: one signed assertion, fifty requests."""
    from dmp.auth import vihf
    from tests.factories import HOSPITAL
    from tests.xds_helpers import Software, security

    ins = ins_for(901)
    open_record(world, ins)
    sw = Software(world, HOSPITAL)
    header = security(sw.assertion(CARDIOLOGIST, ins, now=world.clock.now()))
    results = _race(N, lambda _: vihf.verify(world, header))
    accepted = [r for r in results if isinstance(r, vihf.Vihf)]
    refused = [r for r in results if isinstance(r, vihf.VihfRefused)]
    assert len(accepted) == 1, results[:3]
    assert len(refused) == N - 1
    assert all("replay" in r.message for r in refused)


def test_simultaneous_night_reads_queue_one_night_notice(world: Runtime) -> None:
    """Fifty reads by one professional at the same night moment: the holder is told once."""
    from datetime import UTC, datetime

    from tests.factories import NURSE as NIGHT_NURSE

    ins = ins_for(902)
    open_record(world, ins)
    nurse = world.access(pro(world, NIGHT_NURSE))
    nurse.declare_consent(ins)
    nurse.search_documents(ins)  # by day: the first access is behind (it serialises its reads)
    world.clock.set(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # type: ignore[attr-defined]
    results = _race(N, lambda _: world.access(pro(world, NIGHT_NURSE)).search_documents(ins))
    assert not [r for r in results if isinstance(r, DmpError)], results[:3]
    with world.engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM notifications WHERE kind = 'night_access'")
        ).scalar_one()
    assert count == 1


def test_first_events_of_a_new_chain_written_at_once_chain_in_turn(world: Runtime) -> None:
    """Six transactions, each already open, append the first events of a chain that does
    not exist yet (an actor's own chain) at the same moment: each looks for the head and finds
    none, one creates it (the others' creations wait for it, then do nothing), and each locks
    it before chaining: the six events follow one another and the trail verifies."""
    from dmp.access.audit import EventSpec, RequestContext, actor_chain, write_events
    from dmp.domain.codes import AuditAction, Outcome

    writers = 6  # within the engine's pool (4 + 4 overflow): all in their transactions at once
    actor = system_actor("first-events")
    chain = actor_chain(actor)
    together = threading.Barrier(writers)

    def first_event(_: int) -> None:
        with world.engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
            together.wait(timeout=30)
            write_events(
                conn,
                [EventSpec(AuditAction.RECORD_READ)],
                actor=actor,
                patient_id=None,
                purpose=PurposeOfUse.NORMAL,
                outcome=Outcome.SUCCESS,
                reason="ALLOW_SYSTEM",
                ctx=RequestContext(),
                at=world.clock.now(),
                key=world.audit_key,
            )

    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(first_event, range(writers)))  # any failure is raised here
    with world.engine.connect() as conn:
        seqs = conn.execute(
            sa.text("SELECT seq FROM audit_events WHERE chain_id = :c ORDER BY seq"), {"c": chain}
        ).scalars()
        assert list(seqs) == list(range(1, writers + 1))
    report = maintenance.verify_audit(world)
    assert report.ok, report.fault
