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
