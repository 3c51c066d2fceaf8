"""Records: opening (with the patient's consent), reading, closing, account activation."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.access import codes, notices
from dmp.access.dates import add_years
from dmp.access.gate import PATIENT_CREATE, PATIENT_READ, PATIENT_SEARCH, PATIENT_UPDATE, Kernel
from dmp.access.policy import Action, decide_open
from dmp.access.views import Activation, Demographics, RecordView
from dmp.domain.codes import SEXES, AuditAction, CreationChannel, RecordStatus
from dmp.domain.geo import departement_of_commune
from dmp.domain.ins import Ins, PatientRef
from dmp.errors import Conflict, InvalidInput, NotFound
from dmp.identity.actor import ActorKind
from dmp.identity.scopes import Need
from dmp.records import directory, patients, portal, stats
from dmp.records.types import AuthorizedPatient, RecordRow


class RecordActions(Kernel):
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
        with self.act_opening(AuditAction.RECORD_OPEN, need=PATIENT_CREATE) as op:
            conn = op.conn
            exists = patients.find_patient_id(conn, ins.oid, ins.value)
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
            scope = op.opened(patient_id, departement, decision.reason)
            notices.queue(conn, scope, "record_opened", now=now)
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
        with self.act(ins, Action.READ_RECORD, AuditAction.RECORD_READ, need=need) as op:
            return stored_record_view(op.conn, op.scope, op.record)

    def close_record(self, ins: PatientRef, reason: str) -> None:
        """The holder closes the record; professionals are refused from then on (AC-1)."""
        reason = reason.strip()
        if not reason:
            raise InvalidInput("a closure reason is required")
        with self.act(
            ins, Action.CLOSE_RECORD, AuditAction.RECORD_CLOSE, need=PATIENT_UPDATE
        ) as op:
            if op.record.status == RecordStatus.CLOSED.value:
                raise Conflict("the record is already closed")
            now = self._rt.clock.now()
            patients.close_record(op.conn, op.scope, at=now, reason=reason[:200], by=self.actor.id)
            # Kept for the retention period, then purged (issue 11; DMP_RETENTION_YEARS).
            patients.update_record(
                op.conn, op.scope, purge_due_at=add_years(now, self._rt.settings.retention_years)
            )
            stats.record_closed(op.conn, op.scope.departement, now)
            notices.queue(op.conn, op.scope, "record_closed", now=now)

    def activate_account(self, ins: PatientRef) -> None:
        """The holder activated their online account (counted in the adoption statistics)."""
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.RECORD_UPDATE,
            need=PATIENT_UPDATE,
            target="activated_at",
        ) as op:
            if op.record.activated_at is None:
                patients.update_record(op.conn, op.scope, activated_at=self._rt.clock.now())
                stats.account_activated(op.conn, op.scope.departement)

    def issue_activation_code(self, ins: PatientRef) -> Activation:
        """A registration desk prints the holder's activation letter: a new one-time code for
        the holder's online account (created on first use). Only the code's SHA-256 is stored;
        a new code cancels the previous one; the code works once, until it expires."""
        with self.act(
            ins,
            Action.ISSUE_ACTIVATION,
            AuditAction.ACTIVATION_ISSUE,
            need=PATIENT_UPDATE,
            target="activation_code",
        ) as op:
            now = self._rt.clock.now()
            account = portal.account_for_patient(op.conn, op.scope.patient_id)
            if account is None:
                account_id = uuid.uuid4().hex
                try:
                    portal.insert_account(
                        op.conn,
                        {
                            "id": account_id,
                            "login": op.ins[1],
                            "kind": ActorKind.PATIENT.value,
                            "patient_id": op.scope.patient_id,
                            "ins_oid": op.ins[0],
                            "ins_value": op.ins[1],
                            "created_at": now,
                        },
                    )
                except IntegrityError:
                    raise Conflict(
                        "an online account already uses this identifier; ask the operator"
                    ) from None
            else:
                account_id = account.id
            code = codes.new_code()
            expires = now + timedelta(days=self._rt.settings.activation_code_days)
            portal.add_code(
                op.conn,
                codes.code_hash(code),
                account_id,
                at=now,
                by=self.actor.id,
                expires=expires,
            )
            return Activation(op.ins[1], code, expires)

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


def stored_record_view(
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


def _validated_demographics(d: Demographics) -> Demographics:
    for name in ("birth_family_name", "given_names"):
        value = getattr(d, name).strip()
        if not value or len(value) > 100:
            raise InvalidInput(f"{name} is required (at most 100 characters)")
    if d.sex not in SEXES:
        raise InvalidInput("sex must be M, F or U")
    departement_of_commune(d.residence_commune)
    return d
