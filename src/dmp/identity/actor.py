"""The authenticated actor every request is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dmp.domain.ins import Ins


class ActorKind(StrEnum):
    PROFESSIONAL = "professional"  # health professional (idNatPS from the directory)
    PATIENT = "patient"  # the record holder (titulaire)
    REPRESENTATIVE = "representative"  # legal representative acting for the holder
    DESK_AGENT = "desk_agent"  # registration desk (pharmacy counter, insurer desk)
    SYSTEM = "system"  # a named background job or operator command


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated actor. For professionals, profession and specialty come from the
    directory at authentication time, never from what the client claims."""

    kind: ActorKind
    id: str
    structure_id: str | None = None
    profession: str | None = None  # TRE_G15 (10 médecin, 21 pharmacien, 60 infirmier...)
    specialty: str | None = None  # savoir-faire (SM54 médecine générale...)
    pharmacist_section: str | None = None
    structure_kind: str | None = None  # secteur d'activité (SA33 officine, SA01 hôpital...)
    ins: Ins | None = None  # for a patient or representative: whose record they act on

    @property
    def label(self) -> str:
        """A non-identifying label for logs: kind only (ids never go to logs)."""
        return self.kind.value


def system_actor(name: str) -> Actor:
    """A named, audited system actor for jobs and operator commands."""
    return Actor(kind=ActorKind.SYSTEM, id=f"system:{name}")
