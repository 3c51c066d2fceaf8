"""Attempt and failure counters shared by every process (storage only; the limits are in
``dmp.auth.throttle``). One row per counted thing, keyed by a SHA-256 of it: the table never
holds an address, a login or an INS in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import auth_throttle


@dataclass(frozen=True, slots=True)
class Counter:
    count: int
    blocked_until: datetime | None


def bump(conn: Connection, key: str, *, now: datetime, window: timedelta) -> Counter:
    """Count one more event under ``key``, atomically: a window older than ``window`` starts
    again at one. Returns the new count and any block still recorded."""
    t = auth_throttle
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    expired = t.c.window_start <= now - window
    stmt = (
        insert(t)
        .values(key=key, count=1, window_start=now, blocked_until=None)
        .on_conflict_do_update(
            index_elements=[t.c.key],
            set_={
                "count": sa.case((expired, 1), else_=t.c.count + 1),
                "window_start": sa.case((expired, now), else_=t.c.window_start),
            },
        )
        .returning(t.c.count, t.c.blocked_until)
    )
    count, until = conn.execute(stmt).one()
    return Counter(int(count), _aware(until))


def block(conn: Connection, key: str, until: datetime) -> None:
    t = auth_throttle
    conn.execute(t.update().where(t.c.key == key).values(blocked_until=until))


def blocked_until(conn: Connection, key: str) -> datetime | None:
    t = auth_throttle
    return _aware(conn.execute(sa.select(t.c.blocked_until).where(t.c.key == key)).scalar())


def clear(conn: Connection, key: str) -> None:
    conn.execute(auth_throttle.delete().where(auth_throttle.c.key == key))


def forget_old(conn: Connection, before: datetime, now: datetime) -> int:
    """Drop counters whose window ended before ``before`` and that block nothing any more."""
    t = auth_throttle
    done = conn.execute(
        t.delete().where(
            t.c.window_start < before,
            sa.or_(t.c.blocked_until.is_(None), t.c.blocked_until < now),
        )
    )
    return int(done.rowcount or 0)


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite through RETURNING gives the stored text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
