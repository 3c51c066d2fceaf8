"""The gate's kernel: one per request, bound to an authenticated grant.

Every action runs through :meth:`Kernel.act`: gather the facts in one query, check what the grant
allows (scopes, patient binding), ask the pure policy, run the action's work with the policy's
answer in the same transaction, and write the audit event when the work ends, in that transaction.
A refusal is audited in its own transaction after the request's transaction was rolled back; so is
a "not found" about a known patient (an attempt). No action module writes audit by hand: they
describe their event on the :class:`Op` they are given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import Connection

from dmp.access import audit, emergency, notices
from dmp.access.audit import RequestContext
from dmp.access.policy import Action, Decision, Reason, RecordFacts, decide
from dmp.domain.codes import AuditAction, Outcome, PurposeOfUse, RecordStatus
from dmp.domain.ins import Ins, PatientKey, PatientRef, parse_ins
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import Conflict, DmpError, Forbidden, InvalidInput, NotFound
from dmp.identity.actor import ActorKind
from dmp.identity.scopes import Need, scope_allows
from dmp.identity.tokens import Grant
from dmp.records import apps, audit_log, database, patients, stats
from dmp.records.group_commit import GroupCommit, Work
from dmp.records.types import AuthorizedPatient, RecordRow

if TYPE_CHECKING:
    from dmp.access.deps import GateDeps
    from dmp.config import Settings

MAX_PAGE = 100
# Beyond any record's size, and far inside every engine's integers (a 2^63 offset overflowed).
MAX_OFFSET = 1_000_000_000


def check_window(limit: int, offset: int) -> None:
    """A page of results: 1 to MAX_PAGE items from an offset within MAX_OFFSET."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"page size must be between 1 and {MAX_PAGE}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")


def check_aware(*moments: datetime | None) -> None:
    """Times given to the gate must carry a time zone (a naive one is ambiguous) and stay
    inside the calendar once in UTC (year 1 at +14:00 and 9999 at -14:00 do not)."""
    for m in moments:
        if m is None:
            continue
        if m.tzinfo is None:
            raise InvalidInput("times must carry a time zone")
        try:
            m.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(
                f"{m.isoformat()} falls outside the calendar once in UTC (years 1 to 9999)"
            ) from None


_MESSAGES: dict[Reason, str] = {
    Reason.DENY_UNKNOWN_PATIENT: "no record was found for this patient",
    Reason.DENY_RECORD_EXISTS: "this patient already has a record",
    Reason.DENY_RECORD_CLOSED: "the record is closed",
    Reason.DENY_BLOCKED: "the patient has blocked this professional's access to the record",
    Reason.DENY_NO_CONSENT: "the patient's consent for this professional has not been declared",
    Reason.DENY_NOT_HOLDER: "no record was found for this patient",
    Reason.DENY_ACTOR_KIND: "this kind of actor may not perform this action",
    Reason.DENY_NO_STRUCTURE: "the actor must act on behalf of a structure",
    Reason.DENY_FORBIDDEN_ACTOR: "this actor may never access a shared medical record (L1111-18)",
    Reason.DENY_OPPOSED_EMERGENCY: "the patient opposed emergency access to the record",
    Reason.DENY_OPPOSED_CENTRE_15: "the patient opposed access by the regulation centre",
    Reason.DENY_JUSTIFICATION_REQUIRED: "emergency access needs a justification",
    Reason.DENY_NOT_REGULATOR: "regulation-centre access is for regulating physicians",
    Reason.DENY_NOT_AUTHOR: "only the document's author or the author's structure may do this",
    Reason.DENY_SCOPE: "the grant's scopes do not allow this action",
    Reason.DENY_OTHER_PATIENT: "this grant is bound to another patient",
    Reason.DENY_UNBOUND_EMERGENCY: "an emergency grant must name the one patient it is for",
    Reason.DENY_APP_WITHDRAWN: "the holder withdrew this app's authorization",
    Reason.DENY_NORMAL_MODE_ONLY: "the care team is declared in normal mode only",
    Reason.DENY_SUBJECT_BLOCKED: (
        "the holder has blocked this professional: the holder unblocks them first"
    ),
    Reason.DENY_ACCOUNT_ACTIVE: (
        "the holder's online account is activated: start a recovery (the code goes to the "
        "holder), no letter is printed"
    ),
    Reason.DENY_ACCOUNT_NOT_ACTIVE: (
        "the holder's online account was never activated: print the activation letter"
    ),
    Reason.DENY_DELETION_PENDING: (
        "the holder asked for this record's deletion: only the holder (or a legal "
        "representative) can withdraw that request, and the record is not reopened over it"
    ),
}

