"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]] | dict[str, Any],
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET update-columns, on either engine."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in update}
    )
    conn.execute(stmt, [rows] if isinstance(rows, dict) else list(rows))
