"""One-time codes people type: activation codes and recovery codes (random, unambiguous letters
and digits; stored only as a SHA-256, which is enough for 60 random bits that also expire, work
once and are rate-limited)."""

from __future__ import annotations

import hashlib
import secrets

# No 0/O, 1/I/L: read off paper and typed by hand.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_code(groups: int = 3, size: int = 4) -> str:
    """``XXXX-XXXX-XXXX``: 12 characters of a 31-letter alphabet, about 59 bits."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(size)) for _ in range(groups))


def normalize(code: str) -> str:
    """What a person typed, as stored: upper case, without spaces and dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def code_hash(code: str) -> str:
    return hashlib.sha256(normalize(code).encode()).hexdigest()
