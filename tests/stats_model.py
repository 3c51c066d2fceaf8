"""The published statistics, modelled from docs/statistics.md (not from the renderer): each
counter bucket's key is keyed BLAKE2b (8-byte digest), under a key derived by HKDF-SHA-256 from
the key ring's token secret with the info "dmp statistics cell keys", of the bucket's name, read
as a big-endian number; a figure's key is the XOR of its non-empty buckets' keys; the figure
published is the count plus ``key mod 10``, rounded down to ten, or "< 10" when under 10."""

from __future__ import annotations

import hashlib
from functools import reduce

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dmp.runtime import Runtime

HIDDEN = "< 10"


def secret(rt: Runtime) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmp statistics cell keys"
    ).derive(rt.keyring.token_secret)


def bucket(key: bytes, *parts: str) -> int:
    digest = hashlib.blake2b("|".join(parts).encode(), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def xor(keys: list[int]) -> int:
    return reduce(lambda a, b: a ^ b, keys, 0)


def published(n: int, key: int) -> int | str:
    x = n + key % 10
    return HIDDEN if x < 10 else x // 10 * 10


def opening_buckets(
    rt: Runtime, departement: str | None = None, start: str | None = None, end: str | None = None
) -> list[tuple[str, ...]]:
    """The non-empty opening buckets, read from the counter table itself."""
    query = (
        "SELECT departement, month, channel, structure_kind FROM stats_openings "
        "GROUP BY departement, month, channel, structure_kind HAVING sum(count) <> 0"
    )
    with rt.engine.connect() as conn:
        rows = [
            r
            for r in conn.execute(sa.text(query)).all()
            if (departement is None or r.departement == departement)
            and (start is None or r.month >= start)
            and (end is None or r.month <= end)
        ]
    return [("opening", *map(str, r)) for r in rows]


def closure_buckets(rt: Runtime, departement: str | None = None) -> list[tuple[str, ...]]:
    query = "SELECT departement, month FROM stats_closures WHERE count <> 0"
    params = {}
    if departement is not None:
        query += " AND departement = :d"
        params["d"] = departement
    with rt.engine.connect() as conn:
        rows = conn.execute(sa.text(query), params).all()
    return [("closure", *map(str, r)) for r in rows]


def key_of(rt: Runtime, buckets: list[tuple[str, ...]]) -> int:
    k = secret(rt)
    return xor([bucket(k, *b) for b in buckets])


def opened_total(rt: Runtime, departement: str, n: int) -> int | str:
    return published(n, key_of(rt, opening_buckets(rt, departement)))


def active(rt: Runtime, departement: str, n: int) -> int | str:
    buckets = opening_buckets(rt, departement) + closure_buckets(rt, departement)
    return published(n, key_of(rt, buckets))
