"""System work on the whole database: migrations, audit verification, key checks and rotation.

Each runs as a named system actor through the gate's system action (``Kernel.act_system``): its
work and its audit event in one transaction."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from dmp.access import audit
from dmp.access.audit import VerifyReport
from dmp.config import Settings
from dmp.crypto import envelope
from dmp.crypto.keyring import KeyRing, load_keyring
from dmp.domain.codes import AuditAction
from dmp.identity.actor import system_actor
from dmp.records import audit_log, database, keys, ring_seal
from dmp.runtime import Runtime, seal_proof


def upgrade_database(settings: Settings) -> str | None:
    engine = database.make_engine(
        settings.effective_database_url, prepared=settings.db_prepared_statements
    )
    try:
        database.migrate(engine, settings.migration_database_url)
        return database.current_revision(engine)
    finally:
        engine.dispose()


def system_event(rt: Runtime, job: str, action: AuditAction, target: str | None) -> None:
    """A job's event with no other work of its own in the database (a backup's, a restore's):
    through the gate's system action, like every audit event."""
    with rt.access(system_actor(job)).act_system(action, target):
        pass


def verify_audit(rt: Runtime, workers: int | None = None) -> VerifyReport:
    """Every chain checked; by as many processes as cores unless told (a large trail)."""
    return audit.verify(rt.engine, rt.audit_keys(), workers=workers or os.cpu_count() or 1)


@dataclass(frozen=True)
class KeyReport:
    """Which key ids the database needs, and which of them the key ring lacks."""

    ring_path: Path
    ring_found: bool
    keks_needed: set[str]
    audit_keys_needed: set[str]
    keks_missing: set[str]
    audit_keys_missing: set[str]
    # Whether the ring is the one that sealed the database (None: no seal recorded yet).
    sealed_by_ring: bool | None = None

    @property
    def ok(self) -> bool:
        return (
            self.ring_found
            and not self.keks_missing
            and not self.audit_keys_missing
            and self.sealed_by_ring is not False
        )


def _key_report(engine: Engine, path: Path, ring: KeyRing | None) -> KeyReport:
    with database.snapshot(engine) as conn:
        keks = keys.kek_ids_in_use(conn)
        audit_keys = audit_log.key_ids_in_use(conn)
        seal = ring_seal.read(conn)
    held_keks = set(ring.keks) if ring else set()
    held_audit = set(ring.audit_keys) if ring else set()
    sealed = None if seal is None or ring is None else hmac.compare_digest(seal, seal_proof(ring))
    return KeyReport(
        path,
        ring is not None,
        keks,
        audit_keys,
        keks - held_keks,
        audit_keys - held_audit,
        sealed,
    )


def check_keys(rt: Runtime, *, reload: bool = True) -> KeyReport:
    """`dmp keys check` for a running service's ring."""
    if reload:
        rt.reload_keyring()
    return _key_report(rt.engine, rt.keyring.path, rt.keyring)


def check_keys_offline(settings: Settings) -> KeyReport:
    """`dmp keys check` without starting the service (it may refuse to start for lack of its
    key ring): reads the database and the ring file, if any, and changes nothing."""
    engine = database.make_engine(
        settings.effective_database_url, prepared=settings.db_prepared_statements
    )
    path = settings.effective_keyring_path
    try:
        ring = load_keyring(path) if path.exists() else None
        return _key_report(engine, path, ring)
    finally:
        engine.dispose()


def rotate_keys(rt: Runtime, *, batch: int = 500) -> tuple[str, int]:
    """Add a key-encryption key, make it active, re-wrap every data key with it.

    Content is not re-encrypted: only the small wrapped data keys change. The old KEKs stay in
    the ring (a backup of the database taken before rotation still needs them).
    """
    ring = rt.keyring.with_new_kek()
    ring.save()
    rt.reload_keyring()
    new_id = rt.keyring.active_kek_id
    new_kek = rt.keyring.kek(new_id)
    count = 0
    # The re-wrap and its audit event commit together (one transaction of the gate's system
    # action): the trail never says a rotation happened that did not, or misses one that did.
    with rt.access(system_actor("keys-rotate")).act_system(AuditAction.KEYS_ROTATE, new_id) as op:
        for rows in keys.keys_not_wrapped_by(op.conn, new_id, batch):
            updates: list[dict[str, object]] = []
            for patient_id, key_id, kek_id, wrapped in rows:
                data_key = envelope.unwrap_data_key(rt.kek(kek_id), wrapped, patient_id)
                updates.append(
                    {
                        "p": patient_id,
                        "k": key_id,
                        "kek": new_id,
                        "w": envelope.wrap_data_key(new_kek, data_key, patient_id),
                    }
                )
            keys.rewrap(op.conn, updates)
            count += len(updates)
    return new_id, count
