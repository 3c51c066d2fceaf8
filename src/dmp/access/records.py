"""Records: opening (with the patient's consent), reading, closing, account activation."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.access import codes, notices
from dmp.access.dates import add_years
from dmp.access.kernel import PATIENT_CREATE, PATIENT_READ, PATIENT_SEARCH, PATIENT_UPDATE, Kernel
from dmp.access.policy import Action, Reason, decide_open
from dmp.access.views import Activation, Demographics, RecordView, Recovery
from dmp.config import Settings
from dmp.domain import identity_pivot, text
from dmp.domain.codes import (
    HIGH_TRUST_DOCUMENTS,
    IDENTITY_DOCUMENTS,
    IDENTITY_PROVISIONAL,
    IDENTITY_QUALIFIED,
    SEXES,
    TRUSTED_THIRD_PARTY,
    AuditAction,
    CreationChannel,
    RecordStatus,
)
from dmp.domain.french import datetime_fr
from dmp.domain.geo import departement_of_commune
from dmp.domain.identity_pivot import Candidate, Pivot
from dmp.domain.ins import Ins, PatientRef, identity_mismatches
from dmp.errors import Conflict, InvalidInput, NotFound
from dmp.identity.actor import ActorKind
from dmp.identity.scopes import Need
from dmp.records import directory, patients, portal, stats
from dmp.records.types import AuthorizedPatient, PatientRow, RecordRow


class RecordActions(Kernel):
    def open_record(
        self,
        ins: Ins,
        demographics: Demographics,
        *,
        channel: CreationChannel,
        patient_consent: bool,
        identity_document: str | None = None,
    ) -> RecordView:
        """Open a record. The patient must have been informed and have agreed (L1111-14). The
        declared identity must agree with what the INS encodes (sex, birth year and month,
        birth place); ``identity_document`` is the FR Core code of the identity document the
        desk checked (a high-trust one qualifies the identity), or ``TC`` for the insurer's
        provisioning file (system jobs only)."""
        if not patient_consent:
            raise InvalidInput("a record is opened only with the patient's consent; state it")
        ins = self._parse_ins(ins)
        demo = _validated_demographics(demographics)
        mismatches = identity_mismatches(
            ins,
            sex=demo.sex,
            birth_year=demo.birth_date.year,
            birth_month=demo.birth_date.month,
            birth_place=demo.birth_place_code,
        )
        if mismatches:
            raise InvalidInput(
                "the declared identity contradicts the INS: "
                + "; ".join(m.english for m in mismatches),
                reason="identity-mismatch",
                french="l'identité déclarée contredit l'INS : "
                + " ; ".join(m.french for m in mismatches)
                + ". Vérifiez la saisie et la pièce d'identité.",
            )
        status = self._identity_status(identity_document)
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
                        "identity_status": status,
                        "identity_document": identity_document,
                        "identity_checked_at": now if identity_document else None,
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
            return stored_record_view(conn, scope, patients.load_record(conn, patient_id))

    def _identity_status(self, document: str | None) -> str:
        """Qualified when a desk or a professional checked a high-trust identity document, or
        when the insurer's provisioning file (a trusted third party, system jobs only) gave
        the identity; provisional otherwise (the person online, a lesser document)."""
        if document is None:
            return IDENTITY_PROVISIONAL
        if document not in IDENTITY_DOCUMENTS:
            raise InvalidInput(
                f"unknown identity document code {document[:8]!r}; one of "
                + ", ".join(sorted(IDENTITY_DOCUMENTS))
            )
        kind = self.actor.kind
        if document == TRUSTED_THIRD_PARTY:
            if kind is not ActorKind.SYSTEM:
                raise InvalidInput("only the insurer's provisioning job is a trusted third party")
            return IDENTITY_QUALIFIED
        if kind in (ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL) and (
            document in HIGH_TRUST_DOCUMENTS
        ):
            return IDENTITY_QUALIFIED
        return IDENTITY_PROVISIONAL

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
        """A registration desk prints the holder's first activation letter: a one-time code for
        an online account never activated (created on first use). Only the code's SHA-256 is
        stored; a new letter cancels the previous code; the code works once, until it expires.
        An activated account gets no letter: its recovery code goes to the holder
        (:meth:`start_account_recovery`). The holder is told, and the letter is in the trail."""
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
            elif account.activated_at is not None:
                # The record's flag and the account agree unless the account was activated by
                # another path: never print a code that would take an activated account over.
                # (A password set without the second factor confirmed is no activation: the
                # holder gets a new letter, as for an account never used.)
                raise Conflict(
                    "the holder's online account is activated: start a recovery",
                    reason=Reason.DENY_ACCOUNT_ACTIVE.value,
                )
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
            notices.queue(
                op.conn, op.scope, "activation_letter", now=now, subject_id=self.actor.structure_id
            )
            who = patients.load_patient(op.conn, op.scope)
            holder = f"{who.given_names.title()} {(who.used_name or who.birth_family_name).upper()}"
            return Activation(op.ins[1], code, expires, holder)

    def start_account_recovery(self, ins: PatientRef) -> Recovery:
        """A desk (or a professional of a structure) starts the recovery of an activated
        account: a one-time code is sent to the holder (their e-mail or phone, else a postal
        letter), never shown to whoever started it; the holder's password and sessions keep
        working until the holder uses the code. One recovery at a time."""
        with self.act(
            ins,
            Action.START_RECOVERY,
            AuditAction.ACCOUNT_RECOVERY,
            need=PATIENT_UPDATE,
            target="recovery_code",
        ) as op:
            now = self._rt.clock.now()
            account = portal.account_for_patient(op.conn, op.scope.patient_id)
            if account is None or account.activated_at is None:
                raise Conflict(
                    "the holder's online account was never activated: print the letter",
                    reason=Reason.DENY_ACCOUNT_NOT_ACTIVE.value,
                )
            pending = portal.live_code(op.conn, account.id, "recovery", now)
            if pending is not None:
                raise Conflict(
                    "a recovery is already under way: the holder was sent a code "
                    f"on {pending[0].isoformat(timespec='minutes')}",
                    french="une récupération est déjà en cours : un code a été envoyé au "
                    f"titulaire le {datetime_fr(pending[0])} ; il reste valable "
                    f"{self._rt.settings.recovery_code_hours} heures",
                )
            code = codes.new_code()
            expires = now + timedelta(hours=self._rt.settings.recovery_code_hours)
            portal.add_code(
                op.conn,
                codes.code_hash(code),
                account.id,
                at=now,
                by=self.actor.id,
                expires=expires,
                purpose="recovery",
            )
            notices.queue_code(
                op.conn,
                op.scope,
                "account_recovery",
                now=now,
                code=code,
                key=self._rt.notice_key,
                subject_id=self.actor.structure_id,
            )
            return Recovery(
                _channel_of(account.notification_preferences(), self._rt.settings), expires
            )

    def record_account_reset(self, ins: PatientRef) -> None:
        """The holder set a new password with a one-time code (a system step of the portal's
        login service): in the trail, and the holder is told on their channel."""
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.ACCOUNT_RESET,
            need=PATIENT_UPDATE,
            target="password",
        ) as op:
            notices.queue(op.conn, op.scope, "account_reset", now=self._rt.clock.now())

    def match_identity(self, pivot: Pivot) -> Ins | None:
        """The record a FranceConnect identity opens (a system step of the portal's login):
        the open records of people born that day, of that sex, compared trait by trait
        (:mod:`dmp.domain.identity_pivot`); one match or nothing. The trail of the login job
        says whether one matched, never whom."""
        with self.act_system(AuditAction.IDENTITY_MATCH) as op:
            rows = patients.identity_candidates(op.conn, pivot.birth_date, pivot.sex)
            candidates = [
                Candidate(
                    Ins(r["ins_oid"], r["ins_value"]),
                    r["birth_family_name"],
                    r["given_names"],
                    r["sex"],
                    r["birth_date"],
                    r["birth_place_code"],
                )
                for r in rows
            ]
            found = identity_pivot.match(pivot, candidates)
            op.target = f"franceconnect: {'one record' if found else 'no record'}"
        return found

    def record_login(self, ins: PatientRef, provider: str) -> None:
        """The holder logged in through an identity provider (FranceConnect): in their
        history, as every way into the record is."""
        with self.act(
            ins, Action.READ_RECORD, AuditAction.ACCOUNT_LOGIN, need=PATIENT_READ, target=provider
        ):
            pass

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


def _channel_of(prefs: dict[str, Any], settings: Settings) -> str:
    """Where a code for the holder goes: their chosen channel if it has an address and the
    service can send through it (an SMTP server, an SMS gateway), else post."""
    configured = {"courriel": bool(settings.smtp_host), "sms": bool(settings.sms_url)}
    if str(prefs.get("contact", "")).strip():
        channel = prefs.get("canal", "courriel")
        if configured.get(str(channel)):
            return str(channel)
    return "courrier"


def _record_view(
    ins: Ins,
    demo: Demographics,
    departement: str,
    record: RecordRow | None,
    patient: PatientRow | None = None,
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
        identity_status=patient.identity_status if patient else IDENTITY_PROVISIONAL,
        identity_document=patient.identity_document if patient else None,
        identity_checked_at=patient.identity_checked_at if patient else None,
        deletion_requested_at=record.deletion_requested_at,
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
    return _record_view(Ins(p.ins_oid, p.ins_value), demo, p.departement, record, p)


def _validated_demographics(d: Demographics) -> Demographics:
    for name in ("birth_family_name", "given_names"):
        value = getattr(d, name).strip()
        if not value or len(value) > 100:
            label = {"birth_family_name": "le nom de naissance", "given_names": "les prénoms"}
            raise InvalidInput(
                f"{name} is required (at most 100 characters)",
                french=f"{label[name]} : à indiquer, 100 caractères au plus",
            )
        text.single_line(value, name, {"birth_family_name": "nom", "given_names": "prénoms"}[name])
    if d.used_name:
        text.single_line(d.used_name, "used_name", "nom d'usage")
    if d.sex not in SEXES:
        raise InvalidInput("sex must be M, F or U")
    departement_of_commune(d.residence_commune)
    return d
