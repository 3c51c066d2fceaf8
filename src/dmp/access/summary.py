"""The summary of care: allergies, current treatments, vaccinations, problems and the latest
results, read from the structured entries of the documents this reader may see (a masked or
hidden document never feeds it), each line naming the documents it comes from."""

from __future__ import annotations

import dataclasses

from dmp.access import datakeys, notices
from dmp.access.kernel import CONTENT_READ, Kernel
from dmp.access.policy import Action
from dmp.access.views import CareSummary, DocumentBrief, SummaryLine
from dmp.crypto import envelope
from dmp.domain import profile, summary
from dmp.domain.codes import AuditAction
from dmp.domain.french import PARIS
from dmp.domain.ins import PatientRef
from dmp.errors import DmpError
from dmp.records import documents
from dmp.records.types import DocumentCriteria

# The newest structured documents read for one summary (a record holds a few hundred at most;
# the summary reads the most recent ones, newest first, and says how many it read).
MAX_SOURCES = 60
_CDA_MIMES = ("text/xml", "application/xml", "application/hl7-v3+xml")
_HOLDER_SIDE = ("patient", "representative")


class SummaryActions(Kernel):
    def care_summary(self, ins: PatientRef) -> CareSummary:
        """The summary of care for this reader: built from the current CDA documents the
        rules let them see, newest first; one audit event names the documents read."""
        with self.act(
            ins, Action.READ_DOCUMENTS, AuditAction.SUMMARY_READ, need=CONTENT_READ
        ) as op:
            criteria = DocumentCriteria(
                statuses=("current",), mime_types=_CDA_MIMES, limit=MAX_SOURCES, offset=0
            )
            rows, total = documents.search(op.conn, op.scope, op.visibility, criteria)
            # The holder's own profile (allergies, treatments, vaccinations they typed).
            typed = DocumentCriteria(
                statuses=("current",),
                type_codes=profile.PROFILE_TYPES,
                mime_types=("text/plain",),
                limit=len(profile.PROFILE),
                offset=0,
            )
            own, _ = documents.search(op.conn, op.scope, op.visibility, typed)
            rows = sorted(
                [*rows, *(r for r in own if r.author_kind in _HOLDER_SIDE)],
                key=lambda r: r.creation_time,
                reverse=True,
            )
            today = self.now().astimezone(PARIS).date()
            lines: dict[tuple[str, str, str], SummaryLine] = {}
            unreadable: list[str] = []
            for doc in rows:
                key, chunks = documents.load_content(op.conn, op.scope, doc.content_id)
                data_key = datakeys.opened_key(self._rt, op.scope, key)
                context = envelope.content_context(op.scope.patient_id, doc.content_id)
                content = envelope.open_chunks(data_key, chunks, context)
                try:
                    entries = (
                        summary.extract(content, today)
                        if doc.mime_type in _CDA_MIMES
                        else profile.summary_entries(
                            doc.title,
                            content,
                            doc.creation_time.astimezone(PARIS).date().isoformat(),
                        )
                    )
                except DmpError:
                    unreadable.append(doc.logical_id)
                    continue
                for entry in entries:
                    k = summary.key(entry)
                    seen = lines.get(k)
                    if seen is None:
                        lines[k] = SummaryLine(entry, (doc.logical_id,))
                    elif doc.logical_id not in seen.sources:
                        # Newest document first: the line keeps its newest wording (a result
                        # its latest value) and names every document that carries it.
                        newer = seen.entry
                        if entry.kind == "result" and entry.on > newer.on:
                            newer = entry
                        lines[k] = dataclasses.replace(
                            seen, entry=newer, sources=(*seen.sources, doc.logical_id)
                        )
            self._count_access(op.scope)
            notices.on_professional_read(self, op)
            op.audit_targets(tuple(r.logical_id for r in rows))
        briefs = {
            r.logical_id: DocumentBrief(r.logical_id, r.type_code, r.title, r.creation_time)
            for r in rows
        }
        ordered = sorted(
            lines.values(),
            key=lambda line: (summary.KINDS.index(line.entry.kind), _newest_first(line)),
        )
        return CareSummary(
            ordered, briefs, read=len(rows), more=max(0, total - len(rows)), unreadable=unreadable
        )


def _newest_first(line: SummaryLine) -> tuple[str, str]:
    # Dates sort as text (2019-08-11 > 2019-08 > 2019); the newest first, then by label.
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in line.entry.on)
    return inverted or "\U0010ffff", line.entry.label.casefold()
