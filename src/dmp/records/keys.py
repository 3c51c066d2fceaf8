"""Wrapped per-patient data keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records import direct
from dmp.records.schema import patient_keys
from dmp.records.types import AuthorizedPatient, KeyRow

_K = patient_keys.c
# Built once, values bound at execution (building a statement costs more than running it).
_ACTIVE_KEY = (
    sa.select(_K.key_id, _K.kek_id, _K.wrapped)
    .where(_K.patient_id == sa.bindparam("pid"))
    .order_by(_K.created_at.desc())
    .limit(1)
)
_KEY_BY_ID = sa.select(_K.key_id, _K.kek_id, _K.wrapped).where(
    _K.patient_id == sa.bindparam("pid"), _K.key_id == sa.bindparam("kid")
)


def active_key(conn: Connection, scope: AuthorizedPatient) -> KeyRow | None:
    row = direct.execute(conn, _ACTIVE_KEY, {"pid": scope.patient_id}).first()
    return None if row is None else KeyRow(row["key_id"], row["kek_id"], row["wrapped"])


def key_by_id(conn: Connection, scope: AuthorizedPatient, key_id: str) -> KeyRow | None:
    row = conn.execute(_KEY_BY_ID, {"pid": scope.patient_id, "kid": key_id}).first()
    return None if row is None else KeyRow(row.key_id, row.kek_id, row.wrapped)


def insert_key(
    conn: Connection,
    scope: AuthorizedPatient,
    key_id: str,
    kek_id: str,
    wrapped: bytes,
    at: datetime,
) -> None:
    conn.execute(
        patient_keys.insert().values(
            patient_id=scope.patient_id,
            key_id=key_id,
            kek_id=kek_id,
            wrapped=wrapped,
            created_at=at,
        )
    )


def shred(conn: Connection, scope: AuthorizedPatient, at: datetime) -> int:
    """Destroy every wrapped data key of the patient: their content becomes unreadable."""
    return conn.execute(
        patient_keys.update()
        .where(patient_keys.c.patient_id == scope.patient_id, patient_keys.c.wrapped.is_not(None))
        .values(wrapped=None, shredded_at=at)
    ).rowcount


def keys_not_wrapped_by(
    conn: Connection, kek_id: str, batch: int
) -> Iterator[list[tuple[str, str, str, bytes]]]:
    """Batches of (patient_id, key_id, kek_id, wrapped) still wrapped by another KEK."""
    last = ("", "")
    while True:
        rows = conn.execute(
            sa.select(
                patient_keys.c.patient_id,
                patient_keys.c.key_id,
                patient_keys.c.kek_id,
                patient_keys.c.wrapped,
            )
            .where(
                patient_keys.c.kek_id != kek_id,
                patient_keys.c.wrapped.is_not(None),
                sa.tuple_(patient_keys.c.patient_id, patient_keys.c.key_id) > sa.tuple_(*last),
            )
            .order_by(patient_keys.c.patient_id, patient_keys.c.key_id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield [(r.patient_id, r.key_id, r.kek_id, bytes(r.wrapped)) for r in rows]
        last = (rows[-1].patient_id, rows[-1].key_id)


def rewrap(conn: Connection, updates: list[dict[str, object]]) -> None:
    """Store re-wrapped keys: dicts with p (patient), k (key id), kek and w (wrapped)."""
    conn.execute(
        patient_keys.update()
        .where(
            patient_keys.c.patient_id == sa.bindparam("p"),
            patient_keys.c.key_id == sa.bindparam("k"),
        )
        .values(kek_id=sa.bindparam("kek"), wrapped=sa.bindparam("w")),
        updates,
    )


def kek_ids_in_use(conn: Connection) -> set[str]:
    """The key-encryption keys the stored data keys need (a full scan: operator checks only)."""
    stmt = sa.select(patient_keys.c.kek_id).where(patient_keys.c.wrapped.is_not(None)).distinct()
    return {str(k) for k in conn.execute(stmt).scalars()}


def any_key_stored(conn: Connection) -> bool:
    return conn.execute(sa.select(patient_keys.c.key_id).limit(1)).first() is not None
