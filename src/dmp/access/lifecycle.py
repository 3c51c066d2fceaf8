"""A record's lifecycle after its opening (issue 11): closing sets the purge date (closure +
``DMP_RETENTION_YEARS``), reopening clears it, the holder's death closes the record, an explicit
deletion request brings the purge within ``DMP_DELETION_DAYS``, and the purge destroys the
patient's data keys, deletes every clinical row and keeps a non-clinical trace. Each is a gate
action, audited in the patient's chain (which the purge leaves in place: ``dmp audit verify``
still passes)."""

from __future__ import annotations

from datetime import datetime, timedelta

from dmp.access import notices
from dmp.access.dates import add_years
from dmp.access.kernel import PATIENT_UPDATE, Kernel, Op
from dmp.access.policy import Action
from dmp.domain.codes import AuditAction, RecordStatus
from dmp.domain.ins import PatientRef
from dmp.errors import Conflict, InvalidInput
from dmp.records import keys as key_store
from dmp.records import lifecycle, patients, stats


class LifecycleActions(Kernel):
    def purge_date(self, closed_at: datetime) -> datetime:
        return add_years(closed_at, self._rt.settings.retention_years)

    def reopen_record(self, ins: PatientRef) -> None:
        """Reopen a closed record (the holder, or a desk at the holder's request); a record
        closed by death is not reopened."""
        with self.act(
            ins, Action.REOPEN_RECORD, AuditAction.RECORD_REOPEN, need=PATIENT_UPDATE
        ) as op:
            record = op.record
            if record.status != RecordStatus.CLOSED.value:
                raise Conflict("the record is not closed")
            if record.died_at is not None:
                raise Conflict("a record closed by the holder's death is not reopened")
            now = self._rt.clock.now()
            patients.update_record(
                op.conn,
                op.scope,
                status=RecordStatus.ACTIVE.value,
                reopened_at=now,
                closed_at=None,
                closure_reason=None,
                closed_by=None,
                purge_due_at=None,
                deletion_requested_at=None,
            )
            stats.record_reopened(op.conn, op.scope.departement, record.closed_at)
            notices.queue(op.conn, op.scope, "record_reopened", now=now)

    def declare_death(self, ins: PatientRef, died_on: datetime) -> None:
        """The death register (a system job): the record closes; kept for the retention period
        from today, then purged."""
        if died_on.tzinfo is None:
            raise InvalidInput("times must carry a time zone")
        with self.act(
            ins, Action.DECLARE_DEATH, AuditAction.RECORD_DEATH, need=PATIENT_UPDATE
        ) as op:
            now = self._rt.clock.now()
            if died_on > now:
                raise InvalidInput("a death is not declared in the future")
            values: dict[str, object] = {"died_at": died_on, "purge_due_at": self.purge_date(now)}
            self._closing(op, values, "décès", now)
            patients.update_record(op.conn, op.scope, **values)

    def _closing(self, op: Op, values: dict[str, object], reason: str, now: datetime) -> bool:
        """Add the closure of a still active record to ``values`` (and count it); whether it
        was active."""
        if op.record.status != RecordStatus.ACTIVE.value:
            return False
        values.update(
            status=RecordStatus.CLOSED.value,
            closed_at=now,
            closure_reason=reason,
            closed_by=self.actor.id,
        )
        stats.record_closed(op.conn, op.scope.departement, now)
        return True

    def request_deletion(self, ins: PatientRef) -> datetime:
        """The holder asks for the record to be deleted: it closes now (if open) and is purged
        within ``DMP_DELETION_DAYS``. Returns the purge date."""
        with self.act(
            ins,
            Action.REQUEST_DELETION,
            AuditAction.RECORD_DELETION_REQUEST,
            need=PATIENT_UPDATE,
        ) as op:
            now = self._rt.clock.now()
            due = now + timedelta(days=self._rt.settings.deletion_days)
            current = op.record.purge_due_at
            if current is not None and current < due:
                due = current
            values: dict[str, object] = {"deletion_requested_at": now, "purge_due_at": due}
            if self._closing(op, values, "demande de suppression", now):
                notices.queue(op.conn, op.scope, "record_closed", now=now)
            patients.update_record(op.conn, op.scope, **values)
            return due

    def withdraw_deletion(self, ins: PatientRef) -> datetime | None:
        """The holder (or a representative) takes back their deletion request: the record
        stays closed, kept for the retention period from its closure, and may then be
        reopened. Returns the purge date."""
        with self.act(
            ins,
            Action.WITHDRAW_DELETION,
            AuditAction.RECORD_DELETION_WITHDRAW,
            need=PATIENT_UPDATE,
        ) as op:
            record = op.record
            if record.deletion_requested_at is None:
                raise Conflict(
                    "no deletion request is pending for this record",
                    french="aucune demande de suppression n'est en cours pour ce dossier",
                )
            due = self.purge_date(record.closed_at) if record.closed_at else None
            patients.update_record(op.conn, op.scope, deletion_requested_at=None, purge_due_at=due)
            return due

    def purge_record(self, ref: PatientRef) -> int:
        """Purge a record whose purge is due (a system job): shred the data keys, delete the
        content and every clinical row, keep a trace. Returns the number of documents."""
        with self.act(
            ref, Action.PURGE_RECORD, AuditAction.RECORD_PURGE, need=PATIENT_UPDATE
        ) as op:
            now = self._rt.clock.now()
            due = op.record.purge_due_at
            if due is None or due > now:
                raise Conflict("this record's purge is not due")
            reason = "deletion_request" if op.record.deletion_requested_at else "retention"
            key_store.shred(op.conn, op.scope, now)
            count = lifecycle.purge(op.conn, op.scope, at=now, reason=reason)
            self._rt.patient_index.forget(op.ins)
            op.audit_target(reason)
            return count
