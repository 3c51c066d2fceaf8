"""The access policy: a pure function from (actor, action, purpose, facts, time) to a decision.

No I/O here (import-linter contract). The gateway gathers the facts in one query, asks the policy,
applies the answer to every row before paging, and audits the decision with its reason code.

Rule identifiers (AC-n) refer to ``docs/access-rules.md`` and the domain reference §4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dmp.domain.codes import PurposeOfUse, RecordStatus
from dmp.domain.visibility import DocumentVisibility
from dmp.identity.actor import Actor, ActorKind


class Action(StrEnum):
    OPEN_RECORD = "open_record"
    READ_RECORD = "read_record"  # status and demographics
    CLOSE_RECORD = "close_record"
    READ_DOCUMENTS = "read_documents"  # search, metadata and content
    DEPOSIT_DOCUMENT = "deposit_document"
    DECLARE_CONSENT = "declare_consent"
    READ_HISTORY = "read_history"
    DESTROY_KEYS = "destroy_keys"  # crypto-shredding, system jobs only


class Reason(StrEnum):
    """Stable reason codes, written into every audit event."""

    ALLOW_HOLDER = "ALLOW_HOLDER"
    ALLOW_REPRESENTATIVE = "ALLOW_REPRESENTATIVE"
    ALLOW_CONSENT = "ALLOW_CONSENT"
    ALLOW_CARE_DEPOSIT = "ALLOW_CARE_DEPOSIT"
    ALLOW_OPEN = "ALLOW_OPEN"
    ALLOW_OWN_TRACES = "ALLOW_OWN_TRACES"
    ALLOW_CONSENT_DECLARATION = "ALLOW_CONSENT_DECLARATION"
    ALLOW_SYSTEM = "ALLOW_SYSTEM"
    DENY_UNKNOWN_PATIENT = "DENY_UNKNOWN_PATIENT"
    DENY_RECORD_EXISTS = "DENY_RECORD_EXISTS"
    DENY_RECORD_CLOSED = "DENY_RECORD_CLOSED"
    DENY_BLOCKED = "DENY_BLOCKED"
    DENY_NO_CONSENT = "DENY_NO_CONSENT"
    DENY_NOT_HOLDER = "DENY_NOT_HOLDER"
    DENY_ACTOR_KIND = "DENY_ACTOR_KIND"
    DENY_NO_STRUCTURE = "DENY_NO_STRUCTURE"
    DENY_PURPOSE = "DENY_PURPOSE"
    DENY_INVALID = "DENY_INVALID"


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the policy needs to know about one record and this actor's standing in it."""

    status: RecordStatus
    closed_at: datetime | None
    consented: bool  # the patient's consent for this professional was declared (AC-4)
    blocked: bool  # the patient blocked this professional (AC-3)
    medecin_traitant: str | None
    holder_ins: tuple[str, str]  # (oid, value)
    representative_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    visibility: DocumentVisibility | None = None  # for READ_DOCUMENTS
    own_traces_only: bool = False  # for READ_HISTORY

    @classmethod
    def deny(cls, reason: Reason) -> Decision:
        return cls(False, reason)


def _is_holder(actor: Actor, facts: RecordFacts) -> bool:
    return (
        actor.kind is ActorKind.PATIENT
        and actor.ins is not None
        and (actor.ins.oid, actor.ins.value) == facts.holder_ins
    )


def _is_representative(actor: Actor, facts: RecordFacts) -> bool:
    return (
        actor.kind is ActorKind.REPRESENTATIVE
        and actor.ins is not None
        and (actor.ins.oid, actor.ins.value) == facts.holder_ins
        and actor.id in facts.representative_ids
    )


