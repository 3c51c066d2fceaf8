"""Group commit on SQLite (dmp.records.group_commit, issue 26): a read decides in a snapshot
and its audit event is committed with other reads' in one write transaction, before the read
returns.

What is checked: a thread returns only once its work is committed (another connection sees
it); works that come while a group runs are committed together by one of their threads; a
failing work fails its own thread only; an unavailable database fails the group at once; a
read-only transaction cannot write; through the gate, reads with group commit leave the same
trail, notices and counts as reads that hold the write lock, and simultaneous first reads at
night queue one notice of each kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.errors import DmpError, ServiceUnavailable
from dmp.records import database
from dmp.records.group_commit import GroupCommit
from dmp.runtime import Runtime
from tests.factories import GP, NURSE, T0, ins_for, load_directory, new_document, open_record, pro

NIGHT = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Paris


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    made = database.make_engine(f"sqlite:///{tmp_path / 'dmp.sqlite3'}")
    with made.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER UNIQUE)")
    yield made
    made.dispose()


def _rows(engine: sa.Engine) -> set[int]:
    with database.snapshot(engine) as conn:
        return {int(r[0]) for r in conn.exec_driver_sql("SELECT i FROM t")}


_INSERT = sa.text("INSERT INTO t VALUES (:i)")


def _insert(i: int) -> Callable[[sa.Connection], None]:
    def work(conn: sa.Connection) -> None:
        conn.execute(_INSERT, {"i": i})

    return work


def _group_of(engine: sa.Engine) -> GroupCommit:
    group = database.group_writer(engine)
    assert group is not None
    return group


def test_an_engine_on_disk_has_a_group_writer_and_others_none(tmp_path: Path) -> None:
    on_disk = database.make_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    off = database.make_engine(f"sqlite:///{tmp_path / 'b.sqlite3'}", group=False)
    memory = database.make_engine("sqlite://")
    try:
        assert database.group_writer(on_disk) is not None
        assert database.group_writer(off) is None
        assert database.group_writer(memory) is None
    finally:
        for made in (on_disk, off, memory):
            made.dispose()


def _when(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


Work = Callable[[sa.Connection], None]


def _behind_a_first_group(
    group: GroupCommit, first: Work, later: dict[int, Work], after: Callable[[int], object]
) -> dict[int, BaseException | None]:
    """Hand ``first`` over and, while its group runs (it waits for ``go``), the ``later``
    works from threads of their own; then let the first group end. What each thread's
    ``run`` raised (None: returned), keyed as ``later`` (0: the first); ``after(i)`` runs in
    thread i once its ``run`` returned."""
    go = threading.Event()
    outcomes: dict[int, BaseException | None] = {}

    def held(conn: sa.Connection) -> None:
        first(conn)
        assert go.wait(10)

    def hand_over(i: int, work: Work) -> None:
        try:
            group.run(work)
        except BaseException as error:
            outcomes[i] = error
            return
        outcomes[i] = None
        after(i)

    with ThreadPoolExecutor(len(later) + 1) as pool:
        done = [pool.submit(hand_over, 0, held)]
        _when(lambda: group.leading() and not group.waiting())
        done += [pool.submit(hand_over, i, work) for i, work in later.items()]
        _when(lambda: len(group.waiting()) == len(later))
        go.set()
        for future in done:
            future.result()
    return outcomes


def test_works_that_come_while_a_group_runs_are_committed_together(engine: sa.Engine) -> None:
    """The first work holds its group open until seven more threads have handed theirs over:
    those seven are committed in one second transaction, led by one of them, and each thread
    returns only when another connection sees its row."""
    group = _group_of(engine)
    seen: dict[int, bool] = {}

    def committed(i: int) -> None:
        seen[i] = i in _rows(engine)  # committed when run returned

    outcomes = _behind_a_first_group(
        group, _insert(0), {i: _insert(i) for i in range(1, 8)}, committed
    )
    assert outcomes == dict.fromkeys(range(8))
    assert seen == dict.fromkeys(range(8), True)
    assert (group.groups, group.works) == (2, 8)
    assert not group.leading() and group.waiting() == []


def test_a_failing_work_fails_its_own_thread_only(engine: sa.Engine) -> None:
    """A work that fails (a duplicate row) rolls its group back; the others are run again
    alone and committed; the failing thread gets its own error."""
    group = _group_of(engine)
    group.run(_insert(5))
    later = {i: _insert(i) for i in (2, 5, 3)}  # 5: a duplicate
    outcomes = _behind_a_first_group(group, _insert(1), later, lambda _: None)
    assert outcomes[0] is None and outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[5], sa.exc.IntegrityError)
    assert _rows(engine) == {1, 2, 3, 5}


def test_an_unavailable_database_fails_the_group_at_once(engine: sa.Engine) -> None:
    """A group that met an unavailable database (the lock waited for too long) fails every
    thread in it with the 503 and runs nothing again (each would only wait again)."""
    group = _group_of(engine)
    runs: list[int] = []

    def counted(i: int) -> Work:
        def work(conn: sa.Connection) -> None:
            runs.append(i)
            if i == 1:
                raise ServiceUnavailable("the database is busy; retry shortly")
            conn.execute(_INSERT, {"i": i})

        return work

    outcomes = _behind_a_first_group(
        group, lambda _: None, {i: counted(i) for i in (1, 2)}, lambda _: None
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ServiceUnavailable)
    assert isinstance(outcomes[2], ServiceUnavailable)
    assert runs == [1]  # the group stopped at 1's failure; neither is run again alone
    assert _rows(engine) == set()


def test_a_read_only_transaction_cannot_write(engine: sa.Engine) -> None:
    """The snapshot a read decides in refuses a write (it would take SQLite's lock outside the
    writers' turn); the same pooled connection writes again in a write transaction."""
    with (
        pytest.raises(sa.exc.OperationalError, match="readonly"),
        database.snapshot(engine) as conn,
    ):
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert _rows(engine) == {2}


# -- through the gate -------------------------------------------------------------------------


def _runtime(tmp_path: Path, name: str, clock: FixedClock, group: bool) -> Runtime:
    settings = Settings(
        data_dir=tmp_path / name, database_url="", test_mode=True, db_group_commit=group
    )
    runtime = Runtime.start(settings, clock=clock)
    load_directory(runtime)
    return runtime


def _story(rt: Runtime, clock: FixedClock) -> str:
    """Reads of every kind by a professional, a patient and an emergency reader, by day and by
    night, refused and allowed, first and later."""
    from dmp.domain.codes import PurposeOfUse
    from dmp.errors import Forbidden, NotFound

    ins = ins_for(71)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(T0), b"compte rendu")
    gp.search_documents(ins)  # first access
    gp.search_documents(ins)
    gp.read_document(ins, doc.logical_id)
    gp.read_content(ins, doc.logical_id)
    with pytest.raises(NotFound):
        gp.read_document(ins, "no-such-document")
    nurse = rt.access(pro(rt, NURSE))
    with pytest.raises(Forbidden):
        nurse.search_documents(ins)  # no consent yet
    nurse.declare_consent(ins)
    clock.set(NIGHT)
    nurse.search_documents(ins)  # first access, at night
    nurse.search_documents(ins)  # the same night: no second night notice
    gp.history(ins)
    emergency = rt.access(
        pro(rt, NURSE), PurposeOfUse.EMERGENCY, justification="inconsciente", patient=ins
    )
    emergency.search_documents(ins)  # opens a window: written as a change
    emergency.search_documents(ins)
    return doc.logical_id


