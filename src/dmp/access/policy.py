"""The access policy: a pure function from (actor, action, purpose, facts, time) to a decision.

No I/O here (import-linter contract). The kernel gathers the facts in one query, asks the policy,
applies the answer to every row before paging, and audits the decision with its reason code.
Rule identifiers (AC-n) refer to ``docs/access-rules.md`` and the domain reference §4; rules are
evaluated in the order of that list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from dmp.domain.codes import PurposeOfUse, RecordStatus
from dmp.domain.visibility import DocumentVisibility
from dmp.identity.actor import Actor, ActorKind


class Action(StrEnum):
    OPEN_RECORD = "open_record"
    READ_RECORD = "read_record"  # status and demographics
    CLOSE_RECORD = "close_record"
    MANAGE_RECORD = "manage_record"  # holder controls: block, oppose, mask, GP, team, reps
    READ_DOCUMENTS = "read_documents"  # search, metadata and content
    DEPOSIT_DOCUMENT = "deposit_document"
    UPDATE_DOCUMENT = "update_document"  # replace, archive, delete, visibility flags
    DECLARE_CONSENT = "declare_consent"
    DECLARE_CARE_TEAM = "declare_care_team"
    READ_HISTORY = "read_history"
    DESTROY_KEYS = "destroy_keys"  # crypto-shredding, system jobs only
    ISSUE_ACTIVATION = "issue_activation"  # a one-time code for the holder's online account
    REOPEN_RECORD = "reopen_record"
    REQUEST_DELETION = "request_deletion"  # the holder asks for the record to be deleted
    DECLARE_DEATH = "declare_death"  # the death register: system jobs only
    PURGE_RECORD = "purge_record"  # retention over, or deletion due: system jobs only
    START_RECOVERY = "start_recovery"  # a code sent to the holder of an activated account
    WITHDRAW_DELETION = "withdraw_deletion"  # the holder takes back their deletion request
    DESIGNATE_GP = "designate_gp"  # the holder names their registered GP (AC-7)


class Reason(StrEnum):
    """Stable reason codes, written into every audit event."""

    ALLOW_HOLDER = "ALLOW_HOLDER"
    ALLOW_REPRESENTATIVE = "ALLOW_REPRESENTATIVE"
    ALLOW_MEDECIN_TRAITANT = "ALLOW_MEDECIN_TRAITANT"
    ALLOW_CONSENT = "ALLOW_CONSENT"
    ALLOW_CARE_TEAM = "ALLOW_CARE_TEAM"
    ALLOW_BRIS_DE_GLACE = "ALLOW_BRIS_DE_GLACE"
    ALLOW_CENTRE_15 = "ALLOW_CENTRE_15"
    ALLOW_CARE_DEPOSIT = "ALLOW_CARE_DEPOSIT"
    ALLOW_AUTHOR = "ALLOW_AUTHOR"
    ALLOW_OPEN = "ALLOW_OPEN"
    ALLOW_OWN_TRACES = "ALLOW_OWN_TRACES"
    ALLOW_CONSENT_DECLARATION = "ALLOW_CONSENT_DECLARATION"
    ALLOW_SYSTEM = "ALLOW_SYSTEM"
    DENY_UNKNOWN_PATIENT = "DENY_UNKNOWN_PATIENT"
    DENY_RECORD_EXISTS = "DENY_RECORD_EXISTS"
    DENY_RECORD_CLOSED = "DENY_RECORD_CLOSED"
    DENY_FORBIDDEN_ACTOR = "DENY_FORBIDDEN_ACTOR"
    DENY_BLOCKED = "DENY_BLOCKED"
    DENY_NO_CONSENT = "DENY_NO_CONSENT"
    DENY_OPPOSED_EMERGENCY = "DENY_OPPOSED_EMERGENCY"
    DENY_OPPOSED_CENTRE_15 = "DENY_OPPOSED_CENTRE_15"
    DENY_JUSTIFICATION_REQUIRED = "DENY_JUSTIFICATION_REQUIRED"
    DENY_NOT_REGULATOR = "DENY_NOT_REGULATOR"
    DENY_NOT_AUTHOR = "DENY_NOT_AUTHOR"
    DENY_NOT_HOLDER = "DENY_NOT_HOLDER"
    DENY_ACTOR_KIND = "DENY_ACTOR_KIND"
    DENY_NO_STRUCTURE = "DENY_NO_STRUCTURE"
    DENY_NOT_FOUND = "DENY_NOT_FOUND"  # a missing or hidden document: audited as an attempt
    DENY_NORMAL_MODE_ONLY = "DENY_NORMAL_MODE_ONLY"  # care team: declared in normal mode only
    DENY_SCOPE = "DENY_SCOPE"  # the grant's SMART scopes do not cover the action
    DENY_OTHER_PATIENT = "DENY_OTHER_PATIENT"  # the grant is bound to another patient
    DENY_UNBOUND_EMERGENCY = "DENY_UNBOUND_EMERGENCY"  # an emergency grant names no patient
    DENY_APP_WITHDRAWN = "DENY_APP_WITHDRAWN"  # the holder withdrew the app's authorization
    DENY_SUBJECT_BLOCKED = "DENY_SUBJECT_BLOCKED"  # the professional named is blocked (AC-3)
    DENY_ACCOUNT_ACTIVE = "DENY_ACCOUNT_ACTIVE"  # an activated account: a recovery, no letter
    DENY_ACCOUNT_NOT_ACTIVE = "DENY_ACCOUNT_NOT_ACTIVE"  # no activated account to recover
    DENY_DELETION_PENDING = "DENY_DELETION_PENDING"  # the holder asked for the deletion


@dataclass(frozen=True)
class Matrix:
    """The habilitation matrix as data: (profession, specialty, pharmacist section) -> the
    document type codes readable, ``None`` meaning every type."""

    rules: Mapping[tuple[str, str | None, str | None], frozenset[str] | None]
    labels: Mapping[tuple[str, str | None, str | None], str] = field(default_factory=dict)
    # AC-16: directory values (activity sector of the structure, specialty of the professional)
    # that mark an actor who may never access a record, whatever they claim about themselves.
    forbidden_sectors: frozenset[str] = frozenset()
    forbidden_specialties: frozenset[str] = frozenset()
    regulation_professions: frozenset[str] = frozenset({"10"})
    version: str = ""

    def readable_types(self, actor: Actor) -> frozenset[str] | None:
        """Most specific rule first: specialty, then pharmacist section, then profession.
        A profession absent from the matrix reads nothing."""
        p = actor.profession or ""
        keys: list[tuple[str, str | None, str | None]] = []
        if actor.specialty:
            keys.append((p, actor.specialty, None))
        if actor.pharmacist_section:
            keys.append((p, None, actor.pharmacist_section))
        keys.append((p, None, None))
        for key in keys:
            if key in self.rules:
                return self.rules[key]
        return frozenset()


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the policy needs to know about one record and this actor's standing in it."""

    status: RecordStatus
    closed_at: datetime | None
    holder_ins: tuple[str, str]  # (oid, value)
    consented: bool = False  # the patient's consent for this professional was declared (AC-4)
    blocked: bool = False  # the patient blocked this professional (AC-3)
    care_team: bool = False  # declared member of the care team (AC-4); authorship is not
    initial_consent: bool = False  # explicit initial consent to the care team (AC-4)
    medecin_traitant: str | None = None
    oppose_bris_de_glace: bool = False
    oppose_centre_15: bool = False
    mask_all: bool = False
    emergency_until: datetime | None = None  # open emergency window of this professional
    representative_ids: frozenset[str] = frozenset()
    account_activated: bool = False  # the holder activated their online account
    deletion_requested: bool = False  # the holder asked for the record's deletion
    subject_blocked: bool = False  # the professional the action names is blocked (AC-3)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    visibility: DocumentVisibility | None = None  # for READ_DOCUMENTS
    own_traces_only: bool = False  # for READ_HISTORY
    open_emergency: bool = False  # the kernel must open an emergency window (AC-8)

    @classmethod
    def deny(cls, reason: Reason) -> Decision:
        return cls(False, reason)