def decide_open(actor: Actor, *, record_exists: bool, for_ins: tuple[str, str]) -> Decision:
    """Who may open a record: a registration desk, a professional, the person online for
    themselves, or the insurer's provisioning job (domain reference §2)."""
    if record_exists:
        return Decision.deny(Reason.DENY_RECORD_EXISTS)
    if actor.kind is ActorKind.SYSTEM:
        return Decision(True, Reason.ALLOW_SYSTEM)
    if actor.kind in (ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL):
        if not actor.structure_id:
            return Decision.deny(Reason.DENY_NO_STRUCTURE)
        return Decision(True, Reason.ALLOW_OPEN)
    if actor.kind is ActorKind.PATIENT and actor.ins is not None:
        if (actor.ins.oid, actor.ins.value) == for_ins:
            return Decision(True, Reason.ALLOW_HOLDER)
        return Decision.deny(Reason.DENY_NOT_HOLDER)
    return Decision.deny(Reason.DENY_ACTOR_KIND)


def _holder_visibility(now: datetime, *, representative: bool) -> DocumentVisibility:
    # The holder sees everything except what is hidden pending an announcement (AC-11);
    # representatives also miss what a minor's confidential care hides from them (AC-12).
    return DocumentVisibility(
        hide_invisible_patient_at=now, hide_invisible_representatives=representative
    )


def _professional_visibility(actor: Actor) -> DocumentVisibility:
    # Masked documents stay visible to their author and the author's structure (AC-6).
    structures = (actor.structure_id,) if actor.structure_id else ()
    return DocumentVisibility(
        statuses=("current", "superseded", "archived"),
        masked="authors",
        masked_authors=(actor.id,),
        masked_structures=structures,
    )


def decide(
    actor: Actor,
    action: Action,
    purpose: PurposeOfUse,
    facts: RecordFacts,
    now: datetime,
) -> Decision:
    """Decide one action on one existing record."""
    if actor.kind is ActorKind.SYSTEM:
        return Decision(True, Reason.ALLOW_SYSTEM, visibility=DocumentVisibility())

    if action is Action.DESTROY_KEYS:
        return Decision.deny(Reason.DENY_ACTOR_KIND)

    if _is_holder(actor, facts) or _is_representative(actor, facts):
        representative = actor.kind is ActorKind.REPRESENTATIVE
        reason = Reason.ALLOW_REPRESENTATIVE if representative else Reason.ALLOW_HOLDER
        if action is Action.OPEN_RECORD:
            return Decision.deny(Reason.DENY_RECORD_EXISTS)
        if action is Action.READ_DOCUMENTS:
            return Decision(
                True, reason, visibility=_holder_visibility(now, representative=representative)
            )
        return Decision(True, reason)

    if actor.kind is not ActorKind.PROFESSIONAL:
        return Decision.deny(
            Reason.DENY_NOT_HOLDER
            if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
            else Reason.DENY_ACTOR_KIND
        )

    # Professionals. AC-1: nothing on a closed record.
    if facts.status is not RecordStatus.ACTIVE:
        return Decision.deny(Reason.DENY_RECORD_CLOSED)
    if purpose is not PurposeOfUse.NORMAL:
        # Emergency and regulation-centre access are the access-rules issue (AC-8, AC-9).
        return Decision.deny(Reason.DENY_PURPOSE)
    # AC-3: a blocked professional is refused everything, consent or not.
    if facts.blocked:
        return Decision.deny(Reason.DENY_BLOCKED)
    if action is Action.DEPOSIT_DOCUMENT:
        # AC-10: a professional taking part in care deposits without read authorisation.
        if not actor.structure_id:
            return Decision.deny(Reason.DENY_NO_STRUCTURE)
        return Decision(True, Reason.ALLOW_CARE_DEPOSIT)
    if action is Action.DECLARE_CONSENT:
        # AC-4: the professional records the consent the patient gave them.
        return Decision(True, Reason.ALLOW_CONSENT_DECLARATION)
    if action is Action.READ_HISTORY:
        # AC-17: a professional reads the traces of their own actions only.
        return Decision(True, Reason.ALLOW_OWN_TRACES, own_traces_only=True)
    if action in (Action.READ_DOCUMENTS, Action.READ_RECORD):
        if not facts.consented:
            return Decision.deny(Reason.DENY_NO_CONSENT)
        return Decision(True, Reason.ALLOW_CONSENT, visibility=_professional_visibility(actor))
    return Decision.deny(Reason.DENY_ACTOR_KIND)
