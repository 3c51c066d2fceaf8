"""Storage of the hash-chained audit trail (the hashing itself is dmp.access.audit's)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import audit_events, audit_heads
from dmp.records.types import AuditRow, AuthorizedPatient

_FIELDS = tuple(f.name for f in fields(AuditRow))
GENESIS = "0" * 64


def any_event(conn: Connection) -> bool:
    return conn.execute(sa.select(audit_events.c.seq).limit(1)).first() is not None


def key_ids_in_use(conn: Connection) -> set[str]:
    """The audit keys the stored MACs need (a full scan: operator checks only)."""
    stmt = sa.select(audit_events.c.key_id).where(audit_events.c.key_id.is_not(None)).distinct()
    return {str(k) for k in conn.execute(stmt).scalars()}


def lock_head(conn: Connection, chain_id: str) -> tuple[int, str]:
    """The chain's head (events so far, last MAC), locked until the transaction ends; created
    empty for a new chain. Concurrent writers of one chain queue here, other chains go on."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(audit_heads)
        .values(chain_id=chain_id, seq=0, last_hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["chain_id"])
    )
    row = conn.execute(
        sa.select(audit_heads.c.seq, audit_heads.c.last_hash)
        .where(audit_heads.c.chain_id == chain_id)
        .with_for_update()
    ).one()
    return int(row.seq), str(row.last_hash)


def append_after(
    conn: Connection, chain_id: str, head_seq: int, rows: list[dict[str, Any]]
) -> bool:
    """Append events that follow head #``head_seq`` and move the head past them: one statement
    on PostgreSQL (the insert takes its rows only if the head update matched). Nothing is
    written, and False returned, if the head moved meanwhile."""
    names = tuple(rows[0])
    params: dict[str, Any] = {
        "_chain": chain_id,
        "_head_seq": head_seq,
        "_new_seq": head_seq + len(rows),
        "_last_hash": rows[-1]["hash"],
    }
    if conn.dialect.name != "postgresql":
        if conn.execute(_move_head(), params).rowcount != 1:
            return False
        conn.execute(audit_events.insert(), rows)
        return True
    for k, r in enumerate(rows):
        params.update({f"{n}_{k}": r[n] for n in names})
    inserted = conn.execute(_append_statement(names, len(rows)), params).all()
    return len(inserted) == len(rows)


@functools.cache
def _move_head() -> sa.Update:
    """Move the head from ``_head_seq`` to ``_new_seq``, only if it is still at ``_head_seq``."""
    return (
        audit_heads.update()
        .where(
            audit_heads.c.chain_id == sa.bindparam("_chain", type_=sa.String),
            audit_heads.c.seq == sa.bindparam("_head_seq", type_=sa.BigInteger),
        )
        .values(
            seq=sa.bindparam("_new_seq", type_=sa.BigInteger),
            last_hash=sa.bindparam("_last_hash", type_=sa.String),
        )
    )


@functools.cache
def _append_statement(names: tuple[str, ...], count: int) -> sa.Insert:
    """PostgreSQL: ``WITH moved AS (UPDATE head ... RETURNING) INSERT ... SELECT ... FROM
    moved``: the events are inserted only if the head moved. Built once per number of events,
    its values bound at execution (building it cost more than running it)."""
    cte = _move_head().returning(audit_heads.c.chain_id).cte("moved")
    selects = [
        sa.select(
            *(sa.bindparam(f"{n}_{k}", type_=audit_events.c[n].type).label(n) for n in names)
        ).select_from(cte)
        for k in range(count)
    ]
    source = selects[0] if count == 1 else sa.union_all(*selects)
    return (
        audit_events.insert()
        .from_select(list(names), source)
        .add_cte(cte)
        .returning(audit_events.c.seq)
    )


def _to_row(r: sa.Row[Any]) -> AuditRow:
    return AuditRow(**{k: r._mapping[k] for k in _FIELDS})


def heads(conn: Connection) -> Iterator[tuple[str, int, str]]:
    for r in conn.execute(sa.select(audit_heads).order_by(audit_heads.c.chain_id)):
        yield str(r.chain_id), int(r.seq), str(r.last_hash)


