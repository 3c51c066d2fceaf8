"""Documents: metadata rows, sealed contents, and the visibility-filtered search."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.domain.codes import VisibilityFlag
from dmp.domain.visibility import DocumentVisibility
from dmp.records.schema import document_contents, document_lists, documents
from dmp.records.types import AuthorizedPatient, DocumentCriteria, DocumentRow

_DOC_FIELDS = tuple(f.name for f in fields(DocumentRow))


def _visibility_clause(v: DocumentVisibility) -> list[sa.ColumnElement[bool]]:
    d = documents.c
    clauses: list[sa.ColumnElement[bool]] = []
    if v.statuses is not None:
        clauses.append(d.status.in_(v.statuses))
    if v.type_codes is not None:
        clauses.append(d.type_code.in_(sorted(v.type_codes)))
    own = sa.or_(d.author_id.in_(v.masked_authors), d.author_structure.in_(v.masked_structures))
    if v.masked == "none":
        clauses.append(sa.false() if v.mask_everything else d.masked_ps.is_(False))
    elif v.masked == "authors":
        clauses.append(own if v.mask_everything else sa.or_(d.masked_ps.is_(False), own))
    if v.authors is not None:
        clauses.append(
            sa.or_(d.author_id.in_(v.authors), d.author_structure.in_(v.author_structures))
        )
    if v.hide_invisible_patient_at is not None:
        clauses.append(
            sa.or_(
                d.invisible_patient.is_(False),
                sa.and_(
                    d.invisible_patient_until.is_not(None),
                    d.invisible_patient_until <= v.hide_invisible_patient_at,
                ),
            )
        )
    if v.hide_invisible_representatives:
        clauses.append(d.invisible_representatives.is_(False))
    return clauses


def _criteria_clause(c: DocumentCriteria) -> list[sa.ColumnElement[bool]]:
    d = documents.c
    clauses: list[sa.ColumnElement[bool]] = []
    if c.document_id is not None:
        clauses.append(d.logical_id == c.document_id)
    if c.statuses is not None:
        clauses.append(d.status.in_(c.statuses))
    if c.type_codes is not None:
        clauses.append(d.type_code.in_(c.type_codes))
    if c.service_from is not None:
        clauses.append(d.service_start >= c.service_from)
    if c.service_to is not None:
        clauses.append(d.service_start < c.service_to)
    for values, column in (
        (c.class_codes, d.class_code),
        (c.format_codes, d.format_code),
        (c.facility_types, d.facility_type),
        (c.practice_settings, d.practice_setting),
        (c.unique_ids, d.unique_id),
        (c.author_ids, d.author_id),
        (c.replaces_ids, d.replaces_id),
    ):
        if values is not None:
            clauses.append(column.in_(values))
    for start, end, column in (
        (c.created_from, c.created_to, d.creation_time),
        (c.submitted_from, c.submitted_to, d.submitted_at),
        (c.service_end_from, c.service_end_to, d.service_stop),
    ):
        if start is not None:
            clauses.append(column >= start)
        if end is not None:
            clauses.append(column < end)
    if c.confidentiality is not None:
        flags = {
            VisibilityFlag.MASQUE_PS.value: d.masked_ps,
            VisibilityFlag.INVISIBLE_PATIENT.value: d.invisible_patient,
            VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX.value: d.invisible_representatives,
        }
        alternatives = [flags[v].is_(True) for v in c.confidentiality if v in flags]
        levels = [v for v in c.confidentiality if v not in flags]
        if levels:
            alternatives.append(d.confidentiality.in_(levels))
        clauses.append(sa.or_(*alternatives) if alternatives else sa.false())
    return clauses


def search(
    conn: Connection,
    scope: AuthorizedPatient,
    visibility: DocumentVisibility,
    criteria: DocumentCriteria,
) -> tuple[list[DocumentRow], int]:
    """One page of visible documents, newest service date first, and the visible total."""
    where = [
        documents.c.patient_id == scope.patient_id,
        documents.c.latest.is_(True),
        *_visibility_clause(visibility),
        *_criteria_clause(criteria),
    ]
    # The page and its total in one round trip (the total as a window over the filtered rows).
    total_col = sa.func.count().over().label("_total")
    rows = conn.execute(
        sa.select(documents, total_col)
        .where(*where)
        .order_by(
            documents.c.service_start.asc()
            if criteria.oldest_first
            else documents.c.service_start.desc(),
            documents.c.id,
        )
        .limit(criteria.limit)
        .offset(criteria.offset)
    ).all()
    if rows:
        total = int(rows[0]._mapping["_total"])
    elif criteria.offset:
        # A page past the end: the total needs its own count.
        total = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(documents).where(*where)
            ).scalar_one()
        )
    else:
        total = 0
    return [DocumentRow(**{k: r._mapping[k] for k in _DOC_FIELDS}) for r in rows], total


def get(
    conn: Connection, scope: AuthorizedPatient, visibility: DocumentVisibility, document_id: str
) -> DocumentRow | None:
    """A single document, through exactly the clause that search uses."""
    rows, _ = search(conn, scope, visibility, DocumentCriteria(document_id=document_id, limit=1))
    return rows[0] if rows else None


def insert(conn: Connection, scope: AuthorizedPatient, row: dict[str, Any]) -> None:
    conn.execute(documents.insert().values(patient_id=scope.patient_id, **row))


def supersede_version(conn: Connection, scope: AuthorizedPatient, entry_id: str) -> bool:
    """Mark a metadata version as no longer the latest (a new version follows): a compare and
    set. False when that version is no longer the latest: a concurrent change won (on
    PostgreSQL the row lock makes the loser wait, then re-check ``latest`` and update nothing)."""
    result = conn.execute(
        documents.update()
        .where(
            documents.c.patient_id == scope.patient_id,
            documents.c.id == entry_id,
            documents.c.latest.is_(True),
        )
        .values(latest=False)
    )
    return result.rowcount == 1


def versions(conn: Connection, scope: AuthorizedPatient, logical_id: str) -> list[DocumentRow]:
    """Every metadata version of a document, oldest first (no visibility: callers check the
    latest version through ``get`` first)."""
    rows = conn.execute(
        sa.select(documents)
        .where(documents.c.patient_id == scope.patient_id, documents.c.logical_id == logical_id)
        .order_by(documents.c.version)
    ).all()
    return [DocumentRow(**{k: r._mapping[k] for k in _DOC_FIELDS}) for r in rows]


def unique_id_taken(conn: Connection, scope: AuthorizedPatient, unique_id: str) -> bool:
    """A fast, friendly answer for the common case; the unique index decides under races."""
    return (
        conn.execute(
            sa.select(documents.c.id)
            .where(documents.c.patient_id == scope.patient_id, documents.c.unique_id == unique_id)
            .limit(1)
        ).first()
        is not None
    )


def store_content(
    conn: Connection, scope: AuthorizedPatient, content_id: str, key_id: str, chunks: list[bytes]
) -> None:
    conn.execute(
        document_contents.insert(),
        [
            {
                "patient_id": scope.patient_id,
                "content_id": content_id,
                "chunk": n,
                "key_id": key_id,
                "sealed": sealed,
            }
            for n, sealed in enumerate(chunks)
        ],
    )


def _chunks(scope: AuthorizedPatient, content_id: str) -> sa.Select[Any]:
    c = document_contents.c
    return (
        sa.select(c.chunk, c.key_id, c.sealed)
        .where(c.patient_id == scope.patient_id, c.content_id == content_id)
        .order_by(c.chunk)
    )


def load_content(
    conn: Connection, scope: AuthorizedPatient, content_id: str
) -> tuple[str, list[bytes]]:
    rows = conn.execute(_chunks(scope, content_id)).all()
    if not rows:
        raise LookupError("content missing")
    return str(rows[0].key_id), [bytes(r.sealed) for r in rows]


def content_key(conn: Connection, scope: AuthorizedPatient, content_id: str) -> tuple[str, int]:
    """The data key id of a content and its number of chunks (one small query)."""
    c = document_contents.c
    row = conn.execute(
        sa.select(sa.func.min(c.key_id), sa.func.count()).where(
            c.patient_id == scope.patient_id, c.content_id == content_id
        )
    ).one()
    return str(row[0]), int(row[1])


def iter_chunks(
    conn: Connection, scope: AuthorizedPatient, content_id: str
) -> Generator[bytes, None, None]:
    """The sealed chunks in order, fetched as they are consumed (a server-side cursor)."""
    result = conn.execution_options(stream_results=True, yield_per=1).execute(
        _chunks(scope, content_id)
    )
    try:
        for row in result:
            yield bytes(row.sealed)
    finally:  # also when the consumer stops early (a failed chunk, a client gone)
        result.close()


def insert_list(conn: Connection, scope: AuthorizedPatient, row: dict[str, Any]) -> None:
    conn.execute(document_lists.insert().values(patient_id=scope.patient_id, **row))


def lists(conn: Connection, scope: AuthorizedPatient, kind: str | None) -> list[dict[str, Any]]:
    where = [document_lists.c.patient_id == scope.patient_id]
    if kind is not None:
        where.append(document_lists.c.kind == kind)
    rows = conn.execute(
        sa.select(document_lists).where(*where).order_by(document_lists.c.submitted_at.desc())
    ).all()
    return [dict(r._mapping) for r in rows]


def visible_ids(
    conn: Connection, scope: AuthorizedPatient, visibility: DocumentVisibility, ids: list[str]
) -> set[str]:
    """Which of these documents the visibility lets through (one query)."""
    if not ids:
        return set()
    where = [
        documents.c.patient_id == scope.patient_id,
        documents.c.latest.is_(True),
        documents.c.logical_id.in_(ids),
        *_visibility_clause(visibility),
    ]
    return {str(x) for x in conn.execute(sa.select(documents.c.logical_id).where(*where)).scalars()}
