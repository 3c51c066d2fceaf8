"""Group commit: the writes of many requests committed in one SQLite write transaction.

On SQLite one transaction at a time may write. A read of a record still writes its audit event,
so every read used to hold the write lock from its first statement to its commit, and the
readers of the whole service queued there (issue 26). Now a read decides and reads in a
snapshot, which takes no lock, and hands what it must write (its audit events, its statistics
counts, a first access's notice) to this writer as a function of a connection. The first thread
to hand over work leads: it takes the write lock once, runs the work of every thread that came
before its transaction began, commits, and wakes them; whoever came meanwhile is led by the
next of them. Each thread returns only once its work is committed, so durability is what a
transaction of its own would give, and a reply is never sent for a read whose audit event could
still be lost.

A work that fails rolls back the group; the others are run again, each in a transaction of its
own, so one request's error is never another's. An unavailable database (the lock waited for
too long) fails the whole group at once: running each again would only wait again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from dmp.errors import ServiceUnavailable

Work = Callable[[Connection], None]

# The most works one transaction runs (a group holds SQLite's lock while it runs them).
MAX_GROUP = 64


@dataclass(eq=False)
class _Entry:
    work: Work
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to lead the next group, not because its work is done
    error: BaseException | None = None


class GroupCommit:
    """The process's writer of grouped work for one engine (see the module's docstring)."""

    def __init__(self, engine: Engine, max_group: int = MAX_GROUP) -> None:
        self._engine = engine
        self._max = max_group
        self._guard = threading.Lock()
        self._queue: list[_Entry] = []
        self._leading = False
        # What the groups did (tests and benchmarks read them): groups, works.
        self.groups = 0
        self.works = 0

    def leading(self) -> bool:
        """Whether a thread is running a group (or about to)."""
        with self._guard:
            return self._leading

    def waiting(self) -> list[Work]:
        """The works handed over and not yet taken into a group."""
        with self._guard:
            return [entry.work for entry in self._queue]

    def run(self, work: Work) -> None:
        """Run ``work`` in a write transaction shared with the other threads' works, and
        return once it is committed; raise what it raised (or what failed the group). A work
        may run twice (its group failed because of another work, and it runs again alone):
        it writes only through the connection it is given."""
        entry = _Entry(work)
        with self._guard:
            self._queue.append(entry)
            lead = not self._leading
            self._leading = True
        if not lead:
            entry.done.wait()
            lead = entry.lead  # woken to lead the group its own work is in
        if lead:
            self._lead()
        if entry.error is not None:
            raise entry.error

    def _lead(self) -> None:
        """Run one group (this thread's work is in it: it was queued before it could lead),
        then hand the lead to the first thread still waiting, or give it up."""
        with self._guard:
            group, self._queue = self._queue[: self._max], self._queue[self._max :]
        try:
            self._commit(group)
        finally:
            with self._guard:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for entry in group:
                entry.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()

    def _commit(self, group: list[_Entry]) -> None:
        try:
            with self._engine.begin() as conn:
                for entry in group:
                    entry.work(conn)
            self.groups += 1
            self.works += len(group)
            return
        except ServiceUnavailable as unavailable:
            for entry in group:
                entry.error = unavailable
            return
        except BaseException as failed:
            if len(group) == 1:
                group[0].error = failed
                return
        for entry in group:  # one failed: each alone, so only its own thread gets the error
            try:
                with self._engine.begin() as conn:
                    entry.work(conn)
                self.groups += 1
                self.works += 1
            except BaseException as error:
                entry.error = error
