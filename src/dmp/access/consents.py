"""The holder's decisions: consents, the care team, blocks, settings (oppositions, masking, the
registered GP), legal representatives, and the notices queued for the record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from dmp.access.kernel import (
    CONSENT_CREATE,
    CONSENT_SEARCH,
    CONSENT_UPDATE,
    PATIENT_READ,
    PATIENT_UPDATE,
    Kernel,
)
from dmp.access.policy import Action
from dmp.access.records import stored_record_view
from dmp.access.views import RecordView
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.errors import Conflict, Forbidden, InvalidInput
from dmp.identity.actor import ActorKind
from dmp.records import patients, portal


class ConsentActions(Kernel):
    def declare_consent(self, ins: PatientRef, id_nat_ps: str | None = None) -> str:
        """Record the patient's consent for a professional: the professional declares the
        consent the patient gave them, or the holder authorises a named professional (AC-4).
        Returns the record's key (FHIR ids carry it)."""
        if self.actor.kind is ActorKind.PROFESSIONAL:
            if id_nat_ps not in (None, self.actor.id):
                raise Forbidden("a professional declares the consent given to themselves only")
            id_nat_ps = self.actor.id
        elif not id_nat_ps:
            raise InvalidInput("name the professional (idNatPS) the consent is for")
        with self.act(
            ins,
            Action.DECLARE_CONSENT,
            AuditAction.CONSENT_DECLARE,
            need=CONSENT_CREATE,
            target=id_nat_ps,
            subject=id_nat_ps,
        ) as op:
            patients.declare_consent(
                op.conn, op.scope, id_nat_ps, at=self._rt.clock.now(), by=self.actor.id
            )
            return op.scope.patient_id

    def declare_care_team(self, ins: PatientRef, id_nat_ps: str) -> None:
        """Add a professional to the care team: the holder, or a professional who may read the
        record, in normal mode, and delegates part of the care (L1111-17 II, AC-4)."""
        id_nat_ps = _id_nat_ps(id_nat_ps)
        with self.act(
            ins,
            Action.DECLARE_CARE_TEAM,
            AuditAction.CARE_TEAM_DECLARE,
            need=CONSENT_CREATE,
            target=id_nat_ps,
            subject=id_nat_ps,
        ) as op:
            patients.declare_care_team(
                op.conn, op.scope, id_nat_ps, at=self._rt.clock.now(), by=self.actor.id
            )

    def block_professional(self, ins: PatientRef, id_nat_ps: str) -> None:
        """AC-3: the holder blocks a professional, who is then refused in every mode."""
        self._set_block(ins, id_nat_ps, blocked=True)

    def unblock_professional(self, ins: PatientRef, id_nat_ps: str) -> None:
        self._set_block(ins, id_nat_ps, blocked=False)

    def _set_block(self, ins: PatientRef, id_nat_ps: str, *, blocked: bool) -> None:
        id_nat_ps = _id_nat_ps(id_nat_ps)
        action = AuditAction.PERMISSION_BLOCK if blocked else AuditAction.PERMISSION_UNBLOCK
        with self.act(
            ins, Action.MANAGE_RECORD, action, need=CONSENT_UPDATE, target=id_nat_ps
        ) as op:
            at = self._rt.clock.now() if blocked else None
            patients.set_blocked(op.conn, op.scope, id_nat_ps, at)

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
        gp = values.get("medecin_traitant")
        # Naming the GP is its own action: a blocked professional is not named (AC-3, AC-7).
        with self.act(
            ins,
            Action.DESIGNATE_GP if gp else Action.MANAGE_RECORD,
            AuditAction.RECORD_UPDATE,
            need=CONSENT_UPDATE,
            target=",".join(sorted(values)),
            subject=str(gp) if gp else None,
        ) as op:
            patients.update_record(op.conn, op.scope, **values)
            record = patients.load_record(op.conn, op.scope.patient_id)
            return stored_record_view(op.conn, op.scope, record)

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
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.REPRESENTATIVE_ADD,
            need=PATIENT_UPDATE,
            target=representative_id[:64],
        ) as op:
            try:
                patients.add_representative(
                    op.conn,
                    op.scope,
                    representative_id.strip()[:64],
                    display_name.strip()[:200],
                    relationship.strip()[:40] or "representant_legal",
                    self._rt.clock.now(),
                )
            except IntegrityError:
                raise Conflict("this representative is already registered") from None
            if minor:
                patients.update_record(op.conn, op.scope, is_minor=True)

    def permissions(self, ins: PatientRef) -> list[tuple[str, datetime | None, datetime | None]]:
        """The holder's decisions about professionals: (idNatPS, consented at, blocked at)."""
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.RECORD_READ,
            need=CONSENT_SEARCH,
            target="permissions",
        ) as op:
            rows = patients.list_permissions(op.conn, op.scope)
        return [(ps, p.consented_at, p.blocked_at) for ps, p in rows]

    def care_team(self, ins: PatientRef) -> list[tuple[str, datetime, str]]:
        """The declared care team: (idNatPS, declared at, declared by)."""
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.RECORD_READ,
            need=CONSENT_SEARCH,
            target="care_team",
        ) as op:
            return patients.list_care_team(op.conn, op.scope)

    def notice_contact(
        self, ref: PatientRef, notice_id: str, recipient_kind: str, recipient_id: str | None
    ) -> dict[str, Any] | None:
        """What the outbox worker needs to tell a notice's recipient: the notification
        preferences and contact of their activated portal account (None: nobody to tell).
        Read through the gate, so the read is in the patient's trail, naming the notice."""
        with self.act(
            ref,
            Action.READ_RECORD,
            AuditAction.NOTICE_CONTACT_READ,
            need=PATIENT_READ,
            target=notice_id[:64],
        ) as op:
            if recipient_kind == "patient":
                account = portal.account_for_patient(op.conn, op.scope.patient_id)
            elif recipient_id:
                account = portal.account_by_login(op.conn, recipient_id)
            else:
                account = None
        if account is None or account.activated_at is None:
            return None
        return account.notification_preferences()

    def notifications(self, ins: PatientRef) -> list[dict[str, object]]:
        """Notices queued for the record (the outbox), for the holder and operators."""
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.HISTORY_READ,
            need=PATIENT_READ,
            target="notifications",
        ) as op:
            rows = patients.pending_notifications(op.conn, op.scope)
        return [{k: v for k, v in r.items() if k != "patient_id"} for r in rows]


def _id_nat_ps(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 32 or not value.isalnum():
        raise InvalidInput("a professional is named by their national identifier (idNatPS)")
    return value
