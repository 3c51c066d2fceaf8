"""THE gate: :class:`RecordAccess`, one per request, bound to an actor and a purpose of use.

Every method runs the same steps in one unit of work: gather the facts in one query, ask the pure
policy, run the query with the policy's row filter applied before paging and counting, write the
audit event in the same transaction, and return plain views. A refusal is audited in its own
transaction after the request's own transaction was rolled back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.access import audit
from dmp.access.audit import RequestContext
from dmp.access.policy import (
    Action,
    Decision,
    Reason,
    RecordFacts,
    decide,
    decide_open,
    may_modify,
)
from dmp.access.views import (
    Demographics,
    DocumentChange,
    DocumentView,
    ListView,
    NewDocument,
    NewList,
    Page,
    RecordView,
    TraceView,
)
from dmp.crypto import envelope
from dmp.domain import cda
from dmp.domain.codes import (
    SEXES,
    TYPE_TO_CLASS,
    AuditAction,
    AvailabilityStatus,
    Confidentiality,
    CreationChannel,
    Outcome,
    PurposeOfUse,
    RecordStatus,
)
from dmp.domain.geo import departement_of_commune
from dmp.domain.ins import Ins, PatientKey, PatientRef, parse_ins
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import (
    Conflict,
    DmpError,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    InvalidItem,
    NotFound,
    PreconditionFailed,
)
from dmp.identity.actor import ActorKind
from dmp.identity.scopes import Need, scope_allows
from dmp.identity.tokens import Grant
from dmp.records import audit_log, directory, documents, keys, patients, stats
from dmp.records.types import (
    AuditRow,
    AuthorizedPatient,
    DocumentCriteria,
    DocumentRow,
    RecordRow,
)

if TYPE_CHECKING:
    from dmp.access.runtime import Runtime

MAX_PAGE = 100
MAX_CONTENT_BYTES = 20 * 1024 * 1024
# AC-11: an INVISIBLE_PATIENT document becomes visible by itself after one month.
INVISIBLE_PATIENT_DELAY = timedelta(days=30)
INVISIBLE_PATIENT_NOTICE = timedelta(days=14)
_LIVE = ("current", "superseded", "archived")
_READS = frozenset({Action.READ_RECORD, Action.READ_DOCUMENTS, Action.READ_HISTORY})

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
    Reason.DENY_NORMAL_MODE_ONLY: "the care team is declared in normal mode only",
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


class _Refusal(Exception):
    """Raised inside a unit of work; audited after the rollback, then turned into ``error``."""

    def __init__(
        self,
        error: DmpError,
        action: AuditAction,
        reason: Reason,
        patient_id: str | None,
        target: str | None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.action = action
        self.reason = reason
        self.patient_id = patient_id
        self.target = target


class RecordAccess:
    """Per-request access to records, bound to one authenticated actor and purpose of use."""

    def __init__(self, runtime: Runtime, grant: Grant, ctx: RequestContext) -> None:
        self._rt = runtime
        self.grant = grant
        self.actor = grant.actor
        self.purpose = grant.purpose
        self._ctx = ctx
        self._justification = (grant.justification or "").strip()[:1000] or None
        self._tally = stats.Tally()

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _unit(self) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on any error. Refusals are
        written after the rollback, in their own transaction."""
        self._tally = stats.Tally()
        try:
            with self._rt.engine.begin() as conn:
                yield conn
                # Counters last, once, in a fixed order (see stats.Tally).
                self._tally.flush(conn)
        except _Refusal as refusal:
            audit.write_denial(
                self._rt.engine,
                actor=self.actor,
                action=refusal.action,
                patient_id=refusal.patient_id,
                target=refusal.target,
                purpose=self.purpose,
                reason=refusal.reason.value,
                ctx=self._ctx,
                at=self._rt.clock.now(),
                key=self._rt.audit_key,
            )
            raise refusal.error from None

    def _audit(
        self,
        conn: Connection,
        action: AuditAction,
        patient_id: str | None,
        target: str | None,
        reason: Reason,
        targets: tuple[str, ...] = (),
    ) -> None:
        audit.write(
            conn,
            actor=self.actor,
            action=action,
            patient_id=patient_id,
            target=target,
            targets=targets,
            purpose=self.purpose,
            outcome=Outcome.SUCCESS,
            reason=reason.value,
            ctx=self._ctx,
            at=self._rt.clock.now(),
            key=self._rt.audit_key,
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
        raise _Refusal(error, action, decision.reason, patient_id, target)

    def _parse_ins(self, ins: Ins) -> Ins:
        return parse_ins(ins.value, ins.oid, test_mode=self._rt.settings.test_mode)

    def _standing(
        self, conn: Connection, ref: PatientRef, ps: str | None
    ) -> patients.Standing | None:
        if isinstance(ref, PatientKey):
            return patients.load_standing(conn, None, ref.id, ps)
        ins = self._parse_ins(ref)
        return patients.load_standing(conn, (ins.oid, ins.value), None, ps)

    def _check_grant(
        self, need: Need, audit_action: AuditAction, standing: patients.Standing, target: str | None
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
            g.purpose is PurposeOfUse.BRIS_DE_GLACE
            and g.patient is None
            and self.actor.kind is ActorKind.PROFESSIONAL
        ):
            refusal = Reason.DENY_UNBOUND_EMERGENCY
        if refusal is not None:
            detail = f"needs {need}" if refusal is Reason.DENY_SCOPE else None
            self._refuse(
                Decision.deny(refusal), audit_action, standing.patient_id, target, detail=detail
            )

    def _load_facts(
        self,
        conn: Connection,
        ins: PatientRef,
        audit_action: AuditAction,
        target: str | None,
        need: Need,
    ) -> tuple[patients.Standing, RecordFacts]:
        """The record and this actor's standing in it, as the policy's facts (one query, two for
        a representative). An unknown patient is refused here."""
        professional = self.actor.kind is ActorKind.PROFESSIONAL
        standing = self._standing(conn, ins, self.actor.id if professional else None)
        if standing is None:
            self._refuse(Decision.deny(Reason.DENY_UNKNOWN_PATIENT), audit_action, None, target)
        self._check_grant(need, audit_action, standing, target)
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
        )
        return standing, facts

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

    def _grant(
        self,
        conn: Connection,
        standing: patients.Standing,
        facts: RecordFacts,
        action: Action,
        audit_action: AuditAction,
        target: str | None,
    ) -> tuple[AuthorizedPatient, Decision]:
        """Ask the policy; refuse (audited) or return the scope it allows."""
        decision = self._decide(action, facts)
        if not decision.allowed:
            self._refuse(decision, audit_action, standing.patient_id, target, standing.record)
        scope = AuthorizedPatient(standing.patient_id, standing.departement)
        if action not in _READS:
            # A change holds the patient's audit chain from its start: changes to one record
            # queue there, before any other row lock, so they cannot deadlock on each other.
            audit_log.lock_chain(conn, standing.patient_id)
        if decision.open_emergency:
            self._open_emergency(conn, scope, standing.record)
        return scope, decision

    def _authorize(
        self,
        conn: Connection,
        ins: PatientRef,
        action: Action,
        audit_action: AuditAction,
        target: str | None = None,
        *,
        need: Need,
    ) -> tuple[AuthorizedPatient, RecordRow, Decision]:
        standing, facts = self._load_facts(conn, ins, audit_action, target, need)
        scope, decision = self._grant(conn, standing, facts, action, audit_action, target)
        return scope, standing.record, decision

    def _open_emergency(
        self, conn: Connection, scope: AuthorizedPatient, record: RecordRow
    ) -> None:
        """AC-8: open a time-boxed emergency window with its (encrypted) justification, and queue
        the a-posteriori notices to the holder and the GP in the same transaction."""
        assert self._justification is not None
        now = self._rt.clock.now()
        until = now + timedelta(days=self._rt.settings.emergency_access_days)
        key_id, data_key = self._data_key(conn, scope, create=True)
        sealed = envelope.seal(
            data_key, self._justification.encode(), b"dmp-emergency:" + scope.patient_id.encode()
        )
        patients.open_emergency(
            conn,
            scope,
            self.actor.id,
            at=now,
            until=until,
            key_id=key_id,
            justification_sealed=sealed,
        )
        notices = [{"kind": "emergency_access", "recipient_kind": "patient", "recipient_id": None}]
        if record.medecin_traitant:
            notices.append(
                {
                    "kind": "emergency_access",
                    "recipient_kind": "medecin_traitant",
                    "recipient_id": record.medecin_traitant,
                }
            )
        patients.notify(
            conn,
            scope,
            [{**n, "subject_id": self.actor.id, "created_at": now, "due_at": now} for n in notices],
        )
        self._audit(
            conn,
            AuditAction.EMERGENCY_OPEN,
            scope.patient_id,
            self.actor.id,
            Reason.ALLOW_BRIS_DE_GLACE,
        )

    # -- records --------------------------------------------------------------------------

    def open_record(
        self,
        ins: Ins,
        demographics: Demographics,
        *,
        channel: CreationChannel,
        patient_consent: bool,
    ) -> RecordView:
        """Open a record. The patient must have been informed and have agreed (L1111-14)."""
        if not patient_consent:
            raise InvalidInput("a record is opened only with the patient's consent; state it")
        ins = self._parse_ins(ins)
        demo = _validated_demographics(demographics)
        departement = departement_of_commune(demo.residence_commune)
        now = self._rt.clock.now()
        g = self.grant
        with self._unit() as conn:
            exists = patients.find_patient_id(conn, ins.oid, ins.value)
            if g.scopes is not None and not scope_allows(g.scopes, str(PATIENT_CREATE)):
                self._refuse(
                    Decision.deny(Reason.DENY_SCOPE),
                    AuditAction.RECORD_OPEN,
                    exists,
                    detail=f"needs {PATIENT_CREATE}",
                )
            decision = decide_open(
                self.actor,
                self._rt.matrix,
                record_exists=exists is not None,
                for_ins=(ins.oid, ins.value),
            )
            if not decision.allowed:
                self._refuse(decision, AuditAction.RECORD_OPEN, exists)
            patient_id = uuid.uuid4().hex
            try:
                patients.insert_patient_and_record(
                    conn,
                    {
                        "id": patient_id,
                        "ins_oid": ins.oid,
                        "ins_value": ins.value,
                        "birth_family_name": demo.birth_family_name,
                        "used_name": demo.used_name,
                        "given_names": demo.given_names,
                        "sex": demo.sex,
                        "birth_date": demo.birth_date,
                        "birth_place_code": demo.birth_place_code,
                        "residence_commune": demo.residence_commune,
                        "departement": departement,
                        "created_at": now,
                    },
                    {
                        "patient_id": patient_id,
                        "status": RecordStatus.ACTIVE.value,
                        "channel": channel.value,
                        "opened_at": now,
                        "opened_by_kind": self.actor.kind.value,
                        "opened_by": self.actor.id,
                        "opened_by_structure": self.actor.structure_id,
                        # The consent stated at opening is the explicit initial consent (AC-4).
                        "initial_consent_at": now,
                        "initial_consent_collected_by": self.actor.id,
                        "oppose_bris_de_glace": False,
                        "oppose_centre_15": False,
                        "mask_all": False,
                        "is_minor": False,
                    },
                )
            except IntegrityError:
                raise Conflict("this patient already has a record") from None
            self._count_opening(conn, departement, channel, now)
            self._audit(conn, AuditAction.RECORD_OPEN, patient_id, None, decision.reason)
            return _record_view(ins, demo, departement, patients.load_record(conn, patient_id))

    def read_record(self, ins: PatientRef) -> RecordView:
        """The record's status and the patient's demographics."""
        return self._read_record(ins, PATIENT_READ)

    def find_record(self, ins: PatientRef) -> RecordView | None:
        """A search by INS (FHIR ``Patient?identifier=``): the record, or None when there is
        none this actor may see."""
        try:
            return self._read_record(ins, PATIENT_SEARCH)
        except NotFound:
            return None

    def _read_record(self, ins: PatientRef, need: Need) -> RecordView:
        with self._unit() as conn:
            scope, record, decision = self._authorize(
                conn, ins, Action.READ_RECORD, AuditAction.RECORD_READ, need=need
            )
            self._audit(conn, AuditAction.RECORD_READ, scope.patient_id, None, decision.reason)
            return _stored_record_view(conn, scope, record)

    def close_record(self, ins: PatientRef, reason: str) -> None:
        reason = reason.strip()
        if not reason:
            raise InvalidInput("a closure reason is required")
        with self._unit() as conn:
            scope, record, decision = self._authorize(
                conn, ins, Action.CLOSE_RECORD, AuditAction.RECORD_CLOSE, need=PATIENT_UPDATE
            )
            if record.status == RecordStatus.CLOSED.value:
                raise Conflict("the record is already closed")
            patients.close_record(
                conn, scope, at=self._rt.clock.now(), reason=reason[:200], by=self.actor.id
            )
            stats.record_closed(conn, scope.departement)
            self._audit(conn, AuditAction.RECORD_CLOSE, scope.patient_id, None, decision.reason)

    def declare_consent(self, ins: PatientRef, id_nat_ps: str | None = None) -> None:
        """Record the patient's consent for a professional: the professional declares the consent
        the patient gave them, or the holder authorises a named professional."""
        if self.actor.kind is ActorKind.PROFESSIONAL:
            if id_nat_ps not in (None, self.actor.id):
                raise Forbidden("a professional declares the consent given to themselves only")
            id_nat_ps = self.actor.id
        elif not id_nat_ps:
            raise InvalidInput("name the professional (idNatPS) the consent is for")
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn,
                ins,
                Action.DECLARE_CONSENT,
                AuditAction.CONSENT_DECLARE,
                id_nat_ps,
                need=CONSENT_CREATE,
            )
            patients.declare_consent(
                conn, scope, id_nat_ps, at=self._rt.clock.now(), by=self.actor.id
            )
            self._audit(
                conn, AuditAction.CONSENT_DECLARE, scope.patient_id, id_nat_ps, decision.reason
            )

    # -- documents ------------------------------------------------------------------------

    def deposit_document(
        self, ins: PatientRef, meta: NewDocument, content: bytes, *, replaces: str | None = None
    ) -> DocumentView:
        """Store a new document (AC-10: deposit does not need read authorisation). With
        ``replaces``, the new document replaces that one (author only), which becomes
        superseded, in the same transaction (XDS RPLC / MHD relatesTo replaces)."""
        return self.deposit_batch(ins, [(meta, content, replaces)])[0]

    def deposit_batch(
        self,
        ins: PatientRef,
        items: list[tuple[NewDocument, bytes, str | None]],
        lists: list[NewList] | None = None,
    ) -> list[DocumentView]:
        """Store several documents, all or nothing (an MHD Provide Document Bundle)."""
        if not items:
            raise InvalidInput("nothing to deposit")
        hashes = []
        for n, (meta, content, _) in enumerate(items):
            sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()  # XDS hash is SHA-1
            try:
                _validate_new_document(meta, content)
                if meta.expected_sha1 is not None and meta.expected_sha1.lower() != sha1:
                    raise InvalidInput("the document hash does not match its content")
            except InvalidInput as exc:
                raise InvalidItem(exc.message, n) from None
            hashes.append((hashlib.sha256(content).hexdigest(), sha1))
        now = self._rt.clock.now()
        action = (
            AuditAction.DOCUMENT_REPLACE
            if any(r for _, _, r in items)
            else AuditAction.DOCUMENT_CREATE
        )
        stored: list[DocumentView] = []
        with self._unit() as conn:
            standing, facts = self._load_facts(conn, ins, action, None, DOCUMENT_CREATE)
            scope, decision = self._grant(
                conn, standing, facts, Action.DEPOSIT_DOCUMENT, action, None
            )
            for n, (meta, content, _) in enumerate(items):
                try:
                    cda.check_content(
                        content, (standing.ins_oid, standing.ins_value), meta.type_code
                    )
                except InvalidInput as exc:
                    raise InvalidItem(exc.message, n) from None
            key_id, data_key = self._data_key(conn, scope, create=True)
            for (meta, content, replaces), (sha256, sha1) in zip(items, hashes, strict=True):
                logical_id = self._store_document(
                    conn, scope, ins, meta, content, replaces, key_id, data_key, sha256, sha1, now
                )
                each = AuditAction.DOCUMENT_REPLACE if replaces else AuditAction.DOCUMENT_CREATE
                self._audit(conn, each, scope.patient_id, logical_id, decision.reason)
                doc = documents.get(conn, scope, DocumentVisibility(), logical_id)
                assert doc is not None
                stored.append(doc)
            for lst in lists or []:
                if lst.kind not in ("submissionset", "folder"):
                    raise InvalidInput("a List is a submissionset or a folder")
                if any(not 0 <= i < len(stored) for i in lst.documents):
                    raise InvalidInput("a List refers to a document outside the submission")
                documents.insert_list(
                    conn,
                    scope,
                    {
                        "id": uuid.uuid4().hex,
                        "kind": lst.kind,
                        "unique_id": (lst.unique_id or "")[:128] or None,
                        "source_id": (lst.source_id or "")[:128] or None,
                        "title": (lst.title or "")[:250] or None,
                        "code": (lst.code or "")[:40] or None,
                        "submitted_at": now,
                        "author_id": self.actor.id,
                        "author_structure": self.actor.structure_id,
                        "document_ids": " ".join(stored[i].logical_id for i in lst.documents),
                    },
                )
        return stored

    def search_lists(self, ins: PatientRef, kind: str | None = None) -> list[ListView]:
        """ITI-66: SubmissionSets and Folders, each showing only the documents this caller may
        see; a List with none of them visible is not shown at all."""
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.READ_DOCUMENTS, AuditAction.LIST_SEARCH, "lists", need=LIST_SEARCH
            )
            assert decision.visibility is not None
            rows = documents.lists(conn, scope, kind)
            every = sorted({d for r in rows for d in str(r["document_ids"]).split()})
            visible = documents.visible_ids(conn, scope, decision.visibility, every)
            out = []
            for r in rows:
                ids = tuple(d for d in str(r["document_ids"]).split() if d in visible)
                if ids:
                    out.append(
                        ListView(
                            r["id"],
                            r["patient_id"],
                            r["kind"],
                            r["unique_id"],
                            r["source_id"],
                            r["title"],
                            r["code"],
                            r["submitted_at"],
                            r["author_id"],
                            r["author_structure"],
                            ids,
                        )
                    )
            self._audit(
                conn,
                AuditAction.LIST_SEARCH,
                scope.patient_id,
                "lists",
                decision.reason,
                targets=tuple(sorted({d for x in out for d in x.document_ids})),
            )
        return out

    def _store_document(
        self,
        conn: Connection,
        scope: AuthorizedPatient,
        ins: PatientRef,
        meta: NewDocument,
        content: bytes,
        replaces: str | None,
        key_id: str,
        data_key: bytes,
        sha256: str,
        sha1: str,
        now: datetime,
    ) -> str:
        action = AuditAction.DOCUMENT_REPLACE if replaces else AuditAction.DOCUMENT_CREATE
        if replaces is not None:
            _, old, _ = self._modifiable(conn, ins, replaces, action, DOCUMENT_CREATE)
            if self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
                self._holder_may_manage(old, action)
            if old.status != AvailabilityStatus.CURRENT.value:
                raise Conflict("only a current document can be replaced")
            self._new_version(conn, scope, old, None, status=AvailabilityStatus.SUPERSEDED.value)
            replaces = old.logical_id
        unique_id = meta.unique_id or f"urn:uuid:{uuid.uuid4()}"
        if documents.unique_id_taken(conn, scope, unique_id):
            raise Conflict(f"a document with the unique id {unique_id[:80]} already exists")
        logical_id = uuid.uuid4().hex[:24]
        content_id = uuid.uuid4().hex
        chunks = envelope.seal_chunks(
            data_key, content, envelope.content_context(scope.patient_id, content_id)
        )
        documents.store_content(conn, scope, content_id, key_id, chunks)
        author_kind = (
            "patient"
            if self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
            else self.actor.kind.value
        )
        row = {
            "id": uuid.uuid4().hex,
            "logical_id": logical_id,
            "version": 1,
            "unique_id": unique_id,
            "status": AvailabilityStatus.CURRENT.value,
            "type_code": meta.type_code,
            "class_code": meta.class_code or TYPE_TO_CLASS[meta.type_code],
            "format_code": meta.format_code,
            "mime_type": meta.mime_type,
            "title": meta.title,
            "language": meta.language,
            "creation_time": meta.creation_time,
            "service_start": meta.service_start,
            "service_stop": meta.service_stop,
            "facility_type": meta.facility_type,
            "practice_setting": meta.practice_setting,
            "author_kind": author_kind,
            "author_id": self.actor.id,
            "author_structure": self.actor.structure_id,
            "confidentiality": meta.confidentiality,
            "masked_ps": meta.masked_ps,
            "invisible_patient": meta.invisible_patient,
            "invisible_patient_until": (
                now + INVISIBLE_PATIENT_DELAY if meta.invisible_patient else None
            ),
            "invisible_representatives": meta.invisible_representatives,
            "size": len(content),
            "sha256": sha256,
            "sha1": sha1,
            "content_id": content_id,
            "replaces_id": replaces,
            "submitted_at": now,
            "latest": True,
            "version_at": now,
        }
        try:
            documents.insert(conn, scope, row)
        except IntegrityError:
            # A concurrent deposit took the uniqueId between the check above and this insert.
            raise Conflict(
                f"a document with the unique id {unique_id[:80]} already exists"
            ) from None
        self._tally.document_deposited(scope.departement, now, meta.type_code)
        if meta.invisible_patient:
            self._announce_pending(conn, scope, logical_id, now)
        return logical_id

    def _announce_pending(
        self, conn: Connection, scope: AuthorizedPatient, logical_id: str, now: datetime
    ) -> None:
        # AC-11 (R1111-53): if not delivered within two weeks, the patient is told that
        # something awaits them; the delivery job checks the document is still hidden then.
        patients.notify(
            conn,
            scope,
            [
                {
                    "kind": "document_pending_announcement",
                    "recipient_kind": "patient",
                    "recipient_id": None,
                    "subject_id": logical_id,
                    "created_at": now,
                    "due_at": now + INVISIBLE_PATIENT_NOTICE,
                }
            ],
        )

    def search_documents(
        self,
        ins: PatientRef,
        *,
        type_codes: tuple[str, ...] | None = None,
        statuses: tuple[str, ...] | None = ("current",),
        service_from: datetime | None = None,
        service_to: datetime | None = None,
        all_dates: bool = False,
        limit: int = 20,
        offset: int = 0,
        criteria: DocumentCriteria | None = None,
    ) -> Page[DocumentView]:
        """Documents the actor may see. Without dates, the last two years of service dates
        (AC-15); ``all_dates`` or an explicit ``service_from`` widens it."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"page size must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise InvalidInput("offset must not be negative")
        if service_from is None and not all_dates:
            window = timedelta(days=self._rt.settings.search_window_days)
            service_from = self._rt.clock.now() - window
        criteria = dataclasses.replace(
            criteria or DocumentCriteria(),
            statuses=statuses,
            type_codes=type_codes,
            service_from=service_from,
            service_to=service_to,
            limit=limit,
            offset=offset,
        )
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.READ_DOCUMENTS, AuditAction.DOCUMENT_SEARCH, need=DOCUMENT_SEARCH
            )
            assert decision.visibility is not None
            rows, total = documents.search(conn, scope, decision.visibility, criteria)
            self._count_access(scope)
            self._audit(
                conn,
                AuditAction.DOCUMENT_SEARCH,
                scope.patient_id,
                None,
                decision.reason,
                targets=tuple(r.logical_id for r in rows),
            )
        return Page(rows, total)

    def read_document(self, ins: PatientRef, document_id: str) -> DocumentView:
        """A document's metadata; missing and hidden are the same 404."""
        with self._unit() as conn:
            scope, doc, decision = self._visible_document(conn, ins, document_id, DOCUMENT_READ)
            self._audit(
                conn, AuditAction.DOCUMENT_READ, scope.patient_id, doc.logical_id, decision.reason
            )
        return doc

    def read_content(self, ins: PatientRef, document_id: str) -> tuple[DocumentView, bytes]:
        """A document's content, whole (use ``stream_content`` for large ones)."""
        with self._unit() as conn:
            scope, doc, decision = self._visible_document(conn, ins, document_id, CONTENT_READ)
            key_id, chunks = documents.load_content(conn, scope, doc.content_id)
            data_key = self._existing_data_key(conn, scope, key_id)
            context = envelope.content_context(scope.patient_id, doc.content_id)
            content = envelope.open_chunks(data_key, chunks, context)
            self._audit(
                conn, AuditAction.DOCUMENT_READ, scope.patient_id, doc.logical_id, decision.reason
            )
        return doc, content

    def stream_content(
        self, ins: PatientRef, document_id: str
    ) -> tuple[DocumentView, Iterator[bytes]]:
        """A document's content as decrypted chunks, read from the database as they are sent.

        The access is decided and audited before the first byte; the chunks are then read in
        their own read-only connection, each authenticated with its position (no truncation or
        reordering goes unnoticed)."""
        with self._unit() as conn:
            scope, doc, decision = self._visible_document(conn, ins, document_id, CONTENT_READ)
            key_id, count = documents.content_key(conn, scope, doc.content_id)
            data_key = self._existing_data_key(conn, scope, key_id)
            self._audit(
                conn, AuditAction.DOCUMENT_READ, scope.patient_id, doc.logical_id, decision.reason
            )
        context = envelope.content_context(scope.patient_id, doc.content_id)
        engine = self._rt.engine

        def chunks() -> Iterator[bytes]:
            with engine.connect() as reader:
                reader.execution_options(dmp_readonly=True)
                n = -1
                stored = documents.iter_chunks(reader, scope, doc.content_id)
                try:
                    for n, sealed in enumerate(stored):
                        yield envelope.open_chunk(data_key, sealed, context, n, n == count - 1)
                finally:
                    stored.close()
                if n != count - 1:
                    raise IntegrityFailure("stored content is incomplete")

        return doc, chunks()

    def document_versions(self, ins: PatientRef, document_id: str) -> list[DocumentView]:
        """Every metadata version of a visible document, oldest first."""
        with self._unit() as conn:
            scope, doc, decision = self._visible_document(conn, ins, document_id, DOCUMENT_READ)
            self._audit(
                conn, AuditAction.DOCUMENT_READ, scope.patient_id, doc.logical_id, decision.reason
            )
            return documents.versions(conn, scope, doc.logical_id)

    def _visible_document(
        self, conn: Connection, ins: PatientRef, document_id: str, need: Need
    ) -> tuple[AuthorizedPatient, DocumentView, Decision]:
        scope, _, decision = self._authorize(
            conn, ins, Action.READ_DOCUMENTS, AuditAction.DOCUMENT_READ, document_id[:64], need=need
        )
        assert decision.visibility is not None
        doc = documents.get(conn, scope, decision.visibility, document_id)
        if doc is None:
            # Missing or hidden: one answer, so a hidden document cannot be told from none.
            raise NotFound("no such document")
        self._count_access(scope)
        return scope, doc, decision

    def _count_access(self, scope: AuthorizedPatient) -> None:
        """Adoption statistics: professional consultations per access mode."""
        if self.actor.kind is ActorKind.PROFESSIONAL:
            self._tally.documents_accessed(
                scope.departement, self._rt.clock.now(), self.purpose.value
            )

    def _count_opening(
        self, conn: Connection, departement: str, channel: CreationChannel, now: datetime
    ) -> None:
        """Count the opening; the opening that reaches a threshold records the milestone."""
        kind = self.actor.structure_kind
        if kind is None and self.actor.structure_id:
            kind = directory.structure_sector(conn, self.actor.structure_id)
        rank = stats.record_opened(conn, departement, now, channel.value, kind or "unknown")
        if rank in self._rt.milestones:
            stats.add_milestone(
                conn, departement, rank, now, self.actor.structure_id, channel.value
            )

    def _modifiable(
        self,
        conn: Connection,
        ins: PatientRef,
        document_id: str,
        audit_action: AuditAction,
        need: Need,
    ) -> tuple[AuthorizedPatient, DocumentRow, Decision]:
        """The document, if this actor may change it (AC-13/14): a professional finds only what
        they or their structure authored. One they can read but did not author is a 403; one
        they cannot see at all is a 404, like a missing one."""
        target = document_id[:64]
        standing, facts = self._load_facts(conn, ins, audit_action, target, need)
        scope, decision = self._grant(
            conn, standing, facts, Action.UPDATE_DOCUMENT, audit_action, target
        )
        assert decision.visibility is not None
        doc = documents.get(conn, scope, decision.visibility, document_id)
        if doc is None:
            # Same facts, read rule: does the actor see the document they may not change?
            read = self._decide(Action.READ_DOCUMENTS, facts)
            if (
                self.actor.kind is ActorKind.PROFESSIONAL
                and read.visibility is not None
                and documents.get(conn, scope, read.visibility, document_id) is not None
            ):
                self._refuse(
                    Decision.deny(Reason.DENY_NOT_AUTHOR), audit_action, scope.patient_id, target
                )
            raise NotFound("no such document")
        return scope, doc, decision

    def _holder_may_manage(self, doc: DocumentRow, audit_action: AuditAction) -> None:
        """The holder archives or deletes only the documents the patient deposited (AC-13)."""
        verdict = may_modify(self.actor, doc.author_id, doc.author_structure, doc.author_kind)
        if not verdict.allowed:
            self._refuse(verdict, audit_action, doc.patient_id, doc.logical_id)

    def _new_version(
        self,
        conn: Connection,
        scope: AuthorizedPatient,
        doc: DocumentRow,
        expected_version: int | None = None,
        **changes: object,
    ) -> DocumentRow:
        """A metadata change writes a new version (new entry id, same logical id).

        The old version stops being the latest by a compare-and-set: of concurrent changes to
        one document exactly one wins; the others get 412 (they named the version they expected)
        or 409, and the version chain never forks (a unique index backs it)."""
        now = self._rt.clock.now()
        if not documents.supersede_version(conn, scope, doc.id):
            if expected_version is not None:
                raise PreconditionFailed(
                    f"the document is no longer at version {expected_version}: it was changed "
                    "meanwhile"
                )
            raise Conflict("the document was changed by a concurrent request; read it and retry")
        row: dict[str, Any] = {f.name: getattr(doc, f.name) for f in fields(doc)}
        row.update(
            changes, id=uuid.uuid4().hex, version=doc.version + 1, latest=True, version_at=now
        )
        documents.insert(conn, scope, {k: v for k, v in row.items() if k != "patient_id"})
        return DocumentRow(**row)

    def update_document(
        self,
        ins: PatientRef,
        document_id: str,
        *,
        masked_ps: bool | None = None,
        invisible_patient: bool | None = None,
        invisible_representatives: bool | None = None,
        archived: bool | None = None,
        expected_version: int | None = None,
    ) -> DocumentView:
        """Change a document's visibility flags or archive it: a new metadata version.

        The holder (and representatives) mask and unmask any document they see and archive the
        documents the patient deposited; professionals change only what they or their structure
        authored. Only professionals hide a document from the patient pending an announcement
        (AC-11); representatives cannot touch what is hidden from them (AC-12). With
        ``expected_version`` (HTTP If-Match), a document at another version is a 412.
        """
        change = DocumentChange(masked_ps, invisible_patient, invisible_representatives, archived)
        self._may_request(change)  # before any lookup: the answer does not depend on the record
        return self.patch_document(ins, document_id, lambda _: change, expected_version)

    def _may_request(self, change: DocumentChange) -> None:
        if change.invisible_patient is not None and self.actor.kind in (
            ActorKind.PATIENT,
            ActorKind.REPRESENTATIVE,
        ):
            raise Forbidden("only a professional hides a document from the patient")
        if (
            change.invisible_representatives is not None
            and self.actor.kind is ActorKind.REPRESENTATIVE
        ):
            raise Forbidden("representatives cannot change what is hidden from them")

    def patch_document(
        self,
        ins: PatientRef,
        document_id: str,
        compute: Callable[[DocumentView], DocumentChange],
        expected_version: int | None = None,
    ) -> DocumentView:
        """Like :meth:`update_document`, the change computed from the current version (a FHIR
        PATCH) inside the transaction that holds it: the version checked, the change computed
        and the new version written cannot be told apart by a concurrent request."""
        action = AuditAction.DOCUMENT_UPDATE
        holder_side = self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
        now = self._rt.clock.now()
        with self._unit() as conn:
            scope, doc, decision = self._modifiable(conn, ins, document_id, action, DOCUMENT_UPDATE)
            _check_version(doc, expected_version)
            change = compute(doc)
            self._may_request(change)
            changes = change.columns(now, INVISIBLE_PATIENT_DELAY)
            if not changes:
                raise InvalidInput("nothing to change")
            if change.archived is not None and holder_side:
                self._holder_may_manage(doc, action)
            if change.archived is not None and doc.status not in ("current", "archived"):
                raise Conflict("only a current document can be archived or restored")
            new = self._new_version(conn, scope, doc, expected_version, **changes)
            if change.invisible_patient:
                self._announce_pending(conn, scope, doc.logical_id, now)
            self._audit(conn, action, scope.patient_id, doc.logical_id, decision.reason)
        return new

    def delete_document(
        self, ins: PatientRef, document_id: str, *, expected_version: int | None = None
    ) -> None:
        """Logical delete by the author (AC-13): the document disappears from every read."""
        action = AuditAction.DOCUMENT_DELETE
        with self._unit() as conn:
            scope, doc, decision = self._modifiable(conn, ins, document_id, action, DOCUMENT_DELETE)
            if self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
                self._holder_may_manage(doc, action)
            _check_version(doc, expected_version)
            self._new_version(
                conn, scope, doc, expected_version, status=AvailabilityStatus.DELETED.value
            )
            self._audit(conn, action, scope.patient_id, doc.logical_id, decision.reason)

    def activate_account(self, ins: PatientRef) -> None:
        """The holder activated their online account (counted in the adoption statistics)."""
        with self._unit() as conn:
            scope, record, decision = self._authorize(
                conn,
                ins,
                Action.MANAGE_RECORD,
                AuditAction.RECORD_UPDATE,
                "activated_at",
                need=PATIENT_UPDATE,
            )
            if record.activated_at is None:
                patients.update_record(conn, scope, activated_at=self._rt.clock.now())
                stats.account_activated(conn, scope.departement)
            self._audit(
                conn, AuditAction.RECORD_UPDATE, scope.patient_id, "activated_at", decision.reason
            )

    # -- the holder's controls ------------------------------------------------------------

    def block_professional(self, ins: PatientRef, id_nat_ps: str) -> None:
        """AC-3: the holder blocks a professional, who is then refused in every mode."""
        self._set_block(ins, id_nat_ps, blocked=True)

    def unblock_professional(self, ins: PatientRef, id_nat_ps: str) -> None:
        self._set_block(ins, id_nat_ps, blocked=False)

    def _set_block(self, ins: PatientRef, id_nat_ps: str, *, blocked: bool) -> None:
        id_nat_ps = _id_nat_ps(id_nat_ps)
        action = AuditAction.PERMISSION_BLOCK if blocked else AuditAction.PERMISSION_UNBLOCK
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.MANAGE_RECORD, action, id_nat_ps, need=CONSENT_UPDATE
            )
            at = self._rt.clock.now() if blocked else None
            patients.set_blocked(conn, scope, id_nat_ps, at)
            self._audit(conn, action, scope.patient_id, id_nat_ps, decision.reason)

    def update_settings(
        self,
        ins: PatientRef,
        *,
        oppose_bris_de_glace: bool | None = None,
        oppose_centre_15: bool | None = None,
        mask_all: bool | None = None,
        medecin_traitant: str | None = None,
        clear_medecin_traitant: bool = False,
    ) -> RecordView:
        """The holder's settings: oppositions to emergency and regulation-centre access (AC-8,
        AC-9, separately), masking everything at once (AC-6), the registered GP (AC-7)."""
        values: dict[str, object] = {}
        if oppose_bris_de_glace is not None:
            values["oppose_bris_de_glace"] = oppose_bris_de_glace
        if oppose_centre_15 is not None:
            values["oppose_centre_15"] = oppose_centre_15
        if mask_all is not None:
            values["mask_all"] = mask_all
        if medecin_traitant is not None:
            values["medecin_traitant"] = _id_nat_ps(medecin_traitant)
        elif clear_medecin_traitant:
            values["medecin_traitant"] = None
        if not values:
            raise InvalidInput("nothing to change")
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn,
                ins,
                Action.MANAGE_RECORD,
                AuditAction.RECORD_UPDATE,
                ",".join(sorted(values)),
                need=CONSENT_UPDATE,
            )
            patients.update_record(conn, scope, **values)
            self._audit(
                conn,
                AuditAction.RECORD_UPDATE,
                scope.patient_id,
                ",".join(sorted(values)),
                decision.reason,
            )
            return _stored_record_view(conn, scope, patients.load_record(conn, scope.patient_id))

    def declare_care_team(self, ins: PatientRef, id_nat_ps: str) -> None:
        """Add a professional to the care team: the holder, or a professional who holds access
        and delegates part of the care (L1111-17 II, AC-4)."""
        id_nat_ps = _id_nat_ps(id_nat_ps)
        action = AuditAction.CARE_TEAM_DECLARE
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.DECLARE_CARE_TEAM, action, id_nat_ps, need=CONSENT_CREATE
            )
            patients.declare_care_team(
                conn, scope, id_nat_ps, at=self._rt.clock.now(), by=self.actor.id
            )
            self._audit(conn, action, scope.patient_id, id_nat_ps, decision.reason)

    def add_representative(
        self,
        ins: PatientRef,
        representative_id: str,
        display_name: str,
        relationship: str,
        *,
        minor: bool = False,
    ) -> None:
        """Register a legal representative (parental authority, guardianship): a system or
        operator action, on proof of the legal status."""
        if self.actor.kind is not ActorKind.SYSTEM:
            raise Forbidden("legal representatives are registered by the operator")
        if not representative_id.strip() or not display_name.strip():
            raise InvalidInput("a representative needs an identifier and a name")
        action = AuditAction.REPRESENTATIVE_ADD
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.MANAGE_RECORD, action, need=PATIENT_UPDATE
            )
            try:
                patients.add_representative(
                    conn,
                    scope,
                    representative_id.strip()[:64],
                    display_name.strip()[:200],
                    relationship.strip()[:40] or "representant_legal",
                    self._rt.clock.now(),
                )
            except IntegrityError:
                raise Conflict("this representative is already registered") from None
            if minor:
                patients.update_record(conn, scope, is_minor=True)
            self._audit(conn, action, scope.patient_id, representative_id[:64], decision.reason)

    def permissions(self, ins: PatientRef) -> list[tuple[str, datetime | None, datetime | None]]:
        """The holder's decisions about professionals: (idNatPS, consented at, blocked at)."""
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn,
                ins,
                Action.MANAGE_RECORD,
                AuditAction.RECORD_READ,
                "permissions",
                need=CONSENT_SEARCH,
            )
            rows = patients.list_permissions(conn, scope)
            self._audit(
                conn, AuditAction.RECORD_READ, scope.patient_id, "permissions", decision.reason
            )
        return [(ps, p.consented_at, p.blocked_at) for ps, p in rows]

    def notifications(self, ins: PatientRef) -> list[dict[str, object]]:
        """Notices queued for the record (the outbox), for the holder and operators."""
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.MANAGE_RECORD, AuditAction.HISTORY_READ, need=PATIENT_READ
            )
            rows = patients.pending_notifications(conn, scope)
            self._audit(
                conn, AuditAction.HISTORY_READ, scope.patient_id, "notifications", decision.reason
            )
        return [{k: v for k, v in r.items() if k != "patient_id"} for r in rows]

    # -- history --------------------------------------------------------------------------

    def history(self, ins: PatientRef, *, limit: int = 50, offset: int = 0) -> Page[TraceView]:
        """The record's traces: all of them for the holder, one's own for a professional."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(f"page size must be between 1 and {MAX_PAGE}, offset not negative")
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.READ_HISTORY, AuditAction.HISTORY_READ, need=HISTORY_SEARCH
            )
            rows, total = audit_log.patient_history(
                conn,
                scope,
                actor_id=self.actor.id if decision.own_traces_only else None,
                limit=limit,
                offset=offset,
            )
            hidden = self._hidden_documents(conn, scope, decision, rows)
            self._audit(conn, AuditAction.HISTORY_READ, scope.patient_id, None, decision.reason)
        items = [
            TraceView(
                r.at,
                r.actor_kind,
                r.actor_id,
                r.structure_id,
                r.action,
                None if r.target in hidden else r.target,
                tuple(t for t in r.targets.split() if t not in hidden) if r.targets else (),
                r.purpose,
                r.outcome,
                r.reason,
            )
            for r in rows
        ]
        return Page(items, total)

    def _hidden_documents(
        self,
        conn: Connection,
        scope: AuthorizedPatient,
        decision: Decision,
        rows: list[AuditRow],
    ) -> set[str]:
        """The document ids in these traces that the reader may not see (AC-11, AC-12): the
        accesses stay in the history, the ids of documents hidden from the reader do not."""
        if decision.visibility is None:
            return set()
        ids = {t for r in rows for t in (r.target, *(r.targets or "").split()) if t}
        present = documents.visible_ids(conn, scope, DocumentVisibility(), sorted(ids))
        every_status = dataclasses.replace(decision.visibility, statuses=None)
        return present - documents.visible_ids(conn, scope, every_status, sorted(present))

    def destroy_data_keys(self, ins: PatientRef) -> int:
        """Crypto-shredding: destroy the patient's data keys, so their content is unreadable
        everywhere, backups included. Only a system job may do it (purge ten years after closure,
        or the holder's deletion request)."""
        with self._unit() as conn:
            scope, _, decision = self._authorize(
                conn, ins, Action.DESTROY_KEYS, AuditAction.KEY_SHRED, need=PATIENT_UPDATE
            )
            count = keys.shred(conn, scope, self._rt.clock.now())
            self._audit(conn, AuditAction.KEY_SHRED, scope.patient_id, None, decision.reason)
        return count

    # -- keys -----------------------------------------------------------------------------

    def _data_key(
        self, conn: Connection, scope: AuthorizedPatient, *, create: bool
    ) -> tuple[str, bytes]:
        row = keys.active_key(conn, scope)
        if row is not None and row.wrapped is not None:
            return row.key_id, envelope.unwrap_data_key(
                self._rt.kek(row.kek_id), row.wrapped, scope.patient_id
            )
        if row is not None and row.wrapped is None:
            raise IntegrityFailure("this patient's data key was destroyed; content is unreadable")
        if not create:
            raise IntegrityFailure("this patient has no data key")
        data_key = envelope.new_data_key()
        key_id = uuid.uuid4().hex
        kek_id = self._rt.keyring.active_kek_id
        wrapped = envelope.wrap_data_key(self._rt.kek(kek_id), data_key, scope.patient_id)
        keys.insert_key(conn, scope, key_id, kek_id, wrapped, self._rt.clock.now())
        return key_id, data_key

    def _existing_data_key(self, conn: Connection, scope: AuthorizedPatient, key_id: str) -> bytes:
        row = keys.key_by_id(conn, scope, key_id)
        if row is None or row.wrapped is None:
            raise IntegrityFailure(
                "this document's data key was destroyed; its content is unreadable"
            )
        return envelope.unwrap_data_key(self._rt.kek(row.kek_id), row.wrapped, scope.patient_id)


def _record_view(
    ins: Ins, demo: Demographics, departement: str, record: RecordRow | None
) -> RecordView:
    assert record is not None
    return RecordView(
        key=record.patient_id,
        ins=ins,
        demographics=demo,
        departement=departement,
        status=record.status,
        channel=record.channel,
        opened_at=record.opened_at,
        closed_at=record.closed_at,
        closure_reason=record.closure_reason,
        medecin_traitant=record.medecin_traitant,
        oppose_bris_de_glace=record.oppose_bris_de_glace,
        oppose_centre_15=record.oppose_centre_15,
    )


def _check_version(doc: DocumentRow, expected_version: int | None) -> None:
    if expected_version is not None and doc.version != expected_version:
        raise PreconditionFailed(
            f"the document is at version {doc.version}, not {expected_version}"
        )


def _stored_record_view(
    conn: Connection, scope: AuthorizedPatient, record: RecordRow | None
) -> RecordView:
    p = patients.load_patient(conn, scope)
    demo = Demographics(
        p.birth_family_name,
        p.given_names,
        p.sex,
        p.birth_date,
        p.residence_commune,
        p.used_name,
        p.birth_place_code,
    )
    return _record_view(Ins(p.ins_oid, p.ins_value), demo, p.departement, record)


def _id_nat_ps(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 32 or not value.isalnum():
        raise InvalidInput("a professional is named by their national identifier (idNatPS)")
    return value


def _validated_demographics(d: Demographics) -> Demographics:
    for name in ("birth_family_name", "given_names"):
        value = getattr(d, name).strip()
        if not value or len(value) > 100:
            raise InvalidInput(f"{name} is required (at most 100 characters)")
    if d.sex not in SEXES:
        raise InvalidInput("sex must be M, F or U")
    departement_of_commune(d.residence_commune)
    return d


def _validate_new_document(meta: NewDocument, content: bytes) -> None:
    if meta.type_code not in TYPE_TO_CLASS:
        raise InvalidInput(f"unknown document type code {meta.type_code!r}")
    if meta.class_code is not None and not (0 < len(meta.class_code) <= 20):
        raise InvalidInput("the class code has at most 20 characters")
    for name in ("facility_type", "practice_setting"):
        value = getattr(meta, name)
        if value is not None and len(value) > 20:
            raise InvalidInput(f"{name} has at most 20 characters")
    if meta.unique_id is not None and not (0 < len(meta.unique_id) <= 128):
        raise InvalidInput("a unique id has 1 to 128 characters")
    if not meta.title.strip() or len(meta.title) > 250:
        raise InvalidInput("a document title is required (at most 250 characters)")
    if not meta.format_code or len(meta.format_code) > 80:
        raise InvalidInput("a format code is required")
    if not meta.mime_type or len(meta.mime_type) > 80 or "/" not in meta.mime_type:
        raise InvalidInput("a MIME type is required")
    if meta.confidentiality not in {c.value for c in Confidentiality}:
        raise InvalidInput("confidentiality must be N, R or V")
    if meta.service_stop is not None and meta.service_stop < meta.service_start:
        raise InvalidInput("the service stop time is before its start")
    if not content:
        raise InvalidInput("the document has no content")
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidInput(f"the document exceeds {MAX_CONTENT_BYTES} bytes")
    if meta.expected_size is not None and meta.expected_size != len(content):
        raise InvalidInput("the document size does not match its content")
    for value in (meta.creation_time, meta.service_start, meta.service_stop):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("times must carry a time zone")
