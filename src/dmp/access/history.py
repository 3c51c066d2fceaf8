"""The record's access history (AC-17): every trace for the holder, the representatives and the
registered GP; a professional's own traces otherwise; no id of a document hidden from the reader.

Each trace comes with what allowed it, read from the record as it was at that moment (the
consent or care-team declaration in force, from the chain itself; the emergency window and its
justification), and with the documents it names that the reader may see."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import Connection

from dmp.access import datakeys
from dmp.access.kernel import HISTORY_SEARCH, Kernel, Op, check_aware, check_window
from dmp.access.policy import Action, Decision, Reason
from dmp.access.views import AccessBasis, DocumentBrief, Page, TraceView
from dmp.crypto import envelope
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.domain.visibility import DocumentVisibility
from dmp.errors import IntegrityFailure
from dmp.records import audit_log, documents, patients
from dmp.records.types import AuditRow, AuthorizedPatient


class HistoryActions(Kernel):
    def history(
        self,
        ins: PatientRef,
        *,
        limit: int = 50,
        offset: int = 0,
        actor_kinds: tuple[str, ...] | None = None,
        purposes: tuple[str, ...] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> Page[TraceView]:
        """The record's traces, newest first, optionally only those of some kinds of actor,
        some access modes, or a period; ``before``: only those older than the trace of that
        position (``TraceView.seq``), to read a whole history page by page."""
        check_window(limit, offset)
        check_aware(since, until)
        with self.act(
            ins, Action.READ_HISTORY, AuditAction.HISTORY_READ, need=HISTORY_SEARCH
        ) as op:
            rows, total = audit_log.patient_history(
                op.conn,
                op.scope,
                actor_id=self.actor.id if op.decision.own_traces_only else None,
                limit=limit,
                offset=offset,
                actor_kinds=actor_kinds,
                purposes=purposes,
                since=since,
                until=until,
                before_seq=before,
            )
            hidden = _hidden_documents(op.conn, op.scope, op.decision, rows)
            bases = self._bases(op, rows)
            named = {t for r in rows for t in (r.target, *(r.targets or "").split()) if t}
            found = documents.briefs(op.conn, op.scope, sorted(named - hidden))
            key = op.scope.patient_id
        briefs = {i: DocumentBrief(i, *found[i]) for i in found}
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
                r.seq,
                bases.get(n, _NONE),
                tuple(
                    briefs[t]
                    for t in dict.fromkeys((r.target, *(r.targets or "").split()))
                    if t in briefs
                ),
                r.client_id,
            )
            for n, r in enumerate(rows)
        ]
        return Page(items, total, key)

    def _bases(self, op: Op, rows: list[AuditRow]) -> dict[int, AccessBasis]:
        """What allowed each professional's access (by position in ``rows``): two queries for
        the page, whatever its length, and one decryption per emergency window."""
        wanted = {
            r.actor_id for r in rows if r.actor_kind == "professional" and r.reason in _EXPLAINED
        }
        if not wanted:
            return {}
        declared = audit_log.declarations(op.conn, op.scope, _DECLARATIONS, sorted(wanted))
        emergency = {r.actor_id for r in rows if r.reason == Reason.ALLOW_BRIS_DE_GLACE}
        windows = patients.emergency_windows(op.conn, op.scope, sorted(emergency & wanted))
        reasons: dict[tuple[str, datetime], str | None] = {}
        out: dict[int, AccessBasis] = {}
        for n, r in enumerate(rows):
            if r.actor_kind != "professional" or r.reason not in _EXPLAINED:
                continue
            if r.reason == Reason.ALLOW_BRIS_DE_GLACE:
                window = next(
                    (w for w in reversed(windows) if w[0] == r.actor_id and w[1] <= r.at <= w[2]),
                    None,
                )
                if window is None:
                    continue
                if (r.actor_id, window[1]) not in reasons:
                    reasons[(r.actor_id, window[1])] = self._read_justification(op, window)
                out[n] = AccessBasis(
                    emergency_opened_at=window[1],
                    emergency_until=window[2],
                    justification=reasons[(r.actor_id, window[1])],
                )
                continue
            action = (
                AuditAction.CONSENT_DECLARE
                if r.reason == Reason.ALLOW_CONSENT
                else AuditAction.CARE_TEAM_DECLARE
            )
            last = next(
                (
                    d
                    for d in reversed(declared)
                    if d[0] == action and d[1] == r.actor_id and d[2] <= r.at
                ),
                None,
            )
            if r.reason == Reason.ALLOW_CONSENT:
                out[n] = AccessBasis(
                    consent_at=last[2] if last else None, consent_by=last[3] if last else None
                )
            else:
                out[n] = AccessBasis(
                    care_team_at=last[2] if last else None,
                    consent_by=last[3] if last else None,
                    initial_consent_at=op.record.initial_consent_at,
                )
        return out

    def _read_justification(
        self, op: Op, window: tuple[str, datetime, datetime, str, bytes]
    ) -> str | None:
        """The emergency justification, decrypted for the history's reader; None when the
        patient's key was destroyed."""
        try:
            key = datakeys.existing_data_key(self._rt, op.conn, op.scope, window[3])
        except IntegrityFailure:
            return None
        context = b"dmp-emergency:" + op.scope.patient_id.encode()
        return envelope.open_sealed(key, window[4], context).decode()


_NONE = AccessBasis()
_EXPLAINED = frozenset({Reason.ALLOW_CONSENT, Reason.ALLOW_CARE_TEAM, Reason.ALLOW_BRIS_DE_GLACE})
_DECLARATIONS = (AuditAction.CONSENT_DECLARE.value, AuditAction.CARE_TEAM_DECLARE.value)


def _hidden_documents(
    conn: Connection, scope: AuthorizedPatient, decision: Decision, rows: list[AuditRow]
) -> set[str]:
    """The document ids in these traces that the reader may not see (AC-11, AC-12): the
    accesses stay in the history, the ids of documents hidden from the reader do not."""
    if decision.visibility is None:
        return set()
    ids = {t for r in rows for t in (r.target, *(r.targets or "").split()) if t}
    present = documents.visible_ids(conn, scope, DocumentVisibility(), sorted(ids))
    every_status = dataclasses.replace(decision.visibility, statuses=None)
    return present - documents.visible_ids(conn, scope, every_status, sorted(present))
