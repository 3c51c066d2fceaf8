"""The key ring's seal on this database (storage only; ``dmp.runtime`` checks it)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from dmp.records.schema import ring_seals


def read(conn: Connection) -> str | None:
    found = conn.execute(sa.select(ring_seals.c.proof).where(ring_seals.c.id == 1)).scalar()
    return None if found is None else str(found)


def write(conn: Connection, proof: str, at: datetime) -> str:
    """Seal the database with this proof unless another process sealed it first; returns
    the seal that stands."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(ring_seals).values(id=1, proof=proof, sealed_at=at).on_conflict_do_nothing()
    )
    stood = read(conn)
    assert stood is not None
    return stood


def replace(conn: Connection, proof: str, at: datetime) -> None:
    conn.execute(ring_seals.delete())
    conn.execute(ring_seals.insert().values(id=1, proof=proof, sealed_at=at))
