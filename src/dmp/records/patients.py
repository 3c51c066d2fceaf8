"""Patients, records, legal representatives and the patient's decisions about professionals."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records.schema import legal_representatives, patients, professional_permissions, records
from dmp.records.sql import upsert
from dmp.records.types import AuthorizedPatient, PatientRow, PermissionRow, RecordRow


def _row(cls: Any, row: sa.Row[Any]) -> Any:
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})


def find_patient_id(conn: Connection, ins_oid: str, ins_value: str) -> str | None:
    """Resolve an INS to the internal patient id (an index lookup, no patient data returned)."""
    return conn.execute(
        sa.select(patients.c.id).where(
            patients.c.ins_value == ins_value, patients.c.ins_oid == ins_oid
        )
    ).scalar_one_or_none()


def load_record(conn: Connection, patient_id: str) -> RecordRow | None:
    row = conn.execute(sa.select(records).where(records.c.patient_id == patient_id)).first()
    return None if row is None else _row(RecordRow, row)


def load_standing(
    conn: Connection, ins_oid: str, ins_value: str, id_nat_ps: str | None
) -> tuple[str, RecordRow, PermissionRow | None] | None:
    """Patient id, record and the patient's decision about one professional: one query."""
    perm = professional_permissions
    stmt = (
        sa.select(records, perm.c.consented_at, perm.c.consent_declared_by, perm.c.blocked_at)
        .select_from(
            patients.join(records, records.c.patient_id == patients.c.id).outerjoin(
                perm,
                sa.and_(perm.c.patient_id == patients.c.id, perm.c.id_nat_ps == id_nat_ps),
            )
        )
        .where(patients.c.ins_value == ins_value, patients.c.ins_oid == ins_oid)
    )
    row = conn.execute(stmt).first()
    if row is None:
        return None
    record: RecordRow = _row(RecordRow, row)
    m = row._mapping
    permission = None
    if m["consented_at"] is not None or m["blocked_at"] is not None:
        permission = PermissionRow(m["consented_at"], m["consent_declared_by"], m["blocked_at"])
    return record.patient_id, record, permission


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
