"""Documents: metadata rows, sealed contents, and the visibility-filtered search."""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.domain.codes import VisibilityFlag
from dmp.domain.visibility import DocumentVisibility
from dmp.records import direct
from dmp.records.schema import document_contents, document_lists, documents, patient_keys
from dmp.records.types import AuthorizedPatient, DocumentCriteria, DocumentRow, KeyRow

_DOC_FIELDS = tuple(f.name for f in fields(DocumentRow))


# The search is the hottest statement of all: it is built once per *shape* (which clauses a
# visibility and a criteria use) and cached, its values bound at execution. Building a SQLAlchemy
# statement costs more than running it; the shape's clauses never depend on the values.

_D = documents.c
_Token = tuple[Any, ...]


class _Where:
    """The shape of a WHERE clause (tokens, see ``_clause``) and the values it binds."""

    def __init__(self) -> None:
        self.shape: list[_Token] = []
        self.params: dict[str, Any] = {}

    def add(self, token: _Token, **params: Any) -> None:
        self.shape.append(token)
        self.params.update(params)


def _bind(name: str, column: str, expanding: bool = False) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=_D[column].type, expanding=expanding)


def _clause(token: _Token) -> sa.ColumnElement[bool]:
    kind = token[0]
    if kind == "in":
        return _D[token[1]].in_(_bind(token[2], token[1], expanding=True))
    if kind == "eq":
        return _D[token[1]] == _bind(token[2], token[1])
    if kind == "ge":
        return _D[token[1]] >= _bind(token[2], token[1])
    if kind == "lt":
        return _D[token[1]] < _bind(token[2], token[1])
    if kind == "not_in":  # an absent element has none of the values (FHIR :not)
        column = _D[token[1]]
        return sa.or_(column.is_(None), column.not_in(_bind(token[2], token[1], expanding=True)))
    if kind == "null":
        return _D[token[1]].is_(None)
    if kind == "not_null":
        return _D[token[1]].is_not(None)
    if kind == "outside":
        column = _D[token[1]]
        return sa.or_(column < _bind(token[2], token[1]), column >= _bind(token[3], token[1]))
    if kind == "false":
        return sa.false()
    if kind == "is_false":
        return _D[token[1]].is_(False)
    if kind in ("own", "unmasked_or_own"):
        own = sa.or_(
            _D.author_id.in_(_bind("m_authors", "author_id", expanding=True)),
            _D.author_structure.in_(_bind("m_structures", "author_structure", expanding=True)),
        )
        return own if kind == "own" else sa.or_(_D.masked_ps.is_(False), own)
    if kind == "authors":
        return sa.or_(
            _D.author_id.in_(_bind("a_ids", "author_id", expanding=True)),
            _D.author_structure.in_(_bind("a_structures", "author_structure", expanding=True)),
        )
    if kind == "hide_invisible_patient":
        return sa.or_(
            _D.invisible_patient.is_(False),
            sa.and_(
                _D.invisible_patient_until.is_not(None),
                _D.invisible_patient_until <= _bind("hide_at", "invisible_patient_until"),
            ),
        )
    if kind == "confidentiality":
        flags, levels = token[1], token[2]
        alternatives = [_D[f].is_(True) for f in flags]
        if levels:
            alternatives.append(_D.confidentiality.in_(_bind("c_levels", "confidentiality", True)))
        return sa.or_(*alternatives) if alternatives else sa.false()
    raise AssertionError(f"unknown clause {token!r}")  # pragma: no cover


