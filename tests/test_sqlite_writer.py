"""SQLite writers take turns on a lock file (dmp.records.database._configure_sqlite).

Every transaction of the service but content streaming starts with BEGIN IMMEDIATE; waiting
for SQLite's write lock in its busy handler (sleeps of 1 to 100 ms) made the tail of a
consultation (issue 26, docs/performance.md). Writers of every process queue on an flock of
``<database>.writer.lock`` first, and the kernel wakes the next one at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dmp.errors import ServiceUnavailable
from dmp.records import database


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    made = database.make_engine(f"sqlite:///{tmp_path / 'dmp.sqlite3'}")
    with made.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (i INTEGER)")
    yield made
    made.dispose()


def _turn_is_free(tmp_path: Path) -> bool:
    """Whether another taker (another open file description, as another process has) gets
    the turn at once."""
    fd = os.open(tmp_path / "dmp.sqlite3.writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor drops an flock it took
    return True


def test_a_write_transaction_holds_the_turn_until_it_ends(
    engine: sa.Engine, tmp_path: Path
) -> None:
    assert _turn_is_free(tmp_path)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not _turn_is_free(tmp_path)
    assert _turn_is_free(tmp_path)  # committed

    def failing_unit() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            raise RuntimeError("the unit of work fails")

    with pytest.raises(RuntimeError):
        failing_unit()
    assert _turn_is_free(tmp_path)  # rolled back
    conn = engine.connect()
    conn.exec_driver_sql("INSERT INTO t VALUES (3)")  # begun, never committed
    assert not _turn_is_free(tmp_path)
    conn.close()
    assert _turn_is_free(tmp_path)  # closed: rolled back, back in the pool
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1


def test_a_read_only_transaction_takes_no_turn(engine: sa.Engine, tmp_path: Path) -> None:
    with database.snapshot(engine) as conn:
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
        assert _turn_is_free(tmp_path)


def test_a_writer_waits_for_another_process_without_meeting_the_busy_handler(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """Another process holds the turn (and SQLite's write lock) for a second and a half; this
    process's writer, whose busy handler would give up after 10 ms, waits for its turn and
    writes. Without the turn it fails with "database is locked"."""
    holder = (
        "import sys, time\n"
        "from dmp.records import database\n"
        "engine = database.make_engine(f'sqlite:///{sys.argv[1]}')\n"
        "with engine.begin() as conn:\n"
        "    conn.exec_driver_sql('INSERT INTO t VALUES (10)')\n"
        "    print('held', flush=True)\n"
        "    time.sleep(1.5)\n"
        "print('done', flush=True)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "dmp.sqlite3")],
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        try:
            assert other.stdout is not None
            assert other.stdout.readline().strip() == "held"
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                raw.execute("PRAGMA busy_timeout=10")  # type: ignore[union-attr]
                started = time.monotonic()
                with conn.begin():
                    conn.exec_driver_sql("INSERT INTO t VALUES (11)")
                waited = time.monotonic() - started
            assert other.wait(timeout=30) == 0
        finally:
            other.kill()
    assert waited > 0.5  # it did wait for the other process (a late start still waits 1 s)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT i FROM t ORDER BY i").scalars().all()
    assert rows == [10, 11]


def test_a_thread_holding_the_turn_does_not_wait_for_itself(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A second write transaction opened by the thread that holds the turn (through another
    connection) is left to SQLite's busy handler, which gives up: an error, never a hang."""
    outcome: list[BaseException | None] = []

    def nested() -> None:
        with engine.begin() as first:
            first.exec_driver_sql("INSERT INTO t VALUES (1)")
            second = engine.connect()
            try:
                raw = second.connection.dbapi_connection
                raw.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
                second.exec_driver_sql("INSERT INTO t VALUES (2)")
                outcome.append(None)
            except Exception as exc:  # the error is the expected outcome
                outcome.append(exc)
            finally:
                second.close()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the thread waited for its own turn"
    assert outcome and outcome[0] is not None
    assert "locked" in str(outcome[0]) or "unavailable" in str(outcome[0]).lower()
    assert _turn_is_free(tmp_path)


def test_writers_of_one_process_go_in_the_order_they_came() -> None:
    """A process's writers queue in arrival order before the lock file (the kernel then
    chooses between the processes' first writers only): none is overtaken by a later one."""
    arrivals = database._Arrivals()
    arrivals.take()  # the turn is busy
    served: list[int] = []
    threads = []
    for n in range(6):

        def writer(n: int = n) -> None:
            arrivals.take()
            served.append(n)
            arrivals.give()

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while len(arrivals._waiting) < n + 1:  # this writer is queued before the next comes
            assert time.monotonic() < deadline
            time.sleep(0.001)
    arrivals.give()
    for thread in threads:
        thread.join(timeout=10)
    assert served == list(range(6))
    arrivals.take()  # free again: taken at once
    arrivals.give()


def test_a_writer_that_waits_too_long_in_its_process_gets_a_503_not_a_hang() -> None:
    """Queued behind a turn that is not given back (a transaction waiting for that very
    writer), a writer gives up after the timeout, as SQLite's busy handler would: a 503. The
    queue stays sound: the next writer is served when the turn is given back."""
    arrivals = database._Arrivals()
    arrivals.take()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        arrivals.take(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5
    assert not arrivals._waiting  # the writer that gave up left the queue
    served = threading.Event()

    def writer() -> None:
        arrivals.take(timeout=10)
        served.set()
        arrivals.give()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not arrivals._waiting:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    arrivals.give()
    assert served.wait(10)
    thread.join(timeout=10)
    arrivals.take(timeout=0)  # free again: taken at once
    arrivals.give()
