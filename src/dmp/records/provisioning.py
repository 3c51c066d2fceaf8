"""Opt-out provisioning rows (storage only; the rules are in ``dmp.jobs.provisioning``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import provisioning


def add(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the people not yet listed; returns how many were new (a row already there,
    objected to or opened, is left as it is)."""
    if not rows:
        return 0
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    new = 0
    for row in rows:
        done = conn.execute(
            insert(provisioning)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(provisioning.c.ins_value)
        ).first()
        new += done is not None
    return new


def object_to(
    conn: Connection, ins_oid: str, ins_value: str, birth_date: Any, at: datetime
) -> bool:
    """Record an objection (before the opening): true if a pending row matched."""
    p = provisioning.c
    done = conn.execute(
        provisioning.update()
        .where(
            p.ins_oid == ins_oid,
            p.ins_value == ins_value,
            p.birth_date == birth_date,
            p.opened_at.is_(None),
            p.objected_at.is_(None),
        )
        .values(objected_at=at)
    )
    return done.rowcount == 1


def due(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    p = provisioning.c
    rows = conn.execute(
        sa.select(provisioning)
        .where(p.objection_until <= now, p.objected_at.is_(None), p.opened_at.is_(None))
        .order_by(p.objection_until)
        .limit(limit)
    ).all()
    return [dict(r._mapping) for r in rows]


def mark_opened(conn: Connection, ins_oid: str, ins_value: str, at: datetime) -> None:
    p = provisioning.c
    conn.execute(
        provisioning.update()
        .where(p.ins_oid == ins_oid, p.ins_value == ins_value)
        .values(opened_at=at)
    )


def counts(conn: Connection) -> dict[str, int]:
    p = provisioning.c
    state = sa.case(
        (p.opened_at.is_not(None), "opened"),
        (p.objected_at.is_not(None), "objected"),
        else_="pending",
    )
    rows = conn.execute(sa.select(state, sa.func.count()).group_by(state)).all()
    return {str(r[0]): int(r[1]) for r in rows}