def _visibility(v: DocumentVisibility, w: _Where) -> None:
    if v.statuses is not None:
        w.add(("in", "status", "v_status"), v_status=list(v.statuses))
    if v.type_codes is not None:
        w.add(("in", "type_code", "v_type"), v_type=sorted(v.type_codes))
    mine = {"m_authors": list(v.masked_authors), "m_structures": list(v.masked_structures)}
    if v.masked == "none":
        w.add(("false",) if v.mask_everything else ("is_false", "masked_ps"))
    elif v.masked == "authors":
        w.add(("own",) if v.mask_everything else ("unmasked_or_own",), **mine)
    if v.authors is not None:
        w.add(("authors",), a_ids=list(v.authors), a_structures=list(v.author_structures))
    if v.hide_invisible_patient_at is not None:
        w.add(("hide_invisible_patient",), hide_at=v.hide_invisible_patient_at)
    if v.hide_invisible_representatives:
        w.add(("is_false", "invisible_representatives"))


_FLAG_COLUMNS = {
    VisibilityFlag.MASQUE_PS.value: "masked_ps",
    VisibilityFlag.INVISIBLE_PATIENT.value: "invisible_patient",
    VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX.value: "invisible_representatives",
}


# The criteria a search can negate or test for presence, by name -> column.
CRITERIA = {
    "type": "type_code",
    "class": "class_code",
    "format": "format_code",
    "facility_type": "facility_type",
    "practice_setting": "practice_setting",
    "unique_id": "unique_id",
    "author_id": "author_id",
    "replaces_id": "replaces_id",
    "confidentiality": "confidentiality",
    "creation": "creation_time",
    "submitted": "submitted_at",
    "service_start": "service_start",
    "service_end": "service_stop",
}


def _negations(c: DocumentCriteria, w: _Where) -> None:
    for i, (name, values) in enumerate(c.excluded):
        column = CRITERIA[name]
        if name == "confidentiality":  # the visibility flags are columns of their own
            for flag in sorted({_FLAG_COLUMNS[v] for v in values if v in _FLAG_COLUMNS}):
                w.add(("is_false", flag))
            values = tuple(v for v in values if v not in _FLAG_COLUMNS)
            if not values:
                continue
        w.add(("not_in", column, f"x_{i}"), **{f"x_{i}": list(values)})
    for name, absent in c.missing:
        w.add(("null" if absent else "not_null", CRITERIA[name]))
    for i, (name, start, end) in enumerate(c.outside):
        lo, hi = f"o_{i}_from", f"o_{i}_to"
        w.add(("outside", CRITERIA[name], lo, hi), **{lo: start, hi: end})


def _criteria(c: DocumentCriteria, w: _Where) -> None:
    if c.document_id is not None:
        w.add(("eq", "logical_id", "c_id"), c_id=c.document_id)
    if c.statuses is not None:
        w.add(("in", "status", "c_status"), c_status=list(c.statuses))
    if c.type_codes is not None:
        w.add(("in", "type_code", "c_type"), c_type=list(c.type_codes))
    if c.service_from is not None:
        w.add(("ge", "service_start", "c_service_from"), c_service_from=c.service_from)
    if c.service_to is not None:
        w.add(("lt", "service_start", "c_service_to"), c_service_to=c.service_to)
    for values, column in (
        (c.class_codes, "class_code"),
        (c.format_codes, "format_code"),
        (c.mime_types, "mime_type"),
        (c.facility_types, "facility_type"),
        (c.practice_settings, "practice_setting"),
        (c.unique_ids, "unique_id"),
        (c.document_ids, "logical_id"),
        (c.author_ids, "author_id"),
        (c.replaces_ids, "replaces_id"),
    ):
        if values is not None:
            w.add(("in", column, f"c_{column}"), **{f"c_{column}": list(values)})
    for start, end, column in (
        (c.created_from, c.created_to, "creation_time"),
        (c.submitted_from, c.submitted_to, "submitted_at"),
        (c.service_end_from, c.service_end_to, "service_stop"),
    ):
        if start is not None:
            w.add(("ge", column, f"c_{column}_from"), **{f"c_{column}_from": start})
        if end is not None:
            w.add(("lt", column, f"c_{column}_to"), **{f"c_{column}_to": end})
    if c.confidentiality is not None:
        flags = tuple(_FLAG_COLUMNS[v] for v in c.confidentiality if v in _FLAG_COLUMNS)
        levels = [v for v in c.confidentiality if v not in _FLAG_COLUMNS]
        w.add(("confidentiality", flags, bool(levels)), c_levels=levels)
    _negations(c, w)


