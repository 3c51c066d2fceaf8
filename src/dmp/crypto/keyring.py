"""The key ring: key-encryption keys (KEKs), the audit MAC keys and the token-signing secret,
in one 0600 file.

The file is created on first start. Losing it makes every document unreadable: it must be backed
up, separately from the database (a database backup alone must not be enough to read content).
Keys never go to logs, errors or ``repr``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dmp.errors import ConfigurationError

log = logging.getLogger(__name__)

_FORMAT_VERSION = 2  # 2 added the audit keys; a version 1 ring gets one on first start


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class KeyRing:
    """Immutable view of the key ring file. ``active_kek_id`` wraps new data keys."""

    path: Path
    active_kek_id: str
    keks: dict[str, bytes] = field(repr=False)
    token_secret: bytes = field(repr=False)
    # Keys of the audit trail's MACs: kept apart from the database, so that whoever holds the
    # database alone cannot rewrite the trail and recompute it.
    audit_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    active_audit_key_id: str | None = None
    # True only for a ring upgraded from before the trail was keyed: events of that time carry
    # no MAC and are accepted as such (see docs/decisions/0008-audit-mac.md).
    accept_unkeyed_audit: bool = False

    def audit_key(self, key_id: str) -> bytes | None:
        return self.audit_keys.get(key_id)

    def with_new_audit_key(self) -> KeyRing:
        key_id = f"audit-{uuid.uuid4().hex[:12]}"
        keys = {**self.audit_keys, key_id: secrets.token_bytes(32)}
        return dataclasses.replace(self, audit_keys=keys, active_audit_key_id=key_id)

    def kek(self, kek_id: str) -> bytes:
        try:
            return self.keks[kek_id]
        except KeyError:
            raise ConfigurationError(
                f"key-encryption key {kek_id} is not in the key ring {self.path}"
            ) from None

    def with_new_kek(self) -> KeyRing:
        kek_id = f"kek-{uuid.uuid4().hex[:12]}"
        keks = dict(self.keks)
        keks[kek_id] = secrets.token_bytes(32)
        return dataclasses.replace(self, active_kek_id=kek_id, keks=keks)

    def serialise(self) -> bytes:
        return orjson.dumps(
            {
                "format": _FORMAT_VERSION,
                "active_kek": self.active_kek_id,
                "keks": {k: _b64(v) for k, v in self.keks.items()},
                "token_secret": _b64(self.token_secret),
                "active_audit_key": self.active_audit_key_id,
                "audit_keys": {k: _b64(v) for k, v in self.audit_keys.items()},
                "accept_unkeyed_audit": self.accept_unkeyed_audit,
            },
            option=orjson.OPT_INDENT_2,
        )

    def save(self) -> None:
        """Write atomically (temp file with mode 0600, then rename)."""
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.serialise())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _parse(path: Path, raw: bytes) -> KeyRing:
    try:
        doc = orjson.loads(raw)
        keks = {str(k): _unb64(v) for k, v in doc["keks"].items()}
        audit_keys = {str(k): _unb64(v) for k, v in (doc.get("audit_keys") or {}).items()}
        active_audit = doc.get("active_audit_key")
        ring = KeyRing(
            path,
            str(doc["active_kek"]),
            keks,
            _unb64(doc["token_secret"]),
            audit_keys,
            str(active_audit) if active_audit else None,
            bool(doc.get("accept_unkeyed_audit", False)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise ConfigurationError(f"the key ring {path} is not a valid key ring file") from None
    if (
        ring.active_kek_id not in keks
        or any(len(k) != 32 for k in [*keks.values(), *ring.audit_keys.values()])
        or (ring.active_audit_key_id is not None and ring.active_audit_key_id not in audit_keys)
    ):
        raise ConfigurationError(f"the key ring {path} is inconsistent")
    return ring


def load_keyring(path: Path) -> KeyRing:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"no key ring at {path}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # The keys that open every record: refused rather than used as they are exposed.
        raise ConfigurationError(
            f"the key ring {path} is open to other users (mode {mode:04o}); "
            f"run chmod 600 on it (and check who could have read it)"
        )
    return _parse(path, raw)


def create_keyring(path: Path) -> KeyRing:
    """Create a new key ring (mode 0600). Only for a database that holds no keys: the caller
    checks. Safe when two processes start: the second loads the first one's ring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ring = KeyRing(path, "", {}, secrets.token_bytes(32)).with_new_kek().with_new_audit_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_keyring(path)  # another process created it first
    with os.fdopen(fd, "wb") as fh:
        fh.write(ring.serialise())
        fh.flush()
        os.fsync(fh.fileno())
    log.warning(
        "created a new key ring; back it up now and keep the copy apart from database backups: "
        "without it no document can be decrypted",
        extra={"keyring_path": str(path)},
    )
    return ring
