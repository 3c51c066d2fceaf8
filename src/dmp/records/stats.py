"""Adoption counters: updated in the transaction of the event, read in a few small queries."""

from __future__ import annotations

import collections
import functools
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import (
    audit_events,
    documents,
    milestones,
    patients,
    purge_traces,
    records,
    stats_accesses,
    stats_closures,
    stats_departements,
    stats_documents,
    stats_openings,
    stats_pending,
    structures,
)

SHARDS = 16


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _bump(
    conn: Connection, table: sa.Table, key: dict[str, Any], column: str = "count", by: int = 1
) -> None:
    stmt = _bump_statement(conn.dialect.name, table, tuple(key), column)
    conn.execute(stmt, {**key, "_by": by})


@functools.cache
def _bump_statement(dialect: str, table: sa.Table, key: tuple[str, ...], column: str) -> Any:
    """The counter upsert, built once per table and key (values bound at execution)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    by = sa.bindparam("_by", type_=sa.BigInteger)
    stmt = insert(table).values(
        {**{k: sa.bindparam(k, type_=table.c[k].type) for k in key}, column: by}
    )
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={column: getattr(table.c, column) + by}
    )


def month(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def record_opened(
    conn: Connection, departement: str, at: datetime, channel: str, structure_kind: str
) -> int:
    """Count an opening; returns its rank in the département (1 for the first record).

    The upsert locks the département's row until commit, so concurrent openings in one
    département get consecutive ranks and exactly one of them reaches each threshold.
    """
    stmt = _insert(conn)(stats_departements).values(
        departement=departement, opened=1, active=1, closed=0, activated=0
    )
    c = stats_departements.c
    rank = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["departement"], set_={"opened": c.opened + 1, "active": c.active + 1}
        ).returning(c.opened)
    ).scalar_one()
    _bump(
        conn,
        stats_openings,
        {
            "departement": departement,
            "month": month(at),
            "channel": channel,
            "structure_kind": structure_kind,
        },
    )
    return int(rank)


def record_closed(conn: Connection, departement: str, at: datetime) -> None:
    c = stats_departements.c
    conn.execute(
        stats_departements.update()
        .where(c.departement == departement)
        .values(active=c.active - 1, closed=c.closed + 1)
    )
    _bump(conn, stats_closures, {"departement": departement, "month": month(at)})


def account_activated(conn: Connection, departement: str) -> None:
    c = stats_departements.c
    conn.execute(
        stats_departements.update()
        .where(c.departement == departement)
        .values(activated=c.activated + 1)
    )


class Tally:
    """The document and access counts of one transaction (one patient's), written at its end as
    pending rows beside the patient: an insert, no shared counter row locked on the request
    path. ``fold_pending`` moves them into the counters later, exactly once."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, tuple[str, ...]]] = collections.Counter()
        self._patient_id: str | None = None

    def document_deposited(
        self, patient_id: str, departement: str, at: datetime, type_code: str
    ) -> None:
        self._patient_id = patient_id
        self._counts[(stats_documents.name, (departement, month(at), type_code))] += 1

    def documents_accessed(
        self, patient_id: str, departement: str, at: datetime, purpose: str
    ) -> None:
        self._patient_id = patient_id
        self._counts[(stats_accesses.name, (departement, month(at), purpose))] += 1

    def flush(self, conn: Connection) -> None:
        rows = self.take()
        if rows:
            conn.execute(_pending_insert(), rows)

    def take(self) -> list[dict[str, Any]]:
        """The pending rows of the counts so far, handed to whoever writes them (the audit
        append carries them in its statement); the tally is empty after."""
        if not self._counts:
            return []
        assert self._patient_id is not None
        rows = [
            {
                "patient_id": self._patient_id,
                "id": secrets.token_hex(16),
                "counter": table_name,
                "departement": key[0],
                "month": key[1],
                "code": key[2],
                "count": count,
            }
            for (table_name, key), count in sorted(self._counts.items())
        ]
        self._counts.clear()
        return rows


@functools.cache
def _pending_insert() -> sa.Insert:
    return stats_pending.insert()


def fold_pending(conn: Connection, limit: int = 10_000) -> int:
    """Move up to ``limit`` pending counts into the counters, in this transaction: the pending
    rows are deleted and the counters bumped together, so each count lands exactly once, and
    concurrent folders take disjoint rows (SKIP LOCKED on PostgreSQL; SQLite has one writer).
    Returns how many pending rows were folded."""
    p = stats_pending.c
    if conn.dialect.name == "postgresql":
        chosen = (
            sa.select(p.patient_id, p.id).limit(limit).with_for_update(skip_locked=True)
        ).subquery()
        taken: list[Any] = list(
            conn.execute(
                stats_pending.delete()
                .where(
                    sa.tuple_(p.patient_id, p.id).in_(sa.select(chosen.c.patient_id, chosen.c.id))
                )
                .returning(p.counter, p.departement, p.month, p.code, p.count)
            ).all()
        )
    else:
        picked = conn.execute(
            sa.select(p.patient_id, p.id, p.counter, p.departement, p.month, p.code, p.count).limit(
                limit
            )
        ).all()
        if picked:  # one executemany, not a statement per row
            conn.execute(
                stats_pending.delete().where(
                    p.patient_id == sa.bindparam("_pid"), p.id == sa.bindparam("_id")
                ),
                [{"_pid": r.patient_id, "_id": r.id} for r in picked],
            )
        taken = [(r[2], r[3], r[4], r[5], r[6]) for r in picked]
    _add_up(conn, taken)
    return len(taken)


def fold_patient(conn: Connection, patient_id: str) -> int:
    """Fold one patient's pending counts now (before a purge: the counts stay, the rows that
    name the patient go). Returns how many rows were folded."""
    p = stats_pending.c
    taken = list(
        conn.execute(
            stats_pending.delete()
            .where(p.patient_id == patient_id)
            .returning(p.counter, p.departement, p.month, p.code, p.count)
        ).all()
    )
    _add_up(conn, taken)
    return len(taken)


def _add_up(conn: Connection, taken: Sequence[Any]) -> None:
    """Bump the counters by the pending counts taken (in a fixed order: no deadlock)."""
    sums: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    for counter, departement, month_, code, count in taken:
        sums[(counter, departement, month_, code)] += int(count)
    shard = secrets.randbelow(SHARDS)
    for (counter, departement, month_, code), by in sorted(sums.items()):
        table, names = _TALLIED[counter]
        key = dict(zip(names, (departement, month_, code), strict=True))
        _bump(conn, table, {**key, "shard": shard}, by=by)


def pending_rows(conn: Connection) -> int:
    """How many pending counts wait to be folded."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(stats_pending)).scalar_one())


def _pending(
    conn: Connection,
    counter: str,
    departements: Sequence[str] | None,
    start: str | None,
    end: str | None,
) -> list[tuple[str, str, str, int]]:
    p = stats_pending.c
    where = [p.counter == counter, *_period(p.month, start, end)]
    if departements:
        where.append(p.departement.in_(departements))
    return [
        (r.departement, r.month, r.code, int(r.n))
        for r in conn.execute(
            sa.select(p.departement, p.month, p.code, sa.func.sum(p.count).label("n"))
            .where(*where)
            .group_by(p.departement, p.month, p.code)
        )
    ]


def _merged(
    a: list[tuple[str, str, str, int]], b: list[tuple[str, str, str, int]]
) -> list[tuple[str, str, str, int]]:
    sums: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for dep, mon, code, n in (*a, *b):
        sums[(dep, mon, code)] += n
    return [(*k, n) for k, n in sorted(sums.items())]


_TALLIED: dict[str, tuple[sa.Table, tuple[str, ...]]] = {
    stats_documents.name: (stats_documents, ("departement", "month", "type_code")),
    stats_accesses.name: (stats_accesses, ("departement", "month", "purpose")),
}


def add_milestone(
    conn: Connection,
    departement: str,
    threshold: int,
    at: datetime,
    structure_id: str | None,
    channel: str,
) -> None:
    conn.execute(
        milestones.insert().values(
            departement=departement,
            threshold=threshold,
            reached_at=at,
            structure_id=structure_id,
            channel=channel,
        )
    )


# -- reading -------------------------------------------------------------------------------------


def _period(col: sa.ColumnElement[str], start: str | None, end: str | None) -> list[Any]:
    out = []
    if start:
        out.append(col >= start)
    if end:
        out.append(col <= end)
    return out


def read_totals(conn: Connection, departements: Sequence[str] | None) -> dict[str, dict[str, int]]:
    """Records opened to date, active, closed and activated, per département (one small
    table: a row per département)."""
    d = stats_departements.c
    where = [d.departement.in_(departements)] if departements else []
    return {
        r.departement: {
            "opened_total": int(r.opened),
            "active": int(r.active),
            "closed": int(r.closed),
            "activated": int(r.activated),
        }
        for r in conn.execute(sa.select(stats_departements).where(*where))
    }


def total_buckets(
    conn: Connection, departements: Sequence[str] | None
) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str]]]:
    """The non-empty opening buckets (département, month, channel, structure kind) and closure
    buckets (département, month) of all time: the buckets the totals add up (their cell keys)."""
    o = stats_openings.c
    cl = stats_closures.c
    openings = [
        (r.departement, r.month, r.channel, r.structure_kind)
        for r in conn.execute(
            sa.select(o.departement, o.month, o.channel, o.structure_kind)
            .where(*([o.departement.in_(departements)] if departements else []))
            .group_by(o.departement, o.month, o.channel, o.structure_kind)
            .having(sa.func.sum(o.count) != 0)
        )
    ]
    closures = [
        (r.departement, r.month)
        for r in conn.execute(
            sa.select(cl.departement, cl.month).where(
                *([cl.departement.in_(departements)] if departements else []), cl.count != 0
            )
        )
    ]
    return openings, closures


def read_counters(
    conn: Connection, departements: Sequence[str] | None, start: str | None, end: str | None
) -> dict[str, Any]:
    """Everything the statistics show, from the counter tables: a handful of grouped scans."""

    def where_dept(col: sa.ColumnElement[str]) -> list[Any]:
        return [col.in_(departements)] if departements else []

    totals = read_totals(conn, departements)
    o = stats_openings.c
    openings = [
        (r.departement, r.month, r.channel, r.structure_kind, int(r.n))
        for r in conn.execute(
            sa.select(
                o.departement, o.month, o.channel, o.structure_kind, sa.func.sum(o.count).label("n")
            )
            .where(*where_dept(o.departement), *_period(o.month, start, end))
            .group_by(o.departement, o.month, o.channel, o.structure_kind)
        )
    ]
    cl = stats_closures.c
    closures = [
        (r.departement, r.month, int(r.n))
        for r in conn.execute(
            sa.select(cl.departement, cl.month, cl.count.label("n")).where(
                *where_dept(cl.departement), *_period(cl.month, start, end), cl.count != 0
            )
        )
    ]
    dc = stats_documents.c
    docs = [
        (r.departement, r.month, r.type_code, int(r.n))
        for r in conn.execute(
            sa.select(dc.departement, dc.month, dc.type_code, sa.func.sum(dc.count).label("n"))
            .where(*where_dept(dc.departement), *_period(dc.month, start, end))
            .group_by(dc.departement, dc.month, dc.type_code)
        )
    ]
    a = stats_accesses.c
    accesses = [
        (r.departement, r.month, r.purpose, int(r.n))
        for r in conn.execute(
            sa.select(a.departement, a.month, a.purpose, sa.func.sum(a.count).label("n"))
            .where(*where_dept(a.departement), *_period(a.month, start, end))
            .group_by(a.departement, a.month, a.purpose)
        )
    ]
    # What is not folded yet counts too: the figures are exact whenever they are read.
    docs = _merged(docs, _pending(conn, stats_documents.name, departements, start, end))
    accesses = _merged(accesses, _pending(conn, stats_accesses.name, departements, start, end))
    m = milestones.c
    reached = [
        (r.departement, int(r.threshold), r.reached_at, r.structure_id, r.channel)
        for r in conn.execute(
            sa.select(milestones)
            .where(*where_dept(m.departement))
            .order_by(m.departement, m.threshold)
        )
    ]
    return {
        "totals": totals,
        "openings": openings,
        "closures": closures,
        "documents": docs,
        "accesses": accesses,
        "milestones": reached,
    }


def _month_expr(conn: Connection, col: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(col, "YYYY-MM")
    return sa.func.strftime("%Y-%m", col)


def recount(conn: Connection) -> dict[str, Any]:
    """The same figures computed from the base tables (slow; for checks and rebuilds), purged
    records included through the figures their purge trace kept."""
    figures = recount_rows(conn)
    for (kept,) in conn.execute(
        sa.select(purge_traces.c.figures).where(purge_traces.c.figures.is_not(None))
    ):
        figures = _merge(figures, json.loads(kept))
    return figures


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    totals = {k: dict(v) for k, v in a["totals"].items()}
    for dept, values in b["totals"].items():
        into = totals.setdefault(dept, dict.fromkeys(values, 0))
        for key, n in values.items():
            into[key] = into.get(key, 0) + int(n)
    out: dict[str, Any] = {"totals": totals}
    # Traces kept before closures were counted by month have no "closures".
    for part in ("openings", "closures", "documents", "accesses"):
        summed: dict[tuple[Any, ...], int] = {}
        for item in [*a.get(part, []), *b.get(part, [])]:
            key = tuple(item[:-1])
            summed[key] = summed.get(key, 0) + int(item[-1])
        out[part] = [(*k, n) for k, n in summed.items()]
    return out


def recount_rows(conn: Connection, patient_id: str | None = None) -> dict[str, Any]:
    """The figures of the rows present, for everyone or one patient (what a purge keeps)."""
    p, r = patients.c, records.c
    only = (lambda col: col == patient_id) if patient_id is not None else (lambda col: sa.true())
    totals: dict[str, dict[str, int]] = {}
    for row in conn.execute(
        sa.select(
            p.departement,
            sa.func.count().label("opened"),
            sa.func.sum(sa.case((r.status == "active", 1), else_=0)).label("active"),
            sa.func.sum(sa.case((r.status == "closed", 1), else_=0)).label("closed"),
            sa.func.count(r.activated_at).label("activated"),
        )
        .select_from(patients.join(records, r.patient_id == p.id))
        .where(only(p.id))
        .group_by(p.departement)
    ):
        totals[row.departement] = {
            "opened_total": int(row.opened),
            "active": int(row.active),
            "closed": int(row.closed),
            "activated": int(row.activated),
        }
    st = structures.alias("s")
    kind = sa.func.coalesce(st.c.sector_code, "unknown")
    omonth = _month_expr(conn, r.opened_at)
    openings = [
        (row[0], row[1], row[2], row[3], int(row[4]))
        for row in conn.execute(
            sa.select(p.departement, omonth, r.channel, kind, sa.func.count())
            .select_from(
                patients.join(records, r.patient_id == p.id).outerjoin(
                    st, st.c.id == r.opened_by_structure
                )
            )
            .where(only(p.id))
            .group_by(p.departement, omonth, r.channel, kind)
        )
    ]
    cmonth = _month_expr(conn, r.closed_at)
    closures = [
        (row[0], row[1], int(row[2]))
        for row in conn.execute(
            sa.select(p.departement, cmonth, sa.func.count())
            .select_from(patients.join(records, r.patient_id == p.id))
            .where(r.status == "closed", r.closed_at.is_not(None), only(p.id))
            .group_by(p.departement, cmonth)
        )
    ]
    dd = documents.c
    dmonth = _month_expr(conn, dd.submitted_at)
    docs = [
        (row[0], row[1], row[2], int(row[3]))
        for row in conn.execute(
            sa.select(p.departement, dmonth, dd.type_code, sa.func.count())
            .select_from(documents.join(patients, p.id == dd.patient_id))
            .where(dd.version == 1, only(p.id))
            .group_by(p.departement, dmonth, dd.type_code)
        )
    ]
    ae = audit_events.c
    amonth = _month_expr(conn, ae.at)
    accesses = [
        (row[0], row[1], row[2], int(row[3]))
        for row in conn.execute(
            sa.select(p.departement, amonth, ae.purpose, sa.func.count())
            .select_from(audit_events.join(patients, p.id == ae.chain_id))
            .where(
                ae.action.in_(("document.search", "document.read")),
                ae.outcome == "success",
                ae.actor_kind == "professional",
                only(p.id),
            )
            .group_by(p.departement, amonth, ae.purpose)
        )
    ]
    return {
        "totals": totals,
        "openings": openings,
        "closures": closures,
        "documents": docs,
        "accesses": accesses,
    }


def rebuild(conn: Connection) -> None:
    """Replace the counters by a full recount (milestones are kept: they are history)."""
    figures = recount(conn)
    for table in (
        stats_departements,
        stats_openings,
        stats_closures,
        stats_documents,
        stats_accesses,
        stats_pending,
    ):
        conn.execute(table.delete())
    rows = [
        {
            "departement": k,
            "opened": v["opened_total"],
            "active": v["active"],
            "closed": v["closed"],
            "activated": v["activated"],
        }
        for k, v in figures["totals"].items()
    ]
    if rows:
        conn.execute(stats_departements.insert(), rows)
    for table, key, items in (
        (
            stats_openings,
            ("departement", "month", "channel", "structure_kind"),
            figures["openings"],
        ),
        (stats_closures, ("departement", "month"), figures["closures"]),
        (stats_documents, ("departement", "month", "type_code"), figures["documents"]),
        (stats_accesses, ("departement", "month", "purpose"), figures["accesses"]),
    ):
        batch = []
        for item in items:
            row = dict(zip(key, item[:-1], strict=True))
            if "shard" in table.c:
                row["shard"] = 0
            row["count"] = item[-1]
            batch.append(row)
        if batch:
            conn.execute(table.insert(), batch)


def record_reopened(conn: Connection, departement: str, closed_at: datetime | None) -> None:
    """A reopened record takes its closure back, in the month it was closed (the figures
    then count it as never closed, as a recount from the records does)."""
    c = stats_departements.c
    conn.execute(
        stats_departements.update()
        .where(c.departement == departement)
        .values(active=c.active + 1, closed=c.closed - 1)
    )
    if closed_at is not None:
        key = {"departement": departement, "month": month(closed_at)}
        _bump(conn, stats_closures, key, by=-1)
