"""The notification outbox's delivery state (storage only; ``dmp.jobs.notify`` delivers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import job_leases, notifications


@dataclass(frozen=True, slots=True)
class Notice:
    patient_id: str
    id: str
    kind: str
    recipient_kind: str
    recipient_id: str | None
    subject_id: str | None
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
    status: str
    attempts: int
    last_error: str | None
    leased_by: str | None
    lease_until: datetime | None
    channel: str | None
    message_id: str | None
    secret_sealed: bytes | None = None  # a one-time code, sealed until delivered


def _notice(row: sa.Row[Any]) -> Notice:
    return Notice(**{k: row._mapping[k] for k in Notice.__slots__})


def claim(
    conn: Connection, *, worker: str, now: datetime, until: datetime, limit: int
) -> list[Notice]:
    """Lease up to ``limit`` due notices to this worker: pending, due, and not leased by a
    worker still inside its lease (one that died leaves its lease to expire). On PostgreSQL
    concurrent workers skip each other's rows (SKIP LOCKED); SQLite has one writer."""
    n = notifications
    due = (
        sa.select(n.c.patient_id, n.c.id)
        .where(
            n.c.status == "pending",
            n.c.due_at <= now,
            sa.or_(n.c.lease_until.is_(None), n.c.lease_until < now),
        )
        .order_by(n.c.due_at, n.c.patient_id, n.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    keys = [(r.patient_id, r.id) for r in conn.execute(due)]
    if not keys:
        return []
    for patient_id, notice_id in keys:
        conn.execute(
            n.update()
            .where(n.c.patient_id == patient_id, n.c.id == notice_id)
            .values(leased_by=worker, lease_until=until)
        )
    rows = conn.execute(
        sa.select(n).where(sa.tuple_(n.c.patient_id, n.c.id).in_(keys)).order_by(n.c.due_at)
    ).all()
    return [_notice(r) for r in rows]


def _mine(notice: Notice, worker: str) -> list[Any]:
    n = notifications
    return [
        n.c.patient_id == notice.patient_id,
        n.c.id == notice.id,
        n.c.leased_by == worker,
        n.c.status == "pending",
    ]


def finish(
    conn: Connection,
    notice: Notice,
    *,
    worker: str,
    status: str,
    at: datetime,
    channel: str | None = None,
    message_id: str | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome (sent or skipped) if this worker still holds the lease."""
    done = conn.execute(
        notifications.update()
        .where(*_mine(notice, worker))
        .values(
            status=status,
            sent_at=at if status == "sent" else None,
            channel=channel,
            message_id=message_id,
            last_error=error,
            leased_by=None,
            lease_until=None,
            secret_sealed=None,  # delivered or dropped: the code is forgotten
        )
    )
    return done.rowcount == 1


def failed(
    conn: Connection,
    notice: Notice,
    *,
    worker: str,
    error: str,
    retry_at: datetime,
    dead: bool,
) -> None:
    """One more failed attempt: retried at ``retry_at``, or dead."""
    n = notifications
    conn.execute(
        n.update()
        .where(*_mine(notice, worker))
        .values(
            attempts=n.c.attempts + 1,
            last_error=error[:200],
            due_at=retry_at,
            status="dead" if dead else "pending",
            leased_by=None,
            lease_until=None,
            # A dead notice forgets its code: a retry by the operator would send a dead code.
            secret_sealed=None if dead else n.c.secret_sealed,
        )
    )


def postpone(conn: Connection, notice: Notice, *, worker: str, until: datetime) -> None:
    """Not yet (a digest waits for its hour): due later, no attempt counted."""
    conn.execute(
        notifications.update()
        .where(*_mine(notice, worker))
        .values(due_at=until, leased_by=None, lease_until=None)
    )


def listing(conn: Connection, statuses: tuple[str, ...] | None, limit: int) -> list[Notice]:
    n = notifications
    query = sa.select(n).order_by(n.c.due_at.desc()).limit(limit)
    if statuses:
        query = query.where(n.c.status.in_(statuses))
    return [_notice(r) for r in conn.execute(query)]


def retry(conn: Connection, notice_id: str, now: datetime) -> bool:
    """A dead (or skipped) notice back to pending, due now, its attempts reset."""
    n = notifications
    done = conn.execute(
        n.update()
        .where(n.c.id == notice_id, n.c.status.in_(("dead", "skipped")))
        .values(status="pending", attempts=0, due_at=now, last_error=None)
    )
    return done.rowcount == 1


def counts(conn: Connection) -> dict[str, int]:
    n = notifications
    rows = conn.execute(sa.select(n.c.status, sa.func.count()).group_by(n.c.status)).all()
    return {str(r[0]): int(r[1]) for r in rows}


def take_lease(conn: Connection, name: str, *, worker: str, now: datetime, until: datetime) -> bool:
    """The named job's lease for this worker, if no other worker holds it now."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(job_leases).values(name=name).on_conflict_do_nothing())
    taken = conn.execute(
        job_leases.update()
        .where(
            job_leases.c.name == name,
            sa.or_(
                job_leases.c.lease_until.is_(None),
                job_leases.c.lease_until < now,
                job_leases.c.leased_by == worker,
            ),
        )
        .values(leased_by=worker, lease_until=until)
    )
    return taken.rowcount == 1


def release_lease(conn: Connection, name: str, *, worker: str, ran_at: datetime) -> None:
    conn.execute(
        job_leases.update()
        .where(job_leases.c.name == name, job_leases.c.leased_by == worker)
        .values(leased_by=None, lease_until=None, last_run_at=ran_at)
    )
