"""Patient data keys: created at the first sealed item, unwrapped to read (no gate here: the
callers are inside an authorised action)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from dmp.crypto import envelope
from dmp.errors import IntegrityFailure
from dmp.records import keys as key_store
from dmp.records.types import AuthorizedPatient, KeyRow

if TYPE_CHECKING:
    from dmp.access.deps import GateDeps


def data_key(
    rt: GateDeps, conn: Connection, scope: AuthorizedPatient, *, create: bool
) -> tuple[str, bytes]:
    """The patient's active data key (key id, key), created if asked and absent."""
    row = key_store.active_key(conn, scope)
    if row is not None and row.wrapped is not None:
        return row.key_id, envelope.unwrap_data_key(
            rt.kek(row.kek_id), row.wrapped, scope.patient_id
        )
    if row is not None and row.wrapped is None:
        raise IntegrityFailure("this patient's data key was destroyed; content is unreadable")
    if not create:
        raise IntegrityFailure("this patient has no data key")
    new_key = envelope.new_data_key()
    key_id = uuid.uuid4().hex
    kek_id = rt.active_kek_id
    wrapped = envelope.wrap_data_key(rt.kek(kek_id), new_key, scope.patient_id)
    key_store.insert_key(conn, scope, key_id, kek_id, wrapped, rt.clock.now())
    return key_id, new_key


def existing_data_key(
    rt: GateDeps, conn: Connection, scope: AuthorizedPatient, key_id: str
) -> bytes:
    """The data key a stored item names; destroyed keys make the item unreadable."""
    return opened_key(rt, scope, key_store.key_by_id(conn, scope, key_id))


def opened_key(rt: GateDeps, scope: AuthorizedPatient, row: KeyRow | None) -> bytes:
    """A data key read with its item (``documents.load_content``), unwrapped; a destroyed or
    missing key makes the item unreadable."""
    if row is None or row.wrapped is None:
        raise IntegrityFailure("this document's data key was destroyed; its content is unreadable")
    return envelope.unwrap_data_key(rt.kek(row.kek_id), row.wrapped, scope.patient_id)
