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


def token_hash(token: str) -> str:
    """What is stored of a machine-made secret (a session or device cookie, a login's state,
    an app's code or refresh token): its SHA-256, case and characters kept."""
    return hashlib.sha256(token.encode()).hexdigest()


def notice_key(token_secret: bytes) -> bytes:
    """The key that seals a one-time code inside a notice until it is delivered (derived from
    the key ring's secret, so a database copy alone never reveals a code)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmp notice codes").derive(
        token_secret
    )


def notice_context(patient_id: str, notice_id: str) -> bytes:
    """The sealed code is bound to its notice (AEAD associated data)."""
    return f"notice-code:{patient_id}:{notice_id}".encode()
