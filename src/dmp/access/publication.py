"""Publishing documents: deposit (AC-10) and replacement, visibility flags and archiving, and
logical deletion (AC-13/14), each a new metadata version written by compare-and-set."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.access import datakeys, notices
from dmp.access.kernel import (
    DOCUMENT_CREATE,
    DOCUMENT_DELETE,
    DOCUMENT_UPDATE,
    Kernel,
    Op,
    check_aware,
)
from dmp.access.policy import Action, Decision, Reason, may_modify
from dmp.access.views import DocumentChange, DocumentView, NewDocument, NewList
from dmp.crypto import envelope
from dmp.domain import cda, text, valuesets
from dmp.domain.codes import (
    TYPE_TO_CLASS,
    AuditAction,
    AvailabilityStatus,
    Confidentiality,
    unique_id_forms,
)
from dmp.domain.ins import PatientRef
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidItem,
    NotFound,
    PreconditionFailed,
)
from dmp.identity.actor import ActorKind
from dmp.records import documents
from dmp.records.types import AuthorizedPatient, DocumentRow

MAX_CONTENT_BYTES = 20 * 1024 * 1024
# AC-11: an INVISIBLE_PATIENT document becomes visible by itself after one month.
INVISIBLE_PATIENT_DELAY = timedelta(days=30)


class PublicationActions(Kernel):
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
        now = self._rt.clock.now()
        items = [(_with_defaults(meta, now), content, r) for meta, content, r in items]
        hashes = []
        for n, (meta, content, _) in enumerate(items):
            sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()  # XDS hash is SHA-1
            try:
                _validate_new_document(meta, content, self._rt.settings.accepted_document_types)
                if meta.expected_sha1 is not None and meta.expected_sha1.lower() != sha1:
                    raise InvalidInput("the document hash does not match its content")
            except InvalidInput as exc:
                raise InvalidItem(exc.message, n, french=exc.french) from None
            hashes.append((hashlib.sha256(content).hexdigest(), sha1))
        action = (
            AuditAction.DOCUMENT_REPLACE
            if any(r for _, _, r in items)
            else AuditAction.DOCUMENT_CREATE
        )
        stored: list[DocumentView] = []
        events: list[tuple[AuditAction, str | None]] = []
        with self.act(ins, Action.DEPOSIT_DOCUMENT, action, need=DOCUMENT_CREATE) as op:
            conn, scope = op.conn, op.scope
            for n, (meta, content, _) in enumerate(items):
                try:
                    cda.check_content(content, op.ins, meta.type_code)
                except InvalidInput as exc:
                    raise InvalidItem(exc.message, n, french=exc.french) from None
            key_id, data_key = datakeys.data_key(self._rt, conn, scope, create=True)
            for (meta, content, replaces), (sha256, sha1) in zip(items, hashes, strict=True):
                doc = self._store_document(
                    op, meta, content, replaces, key_id, data_key, sha256, sha1, now
                )
                each = AuditAction.DOCUMENT_REPLACE if replaces else AuditAction.DOCUMENT_CREATE
                events.append((each, doc.logical_id))
                stored.append(doc)
            op.audit_each(events)
            for lst in lists or []:
                if lst.kind not in ("submissionset", "folder"):
                    raise InvalidInput("a List is a submissionset or a folder")
                if any(not 0 <= i < len(stored) for i in lst.documents):
                    raise InvalidInput("a List refers to a document outside the submission")
                if len(lst.id) != 32 or not lst.id.isalnum():
                    raise InvalidInput("a List id is 32 letters or digits")
                documents.insert_list(
                    conn,
                    scope,
                    {
                        "id": lst.id,
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

    def _store_document(
        self,
        op: Op,
        meta: NewDocument,
        content: bytes,
        replaces: str | None,
        key_id: str,
        data_key: bytes,
        sha256: str,
        sha1: str,
        now: datetime,
    ) -> DocumentRow:
        """Seal and store one new document; its metadata as stored."""
        conn, scope = op.conn, op.scope
        action = AuditAction.DOCUMENT_REPLACE if replaces else AuditAction.DOCUMENT_CREATE
        if replaces is not None:
            old = self._modifiable(op, replaces, action)
            if self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
                self._holder_may_manage(old, action)
            if old.status != AvailabilityStatus.CURRENT.value:
                raise Conflict("only a current document can be replaced")
            self._new_version(conn, scope, old, None, status=AvailabilityStatus.SUPERSEDED.value)
            replaces = old.logical_id
        appends = None
        if meta.appends is not None:
            # An addendum adds to a stored document of the record, which stays as it is. A
            # deposit needs no read authorisation (AC-10), so the target is looked up
            # unfiltered: its id (random, 24 hex digits) is known to who read it.
            target = documents.get(conn, scope, DocumentVisibility(), meta.appends)
            if target is None:
                raise NotFound("the document an addendum is for was not found in this record")
            if target.status != AvailabilityStatus.CURRENT.value:
                raise Conflict("an addendum is for a current document")
            appends = target.logical_id
        unique_id = meta.unique_id or f"urn:uuid:{uuid.uuid4()}"
        if documents.unique_id_taken(conn, scope, unique_id_forms(unique_id)):
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
            "facility_system": meta.facility_system,
            "practice_system": meta.practice_system,
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
            "appends_id": appends,
            "submitted_at": now,
            "latest": True,
            "version_at": now,
        }
        try:
            stored = documents.insert(conn, scope, row)
        except IntegrityError:
            # A concurrent deposit took the uniqueId between the check above and this insert.
            raise Conflict(
                f"a document with the unique id {unique_id[:80]} already exists"
            ) from None
        self._tally.document_deposited(scope.patient_id, scope.departement, now, meta.type_code)
        notices.on_deposit(
            self, op, logical_id, hidden_from_patient=meta.invisible_patient, now=now
        )
        return stored

    def _modifiable(self, op: Op, document_id: str, audit_action: AuditAction) -> DocumentRow:
        """The document, if this actor may change it (AC-13/14): a professional finds only what
        they or their structure authored. One they can read but did not author is a 403; one
        they cannot see at all is a 404, like a missing one."""
        target = document_id[:64]
        update = self._decide(Action.UPDATE_DOCUMENT, op.facts)
        if not update.allowed:
            self._refuse(update, audit_action, op.scope.patient_id, target, op.record)
        assert update.visibility is not None
        doc = documents.get(op.conn, op.scope, update.visibility, document_id)
        if doc is None:
            # Same facts, read rule: does the actor see the document they may not change?
            read = self._decide(Action.READ_DOCUMENTS, op.facts)
            if (
                self.actor.kind is ActorKind.PROFESSIONAL
                and read.visibility is not None
                and documents.get(op.conn, op.scope, read.visibility, document_id) is not None
            ):
                self._refuse(
                    Decision.deny(Reason.DENY_NOT_AUTHOR), audit_action, op.scope.patient_id, target
                )
            raise NotFound("no such document")
        return doc

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
        with self.act(
            ins, Action.UPDATE_DOCUMENT, action, need=DOCUMENT_UPDATE, target=document_id[:64]
        ) as op:
            conn, scope = op.conn, op.scope
            doc = self._modifiable(op, document_id, action)
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
            if change.invisible_patient is not None and change.invisible_patient != (
                doc.invisible_patient
            ):
                # Hidden now: the two-week and one-month notices; revealed by a professional
                # before its time: the holder hears of the document now.
                notices.on_deposit(
                    self,
                    op,
                    doc.logical_id,
                    hidden_from_patient=change.invisible_patient,
                    now=now,
                )
            op.audit_target(doc.logical_id)
        return new

    def delete_document(
        self, ins: PatientRef, document_id: str, *, expected_version: int | None = None
    ) -> None:
        """Logical delete by the author (AC-13): the document disappears from every read."""
        action = AuditAction.DOCUMENT_DELETE
        with self.act(
            ins, Action.UPDATE_DOCUMENT, action, need=DOCUMENT_DELETE, target=document_id[:64]
        ) as op:
            doc = self._modifiable(op, document_id, action)
            if self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
                self._holder_may_manage(doc, action)
            _check_version(doc, expected_version)
            self._new_version(
                op.conn, op.scope, doc, expected_version, status=AvailabilityStatus.DELETED.value
            )
            op.audit_target(doc.logical_id)


def _check_version(doc: DocumentRow, expected_version: int | None) -> None:
    if expected_version is not None and doc.version != expected_version:
        raise PreconditionFailed(
            f"the document is at version {doc.version}, not {expected_version}"
        )


def _with_defaults(meta: NewDocument, now: datetime) -> NewDocument:
    """What MHD's minimal metadata may leave out: the creation time is then the submission's,
    the service start the creation time, the title the document type's name (JDV_J07)."""
    creation = meta.creation_time or now
    title = meta.title.strip() or valuesets.document_types().display(meta.type_code) or ""
    return dataclasses.replace(
        meta, creation_time=creation, service_start=meta.service_start or creation, title=title
    )


