"""Patients, records, legal representatives and the patient's decisions about professionals."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records import direct
from dmp.records.schema import (
    audit_heads,
    care_team,
    emergency_accesses,
    first_accesses,
    legal_representatives,
    notifications,
    patients,
    professional_permissions,
    records,
)
from dmp.records.sql import upsert
from dmp.records.types import AuthorizedPatient, PatientRow, PermissionRow, RecordRow


def _row(cls: Any, row: sa.Row[Any]) -> Any:
    return _fields(cls, row._mapping)


def _fields(cls: Any, mapping: Mapping[Any, Any]) -> Any:
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})


def find_patient_id(conn: Connection, ins_oid: str, ins_value: str) -> str | None:
    """Resolve an INS to the internal patient id (an index lookup, no patient data returned)."""
    key = direct.execute(conn, _ins_lookup(), {"ins_value": ins_value, "ins_oid": ins_oid}).scalar()
    return None if key is None else str(key)


@functools.cache
def _ins_lookup() -> sa.Select[Any]:
    return sa.select(patients.c.id).where(
        patients.c.ins_value == sa.bindparam("ins_value", type_=sa.String),
        patients.c.ins_oid == sa.bindparam("ins_oid", type_=sa.String),
    )


def load_record(conn: Connection, patient_id: str) -> RecordRow | None:
    row = conn.execute(sa.select(records).where(records.c.patient_id == patient_id)).first()
    return None if row is None else _row(RecordRow, row)


@dataclass(frozen=True, slots=True)
class Standing:
    """One professional's (or anyone's) standing in one record, read in one query."""

    patient_id: str
    departement: str
    ins_oid: str
    ins_value: str
    record: RecordRow
    permission: PermissionRow | None
    care_team_declared: bool
    emergency_until: datetime | None
    # The head of the patient's audit chain as the facts saw it (None: no chain yet), so that
    # the action's events can be appended in one statement that checks it did not move.
    chain_head: tuple[int, str] | None = None
    # Whether this professional accessed the record before (first_accesses): read with the
    # facts, so that a read writes the row only the first time, not at every consultation.
    accessed_before: bool = False
    # Whether the holder was told of a night access by this professional since the time the
    # facts were asked about (None: not asked, by day): read with the facts at night, so that
    # a night read does not look for the notice by a statement of its own.
    night_told: bool | None = None


@functools.cache
def _standing_statement(night: bool = False) -> sa.Select[Any]:
    """The standing query, built once (its values are bound at execution): building a
    SQLAlchemy statement costs more than running it, on the hottest path of all. ``night``:
    with whether a night notice about the professional was queued since ``:since``."""
    perm = professional_permissions
    # Every table is filtered on the bound patient key itself, not only joined to it, so that
    # each reads one patient's rows (distributable by patient; docs/performance.md).
    key = sa.bindparam("pid", type_=sa.String)
    ps = sa.bindparam("ps", type_=sa.String)
    declared = (
        sa.exists()
        .where(care_team.c.patient_id == key, care_team.c.id_nat_ps == ps)
        .label("care_team_declared")
    )
    accessed = (
        sa.exists()
        .where(first_accesses.c.patient_id == key, first_accesses.c.id_nat_ps == ps)
        .label("accessed_before")
    )
    emergency = (
        sa.select(sa.func.max(emergency_accesses.c.expires_at))
        .where(emergency_accesses.c.patient_id == key, emergency_accesses.c.id_nat_ps == ps)
        .scalar_subquery()
        .label("emergency_until")
    )
    extra = [_night_told(key, ps).label("night_told")] if night else []
    return (
        sa.select(
            records,
            perm.c.consented_at,
            perm.c.consent_declared_by,
            perm.c.blocked_at,
            declared,
            accessed,
            emergency,
            *extra,
            patients.c.departement,
            patients.c.ins_oid,
            patients.c.ins_value,
            audit_heads.c.seq.label("chain_seq"),
            audit_heads.c.last_hash.label("chain_hash"),
        )
        .select_from(
            patients.join(records, sa.and_(records.c.patient_id == key, patients.c.id == key))
            .outerjoin(perm, sa.and_(perm.c.patient_id == key, perm.c.id_nat_ps == ps))
            .outerjoin(audit_heads, audit_heads.c.chain_id == key)
        )
        .where(patients.c.id == key)
    )


def _noticed_since(key: Any, kind: Any, subject: Any) -> tuple[sa.ColumnElement[bool], ...]:
    """A notice of ``kind`` about ``subject`` queued for the record since ``:since`` (the facts'
    night variant and :func:`notice_since` ask the same)."""
    n = notifications.c
    return (
        n.patient_id == key,
        n.kind == kind,
        n.subject_id == subject,
        n.created_at >= sa.bindparam("since", type_=n.created_at.type),
    )


def _night_told(key: Any, ps: Any) -> sa.Exists:
    return sa.exists().where(*_noticed_since(key, "night_access", ps))


def load_standing(
    conn: Connection, patient_id: str, id_nat_ps: str | None, night_since: datetime | None = None
) -> Standing | None:
    """Patient id, record, the patient's decision about this professional, care-team membership
    and any emergency window: one query by patient key, whatever the actor. With
    ``night_since``, whether a night notice about the professional was queued since then."""
    params: dict[str, Any] = {"ps": id_nat_ps, "pid": patient_id}
    if night_since is not None:
        params["since"] = night_since
    stmt = _standing_statement(night_since is not None)
    m = direct.execute(conn, stmt, params).first()
    if m is None:
        return None
    record: RecordRow = _fields(RecordRow, m)
    permission = None
    if m["consented_at"] is not None or m["blocked_at"] is not None:
        permission = PermissionRow(m["consented_at"], m["consent_declared_by"], m["blocked_at"])
    until = m["emergency_until"]
    if isinstance(until, str):  # SQLite returns an aggregate of a datetime column as text
        until = datetime.fromisoformat(until)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return Standing(
        record.patient_id,
        str(m["departement"]),
        str(m["ins_oid"]),
        str(m["ins_value"]),
        record,
        permission,
        bool(m["care_team_declared"]),
        until,
        (int(m["chain_seq"]), str(m["chain_hash"])) if m["chain_seq"] is not None else None,
        bool(m["accessed_before"]),
        bool(m["night_told"]) if night_since is not None else None,
    )


def representative_ids(conn: Connection, patient_id: str) -> frozenset[str]:
    rows = conn.execute(
        sa.select(legal_representatives.c.representative_id).where(
            legal_representatives.c.patient_id == patient_id
        )
    ).scalars()
    return frozenset(str(r) for r in rows)


def add_representative(
    conn: Connection,
    scope: AuthorizedPatient,
    rep_id: str,
    name: str,
    relationship: str,
    at: datetime,
) -> None:
    conn.execute(
        legal_representatives.insert().values(
            patient_id=scope.patient_id,
            representative_id=rep_id,
            display_name=name,
            relationship=relationship,
            since=at,
        )
    )


def load_patient(conn: Connection, scope: AuthorizedPatient) -> PatientRow:
    row = conn.execute(sa.select(patients).where(patients.c.id == scope.patient_id)).one()
    return _row(PatientRow, row)  # type: ignore[no-any-return]


def insert_patient_and_record(
    conn: Connection, patient: dict[str, Any], record: dict[str, Any]
) -> None:
    conn.execute(patients.insert().values(**patient))
    conn.execute(records.insert().values(**record))


def close_record(
    conn: Connection, scope: AuthorizedPatient, *, at: datetime, reason: str, by: str
) -> None:
    conn.execute(
        records.update()
        .where(records.c.patient_id == scope.patient_id)
        .values(status="closed", closed_at=at, closure_reason=reason, closed_by=by)
    )


def declare_consent(
    conn: Connection, scope: AuthorizedPatient, id_nat_ps: str, *, at: datetime, by: str
) -> None:
    """Record (or renew) the patient's consent for one professional."""
    upsert(
        conn,
        professional_permissions,
        {
            "patient_id": scope.patient_id,
            "id_nat_ps": id_nat_ps,
            "consented_at": at,
            "consent_declared_by": by,
        },
        key=("patient_id", "id_nat_ps"),
        update=("consented_at", "consent_declared_by"),
    )


