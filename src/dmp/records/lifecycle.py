"""A record's end: reopening, the purge (every clinical row deleted, a non-clinical trace
kept), and which purges are due. Storage only; the rules are in ``dmp.access.lifecycle``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records import stats
from dmp.records.schema import (
    activation_codes,
    app_authorizations,
    app_codes,
    care_team,
    document_contents,
    document_lists,
    documents,
    emergency_accesses,
    first_accesses,
    legal_representatives,
    notifications,
    patient_keys,
    patients,
    portal_accounts,
    portal_devices,
    portal_sessions,
    professional_permissions,
    provisioning,
    purge_traces,
    records,
)
from dmp.records.types import AuthorizedPatient

# Children first: every table holding the patient's rows, in an order the foreign keys accept.
_PATIENT_TABLES = (
    app_codes,
    app_authorizations,
    notifications,
    first_accesses,
    document_contents,
    document_lists,
    documents,
    emergency_accesses,
    care_team,
    professional_permissions,
    legal_representatives,
    patient_keys,
)


def due_purges(conn: Connection, now: datetime, limit: int) -> list[str]:
    r = records.c
    return list(
        conn.execute(
            sa.select(r.patient_id)
            .where(r.purge_due_at.is_not(None), r.purge_due_at <= now)
            .order_by(r.purge_due_at)
            .limit(limit)
        ).scalars()
    )


def purge(conn: Connection, scope: AuthorizedPatient, *, at: datetime, reason: str) -> int:
    """Delete the patient's rows everywhere (the data keys were shredded before, in the same
    transaction) and keep the trace; returns how many documents there were."""
    key = scope.patient_id
    count = conn.execute(
        sa.select(sa.func.count(sa.distinct(documents.c.logical_id))).where(
            documents.c.patient_id == key
        )
    ).scalar_one()
    record = conn.execute(sa.select(records).where(records.c.patient_id == key)).one()
    figures = stats.recount_rows(conn, key)
    # The pending statistics rows name the patient: folded now (the counts stay), then gone.
    stats.fold_patient(conn, key)
    accounts = sa.select(portal_accounts.c.id).where(portal_accounts.c.patient_id == key)
    conn.execute(portal_sessions.delete().where(portal_sessions.c.account_id.in_(accounts)))
    conn.execute(portal_devices.delete().where(portal_devices.c.account_id.in_(accounts)))
    conn.execute(activation_codes.delete().where(activation_codes.c.account_id.in_(accounts)))
    conn.execute(portal_accounts.delete().where(portal_accounts.c.patient_id == key))
    for table in _PATIENT_TABLES:
        conn.execute(table.delete().where(table.c.patient_id == key))
    # The insurer's provisioning line names the person too (INS, names, birth date).
    person = conn.execute(
        sa.select(patients.c.ins_oid, patients.c.ins_value).where(patients.c.id == key)
    ).one()
    conn.execute(
        provisioning.delete().where(
            provisioning.c.ins_oid == person.ins_oid, provisioning.c.ins_value == person.ins_value
        )
    )
    conn.execute(records.delete().where(records.c.patient_id == key))
    conn.execute(patients.delete().where(patients.c.id == key))
    conn.execute(
        purge_traces.insert().values(
            id=uuid.uuid4().hex,
            patient_id=key,
            departement=scope.departement,
            opened_at=record.opened_at,
            closed_at=record.closed_at,
            purged_at=at,
            reason=reason,
            documents=int(count),
            figures=json.dumps(figures),
        )
    )
    return int(count)


def purge_trace(conn: Connection, patient_id: str) -> dict[str, object] | None:
    row = conn.execute(
        sa.select(purge_traces).where(purge_traces.c.patient_id == patient_id)
    ).first()
    return None if row is None else dict(row._mapping)