def _scoped(shape: tuple[_Token, ...]) -> list[sa.ColumnElement[bool]]:
    return [
        _D.patient_id == _bind("pid", "patient_id"),
        _D.latest.is_(True),
        *(_clause(t) for t in shape),
    ]


@functools.lru_cache(maxsize=1024)
def _search_statement(shape: tuple[_Token, ...], oldest_first: bool) -> sa.Select[Any]:
    # The page and its total in one round trip (the total as a window over the filtered rows).
    total_col = sa.func.count().over().label("_total")
    order = _D.service_start.asc() if oldest_first else _D.service_start.desc()
    return (
        sa.select(*(_D[k] for k in _DOC_FIELDS), total_col)
        .where(*_scoped(shape))
        .order_by(order, _D.id)
        .limit(sa.bindparam("_limit", type_=sa.Integer))
        .offset(sa.bindparam("_offset", type_=sa.Integer))
    )


@functools.lru_cache(maxsize=1024)
def _count_statement(shape: tuple[_Token, ...]) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(documents).where(*_scoped(shape))


def search(
    conn: Connection,
    scope: AuthorizedPatient,
    visibility: DocumentVisibility,
    criteria: DocumentCriteria,
) -> tuple[list[DocumentRow], int]:
    """One page of visible documents, newest service date first, and the visible total."""
    w = _Where()
    _visibility(visibility, w)
    _criteria(criteria, w)
    shape = tuple(w.shape)
    params = {**w.params, "pid": scope.patient_id}
    rows = direct.execute(
        conn,
        _search_statement(shape, criteria.oldest_first),
        {**params, "_limit": criteria.limit, "_offset": criteria.offset},
    ).rows
    if rows:
        total = int(rows[0][-1])
    elif criteria.offset:
        # A page past the end: the total needs its own count.
        total = int(conn.execute(_count_statement(shape), params).scalar_one())
    else:
        total = 0
    return [DocumentRow(*r[:-1]) for r in rows], total


def get(
    conn: Connection, scope: AuthorizedPatient, visibility: DocumentVisibility, document_id: str
) -> DocumentRow | None:
    """A single document, through exactly the clause that search uses."""
    rows, _ = search(conn, scope, visibility, DocumentCriteria(document_id=document_id, limit=1))
    return rows[0] if rows else None


def insert(conn: Connection, scope: AuthorizedPatient, row: dict[str, Any]) -> DocumentRow:
    """Store a metadata version; the row as stored (read back in the same statement)."""
    stored = direct.execute(conn, _INSERT_DOCUMENT, {**row, "patient_id": scope.patient_id})
    (values,) = stored.rows
    return DocumentRow(*values)


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


def unique_id_taken(
    conn: Connection, scope: AuthorizedPatient, unique_ids: tuple[str, ...]
) -> bool:
    """Whether a document of the record has one of these unique ids (the forms of one id): a
    fast, friendly answer for the common case; the unique index decides under races. The
    question is the index's own (first versions), so that it is answered from that index: a
    record's other rows are never read, however many documents it holds."""
    found = direct.execute(
        conn, _unique_id_statement(), {"pid": scope.patient_id, "uids": list(unique_ids)}
    )
    return bool(found.rows)


@functools.cache
def _unique_id_statement() -> sa.Select[Any]:
    return (
        sa.select(_D.id)
        .where(
            _D.patient_id == _bind("pid", "patient_id"),
            _D.unique_id.in_(_bind("uids", "unique_id", True)),
            # written out, not bound: a planner matches a partial index only on its literal
            _D.version == sa.literal_column("1"),
        )
        .limit(1)
    )