_LIVE = ("current", "superseded", "archived")


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


def is_forbidden(actor: Actor, matrix: Matrix) -> bool:
    """AC-16 (L1111-18): insurers, employers, occupational doctors, even with consent. Known
    from the directory entry the actor was built from (the structure's activity sector, the
    professional's specialty), never from what the client asserts."""
    return (
        actor.structure_kind is not None and actor.structure_kind in matrix.forbidden_sectors
    ) or (actor.specialty is not None and actor.specialty in matrix.forbidden_specialties)


def decide_open(
    actor: Actor, matrix: Matrix, *, record_exists: bool, for_ins: tuple[str, str]
) -> Decision:
    """Who may open a record: a registration desk, a professional, the person online for
    themselves, or the insurer's provisioning job (domain reference §2)."""
    if is_forbidden(actor, matrix):
        return Decision.deny(Reason.DENY_FORBIDDEN_ACTOR)
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


def holder_visibility(now: datetime, *, representative: bool) -> DocumentVisibility:
    """The holder sees every live document except those hidden pending an announcement until
    their reveal time (AC-11); representatives also miss a minor's confidential care (AC-12)."""
    return DocumentVisibility(
        statuses=_LIVE, hide_invisible_patient_at=now, hide_invisible_representatives=representative
    )