def update_record(conn: Connection, scope: AuthorizedPatient, **values: Any) -> None:
    """Change the holder's settings on the record (oppositions, mask-all, GP)."""
    conn.execute(records.update().where(records.c.patient_id == scope.patient_id).values(**values))


def set_blocked(
    conn: Connection, scope: AuthorizedPatient, id_nat_ps: str, blocked_at: datetime | None
) -> None:
    upsert(
        conn,
        professional_permissions,
        {"patient_id": scope.patient_id, "id_nat_ps": id_nat_ps, "blocked_at": blocked_at},
        key=("patient_id", "id_nat_ps"),
        update=("blocked_at",),
    )


def declare_care_team(
    conn: Connection, scope: AuthorizedPatient, id_nat_ps: str, *, at: datetime, by: str
) -> None:
    upsert(
        conn,
        care_team,
        {
            "patient_id": scope.patient_id,
            "id_nat_ps": id_nat_ps,
            "declared_at": at,
            "declared_by": by,
        },
        key=("patient_id", "id_nat_ps"),
        update=("declared_at", "declared_by"),
    )


def open_emergency(
    conn: Connection,
    scope: AuthorizedPatient,
    id_nat_ps: str,
    *,
    at: datetime,
    until: datetime,
    key_id: str,
    justification_sealed: bytes,
) -> None:
    conn.execute(
        emergency_accesses.insert().values(
            patient_id=scope.patient_id,
            id_nat_ps=id_nat_ps,
            opened_at=at,
            expires_at=until,
            key_id=key_id,
            justification_sealed=justification_sealed,
        )
    )