def _trail(rt: Runtime, doc: str = "") -> dict[str, list[tuple[Any, ...]]]:
    """What the reads left, the document's random id written as DOC."""
    with rt.engine.connect() as conn:
        found = {
            "events": [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT chain_id IS NOT NULL, seq, action, actor_id, outcome, reason, target,"
                    " targets, at FROM audit_events ORDER BY at, seq"
                )
            ],
            "notices": sorted(
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT kind, recipient_kind, subject_id FROM notifications"
                )
            ),
            "first": sorted(
                tuple(r) for r in conn.exec_driver_sql("SELECT id_nat_ps FROM first_accesses")
            ),
            "counts": sorted(
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT counter, departement, month, code, count FROM stats_pending"
                )
            ),
        }
    return {
        name: [tuple("DOC" if doc and v == doc else v for v in row) for row in rows]
        for name, rows in found.items()
    }


def test_reads_in_groups_leave_what_reads_holding_the_lock_leave(tmp_path: Path) -> None:
    trails = []
    for group in (True, False):
        clock = FixedClock(T0)
        rt = _runtime(tmp_path, f"group-{group}", clock, group)
        try:
            assert (database.group_writer(rt.engine) is not None) is group
            trails.append(_trail(rt, _story(rt, clock)))
            if group:
                writer = database.group_writer(rt.engine)
                assert writer is not None and writer.works >= 8  # the reads went through it
            assert rt.access(pro(rt, GP)).history(ins_for(71)).total > 0
        finally:
            rt.close()
    grouped, alone = trails
    assert grouped["events"] and grouped["notices"] and grouped["first"] and grouped["counts"]
    kinds = [n[0] for n in grouped["notices"]]
    assert kinds.count("first_access") == 2 and kinds.count("night_access") == 1, kinds
    assert grouped == alone


def test_simultaneous_first_reads_at_night_in_groups_queue_one_notice_each(
    tmp_path: Path,
) -> None:
    """Twenty first reads of one professional at one night moment, through the group writer:
    one first access, one notice of each kind, twenty events, and the trail verifies."""
    from dmp.access.audit import verify

    clock = FixedClock(T0)
    rt = _runtime(tmp_path, "race", clock, True)
    try:
        ins = ins_for(72)
        open_record(rt, ins)
        rt.access(pro(rt, NURSE)).declare_consent(ins)
        clock.set(NIGHT)
        start = threading.Barrier(20)

        def read(_: int) -> BaseException | int:
            start.wait(10)
            try:
                return rt.access(pro(rt, NURSE)).search_documents(ins).total
            except DmpError as error:
                return error

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(read, range(20)))
        assert results == [0] * 20
        trail = _trail(rt)
        kinds = sorted(n[0] for n in trail["notices"])
        assert kinds.count("first_access") == 1 and kinds.count("night_access") == 1, kinds
        assert trail["first"] == [(pro(rt, NURSE).id,)]
        searches = [e for e in trail["events"] if e[2] == "document.search"]
        assert len(searches) == 20
        writer = database.group_writer(rt.engine)
        assert writer is not None and writer.groups < writer.works  # some were grouped
        report = verify(rt.engine, rt.audit_keys())
        assert report.ok, report
    finally:
        rt.close()