# Built once: an insert executed with a dict of values is compiled for its set of columns
# and cached by SQLAlchemy; ``insert().values(...)`` built a new statement at every call.
_INSERT_DOCUMENT = documents.insert().returning(*(_D[k] for k in _DOC_FIELDS))
_INSERT_LIST = document_lists.insert()
_INSERT_CONTENT = document_contents.insert()


def store_content(
    conn: Connection, scope: AuthorizedPatient, content_id: str, key_id: str, chunks: list[bytes]
) -> None:
    direct.execute_many(
        conn,
        _INSERT_CONTENT,
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


@functools.cache
def _chunks() -> sa.Select[Any]:
    c = document_contents.c
    return (
        sa.select(c.chunk, c.key_id, c.sealed)
        .where(c.patient_id == sa.bindparam("pid"), c.content_id == sa.bindparam("cid"))
        .order_by(c.chunk)
    )


@functools.cache
def _chunks_with_key() -> sa.Select[Any]:
    """The chunks and, on each, the wrapped data key that seals them: a retrieval's content in
    one round trip (issue 26). The key is joined on the patient's key column bound like the
    chunks' (one shard when distributed by patient)."""
    c, k = document_contents.c, patient_keys.c
    joined = document_contents.outerjoin(
        patient_keys,
        sa.and_(k.patient_id == sa.bindparam("pid"), k.key_id == c.key_id),
    )
    return (
        sa.select(c.sealed, c.key_id, k.kek_id, k.wrapped)
        .select_from(joined)
        .where(c.patient_id == sa.bindparam("pid"), c.content_id == sa.bindparam("cid"))
        .order_by(c.chunk)
    )


def load_content(
    conn: Connection, scope: AuthorizedPatient, content_id: str
) -> tuple[KeyRow | None, list[bytes]]:
    """A content's sealed chunks in order and the key row that seals them (None when the
    key row is gone); LookupError when the content is missing."""
    found = direct.execute(conn, _chunks_with_key(), {"pid": scope.patient_id, "cid": content_id})
    head = found.first()
    if head is None:
        raise LookupError("content missing")
    key = (
        None
        if head["kek_id"] is None
        else KeyRow(str(head["key_id"]), head["kek_id"], head["wrapped"])
    )
    sealed = found.keys.index("sealed")
    return key, [bytes(r[sealed]) for r in found.rows]


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
        _chunks(), {"pid": scope.patient_id, "cid": content_id}
    )
    try:
        for row in result:
            yield bytes(row.sealed)
    finally:  # also when the consumer stops early (a failed chunk, a client gone)
        result.close()


def insert_list(conn: Connection, scope: AuthorizedPatient, row: dict[str, Any]) -> None:
    direct.execute(conn, _INSERT_LIST, {**row, "patient_id": scope.patient_id})


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
    w = _Where()
    _visibility(visibility, w)
    stmt = sa.select(_D.logical_id).where(
        *_scoped(tuple(w.shape)), _D.logical_id.in_(_bind("ids", "logical_id", expanding=True))
    )
    params = {**w.params, "pid": scope.patient_id, "ids": ids}
    return {str(x) for x in conn.execute(stmt, params).scalars()}


def briefs(
    conn: Connection, scope: AuthorizedPatient, logical_ids: list[str]
) -> dict[str, tuple[str, str, Any]]:
    """The latest type code, title and creation time of these documents (one query); the
    caller has already dropped the ids the reader may not see."""
    if not logical_ids:
        return {}
    rows = conn.execute(
        sa.select(_D.logical_id, _D.type_code, _D.title, _D.creation_time).where(
            _D.patient_id == scope.patient_id,
            _D.latest.is_(True),
            _D.logical_id.in_(logical_ids),
        )
    ).all()
    return {str(r[0]): (r[1], r[2], r[3]) for r in rows}
