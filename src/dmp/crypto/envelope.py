"""Envelope encryption: per-patient data keys (AES-256-GCM) wrapped by a key-encryption key.

Every ciphertext is bound to its context by the GCM associated data (patient and object ids), so a
ciphertext copied to another patient or another document fails authentication.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dmp.errors import IntegrityFailure

_NONCE = 12


def new_data_key() -> bytes:
    return secrets.token_bytes(32)


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt and authenticate; returns nonce || ciphertext || tag."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_sealed(key: bytes, sealed: bytes, context: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], context)
    except (InvalidTag, ValueError):
        raise IntegrityFailure("stored ciphertext failed authentication") from None


def wrap_data_key(kek: bytes, data_key: bytes, patient_id: str) -> bytes:
    return seal(kek, data_key, b"dmp-data-key:" + patient_id.encode())


def unwrap_data_key(kek: bytes, wrapped: bytes, patient_id: str) -> bytes:
    return open_sealed(kek, wrapped, b"dmp-data-key:" + patient_id.encode())


def content_context(patient_id: str, content_id: str) -> bytes:
    return b"dmp-content:" + patient_id.encode() + b":" + content_id.encode()


CHUNK = 256 * 1024


def _chunk_context(context: bytes, index: int, last: bool) -> bytes:
    # The index and the "last" mark are authenticated: chunks cannot be reordered, dropped or
    # the content truncated without failing authentication.
    return context + b":chunk:" + str(index).encode() + (b":last" if last else b":more")


def seal_chunks(key: bytes, plaintext: bytes, context: bytes, size: int = CHUNK) -> list[bytes]:
    pieces = [plaintext[i : i + size] for i in range(0, len(plaintext), size)] or [b""]
    return [
        seal(key, piece, _chunk_context(context, n, n == len(pieces) - 1))
        for n, piece in enumerate(pieces)
    ]


def open_chunk(key: bytes, sealed: bytes, context: bytes, index: int, last: bool) -> bytes:
    try:
        return open_sealed(key, sealed, _chunk_context(context, index, last))
    except IntegrityFailure:
        if index == 0 and last:
            # Content stored before chunking (schema 0005 and earlier): one piece sealed with
            # the bare context. A truncated chunked content cannot pass as one: its first
            # chunk is sealed as "more".
            try:
                return open_sealed(key, sealed, context)
            except IntegrityFailure:
                pass
        raise IntegrityFailure(
            f"this document's stored content failed authentication at chunk {index}"
            " (altered, moved or taken from another document)"
        ) from None


def open_chunks(key: bytes, chunks: list[bytes], context: bytes) -> bytes:
    return b"".join(
        open_chunk(key, c, context, n, n == len(chunks) - 1) for n, c in enumerate(chunks)
    )
