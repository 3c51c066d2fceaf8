"""The record's access history (AC-17): every trace for the holder, the representatives and the
registered GP; a professional's own traces otherwise; no id of a document hidden from the reader."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import Connection

from dmp.access.kernel import HISTORY_SEARCH, Kernel, check_aware, check_window
from dmp.access.policy import Action, Decision
from dmp.access.views import Page, TraceView
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.domain.visibility import DocumentVisibility
from dmp.records import audit_log, documents
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
    ) -> Page[TraceView]:
        """The record's traces, newest first, optionally only those of some kinds of actor,
        some access modes, or a period."""
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
            )
            hidden = _hidden_documents(op.conn, op.scope, op.decision, rows)
            key = op.scope.patient_id
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
        return Page(items, total, key)


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