def professional_visibility(actor: Actor, matrix: Matrix, facts: RecordFacts) -> DocumentVisibility:
    """Matrix types (AC-5); masked documents only to their author or the author's structure
    (AC-6), every document counting as masked when the holder masked everything."""
    structures = (actor.structure_id,) if actor.structure_id else ()
    return DocumentVisibility(
        statuses=_LIVE,
        type_codes=matrix.readable_types(actor),
        masked="authors",
        masked_authors=(actor.id,),
        masked_structures=structures,
        mask_everything=facts.mask_all,
    )


def medecin_traitant_visibility() -> DocumentVisibility:
    """AC-7: the registered GP reads every document, masked ones included."""
    return DocumentVisibility(statuses=_LIVE)


def _read_decision(
    actor: Actor,
    purpose: PurposeOfUse,
    facts: RecordFacts,
    matrix: Matrix,
    now: datetime,
    *,
    has_justification: bool,
) -> Decision:
    if actor.id == facts.medecin_traitant:
        # AC-7 with AC-6: the registered GP reads every document, masked ones included, in
        # every mode (designating the GP authorises them: docs/decisions/0009).
        return Decision(
            True, Reason.ALLOW_MEDECIN_TRAITANT, visibility=medecin_traitant_visibility()
        )
    if purpose is PurposeOfUse.NORMAL:
        if facts.consented:
            reason = Reason.ALLOW_CONSENT
        elif facts.care_team and facts.initial_consent:
            reason = Reason.ALLOW_CARE_TEAM
        else:
            return Decision.deny(Reason.DENY_NO_CONSENT)
        return Decision(True, reason, visibility=professional_visibility(actor, matrix, facts))
    if purpose is PurposeOfUse.EMERGENCY:
        # AC-8: only if the holder did not oppose; a justification opens a time-boxed window.
        if facts.oppose_bris_de_glace:
            return Decision.deny(Reason.DENY_OPPOSED_EMERGENCY)
        window_open = facts.emergency_until is not None and facts.emergency_until > now
        if not window_open and not has_justification:
            return Decision.deny(Reason.DENY_JUSTIFICATION_REQUIRED)
        return Decision(
            True,
            Reason.ALLOW_BRIS_DE_GLACE,
            open_emergency=not window_open,
            visibility=professional_visibility(actor, matrix, facts),
        )
    # AC-9: regulation centre, without consent, unless separately opposed.
    if actor.profession not in matrix.regulation_professions:
        return Decision.deny(Reason.DENY_NOT_REGULATOR)
    if facts.oppose_centre_15:
        return Decision.deny(Reason.DENY_OPPOSED_CENTRE_15)
    return Decision(
        True, Reason.ALLOW_CENTRE_15, visibility=professional_visibility(actor, matrix, facts)
    )


