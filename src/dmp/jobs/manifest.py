"""A backup's manifest: what the backup holds, table by table (rows and a SHA-256 of them in
primary-key order), MACed under a key derived from the key ring. ``dmp restore`` recomputes it
on what it loads and refuses a backup this system did not write: a changed GP designation, a
flipped mask flag, a swapped wrapped data key or an altered content chunk are named by table.

The manifest is written beside the backup (``FILE.manifest.json``, mode 0600); like the backup
it holds no key. Without the key ring a restore can still compare the digests (integrity), not
the MAC (authenticity): it says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.crypto.keyring import KeyRing
from dmp.errors import InvalidInput

VERSION = 1
SKIPPED = frozenset({"alembic_version"})


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + ".manifest.json")


def _key(ring: KeyRing) -> bytes:
    return hashlib.sha256(b"dmp backup manifest\x00" + ring.token_secret).digest()


def _value(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bytes | bytearray | memoryview):
        return "b:" + bytes(value).hex()
    if isinstance(value, datetime | date):
        return "t:" + value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _rows(conn: Connection, table: sa.Table) -> Iterator[tuple[Any, ...]]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(yield_per=2000).execute(sa.select(table).order_by(*order))
    yield from result


def digests(conn: Connection) -> dict[str, dict[str, Any]]:
    """Each table's row count and digest, in one consistent read."""
    meta = sa.MetaData()
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(sa.inspect(conn).get_table_names()):
        if name in SKIPPED:
            continue
        table = sa.Table(name, meta, autoload_with=conn)
        h = hashlib.sha256()
        count = 0
        for row in _rows(conn, table):
            h.update("\x1f".join(_value(v) for v in row).encode() + b"\x1e")
            count += 1
        out[name] = {"rows": count, "sha256": h.hexdigest()}
    return out


def _mac(ring: KeyRing, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_key(ring), canonical, hashlib.sha256).hexdigest()


def write(path: Path, ring: KeyRing, dialect: str, tables: dict[str, dict[str, Any]]) -> None:
    body = {"version": VERSION, "dialect": dialect, "tables": tables}
    text = json.dumps({**body, "mac": _mac(ring, body)}, indent=1, sort_keys=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInput(
            f"no manifest {path} beside the backup: `dmp backup` writes one, and a backup "
            "without it cannot be shown to be this system's"
        )
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"{path} is not a backup manifest") from None
    if not isinstance(found, dict) or found.get("version") != VERSION:
        raise InvalidInput(f"{path} is not a backup manifest of this version")
    return found


def check(found: dict[str, Any], ring: KeyRing | None, tables: dict[str, dict[str, Any]]) -> bool:
    """Compare what was loaded with the manifest; raise naming the first table that differs.
    Returns whether the MAC was checked too (it needs the key ring)."""
    body = {k: v for k, v in found.items() if k != "mac"}
    if ring is not None and not hmac.compare_digest(str(found.get("mac", "")), _mac(ring, body)):
        raise InvalidInput(
            "the backup's manifest was not written under this key ring (or was altered): "
            "this backup is refused"
        )
    stated = found.get("tables")
    if not isinstance(stated, dict):
        raise InvalidInput("the backup manifest lists no tables")
    for name in sorted(set(stated) | set(tables)):
        if stated.get(name) != tables.get(name):
            raise InvalidInput(
                f"the table {name} differs from what the backup's manifest says "
                f"({_describe(stated.get(name))} written, {_describe(tables.get(name))} found): "
                "this backup was altered after `dmp backup` wrote it, and is refused"
            )
    return ring is not None


def _describe(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "no table"
    return f"{entry.get('rows')} rows"
