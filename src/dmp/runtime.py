"""The process-wide parts every request shares: engine, key ring, clock, settings.

Built once at start (``Runtime.start``); stateless otherwise, so any number of processes can run
side by side on one database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from dmp.access import codes
from dmp.access.audit import AuditKey, AuditKeys, RequestContext
from dmp.access.matrix import load_matrix
from dmp.access.patient_index import PatientIndex
from dmp.access.policy import Matrix
from dmp.clock import Clock, SystemClock
from dmp.config import Settings
from dmp.crypto.keyring import KeyRing, create_keyring, load_keyring
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.domain.thresholds import Thresholds
from dmp.errors import ConfigurationError
from dmp.identity.actor import Actor
from dmp.records import audit_log, database, keys, ring_seal

# Exceptions the application turns into 503 with Retry-After (the pool's wait for a free
# connection timed out); the engine turns the driver's own into ServiceUnavailable.
UNAVAILABLE = database.POOL_EXHAUSTED

if TYPE_CHECKING:
    from dmp.access.record_access import RecordAccess
    from dmp.identity.tokens import Grant


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    keyring: KeyRing
    clock: Clock
    matrix: Matrix
    milestones: Thresholds
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    patient_index: PatientIndex = field(default_factory=PatientIndex, repr=False)

    @classmethod
    def start(
        cls, settings: Settings, *, clock: Clock | None = None, migrate: bool = True
    ) -> Runtime:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = database.make_engine(
            settings.effective_database_url,
            pool_size=settings.db_pool_size,
            prepared=settings.db_prepared_statements,
            group=settings.db_group_commit,
        )
        matrix = load_matrix(settings.matrix_file)
        if migrate and not database.schema_is_current(engine):
            database.migrate(engine, settings.migration_database_url)
        try:
            keyring = open_keyring(settings.effective_keyring_path, engine)
        except BaseException:
            engine.dispose()
            raise
        thresholds = Thresholds.parse(settings.milestones)
        return cls(settings, engine, keyring, clock or SystemClock(), matrix, thresholds)

    @property
    def active_kek_id(self) -> str:
        """The key-encryption key that wraps new data keys."""
        return self.keyring.active_kek_id

    def kek(self, kek_id: str) -> bytes:
        """A key-encryption key; reloads the ring once if another process rotated it."""
        if kek_id not in self.keyring.keks:
            with self._lock:
                self.keyring = load_keyring(self.keyring.path)
        return self.keyring.kek(kek_id)

    def reload_keyring(self) -> None:
        with self._lock:
            self.keyring = load_keyring(self.keyring.path)

    @property
    def token_secret(self) -> bytes:
        return self.keyring.token_secret

    @property
    def notice_key(self) -> bytes:
        """Seals the one-time codes notices carry until they are delivered."""
        return codes.notice_key(self.keyring.token_secret)

    @property
    def audit_key(self) -> AuditKey:
        """The key that MACs new audit events."""
        ring = self.keyring
        assert ring.active_audit_key_id is not None  # open_keyring gives every ring one
        return AuditKey(ring.active_audit_key_id, ring.audit_keys[ring.active_audit_key_id])

    def audit_keys(self) -> AuditKeys:
        """Every audit key, for verification (the ring reloaded: another process may have
        added one)."""
        self.reload_keyring()
        return AuditKeys(dict(self.keyring.audit_keys), self.keyring.accept_unkeyed_audit)

    def access(
        self,
        actor: Actor,
        purpose: PurposeOfUse = PurposeOfUse.NORMAL,
        ctx: RequestContext | None = None,
        *,
        justification: str | None = None,
        patient: Ins | None = None,
        scopes: frozenset[str] | None = None,
    ) -> RecordAccess:
        """A gate for in-process callers (commands, jobs, tests): the grant is built here."""
        from dmp.identity.tokens import Grant  # (and JWT) loaded by the commands that need it

        grant = Grant(
            actor, scopes=scopes, purpose=purpose, justification=justification, patient=patient
        )
        return self.gate(grant, ctx)

    def gate(self, grant: Grant, ctx: RequestContext | None = None) -> RecordAccess:
        """The gate for one authenticated grant (what every HTTP request gets)."""
        # Imported here: commands that only run jobs need not load every action module.
        from dmp.access.record_access import RecordAccess

        return RecordAccess(self, grant, ctx or RequestContext())

    def database_info(self) -> dict[str, str | None]:
        return {
            "engine": self.engine.dialect.name,
            "migration": database.current_revision(self.engine),
            "expected_migration": database.head_revision(),
        }

    def close(self) -> None:
        self.engine.dispose()


def _holds_sealed_data(engine: Engine) -> bool:
    """Whether the database holds data keys or audit events (sealed with some key ring)."""
    try:
        with database.snapshot(engine) as conn:
            return keys.any_key_stored(conn) or audit_log.any_event(conn)
    except sa_exc.DBAPIError:
        return False  # no schema yet: an empty database


def open_keyring(path: Path, engine: Engine) -> KeyRing:
    """The key ring for this database. A new ring is created only for an empty database: with
    wrapped keys or audit events stored and no ring, the server refuses to start rather than
    make a new ring that opens none of them (documents deposited meanwhile would then be
    unreadable once the real ring is back)."""
    if not path.exists():
        if _holds_sealed_data(engine):
            raise ConfigurationError(
                f"no key ring at {path}, but the database holds data keys and audit events "
                "sealed with one: restore the key ring from its backup, or set DMP_KEYRING to "
                "its path (`dmp keys check` lists the key ids the database needs)"
            )
        created = create_keyring(path)
        check_seal(engine, created)
        return created
    ring = load_keyring(path)
    if ring.active_audit_key_id is None:
        # A ring from before the audit trail was keyed: give it an audit key; the events
        # written until now carry no MAC and stay acceptable as they are.
        ring = dataclasses.replace(
            ring.with_new_audit_key(), accept_unkeyed_audit=_holds_sealed_data(engine)
        )
        ring.save()
    check_seal(engine, ring)
    return ring


def seal_proof(ring: KeyRing) -> str:
    """What the ring writes into the database it seals: a MAC under its own secret (it
    reveals nothing of the ring, and no other ring can reproduce it)."""
    return hmac.new(ring.token_secret, b"dmp key ring seal v1", hashlib.sha256).hexdigest()


def check_seal(engine: Engine, ring: KeyRing) -> None:
    """Refuse a ring that did not seal this database. The first start seals it, once the ring
    is shown to hold every key id the database's wrapped keys and audit events use (a database
    from before the seal, or a new one)."""
    proof = seal_proof(ring)
    try:
        with engine.connect() as conn:
            stored = ring_seal.read(conn)
    except sa_exc.ProgrammingError:
        return  # a schema from before the seal (migrations pending): checked once migrated
    if stored is None:
        with database.snapshot(engine) as conn:
            missing = (keys.kek_ids_in_use(conn) - set(ring.keks)) | (
                audit_log.key_ids_in_use(conn) - set(ring.audit_keys)
            )
        if missing:
            raise ConfigurationError(_WRONG_RING.format(path=ring.path))
        with engine.begin() as conn:
            stored = ring_seal.write(conn, proof, datetime.now(UTC))
    if not hmac.compare_digest(stored, proof):
        if _holds_sealed_data(engine):
            raise ConfigurationError(_WRONG_RING.format(path=ring.path))
        # Nothing was sealed with the old ring yet (an empty database): the new one seals it.
        with engine.begin() as conn:
            ring_seal.replace(conn, proof, datetime.now(UTC))


_WRONG_RING = (
    "the key ring at {path} did not seal this database (another installation's ring, or one "
    "replaced by mistake): its documents could not be read and new audit events would be "
    "MACed under the wrong key. Restore the ring from its backup, or set DMP_KEYRING to its "
    "path (`dmp keys check` lists the key ids the database needs)"
)