# What each action needs from a scoped grant (SMART v2), whichever API it came through.
PATIENT_CREATE = Need("Patient", "c")
PATIENT_READ = Need("Patient", "r")
PATIENT_SEARCH = Need("Patient", "s")
PATIENT_UPDATE = Need("Patient", "u")
DOCUMENT_CREATE = Need("DocumentReference", "c")
DOCUMENT_READ = Need("DocumentReference", "r")
DOCUMENT_SEARCH = Need("DocumentReference", "s")
DOCUMENT_UPDATE = Need("DocumentReference", "u")
DOCUMENT_DELETE = Need("DocumentReference", "d")
CONTENT_READ = Need("Binary", "r")
LIST_SEARCH = Need("List", "s")
CONSENT_CREATE = Need("Consent", "c")
CONSENT_SEARCH = Need("Consent", "s")
CONSENT_UPDATE = Need("Consent", "u")
HISTORY_SEARCH = Need("AuditEvent", "s")

_READS = frozenset({Action.READ_RECORD, Action.READ_DOCUMENTS, Action.READ_HISTORY})


class _Refusal(Exception):
    """Raised inside a unit of work; audited after the rollback, then turned into ``error``."""

    def __init__(
        self,
        error: DmpError,
        action: AuditAction,
        reason: str,
        patient_id: str | None,
        target: str | None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.action = action
        self.reason = reason
        self.patient_id = patient_id
        self.target = target


@dataclass
class _Event:
    action: AuditAction
    target: str | None
    targets: tuple[str, ...] = ()


@dataclass
class Op:
    """One authorised action in progress: its transaction, the patient it may touch, the
    policy's decision, and the audit events written when it ends (same transaction)."""

    conn: Connection
    scope: AuthorizedPatient
    decision: Decision
    record: RecordRow
    facts: RecordFacts
    ins: tuple[str, str]
    main: _Event
    before: list[_Event] = field(default_factory=list)
    each: list[_Event] | None = None
    accessed_before: bool = False  # this professional read the record before (facts query)
    # At night: whether the holder was told of a night access by this professional within the
    # night watch's window (facts query); None: not asked (by day, or not a normal read).
    night_told: bool | None = None
    # A read whose writes wait for its group (SQLite, see Kernel.act): they are kept here.
    deferred: list[Work] | None = None

    @property
    def visibility(self) -> DocumentVisibility:
        assert self.decision.visibility is not None, "this action has no row filter"
        return self.decision.visibility

    def audit_target(self, target: str | None) -> None:
        """The main event names this target (a document, a professional...)."""
        self.main.target = target

    def audit_targets(self, ids: tuple[str, ...]) -> None:
        """The main event lists these ids (the documents a search returned)."""
        self.main.targets = ids

    def audit_each(self, events: list[tuple[AuditAction, str | None]]) -> None:
        """One event per item instead of the main one (a batch of deposits)."""
        self.each = [_Event(a, t) for a, t in events]

    def audit_first(self, action: AuditAction, target: str | None) -> None:
        """An event written before the action's own (the emergency window it opened)."""
        self.before.append(_Event(action, target))

    def events(self) -> list[_Event]:
        return [*self.before, *(self.each if self.each is not None else [self.main])]

    def write(self, work: Work) -> None:
        """Write beside the action, before its audit event: now, in the action's transaction;
        for a read whose event a group commits (SQLite), in that group's transaction, which
        runs it again alone if another read's work failed the group."""
        if self.deferred is None:
            work(self.conn)
        else:
            self.deferred.append(work)


@dataclass
class OpeningOp:
    """The opening of a record, in progress: the action names the new patient and the policy's
    reason once the record exists; the kernel writes the event in the same transaction."""

    conn: Connection
    patient_id: str | None = None
    reason: Reason | None = None

    def opened(self, patient_id: str, departement: str, reason: Reason) -> AuthorizedPatient:
        """The record now exists: the event names it, and the opening may write beside it."""
        self.patient_id, self.reason = patient_id, reason
        return AuthorizedPatient(patient_id, departement)


@dataclass
class SystemOp:
    """A system job's unit of work: its connection, and what its audit event will name."""

    conn: Connection
    target: str | None


class Kernel:
    """The per-request gate, bound to one grant. Action modules add the actions."""

    def __init__(self, runtime: GateDeps, grant: Grant, ctx: RequestContext) -> None:
        self._rt = runtime
        self.grant = grant
        self.actor = grant.actor
        self.purpose = grant.purpose
        self._ctx = ctx
        self._justification = (grant.justification or "").strip()[:1000] or None
        self._tally = stats.Tally()

    def now(self) -> datetime:
        """The gate's clock (adapters date what they write with it)."""
        return self._rt.clock.now()

    @property
    def settings(self) -> Settings:
        """The service's settings (the alert hours, the limits the gate applies)."""
        return self._rt.settings

    def readable_types(self) -> frozenset[str] | None:
        """The document types this actor's profession may read (the habilitation matrix;
        None: every type), so that a page can say why a list is short."""
        return self._rt.matrix.readable_types(self.actor)

    @property
    def accepts_test_ins(self) -> bool:
        """Whether INS under the test and demonstration OIDs are accepted (test mode), so that
        adapters parse patient references as the gate will."""
        return self._rt.settings.test_mode

    # -- the kernel -----------------------------------------------------------------------

    @contextlib.contextmanager
    def act(
        self,
        ref: PatientRef,
        action: Action,
        audit_action: AuditAction,
        *,
        need: Need,
        target: str | None = None,
        subject: str | None = None,
    ) -> Iterator[Op]:
        """Facts, grant, policy, the work (the ``with`` body), then the audit event.
        ``subject``: the professional the action names (a consent, the care team, the GP),
        whose block the policy checks.

        On SQLite (group commit on), a read decides and reads in a snapshot, which takes no
        write lock, and its audit event (with what it writes beside it, through ``op.write``)
        is committed by the process's group writer with other reads' before the action
        returns; a read that opens an emergency window writes as a change does."""
        read = action in _READS
        if read and (group := database.group_writer(self._rt.engine)) is not None:
            grouped = yield from self._act_grouped(
                group, ref, action, audit_action, need, target, subject
            )
            if grouped:
                return
        with self._unit() as conn:
            standing, facts = self._load_facts(
                conn, ref, audit_action, target, need, subject, read=read
            )
            head = standing.chain_head
            if not read:
                # A change holds the patient's audit chain from its start: changes to one
                # record queue there, before any other row lock, so they cannot deadlock.
                head = audit_log.lock_head(conn, standing.patient_id)
                if head != standing.chain_head:
                    # Every change moves the head: the record changed between the facts and
                    # the lock, so the change reads them again under the lock (a concurrent
                    # activation or closure would otherwise act on stale facts).
                    standing, facts = self._load_facts(
                        conn, ref, audit_action, target, need, subject, read=read
                    )
            decision = self._decide(action, facts)
            if decision.open_emergency and read:
                # The first emergency read opens a window: it takes the chain head's lock like
                # a change, and reads the facts again under it, so that simultaneous first
                # reads open one window and send one notice (the others find it open).
                head = audit_log.lock_head(conn, standing.patient_id)
                if head != standing.chain_head:
                    standing, facts = self._load_facts(
                        conn, ref, audit_action, target, need, subject, read=read
                    )
                    decision = self._decide(action, facts)
            if not decision.allowed:
                self._refuse(decision, audit_action, standing.patient_id, target, standing.record)
            op = _op(conn, standing, facts, decision, _Event(audit_action, target))
            scope = op.scope
            if decision.open_emergency:
                emergency.open_window(self._rt, self.actor, self._justification, op)
            with _attempt(audit_action, standing.patient_id, target):
                yield op
            # One statement appends the events and moves the chain head (see audit.write_events).
            self._write(conn, op.events(), scope.patient_id, decision.reason.value, head)

    def _act_grouped(
        self,
        group: GroupCommit,
        ref: PatientRef,
        action: Action,
        audit_action: AuditAction,
        need: Need,
        target: str | None,
        subject: str | None,
    ) -> Generator[Op, None, bool]:
        """A read in a snapshot, its event committed by ``group`` (see ``act``); False, having
        yielded nothing, for a read that opens an emergency window."""
        with self._unit(read=True) as conn:
            standing, facts = self._load_facts(
                conn, ref, audit_action, target, need, subject, read=True
            )
            decision = self._decide(action, facts)
            if decision.open_emergency:
                return False
            if not decision.allowed:
                self._refuse(decision, audit_action, standing.patient_id, target, standing.record)
            op = _op(conn, standing, facts, decision, _Event(audit_action, target))
            op.deferred = []
            with _attempt(audit_action, standing.patient_id, target):
                yield op
            # Taken now: the group may run the work twice, and must write the same counts.
            pending = self._tally.take()
        writes, events, head = op.deferred, op.events(), standing.chain_head
        patient_id, reason = standing.patient_id, decision.reason.value

        def work(conn: Connection) -> None:
            for write in writes:
                write(conn)
            self._write(conn, events, patient_id, reason, head, pending)

        group.run(work)
        return True

    @contextlib.contextmanager
    def act_opening(self, audit_action: AuditAction, *, need: Need) -> Iterator[OpeningOp]:
        """The one action with no record yet: the scope check, the work, then its event."""
        with self._unit() as conn:
            self._check_scope(need, audit_action, None)
            op = OpeningOp(conn)
            yield op
            assert op.patient_id is not None and op.reason is not None
            self._write(conn, [_Event(audit_action, None)], op.patient_id, op.reason.value)

    @contextlib.contextmanager
    def act_system(
        self, audit_action: AuditAction, target: str | None = None
    ) -> Iterator[SystemOp]:
        """A system job's work on the database and its audit event in one transaction: the
        event is written last (with ``op.target`` as the work left it), so the work and its
        trace commit or roll back together. Only a named system actor (``system:<job>``) acts
        here; work on a record goes through ``act`` like any other actor's."""
        if self.actor.kind is not ActorKind.SYSTEM:
            raise Forbidden("only a system job acts outside a record")
        with self._unit() as conn:
            op = SystemOp(conn, target)
            yield op
            self._write(conn, [_Event(audit_action, op.target)], None, Reason.ALLOW_SYSTEM.value)

    @contextlib.contextmanager
    def _unit(self, *, read: bool = False) -> Iterator[Connection]:
        """One transaction (``read``: a read-only snapshot): committed on success, rolled back
        on any error. Refusals are written after the rollback, in their own transaction;
        counters last, once, in a fixed order (``stats.Tally``)."""
        self._tally = stats.Tally()
        engine = self._rt.engine
        try:
            with database.snapshot(engine) if read else engine.begin() as conn:
                yield conn
                self._tally.flush(conn)
        except _Refusal as refusal:
            audit.write_denial(
                self._rt.engine,
                actor=self.actor,
                action=refusal.action,
                patient_id=refusal.patient_id,
                target=refusal.target,
                purpose=self.purpose,
                reason=refusal.reason,
                ctx=self._ctx,
                at=self._rt.clock.now(),
                key=self._rt.audit_key,
                client_id=self.grant.client_id,
            )
            raise refusal.error from None

    def _write(
        self,
        conn: Connection,
        events: list[_Event],
        patient_id: str | None,
        reason: str,
        head: tuple[int, str] | None = None,
        pending: list[dict[str, Any]] | None = None,
    ) -> None:
        audit.write_events(
            conn,
            [audit.EventSpec(e.action, e.target, e.targets) for e in events],
            actor=self.actor,
            patient_id=patient_id,
            purpose=self.purpose,
            outcome=Outcome.SUCCESS,
            reason=reason,
            ctx=self._ctx,
            at=self._rt.clock.now(),
            key=self._rt.audit_key,
            head=head,
            client_id=self.grant.client_id,
            # The action's statistics counts ride with its events (one statement on PostgreSQL).
            pending=self._tally.take() if pending is None else pending,
        )

    def _refuse(
        self,
        decision: Decision,
        action: AuditAction,
        patient_id: str | None,
        target: str | None = None,
        record: RecordRow | None = None,
        detail: str | None = None,
    ) -> NoReturn:
        message = _MESSAGES.get(decision.reason, "access refused")
        if detail:
            message = f"{message} ({detail})"
        error: DmpError
        if decision.reason in (Reason.DENY_UNKNOWN_PATIENT, Reason.DENY_NOT_HOLDER):
            error = NotFound(message, reason=decision.reason.value)
        elif decision.reason is Reason.DENY_RECORD_EXISTS:
            error = Conflict(message, reason=decision.reason.value)
        else:
            if decision.reason is Reason.DENY_RECORD_CLOSED and record and record.closed_at:
                message = f"{message} since {record.closed_at.date().isoformat()}"
            error = Forbidden(message, reason=decision.reason.value)
        raise _Refusal(error, action, decision.reason.value, patient_id, target)

    def _parse_ins(self, ins: Ins) -> Ins:
        return parse_ins(ins.value, ins.oid, test_mode=self._rt.settings.test_mode)

    def _check_grant(
        self,
        conn: Connection,
        need: Need,
        audit_action: AuditAction,
        standing: patients.Standing,
        target: str | None,
    ) -> None:
        """What the grant itself allows, before any rule: its SMART scopes, and the one patient
        an emergency grant is bound to. Enforced here, so every API and page obeys it."""
        g = self.grant
        refusal: Reason | None = None
        if g.scopes is not None and not scope_allows(g.scopes, str(need)):
            refusal = Reason.DENY_SCOPE
        elif g.patient is not None and (g.patient.oid, g.patient.value) != (
            standing.ins_oid,
            standing.ins_value,
        ):
            refusal = Reason.DENY_OTHER_PATIENT
        elif (
            g.purpose is PurposeOfUse.EMERGENCY
            and g.patient is None
            and self.actor.kind is ActorKind.PROFESSIONAL
        ):
            refusal = Reason.DENY_UNBOUND_EMERGENCY
        elif g.authorization is not None and not _app_allowed(conn, g.authorization, standing):
            refusal = Reason.DENY_APP_WITHDRAWN
        if refusal is not None:
            detail = f"needs {need}" if refusal is Reason.DENY_SCOPE else None
            self._refuse(
                Decision.deny(refusal), audit_action, standing.patient_id, target, detail=detail
            )

    def _check_scope(self, need: Need, audit_action: AuditAction, patient_id: str | None) -> None:
        """The scope check alone, for the one action without a record yet (opening)."""
        if self.grant.scopes is not None and not scope_allows(self.grant.scopes, str(need)):
            self._refuse(
                Decision.deny(Reason.DENY_SCOPE), audit_action, patient_id, detail=f"needs {need}"
            )

    def _load_facts(
        self,
        conn: Connection,
        ref: PatientRef,
        audit_action: AuditAction,
        target: str | None,
        need: Need,
        subject: str | None = None,
        *,
        read: bool = False,
    ) -> tuple[patients.Standing, RecordFacts]:
        """The record and this actor's standing in it, as the policy's facts (one query, two for
        a representative or an action naming a professional). An unknown patient is refused
        here. Professionals and desk agents may be blocked (AC-3)."""
        ps = (
            self.actor.id
            if self.actor.kind in (ActorKind.PROFESSIONAL, ActorKind.DESK_AGENT)
            else None
        )
        # At night a professional's normal read asks, with the facts, whether the holder was
        # already told of a night access by them (notices.on_professional_read).
        since = (
            notices.night_watch_since(self.settings, self.purpose, self.now())
            if read and self.actor.kind is ActorKind.PROFESSIONAL
            else None
        )
        if isinstance(ref, PatientKey):
            standing = patients.load_standing(conn, ref.id, ps, since)
        else:
            standing = self._standing_by_ins(conn, self._parse_ins(ref), ps, since)
        if standing is None:
            self._refuse(Decision.deny(Reason.DENY_UNKNOWN_PATIENT), audit_action, None, target)
        self._check_grant(conn, need, audit_action, standing, target)
        record, permission = standing.record, standing.permission
        reps = (
            patients.representative_ids(conn, standing.patient_id)
            if self.actor.kind is ActorKind.REPRESENTATIVE
            else frozenset()
        )
        facts = RecordFacts(
            status=RecordStatus(record.status),
            closed_at=record.closed_at,
            holder_ins=(standing.ins_oid, standing.ins_value),
            consented=permission is not None and permission.consented_at is not None,
            blocked=permission is not None and permission.blocked_at is not None,
            care_team=standing.care_team_declared,
            initial_consent=record.initial_consent_at is not None,
            medecin_traitant=record.medecin_traitant,
            oppose_bris_de_glace=record.oppose_bris_de_glace,
            oppose_centre_15=record.oppose_centre_15,
            mask_all=record.mask_all,
            emergency_until=standing.emergency_until,
            representative_ids=reps,
            account_activated=record.activated_at is not None,
            deletion_requested=record.deletion_requested_at is not None,
            subject_blocked=subject is not None
            and patients.is_blocked(
                conn, AuthorizedPatient(standing.patient_id, standing.departement), subject
            ),
        )
        return standing, facts

    def _standing_by_ins(
        self, conn: Connection, ins: Ins, ps: str | None, since: datetime | None
    ) -> patients.Standing | None:
        """The standing of the record an INS names. The facts are read by patient key (every
        statement filters on it); the key comes from the process's index when it knows it,
        checked against the INS the facts return, else from one lookup."""
        wanted = (ins.oid, ins.value)
        index = self._rt.patient_index
        known = index.get(wanted)
        if known is not None:
            standing = patients.load_standing(conn, known, ps, since)
            if standing is not None and (standing.ins_oid, standing.ins_value) == wanted:
                return standing
            index.forget(wanted)  # the INS changed, or the record is gone: look it up again
        found = patients.find_patient_id(conn, ins.oid, ins.value)
        if found is None:
            return None
        standing = patients.load_standing(conn, found, ps, since)
        if standing is not None:
            index.put(wanted, found)
        return standing

    def _decide(self, action: Action, facts: RecordFacts) -> Decision:
        return decide(
            self.actor,
            action,
            self.purpose,
            facts,
            self._rt.matrix,
            self._rt.clock.now(),
            has_justification=self._justification is not None,
        )

    def _count_access(self, scope: AuthorizedPatient) -> None:
        """Adoption statistics: professional consultations per access mode."""
        if self.actor.kind is ActorKind.PROFESSIONAL:
            self._tally.documents_accessed(
                scope.patient_id, scope.departement, self._rt.clock.now(), self.purpose.value
            )


@contextlib.contextmanager
def _attempt(action: AuditAction, patient_id: str, target: str | None) -> Iterator[None]:
    """The action's work: a NotFound in it (missing or hidden: the same answer) is an attempt,
    audited as a refusal after the rollback."""
    try:
        yield
    except NotFound as missing:
        raise _Refusal(missing, action, Reason.DENY_NOT_FOUND.value, patient_id, target) from None


def _op(
    conn: Connection,
    standing: patients.Standing,
    facts: RecordFacts,
    decision: Decision,
    main: _Event,
) -> Op:
    return Op(
        conn,
        AuthorizedPatient(standing.patient_id, standing.departement),
        decision,
        standing.record,
        facts,
        (standing.ins_oid, standing.ins_value),
        main,
        accessed_before=standing.accessed_before,
        night_told=standing.night_told,
    )


def _app_allowed(conn: Connection, authorization: str, standing: patients.Standing) -> bool:
    """An app's grant holds while the holder's authorization does (withdrawn on the portal, or
    ended by a replayed token): read at every action, in its transaction, so a withdrawal stops
    the next request, not the token's expiry."""
    patient_id, _, authorization_id = authorization.partition("/")
    if patient_id != standing.patient_id:
        return False
    found = apps.get_authorization(conn, patient_id, authorization_id)
    return found is not None and found.revoked_at is None
