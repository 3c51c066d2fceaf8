"""The process-wide parts every request shares: engine, key ring, clock, settings.

Built once at start (``Runtime.start``); stateless otherwise, so any number of processes can run
side by side on one database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from dmp.access.audit import RequestContext
from dmp.access.gateway import RecordAccess
from dmp.access.matrix import load_matrix
from dmp.access.policy import Matrix
from dmp.clock import Clock, SystemClock
from dmp.config import Settings
from dmp.crypto.keyring import KeyRing, load_keyring, load_or_create_keyring
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.domain.thresholds import Thresholds
from dmp.identity.actor import Actor
from dmp.identity.tokens import Grant
from dmp.records import database


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    keyring: KeyRing
    clock: Clock
    matrix: Matrix
    milestones: Thresholds
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(
        cls, settings: Settings, *, clock: Clock | None = None, migrate: bool = True
    ) -> Runtime:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keyring = load_or_create_keyring(settings.effective_keyring_path)
        engine = database.make_engine(settings.effective_database_url)
        matrix = load_matrix(settings.matrix_file)
        if migrate:
            database.upgrade(engine)
        thresholds = Thresholds.parse(settings.milestones)
        return cls(settings, engine, keyring, clock or SystemClock(), matrix, thresholds)

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
        grant = Grant(
            actor, scopes=scopes, purpose=purpose, justification=justification, patient=patient
        )
        return self.gate(grant, ctx)

    def gate(self, grant: Grant, ctx: RequestContext | None = None) -> RecordAccess:
        """The gate for one authenticated grant (what every HTTP request gets)."""
        return RecordAccess(self, grant, ctx or RequestContext())

    def database_info(self) -> dict[str, str | None]:
        return {
            "engine": self.engine.dialect.name,
            "migration": database.current_revision(self.engine),
            "expected_migration": database.head_revision(),
        }

    def close(self) -> None:
        self.engine.dispose()
