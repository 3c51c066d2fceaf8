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

from dmp.records import direct
from dmp.records.schema import audit_events, audit_heads, stats_pending
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
    empty for a new chain. Concurrent writers of one chain queue here, other chains go on.

    An existing head (every chain but a new one) is locked in one statement; only a head not
    found is created (a no-op if a concurrent writer created it first), then locked."""
    found = direct.execute(conn, _LOCK_HEAD, {"chain_id": chain_id}).first()
    if found is None:
        conn.execute(_create_head(conn.dialect.name), {"chain_id": chain_id})
        found = direct.execute(conn, _LOCK_HEAD, {"chain_id": chain_id}).first()
        if found is None:
            raise RuntimeError(f"audit chain head {chain_id!r} missing after its creation")
    return int(found["seq"]), str(found["last_hash"])


@functools.cache
def _create_head(dialect: str) -> Any:
    """An empty head for a chain that has none (built once per dialect)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(audit_heads)
        .values(chain_id=sa.bindparam("chain_id"), seq=0, last_hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["chain_id"])
    )


_LOCK_HEAD = (
    sa.select(audit_heads.c.seq, audit_heads.c.last_hash)
    .where(audit_heads.c.chain_id == sa.bindparam("chain_id"))
    .with_for_update()
)


# Built once (an insert run with rows is compiled for their columns and cached).
_INSERT_EVENTS = audit_events.insert()
_INSERT_PENDING = stats_pending.insert()


def append_after(
    conn: Connection,
    chain_id: str,
    head_seq: int,
    rows: list[dict[str, Any]],
    pending: list[dict[str, Any]] | None = None,
) -> bool:
    """Append events that follow head #``head_seq`` and move the head past them, with the
    transaction's pending statistics counts (``stats_pending`` rows): one statement on
    PostgreSQL (the inserts take their rows only if the head update matched). Nothing is
    written, and False returned, if the head moved meanwhile."""
    pending = pending or []
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
        conn.execute(_INSERT_EVENTS, rows)
        if pending:
            conn.execute(_INSERT_PENDING, pending)
        return True
    for k, r in enumerate(rows):
        params.update({f"{n}_{k}": r[n] for n in names})
    for k, r in enumerate(pending):
        params.update({f"p_{n}_{k}": r[n] for n in _PENDING})
    inserted = direct.execute(conn, _append_statement(names, len(rows), len(pending)), params).rows
    return len(inserted) == len(rows)


_PENDING = ("patient_id", "id", "counter", "departement", "month", "code", "count")


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


def _rows_from(moved: Any, table: sa.Table, names: tuple[str, ...], count: int, prefix: str) -> Any:
    """``count`` rows of bound values, each selected only if the head moved."""
    selects = [
        sa.select(
            *(sa.bindparam(f"{prefix}{n}_{k}", type_=table.c[n].type).label(n) for n in names)
        ).select_from(moved)
        for k in range(count)
    ]
    return selects[0] if count == 1 else sa.union_all(*selects)


@functools.cache
def _append_statement(names: tuple[str, ...], count: int, pending: int = 0) -> sa.Insert:
    """PostgreSQL: ``WITH moved AS (UPDATE head ... RETURNING), counts AS (INSERT INTO
    stats_pending ... SELECT ... FROM moved) INSERT INTO audit_events ... SELECT ... FROM
    moved``: the events and the counts are inserted only if the head moved. Built once per
    number of events and counts, its values bound at execution (building it cost more than
    running it)."""
    moved = _move_head().returning(audit_heads.c.chain_id).cte("moved")
    statement = (
        audit_events.insert()
        .from_select(list(names), _rows_from(moved, audit_events, names, count, ""))
        .add_cte(moved)
    )
    if pending:
        counts = (
            stats_pending.insert()
            .from_select(list(_PENDING), _rows_from(moved, stats_pending, _PENDING, pending, "p_"))
            .cte("counts")
        )
        statement = statement.add_cte(counts)
    return statement.returning(audit_events.c.seq)


def _to_row(r: sa.Row[Any]) -> AuditRow:
    return AuditRow(**{k: r._mapping[k] for k in _FIELDS})


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


# -- whole-trail scans (verification): keyset over the primary key, in large batches ---------

# The chain ids are 32 hexadecimal characters: the trail splits into ranges by their first
# character, each read in primary-key order by one verifier.
RANGES = tuple("0123456789abcdef")


def heads_in(conn: Connection, first: str) -> list[tuple[str, int, str]]:
    """The heads of the chains whose id starts with ``first``, in chain order."""
    h = audit_heads.c
    rows = conn.execute(
        sa.select(h.chain_id, h.seq, h.last_hash)
        .where(h.chain_id >= first, h.chain_id < _next_prefix(first))
        .order_by(h.chain_id)
    ).all()
    return [(str(r.chain_id), int(r.seq), str(r.last_hash)) for r in rows]


def scan_in(conn: Connection, first: str, batch: int = 20_000) -> Iterator[AuditRow]:
    """Every event of the chains whose id starts with ``first``, in (chain, seq) order, read
    by keyset in batches of ``batch`` rows: one index range scan, never an offset."""
    a = audit_events.c
    end = _next_prefix(first)
    after: tuple[str, int] | None = None
    while True:
        where = [a.chain_id >= first, a.chain_id < end]
        if after is not None:
            where.append(sa.tuple_(a.chain_id, a.seq) > sa.tuple_(*after))
        rows = conn.execute(
            sa.select(audit_events).where(*where).order_by(a.chain_id, a.seq).limit(batch)
        ).all()
        if not rows:
            return
        for r in rows:
            yield _to_row(r)
        after = (str(rows[-1].chain_id), int(rows[-1].seq))


def _next_prefix(first: str) -> str:
    """The bound after the ids that start with ``first`` (lower-case hexadecimal): the next
    digit or letter, never punctuation (":" after "9"), which a database collation such as
    en_US may ignore when it compares."""
    return "a" if first == "9" else chr(ord(first) + 1)


def events_written(conn: Connection) -> int:
    """How many events the heads say were written (one row per chain)."""
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(audit_heads.c.seq), 0))).scalar_one()
    )