def _validate_new_document(
    meta: NewDocument, content: bytes, accepted: frozenset[str] | None
) -> None:
    """The metadata rules of a deposit; codes come from the CI-SIS value sets."""
    if meta.type_code not in valuesets.document_types():
        raise InvalidInput(
            f"document type {meta.type_code!r} is not in JDV_J07-XdsTypeCode-CISIS",
            reason="DocumentReference.type",
        )
    if accepted is not None and meta.type_code not in accepted:
        raise InvalidInput(
            f"document type {meta.type_code!r} is not accepted by this deployment",
            reason="DocumentReference.type",
        )
    if meta.class_code is None and meta.type_code not in TYPE_TO_CLASS:
        raise InvalidInput(
            f"no class code is known for document type {meta.type_code!r}: give "
            "DocumentReference.category (JDV_J57-ClassCode-DMP)",
            reason="DocumentReference.category",
        )
    if meta.class_code is not None and not (0 < len(meta.class_code) <= 20):
        raise InvalidInput("the class code has at most 20 characters")
    for name in ("facility_type", "practice_setting"):
        value = getattr(meta, name)
        if value is not None and len(value) > 20:
            raise InvalidInput(f"{name} has at most 20 characters")
    for name in ("facility_system", "practice_system"):
        value = getattr(meta, name)
        if value is not None and not (0 < len(value) <= 120 and value.isprintable()):
            raise InvalidInput(f"{name} is a code system URI of at most 120 characters")
    if meta.unique_id is not None and not (0 < len(meta.unique_id) <= 128):
        raise InvalidInput("a unique id has 1 to 128 characters")
    if not meta.title.strip() or len(meta.title) > 250:
        raise InvalidInput(
            "a document title is required (at most 250 characters)",
            french="le titre du document : à indiquer, 250 caractères au plus",
        )
    if not meta.format_code or len(meta.format_code) > 80:
        raise InvalidInput("a format code is required")
    if not meta.mime_type:
        raise InvalidInput("a MIME type is required")
    text.mime_type(meta.mime_type)
    for name, french, value in (
        ("title", "titre", meta.title),
        ("format code", "format", meta.format_code),
        ("type code", "type", meta.type_code),
        ("unique id", "identifiant unique", meta.unique_id or ""),
    ):
        text.single_line(value, name, french)
    if meta.confidentiality not in {c.value for c in Confidentiality}:
        raise InvalidInput("confidentiality must be N, R or V")
    check_aware(meta.creation_time, meta.service_start, meta.service_stop)
    start = meta.service_start
    if meta.service_stop is not None and start is not None and meta.service_stop < start:
        raise InvalidInput(
            "the service stop time is before its start",
            french="la fin des soins est antérieure à leur début",
        )
    if not content:
        raise InvalidInput("the document has no content", french="le fichier est vide")
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidInput(
            f"the document exceeds {MAX_CONTENT_BYTES} bytes",
            french=f"le fichier dépasse la taille maximale ({MAX_CONTENT_BYTES // (1 << 20)} Mo)",
        )
    if meta.expected_size is not None and meta.expected_size != len(content):
        raise InvalidInput("the document size does not match its content")
    cda.check_declared_xml(content, meta.mime_type)
    for value in (meta.creation_time, meta.service_start, meta.service_stop):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("times must carry a time zone")