def chain_ids_without_head(conn: Connection) -> list[str]:
    """Chains that have events but no head row (a head row was removed)."""
    stmt = (
        sa.select(audit_events.c.chain_id)
        .distinct()
        .where(~sa.exists().where(audit_heads.c.chain_id == audit_events.c.chain_id))
    )
    return [str(x) for x in conn.execute(stmt).scalars()]


def chain(
    conn: Connection, chain_id: str, *, upto: int | None = None, batch: int = 1000
) -> Iterator[AuditRow]:
    """A chain's events in stored sequence order (up to ``upto``), read in batches."""
    last = 0
    bound = [] if upto is None else [audit_events.c.seq <= upto]
    while True:
        rows = conn.execute(
            sa.select(audit_events)
            .where(audit_events.c.chain_id == chain_id, audit_events.c.seq > last, *bound)
            .order_by(audit_events.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for r in rows:
            yield _to_row(r)
        last = int(rows[-1].seq)


def patient_history(
    conn: Connection,
    scope: AuthorizedPatient,
    *,
    actor_id: str | None,
    limit: int,
    offset: int,
    actor_kinds: tuple[str, ...] | None = None,
    purposes: tuple[str, ...] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
) -> tuple[list[AuditRow], int]:
    """The patient's events, newest first; ``actor_id`` restricts to one actor's own actions,
    the other filters to kinds of actor, access modes and a period; ``before_seq`` continues
    a reading from where its last page ended (a keyset: events added since do not shift it)."""
    where = [audit_events.c.chain_id == scope.patient_id]
    if before_seq is not None:
        where.append(audit_events.c.seq < before_seq)
    if actor_id is not None:
        where.append(audit_events.c.actor_id == actor_id)
    if actor_kinds:
        where.append(audit_events.c.actor_kind.in_(actor_kinds))
    if purposes:
        where.append(audit_events.c.purpose.in_(purposes))
    if since is not None:
        where.append(audit_events.c.at >= since)
    if until is not None:
        where.append(audit_events.c.at < until)
    # The page and its total in one round trip (a window count), as the document search does.
    total_col = sa.func.count().over().label("_total")
    rows = conn.execute(
        sa.select(audit_events, total_col)
        .where(*where)
        .order_by(audit_events.c.seq.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        total = int(rows[0]._mapping["_total"])
    elif offset:
        total = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(audit_events).where(*where)
            ).scalar_one()
        )
    else:
        total = 0
    return [_to_row(r) for r in rows], total


def declarations(
    conn: Connection, scope: AuthorizedPatient, actions: tuple[str, ...], targets: list[str]
) -> list[tuple[str, str, datetime, str]]:
    """The successful events of these actions naming these targets in the patient's chain
    (consents, care-team declarations): (action, target, when, declarer's kind), oldest first."""
    if not targets:
        return []
    a = audit_events.c
    rows = conn.execute(
        sa.select(a.action, a.target, a.at, a.actor_kind)
        .where(
            a.chain_id == scope.patient_id,
            a.action.in_(actions),
            a.outcome == "success",
            a.target.in_(targets),
        )
        .order_by(a.seq)
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


_READ_ACTIONS = ("document.search", "document.read", "summary.read", "list.search")


def professional_patterns(
    conn: Connection, since: datetime
) -> list[tuple[str, int, int, int, int]]:
    """Per professional, since then: (idNatPS, records read, records whose consent they
    declared themselves, records where they were refused, records opened in emergency), each
    a count of distinct records (one statement over the trail)."""
    a = audit_events.c

    def distinct(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count(sa.distinct(sa.case((condition, a.chain_id))))

    rows = conn.execute(
        sa.select(
            a.actor_id,
            distinct(sa.and_(a.action.in_(_READ_ACTIONS), a.outcome == "success")),
            distinct(
                sa.and_(
                    a.action == "consent.declare",
                    a.outcome == "success",
                    a.target == a.actor_id,
                )
            ),
            distinct(a.outcome == "denied"),
            distinct(sa.and_(a.action == "emergency.open", a.outcome == "success")),
        )
        .where(a.actor_kind == "professional", a.at >= since, a.patient_id.is_not(None))
        .group_by(a.actor_id)
        .order_by(a.actor_id)
    ).all()
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
