"""Registered API clients (structures' software) and used client-assertion ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.records.schema import api_clients, client_assertion_jtis


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    name: str
    structure_id: str
    jwks: str
    scopes: str
    revoked_at: datetime | None


def insert(conn: Connection, row: dict[str, object]) -> None:
    conn.execute(api_clients.insert().values(**row))


def get(conn: Connection, client_id: str) -> ClientRow | None:
    r = conn.execute(sa.select(api_clients).where(api_clients.c.client_id == client_id)).first()
    if r is None:
        return None
    return ClientRow(r.client_id, r.name, r.structure_id, r.jwks, r.scopes, r.revoked_at)


def use_jti(
    conn: Connection, client_id: str, jti: str, expires_at: datetime, now: datetime
) -> bool:
    """Record an assertion id; False if it was already used (a replay)."""
    conn.execute(
        client_assertion_jtis.delete().where(
            client_assertion_jtis.c.client_id == client_id,
            client_assertion_jtis.c.expires_at < now,
        )
    )
    try:
        with conn.begin_nested():
            conn.execute(
                client_assertion_jtis.insert().values(
                    client_id=client_id, jti=jti, expires_at=expires_at
                )
            )
    except IntegrityError:
        return False
    return True
