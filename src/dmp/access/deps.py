"""What the gate needs from the process, and nothing more.

The composition root (``dmp.runtime.Runtime``) hands the kernel an object with these members;
the gate never imports the root, so no module of ``access`` depends on what builds it (no import
circle), and a test can see in one place everything the gate can reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dmp.access.audit import AuditKey
    from dmp.access.patient_index import PatientIndex
    from dmp.access.policy import Matrix
    from dmp.clock import Clock
    from dmp.config import Settings
    from dmp.domain.thresholds import Thresholds


class GateDeps(Protocol):
    """The engine, the clock, the settings, the habilitation matrix, the milestones, the
    process's INS index, and from the key ring only: the key-encryption keys by id (and which
    one is active), the audit key of new events, the key that seals notice codes."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def matrix(self) -> Matrix: ...

    @property
    def milestones(self) -> Thresholds: ...

    @property
    def patient_index(self) -> PatientIndex: ...

    @property
    def audit_key(self) -> AuditKey: ...

    @property
    def notice_key(self) -> bytes: ...

    @property
    def active_kek_id(self) -> str: ...

    def kek(self, kek_id: str) -> bytes: ...