_SYSTEM_ONLY = frozenset({Action.DESTROY_KEYS, Action.DECLARE_DEATH, Action.PURGE_RECORD})
# Actions that name a professional whom a block must protect the holder from (AC-3): nobody
# lets a blocked professional back in through a consent, the care team or the GP designation
# (the holder unblocks first).
_NAMES_SUBJECT = frozenset({Action.DECLARE_CONSENT, Action.DECLARE_CARE_TEAM, Action.DESIGNATE_GP})
_DESK_ACTIONS = frozenset({Action.ISSUE_ACTIVATION, Action.START_RECOVERY, Action.REOPEN_RECORD})


def decide(
    actor: Actor,
    action: Action,
    purpose: PurposeOfUse,
    facts: RecordFacts,
    matrix: Matrix,
    now: datetime,
    *,
    has_justification: bool = False,
) -> Decision:
    """Decide one action on one existing record. The order is fixed (docs/access-rules.md,
    "Order of the rules"): no reopening over a pending deletion request, whoever asks; system
    jobs; actions for system jobs only; forbidden actors (AC-16) and blocked actors (AC-3)
    before any allow, whatever the action and mode; a blocked professional named by the
    action; then the holder's and representatives' rights, the desk's actions, and the
    professionals' rules."""
    if action is Action.REOPEN_RECORD and facts.deletion_requested:
        # Only the holder withdraws their own deletion request; nobody reopens over it, not
        # even an operator's command (a system job), which would cancel it silently.
        return Decision.deny(Reason.DENY_DELETION_PENDING)
    if actor.kind is ActorKind.SYSTEM:
        return Decision(True, Reason.ALLOW_SYSTEM, visibility=DocumentVisibility())
    if action in _SYSTEM_ONLY:
        return Decision.deny(Reason.DENY_ACTOR_KIND)
    if is_forbidden(actor, matrix):  # AC-16
        return Decision.deny(Reason.DENY_FORBIDDEN_ACTOR)
    if facts.blocked and actor.kind in (ActorKind.PROFESSIONAL, ActorKind.DESK_AGENT):
        # AC-3: a blocked professional is refused everything, in every mode, through every
        # door: reading, deposits, consents, letters, recoveries, reopening.
        return Decision.deny(Reason.DENY_BLOCKED)
    if action in _NAMES_SUBJECT and facts.subject_blocked:
        return Decision.deny(Reason.DENY_SUBJECT_BLOCKED)

    if _is_holder(actor, facts) or _is_representative(actor, facts):
        return _holder_decision(actor, action, facts, now)

    if action in _DESK_ACTIONS:
        return _desk_decision(actor, action, facts)

    if actor.kind is not ActorKind.PROFESSIONAL:
        return Decision.deny(
            Reason.DENY_NOT_HOLDER
            if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
            else Reason.DENY_ACTOR_KIND
        )
    return _professional_decision(
        actor, action, purpose, facts, matrix, now, has_justification=has_justification
    )


def _holder_decision(actor: Actor, action: Action, facts: RecordFacts, now: datetime) -> Decision:
    representative = actor.kind is ActorKind.REPRESENTATIVE
    reason = Reason.ALLOW_REPRESENTATIVE if representative else Reason.ALLOW_HOLDER
    if action is Action.OPEN_RECORD:
        return Decision.deny(Reason.DENY_RECORD_EXISTS)
    if action in (Action.ISSUE_ACTIVATION, Action.START_RECOVERY):
        return Decision.deny(Reason.DENY_ACTOR_KIND)  # started at a desk, never by oneself
    if action in (Action.READ_DOCUMENTS, Action.UPDATE_DOCUMENT, Action.READ_HISTORY):
        # For the history, the visibility says which document ids the traces may show.
        return Decision(
            True, reason, visibility=holder_visibility(now, representative=representative)
        )
    return Decision(True, reason)


