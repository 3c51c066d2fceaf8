"""Reading documents: search (AC-5, AC-6, AC-11, AC-12, AC-15 applied in SQL before paging),
metadata, content (whole or streamed), versions, and the SubmissionSets and Folders."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from dmp.access import datakeys, notices
from dmp.access.kernel import (
    CONTENT_READ,
    DOCUMENT_READ,
    DOCUMENT_SEARCH,
    LIST_SEARCH,
    Kernel,
    Op,
    check_aware,
    check_window,
)
from dmp.access.policy import Action
from dmp.access.views import DocumentView, ListView, Page
from dmp.crypto import envelope
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.errors import IntegrityFailure, InvalidInput, NotFound
from dmp.identity.scopes import Need
from dmp.records import documents
from dmp.records.types import DocumentCriteria

# Contents of up to this many chunks (4 MiB) are decrypted once, before the answer starts.
EAGER_CHUNKS = 16


class DocumentActions(Kernel):
    def search_documents(
        self,
        ins: PatientRef,
        *,
        type_codes: tuple[str, ...] | None = None,
        statuses: tuple[str, ...] | None = ("current",),
        service_from: datetime | None = None,
        service_to: datetime | None = None,
        limit: int = 20,
        offset: int = 0,
        criteria: DocumentCriteria | None = None,
        count_only: bool = False,
    ) -> Page[DocumentView]:
        """Documents the actor may see, as the criteria ask: no hidden date window (AC-15: the
        two-year window of the DMP is the consumer software's first search, which asks for
        it with a date criterion). ``count_only`` (FHIR ``_summary=count``): the total alone,
        and the audit event names no document, since none left."""
        check_window(limit, offset)
        c = criteria or DocumentCriteria()
        check_aware(
            service_from,
            service_to,
            c.created_from,
            c.created_to,
            c.submitted_from,
            c.submitted_to,
            c.service_end_from,
            c.service_end_to,
            *(instant for _, start, end in c.outside for instant in (start, end)),
        )
        named = {n for n, _ in c.excluded} | {n for n, _ in c.missing} | {n for n, *_ in c.outside}
        if named - documents.CRITERIA.keys():
            raise InvalidInput(
                f"unknown search criteria: {sorted(named - documents.CRITERIA.keys())}"
            )
        criteria = dataclasses.replace(
            criteria or DocumentCriteria(),
            statuses=statuses,
            type_codes=type_codes,
            service_from=service_from,
            service_to=service_to,
            limit=limit,
            offset=offset,
        )
        with self.act(
            ins, Action.READ_DOCUMENTS, AuditAction.DOCUMENT_SEARCH, need=DOCUMENT_SEARCH
        ) as op:
            rows, total = documents.search(op.conn, op.scope, op.visibility, criteria)
            if count_only:
                rows = []
            self._count_access(op.scope)
            notices.on_professional_read(self, op)
            op.audit_targets(tuple(r.logical_id for r in rows))
        return Page(rows, total)

    def read_document(self, ins: PatientRef, document_id: str) -> DocumentView:
        """A document's metadata; missing and hidden are the same 404."""
        with self._read(ins, document_id, DOCUMENT_READ) as (_, doc):
            return doc

    def read_content(self, ins: PatientRef, document_id: str) -> tuple[DocumentView, bytes]:
        """A document's content, whole (use ``stream_content`` for large ones)."""
        with self._read(ins, document_id, CONTENT_READ) as (op, doc):
            key, chunks = documents.load_content(op.conn, op.scope, doc.content_id)
            data_key = datakeys.opened_key(self._rt, op.scope, key)
            context = envelope.content_context(op.scope.patient_id, doc.content_id)
            return doc, envelope.open_chunks(data_key, chunks, context)

    def stream_content(
        self, ins: PatientRef, document_id: str
    ) -> tuple[DocumentView, Iterable[bytes]]:
        """A document's content as decrypted chunks, read from the database as they are sent
        (a list when the whole content is already opened, which the answer sends at once).

        The access is decided and audited before the first byte. Every chunk is authenticated
        with its patient, document and position *before* the response starts, so an altered,
        swapped, reordered or missing chunk is an error answer, never a connection cut in the
        middle of a document: contents of up to ``EAGER_CHUNKS`` chunks are opened once and
        kept; larger ones are checked in a first pass and streamed in a second."""
        chunks: list[bytes] | None = None
        count = 0
        with self._read(ins, document_id, CONTENT_READ) as (op, doc):
            if doc.size <= EAGER_CHUNKS * envelope.CHUNK:
                # Small enough to keep: read with the decision, in its transaction, in one
                # statement (issue 26: a second connection per retrieval cost more than the
                # read); opened once the read is in the trail, before the response starts.
                # The data key comes with the chunks: one statement.
                try:
                    key, chunks = documents.load_content(op.conn, op.scope, doc.content_id)
                except LookupError:
                    chunks = []
                data_key = datakeys.opened_key(self._rt, op.scope, key) if chunks else b""
            else:
                key_id, count = documents.content_key(op.conn, op.scope, doc.content_id)
                data_key = datakeys.existing_data_key(self._rt, op.conn, op.scope, key_id)
            scope = op.scope
        context = envelope.content_context(scope.patient_id, doc.content_id)
        if chunks is not None:
            if not chunks:
                raise IntegrityFailure("this document's stored content is missing")
            last = len(chunks) - 1
            opened_now = [
                envelope.open_chunk(data_key, c, context, n, n == last)
                for n, c in enumerate(chunks)
            ]
            return doc, opened_now
        engine = self._rt.engine

        def opened() -> Iterator[bytes]:
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
                    raise IntegrityFailure(
                        "this document's stored content is incomplete (a chunk is missing)"
                    )

        if count <= EAGER_CHUNKS:
            return doc, list(opened())
        for _ in opened():
            pass
        return doc, opened()

    def document_versions(self, ins: PatientRef, document_id: str) -> list[DocumentView]:
        """Every metadata version of a visible document, oldest first."""
        with self._read(ins, document_id, DOCUMENT_READ) as (op, doc):
            return documents.versions(op.conn, op.scope, doc.logical_id)

    @contextlib.contextmanager
    def _read(
        self, ins: PatientRef, document_id: str, need: Need
    ) -> Iterator[tuple[Op, DocumentView]]:
        """One visible document inside an authorised read, audited as a read of it; missing
        and hidden are the same 404 (audited as an attempt by the kernel)."""
        with self.act(
            ins,
            Action.READ_DOCUMENTS,
            AuditAction.DOCUMENT_READ,
            need=need,
            target=document_id[:64],
        ) as op:
            doc = documents.get(op.conn, op.scope, op.visibility, document_id)
            if doc is None:
                raise NotFound("no such document")
            self._count_access(op.scope)
            notices.on_professional_read(self, op)
            op.audit_target(doc.logical_id)
            yield op, doc

    def search_lists(
        self,
        ins: PatientRef,
        kind: str | None = None,
        *,
        where: Callable[[ListView], bool] | None = None,
        limit: int = 20,
        offset: int = 0,
        count_only: bool = False,
    ) -> Page[ListView]:
        """ITI-66: SubmissionSets and Folders, each showing only the documents this caller may
        see; a List with none of them visible is not shown at all. ``where`` (the adapter's
        search criteria), the order (newest first), the page and ``count_only`` are applied
        here, before the audit, so the audit event names the documents of the Lists that left
        and none when only a count did."""
        check_window(limit, offset)
        with self._lists(ins, kind, None) as (op, found):
            chosen = [lst for lst in found if where is None or where(lst)]
            chosen.sort(key=lambda lst: (lst.submitted_at, lst.id), reverse=True)
            page = [] if count_only else chosen[offset : offset + limit]
            op.audit_targets(tuple(sorted({d for x in page for d in x.document_ids})))
        return Page(page, len(chosen))

    def read_list(self, ins: PatientRef, list_id: str) -> ListView:
        """One List (SubmissionSet or Folder) by id, as a search shows it; a List with none of
        its documents visible is the same 404 as a missing one."""
        with self._lists(ins, None, list_id) as (op, found):
            op.audit_targets(tuple(sorted({d for x in found for d in x.document_ids})))
        if not found:
            raise NotFound("no such List")
        return found[0]

    @contextlib.contextmanager
    def _lists(
        self, ins: PatientRef, kind: str | None, list_id: str | None
    ) -> Iterator[tuple[Op, list[ListView]]]:
        with self.act(
            ins,
            Action.READ_DOCUMENTS,
            AuditAction.LIST_SEARCH,
            need=LIST_SEARCH,
            target=list_id[:64] if list_id else "lists",
        ) as op:
            rows = [
                r
                for r in documents.lists(op.conn, op.scope, kind)
                if list_id is None or r["id"] == list_id
            ]
            every = sorted({d for r in rows for d in str(r["document_ids"]).split()})
            visible = documents.visible_ids(op.conn, op.scope, op.visibility, every)
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
            yield op, out