_INSERT_NOTIFICATIONS = notifications.insert()


def notify(
    conn: Connection,
    scope: AuthorizedPatient,
    rows: list[dict[str, Any]],
) -> None:
    """Queue notifications in the outbox (same transaction as their cause)."""
    if rows:
        direct.execute_many(
            conn,
            _INSERT_NOTIFICATIONS,
            [{"patient_id": scope.patient_id, "id": uuid.uuid4().hex, **r} for r in rows],
        )


def pending_notifications(conn: Connection, scope: AuthorizedPatient) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(notifications)
        .where(notifications.c.patient_id == scope.patient_id)
        .order_by(notifications.c.due_at, notifications.c.kind)
    ).all()
    return [dict(r._mapping) for r in rows]


def is_blocked(conn: Connection, scope: AuthorizedPatient, id_nat_ps: str) -> bool:
    """Whether the holder blocked this professional (AC-3)."""
    perm = professional_permissions
    found = conn.execute(
        sa.select(perm.c.blocked_at).where(
            perm.c.patient_id == scope.patient_id, perm.c.id_nat_ps == id_nat_ps
        )
    ).first()
    return found is not None and found.blocked_at is not None


def list_permissions(conn: Connection, scope: AuthorizedPatient) -> list[tuple[str, PermissionRow]]:
    perm = professional_permissions
    rows = conn.execute(
        sa.select(perm).where(perm.c.patient_id == scope.patient_id).order_by(perm.c.id_nat_ps)
    ).all()
    return [
        (r.id_nat_ps, PermissionRow(r.consented_at, r.consent_declared_by, r.blocked_at))
        for r in rows
    ]


def list_care_team(conn: Connection, scope: AuthorizedPatient) -> list[tuple[str, datetime, str]]:
    """The declared care team: (idNatPS, declared at, declared by), oldest first."""
    ct = care_team
    rows = conn.execute(
        sa.select(ct.c.id_nat_ps, ct.c.declared_at, ct.c.declared_by)
        .where(ct.c.patient_id == scope.patient_id)
        .order_by(ct.c.declared_at, ct.c.id_nat_ps)
    ).all()
    return [(r.id_nat_ps, r.declared_at, r.declared_by) for r in rows]


def first_access(conn: Connection, scope: AuthorizedPatient, id_nat_ps: str, at: datetime) -> bool:
    """Remember a professional's access to the record: true the first time only."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    inserted = conn.execute(
        insert(first_accesses)
        .values(patient_id=scope.patient_id, id_nat_ps=id_nat_ps, at=at)
        .on_conflict_do_nothing()
        .returning(first_accesses.c.id_nat_ps)
    ).first()
    return inserted is not None


def emergency_windows(
    conn: Connection, scope: AuthorizedPatient, ids_nat_ps: list[str]
) -> list[tuple[str, datetime, datetime, str, bytes]]:
    """These professionals' emergency windows on the record: (idNatPS, opened, expires, key
    id, sealed justification), oldest first."""
    if not ids_nat_ps:
        return []
    e = emergency_accesses.c
    rows = conn.execute(
        sa.select(e.id_nat_ps, e.opened_at, e.expires_at, e.key_id, e.justification_sealed)
        .where(e.patient_id == scope.patient_id, e.id_nat_ps.in_(ids_nat_ps))
        .order_by(e.opened_at)
    ).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def notice_since(
    conn: Connection, scope: AuthorizedPatient, kind: str, subject_id: str, since: datetime
) -> bool:
    """Whether a notice of this kind about this subject was queued for the record since then."""
    params = {"pid": scope.patient_id, "kind": kind, "subject": subject_id, "since": since}
    return conn.execute(_notice_since_statement(), params).first() is not None


@functools.cache
def _notice_since_statement() -> sa.Select[Any]:
    bound = (sa.bindparam(name, type_=sa.String) for name in ("pid", "kind", "subject"))
    return sa.select(notifications.c.id).where(*_noticed_since(*bound)).limit(1)


def identity_candidates(
    conn: Connection, birth_date: Any, sex: str, limit: int = 50
) -> list[dict[str, Any]]:
    """The INS identities of open records of people born that day, of that sex (an index range
    scan): what a FranceConnect identity is compared with. At most ``limit``."""
    p, r = patients.c, records.c
    rows = conn.execute(
        sa.select(
            p.ins_oid,
            p.ins_value,
            p.birth_family_name,
            p.given_names,
            p.sex,
            p.birth_date,
            p.birth_place_code,
        )
        .join(records, r.patient_id == p.id)
        .where(p.birth_date == birth_date, p.sex == sex, r.status == "active")
        .limit(limit)
    ).all()
    return [dict(row._mapping) for row in rows]