def _desk_decision(actor: Actor, action: Action, facts: RecordFacts) -> Decision:
    """A registration desk (or a professional of a structure, who may open records) prints the
    first activation letter of an account never activated, starts the recovery of an activated
    one (the code goes to the holder, never to the desk), for an active record (domain
    reference §2), and reopens a closed record at the holder's request, as it would open one."""
    if actor.kind not in (ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL):
        return Decision.deny(Reason.DENY_ACTOR_KIND)
    if not actor.structure_id:
        return Decision.deny(Reason.DENY_NO_STRUCTURE)
    if action is not Action.REOPEN_RECORD and facts.status is not RecordStatus.ACTIVE:
        return Decision.deny(Reason.DENY_RECORD_CLOSED)
    if action is Action.ISSUE_ACTIVATION and facts.account_activated:
        return Decision.deny(Reason.DENY_ACCOUNT_ACTIVE)
    if action is Action.START_RECOVERY and not facts.account_activated:
        return Decision.deny(Reason.DENY_ACCOUNT_NOT_ACTIVE)
    return Decision(True, Reason.ALLOW_OPEN)


def _professional_decision(
    actor: Actor,
    action: Action,
    purpose: PurposeOfUse,
    facts: RecordFacts,
    matrix: Matrix,
    now: datetime,
    *,
    has_justification: bool,
) -> Decision:
    # AC-1: nothing on a closed record (AC-3, the block, was decided before any allow).
    if facts.status is not RecordStatus.ACTIVE:
        return Decision.deny(Reason.DENY_RECORD_CLOSED)
    if action is Action.DEPOSIT_DOCUMENT:
        # AC-10: a professional taking part in care deposits without read authorisation.
        if not actor.structure_id:
            return Decision.deny(Reason.DENY_NO_STRUCTURE)
        return Decision(True, Reason.ALLOW_CARE_DEPOSIT)
    if action is Action.UPDATE_DOCUMENT:
        # AC-13/14: the author or the author's structure; checked per document by may_modify.
        return Decision(True, Reason.ALLOW_AUTHOR, visibility=authored_visibility(actor))
    if action is Action.DECLARE_CONSENT:
        # AC-4: the professional records the consent the patient gave them.
        return Decision(True, Reason.ALLOW_CONSENT_DECLARATION)
    if action is Action.DECLARE_CARE_TEAM:
        # L1111-17 II: a professional who may read the record, in normal mode, may add a
        # colleague to the care team; an emergency or regulation reader may not (the window
        # would otherwise become lasting access).
        if purpose is not PurposeOfUse.NORMAL:
            return Decision.deny(Reason.DENY_NORMAL_MODE_ONLY)
        read = _read_decision(actor, purpose, facts, matrix, now, has_justification=False)
        return Decision(read.allowed, read.reason)
    if action is Action.READ_HISTORY:
        # AC-17: the GP reads every trace; another professional the traces of their own actions.
        if actor.id == facts.medecin_traitant:
            return Decision(True, Reason.ALLOW_MEDECIN_TRAITANT)
        return Decision(True, Reason.ALLOW_OWN_TRACES, own_traces_only=True)
    if action in (Action.READ_DOCUMENTS, Action.READ_RECORD):
        return _read_decision(
            actor, purpose, facts, matrix, now, has_justification=has_justification
        )
    return Decision.deny(Reason.DENY_ACTOR_KIND)


def authored_visibility(actor: Actor) -> DocumentVisibility:
    """The documents a professional may modify: those they or their structure authored."""
    return DocumentVisibility(
        statuses=_LIVE,
        authors=(actor.id,),
        author_structures=(actor.structure_id,) if actor.structure_id else (),
    )


def may_modify(
    actor: Actor, author_id: str, author_structure: str | None, author_kind: str
) -> Decision:
    """AC-13/14: only the author, or the author's structure, replaces, archives or deletes; the
    holder and representatives manage the documents the patient deposited."""
    if actor.kind is ActorKind.SYSTEM:
        return Decision(True, Reason.ALLOW_SYSTEM)
    if actor.kind is ActorKind.PROFESSIONAL and (
        actor.id == author_id
        or (actor.structure_id is not None and actor.structure_id == author_structure)
    ):
        return Decision(True, Reason.ALLOW_AUTHOR)
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE) and author_kind == "patient":
        return Decision(True, Reason.ALLOW_HOLDER)
    return Decision.deny(Reason.DENY_NOT_AUTHOR)
